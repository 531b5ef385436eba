//! Seed 001's error envelopes, each provoked for real: `{data: null, error: {name, message,
//! details}}` with the seed's names and status codes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack};

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["data"], Value::Null, "{body}");
    assert!(body["error"]["details"].is_object(), "{body}");
    (status, body["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_unknown_keys_get_401_unauthorized_error() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let url = stack.url("/v1/api/chat/support-agent");
    let attempts = [
        stack.http.post(&url).json(&json!({"message": "hi"})),
        stack
            .http
            .post(&url)
            .bearer_auth("cfk_not-a-real-key")
            .json(&json!({"message": "hi"})),
        stack
            .http
            .post(&url)
            .header("authorization", "Basic abc")
            .json(&json!({"message": "hi"})),
    ];
    for attempt in attempts {
        let (status, error) = error_of(attempt.send().await.unwrap()).await;
        assert_eq!(status, 401);
        assert_eq!(error["name"], "UnauthorizedError");
        assert_eq!(error["message"], "Invalid or missing API token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_get_400_validation_error() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let cases = [
        (json!({"stream": false}), "Message field is required"),
        (json!({"message": null}), "Message field is required"),
        (json!({"message": ""}), "Message field must not be empty"),
        (json!({"message": 42}), "Message field must be a string"),
        (json!({"message": ["a"]}), "Message field must be a string"),
        (
            json!({"message": "hi", "stream": "true"}),
            "stream must be a boolean",
        ),
        (json!("just a string"), "Request body must be a JSON object"),
    ];
    for (body, message) in cases {
        let (status, error) = error_of(stack.chat("support-agent", body.clone()).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["name"], "ValidationError");
        assert_eq!(error["message"], message, "{body}");
    }
    let malformed = stack
        .http
        .post(stack.url("/v1/api/chat/support-agent"))
        .bearer_auth(&stack.api_key)
        .header("content-type", "application/json")
        .body("{\"message\": \"unterminated")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(malformed).await;
    assert_eq!(status, 400);
    assert_eq!(error["name"], "ValidationError");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    // Nothing was queued or stored for any of them.
    let db = stack.db().await;
    let messages: i64 = db
        .query_one("SELECT count(*) FROM messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_slugs_and_conversations_get_404_not_found_error() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let (status, error) = error_of(stack.chat("sales-bot", json!({"message": "hi"})).await).await;
    assert_eq!(status, 404);
    assert_eq!(error["name"], "NotFoundError");
    assert_eq!(error["message"], "Agent with slug 'sales-bot' not found");

    let (status, error) = error_of(
        stack
            .chat(
                "support-agent",
                json!({"message": "hi", "conversationId": "conv_abc123"}),
            )
            .await,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error["name"], "NotFoundError");
    assert_eq!(
        error["message"],
        "Conversation with id 'conv_abc123' not found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_database_gets_500_internal_server_error() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    crate::support::stack::drop_database(&stack.database).await;
    let (status, error) =
        error_of(stack.chat("support-agent", json!({"message": "hi"})).await).await;
    assert_eq!(status, 500);
    assert_eq!(error["name"], "InternalServerError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_gets_503_with_retry_after() {
    let options = Options {
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        workers: 0,
        ..Options::default()
    };
    let stack = Stack::start(options).await;
    stack.support_agent().await;
    let response = stack.chat("support-agent", json!({"message": "hi"})).await;
    assert!(response.headers().get("retry-after").is_some());
    let (status, error) = error_of(response).await;
    assert_eq!(status, 503);
    assert_eq!(error["name"], "ServiceUnavailableError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_past_the_deadline_gets_504_timeout_error() {
    let options = Options {
        deadline: Duration::from_secs(1),
        builtin_token_delay: Duration::from_millis(400),
        ..Options::default()
    };
    let stack = Stack::start(options).await;
    stack.support_agent().await;
    let (status, error) = error_of(
        stack
            .chat(
                "support-agent",
                json!({"message": "What are your business hours?"}),
            )
            .await,
    )
    .await;
    assert_eq!(status, 504);
    assert_eq!(error["name"], "TimeoutError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_limit_gets_429_with_retry_after() {
    let stack = Stack::start(Options {
        rate_limit_per_min: 3,
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    stack.support_agent().await; // the first of the burst of three
    // Two more pass, the next is refused (one more per 20 s the test took would pass).
    let mut passed = 0;
    let response = loop {
        let response = stack.chat("support-agent", json!({"message": "hi"})).await;
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
    assert_eq!(error["name"], "RateLimitError");
    assert_eq!(error["message"], "Rate limit exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_s_limit_holds_across_two_ingress_processes() {
    let stack = Stack::start(Options {
        rate_limit_per_min: 6,
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    stack.support_agent().await; // one of the burst of six
    // A second ingress process of the same deployment.
    let (mut other, other_url) = stack.ingress_process().await;
    let other_url = format!("{other_url}/v1/api/chat/support-agent");

    // Alternate between the two: together they admit the rest of the key's burst, no more (but
    // one per 10 s the test took).
    let mut passed = 0;
    let mut refused_by = None;
    for i in 0..14 {
        let url = if i % 2 == 0 {
            other_url.clone()
        } else {
            stack.url("/v1/api/chat/support-agent")
        };
        let response = stack
            .http
            .post(url)
            .bearer_auth(&stack.api_key)
            .json(&json!({"message": "hi"}))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            refused_by = Some(i % 2);
            break;
        }
        assert_eq!(response.status(), 200);
        passed += 1;
    }
    assert!(refused_by.is_some(), "the limit was not enforced");
    let refilled = started.elapsed().as_secs() / 10;
    assert!((5..=5 + refilled).contains(&passed), "{passed} passed");
    let _ = other.kill().await;
}
