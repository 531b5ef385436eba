"""Client-side tools through confab with the official `openai` Python package, unchanged.

Usage: client_tools.py BASE_URL API_KEY MODEL

The model is asked with a function it may call; the SDK reads the call, this script runs the
function, sends its result back with the exchange so far (the SDK's own message object
included) and reads the answer; then the same question streamed, the call put together from its
`delta.tool_calls` fragments. It prints what it saw, as JSON, for
tests/e2e/dialects/openai/python_sdk.rs. Exit code 3 means the package is not installed.
"""

import json
import sys

try:
    import openai
except ImportError:
    print("the openai package is missing: pip install -r tests/python/requirements.txt", file=sys.stderr)
    sys.exit(3)

TOOLS = [{
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Find an order by its number",
        "parameters": {
            "type": "object",
            "properties": {"order": {"type": "string"}},
            "required": ["order"],
        },
    },
}]


def lookup_order(order: str) -> dict:
    return {"order": order, "status": "shipped"}


def main() -> None:
    base_url, api_key, model = sys.argv[1:4]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "Where is order A-1001?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    asked = first.choices[0]
    call = asked.message.tool_calls[0]
    result = lookup_order(**json.loads(call.function.arguments))
    messages.append(asked.message)
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    second = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)

    streamed = {}
    finish = None
    stream = client.chat.completions.create(
        model=model, messages=messages[:1], tools=TOOLS, stream=True
    )
    for chunk in stream:
        for choice in chunk.choices:
            for fragment in choice.delta.tool_calls or []:
                entry = streamed.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = fragment.id or entry["id"]
                if fragment.function:
                    entry["name"] += fragment.function.name or ""
                    entry["arguments"] += fragment.function.arguments or ""
            finish = choice.finish_reason or finish

    print(json.dumps({
        "first_finish": asked.finish_reason,
        "call": {"id": call.id, "name": call.function.name, "arguments": call.function.arguments},
        "answer": second.choices[0].message.content,
        "second_finish": second.choices[0].finish_reason,
        "streamed_calls": [streamed[i] for i in sorted(streamed)],
        "streamed_finish": finish,
    }))


if __name__ == "__main__":
    main()
