//! The seed 000 dialect's OpenAPI schemas. The chat request is open: fields other than `text`,
//! `metadata` and `new_conversation` are ignored, not refused.

use serde_json::Value;

use crate::http::openapi::schema::{
    any_object, boolean, date_time, described, enum_of, integer, null, nullable, obj, record,
    sources, string, uuid,
};

fn usage() -> Value {
    record([
        ("prompt_tokens", integer()),
        ("completion_tokens", integer()),
        ("total_tokens", integer()),
    ])
}

pub fn components() -> Vec<(&'static str, Value)> {
    vec![
        (
            "ChannelChatRequest",
            obj(
                [
                    (
                        "text",
                        described(string(), "The identity's message; not blank"),
                    ),
                    (
                        "metadata",
                        described(nullable(any_object()), "Stored with the user's turn"),
                    ),
                    (
                        "new_conversation",
                        described(
                            nullable(boolean()),
                            "true: close the identity's conversation on this channel and start anew",
                        ),
                    ),
                ],
                &["text"],
            ),
        ),
        (
            "ChannelChatReply",
            record([
                ("message", string()),
                (
                    "data",
                    record([
                        ("response", string()),
                        ("conversation_id", string()),
                        ("message_id", described(string(), "The user's turn")),
                        ("response_message_id", described(string(), "The answer")),
                        ("identity_id", uuid()),
                        ("channel_id", uuid()),
                        ("assistant_id", uuid()),
                        ("model", string()),
                        ("usage", usage()),
                        ("sources", sources()),
                    ]),
                ),
            ]),
        ),
        (
            "ChannelChatStreamEvent",
            described(
                record([
                    ("type", enum_of(&["token", "complete", "error"])),
                    ("content", string()),
                ]),
                "`token`: a piece of the answer; `complete`: the whole answer, last; `error`: \
                 why the turn failed, last",
            ),
        ),
        (
            "ChannelChatError",
            record([
                ("message", string()),
                ("data", null()),
                ("error", record([("code", enum_of(&super::error::codes()))])),
            ]),
        ),
        (
            "StreamTokenRequest",
            record([
                (
                    "identity_id",
                    described(uuid(), "The identity whose stream the token starts"),
                ),
                ("channel_id", described(uuid(), "The channel it streams on")),
            ]),
        ),
        (
            "StreamToken",
            record([
                (
                    "token",
                    described(string(), "Pass as `token=` to the streaming route"),
                ),
                ("expires_at", date_time()),
                ("expires_in", described(integer(), "Seconds")),
            ]),
        ),
    ]
}
