//! Seed 000: identities talk through channels, with the seed's examples sent as written; its
//! errors are in `errors.rs`.

mod errors;
mod reconnects;
mod stream_tokens;

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack, sse_data};

/// An identity and a web channel connected to the support agent; returns their ids.
async fn identity_and_channel(stack: &Stack) -> (String, String) {
    let agent = stack.support_agent().await;
    let (status, identity) = stack
        .api(
            "POST",
            "/v1/identities",
            Some(json!({"name": "Ada", "external_id": "+15550001"})),
        )
        .await;
    assert_eq!(status, 201, "{identity}");
    let (status, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(json!({"name": "Website", "kind": "web", "assistant_id": agent["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    (
        identity["id"].as_str().unwrap().to_owned(),
        channel["id"].as_str().unwrap().to_owned(),
    )
}

async fn chat(stack: &Stack, identity: &str, channel: &str, body: Value) -> (u16, Value) {
    stack
        .api(
            "POST",
            &format!("/conversation/{identity}/chat/{channel}"),
            Some(body),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_s_standard_message_gets_message_and_data() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    // The seed's example body, as written.
    let (status, body) = chat(
        &stack,
        &identity,
        &channel,
        json!({"text": "Hello, I need help with my order", "metadata": {"source": "web"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Message processed successfully");
    let data = &body["data"];
    assert!(
        data["response"]
            .as_str()
            .unwrap()
            .contains("help with my order"),
        "{body}"
    );
    assert!(
        data["conversation_id"]
            .as_str()
            .unwrap()
            .starts_with("conv_")
    );
    assert!(data["message_id"].as_str().unwrap().starts_with("msg_"));
    assert!(
        data["response_message_id"]
            .as_str()
            .unwrap()
            .starts_with("msg_")
    );
    assert_eq!(data["identity_id"], identity);
    assert_eq!(data["channel_id"], channel);

    // The metadata was stored with the user's turn, on the identity's conversation.
    let db = stack.db().await;
    let row = db
        .query_one(
            "SELECT m.metadata, c.identity_id::text, c.channel_id::text FROM messages m \
             JOIN conversations c ON c.pk = m.conversation_pk WHERE m.id = $1",
            &[&data["message_id"].as_str().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Value>(0), json!({"source": "web"}));
    assert_eq!(row.get::<_, String>(1), identity);
    assert_eq!(row.get::<_, String>(2), channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_s_conversation_on_a_channel_continues_until_a_new_one_is_asked_for() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let (_, first) = chat(
        &stack,
        &identity,
        &channel,
        json!({"text": "My order number is 4711."}),
    )
    .await;
    let (_, second) = chat(
        &stack,
        &identity,
        &channel,
        json!({"text": "What is my order number?"}),
    )
    .await;
    assert_eq!(
        first["data"]["conversation_id"],
        second["data"]["conversation_id"]
    );
    assert_eq!(
        second["data"]["response"],
        "You told me earlier: \"My order number is 4711.\""
    );
    let (_, fresh) = chat(
        &stack,
        &identity,
        &channel,
        json!({"text": "What is my order number?", "new_conversation": true}),
    )
    .await;
    assert_ne!(
        fresh["data"]["conversation_id"],
        first["data"]["conversation_id"]
    );
    assert!(!fresh["data"]["response"].as_str().unwrap().contains("4711"));
}

fn events(body: &str) -> Vec<Value> {
    sse_data(body)
        .iter()
        .map(|d| serde_json::from_str(d).expect("every event is JSON"))
        .collect()
}

/// Tokens then one complete event whose content is the tokens joined, each event exactly
/// `{type, content}`.
fn assert_seed_stream(events: &[Value]) -> String {
    let (complete, tokens) = events.split_last().expect("events");
    assert_eq!(complete["type"], "complete", "{events:?}");
    assert!(!tokens.is_empty());
    let mut text = String::new();
    for event in events {
        let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["content", "type"], "{event}");
    }
    for token in tokens {
        assert_eq!(token["type"], "token");
        text.push_str(token["content"].as_str().unwrap());
    }
    assert_eq!(complete["content"], text.as_str());
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_s_streaming_curl_gets_token_and_complete_events() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let response = stack
        .http
        .get(stack.url(&format!(
            "/conversation/{identity}/streaming?channel_id={channel}&message=Hello"
        )))
        .bearer_auth(&stack.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(
        response.headers()["x-conversation-id"]
            .to_str()
            .unwrap()
            .starts_with("conv_")
    );
    let text = assert_seed_stream(&events(&response.text().await.unwrap()));
    assert!(text.contains("Hello"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_streams_with_a_short_lived_token_in_the_query() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let (status, minted) = stack
        .api(
            "POST",
            "/v1/stream-tokens",
            Some(json!({"identity_id": identity, "channel_id": channel})),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    assert_eq!(minted["expires_in"], 60);
    let token = minted["token"].as_str().unwrap();
    let message = "Tell me about your products";
    let url = stack.url(&format!(
        "/conversation/{identity}/streaming?channel_id={channel}&message={}&token={token}",
        message.replace(' ', "%20")
    ));
    // No Authorization header, as from EventSource.
    let response = stack.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_seed_stream(&events(&response.text().await.unwrap()));

    // The long-lived key is not accepted in the query, nor is a made-up token.
    for credential in [stack.api_key.as_str(), "cfs_0000"] {
        let url = stack.url(&format!(
            "/conversation/{identity}/streaming?channel_id={channel}&message=hi&token={credential}"
        ));
        let response = stack.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 401);
    }
}
