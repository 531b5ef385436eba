//! Seed 000's errors, each provoked for real: unknown or foreign identities and channels, invalid
//! messages, missing credentials and a key over its rate limit.

use serde_json::{Value, json};

use super::{chat, identity_and_channel};
use crate::support::stack::{Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_foreign_identities_and_channels_get_404() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let missing = "0190f0f0-0000-7000-8000-000000000000";
    for (identity, channel, what) in [
        (missing, channel.as_str(), "Identity not found"),
        (identity.as_str(), missing, "Channel not found"),
        ("identity123", "channel456", "Identity not found"),
    ] {
        let (status, body) = chat(&stack, identity, channel, json!({"text": "hi"})).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["message"], what);
        assert_eq!(body["error"]["code"], "not_found");
        let (status, _) = stack
            .api(
                "GET",
                &format!("/conversation/{identity}/streaming?channel_id={channel}&message=hi"),
                None,
            )
            .await;
        assert_eq!(status, 404);
    }
    let other = stack.other_tenant().await;
    let (status, _) = stack
        .api_as(
            &other,
            "POST",
            &format!("/conversation/{identity}/chat/{channel}"),
            Some(json!({"text": "hi"})),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_get_400_and_missing_credentials_401() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    for (body, message) in [
        (json!({}), "text is required"),
        (json!({"text": ""}), "text must not be empty"),
        (json!({"text": 5}), "text must be a string"),
        (
            json!({"text": "hi", "metadata": "web"}),
            "metadata must be an object",
        ),
        (json!([1]), "Request body must be a JSON object"),
    ] {
        let (status, error) = chat(&stack, &identity, &channel, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["message"], message);
        assert_eq!(error["error"]["code"], "invalid_message");
    }
    for query in ["message=hi", &format!("channel_id={channel}")] {
        let (status, _) = stack
            .api(
                "GET",
                &format!("/conversation/{identity}/streaming?{query}"),
                None,
            )
            .await;
        assert_eq!(status, 400, "{query}");
    }
    let response = stack
        .http
        .post(stack.url(&format!("/conversation/{identity}/chat/{channel}")))
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Authentication failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_limit_gets_429_with_retry_after() {
    let stack = Stack::start(Options {
        rate_limit_per_min: 5,
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    let (identity, channel) = identity_and_channel(&stack).await; // three of the burst of five
    let mut passed = 0;
    let (status, body) = loop {
        let (status, body) = chat(&stack, &identity, &channel, json!({"text": "hi"})).await;
        if status != 200 {
            break (status, body);
        }
        passed += 1;
        assert!(passed <= 7, "the limit was not enforced");
    };
    // The burst's other two pass (and one per 12 s the test took).
    let refilled = started.elapsed().as_secs() / 12;
    assert!((2..=2 + refilled).contains(&passed), "{passed} passed");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["message"], "Rate limit exceeded");
    assert_eq!(body["error"]["code"], "rate_limited");
}
