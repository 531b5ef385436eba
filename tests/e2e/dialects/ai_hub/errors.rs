//! Seed 002's errors, each provoked for real: `{success: false, error, ...}` with the seed's
//! fields (`issues`, `retry_after`, `assistant_id`) and statuses.

use std::time::Duration;

use reqwest::header::ACCEPT;
use serde_json::{Value, json};
use uuid::Uuid;

use super::support::{
    SEED_ASSISTANT, SEED_FOLDERS, ask, ask_json, insert_assistant, insert_folder, seed_stack,
};
use crate::support::stack::{Options, Stack, sse_data};

fn question(assistant_id: &str) -> Value {
    json!({
        "message": {"role": "user", "content": "What are your business hours?"},
        "id": "conv_errors",
        "assistantId": assistant_id,
    })
}

async fn message_count(stack: &Stack) -> i64 {
    let db = stack.db().await;
    db.query_one("SELECT count(*) FROM messages", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_unknown_keys_get_401_in_the_dialect_shape() {
    let stack = seed_stack(Options::default()).await;
    let url = stack.url("/api/ai-hub/assistant/ask");
    let body = question(SEED_ASSISTANT);
    let attempts = [
        stack.http.post(&url).json(&body),
        stack
            .http
            .post(&url)
            .bearer_auth("cfk_not-a-real-key")
            .json(&body),
        stack
            .http
            .post(&url)
            .header("authorization", "Basic abc")
            .json(&body),
    ];
    for attempt in attempts {
        let response = attempt.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"], "Unauthorized");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_field_is_listed_in_one_400() {
    let stack = seed_stack(Options::default()).await;
    let (status, body) = ask_json(
        &stack,
        &json!({"message": {"role": "user", "content": "hi"}, "id": "c"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({
            "success": false,
            "error": "Message parse problem from ask assistant",
            "issues": [{"field": "assistantId", "message": "The assistant id is required!"}],
        })
    );

    let (status, body) = ask_json(
        &stack,
        &json!({
            "message": {"id": 5, "role": "robot", "content": "", "createdAt": "20 Jan 2024"},
            "id": "",
            "metadata": "web",
            "foldersId": [SEED_FOLDERS[0], "not-a-uuid", Uuid::new_v4()],
            "previewAssistantData": {"name": "", "model": "gpt-4"},
        }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["success"], false);
    let fields: Vec<&str> = body["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| {
            assert!(issue["message"].as_str().is_some_and(|m| !m.is_empty()));
            issue["field"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        fields,
        [
            "message.id",
            "message.role",
            "message.content",
            "message.createdAt",
            "id",
            "assistantId",
            "metadata",
            "foldersId[1]",
            "foldersId[2]",
            "previewAssistantData.name",
            "previewAssistantData.model",
        ]
    );
    assert_eq!(message_count(&stack).await, 0, "nothing was queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_and_non_object_bodies_are_an_issue_on_body() {
    let stack = seed_stack(Options::default()).await;
    for raw in ["{\"message\": \"unterminated", "[1, 2]", "\"hello\"", ""] {
        let response = stack
            .http
            .post(stack.url("/api/ai-hub/assistant/ask"))
            .bearer_auth(&stack.api_key)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{raw}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "Message parse problem from ask assistant");
        assert_eq!(body["issues"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["issues"][0]["field"], "body");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_of_another_tenant_or_none_at_all_are_issues_on_their_positions() {
    let stack = seed_stack(Options::default()).await;
    let mut db = stack.db().await;
    let other = confab::cli::admin::create_tenant(&mut db, "other tenant")
        .await
        .unwrap();
    let other_tenant = Uuid::parse_str(other["tenant_id"].as_str().unwrap()).unwrap();
    let foreign = Uuid::new_v4().to_string();
    insert_folder(&stack, other_tenant, &foreign).await;
    let mut body = question(SEED_ASSISTANT);
    body["foldersId"] = json!([SEED_FOLDERS[0], foreign, Uuid::new_v4()]);
    let (status, body) = ask_json(&stack, &body).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["issues"],
        json!([
            {"field": "foldersId[1]", "message": "The folder does not exist"},
            {"field": "foldersId[2]", "message": "The folder does not exist"},
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_undeployed_and_foreign_assistants_get_the_seed_404() {
    let stack = seed_stack(Options::default()).await;
    let mut db = stack.db().await;
    let other = confab::cli::admin::create_tenant(&mut db, "other tenant")
        .await
        .unwrap();
    let other_tenant = Uuid::parse_str(other["tenant_id"].as_str().unwrap()).unwrap();
    let foreign = Uuid::new_v4().to_string();
    insert_assistant(&stack, other_tenant, &foreign, "Theirs").await;
    let unknown = Uuid::new_v4().to_string();
    for assistant_id in [unknown.as_str(), foreign.as_str(), "preview_assistant"] {
        let (status, body) = ask_json(&stack, &question(assistant_id)).await;
        assert_eq!(status, 404, "{assistant_id}");
        assert_eq!(
            body,
            json!({"success": false, "error": "Assistant not found or not deployed", "assistant_id": assistant_id})
        );
    }
    let (status, _) = ask_json(&stack, &question(SEED_ASSISTANT)).await;
    assert_eq!(status, 200, "deployed, it answers");
    db.execute("UPDATE assistants SET deployed = false", &[])
        .await
        .unwrap();
    let (status, body) = ask_json(&stack, &question(SEED_ASSISTANT)).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"success": false, "error": "Assistant not found or not deployed", "assistant_id": SEED_ASSISTANT})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_limit_gets_the_seed_429_with_retry_after() {
    let stack = seed_stack(Options {
        rate_limit_per_min: 2,
        ..Options::default()
    })
    .await;
    // The burst of two passes, then one request per 30 s (what the time taken refilled).
    let started = std::time::Instant::now();
    let mut passed = 0;
    let response = loop {
        let response = ask(&stack, &question(SEED_ASSISTANT)).await;
        if response.status() != 200 {
            break response;
        }
        passed += 1;
        assert!(passed <= 4, "the limit was not enforced");
    };
    let refilled = started.elapsed().as_secs() / 30;
    assert!((2..=2 + refilled).contains(&passed), "{passed} passed");
    assert_eq!(response.status(), 429);
    let header: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"success": false, "error": "Rate limit exceeded", "retry_after": header})
    );
    // The next request is at most one emission interval away.
    assert!((1..=30).contains(&header), "{header}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_gets_503_with_retry_after() {
    let stack = seed_stack(Options {
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        workers: 0,
        ..Options::default()
    })
    .await;
    let response = ask(&stack, &question(SEED_ASSISTANT)).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert!(body["retry_after"].as_u64().unwrap() >= 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_past_the_deadline_gets_504_or_a_final_error_event() {
    let stack = seed_stack(Options {
        deadline: Duration::from_secs(1),
        builtin_token_delay: Duration::from_millis(400),
        ..Options::default()
    })
    .await;
    let (status, body) = ask_json(&stack, &question(SEED_ASSISTANT)).await;
    assert_eq!(status, 504);
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "The assistant did not answer in time");

    let mut streamed = question(SEED_ASSISTANT);
    streamed["id"] = json!("conv_errors_sse");
    let response = stack
        .http
        .post(stack.url("/api/ai-hub/assistant/ask"))
        .bearer_auth(&stack.api_key)
        .header(ACCEPT, "text/event-stream")
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events: Vec<Value> = sse_data(&response.text().await.unwrap())
        .iter()
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let (last, tokens) = events.split_last().unwrap();
    assert!(
        tokens.iter().all(|event| event["type"] == "token"),
        "{events:?}"
    );
    assert_eq!(last["type"], "error");
    assert_eq!(last["success"], false);
    assert_eq!(last["error"], "The assistant did not answer in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_database_gets_500_in_the_dialect_shape() {
    let stack = seed_stack(Options::default()).await;
    crate::support::stack::drop_database(&stack.database).await;
    let (status, body) = ask_json(&stack, &question(SEED_ASSISTANT)).await;
    assert_eq!(status, 500);
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "Internal server error");
}
