//! An `EventSource` reconnects by itself after every stream, with the same URL and the
//! `Last-Event-ID` of the last event it got. A reconnect is never a second turn: it gets `204 No
//! Content`, which tells the browser to stop, and only the caller's own streams are recognised.

use serde_json::{Value, json};

use super::identity_and_channel;
use crate::support::stack::{Options, Stack};

/// The `id:` of the last event of an SSE body.
fn last_event_id(body: &str) -> String {
    body.lines()
        .rev()
        .find_map(|line| line.strip_prefix("id:"))
        .map(|id| id.trim().to_owned())
        .expect("events with ids")
}

async fn user_messages(stack: &Stack) -> i64 {
    let db = stack.db().await;
    let row = db
        .query_one("SELECT count(*) FROM messages WHERE role = 'user'", &[])
        .await
        .unwrap();
    row.get(0)
}

async fn get(stack: &Stack, url: &str, key: Option<&str>, last: Option<&str>) -> (u16, String) {
    let mut request = stack.http.get(stack.url(url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_after_the_stream_ended_is_204_and_never_a_second_turn() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let url = format!("/conversation/{identity}/streaming?channel_id={channel}&message=Hello");
    let key = Some(stack.api_key.as_str());
    let (status, body) = get(&stack, &url, key, None).await;
    assert_eq!(status, 200);
    let last = last_event_id(&body);
    assert_eq!(user_messages(&stack).await, 1);

    let (status, body) = get(&stack, &url, key, Some(&last)).await;
    assert_eq!((status, body.as_str()), (204, ""));
    let by_query = format!("{url}&last_event_id={}", last.replace(':', "%3A"));
    assert_eq!(get(&stack, &by_query, key, None).await.0, 204);
    assert_eq!(user_messages(&stack).await, 1, "a reconnect stored a turn");

    // Only a stream of the caller's is recognised.
    let unknown = format!("{}:3", uuid::Uuid::now_v7());
    assert_eq!(get(&stack, &url, key, Some(&unknown)).await.0, 404);
    let other = stack.other_tenant().await;
    let (status, body) = get(&stack, &url, Some(&other), Some(&last)).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(&stack, &url, key, Some("garbage")).await;
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "invalid_message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_reconnecting_with_its_spent_token_is_told_to_stop() {
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
    let token = minted["token"].as_str().unwrap();
    let url = format!(
        "/conversation/{identity}/streaming?channel_id={channel}&message=Hello&token={token}"
    );
    let (status, body) = get(&stack, &url, None, None).await;
    assert_eq!(status, 200);
    let last = last_event_id(&body);

    // What EventSource does next: the same URL, with the header.
    assert_eq!(get(&stack, &url, None, Some(&last)).await.0, 204);
    // Without it, the spent token starts nothing either.
    assert_eq!(get(&stack, &url, None, None).await.0, 409);
    // A token recognises only the stream it started.
    let (_, other) = get(
        &stack,
        &format!("/conversation/{identity}/streaming?channel_id={channel}&message=Hi"),
        Some(&stack.api_key),
        None,
    )
    .await;
    let other_last = last_event_id(&other);
    assert_eq!(get(&stack, &url, None, Some(&other_last)).await.0, 404);
    assert_eq!(user_messages(&stack).await, 2);
}
