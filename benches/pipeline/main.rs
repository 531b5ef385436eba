//! Reply-mode benchmark: raw RabbitMQ RPC baselines and confab's whole pipeline, measured in the
//! same run on the same broker, for both reply modes.
//!
//! `cargo bench --bench pipeline` (add `-- --quick` for a shorter run). Needs the local RabbitMQ
//! and Postgres, like the tests. The model is the built-in one with no delay, so the figures are
//! confab's own overhead: ingress, broker, worker and Postgres.

#[path = "../tests/e2e/stack.rs"]
#[allow(dead_code)]
mod stack;

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab::ReplyMode;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use serde_json::json;
use stack::{Options, Stack, amqp_url};
use tokio::sync::{Mutex, mpsc};

/// Reply messages per raw RPC, as in the brief's baseline.
const RAW_REPLIES: usize = 20;

struct Settings {
    latency_samples: usize,
    load_duration: Duration,
    clients: usize,
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let settings = Settings {
        latency_samples: if quick { 200 } else { 1000 },
        load_duration: Duration::from_secs(if quick { 2 } else { 5 }),
        clients: 64,
    };
    println!(
        "confab pipeline benchmark: {} latency samples, {:?} load phases, {} clients",
        settings.latency_samples, settings.load_duration, settings.clients
    );
    println!(
        "{:<12} {:<34} {:>10} {:>10} {:>12} {:>8}",
        "mode", "measure", "p50 ms", "p99 ms", "per second", "ratio"
    );
    for mode in [ReplyMode::PerRequest, ReplyMode::Shared] {
        let raw = raw_rpc(mode, &settings).await;
        let turns = confab_turns(mode, &settings).await;
        let label = match mode {
            ReplyMode::PerRequest => "per-request",
            ReplyMode::Shared => "shared",
        };
        raw.single
            .print(label, "raw RPC (20 replies), 1 client", None);
        turns
            .single
            .print(label, "confab JSON turn, 1 client", Some(&raw.single));
        turns
            .first_token
            .print(label, "confab SSE first token, 1 client", Some(&raw.single));
        raw.load.print(label, "raw RPC, 64 clients", None);
        turns
            .load
            .print(label, "confab JSON turns, 64 clients", Some(&raw.load));
        println!(
            "{:<12} reply events per confab turn: {:.1} (deltas coalesced; raw RPC sends {RAW_REPLIES})",
            label, turns.events_per_turn
        );
    }
}

#[derive(Clone, Default)]
struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    per_second: f64,
}

impl Figures {
    fn from_latencies(mut samples: Vec<Duration>, elapsed: Duration) -> Figures {
        samples.sort();
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[index].as_secs_f64() * 1000.0
        };
        Figures {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            per_second: samples.len() as f64 / elapsed.as_secs_f64(),
        }
    }

    /// Latency ratios compare p50s; throughput ratios compare rates.
    fn print(&self, mode: &str, measure: &str, baseline: Option<&Figures>) {
        let ratio = baseline
            .map(|b| {
                if measure.contains("64 clients") {
                    format!("{:.2}x", self.per_second / b.per_second)
                } else {
                    format!("{:.2}x", self.p50_ms / b.p50_ms)
                }
            })
            .unwrap_or_else(|| "base".into());
        println!(
            "{:<12} {:<34} {:>10.2} {:>10.2} {:>12.0} {:>8}",
            mode, measure, self.p50_ms, self.p99_ms, self.per_second, ratio
        );
    }
}

struct RawFigures {
    single: Figures,
    load: Figures,
}

/// Run `clients` loops of `one` for `duration`; latencies of every call.
async fn load<F, Fut>(clients: usize, duration: Duration, one: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let one = Arc::new(one);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < duration {
                let t = Instant::now();
                one(client).await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    Figures::from_latencies(all, started.elapsed())
}

async fn sequential<F, Fut>(samples: usize, one: F) -> Figures
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..samples / 10 {
        one().await;
    }
    let mut latencies = Vec::with_capacity(samples);
    let started = Instant::now();
    for _ in 0..samples {
        let t = Instant::now();
        one().await;
        latencies.push(t.elapsed());
    }
    Figures::from_latencies(latencies, started.elapsed())
}

// ---- raw RPC baseline: lapin only, no confab code ----

/// Waiting raw requests by correlation id (shared mode).
type Routes = Arc<Mutex<std::collections::HashMap<String, mpsc::UnboundedSender<()>>>>;

struct RawRpc {
    channel: Channel,
    request_queue: String,
    /// Shared mode: the one reply queue and the waiting requests by correlation id.
    shared: Option<(String, Routes)>,
}

