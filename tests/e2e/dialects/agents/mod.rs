//! Seed 001: agents by slug, JSON and SSE, with conversation continuity, in both reply modes;
//! its error envelopes are in `errors.rs`.

mod errors;

use confab::ReplyMode;
use serde_json::{Value, json};

use crate::support::stack::{Options, Stack, sse_data};

async fn json_reply_has_the_seed_shape(mode: ReplyMode) {
    let stack = Stack::start(Options::mode(mode)).await;
    let agent = stack.support_agent().await;
    let slug = agent["slug"].as_str().unwrap();
    assert_eq!(slug, "support-agent");

    let response = stack
        .chat(
            slug,
            json!({"message": "What are your business hours?", "stream": false}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], Value::Null);
    assert_eq!(
        body["data"]["response"],
        "Our business hours are 9:00 to 17:00, Monday to Friday."
    );
    assert!(
        body["data"]["conversationId"]
            .as_str()
            .unwrap()
            .starts_with("conv_")
    );
    assert_eq!(body["data"]["metadata"]["model"], "builtin");
    assert!(body["data"]["metadata"]["tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_reply_has_the_seed_shape_per_request_mode() {
    json_reply_has_the_seed_shape(ReplyMode::PerRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_reply_has_the_seed_shape_shared_mode() {
    json_reply_has_the_seed_shape(ReplyMode::Shared).await;
}

async fn streamed_reply_sends_chunks_then_done(mode: ReplyMode) {
    let stack = Stack::start(Options::mode(mode)).await;
    stack.support_agent().await;
    let response = stack
        .chat(
            "support-agent",
            json!({"message": "How fast are refunds processed?", "stream": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-cache")
    );
    let conversation_id = headers["x-conversation-id"].to_str().unwrap().to_owned();
    assert!(conversation_id.starts_with("conv_"));

    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<String> = data[..data.len() - 1]
        .iter()
        .map(|d| {
            let event: Value = serde_json::from_str(d).unwrap();
            event["chunk"].as_str().expect("a chunk event").to_owned()
        })
        .collect();
    assert!(
        chunks.len() >= 2,
        "the first token is sent on its own: {chunks:?}"
    );
    assert_eq!(
        chunks.concat(),
        "Refunds are processed within five business days."
    );

    // The streamed answer was stored under the conversation id of the header.
    let db = stack.db().await;
    let stored: String = db
        .query_one(
            "SELECT m.content FROM messages m JOIN conversations c ON c.pk = m.conversation_pk \
             WHERE c.id = $1 AND m.role = 'assistant'",
            &[&conversation_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, chunks.concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_reply_sends_chunks_then_done_per_request_mode() {
    streamed_reply_sends_chunks_then_done(ReplyMode::PerRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_reply_sends_chunks_then_done_shared_mode() {
    streamed_reply_sends_chunks_then_done(ReplyMode::Shared).await;
}

async fn a_conversation_continues_across_turns(mode: ReplyMode) {
    let stack = Stack::start(Options::mode(mode)).await;
    stack.support_agent().await;
    let first: Value = stack
        .chat(
            "support-agent",
            json!({"message": "My favourite colour is teal."}),
        )
        .await
        .json()
        .await
        .unwrap();
    let conversation_id = first["data"]["conversationId"].as_str().unwrap();

    // The second turn, streamed this time, sees the first.
    let second = stack
        .chat(
            "support-agent",
            json!({"message": "Which colour is my favourite?", "stream": true, "conversationId": conversation_id}),
        )
        .await;
    assert_eq!(second.headers()["x-conversation-id"], conversation_id);
    let text: String = sse_data(&second.text().await.unwrap())
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|e| e["chunk"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        text,
        "You told me earlier: \"My favourite colour is teal.\""
    );

    // A new conversation does not.
    let fresh: Value = stack
        .chat(
            "support-agent",
            json!({"message": "Which colour is my favourite?"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(fresh["data"]["conversationId"], conversation_id);
    assert!(
        !fresh["data"]["response"].as_str().unwrap().contains("teal"),
        "{fresh}"
    );

    let db = stack.db().await;
    let roles: Vec<String> = db
        .query(
            "SELECT m.role FROM messages m JOIN conversations c ON c.pk = m.conversation_pk \
             WHERE c.id = $1 ORDER BY m.pk",
            &[&conversation_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_continues_across_turns_per_request_mode() {
    a_conversation_continues_across_turns(ReplyMode::PerRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_continues_across_turns_shared_mode() {
    a_conversation_continues_across_turns(ReplyMode::Shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_s_new_conversation_example_with_a_null_id_starts_one() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let body: Value = stack
        .chat(
            "support-agent",
            json!({"message": "Hello", "conversationId": null}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["data"]["conversationId"]
            .as_str()
            .unwrap()
            .starts_with("conv_")
    );
    assert_eq!(body["error"], Value::Null);
}
