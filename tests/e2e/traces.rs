//! OpenTelemetry traces across the queue: the ingress and a worker, as processes of their own,
//! export to a local OTLP collector, and one request is one trace that spans both, the
//! worker's spans under the ingress's through the job's `traceparent` (a channel message's on
//! to its delivery); spans still queued at exit are flushed, and a collector that never
//! answers costs a request nothing.

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::support::fake_platform::FakePlatform;
use crate::support::otlp_collector::{CollectedSpan, OtlpCollector};
use crate::support::stack::{Options, Stack, request_id_of};

const INGRESS_SPANS: [&str; 4] = ["request", "auth", "publish", "relay"];
const WORKER_SPANS: [&str; 5] = [
    "turn",
    "queue wait",
    "context assembly",
    "retrieval",
    "model call",
];

/// A child's stderr, read line by line into a shared buffer until it closes.
fn capture_stderr(child: &mut tokio::process::Child) -> Arc<Mutex<String>> {
    let captured = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("a piped stderr");
    let into = captured.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    captured
}

fn logged(stderr: &Mutex<String>) -> String {
    stderr.lock().unwrap().clone()
}

/// Every span of `trace_id`.
fn of_trace<'a>(spans: &'a [CollectedSpan], trace_id: &str) -> Vec<&'a CollectedSpan> {
    spans.iter().filter(|s| s.trace_id == trace_id).collect()
}

/// Whether a trace has the spans of both sides yet.
fn complete(spans: &[CollectedSpan], request_id: &str) -> bool {
    let Some(request) = spans.iter().find(|s| {
        s.name == "request"
            && s.attributes.get("request_id").map(String::as_str) == Some(request_id)
    }) else {
        return false;
    };
    let names: BTreeSet<&str> = of_trace(spans, &request.trace_id)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    INGRESS_SPANS
        .iter()
        .chain(WORKER_SPANS.iter())
        .all(|name| names.contains(name))
}

