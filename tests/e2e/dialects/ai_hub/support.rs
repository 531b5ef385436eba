//! What the seed 002 tests share: a stack holding the seed's assistant and folders, requests to
//! the ask route, and checks of the seed's response shape and of what was stored.

use reqwest::header::ACCEPT;
use serde_json::Value;
use uuid::Uuid;

use crate::support::stack::{Options, Stack, sse_data};

pub const SEED_ASSISTANT: &str = "550e8400-e29b-41d4-a716-446655440001";
pub const SEED_FOLDERS: [&str; 2] = [
    "550e8400-e29b-41d4-a716-446655440000",
    "550e8400-e29b-41d4-a716-446655440003",
];
/// The seed assistant's instructions, from which the built-in model answers.
const INSTRUCTIONS: &str = "To reset your password, go to the login page and click on Forgot \
    Password. The reset link will expire in 24 hours. Our business hours are 9:00 to 17:00, \
    Monday to Friday.";
pub const RESET_ANSWER: &str =
    "To reset your password, go to the login page and click on Forgot Password.";
pub const HOURS_ANSWER: &str = "Our business hours are 9:00 to 17:00, Monday to Friday.";

pub async fn tenant_id(stack: &Stack) -> Uuid {
    let db = stack.db().await;
    db.query_one("SELECT tenant_id FROM api_keys LIMIT 1", &[])
        .await
        .unwrap()
        .get(0)
}

pub async fn insert_assistant(stack: &Stack, tenant: Uuid, id: &str, name: &str) {
    let slug = format!("a-{}", &id[..8]);
    stack
        .db()
        .await
        .execute(
            "INSERT INTO assistants (id, tenant_id, name, slug, instructions) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &Uuid::parse_str(id).unwrap(),
                &tenant,
                &name,
                &slug,
                &INSTRUCTIONS,
            ],
        )
        .await
        .unwrap();
}

pub async fn insert_folder(stack: &Stack, tenant: Uuid, id: &str) {
    stack
        .db()
        .await
        .execute(
            "INSERT INTO folders (id, tenant_id, name) VALUES ($1, $2, $3)",
            &[
                &Uuid::parse_str(id).unwrap(),
                &tenant,
                &format!("folder {id}"),
            ],
        )
        .await
        .unwrap();
}

/// A stack whose tenant has the seed's assistant (deployed) and folders, under the seed's ids.
pub async fn seed_stack(options: Options) -> Stack {
    let stack = Stack::start(options).await;
    let tenant = tenant_id(&stack).await;
    insert_assistant(&stack, tenant, SEED_ASSISTANT, "Support Agent").await;
    for folder in SEED_FOLDERS {
        insert_folder(&stack, tenant, folder).await;
    }
    stack
}

pub async fn ask(stack: &Stack, body: &Value) -> reqwest::Response {
    stack
        .http
        .post(stack.url("/api/ai-hub/assistant/ask"))
        .bearer_auth(&stack.api_key)
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn ask_json(stack: &Stack, body: &Value) -> (u16, Value) {
    let response = ask(stack, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The SSE `data:` payloads of an ask sent with `Accept: text/event-stream`, and the content type.
pub async fn ask_streamed(stack: &Stack, body: &Value) -> (String, Vec<Value>) {
    let response = stack
        .http
        .post(stack.url("/api/ai-hub/assistant/ask"))
        .bearer_auth(&stack.api_key)
        .header(ACCEPT, "text/event-stream")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let events = sse_data(&response.text().await.unwrap())
        .iter()
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    (content_type, events)
}

/// An object's keys, sorted.
pub fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// RFC 3339 UTC with milliseconds, e.g. `2024-01-20T15:30:05.000Z`.
pub fn assert_timestamp(text: &Value) {
    let text = text.as_str().unwrap();
    let shape: String = text
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-ddTdd:dd:dd.dddZ", "{text}");
}

/// The seed's response: exactly `success`, `message{id, role, content, createdAt}` and
/// `metadata{processing_time, tokens_used, knowledge_sources}`. Returns the message.
pub fn assert_success(body: &Value, role: &str) -> Value {
    assert_eq!(keys(body), ["message", "metadata", "success"], "{body}");
    assert_eq!(body["success"], true);
    let message = &body["message"];
    assert_eq!(keys(message), ["content", "createdAt", "id", "role"]);
    assert_eq!(message["role"], role);
    assert!(message["id"].is_string());
    assert_timestamp(&message["createdAt"]);
    let metadata = &body["metadata"];
    assert_eq!(
        keys(metadata),
        ["knowledge_sources", "processing_time", "tokens_used"]
    );
    assert!(metadata["processing_time"].is_u64());
    assert!(metadata["tokens_used"].is_u64());
    assert!(metadata["knowledge_sources"].is_array());
    message.clone()
}

/// A model's answer in the seed's response shape, with its tokens counted. Returns the message.
pub fn assert_answer(body: &Value) -> Value {
    assert!(
        body["metadata"]["tokens_used"].as_u64().unwrap() > 0,
        "{body}"
    );
    assert_success(body, "assistant")
}

/// `(role, content, metadata)` of a conversation's messages, oldest first.
pub async fn stored(stack: &Stack, conversation: &str) -> Vec<(String, String, Value)> {
    let db = stack.db().await;
    db.query(
        "SELECT m.role, m.content, m.metadata FROM messages m \
         JOIN conversations c ON c.pk = m.conversation_pk WHERE c.id = $1 ORDER BY m.pk",
        &[&conversation],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}
