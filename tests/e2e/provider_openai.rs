//! The OpenAI-compatible provider against a real local HTTP server that speaks the streaming
//! protocol and records what it was sent.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::openai_server::{FakeOpenAi, Script};
use crate::support::stack::{Options, Stack};

async fn stack_with(server: &FakeOpenAi, model_timeout: Duration) -> Stack {
    let options = Options {
        openai_base_url: server.base_url(),
        openai_api_key: "sk-test-123".into(),
        model_timeout,
        ..Options::default()
    };
    let stack = Stack::start(options).await;
    stack
        .create_assistant(json!({
            "name": "Vendor Bot",
            "instructions": "Answer in one short sentence.",
            "model": "openai/test-model",
        }))
        .await;
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_provider_streams_the_vendor_answer_and_sends_the_context() {
    let server = FakeOpenAi::start(Script::Tokens {
        pieces: vec!["Hel".into(), "lo".into(), " there".into()],
        prompt_tokens: 21,
        completion_tokens: 3,
    })
    .await;
    let stack = stack_with(&server, Duration::from_secs(10)).await;

    let first: Value = stack
        .chat("vendor-bot", json!({"message": "Hi, I am Ada."}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["data"]["response"], "Hello there");
    assert_eq!(first["data"]["metadata"]["model"], "test-model");
    assert_eq!(first["data"]["metadata"]["tokens"], 24);

    let conversation_id = first["data"]["conversationId"].as_str().unwrap();
    let second = stack
        .chat(
            "vendor-bot",
            json!({"message": "Who am I?", "stream": true, "conversationId": conversation_id}),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(second.contains("{\"chunk\":\"Hel\"}"), "{second}");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.authorization.as_deref(), Some("Bearer sk-test-123"));
        assert_eq!(request.body["model"], "test-model");
        assert_eq!(request.body["stream"], true);
        assert_eq!(request.body["stream_options"]["include_usage"], true);
    }
    assert_eq!(
        requests[0].body["messages"],
        json!([
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "Hi, I am Ada."},
        ])
    );
    assert_eq!(
        requests[1].body["messages"],
        json!([
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "Hi, I am Ada."},
            {"role": "assistant", "content": "Hello there"},
            {"role": "user", "content": "Who am I?"},
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_http_error_becomes_a_model_error_with_its_message() {
    let server = FakeOpenAi::start(Script::Fail {
        status: 401,
        message: "Incorrect API key provided".into(),
    })
    .await;
    let stack = stack_with(&server, Duration::from_secs(10)).await;
    let response = stack.chat("vendor-bot", json!({"message": "hi"})).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["name"], "ModelError");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("HTTP 401"), "{message}");
    assert!(message.contains("Incorrect API key provided"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_vendor_times_out_into_a_model_error() {
    let server = FakeOpenAi::start(Script::Stall).await;
    let stack = stack_with(&server, Duration::from_secs(1)).await;
    let response = stack
        .chat("vendor-bot", json!({"message": "hi", "stream": true}))
        .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let data = crate::support::stack::sse_data(&body);
    let error: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(error["error"]["name"], "ModelError", "{body}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within"),
        "{body}"
    );
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}
