//! An `EventSource` reconnects by itself after every stream, with the same URL and the
//! `Last-Event-ID` of the last event it got. A reconnect is never a second turn: it gets `204 No
//! Content`, which tells the browser to stop, and only the caller's own streams are recognised.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::identity_and_channel;
use super::stream_tokens::mint;
use crate::support::browser;
use crate::support::stack::{Options, Stack, sse_data};

const LONG_ANSWER: &str = "Our opening hours are long and varied because the shop serves \
    customers in many time zones, so the hours run from seven in the morning until eleven at \
    night on weekdays, from nine until nine on Saturdays, and from ten until six on Sundays.";

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
    let token = mint(&stack, &identity, &channel).await;
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

/// What a page does by default, in a real browser: an `EventSource` with a stream token, left
/// open after `complete`. It reconnects by itself after the stream's `retry:` with the
/// `Last-Event-ID` it got, is answered 204 and stops: one turn stored, the answer seen once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_event_source_left_open_after_complete_stores_one_turn_and_stops() {
    let stack = Stack::start(Options {
        builtin_token_delay: Duration::from_millis(20),
        ..Options::default()
    })
    .await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let token = mint(&stack, &identity, &channel).await;
    let path = format!(
        "/conversation/{identity}/streaming?channel_id={channel}&message=Hello%20there&token={token}"
    );
    // The server asks for a reconnect after 3 s; by 7 s the browser has made it and stopped.
    let args = json!({"origin": stack.url(""), "path": path, "watchMs": 7000});
    let outcome = browser::scenario("event_source", args).await;
    let seen = &outcome.result;

    assert_eq!(seen["opens"], 1, "one stream was opened: {seen}");
    assert_eq!(seen["failed"], json!([]), "{seen}");
    let complete = seen["complete"].as_array().unwrap();
    assert_eq!(complete.len(), 1, "the answer came once: {seen}");
    let tokens: String = seen["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens, complete[0].as_str().unwrap());
    // The end of the stream, then the 204 to the reconnect: CLOSED (2), not CONNECTING (0).
    assert_eq!(seen["errors"], 2, "{seen}");
    assert_eq!(
        seen["readyState"], 2,
        "the browser stopped reconnecting: {seen} (console: {:?})",
        outcome.console
    );
    assert_eq!(user_messages(&stack).await, 1, "a reconnect stored a turn");
    let answers: i64 = stack
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM messages WHERE role = 'assistant'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(answers, 1);
}

/// The `token` contents of seed-000 events, and the `complete` content if the stream ended.
fn tokens_and_complete(body: &str) -> (String, Option<String>) {
    let mut text = String::new();
    let mut complete = None;
    for data in sse_data(body) {
        let event: Value = serde_json::from_str(&data).unwrap();
        match event["type"].as_str() {
            Some("token") => text.push_str(event["content"].as_str().unwrap()),
            Some("complete") => complete = Some(event["content"].as_str().unwrap().to_owned()),
            other => panic!("unexpected event {other:?}: {event}"),
        }
    }
    (text, complete)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_midway_resumes_on_another_ingress_with_exactly_the_rest() {
    let stack = Stack::start(Options {
        builtin_token_delay: Duration::from_millis(40),
        resume_grace: Duration::from_secs(10),
        ..Options::default()
    })
    .await;
    let assistant = stack
        .create_assistant(json!({"name": "Hours", "instructions": LONG_ANSWER}))
        .await;
    let (_, identity) = stack
        .api("POST", "/v1/identities", Some(json!({"name": "Ada"})))
        .await;
    let (_, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(json!({"name": "Web", "kind": "web", "assistant_id": assistant["id"]})),
        )
        .await;
    let path = format!(
        "/conversation/{}/streaming?channel_id={}&message=What%20are%20your%20opening%20hours%3F",
        identity["id"].as_str().unwrap(),
        channel["id"].as_str().unwrap()
    );
    // The first ingress is a process of its own, so that it can be gone when the client comes
    // back.
    let (mut first_ingress, first_url) = stack.ingress_process().await;
    let response = stack
        .http
        .get(format!("{first_url}{path}"))
        .bearer_auth(&stack.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut received = String::new();
    while sse_data(&received).len() < 3 {
        let chunk = body.next().await.expect("more events").unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Cut after whole events only, as a dropped connection leaves the client.
    let whole = &received[..received.rfind("\n\n").unwrap() + 2];
    let (before, ended) = tokens_and_complete(whole);
    assert!(ended.is_none() && !before.is_empty(), "{whole}");
    let last = last_event_id(whole);
    drop(body);
    first_ingress.kill().await.unwrap();

    let (status, rest) = get(&stack, &path, Some(&stack.api_key), Some(&last)).await;
    assert_eq!(status, 200, "{rest}");
    let position: u64 = last.rsplit(':').next().unwrap().parse().unwrap();
    let first_resumed = rest
        .lines()
        .find_map(|line| line.strip_prefix("id:"))
        .map(str::trim)
        .expect("resumed events have ids");
    assert_eq!(
        first_resumed.rsplit(':').next(),
        Some((position + 1).to_string().as_str())
    );
    let (after, complete) = tokens_and_complete(&rest);
    let complete = complete.expect("the resumed stream ends with complete");
    assert_eq!(
        format!("{before}{after}"),
        complete,
        "no token lost or repeated"
    );

    let db = stack.db().await;
    let stored = db
        .query_one(
            "SELECT content, status FROM messages WHERE role = 'assistant'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(stored.get::<_, String>(0), complete);
    assert_eq!(stored.get::<_, String>(1), "complete");
    assert_eq!(user_messages(&stack).await, 1);
    // Once the client has it all, it is told to stop.
    let end = last_event_id(&rest);
    assert_eq!(
        get(&stack, &path, Some(&stack.api_key), Some(&end)).await.0,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_after_the_retention_is_a_clear_404() {
    let stack = Stack::start(Options {
        queue_limits: confab_contract::QueueLimits {
            resume_retention_secs: 1,
            ..confab_contract::QueueLimits::default()
        },
        ..Options::default()
    })
    .await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let url = format!("/conversation/{identity}/streaming?channel_id={channel}&message=Hello");
    let key = Some(stack.api_key.as_str());
    let (status, body) = get(&stack, &url, key, None).await;
    assert_eq!(status, 200);
    let first = body
        .lines()
        .find_map(|line| line.strip_prefix("id:"))
        .map(|id| id.trim().to_owned())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = get(&stack, &url, key, Some(&first)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("CONFAB_RESUME_RETENTION_SECS"), "{body}");
    assert_eq!(user_messages(&stack).await, 1);
}
