//! The OpenAI-compatible dialect end to end: `chat.completion` objects, `chat.completion.chunk`
//! streams, stateless history, named conversations, the model list; its error shapes are in
//! `errors.rs`, and the official Python SDK as a client in `python_sdk.rs`.

mod errors;
mod interrupted;
mod node_sdk;
mod parameters;
mod python_sdk;
mod tools;

use confab::ReplyMode;
use serde_json::{Value, json};

use crate::support::stack::{Options, Stack, sse_data};

const HOURS: &str = "Our business hours are 9:00 to 17:00, Monday to Friday.";

/// `POST /v1/chat/completions` with the stack's key.
pub async fn completions(stack: &Stack, body: Value) -> reqwest::Response {
    stack
        .http
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(&stack.api_key)
        .json(&body)
        .send()
        .await
        .expect("POST /v1/chat/completions")
}

/// A stack whose assistant "shop" answers through the local vendor server, scripted.
async fn vendor_stack(
    script: crate::support::openai_server::Script,
) -> (crate::support::openai_server::FakeOpenAi, Stack) {
    let vendor = crate::support::openai_server::FakeOpenAi::start(script).await;
    let stack = Stack::start(Options {
        openai_base_url: vendor.base_url(),
        ..Options::default()
    })
    .await;
    stack
        .create_assistant(json!({"name": "Shop", "model": "openai/test-model"}))
        .await;
    (vendor, stack)
}

fn user(content: &str) -> Value {
    json!({"role": "user", "content": content})
}

/// The assistant's text of a non-streamed completion.
async fn answer_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_json_completion_has_openais_shape_and_answers_from_the_instructions() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let response = completions(
        &stack,
        json!({
            "model": "support-agent",
            "messages": [user("What are your business hours?")],
            "temperature": 0.3, "max_tokens": 200, "top_p": 1, "user": "u-1", "n": 1,
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let conversation = response.headers()["x-conversation-id"].to_str().unwrap();
    assert!(conversation.starts_with("chatcmpl-"), "{conversation}");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["id"].as_str().unwrap().starts_with("chatcmpl-"),
        "{body}"
    );
    assert_eq!(body["object"], "chat.completion");
    assert!((body["created"].as_i64().unwrap() - unix_now()).abs() < 60);
    assert_eq!(body["model"], "support-agent");
    assert_eq!(body["choices"].as_array().unwrap().len(), 1);
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], HOURS);
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &body["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(prompt > 0 && completion > 0, "{usage}");
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);
}

/// The JSON chunks of a streamed completion, checked to end with `[DONE]`.
async fn chunks_of(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.pop().as_deref(), Some("[DONE]"), "{data:?}");
    data.iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

