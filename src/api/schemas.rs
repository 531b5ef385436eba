//! The management API's OpenAPI schemas. Request bodies are closed: every handler refuses a field
//! it does not know (each body struct is `deny_unknown_fields`). `null` counts as absent for optional fields.

use serde_json::Value;

use crate::http::openapi::schema::{
    any_object, array, boolean, closed, date_time, described, enum_of, integer, nullable, one_of,
    page, record, string, uuid,
};
use crate::store::channels::KINDS;

/// A string of at most `max` characters that is not blank (stored trimmed).
fn text(max: u32) -> Value {
    described(string(), &format!("Not blank, at most {max} characters"))
}

fn opt(schema: Value) -> Value {
    nullable(schema)
}

fn assistant_fields(create: bool) -> Vec<(&'static str, Value)> {
    let name = text(200);
    vec![
        ("name", if create { name } else { opt(name) }),
        (
            "slug",
            described(
                opt(string()),
                "Lowercase letters and digits in hyphen-separated words, at most 64 characters; \
                 made from the name when absent",
            ),
        ),
        ("description", opt(string())),
        ("instructions", opt(string())),
        (
            "model",
            described(
                opt(string()),
                "`builtin` (default) or `openai/<model-name>`",
            ),
        ),
        (
            "deployed",
            described(
                opt(boolean()),
                "Only deployed assistants answer (default true)",
            ),
        ),
        (
            "folder_ids",
            described(
                opt(array(uuid())),
                "Knowledge folders searched when a request names none",
            ),
        ),
        (
            "tools",
            described(
                opt(array(tool_write())),
                "Functions the assistant calls itself while it answers (an OpenAI-compatible \
                 model only); replaces the list",
            ),
        ),
    ]
}

/// An assistant's tool as a create or update body gives it.
fn tool_write() -> Value {
    closed(
        [
            (
                "type",
                described(
                    enum_of(&["http", "mcp", "memory"]),
                    "`memory` (no other field): the model may record what it learns about the \
                     identity, as the memory API would",
                ),
            ),
            (
                "name",
                described(
                    opt(string()),
                    "`http`, required: 1 to 64 letters, digits, `_` or `-`",
                ),
            ),
            ("description", opt(string())),
            (
                "parameters",
                described(opt(any_object()), "`http`: the arguments' JSON Schema"),
            ),
            (
                "url",
                described(
                    opt(string()),
                    "Required for `http` (called with a POST of the arguments) and `mcp` (the \
                     server's streamable HTTP endpoint)",
                ),
            ),
            (
                "allowed_tools",
                described(
                    opt(array(string())),
                    "`mcp`: the server's tools offered (default all)",
                ),
            ),
            (
                "timeout_ms",
                described(opt(integer()), "1 to 60000, default 10000"),
            ),
            (
                "secret",
                described(
                    opt(string()),
                    "`http`, required: 16 to 256 characters; signs each call \
                     (`X-Confab-Signature`). Write-only; on update, a tool sent without it \
                     keeps its own",
                ),
            ),
        ],
        &["type"],
    )
}

/// An assistant's tool as the API shows it.
fn tool_view() -> Value {
    one_of([
        record([
            ("type", enum_of(&["http"])),
            ("name", string()),
            ("description", string()),
            ("parameters", any_object()),
            ("url", string()),
            ("timeout_ms", integer()),
        ]),
        record([
            ("type", enum_of(&["mcp"])),
            ("url", string()),
            ("allowed_tools", nullable(array(string()))),
            ("timeout_ms", integer()),
        ]),
        record([("type", enum_of(&["memory"]))]),
    ])
}

fn key_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("id", uuid()),
        ("name", string()),
        (
            "prefix",
            described(string(), "The key's first characters, to recognise it"),
        ),
        (
            "rate_limit_per_min",
            described(
                nullable(integer()),
                "The key's own limit; null: the deployment's default",
            ),
        ),
        ("created_at", date_time()),
        ("revoked_at", nullable(date_time())),
    ]
}

