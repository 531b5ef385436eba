//! The OpenAI-compatible dialect's OpenAPI schemas, the subset of OpenAI's own that confab
//! writes. Every request parameter listed is honoured; OpenAI's others (log probabilities,
//! audio...) are refused with a 400 naming them, as is any unknown one.

use serde_json::Value;

use crate::http::openapi::schema::{
    any_object, array, boolean, closed, described, enum_of, integer, literal, null, nullable,
    number, obj, one_of, record, reference, string,
};

/// A call of the caller's function, as an answer (or an earlier assistant message) has it.
fn tool_call() -> Value {
    obj(
        [
            ("id", string()),
            ("type", enum_of(&["function"])),
            (
                "function",
                record([
                    ("name", string()),
                    (
                        "arguments",
                        described(string(), "JSON, as the model wrote it"),
                    ),
                ]),
            ),
        ],
        &["id", "type", "function"],
    )
}

fn legacy_function_call() -> Value {
    record([("name", string()), ("arguments", string())])
}

fn request() -> Value {
    let part = obj(
        [("type", enum_of(&["text"])), ("text", string())],
        &["type", "text"],
    );
    let message = obj(
        [
            (
                "role",
                described(
                    enum_of(&[
                        "system",
                        "developer",
                        "user",
                        "assistant",
                        "tool",
                        "function",
                    ]),
                    "`tool` answers an assistant's call (`tool_call_id`); `function` is the \
                     legacy form, answering the newest `function_call`",
                ),
            ),
            (
                "content",
                described(
                    one_of([string(), array(part), null()]),
                    "Text, or text parts joined by newlines; null only for `assistant`",
                ),
            ),
            ("tool_calls", nullable(array(tool_call()))),
            ("function_call", nullable(legacy_function_call())),
            ("tool_call_id", nullable(string())),
            (
                "name",
                described(nullable(string()), "Only on `function` messages"),
            ),
        ],
        &["role"],
    );
    let function = obj(
        [
            (
                "name",
                described(string(), "1 to 64 letters, digits, `_` or `-`"),
            ),
            ("description", nullable(string())),
            (
                "parameters",
                described(nullable(any_object()), "A JSON Schema"),
            ),
            ("strict", nullable(boolean())),
        ],
        &["name"],
    );
    obj(
        [
            ("model", described(string(), "A deployed assistant's slug")),
            (
                "messages",
                described(
                    array(message),
                    "Not empty; the last is the user's new turn. With a named conversation only \
                     the last is used.",
                ),
            ),
            ("stream", nullable(boolean())),
            (
                "store",
                described(
                    nullable(boolean()),
                    "`false` answers without storing anything of the exchange (no conversation, \
                     no messages); default `true`. Not with a named conversation.",
                ),
            ),
            (
                "stream_options",
                nullable(obj([("include_usage", nullable(boolean()))], &[])),
            ),
            ("n", described(nullable(integer()), "Only 1 is supported")),
            (
                "temperature",
                described(nullable(number()), "0 to 2; passed to the model"),
            ),
            (
                "top_p",
                described(nullable(number()), "0 to 1; passed to the model"),
            ),
            (
                "max_tokens",
                described(
                    nullable(integer()),
                    "Most tokens in the answer; beyond it `finish_reason` is `length`",
                ),
            ),
            (
                "max_completion_tokens",
                described(nullable(integer()), "The same as max_tokens"),
            ),
            (
                "stop",
                described(
                    nullable(one_of([string(), array(string())])),
                    "Up to 4 sequences; the answer ends before the first",
                ),
            ),
            (
                "seed",
                described(nullable(integer()), "Passed to the model"),
            ),
            (
                "presence_penalty",
                described(nullable(number()), "-2 to 2; passed to the model"),
            ),
            (
                "frequency_penalty",
                described(nullable(number()), "-2 to 2; passed to the model"),
            ),
            (
                "user",
                described(nullable(string()), "Stored with the user's turn"),
            ),
            (
                "response_format",
                described(
                    nullable(any_object()),
                    "`{\"type\": \"text\"}` (the default), `json_object`, or `json_schema` with \
                     `json_schema: {name, schema, strict}`; passed to an OpenAI-compatible model \
                     (refused for the built-in one)",
                ),
            ),
            (
                "metadata",
                described(
                    nullable(any_object()),
                    "Up to 16 string values, stored with the user's turn",
                ),
            ),
            (
                "tools",
                described(
                    nullable(array(obj(
                        [
                            ("type", enum_of(&["function"])),
                            ("function", function.clone()),
                        ],
                        &["type", "function"],
                    ))),
                    "Functions the caller runs itself, passed to an OpenAI-compatible model \
                     (refused for the built-in one); the answer may call them instead of \
                     answering (`finish_reason: tool_calls`)",
                ),
            ),
            (
                "tool_choice",
                described(
                    nullable(one_of([
                        enum_of(&["none", "auto", "required"]),
                        any_object(),
                    ])),
                    "`none`, `auto`, `required` or `{\"type\": \"function\", \"function\": \
                     {\"name\": ...}}`",
                ),
            ),
            ("parallel_tool_calls", nullable(boolean())),
            (
                "functions",
                described(
                    nullable(array(function)),
                    "The legacy form of `tools`; the answer then has `function_call`",
                ),
            ),
            (
                "function_call",
                described(
                    nullable(one_of([enum_of(&["none", "auto"]), any_object()])),
                    "The legacy form of `tool_choice`",
                ),
            ),
            (
                "conversation_id",
                described(
                    nullable(string()),
                    "Remember the conversation server-side under this name (1 to 200 visible \
                     ASCII characters); SDKs send it in `extra_body`",
                ),
            ),
        ],
        &["model", "messages"],
    )
}

