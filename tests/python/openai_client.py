"""Talk to confab with the official `openai` Python package, exactly as an application would.

Usage: openai_client.py BASE_URL API_KEY MODEL  (or OPENAI_BASE_URL / OPENAI_API_KEY / CONFAB_MODEL)

Run by tests/e2e/dialects/openai/python_sdk.rs, which asserts on the JSON this prints: what the
SDK parsed from each kind of reply (models, JSON, stream with usage, named conversation, errors).
That test runs it in a virtualenv holding requirements.txt beside this file (see
tests/e2e/support/python.rs). Exit code 3 means the package is not installed.
"""

import json
import os
import sys

try:
    import openai
except ImportError:
    print(
        "the openai package is missing: pip install -r tests/python/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(3)


def main() -> None:
    args = sys.argv[1:]
    base_url = args[0] if len(args) > 0 else os.environ["OPENAI_BASE_URL"]
    api_key = args[1] if len(args) > 1 else os.environ["OPENAI_API_KEY"]
    model = args[2] if len(args) > 2 else os.environ.get("CONFAB_MODEL", "support-agent")
    # No retries: a failure should show as it happened, not after backoff.
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    result = {"sdk_version": openai.__version__}

    result["models"] = [m.id for m in client.models.list()]

    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What are your business hours?"}],
        temperature=0.2,
    )
    result["json"] = {
        "object": completion.object,
        "content": completion.choices[0].message.content,
        "role": completion.choices[0].message.role,
        "finish_reason": completion.choices[0].finish_reason,
        "total_tokens": completion.usage.total_tokens,
    }

    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "How fast are refunds processed?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish_reasons, usage = "", [], None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage.total_tokens
    result["stream"] = {"content": text, "finish_reasons": finish_reasons, "total_tokens": usage}

    conversation = "py-sdk-conversation"
    first = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": "My favourite colour is teal."}],
        extra_body={"conversation_id": conversation},
    )
    second = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Which colour is my favourite?"}],
        extra_body={"conversation_id": conversation},
    )
    result["conversation"] = {
        "header": first.headers.get("x-conversation-id"),
        "answer": second.choices[0].message.content,
    }

    try:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
        result["not_found"] = None
    except openai.NotFoundError as e:
        result["not_found"] = {"status": e.status_code, "code": e.code}

    try:
        bad_key = openai.OpenAI(base_url=base_url, api_key="cfk_wrong", max_retries=0)
        bad_key.models.list()
        result["unauthorized"] = None
    except openai.AuthenticationError as e:
        result["unauthorized"] = {"status": e.status_code, "code": e.code}

    print(json.dumps(result))


if __name__ == "__main__":
    main()
