//! The reply log unable to confirm, for real: a private three-node RabbitMQ cluster whose reply
//! log (a stream) keeps replicas on two of the nodes, and loses their majority when the one
//! that does not lead it is killed; the quorum queues and the cluster's stream coordinator keep
//! theirs. A streamed turn's final event then gets no confirm from the log; the worker must
//! settle the job anyway, after its patience, or its slot is held for good. With one slot, the
//! next turn shows which. And since the broker then blocks a channel with too many of those
//! unconfirmed, and in time its whole connection, the log must be written on a connection that
//! carries nothing else: a thousand JSON turns after the log's outage show whether it is.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::private_rabbitmq::PrivateRabbitMq;
use crate::support::stack::{Options, Stack, sse_data};

const HOURS: &str = "Our business hours are 9:00 to 17:00, Monday to Friday.";

/// A stack on the cluster's first node with one worker of `slots`, once it answers.
async fn stack_on(nodes: &[PrivateRabbitMq], slots: u16) -> Stack {
    let mut stack = Stack::start(Options {
        amqp_url: nodes[0].amqp_url(),
        workers: 0,
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    stack.start_worker_task_with_concurrency(slots);
    // Answered: the worker has declared the topology and consumes.
    answer_json_turns(&stack, 1, 1, Duration::from_secs(30)).await;
    stack
}

/// Leave the log replicas on the first two nodes only and kill the second.
async fn lose_the_logs_majority(nodes: &[PrivateRabbitMq], stack: &Stack) {
    // The log, declared through the first node, is led there.
    let log = stack.names.reply_log();
    nodes[0].streams(&["delete_replica", &log, nodes[2].name()]);
    nodes[1].kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_log_that_cannot_confirm_holds_no_worker_slot_past_its_patience() {
    let nodes = PrivateRabbitMq::cluster(3).await;
    let stack = stack_on(&nodes, 1).await;
    lose_the_logs_majority(&nodes, &stack).await;

    let streamed = stack
        .chat(
            "support-agent",
            json!({"message": "What are your business hours?", "stream": true}),
        )
        .await;
    assert_eq!(streamed.status(), 200);
    let body = streamed.text().await.expect("the stream");
    let events = sse_data(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    assert!(!body.contains("\"error\""), "{body}");

    // The worker's only slot is free again once its patience with the log is over.
    let asked = Instant::now();
    let response = stack
        .http
        .post(stack.url("/v1/api/chat/support-agent"))
        .bearer_auth(&stack.api_key)
        .timeout(Duration::from_secs(30))
        .json(&json!({"message": "What are your business hours?"}))
        .send()
        .await
        .expect("the next turn answered while the log still cannot confirm");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["data"]["response"], HOURS, "{answer}");
    println!(
        "the next turn answered {:?} after it was asked",
        asked.elapsed()
    );
    drop(stack);
}

/// Many turns at once, each JSON, each answered within `limit`; how long they took in all.
async fn answer_json_turns(
    stack: &Stack,
    turns: usize,
    at_once: usize,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    let mut pending = futures_util::stream::iter(0..turns)
        .map(|n| {
            let request = stack
                .http
                .post(stack.url("/v1/api/chat/support-agent"))
                .bearer_auth(&stack.api_key)
                .timeout(limit)
                .json(&json!({"message": format!("Turn {n}: what are your business hours?")}));
            async move { (n, request.send().await) }
        })
        .buffer_unordered(at_once);
    while let Some((n, response)) = pending.next().await {
        let response = response.unwrap_or_else(|e| {
            panic!(
                "turn {n} unanswered {:?} into the run: {e}",
                started.elapsed()
            )
        });
        assert_eq!(response.status(), 200, "turn {n}");
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_log_that_cannot_confirm_blocks_no_publish_but_its_own() {
    let nodes = PrivateRabbitMq::cluster(3).await;
    // The broker blocks a channel once this many of its publishes to a stream are unconfirmed
    // (256 by default), and once the channel's credit is spent, its connection's every publish.
    nodes[0].ctl(&[
        "eval",
        "application:set_env(rabbit, stream_messages_soft_limit, 2).",
    ]);
    let stack = stack_on(&nodes, 8).await;
    lose_the_logs_majority(&nodes, &stack).await;
    let streams = (0..4).map(|n| {
        stack.chat(
            "support-agent",
            json!({"message": format!("Stream {n}: what are your business hours?"), "stream": true}),
        )
    });
    for streamed in futures_util::future::join_all(streams).await {
        assert_eq!(streamed.status(), 200);
        let body = streamed.text().await.expect("the stream");
        assert_eq!(
            sse_data(&body).last().map(String::as_str),
            Some("[DONE]"),
            "{body}"
        );
    }

    // More publishes than a blocked channel has credit for, on the ingress's and the worker's.
    let took = answer_json_turns(&stack, 1_000, 8, Duration::from_secs(30)).await;
    println!("1000 JSON turns answered in {took:?} while the reply log cannot confirm");
    drop(stack);
}
