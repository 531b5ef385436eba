//! The OpenAI dialect's errors, each provoked for real: `{"error": {message, type, param, code}}`
//! with the status codes OpenAI's SDKs map to their exception classes.

use std::time::Duration;

use serde_json::{Value, json};

use super::{completions, user};
use crate::support::stack::{Options, Stack, sse_data};

/// Status and `error` object of an error response, checked to have all four fields.
async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    let error = body["error"].clone();
    for field in ["message", "type", "param", "code"] {
        assert!(error.get(field).is_some(), "no {field}: {body}");
    }
    assert!(error["message"].is_string(), "{body}");
    (status, error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_missing_or_unknown_keys_get_401_invalid_api_key() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let body = json!({"model": "support-agent", "messages": [user("hi")]});
    let url = stack.url("/v1/chat/completions");
    let attempts = [
        stack.http.post(&url).json(&body),
        stack.http.post(&url).bearer_auth("cfk_wrong").json(&body),
        stack.http.get(stack.url("/v1/models")),
    ];
    for attempt in attempts {
        let (status, error) = error_of(attempt.send().await.unwrap()).await;
        assert_eq!(status, 401);
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["code"], "invalid_api_key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_invalid_bodies_get_400_naming_the_param() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let hi = json!([user("hi")]);
    let cases = [
        (json!({"messages": hi}), "model"),
        (json!({"model": "support-agent"}), "messages"),
        (
            json!({"model": "support-agent", "messages": hi, "n": 2}),
            "n",
        ),
        (
            json!({"model": "support-agent", "messages": [user("hi"), {"role": "assistant", "content": "ok"}]}),
            "messages[1].role",
        ),
        (
            json!({"model": "support-agent", "messages": [{"role": "tool", "content": "x"}, user("hi")]}),
            "messages[0].tool_call_id",
        ),
        (
            json!({"model": "support-agent", "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "support-agent", "messages": hi, "stream": "yes"}),
            "stream",
        ),
    ];
    for (body, param) in cases {
        let (status, error) = error_of(completions(&stack, body.clone()).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["param"], param, "{body}");
    }
    let malformed = stack
        .http
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(&stack.api_key)
        .header("content-type", "application/json")
        .body("{\"model\": \"support-agent\", ")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(malformed).await;
    assert_eq!(status, 400);
    assert_eq!(error["type"], "invalid_request_error");
    let oversized = completions(
        &stack,
        json!({"model": "support-agent", "messages": [user(&"a".repeat(70_000))]}),
    )
    .await;
    let (status, error) = error_of(oversized).await;
    assert_eq!(status, 413);
    assert_eq!(error["type"], "invalid_request_error");

    // Nothing was queued or stored for any of them.
    let stored: i64 = stack
        .db()
        .await
        .query_one("SELECT count(*) FROM messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_unknown_or_undeployed_models_get_404_model_not_found() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    stack.create_assistant(json!({"name": "Sales Bot"})).await;
    stack
        .db()
        .await
        .execute(
            "UPDATE assistants SET deployed = false WHERE slug = 'sales-bot'",
            &[],
        )
        .await
        .unwrap();
    for model in ["gpt-4o", "sales-bot"] {
        let response = completions(&stack, json!({"model": model, "messages": [user("hi")]})).await;
        let (status, error) = error_of(response).await;
        assert_eq!(status, 404);
        assert_eq!(error["code"], "model_not_found");
        assert_eq!(error["param"], "model");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("The model '{model}' does not exist")),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_a_conversation_of_another_assistant_gets_404() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    stack.create_assistant(json!({"name": "Sales Bot"})).await;
    let body = |model: &str| json!({"model": model, "conversation_id": "shared-name", "messages": [user("hi")]});
    assert_eq!(
        completions(&stack, body("support-agent")).await.status(),
        200
    );
    let (status, error) = error_of(completions(&stack, body("sales-bot")).await).await;
    assert_eq!(status, 404);
    assert_eq!(error["code"], "conversation_not_found");
    assert_eq!(error["param"], "conversation_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_a_key_over_its_limit_gets_429_rate_limit_exceeded_with_retry_after() {
    let stack = Stack::start(Options {
        rate_limit_per_min: 3,
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    stack.support_agent().await; // the first of the burst of three
    let body = json!({"model": "support-agent", "messages": [user("hi")]});
    // Two more pass (and one per 20 s the test took).
    let mut passed = 0;
    let response = loop {
        let response = completions(&stack, body.clone()).await;
        if response.status() != 200 {
            break response;
        }
        passed += 1;
        assert!(passed <= 5, "the limit was not enforced");
    };
    let refilled = started.elapsed().as_secs() / 20;
    assert!((2..=2 + refilled).contains(&passed), "{passed} passed");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The next request is at most one emission interval away.
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let (status, error) = error_of(response).await;
    assert_eq!(status, 429);
    assert_eq!(error["type"], "requests");
    assert_eq!(error["code"], "rate_limit_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_an_unreachable_broker_gets_503_server_error_with_retry_after() {
    let stack = Stack::start(Options {
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        workers: 0,
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let response = completions(
        &stack,
        json!({"model": "support-agent", "messages": [user("hi")]}),
    )
    .await;
    assert!(response.headers().get("retry-after").is_some());
    let (status, error) = error_of(response).await;
    assert_eq!(status, 503);
    assert_eq!(error["type"], "server_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_past_the_deadline_json_gets_504_and_a_stream_ends_with_an_error_then_done() {
    let stack = Stack::start(Options {
        deadline: Duration::from_secs(1),
        builtin_token_delay: Duration::from_millis(400),
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let question = json!([user("What are your business hours?")]);
    let json_reply = completions(
        &stack,
        json!({"model": "support-agent", "messages": question}),
    )
    .await;
    let (status, error) = error_of(json_reply).await;
    assert_eq!(status, 504);
    assert_eq!(error["type"], "server_error");
    assert_eq!(error["code"], "timeout");

    let streamed = completions(
        &stack,
        json!({"model": "support-agent", "messages": question, "stream": true}),
    )
    .await;
    assert_eq!(streamed.status(), 200);
    let data = sse_data(&streamed.text().await.unwrap());
    let (done, rest) = data.split_last().unwrap();
    assert_eq!(done, "[DONE]");
    let failure: Value = serde_json::from_str(&rest[rest.len() - 1]).unwrap();
    assert_eq!(failure["error"]["code"], "timeout", "{failure}");
    assert_eq!(failure["error"]["type"], "server_error");
    let role: Value = serde_json::from_str(&rest[0]).unwrap();
    assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
}
