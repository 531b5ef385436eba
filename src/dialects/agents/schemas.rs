//! The seed 001 dialect's OpenAPI schemas. The request is open: fields other than `message`,
//! `stream` and `conversationId` are ignored, not refused.

use serde_json::Value;

use crate::http::openapi::schema::{
    boolean, closed, described, enum_of, integer, null, nullable, obj, one_of, record, reference,
    sources, string,
};

pub fn components() -> Vec<(&'static str, Value)> {
    vec![
        (
            "AgentsChatRequest",
            obj(
                [
                    (
                        "message",
                        described(string(), "The user's message; not blank"),
                    ),
                    (
                        "stream",
                        described(nullable(boolean()), "true: answer as SSE (default false)"),
                    ),
                    (
                        "conversationId",
                        described(
                            nullable(string()),
                            "Continue this conversation of the same agent (at most 200 \
                             characters); absent or null starts a new one",
                        ),
                    ),
                ],
                &["message"],
            ),
        ),
        (
            "AgentsReply",
            record([
                (
                    "data",
                    record([
                        ("response", string()),
                        ("conversationId", string()),
                        (
                            "metadata",
                            record([
                                ("model", string()),
                                ("tokens", described(integer(), "Prompt plus completion")),
                                ("sources", sources()),
                            ]),
                        ),
                    ]),
                ),
                ("error", null()),
            ]),
        ),
        (
            "AgentsError",
            record([
                ("data", null()),
                (
                    "error",
                    record([
                        ("name", enum_of(&super::error::names())),
                        ("message", string()),
                        (
                            "details",
                            described(
                                closed([("field", string())], &[]),
                                "`field` names the invalid field of a ValidationError",
                            ),
                        ),
                    ]),
                ),
            ]),
        ),
        (
            "AgentsStreamEvent",
            described(
                one_of([record([("chunk", string())]), reference("AgentsError")]),
                "A piece of the answer, or the error that ended the turn",
            ),
        ),
    ]
}
