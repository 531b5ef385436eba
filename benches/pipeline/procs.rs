//! The stack's ingress and workers as processes of their own (release builds, configured through
//! the environment with the production defaults), as a deployment runs them.

use std::process::Stdio;
use std::time::Duration;

use confab::ReplyMode;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio::process::Child;

use crate::stack::Stack;

pub fn mode_name(mode: ReplyMode) -> &'static str {
    match mode {
        ReplyMode::PerRequest => "per-request",
        ReplyMode::Shared => "shared",
    }
}

/// An ingress process and its base URL.
pub struct Ingress {
    pub child: Child,
    pub url: String,
}

impl Ingress {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the ingress runs")
    }

    /// Resident memory of the process in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// `confab ingress` for this stack in `mode`, once it answers `/readyz`, with more variables
/// (set after the stack's own).
pub async fn ingress_with(
    stack: &Stack,
    mode: ReplyMode,
    deadline: Duration,
    env: &[(&str, String)],
) -> Ingress {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port();
    let child = stack
        .process_command("ingress")
        .env("CONFAB_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONFAB_REPLY_MODE", mode_name(mode))
        .env("CONFAB_JOB_DEADLINE_SECS", deadline.as_secs().to_string())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn an ingress process");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        let ready = stack.http.get(format!("{url}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return Ingress { child, url };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ingress process did not become ready");
}

/// `confab worker --concurrency N` for this stack; the model's pace comes from `stack.options`.
pub fn worker(stack: &Stack, concurrency: u16) -> Child {
    worker_with(stack, concurrency, &[])
}

/// [`worker`] with more variables (set after the stack's own).
pub fn worker_with(stack: &Stack, concurrency: u16, env: &[(&str, String)]) -> Child {
    stack
        .process_command("worker")
        .args(["--concurrency", &concurrency.to_string()])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a worker process")
}

/// Start `count` workers and wait until each consumes the job queue.
pub async fn workers(stack: &Stack, count: usize, concurrency: u16) -> Vec<Child> {
    let children = (0..count).map(|_| worker(stack, concurrency)).collect();
    wait_for_consumers(stack, count as u32).await;
    children
}

/// Stop workers (SIGKILL: call this only when no job is in flight) and wait until the broker
/// has forgotten their consumers.
pub async fn stop_workers(stack: &Stack, children: Vec<Child>) {
    for mut child in children {
        let _ = child.kill().await;
    }
    wait_for_consumers(stack, 0).await;
}

/// Wait until the job queue has exactly `count` consumers.
pub async fn wait_for_consumers(stack: &Stack, count: u32) {
    let connection = lapin::Connection::connect(&stack.options.amqp_url, Default::default())
        .await
        .expect("broker");
    let jobs = stack.names.jobs();
    for _ in 0..600 {
        // A passive declare of a queue not there yet closes the channel: a new one each time.
        let channel = connection.create_channel().await.expect("channel");
        let declared = channel
            .queue_declare(
                jobs.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        if declared.is_ok_and(|queue| queue.consumer_count() == count) {
            let _ = channel.close(200, "ok".into()).await;
            let _ = connection.close(200, "ok".into()).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the job queue did not reach {count} consumers");
}
