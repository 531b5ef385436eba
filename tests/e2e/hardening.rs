//! JSON a client stores must read back: numbers at the float limit and deep nesting in memory
//! (and every other stored JSON) either round-trip or are refused on the way in, so one request
//! can never poison an identity for every later read and chat turn.

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack};

/// An identity and a web channel of the support agent; returns their ids.
async fn identity_and_channel(stack: &Stack) -> (String, String) {
    let agent = stack.support_agent().await;
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
    let id = |value: &Value| value["id"].as_str().unwrap().to_owned();
    (id(&identity), id(&channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_at_the_float_limit_in_memory_reads_back_and_the_identity_still_chats() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let memory = format!("/v1/identities/{identity}/memory");
    let limit = json!({"data": {"k": -1.797_693_134_862_315_5e308, "max": f64::MAX}});

    let (status, patched) = stack.api("PATCH", &memory, Some(limit)).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        patched["data"]["k"].as_f64(),
        Some(-1.797_693_134_862_315_5e308)
    );
    assert_eq!(patched["data"]["max"].as_f64(), Some(f64::MAX));

    let (status, read) = stack.api("GET", &memory, None).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read, patched);

    let (status, answer) = stack
        .api(
            "POST",
            &format!("/conversation/{identity}/chat/{channel}"),
            Some(json!({"text": "hello"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["data"]["response"].is_string(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_nested_beyond_the_limit_is_refused_and_what_is_stored_is_unchanged() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let (identity, _) = identity_and_channel(&stack).await;
    let memory = format!("/v1/identities/{identity}/memory");
    let (status, before) = stack
        .api("PATCH", &memory, Some(json!({"data": {"plan": "pro"}})))
        .await;
    assert_eq!(status, 200, "{before}");

    // Deeper than the body limit, well within what the parser itself reads.
    let mut deep = json!("bottom");
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let (status, refused) = stack
        .api("PATCH", &memory, Some(json!({"data": {"deep": deep}})))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nested")),
        "{refused}"
    );

    let (status, after) = stack.api("GET", &memory, None).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before);
}
