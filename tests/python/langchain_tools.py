"""LangChain's `bind_tools` and `with_structured_output` through confab, with
`langchain-openai`'s ChatOpenAI pointed at confab and nothing else changed.

Usage: langchain_tools.py BASE_URL API_KEY MODEL

Prints the tool calls LangChain read and the object it parsed, as JSON, for
tests/e2e/dialects/openai/python_sdk.rs. Exit code 3 means the package is not installed.
"""

import json
import sys

try:
    import pydantic
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
except ImportError:
    print("langchain-openai is missing: pip install -r tests/python/requirements.txt", file=sys.stderr)
    sys.exit(3)


@tool
def lookup_order(order: str) -> str:
    """Find an order by its number."""
    return f"{order}: shipped"


class City(pydantic.BaseModel):
    name: str
    country: str


def main() -> None:
    base_url, api_key, model = sys.argv[1:4]
    llm = ChatOpenAI(model=model, base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    asked = llm.bind_tools([lookup_order]).invoke("Where is order A-1001?")
    city = llm.with_structured_output(City).invoke("Which city is the capital of France?")
    print(json.dumps({
        "tool_calls": [
            {"name": call["name"], "args": call["args"], "id": call["id"]}
            for call in asked.tool_calls
        ],
        "city": city.model_dump(),
    }))


if __name__ == "__main__":
    main()