async fn a_stream_sends_role_deltas_and_stop(mode: ReplyMode) {
    let stack = Stack::start(Options::mode(mode)).await;
    stack.support_agent().await;
    let response = completions(
        &stack,
        json!({"model": "support-agent", "stream": true, "messages": [user("What are your business hours?")]}),
    )
    .await;
    assert!(
        response.headers()["x-conversation-id"]
            .to_str()
            .unwrap()
            .starts_with("chatcmpl-")
    );
    let chunks = chunks_of(response).await;
    let id = chunks[0]["id"].clone();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert_eq!(chunk["id"], id, "one id for the whole stream");
        assert_eq!(chunk["model"], "support-agent");
        assert!(
            chunk.get("usage").is_none(),
            "usage was not asked for: {chunk}"
        );
    }
    let first = &chunks[0]["choices"][0];
    assert_eq!(first["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(first["finish_reason"], Value::Null);
    let last = &chunks[chunks.len() - 1]["choices"][0];
    assert_eq!(last["delta"], json!({}));
    assert_eq!(last["finish_reason"], "stop");
    let middle = &chunks[1..chunks.len() - 1];
    assert!(middle.len() >= 2, "the first token is sent on its own");
    let text: String = middle
        .iter()
        .map(|c| {
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
            c["choices"][0]["delta"]["content"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, HOURS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stream_sends_role_deltas_and_stop_per_request_mode() {
    a_stream_sends_role_deltas_and_stop(ReplyMode::PerRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stream_sends_role_deltas_and_stop_shared_mode() {
    a_stream_sends_role_deltas_and_stop(ReplyMode::Shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stream_with_include_usage_ends_with_a_usage_chunk_without_choices() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let chunks = chunks_of(
        completions(
            &stack,
            json!({
                "model": "support-agent", "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [user("How fast are refunds processed?")],
            }),
        )
        .await,
    )
    .await;
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let usage = &usage_chunk["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    // Every other chunk has `usage: null`, as OpenAI sends them.
    for chunk in rest {
        assert_eq!(chunk["usage"], Value::Null, "{chunk}");
        assert!(chunk.get("usage").is_some());
    }
    let stop = &rest[rest.len() - 1]["choices"][0];
    assert_eq!(stop["finish_reason"], "stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stateless_requests_remember_only_the_history_they_carry() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let with_history = completions(
        &stack,
        json!({"model": "support-agent", "messages": [
            {"role": "system", "content": "Answer briefly."},
            user("My favourite colour is teal."),
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": [{"type": "text", "text": "Which colour is my favourite?"}]},
        ]}),
    )
    .await;
    assert_eq!(
        answer_of(with_history).await,
        "You told me earlier: \"My favourite colour is teal.\""
    );
    // A second stateless request is a conversation of its own: nothing carried over.
    let without = completions(
        &stack,
        json!({"model": "support-agent", "messages": [user("Which colour is my favourite?")]}),
    )
    .await;
    let answer = answer_of(without).await;
    assert!(!answer.contains("teal"), "{answer}");
}

/// Conversations and messages stored in the stack's database.
async fn stored_rows(stack: &Stack) -> (i64, i64) {
    let db = stack.db().await;
    let count = |table: &'static str| {
        let db = &db;
        async move {
            let row = db
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };
    (count("conversations").await, count("messages").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_store_false_answers_from_the_history_it_carries_and_keeps_nothing() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let messages = json!([
        user("My favourite colour is teal."),
        {"role": "assistant", "content": "Noted."},
        user("Which colour is my favourite?"),
    ]);
    let json_reply = completions(
        &stack,
        json!({"model": "support-agent", "store": false, "messages": messages}),
    )
    .await;
    assert!(json_reply.headers().get("x-conversation-id").is_none());
    assert_eq!(
        answer_of(json_reply).await,
        "You told me earlier: \"My favourite colour is teal.\""
    );
    let streamed = completions(
        &stack,
        json!({"model": "support-agent", "store": false, "stream": true, "messages": messages}),
    )
    .await;
    assert_eq!(streamed.status(), 200);
    assert!(streamed.headers().get("x-conversation-id").is_none());
    let text: String = chunks_of(streamed)
        .await
        .iter()
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(text.contains("teal"), "{text}");
    assert_eq!(stored_rows(&stack).await, (0, 0));

    // Without it, the same exchange is stored: the count above could see it.
    let stored = completions(
        &stack,
        json!({"model": "support-agent", "messages": messages}),
    )
    .await;
    assert!(stored.headers().get("x-conversation-id").is_some());
    answer_of(stored).await;
    assert_eq!(stored_rows(&stack).await, (1, 4));

    let named = completions(
        &stack,
        json!({"model": "support-agent", "store": false, "conversation_id": "mine",
               "messages": [user("Hello")]}),
    )
    .await;
    assert_eq!(named.status(), 400);
    let error: Value = named.json().await.unwrap();
    assert_eq!(error["error"]["param"], "store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_named_conversation_remembers_across_requests_of_one_message_each() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let first = completions(
        &stack,
        json!({"model": "support-agent", "conversation_id": "chat-42",
               "messages": [user("My favourite colour is teal.")]}),
    )
    .await;
    assert_eq!(first.headers()["x-conversation-id"], "chat-42");
    answer_of(first).await;

    // Named by header this time; the stale earlier message in the array is not stored again.
    let second = stack
        .http
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(&stack.api_key)
        .header("x-conversation-id", "chat-42")
        .json(&json!({"model": "support-agent", "messages": [
            user("My favourite colour is red."),
            user("Which colour is my favourite?"),
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(second.headers()["x-conversation-id"], "chat-42");
    assert_eq!(
        answer_of(second).await,
        "You told me earlier: \"My favourite colour is teal.\""
    );

    let roles: Vec<String> = stack
        .db()
        .await
        .query(
            "SELECT m.role FROM messages m JOIN conversations c ON c.pk = m.conversation_pk \
             WHERE c.id = 'chat-42' ORDER BY m.pk",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_models_lists_the_deployed_assistants_by_slug() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    stack
        .create_assistant(json!({"name": "Sales Bot", "instructions": "We sell teal paint."}))
        .await;
    stack
        .db()
        .await
        .execute(
            "UPDATE assistants SET deployed = false WHERE slug = 'sales-bot'",
            &[],
        )
        .await
        .unwrap();
    let response = stack
        .http
        .get(stack.url("/v1/models"))
        .bearer_auth(&stack.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    assert_eq!(
        data.len(),
        1,
        "undeployed assistants are not listed: {body}"
    );
    assert_eq!(data[0]["id"], "support-agent");
    assert_eq!(data[0]["object"], "model");
    assert_eq!(data[0]["owned_by"], "confab");
    assert!((data[0]["created"].as_i64().unwrap() - unix_now()).abs() < 60);

    // One model by id: the same object; an undeployed or unknown one is OpenAI's 404.
    let get = |id: &str| {
        stack
            .http
            .get(stack.url(&format!("/v1/models/{id}")))
            .bearer_auth(&stack.api_key)
            .send()
    };
    let one: Value = get("support-agent").await.unwrap().json().await.unwrap();
    assert_eq!(one, data[0]);
    for missing in ["sales-bot", "nope"] {
        let response = get(missing).await.unwrap();
        assert_eq!(response.status(), 404);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    }
}

/// The roles of a conversation's stored messages, in order.
async fn stored_roles(stack: &Stack, conversation: &str) -> Vec<String> {
    let path = format!("/v1/conversations/{conversation}/messages");
    let (_, messages) = stack.api("GET", &path, None).await;
    messages["data"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().expect("a role").to_owned())
        .collect()
}

/// A stateless exchange (no conversation named, as OpenAI's own SDKs send) retried under its
/// `Idempotency-Key` is one stored turn and the first response again, under its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_retry_with_the_same_idempotency_key_is_answered_once() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let send = |key: &str, stream: bool| {
        stack
            .http
            .post(stack.url("/v1/chat/completions"))
            .bearer_auth(&stack.api_key)
            .header("idempotency-key", key)
            .json(&json!({"model": "support-agent", "stream": stream,
                          "messages": [{"role": "system", "content": "Be brief."},
                                       user("What are your business hours?")]}))
            .send()
    };
    let first = send("stateless-1", false).await.unwrap();
    let conversation = first.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let first: Value = first.json().await.unwrap();
    let retry = send("stateless-1", true).await.unwrap();
    assert_eq!(retry.headers()["x-conversation-id"], conversation.as_str());
    let chunks = chunks_of(retry).await;
    assert!(chunks.iter().all(|c| c["id"] == first["id"]), "{chunks:?}");
    let replayed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(replayed, first["choices"][0]["message"]["content"]);

    assert_eq!(
        stored_roles(&stack, &conversation).await,
        ["system", "user", "assistant"]
    );
    // Without the key, the same exchange is a conversation and a turn of its own.
    let again: Value = stack
        .http
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(&stack.api_key)
        .json(&json!({"model": "support-agent",
                      "messages": [user("What are your business hours?")]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(again["id"], first["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_retry_with_the_same_idempotency_key_is_answered_once() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let send = |key: &str, text: &str, stream: bool| {
        stack
            .http
            .post(stack.url("/v1/chat/completions"))
            .bearer_auth(&stack.api_key)
            .header("idempotency-key", key)
            .json(
                &json!({"model": "support-agent", "conversation_id": "retry-1",
                          "stream": stream, "messages": [user(text)]}),
            )
            .send()
    };
    let first: Value = send("key-1", "What are your business hours?", false)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first_id = first["id"].as_str().unwrap().to_owned();
    let first = first["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    // The SDK retries the same request (its answer was lost on the way), here as a stream.
    let retry = send("key-1", "What are your business hours?", true)
        .await
        .unwrap();
    assert_eq!(retry.status(), 200);
    let chunks = chunks_of(retry).await;
    // The same response, under the same id.
    assert!(
        chunks.iter().all(|c| c["id"] == first_id.as_str()),
        "{chunks:?}"
    );
    let replayed: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(replayed, first);
    // Another key is another turn, with an id of its own.
    let other: Value = send("key-2", "Thanks!", false)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(other["id"], first_id.as_str());

    assert_eq!(
        stored_roles(&stack, "retry-1").await,
        ["user", "assistant", "user", "assistant"]
    );

    let bad = send("has space", "Hi", false).await.unwrap();
    assert_eq!(bad.status(), 400);
}
