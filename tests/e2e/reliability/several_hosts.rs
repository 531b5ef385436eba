//! The broker and the database may each be named by several hosts (a RabbitMQ cluster's nodes, a
//! Postgres primary and its standbys): every process uses one that answers.

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack, amqp_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_connects_to_a_node_that_answers_when_the_first_listed_is_down() {
    // Nothing listens on port 1: that node is down.
    let nodes = format!("amqp://guest:guest@127.0.0.1:1/%2f,{}", amqp_url());
    let mut stack = Stack::start(Options {
        amqp_url: nodes,
        workers: 0,
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    // A worker process, which reads the list from its environment as deployed.
    stack.start_worker_process();
    let body: Value = stack
        .chat(
            "support-agent",
            json!({"message": "What are your business hours?"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["data"]["response"],
        "Our business hours are 9:00 to 17:00, Monday to Friday."
    );
}

/// The same for the database: a libpq-style URL naming several hosts, of which the processes
/// use the one that answers as a primary (`target_session_attrs=read-write`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processes_use_the_database_host_that_answers_as_a_primary() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    // `postgres://user@host:port/db` with a dead host (port 1) listed first.
    let (scheme_user, rest) = stack.database_url.split_once('@').unwrap();
    let several = format!("{scheme_user}@127.0.0.1:1,{rest}?target_session_attrs=read-write");
    let with_hosts = |command: &mut tokio::process::Command| {
        command.env("CONFAB_DATABASE_URL", &several);
    };
    let mut worker = stack.worker_process_with(with_hosts);
    let (mut ingress, base) = stack.ingress_process_with(with_hosts).await;
    let response = stack
        .chat_at(
            &base,
            "support-agent",
            json!({"message": "What are your business hours?"}),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    let _ = ingress.kill().await;
    let _ = worker.kill().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["response"],
        "Our business hours are 9:00 to 17:00, Monday to Friday."
    );
}
