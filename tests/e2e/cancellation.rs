//! A caller that goes away stops its turn: the worker notices, stops the model, stores what was
//! generated so far as interrupted and frees its slot for the next job.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::stack::{Options, Stack};

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
