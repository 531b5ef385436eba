//! RabbitMQ restarted under a running stack, on a private node so that other tests' broker is
//! left alone: while it is down the ingress refuses requests at once with 503 and `Retry-After`
//! in each dialect's shape; when it is back, ingress and worker reconnect by themselves; and a
//! request the broker had accepted before it went down is still answered, once.

use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use serde_json::{Value, json};

use confab::ReplyMode;

use crate::support::private_rabbitmq::PrivateRabbitMq;
use crate::support::stack::{Options, Stack};

const HOURS: &str = "Our business hours are 9:00 to 17:00, Monday to Friday.";

/// Whether a process with this id is still running.
fn running(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A seed 002 ask: the conversation and message ids are the caller's.
fn ask_body(assistant_id: &str, conversation: &str, message_id: &str) -> Value {
    json!({
        "message": {"id": message_id, "role": "user", "content": "What are your business hours?"},
        "id": conversation,
        "assistantId": assistant_id,
    })
}

/// Jobs ready in the stack's work queue, as the broker counts them.
async fn jobs_waiting(node: &PrivateRabbitMq, stack: &Stack) -> u32 {
    let url = node.amqp_url();
    let connecting = lapin::Connection::connect(&url, Default::default());
    let connection = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("the node answers within 10 s")
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            stack.names.jobs().as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "counted".into()).await;
    queue.message_count()
}

/// The (role, id, content, status) of each stored message of a conversation.
async fn history(stack: &Stack, conversation: &str) -> Vec<(String, String, String, String)> {
    let (status, body) = stack
        .api(
            "GET",
            &format!("/v1/conversations/{conversation}/messages"),
            None,
        )
        .await;
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let field = |name: &str| m[name].as_str().unwrap_or_default().to_owned();
            (
                field("role"),
                field("id"),
                field("content"),
                field("status"),
            )
        })
        .collect()
}

async fn a_broker_restart(reply_mode: ReplyMode) {
    let node = PrivateRabbitMq::start().await;
    let mut stack = Stack::start(Options {
        reply_mode,
        amqp_url: node.amqp_url(),
        workers: 0,
        builtin_token_delay: Duration::from_millis(20),
        ..Options::default()
    })
    .await;
    let worker = stack.start_worker_process();
    let assistant = stack.support_agent().await;
    let assistant_id = assistant["id"].as_str().unwrap().to_owned();

    // 1. A normal turn.
    let response = stack
        .chat(
            "support-agent",
            json!({"message": "What are your business hours?"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["response"], HOURS);

    // 2. The broker goes down: not ready, and requests are refused at once, not at the deadline.
    node.stop().await;
    let stopped = Instant::now();
    loop {
        let ready = stack.http.get(stack.url("/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            let body: Value = ready.json().await.unwrap();
            assert_eq!(body["checks"]["broker"], "down", "{body}");
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "/readyz still ready with the broker down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    let response = stack
        .chat("support-agent", json!({"message": "Are you there?"}))
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["error"]["name"], "ServiceUnavailableError", "{body}");
    let response = stack
        .http
        .post(stack.url("/api/ai-hub/assistant/ask"))
        .bearer_auth(&stack.api_key)
        .json(&ask_body(&assistant_id, "conv-down", "msg-down"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"], "Service unavailable", "{body}");
    assert_eq!(body["retry_after"], 5, "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "refused after {:?}",
        asked.elapsed()
    );
    // A refused request left nothing behind to be answered later.
    assert!(history(&stack, "conv-down").await.is_empty());

    // 3. The broker is back: with no process restarted, turns are answered again, which takes
    // both the ingress (publishing) and the worker (consuming) reconnected.
    node.up().await;
    let back = Instant::now();
    loop {
        let response = stack
            .chat(
                "support-agent",
                json!({"message": "What are your business hours?"}),
            )
            .await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["data"]["response"], HOURS);
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "no answer 30 s after the broker came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(running(worker), "the worker process kept running");
    eprintln!(
        "reconnected {:?} after the broker came back",
        back.elapsed()
    );

    // 4. A request accepted before a restart is answered after it. No worker is consuming, so
    // its job waits in the durable work queue while the broker restarts.
    stack.kill_worker_process(worker).await;
    let waiting = {
        let http = stack.http.clone();
        let url = stack.url("/api/ai-hub/assistant/ask");
        let key = stack.api_key.clone();
        let body = ask_body(&assistant_id, "conv-restart", "msg-restart");
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        })
    };
    let asked = Instant::now();
    while jobs_waiting(&node, &stack).await == 0 {
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "the job was never queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await;
    node.up().await;
    stack.start_worker_process();
    // The caller kept waiting through the restart and gets its answer.
    let (status, body) = tokio::time::timeout(Duration::from_secs(90), waiting)
        .await
        .expect("answered within 90 s of the restart")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["message"]["content"], HOURS, "{body}");
    // Stored once: one user turn, one answer, however many times the job was delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let turns = history(&stack, "conv-restart").await;
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(
        (turns[0].0.as_str(), turns[0].1.as_str()),
        ("user", "msg-restart")
    );
    assert_eq!(
        (
            turns[1].0.as_str(),
            turns[1].2.as_str(),
            turns[1].3.as_str()
        ),
        ("assistant", HOURS, "complete")
    );
    drop(stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_refuses_with_503_while_down_then_reconnects_and_loses_no_accepted_request_per_request_mode()
 {
    a_broker_restart(ReplyMode::PerRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_refuses_with_503_while_down_then_reconnects_and_loses_no_accepted_request_shared_mode()
 {
    a_broker_restart(ReplyMode::Shared).await;
}