fn resources() -> Vec<(&'static str, Value)> {
    let mut created_key = key_fields();
    created_key.push((
        "api_key",
        described(string(), "The secret; shown here and never again"),
    ));
    vec![
        (
            "Assistant",
            record([
                ("id", uuid()),
                ("name", string()),
                ("slug", string()),
                ("description", string()),
                ("instructions", string()),
                ("model", string()),
                ("deployed", boolean()),
                ("folder_ids", array(uuid())),
                (
                    "tools",
                    described(array(tool_view()), "Without their secrets"),
                ),
                ("created_at", date_time()),
                ("updated_at", date_time()),
            ]),
        ),
        (
            "Channel",
            record([
                ("id", uuid()),
                ("name", string()),
                ("kind", enum_of(KINDS)),
                ("assistant_id", uuid()),
                (
                    "config_keys",
                    described(array(string()), "The config's keys; values are never shown"),
                ),
                ("created_at", date_time()),
                ("updated_at", date_time()),
            ]),
        ),
        (
            "Identity",
            record([
                ("id", uuid()),
                ("name", nullable(string())),
                ("external_id", nullable(string())),
                ("profile", any_object()),
                ("created_at", date_time()),
                ("updated_at", date_time()),
            ]),
        ),
        (
            "Folder",
            record([
                ("id", uuid()),
                ("name", string()),
                ("language", string()),
                ("created_at", date_time()),
            ]),
        ),
        ("Key", record(key_fields())),
        ("CreatedKey", record(created_key)),
        (
            "Conversation",
            record([
                ("id", string()),
                ("assistant_id", nullable(uuid())),
                ("identity_id", nullable(uuid())),
                ("channel_id", nullable(uuid())),
                ("message_count", integer()),
                ("created_at", date_time()),
                ("updated_at", date_time()),
                ("closed_at", nullable(date_time())),
            ]),
        ),
        (
            "Message",
            record([
                ("id", string()),
                ("role", enum_of(&["user", "assistant", "system", "tool"])),
                ("content", string()),
                (
                    "status",
                    described(
                        enum_of(&["complete", "interrupted"]),
                        "`interrupted`: an answer cut short",
                    ),
                ),
                (
                    "answers",
                    described(nullable(string()), "The user turn an answer answers"),
                ),
                ("model", nullable(string())),
                ("prompt_tokens", nullable(integer())),
                ("completion_tokens", nullable(integer())),
                ("metadata", any_object()),
                (
                    "delivery_status",
                    described(
                        nullable(enum_of(&[
                            "accepted",
                            "sent",
                            "delivered",
                            "read",
                            "failed",
                        ])),
                        "For an answer sent to a channel platform (WhatsApp, Telegram): how far \
                         it got; never moves backwards",
                    ),
                ),
                (
                    "delivery_error",
                    described(
                        nullable(any_object()),
                        "Why the platform could not deliver the answer",
                    ),
                ),
                (
                    "tool_calls",
                    described(
                        nullable(array(record([
                            ("id", string()),
                            ("name", string()),
                            (
                                "arguments",
                                described(string(), "JSON, as the model wrote it"),
                            ),
                        ]))),
                        "For an assistant turn that called the caller's functions (OpenAI \
                         tools): the calls",
                    ),
                ),
                (
                    "tool_call_id",
                    described(
                        nullable(string()),
                        "For a `tool` turn: the call whose result it is",
                    ),
                ),
                ("created_at", date_time()),
            ]),
        ),
    ]
}

fn requests() -> Vec<(&'static str, Value)> {
    let config = described(
        opt(any_object()),
        "Secrets and settings of the channel; on update merged in, a key set to null removed",
    );
    let profile = described(
        opt(any_object()),
        "On update merged into the stored profile, a key set to null removed",
    );
    vec![
        ("AssistantCreate", closed(assistant_fields(true), &["name"])),
        ("AssistantUpdate", closed(assistant_fields(false), &[])),
        (
            "ChannelCreate",
            closed(
                [
                    ("name", text(200)),
                    ("kind", enum_of(KINDS)),
                    ("assistant_id", described(uuid(), "One of your assistants")),
                    ("config", config.clone()),
                ],
                &["name", "kind", "assistant_id"],
            ),
        ),
        (
            "ChannelUpdate",
            closed(
                [
                    ("name", opt(text(200))),
                    ("assistant_id", opt(uuid())),
                    ("config", config),
                ],
                &[],
            ),
        ),
        (
            "IdentityCreate",
            closed(
                [
                    ("name", opt(text(200))),
                    (
                        "external_id",
                        described(opt(text(200)), "Your id for the person; unique"),
                    ),
                    ("profile", profile.clone()),
                ],
                &[],
            ),
        ),
        (
            "IdentityUpdate",
            closed(
                [
                    ("name", opt(text(200))),
                    ("external_id", opt(text(200))),
                    ("profile", profile),
                ],
                &[],
            ),
        ),
        (
            "FolderCreate",
            closed(
                [
                    ("name", text(200)),
                    (
                        "language",
                        described(
                            opt(string()),
                            "A Postgres text search configuration (default `english`)",
                        ),
                    ),
                ],
                &["name"],
            ),
        ),
        (
            "KeyCreate",
            closed(
                [
                    ("name", described(opt(text(200)), "Default `api`")),
                    (
                        "rate_limit_per_min",
                        described(opt(integer()), "A positive limit of the key's own"),
                    ),
                ],
                &[],
            ),
        ),
        (
            "KeyUpdate",
            closed(
                [(
                    "rate_limit_per_min",
                    described(
                        opt(integer()),
                        "A positive limit of the key's own; null: the deployment's default",
                    ),
                )],
                &["rate_limit_per_min"],
            ),
        ),
    ]
}

pub fn components() -> Vec<(&'static str, Value)> {
    let details = described(
        closed([("field", string())], &[]),
        "`field` names the field at fault",
    );
    let mut all = vec![(
        "ApiError",
        record([(
            "error",
            record([
                ("code", enum_of(&super::error::codes())),
                ("message", string()),
                ("details", details),
            ]),
        )]),
    )];
    all.extend(resources());
    all.extend(requests());
    for (page_name, item) in [
        ("AssistantPage", "Assistant"),
        ("ChannelPage", "Channel"),
        ("IdentityPage", "Identity"),
        ("FolderPage", "Folder"),
        ("KeyPage", "Key"),
        ("ConversationPage", "Conversation"),
        ("MessagePage", "Message"),
    ] {
        all.push((page_name, page(item)));
    }
    all
}
