//! Health, readiness, metrics, migrations and the admin command line.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack, admin_database_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_report_the_stack() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let health = stack.http.get(stack.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = stack
        .http
        .get(stack.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready", "checks": {"broker": "up", "database": "up"}})
    );

    let answered = stack
        .chat("support-agent", json!({"message": "hello", "stream": true}))
        .await;
    answered.text().await.unwrap();
    stack
        .chat("no-such-agent", json!({"message": "hello"}))
        .await;
    let metrics = stack
        .http
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "confab_http_requests_total{dialect=\"agents\",status=\"200\"} 1",
        "confab_http_requests_total{dialect=\"agents\",status=\"404\"} 1",
        "confab_http_requests_total{dialect=\"management\",status=\"201\"} 1",
        "confab_time_to_first_token_seconds_count 1",
        "confab_turn_duration_seconds_count{outcome=\"done\"} 1",
        "confab_jobs_in_flight 0",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_database_is_gone() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    crate::support::stack::drop_database(&stack.database).await;
    let ready = stack.http.get(stack.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "down");
    assert_eq!(body["checks"]["broker"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrators_at_once_apply_each_migration_exactly_once() {
    let database = format!(
        "confab_m_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = confab::cli::admin::connect(&admin_database_url())
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let _dropped_at_the_end = DropDatabase(database.clone());
    let url = format!(
        "{}/{database}",
        admin_database_url().rsplit_once('/').unwrap().0
    );
    let mut a = confab::cli::admin::connect(&url).await.unwrap();
    let mut b = confab::cli::admin::connect(&url).await.unwrap();
    let (first, second) = tokio::join!(
        confab::store::migrate::run(&mut a),
        confab::store::migrate::run(&mut b)
    );
    let mut applied = first.unwrap();
    applied.extend(second.unwrap());
    assert_eq!(
        applied,
        [
            "0001_init",
            "0002_identities_channels",
            "0003_memory_knowledge",
            "0004_turn_order",
            "0005_channel_messages",
            "0006_turn_places",
            "0007_rate_gcra",
            "0008_stream_token_scope",
            "0009_messages_by_request",
            "0010_web_visitors",
            "0011_tools",
            "0012_turn_functions",
            "0013_assistant_changes"
        ]
    );
    let recorded: i64 = a
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, applied.len() as i64);
    assert!(
        confab::store::migrate::run(&mut a)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Drops its database when the test ends, passed or failed.
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let database = self.0.clone();
        // Drop cannot await inside the test's runtime: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(crate::support::stack::drop_database(&database));
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_tenant_prints_a_working_key() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["admin", "create-tenant", "--name", "Acme"])
        .env("CONFAB_DATABASE_URL", &stack.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(created["tenant_id"].as_str().is_some());
    let key = created["api_key"].as_str().unwrap();
    let response = stack
        .http
        .post(stack.url("/v1/assistants"))
        .bearer_auth(key)
        .json(&json!({"name": "Acme Bot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_json_errors() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let (status, body) = stack.api("GET", "/v2/nothing/here", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = stack.api("PUT", "/v1/api/chat/support-agent", None).await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_serves_its_own_metrics() {
    let mut stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let worker = stack
        .process_command("worker")
        .env("CONFAB_WORKER_METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    stack.adopt_child(worker);
    let reply = stack
        .chat("support-agent", json!({"message": "When are you open?"}))
        .await;
    assert_eq!(reply.status(), 200);

    // The client's reply is published before the worker settles the turn and records its
    // duration, so the count is read until it shows up rather than once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = stack
            .http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), 200);
        let text = metrics.text().await.unwrap();
        // Recorded by the worker process, not by this test's ingress.
        if text.contains("confab_worker_turn_seconds_count 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let other = stack
        .http
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

/// A worker's probes: alive as soon as it answers, ready only while it consumes its queues, so
/// an orchestrator waits for a new worker to take jobs and sees one whose broker is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_ready_only_while_it_consumes_its_queues() {
    let mut stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let http = stack.http.clone();
    let probe = |port: u16, path: &'static str| {
        let http = http.clone();
        async move {
            match http
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
            {
                Ok(response) => Some(response.status().as_u16()),
                Err(_) => None,
            }
        }
    };
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let until = |port: u16, path: &'static str, wanted: u16| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = probe(port, path).await;
            if status == Some(wanted) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} answered {status:?}, not {wanted}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    // A broker nobody answers at: alive, never ready.
    let (cut_off, dead_broker) = (free_port(), free_port());
    let worker = stack.worker_process_with(|command| {
        command
            .env(
                "CONFAB_WORKER_METRICS_LISTEN",
                format!("127.0.0.1:{cut_off}"),
            )
            .env(
                "CONFAB_AMQP_URL",
                format!("amqp://guest:guest@127.0.0.1:{dead_broker}/%2f"),
            );
    });
    stack.adopt_child(worker);
    until(cut_off, "/healthz", 200).await;
    assert_eq!(probe(cut_off, "/readyz").await, Some(503));

    // The stack's broker: ready once both roles consume.
    let port = free_port();
    let worker = stack.worker_process_with(|command| {
        command.env("CONFAB_WORKER_METRICS_LISTEN", format!("127.0.0.1:{port}"));
    });
    stack.adopt_child(worker);
    until(port, "/readyz", 200).await;
    assert_eq!(probe(port, "/healthz").await, Some(200));
}
