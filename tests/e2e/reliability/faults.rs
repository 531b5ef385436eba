//! Faults caused for real, on servers this test owns so that other tests running at the same
//! time are not disturbed: a private PostgreSQL cluster stopped and started again under a turn.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::private_postgres::PrivatePostgres;
use crate::support::stack::{Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_a_turn_loses_and_duplicates_nothing() {
    let pg = PrivatePostgres::start();
    let stack = Stack::start(Options {
        admin_database_url: pg.admin_url(),
        builtin_token_delay: Duration::from_millis(150),
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let request = {
        let http = stack.http.clone();
        let url = stack.url("/v1/api/chat/support-agent");
        let key = stack.api_key.clone();
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(key)
                .json(&json!({"message": "What are your business hours?"}))
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        })
    };
    // The worker has stored the user turn and is generating: the database goes down now and
    // comes back while the answer is still being written.
    let db = stack.db().await;
    for _ in 0..200 {
        let stored: i64 = db
            .query_one("SELECT count(*) FROM messages WHERE role = 'user'", &[])
            .await
            .unwrap()
            .get(0);
        if stored > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(db);
    pg.crash();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.up();

    let (status, body) = request.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["response"],
        "Our business hours are 9:00 to 17:00, Monday to Friday."
    );
    let db = stack.db().await;
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE role = 'user'), \
                    count(*) FILTER (WHERE role = 'assistant') FROM messages",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 1));
    drop(stack);
}

/// The broker's queues under a prefix, as `rabbitmqctl` lists them.
fn queues_with_prefix(prefix: &str) -> Vec<String> {
    let output = Command::new("rabbitmqctl")
        .args(["list_queues", "name", "--quiet", "--no-table-headers"])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| name.starts_with(&format!("{prefix}.")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingress_stops_its_workers_turns_and_leaves_nothing_in_the_broker() {
    use futures_util::StreamExt;

    let stack = Stack::start(Options {
        builtin_token_delay: Duration::from_millis(150),
        ..Options::default()
    })
    .await;
    stack
        .create_assistant(json!({"name": "Hours", "instructions": "Our opening hours are long and varied because the shop serves customers in many time zones, so the hours run from seven in the morning until eleven at night on weekdays."}))
        .await;
    let (mut ingress, url) = stack.ingress_process().await;
    let response = stack
        .http
        .post(format!("{url}/v1/api/chat/hours"))
        .bearer_auth(&stack.api_key)
        .json(&json!({"message": "What are your opening hours?", "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    assert!(body.next().await.is_some(), "a first event");
    let reply_queues = queues_with_prefix(stack.names.prefix())
        .into_iter()
        .filter(|q| q.contains(".reply."))
        .count();
    assert_eq!(
        reply_queues, 1,
        "the request's reply queue exists while it streams"
    );

    ingress.kill().await.unwrap();
    let killed_at = std::time::Instant::now();
    // The worker notices (its publishes to the vanished reply queue come back) and stops.
    let db = stack.db().await;
    let mut status = None;
    while killed_at.elapsed() < Duration::from_secs(5) && status.is_none() {
        status = db
            .query_opt("SELECT status FROM messages WHERE role = 'assistant'", &[])
            .await
            .unwrap()
            .map(|row| row.get::<_, String>(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status.as_deref(), Some("interrupted"));
    assert!(
        killed_at.elapsed() < Duration::from_millis(2500),
        "{:?}",
        killed_at.elapsed()
    );
    let left: Vec<String> = queues_with_prefix(stack.names.prefix())
        .into_iter()
        .filter(|q| q.contains(".reply."))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Send SIGTERM, as an orchestrator stopping a container does.
fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("a running child");
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_worker_finish_its_turn_and_an_ingress_finish_its_stream() {
    let stack = Stack::start(Options {
        workers: 0,
        builtin_token_delay: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let mut worker = stack
        .process_command("worker")
        .args(["--concurrency", "2"])
        .spawn()
        .unwrap();
    let (mut ingress, url) = stack.ingress_process().await;
    let response = stack
        .http
        .post(format!("{url}/v1/api/chat/support-agent"))
        .bearer_auth(&stack.api_key)
        .json(&json!({"message": "What are your business hours?", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Both are told to stop while the answer is being streamed through them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    terminate(&worker);
    terminate(&ingress);
    let body = response.text().await.unwrap();
    let text: String = crate::support::stack::sse_data(&body)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|e| e["chunk"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        text,
        "Our business hours are 9:00 to 17:00, Monday to Friday."
    );
    let last = crate::support::stack::sse_data(&body).last().cloned();
    assert_eq!(last.as_deref(), Some("[DONE]"), "{body}");
    let exited = tokio::time::timeout(Duration::from_secs(20), async {
        (worker.wait().await.unwrap(), ingress.wait().await.unwrap())
    })
    .await
    .expect("both processes exit after draining");
    assert!(exited.0.success(), "worker: {:?}", exited.0);
    assert!(exited.1.success(), "ingress: {:?}", exited.1);
}
