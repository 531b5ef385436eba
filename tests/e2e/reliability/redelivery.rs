//! A worker process killed mid-turn: the job is redelivered to another worker, the caller gets
//! one complete answer, and the user turn is stored once. A stream goes on where it stopped (the
//! new worker continues the answer the reply log holds); without the log it ends with a clear
//! error, since it cannot be spliced onto another answer.

use std::time::Duration;

use confab::ReplyMode;
use confab_contract::QueueLimits;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::stack::{Options, Stack, sse_data};

const ANSWER: &str = "Our business hours are 9:00 to 17:00, Monday to Friday.";

fn slow_stack(mode: ReplyMode) -> Options {
    Options {
        reply_mode: mode,
        workers: 0,
        builtin_token_delay: Duration::from_millis(150),
        ..Options::default()
    }
}

/// Wait until a worker has stored the user turn, i.e. the turn is under way.
async fn wait_for_user_turn(stack: &Stack) {
    let db = stack.db().await;
    for _ in 0..200 {
        let stored: i64 = db
            .query_one("SELECT count(*) FROM messages WHERE role = 'user'", &[])
            .await
            .unwrap()
            .get(0);
        if stored > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no worker picked the job up");
}

async fn count_by_role(stack: &Stack) -> (i64, i64) {
    let db = stack.db().await;
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE role = 'user'), \
                    count(*) FILTER (WHERE role = 'assistant') FROM messages",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn a_killed_worker_s_job_is_answered_once_by_another(mode: ReplyMode) {
    let mut stack = Stack::start(slow_stack(mode)).await;
    stack.support_agent().await;
    let doomed = stack.start_worker_process();
    let request = {
        let http = stack.http.clone();
        let url = stack.url("/v1/api/chat/support-agent");
        let key = stack.api_key.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({"message": "What are your business hours?"}))
                .send()
                .await
                .unwrap()
        })
    };
    wait_for_user_turn(&stack).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.kill_worker_process(doomed).await;
    stack.start_worker_process();

    let response = request.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["response"], ANSWER);
    assert_eq!(
        count_by_role(&stack).await,
        (1, 1),
        "one user turn, one answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_job_is_answered_once_by_another_per_request_mode() {
    a_killed_worker_s_job_is_answered_once_by_another(ReplyMode::PerRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_job_is_answered_once_by_another_shared_mode() {
    a_killed_worker_s_job_is_answered_once_by_another(ReplyMode::Shared).await;
}

/// When the first worker of a stream is killed.
#[derive(Clone, Copy)]
enum Kill {
    /// Some time into its turn, with part of the answer streamed.
    WellIntoTheTurn,
    /// The moment its caller has read the first chunk: the log must already have what the
    /// caller saw, or the redelivery would repeat it.
    AtTheFirstChunk,
}

/// Start a stream, let its worker stream part of the answer, kill it and start another: the
/// SSE events the client gets (as JSON values, and their raw `data`).
async fn stream_across_a_killed_worker(
    options: Options,
    kill: Kill,
) -> (Stack, Vec<Value>, Vec<String>) {
    let mut stack = Stack::start(options).await;
    stack.support_agent().await;
    let doomed = stack.start_worker_process();
    let response = stack
        .chat(
            "support-agent",
            json!({"message": "What are your business hours?", "stream": true}),
        )
        .await;
    let mut body = response.bytes_stream();
    let mut received = String::new();
    match kill {
        Kill::WellIntoTheTurn => {
            wait_for_user_turn(&stack).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        Kill::AtTheFirstChunk => {
            while !received.contains("\"chunk\"") {
                let bytes = body.next().await.expect("a first chunk").unwrap();
                received.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    stack.kill_worker_process(doomed).await;
    stack.start_worker_process();

    while let Some(bytes) = body.next().await {
        received.push_str(&String::from_utf8_lossy(&bytes.unwrap()));
    }
    let data = sse_data(&received);
    let events: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert!(
        events.first().is_some_and(|e| e.get("chunk").is_some()),
        "the first worker streamed part of the answer: {data:?}"
    );
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    (stack, events, data)
}

async fn a_stream_whose_worker_is_killed_goes_on_as_one_answer(kill: Kill) {
    let (stack, events, data) =
        stream_across_a_killed_worker(slow_stack(ReplyMode::PerRequest), kill).await;
    let text: String = events.iter().filter_map(|e| e["chunk"].as_str()).collect();
    assert_eq!(text, ANSWER, "every word once, in order: {data:?}");
    assert!(events.iter().all(|e| e.get("error").is_none()), "{data:?}");
    assert!(
        events.iter().filter(|e| e.get("chunk").is_some()).count() > 2,
        "the answer came in several chunks, across both workers: {data:?}"
    );
    assert_eq!(
        count_by_role(&stack).await,
        (1, 1),
        "one user turn, one answer"
    );
    let db = stack.db().await;
    let stored: String = db
        .query_one("SELECT content FROM messages WHERE role = 'assistant'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, ANSWER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_worker_is_killed_goes_on_with_the_redelivery_as_one_answer() {
    a_stream_whose_worker_is_killed_goes_on_as_one_answer(Kill::WellIntoTheTurn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_worker_is_killed_as_its_first_chunk_arrives_goes_on_as_one_answer() {
    a_stream_whose_worker_is_killed_goes_on_as_one_answer(Kill::AtTheFirstChunk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_reply_log_a_stream_cut_by_a_killed_worker_ends_with_a_clear_error() {
    let options = Options {
        queue_limits: QueueLimits {
            resume_retention_secs: 0,
            ..QueueLimits::default()
        },
        ..slow_stack(ReplyMode::PerRequest)
    };
    let (stack, events, data) = stream_across_a_killed_worker(options, Kill::WellIntoTheTurn).await;
    let error = events.last().unwrap();
    assert_eq!(error["error"]["name"], "InternalServerError", "{data:?}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mid-answer")
    );
    let (users, _) = count_by_role(&stack).await;
    assert_eq!(users, 1, "the user turn is stored once");
}