/// `span`'s ancestors, nearest first, as far as the trace's spans go.
fn ancestry<'a>(
    span: &'a CollectedSpan,
    by_id: &HashMap<&str, &'a CollectedSpan>,
) -> Vec<&'a CollectedSpan> {
    let mut chain = Vec::new();
    let mut parent = span.parent_span_id.as_str();
    while let Some(next) = by_id.get(parent) {
        chain.push(*next);
        parent = next.parent_span_id.as_str();
        if chain.len() > 32 {
            break;
        }
    }
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_the_ingress_and_the_worker_across_the_queue() {
    let collector = OtlpCollector::start().await;
    let mut stack = Stack::start(Options {
        workers: 0,
        process_env: collector.process_env(),
        ..Options::default()
    })
    .await;
    // An assistant with knowledge, so that retrieval searches a folder.
    let (_, folder) = stack
        .api("POST", "/v1/folders", Some(json!({"name": "help"})))
        .await;
    let folder = folder["id"].as_str().unwrap().to_owned();
    let (status, _) = stack
        .api(
            "POST",
            &format!("/v1/folders/{folder}/documents"),
            Some(
                json!({"title": "hours", "content": "We are open from 9:00 to 17:00 on weekdays."}),
            ),
        )
        .await;
    assert_eq!(status, 201);
    stack
        .create_assistant(json!({"name": "Help Desk", "folder_ids": [folder]}))
        .await;
    let with_logs = |command: &mut tokio::process::Command| {
        command.env("RUST_LOG", "info").stderr(Stdio::piped());
    };
    let mut worker = stack.worker_process_with(with_logs);
    let worker_log = capture_stderr(&mut worker);
    stack.adopt_child(worker);
    let (mut ingress, url) = stack.ingress_process_with(with_logs).await;
    let ingress_log = capture_stderr(&mut ingress);
    stack.adopt_child(ingress);

    // A JSON turn and a streamed one (whose relay goes on after its handler returned).
    for stream in [false, true] {
        let response = stack
            .http
            .post(format!("{url}/v1/api/chat/help-desk"))
            .bearer_auth(&stack.api_key)
            .json(&json!({"message": "When are you open?", "stream": stream}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let request_id = request_id_of(&response);
        let body = response.text().await.unwrap();
        assert!(body.contains("9:00"), "{body}");
        let trace_id = assert_one_trace_across_the_queue(&collector, &request_id, 1).await;

        // Log lines name the trace beside the request, on both sides.
        for (side, log) in [("ingress", &ingress_log), ("worker", &worker_log)] {
            let log = names_request_and_trace(log, &request_id, &trace_id).await;
            assert!(log.is_ok(), "no {side} log line names both ids:\n{log:?}");
        }
    }
}

/// Wait for the spans of `request_id` and check they are one trace that spans both processes,
/// the worker's under the ingress's publish, its retrieval searching `folders` folders; returns
/// its id.
async fn assert_one_trace_across_the_queue(
    collector: &OtlpCollector,
    request_id: &str,
    folders: usize,
) -> String {
    let spans = collector
        .wait_for(Duration::from_secs(30), |spans| complete(spans, request_id))
        .await;
    assert!(
        complete(&spans, request_id),
        "the trace of {request_id} lacks spans; received: {:#?}",
        spans
            .iter()
            .map(|s| (&s.service, &s.name, &s.trace_id))
            .collect::<Vec<_>>()
    );
    // One trace per request: every span naming the request, on either side, is in it.
    let traces: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.attributes.get("request_id").map(String::as_str) == Some(request_id))
        .map(|s| s.trace_id.as_str())
        .collect();
    assert_eq!(
        traces.len(),
        1,
        "the request is in several traces: {traces:?}"
    );
    let trace_id = traces.into_iter().next().unwrap().to_owned();
    let trace = of_trace(&spans, &trace_id);
    let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["confab-ingress", "confab-worker"]),
        "the trace spans both processes"
    );
    let named = |name: &str| {
        let found: Vec<_> = trace.iter().filter(|s| s.name == name).collect();
        assert!(!found.is_empty(), "no {name:?} span");
        *found[0]
    };
    for name in INGRESS_SPANS {
        assert_eq!(named(name).service, "confab-ingress", "{name}");
    }
    for name in WORKER_SPANS {
        assert_eq!(named(name).service, "confab-worker", "{name}");
    }

    // The worker's spans descend from the ingress's publish, and so from the request, the root.
    let request = named("request");
    let publish = named("publish");
    assert!(
        request.parent_span_id.is_empty(),
        "the request is the trace's root"
    );
    let by_id: HashMap<&str, &CollectedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    for span in trace.iter().filter(|s| s.service == "confab-worker") {
        let ancestors = ancestry(span, &by_id);
        let names: Vec<&str> = ancestors.iter().map(|s| s.name.as_str()).collect();
        assert!(
            ancestors.iter().any(|a| a.span_id == publish.span_id)
                && ancestors.last().map(|a| &a.span_id) == Some(&request.span_id),
            "{:?} descends from {names:?}, not from the ingress's publish and request",
            span.name
        );
    }
    // A stream's relay outlives its handler; the request's span lasts until it ends.
    // The relay reads the worker's replies after the publish, to the end of the answer.
    let relay = named("relay");
    assert!(relay.end_unix_nano >= publish.end_unix_nano);
    assert_eq!(named("turn").parent_span_id, publish.span_id);
    assert_eq!(named("queue wait").parent_span_id, publish.span_id);
    let retrieval = named("retrieval");
    assert_eq!(retrieval.parent_span_id, named("context assembly").span_id);
    assert_eq!(
        retrieval.attributes.get("folders"),
        Some(&folders.to_string())
    );
    // The queue wait runs from the publication to the worker's pick-up.
    let queue_wait = named("queue wait");
    assert!(queue_wait.start_unix_nano <= queue_wait.end_unix_nano);
    assert!(queue_wait.end_unix_nano <= named("turn").end_unix_nano);
    assert!(queue_wait.start_unix_nano / 1_000_000 >= request.start_unix_nano / 1_000_000);
    assert!(queue_wait.start_unix_nano <= publish.end_unix_nano);

    trace_id
}