/// The fields every completion object repeats.
fn object_fields(object: &str, choice: Value) -> Vec<(&'static str, Value)> {
    vec![
        ("id", string()),
        ("object", enum_of(&[object])),
        ("created", described(integer(), "Seconds since the epoch")),
        ("model", string()),
        ("system_fingerprint", null()),
        ("choices", array(choice)),
    ]
}

const OBJECT_REQUIRED: &[&str] = &[
    "id",
    "object",
    "created",
    "model",
    "system_fingerprint",
    "choices",
];

fn completion() -> Value {
    let choice = record([
        ("index", integer()),
        (
            "message",
            closed(
                [
                    ("role", enum_of(&["assistant"])),
                    (
                        "content",
                        described(
                            nullable(string()),
                            "null when the answer only calls functions",
                        ),
                    ),
                    ("refusal", null()),
                    ("tool_calls", array(tool_call())),
                    ("function_call", legacy_function_call()),
                ],
                &["role", "content", "refusal"],
            ),
        ),
        ("logprobs", null()),
        (
            "finish_reason",
            enum_of(&["stop", "length", "tool_calls", "function_call"]),
        ),
    ]);
    let mut fields = object_fields("chat.completion", choice);
    fields.push(("usage", reference("CompletionUsage")));
    let mut required = OBJECT_REQUIRED.to_vec();
    required.push("usage");
    closed(fields, &required)
}

fn chunk() -> Value {
    let choice = record([
        ("index", integer()),
        (
            "delta",
            closed(
                [
                    ("role", enum_of(&["assistant"])),
                    ("content", string()),
                    (
                        "tool_calls",
                        described(
                            array(obj(
                                [
                                    ("index", integer()),
                                    ("id", string()),
                                    ("type", enum_of(&["function"])),
                                    ("function", legacy_function_call()),
                                ],
                                &["index", "id", "type", "function"],
                            )),
                            "One call per chunk, whole, once the model has finished it",
                        ),
                    ),
                    ("function_call", legacy_function_call()),
                ],
                &[],
            ),
        ),
        ("logprobs", null()),
        (
            "finish_reason",
            nullable(enum_of(&["stop", "length", "tool_calls", "function_call"])),
        ),
    ]);
    let mut fields = object_fields("chat.completion.chunk", choice);
    fields.push((
        "usage",
        described(
            nullable(reference("CompletionUsage")),
            "With `stream_options.include_usage` only: null on every chunk but the last, which \
             has no choices",
        ),
    ));
    closed(fields, OBJECT_REQUIRED)
}

pub fn components() -> Vec<(&'static str, Value)> {
    vec![
        ("ChatCompletionRequest", request()),
        ("ChatCompletion", completion()),
        ("ChatCompletionChunk", chunk()),
        (
            "ChatCompletionStreamEvent",
            described(
                one_of([reference("ChatCompletionChunk"), reference("OpenAiError")]),
                "A chunk, or the error that ended the stream",
            ),
        ),
        (
            "CompletionUsage",
            record([
                ("prompt_tokens", integer()),
                ("completion_tokens", integer()),
                ("total_tokens", integer()),
            ]),
        ),
        (
            "ModelList",
            record([
                ("object", literal(Value::from("list"))),
                ("data", array(reference("Model"))),
            ]),
        ),
        (
            "Model",
            record([
                ("id", described(string(), "The assistant's slug")),
                ("object", enum_of(&["model"])),
                ("created", integer()),
                ("owned_by", string()),
            ]),
        ),
        (
            "OpenAiError",
            record([(
                "error",
                record([
                    ("message", string()),
                    ("type", enum_of(&super::error::kinds())),
                    (
                        "param",
                        described(nullable(string()), "The request field at fault"),
                    ),
                    ("code", nullable(enum_of(&super::error::codes()))),
                ]),
            )]),
        ),
    ]
}
