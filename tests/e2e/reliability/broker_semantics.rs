//! What the broker topology promises: bounded work queue answered at once when full, reply
//! destinations that disappear with their request, dead-lettering of jobs no worker can process.

use std::time::Duration;

use confab_contract::QueueLimits;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};

use crate::support::stack::{Options, Stack, amqp_url, request_id_of};

async fn channel() -> (lapin::Connection, lapin::Channel) {
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_work_queue_is_answered_at_once_with_503() {
    let options = Options {
        workers: 0,
        queue_limits: QueueLimits {
            max_length: 1,
            delivery_limit: 3,
            ..QueueLimits::default()
        },
        deadline: Duration::from_secs(20),
        ..Options::default()
    };
    let stack = Stack::start(options).await;
    stack.support_agent().await;
    // No worker runs: the first jobs wait in the queue (their streams stay open)...
    let mut waiting = Vec::new();
    let second = loop {
        let response = stack
            .chat("support-agent", json!({"message": "hello", "stream": true}))
            .await;
        if response.status() != 200 || waiting.len() > 3 {
            break response;
        }
        waiting.push(response);
    };
    // ...until the queue is full; then a request is refused at once, not queued until its
    // deadline. (A quorum queue refuses publishes once it holds more than its limit.)
    assert!(
        !waiting.is_empty() && waiting.len() <= 2,
        "{} accepted",
        waiting.len()
    );
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["name"], "ServiceUnavailableError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_request_reply_queue_is_gone_once_its_request_ends() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let response = stack
        .chat("support-agent", json!({"message": "hello", "stream": true}))
        .await;
    let request_id: uuid::Uuid = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.text().await.unwrap();
    assert!(body.contains("[DONE]"));
    let queue = stack.names.request_replies(request_id);
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let mut gone = false;
    for _ in 0..50 {
        let (connection, channel) = channel().await;
        let declared = channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await;
        let _ = connection.close(200, "".into()).await;
        if declared.is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "reply queue {queue} still exists after its request ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_job_ends_in_the_dead_letter_queue() {
    let stack = Stack::start(Options::default()).await;
    let (connection, channel) = channel().await;
    channel
        .basic_publish(
            "".into(),
            stack.names.jobs().as_str().into(),
            BasicPublishOptions::default(),
            b"{\"v\": 99, \"not\": \"a job\"}",
            Default::default(),
        )
        .await
        .unwrap();
    let mut dead = None;
    for _ in 0..100 {
        dead = channel
            .basic_get(
                stack.names.dead_letters().as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = dead.expect("the job was dead-lettered");
    assert_eq!(dead.delivery.data, b"{\"v\": 99, \"not\": \"a job\"}");
    let _ = connection.close(200, "".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_nobody_takes_expires_at_its_deadline_into_the_dead_letter_queue() {
    let options = Options {
        workers: 0,
        deadline: Duration::from_secs(1),
        ..Options::default()
    };
    let stack = Stack::start(options).await;
    stack.support_agent().await;
    let response = stack
        .chat(
            "support-agent",
            json!({"message": "anyone there?", "stream": true}),
        )
        .await;
    let request_id = request_id_of(&response);
    // The caller is told at the deadline...
    let body = response.text().await.unwrap();
    assert!(body.contains("TimeoutError"), "{body}");
    // ...and the job left the work queue for the dead-letter queue instead of waiting for a worker.
    let (connection, channel) = channel().await;
    let mut dead = None;
    for _ in 0..100 {
        dead = channel
            .basic_get(
                stack.names.dead_letters().as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = dead.expect("the expired job was dead-lettered");
    let job: confab_contract::Job = confab_contract::decode(&dead.delivery.data).unwrap();
    assert_eq!(job.request_id.to_string(), request_id);
    let _ = connection.close(200, "".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_always_fails_is_dead_lettered_after_its_delivery_limit() {
    use confab_contract::{Job, ReplyEvent};
    use futures_util::StreamExt;
    use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};

    let stack = Stack::start(Options {
        queue_limits: QueueLimits {
            max_length: 100,
            delivery_limit: 2,
            ..QueueLimits::default()
        },
        ..Options::default()
    })
    .await;
    let agent = stack.support_agent().await;
    let (connection, channel) = channel().await;
    let replies = format!("{}.test-replies", stack.names.prefix());
    channel
        .queue_declare(
            replies.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut events = channel
        .basic_consume(
            replies.as_str().into(),
            "test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    // Postgres cannot store a NUL character: every delivery fails in the worker, for real.
    // (The ingress refuses such text with a 400; this job is published past it.)
    let mut job = stack.job(&agent, "conv_poison", "a\0b", &replies).await;
    // Streamed, so that each redelivery says `accepted` (a JSON caller hears only the end, and
    // a first delivery's stream starts with its first delta).
    job.stream = true;
    channel
        .basic_publish(
            "".into(),
            stack.names.jobs().as_str().into(),
            BasicPublishOptions::default(),
            &confab_contract::encode(&job).unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    // Attempts 1..=3 (a delivery limit of 2 allows two returns): the redeliveries announce
    // themselves, and the last ends with an error.
    let mut attempts = Vec::new();
    let error = loop {
        let delivery = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("reply events")
            .unwrap()
            .unwrap();
        match ReplyEvent::decode(&delivery.data).unwrap() {
            ReplyEvent::Accepted { attempt, .. } => attempts.push(attempt),
            ReplyEvent::Error { code, .. } => break code,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(attempts, [2, 3]);
    assert_eq!(error, confab_contract::ErrorCode::Internal);
    let mut dead = None;
    for _ in 0..100 {
        dead = channel
            .basic_get(
                stack.names.dead_letters().as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = dead.expect("the job was dead-lettered");
    let dead_job: Job = confab_contract::decode(&dead.delivery.data).unwrap();
    assert_eq!(dead_job.request_id, job.request_id);
    let _ = connection.close(200, "".into()).await;
}

/// The type of each of `prefix`'s queues, as the broker reports it.
fn queue_types(prefix: &str) -> std::collections::BTreeMap<String, String> {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "name",
            "type",
            "--quiet",
            "--no-table-headers",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(char::is_whitespace))
        .filter(|(name, _)| name.starts_with(&format!("{prefix}.")))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// Dead jobs survive a node's loss as the jobs did: their queue is a quorum queue too. A
/// deployment whose dead-letter queue an earlier build declared classic still starts, and
/// keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_queue_is_replicated_and_an_earlier_classic_one_still_starts() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let types = queue_types(stack.names.prefix());
    assert_eq!(types[&stack.names.jobs()], "quorum", "{types:?}");
    assert_eq!(types[&stack.names.dead_letters()], "quorum", "{types:?}");

    let names = confab_contract::Names::new(crate::support::stack::random_name("t"));
    let (connection, channel) = channel().await;
    let classic = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(
            names.dead_letters().as_str().into(),
            classic,
            FieldTable::default(),
        )
        .await
        .unwrap();
    let declared =
        confab_contract::declare_work_topology(&connection, &names, QueueLimits::default()).await;
    let types = queue_types(names.prefix());
    crate::support::stack::remove_broker_objects(&amqp_url(), &names).await;
    declared.expect("the topology is declared beside the old queue");
    assert_eq!(types[&names.jobs()], "quorum", "{types:?}");
    assert_eq!(types[&names.dead_letters()], "classic", "{types:?}");
    let _ = connection.close(200, "".into()).await;
}
