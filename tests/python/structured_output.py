"""Structured output through confab with the official `openai` Python package's own parser.

Usage: structured_output.py BASE_URL API_KEY MODEL

`client.chat.completions.parse` sends `response_format` as a strict JSON schema made from a
pydantic model and parses the answer into that model; this prints what it parsed, as JSON, for
tests/e2e/dialects/openai/python_sdk.rs. Exit code 3 means the package is not installed.
"""

import json
import sys

try:
    import openai
    import pydantic
except ImportError:
    print("the openai package is missing: pip install -r tests/python/requirements.txt", file=sys.stderr)
    sys.exit(3)


class City(pydantic.BaseModel):
    name: str
    country: str


def main() -> None:
    base_url, api_key, model = sys.argv[1:4]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    completion = client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Which city is the capital of France?"}],
        response_format=City,
    )
    choice = completion.choices[0]
    print(json.dumps({
        "parsed": choice.message.parsed.model_dump(),
        "finish_reason": choice.finish_reason,
    }))


if __name__ == "__main__":
    main()
