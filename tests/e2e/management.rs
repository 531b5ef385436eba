//! `POST /v1/assistants` and `GET /v1/assistants/{id}`: creation, validation, tenant isolation.

use serde_json::{Value, json};

use crate::stack::{Options, Stack};

async fn post(stack: &Stack, key: &str, body: Value) -> (u16, Value) {
    let response = stack
        .http
        .post(stack.url("/v1/assistants"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_an_assistant_returns_201_with_id_and_slug() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let (status, created) = post(&stack, &stack.api_key, json!({"name": "Customer Support"})).await;
    assert_eq!(status, 201);
    assert_eq!(created["slug"], "customer-support");
    assert_eq!(created["model"], "builtin");
    assert_eq!(created["deployed"], true);
    let id = created["id"].as_str().unwrap();

    let (status, explicit) = post(
        &stack,
        &stack.api_key,
        json!({"name": "Sales", "slug": "sales-bot", "instructions": "Sell.", "model": "openai/gpt-4o-mini"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(explicit["slug"], "sales-bot");
    assert_eq!(explicit["model"], "openai/gpt-4o-mini");

    let read: Value = stack
        .http
        .get(stack.url(&format!("/v1/assistants/{id}")))
        .bearer_auth(&stack.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_assistants_are_refused_with_the_field_named() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let cases = [
        (json!({}), 400, "name"),
        (json!({"name": "  "}), 400, "name"),
        (json!({"name": "A", "model": "gpt-4"}), 400, "model"),
        (json!({"name": "A", "slug": "Not A Slug"}), 400, "slug"),
        (json!({"name": "!!!"}), 400, "slug"),
        (json!({"name": "A", "colour": "red"}), 400, "colour"),
    ];
    for (body, status, field) in cases {
        let (got, error) = post(&stack, &stack.api_key, body.clone()).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(error["error"]["code"], "invalid_request", "{body}");
        assert_eq!(error["error"]["details"]["field"], field, "{body}");
    }
    let (status, _) = post(&stack, &stack.api_key, json!({"name": "Twice"})).await;
    assert_eq!(status, 201);
    let (status, error) = post(&stack, &stack.api_key, json!({"name": "Twice"})).await;
    assert_eq!(status, 409);
    assert_eq!(error["error"]["code"], "conflict");
    let (status, error) = post(&stack, "cfk_wrong", json!({"name": "Nope"})).await;
    assert_eq!(status, 401);
    assert_eq!(error["error"]["code"], "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_s_assistant_is_a_404_everywhere() {
    let stack = Stack::start(Options::default()).await;
    let mine = stack.support_agent().await;
    let mut db = stack.db().await;
    let other = confab::admin::create_tenant(&mut db, "other")
        .await
        .unwrap();
    let other_key = other["api_key"].as_str().unwrap();

    let response = stack
        .http
        .get(stack.url(&format!("/v1/assistants/{}", mine["id"].as_str().unwrap())))
        .bearer_auth(other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = stack
        .http
        .post(stack.url("/v1/api/chat/support-agent"))
        .bearer_auth(other_key)
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Agent with slug 'support-agent' not found"
    );
}
