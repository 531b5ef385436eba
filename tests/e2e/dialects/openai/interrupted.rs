//! An OpenAI stream whose client goes away after its first chunk (the role chunk, sent before the
//! model's first word): the user's turn still gets its answer record, stored as interrupted, as
//! in the other dialects.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use super::{completions, user};
use crate::support::stack::{Options, Stack};

const LONG_ANSWER_INSTRUCTIONS: &str = "Our opening hours are long and varied because the shop \
    serves customers in many time zones, so the hours run from seven in the morning until eleven \
    at night on weekdays, from nine until nine on Saturdays, and from ten until six on Sundays.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_after_its_first_chunk_still_records_the_answer_as_interrupted() {
    let stack = Stack::start(Options {
        builtin_token_delay: Duration::from_millis(150),
        ..Options::default()
    })
    .await;
    stack
        .create_assistant(json!({"name": "Hours", "instructions": LONG_ANSWER_INSTRUCTIONS}))
        .await;
    let response = completions(
        &stack,
        json!({"model": "hours", "stream": true, "messages": [user("What are your opening hours?")]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\"content\"") {
        let bytes = body.next().await.expect("a chunk").unwrap();
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    drop(body);

    let db = stack.db().await;
    let cut_at = Instant::now();
    let stored = loop {
        let rows = db
            .query(
                "SELECT role, status, content FROM messages ORDER BY pk",
                &[],
            )
            .await
            .unwrap();
        let turns: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        if turns.iter().any(|(role, ..)| role == "assistant") || cut_at.elapsed().as_secs() > 10 {
            break turns;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[0].0, "user");
    assert_eq!(stored[1].0, "assistant");
    assert_eq!(stored[1].1, "interrupted", "{stored:?}");
}
