//! A caller that goes away stops its turn: the worker notices, stops the model, stores what was
//! generated so far as interrupted and frees its slot for the next job.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::support::stack::{Options, Stack, request_id_of};

const LONG_ANSWER_INSTRUCTIONS: &str = "Our opening hours are long and varied because the shop \
    serves customers in many time zones, so the hours run from seven in the morning until eleven \
    at night on weekdays, from nine until nine on Saturdays, and from ten until six on Sundays.";

async fn interrupted_answer(stack: &Stack) -> Option<(String, String)> {
    let db = stack.db().await;
    db.query_opt(
        "SELECT content, status FROM messages WHERE role = 'assistant'",
        &[],
    )
    .await
    .unwrap()
    .map(|row| (row.get(0), row.get(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_client_that_disconnects_stops_the_model_and_frees_the_worker() {
    let mut stack = Stack::start(Options {
        workers: 0,
        builtin_token_delay: Duration::from_millis(150),
        ..Options::default()
    })
    .await;
    // One worker with one slot: the second request can only run once the first has stopped.
    stack.start_worker_task_with_concurrency(1);
    stack
        .create_assistant(json!({"name": "Hours", "instructions": LONG_ANSWER_INSTRUCTIONS}))
        .await;
    let response = stack
        .chat(
            "hours",
            json!({"message": "What are your opening hours?", "stream": true}),
        )
        .await;
    let mut body = response.bytes_stream();
    let first = body.next().await.expect("a first event").unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chunk"));
    let dropped_at = Instant::now();
    drop(body);

    // The worker stores the partial answer as interrupted within a second.
    let mut stored = None;
    while dropped_at.elapsed() < Duration::from_secs(5) {
        stored = interrupted_answer(&stack).await;
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (content, status) = stored.expect("the partial answer was stored");
    assert_eq!(status, "interrupted");
    assert!(!content.is_empty() && content.len() < 120, "{content}");
    // The whole answer takes about 7 s at this pace; a generous bound on a loaded machine still
    // tells a stopped generation from one that ran to its end.
    assert!(
        dropped_at.elapsed() < Duration::from_millis(2500),
        "stopped after {:?}",
        dropped_at.elapsed()
    );

    // The slot is free: the next request starts streaming at once, while the first answer, had
    // it not been stopped, would hold the only slot for seconds more.
    let next = stack
        .chat("hours", json!({"message": "Sundays?", "stream": true}))
        .await;
    let started = Instant::now();
    let first = next
        .bytes_stream()
        .next()
        .await
        .expect("a first event")
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chunk"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

async fn cancel(stack: &Stack, request_id: &str) -> u16 {
    stack
        .api("POST", &format!("/v1/requests/{request_id}/cancel"), None)
        .await
        .0
}

/// With a resume grace set, as by default: a cancel is not a dropped connection, and stops at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_stream_ends_with_a_cancelled_error_and_keeps_the_partial_answer() {
    let stack = Stack::start(Options {
        builtin_token_delay: Duration::from_millis(150),
        resume_grace: Duration::from_secs(10),
        ..Options::default()
    })
    .await;
    stack
        .create_assistant(json!({"name": "Hours", "instructions": LONG_ANSWER_INSTRUCTIONS}))
        .await;
    let response = stack
        .chat(
            "hours",
            json!({"message": "What are your opening hours?", "stream": true}),
        )
        .await;
    let request_id = request_id_of(&response);
    let mut body = response.bytes_stream();
    let first = body.next().await.expect("a first event").unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chunk"));
    assert_eq!(cancel(&stack, &request_id).await, 202);
    let mut rest = String::new();
    while let Some(bytes) = body.next().await {
        rest.push_str(&String::from_utf8_lossy(&bytes.unwrap()));
    }
    assert!(rest.contains("CancelledError"), "{rest}");
    let last = crate::support::stack::sse_data(&rest).last().cloned();
    assert_eq!(last.as_deref(), Some("[DONE]"), "{rest}");
    let (content, status) = interrupted_answer(&stack)
        .await
        .expect("the partial answer");
    assert_eq!(status, "interrupted");
    assert!(content.len() < 120, "{content}");
    // It is over: cancelling again finds nothing.
    assert_eq!(cancel(&stack, &request_id).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_before_a_worker_takes_it_never_starts() {
    let mut stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let response = stack
        .chat("support-agent", json!({"message": "hello", "stream": true}))
        .await;
    let request_id = request_id_of(&response);
    // Another tenant cannot cancel it, nor can anyone cancel what does not exist.
    let other = stack.other_tenant().await;
    let (status, _) = stack
        .api_as(
            &other,
            "POST",
            &format!("/v1/requests/{request_id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        cancel(&stack, "0190f0f0-0000-7000-8000-000000000000").await,
        404
    );
    assert_eq!(cancel(&stack, &request_id).await, 202);
    stack.start_worker_task();
    let body = response.text().await.unwrap();
    assert!(body.contains("CancelledError"), "{body}");
    let db = stack.db().await;
    let stored: i64 = db
        .query_one("SELECT count(*) FROM messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "a turn that never started stores nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_goes_on_for_the_resume_grace_then_stops_as_interrupted() {
    let stack = Stack::start(Options {
        builtin_token_delay: Duration::from_millis(100),
        resume_grace: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    stack
        .create_assistant(json!({"name": "Hours", "instructions": LONG_ANSWER_INSTRUCTIONS}))
        .await;
    let response = stack
        .chat(
            "hours",
            json!({"message": "What are your opening hours?", "stream": true}),
        )
        .await;
    let mut body = response.bytes_stream();
    let first = body.next().await.expect("a first event").unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chunk"));
    let dropped_at = Instant::now();
    drop(body);

    let mut stored = None;
    while dropped_at.elapsed() < Duration::from_secs(10) {
        stored = interrupted_answer(&stack).await;
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (content, status) = stored.expect("the partial answer was stored");
    assert_eq!(status, "interrupted");
    // Generated on through the grace (about ten words a second), but not to its end (about
    // fifty words, five seconds).
    let words = content.split_whitespace().count();
    assert!((5..45).contains(&words), "{words} words: {content}");
    assert!(dropped_at.elapsed() >= Duration::from_secs(1));
}
