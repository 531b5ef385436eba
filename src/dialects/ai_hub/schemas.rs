//! The seed 002 dialect's OpenAPI schemas. The request is open at every level: fields the
//! dialect does not know are ignored, not refused; `null` counts as absent for optional fields.

use serde_json::Value;

use crate::http::openapi::schema::{
    any_object, array, closed, date_time, described, enum_of, integer, literal, nullable, obj,
    one_of, record, reference, string, uuid,
};

const ROLES: &[&str] = &["user", "assistant", "system"];

fn request() -> Value {
    let message = obj(
        [
            (
                "id",
                described(
                    nullable(string()),
                    "The turn's idempotency key, at most 200 characters (minted when absent)",
                ),
            ),
            (
                "role",
                described(
                    enum_of(ROLES),
                    "`user` is answered; `system` and `assistant` are stored without a model call",
                ),
            ),
            ("content", described(string(), "Not blank")),
            ("createdAt", nullable(date_time())),
        ],
        &["role", "content"],
    );
    let preview = obj(
        [
            ("name", string()),
            ("description", nullable(string())),
            ("instructions", nullable(string())),
            (
                "model",
                described(
                    nullable(string()),
                    "`builtin` (default) or `openai/<model-name>`",
                ),
            ),
        ],
        &["name"],
    );
    obj(
        [
            ("message", message),
            (
                "id",
                described(
                    string(),
                    "The conversation, chosen by the client (at most 200 characters)",
                ),
            ),
            (
                "assistantId",
                described(
                    string(),
                    "A deployed assistant's UUID; any string with previewAssistantData",
                ),
            ),
            (
                "metadata",
                described(
                    nullable(any_object()),
                    "Stored with the turn, top-level keys lowercased",
                ),
            ),
            (
                "foldersId",
                described(
                    nullable(array(uuid())),
                    "Folders of the caller, at most 100",
                ),
            ),
            (
                "previewAssistantData",
                described(nullable(preview), "An unsaved assistant answers instead"),
            ),
        ],
        &["message", "id", "assistantId"],
    )
}

/// The fields of a success body (also of a stream's `done` event).
fn reply_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("success", literal(Value::Bool(true))),
        ("message", reference("AiHubMessage")),
        (
            "metadata",
            record([
                (
                    "processing_time",
                    described(integer(), "ms from request to answer"),
                ),
                (
                    "tokens_used",
                    described(integer(), "Prompt plus completion tokens"),
                ),
                (
                    "knowledge_sources",
                    described(
                        array(string()),
                        "Titles of the documents the answer drew on",
                    ),
                ),
            ]),
        ),
    ]
}

const REPLY_REQUIRED: &[&str] = &["success", "message", "metadata"];

/// The fields of an error body (also of a stream's `error` event).
fn error_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("success", literal(Value::Bool(false))),
        ("error", enum_of(&super::error::phrases())),
        (
            "issues",
            described(
                array(record([("field", string()), ("message", string())])),
                "Every invalid field (400)",
            ),
        ),
        ("retry_after", described(integer(), "Seconds (429, 503)")),
        (
            "assistant_id",
            described(string(), "The `assistantId` as sent (404)"),
        ),
        (
            "message",
            described(string(), "The reason, where there is one"),
        ),
    ]
}

fn with_type(kind: &str, mut fields: Vec<(&'static str, Value)>) -> Vec<(&'static str, Value)> {
    fields.push(("type", enum_of(&[kind])));
    fields
}

pub fn components() -> Vec<(&'static str, Value)> {
    let mut reply_required = REPLY_REQUIRED.to_vec();
    reply_required.push("type");
    vec![
        ("AiHubAskRequest", request()),
        (
            "AiHubMessage",
            record([
                ("id", string()),
                ("role", enum_of(ROLES)),
                ("content", string()),
                ("createdAt", date_time()),
            ]),
        ),
        ("AiHubReply", closed(reply_fields(), REPLY_REQUIRED)),
        ("AiHubError", closed(error_fields(), &["success", "error"])),
        (
            "AiHubStreamEvent",
            one_of([
                record([("type", enum_of(&["token"])), ("content", string())]),
                closed(with_type("done", reply_fields()), &reply_required),
                closed(
                    with_type("error", error_fields()),
                    &["type", "success", "error"],
                ),
            ]),
        ),
    ]
}
