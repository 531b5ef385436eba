//! Every SSE event of every dialect carries an `id:` naming its request (the `X-Request-Id` the
//! stream answered with) and its position from 1, and the first event a `retry:` hint, while
//! the `data:` payloads stay exactly the seeds' shapes (their own tests check those).

use reqwest::header::ACCEPT;
use serde_json::json;

use super::ai_hub::support::{SEED_ASSISTANT, seed_stack};
use crate::support::stack::{Options, Stack, request_id_of};

/// The SSE body's events (blocks of lines), leaving out keep-alive comments.
fn blocks(body: &str) -> Vec<Vec<&str>> {
    body.split("\n\n")
        .map(|block| {
            block
                .lines()
                .filter(|l| !l.starts_with(':'))
                .collect::<Vec<_>>()
        })
        .filter(|lines| !lines.is_empty())
        .collect()
}

fn field<'a>(block: &[&'a str], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Check a stream's ids and retry hint; the number of events.
async fn assert_ids(dialect: &str, response: reqwest::Response) -> usize {
    assert_eq!(response.status(), 200, "{dialect}");
    let request_id = request_id_of(&response);
    let body = response.text().await.unwrap();
    let blocks = blocks(&body);
    assert!(blocks.len() >= 2, "{dialect}: {body}");
    for (at, block) in blocks.iter().enumerate() {
        let expected = format!("{request_id}:{}", at + 1);
        assert_eq!(
            field(block, "id"),
            Some(expected.as_str()),
            "{dialect}: {block:?}"
        );
        assert!(field(block, "data").is_some(), "{dialect}: {block:?}");
    }
    assert_eq!(field(&blocks[0], "retry"), Some("3000"), "{dialect}");
    assert!(blocks[1..].iter().all(|b| field(b, "retry").is_none()));
    blocks.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sse_event_of_every_dialect_names_its_request_and_position() {
    let stack: Stack = seed_stack(Options::default()).await;
    let agent = stack.support_agent().await;
    let post = |path: &str, body: serde_json::Value| {
        stack
            .http
            .post(stack.url(path))
            .bearer_auth(&stack.api_key)
            .header(ACCEPT, "text/event-stream")
            .json(&body)
            .send()
    };
    let agents = post(
        "/v1/api/chat/support-agent",
        json!({"message": "Hours?", "stream": true}),
    );
    assert_ids("agents", agents.await.unwrap()).await;
    let ai_hub = post(
        "/api/ai-hub/assistant/ask",
        json!({"message": {"id": "m1", "role": "user", "content": "Reset my password?"},
               "id": "conv-ids", "assistantId": SEED_ASSISTANT}),
    );
    assert_ids("ai_hub", ai_hub.await.unwrap()).await;
    let openai = post(
        "/v1/chat/completions",
        json!({"model": "support-agent", "stream": true,
               "messages": [{"role": "user", "content": "Hours?"}]}),
    );
    assert_ids("openai", openai.await.unwrap()).await;

    let (_, identity) = stack
        .api("POST", "/v1/identities", Some(json!({"name": "Ada"})))
        .await;
    let (_, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(json!({"name": "Web", "kind": "web", "assistant_id": agent["id"]})),
        )
        .await;
    let streaming = stack
        .http
        .get(stack.url(&format!(
            "/conversation/{}/streaming?channel_id={}&message=Hello",
            identity["id"].as_str().unwrap(),
            channel["id"].as_str().unwrap()
        )))
        .bearer_auth(&stack.api_key)
        .send();
    assert_ids("identity_chat", streaming.await.unwrap()).await;
}
