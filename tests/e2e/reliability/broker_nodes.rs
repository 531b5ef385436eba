//! `CONFAB_AMQP_URL` may list a cluster's nodes: every process connects to whichever answers.

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