async fn raw_rpc(mode: ReplyMode, settings: &Settings) -> RawFigures {
    let connection = Connection::connect(&amqp_url(), Default::default())
        .await
        .expect("broker");
    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let request_queue = format!("{prefix}.rpc");
    let responder = connection.create_channel().await.expect("channel");
    responder
        .queue_declare(
            request_queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let mut requests = responder
        .basic_consume(
            request_queue.as_str().into(),
            "responder".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let reply_channel = connection.create_channel().await.expect("channel");
    tokio::spawn(async move {
        while let Some(Ok(request)) = requests.next().await {
            let reply_to = request.properties.reply_to().clone().unwrap_or_default();
            let correlation = request
                .properties
                .correlation_id()
                .clone()
                .unwrap_or_default();
            for i in 0..RAW_REPLIES {
                let _ = reply_channel
                    .basic_publish(
                        "".into(),
                        reply_to.clone(),
                        BasicPublishOptions::default(),
                        format!("{{\"seq\":{i},\"text\":\"token\"}}").as_bytes(),
                        BasicProperties::default().with_correlation_id(correlation.clone()),
                    )
                    .await;
            }
        }
    });
    let client_channel = connection.create_channel().await.expect("channel");
    let shared = if mode == ReplyMode::Shared {
        let queue = format!("{prefix}.replies");
        client_channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare");
        let routes: Routes = Arc::default();
        let mut consumer = client_channel
            .basic_consume(
                queue.as_str().into(),
                "replies".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let router = routes.clone();
        tokio::spawn(async move {
            while let Some(Ok(reply)) = consumer.next().await {
                let id = reply
                    .properties
                    .correlation_id()
                    .clone()
                    .unwrap_or_default();
                if let Some(tx) = router.lock().await.get(id.as_str()) {
                    let _ = tx.send(());
                }
            }
        });
        Some((queue, routes))
    } else {
        None
    };
    let rpc = Arc::new(RawRpc {
        channel: client_channel,
        request_queue,
        shared,
    });
    let single = {
        let rpc = rpc.clone();
        sequential(settings.latency_samples, move || {
            let rpc = rpc.clone();
            async move { rpc.call().await }
        })
        .await
    };
    let load = {
        let rpc = rpc.clone();
        load(settings.clients, settings.load_duration, move |_| {
            let rpc = rpc.clone();
            async move { rpc.call().await }
        })
        .await
    };
    let _ = connection.close(200, "bench done".into()).await;
    RawFigures { single, load }
}

impl RawRpc {
    async fn call(&self) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match &self.shared {
            Some((queue, routes)) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                routes.lock().await.insert(id.clone(), tx);
                self.publish(queue, &id).await;
                for _ in 0..RAW_REPLIES {
                    rx.recv().await.expect("reply");
                }
                routes.lock().await.remove(&id);
            }
            None => {
                let queue = format!("{}.reply.{id}", self.request_queue);
                self.channel
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions {
                            exclusive: true,
                            auto_delete: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .expect("declare");
                let mut consumer = self
                    .channel
                    .basic_consume(
                        queue.as_str().into(),
                        queue.as_str().into(),
                        BasicConsumeOptions {
                            no_ack: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .expect("consume");
                self.publish(&queue, &id).await;
                for _ in 0..RAW_REPLIES {
                    consumer.next().await.expect("reply").expect("delivery");
                }
                let _ = self
                    .channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
    }

    async fn publish(&self, reply_to: &str, id: &str) {
        self.channel
            .basic_publish(
                "".into(),
                self.request_queue.as_str().into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default()
                    .with_reply_to(reply_to.into())
                    .with_correlation_id(id.into()),
            )
            .await
            .expect("publish");
    }
}

// ---- confab end to end ----

struct TurnFigures {
    single: Figures,
    first_token: Figures,
    load: Figures,
    events_per_turn: f64,
}

/// Instructions whose best sentence is a ~50-token answer to QUESTION.
const INSTRUCTIONS: &str = "You are the benchmark assistant. \
    Our opening hours are long and varied because the shop serves customers in many time zones, \
    so the hours run from seven in the morning until eleven at night on weekdays, from nine until \
    nine on Saturdays, and from ten until six on Sundays and public holidays, except at Christmas.";
const QUESTION: &str = "What are your opening hours?";

async fn confab_turns(mode: ReplyMode, settings: &Settings) -> TurnFigures {
    let options = Options {
        reply_mode: mode,
        workers: 2,
        deadline: Duration::from_secs(60),
        ..Options::default()
    };
    let mut stack = Stack::start(options).await;
    stack.start_worker_task();
    stack
        .create_assistant(json!({"name": "Bench", "instructions": INSTRUCTIONS}))
        .await;
    let stack = Arc::new(stack);
    let url = stack.url("/v1/api/chat/bench");
    let key = stack.api_key.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");

    let turn = {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        move || {
            let (http, url, key) = (http.clone(), url.clone(), key.clone());
            async move {
                let response = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"message": QUESTION}))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("body");
            }
        }
    };
    let single = sequential(settings.latency_samples, turn.clone()).await;

    let first_token = {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        sequential(settings.latency_samples, move || {
            let (http, url, key) = (http.clone(), url.clone(), key.clone());
            async move {
                let response = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"message": QUESTION, "stream": true}))
                    .send()
                    .await
                    .expect("request");
                let mut body = response.bytes_stream();
                // Time to the first chunk; the rest is read outside the measurement's concern
                // but before the next sample, so samples do not overlap.
                let first = body.next().await;
                assert!(first.is_some());
                while body.next().await.is_some() {}
            }
        })
        .await
    };

    let load = {
        let turn = turn.clone();
        load(settings.clients, settings.load_duration, move |_| turn()).await
    };

    let events_per_turn = events_per_turn(&stack).await;
    TurnFigures {
        single,
        first_token,
        load,
        events_per_turn,
    }
}

/// Reply events of one streamed turn: the SSE stream carries one chunk per delta event, plus the
/// `accepted` and `done` events it does not show (a zero-latency model sends no keepalives).
async fn events_per_turn(stack: &Stack) -> f64 {
    let response = stack
        .http
        .post(stack.url("/v1/api/chat/bench"))
        .bearer_auth(&stack.api_key)
        .json(&json!({"message": QUESTION, "stream": true}))
        .send()
        .await
        .expect("request");
    let body = response.text().await.expect("body");
    let chunks = stack::sse_data(&body)
        .iter()
        .filter(|d| d.starts_with("{\"chunk\""))
        .count();
    (chunks + 2) as f64
}