/// Whether a line of `log` names both ids, within a few seconds; else the whole log.
async fn names_request_and_trace(
    log: &Mutex<String>,
    request_id: &str,
    trace_id: &str,
) -> Result<(), String> {
    let (request, trace) = (
        format!("request_id={request_id}"),
        format!("trace_id={trace_id}"),
    );
    for _ in 0..50 {
        let text = logged(log);
        if text
            .lines()
            .any(|l| l.contains(&request) && l.contains(&trace))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(logged(log))
}

/// Send SIGTERM, as an orchestrator stopping a container does, and wait for the exit.
async fn stop_gracefully(mut child: tokio::process::Child) {
    let pid = child.id().expect("a running child");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    assert!(
        exited.is_ok_and(|status| status.is_ok_and(|s| s.success())),
        "the process did not stop cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_at_a_graceful_exit_are_exported_before_it() {
    let collector = OtlpCollector::start().await;
    // Batches every ten minutes: only the flush at exit can send this test's spans in time.
    let mut env = collector.process_env();
    env.retain(|(name, _)| name != "OTEL_BSP_SCHEDULE_DELAY");
    env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "600000".into()));
    let stack = Stack::start(Options {
        workers: 0,
        process_env: env,
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let worker = stack.worker_process_with(|_| {});
    let (ingress, url) = stack.ingress_process().await;
    let response = stack
        .chat_at(
            &url,
            "support-agent",
            json!({"message": "When are you open?"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let request_id = request_id_of(&response);
    response.text().await.unwrap();
    assert!(collector.spans().is_empty(), "exported before the exit");

    stop_gracefully(ingress).await;
    stop_gracefully(worker).await;
    assert!(complete(&collector.spans(), &request_id));
    assert_one_trace_across_the_queue(&collector, &request_id, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_neither_holds_nor_fails_a_request() {
    // Connections are accepted by the kernel and then nothing ever answers.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    let mut stack = Stack::start(Options {
        workers: 0,
        process_env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "50".into()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT".into(), "5000".into()),
        ],
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let worker = stack.worker_process_with(|_| {});
    stack.adopt_child(worker);
    let (ingress, url) = stack.ingress_process().await;
    stack.adopt_child(ingress);
    for stream in [false, true, false] {
        let started = std::time::Instant::now();
        let response = stack
            .http
            .post(format!("{url}/v1/api/chat/support-agent"))
            .bearer_auth(&stack.api_key)
            .json(&json!({"message": "When are you open?", "stream": stream}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let answered = if stream {
            body.contains("[DONE]")
        } else {
            body.contains("\"error\":null")
        };
        assert!(answered, "{body}");
        // The exports hang for 5 s each; a turn takes milliseconds (well under a second on
        // this machine, even with every other test running).
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(black_hole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_message_is_one_trace_from_its_webhook_to_its_delivery() {
    let collector = OtlpCollector::start().await;
    let platform = FakePlatform::start().await;
    let mut stack = Stack::start(Options {
        workers: 0,
        channel_endpoints: platform.endpoints(),
        process_env: collector.process_env(),
        ..Options::default()
    })
    .await;
    let assistant = stack.support_agent().await;
    let (status, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(
                json!({"name": "Bot", "kind": "telegram", "assistant_id": assistant["id"],
                        "config": {"bot_token": "123456:ABC-DEF", "secret_token": "tg-secret"}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let worker = stack.worker_process_with(|_| {});
    stack.adopt_child(worker);
    let (ingress, url) = stack.ingress_process().await;
    stack.adopt_child(ingress);

    let update = json!({"update_id": 77, "message": {
        "message_id": 7, "date": confab_contract::now_ms() / 1000,
        "from": {"id": 424242, "is_bot": false, "first_name": "Ana"},
        "chat": {"id": 424242, "type": "private", "first_name": "Ana"},
        "text": "What are your business hours?"}});
    let response = stack
        .http
        .post(format!(
            "{url}/webhooks/telegram/{}",
            channel["id"].as_str().unwrap()
        ))
        .header("x-telegram-bot-api-secret-token", "tg-secret")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = request_id_of(&response);
    assert_eq!(platform.wait_for(1).await.len(), 1);

    // Each message of a webhook is a turn of its own, with a request id of its own; the webhook
    // request's trace holds them all.
    let webhook_trace = |spans: &[CollectedSpan]| {
        spans
            .iter()
            .find(|s| {
                s.name == "request"
                    && s.attributes.get("request_id").map(String::as_str) == Some(&request_id)
            })
            .map(|s| s.trace_id.clone())
    };
    let delivered = |spans: &[CollectedSpan]| {
        webhook_trace(spans).is_some_and(|trace_id| {
            let trace = of_trace(spans, &trace_id);
            ["delivery", "send"]
                .iter()
                .all(|name| trace.iter().any(|s| s.name == *name))
        })
    };
    let spans = collector.wait_for(Duration::from_secs(30), delivered).await;
    assert!(
        delivered(&spans),
        "no delivery in the trace of {request_id}: {:#?}",
        spans
            .iter()
            .map(|s| (&s.service, &s.name, &s.trace_id))
            .collect::<Vec<_>>()
    );
    let trace = of_trace(&spans, &webhook_trace(&spans).unwrap());
    let delivery = *trace.iter().find(|s| s.name == "delivery").unwrap();
    let by_id: HashMap<&str, &CollectedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let ancestors = ancestry(delivery, &by_id);
    let path: Vec<(&str, &str)> = ancestors
        .iter()
        .map(|s| (s.service.as_str(), s.name.as_str()))
        .collect();
    // The answer went webhook request → publish → (queue) → turn → (deliveries) → delivery.
    assert_eq!(
        path,
        [
            ("confab-worker", "turn"),
            ("confab-ingress", "publish"),
            ("confab-ingress", "request"),
        ],
        "the delivery's ancestors"
    );
    let request = ancestors[2];
    assert!(
        request.attributes["path"].starts_with("/webhooks/telegram/"),
        "{:?}",
        request.attributes
    );
    let send = trace
        .iter()
        .find(|s| s.name == "send")
        .expect("a send span");
    assert_eq!(send.parent_span_id, delivery.span_id);
    assert_eq!(
        send.attributes.get("kind").map(String::as_str),
        Some("telegram")
    );
}
