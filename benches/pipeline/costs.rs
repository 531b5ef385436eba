//! Where a turn's time goes outside the model, counted per turn: Postgres statements and round
//! trips of the ingress and of the worker (each talks to Postgres through a counting proxy,
//! `wire.rs`), broker messages each publishes and receives, and the CPU time of the ingress,
//! the workers, Postgres and RabbitMQ (from `/proc`). Closed-loop clients send plain turns, JSON
//! or streamed (a new conversation each, the built-in model at zero latency), back to back: one
//! client shows a turn alone, many show what a turn costs where throughput is decided.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confab::ReplyMode;
use serde_json::json;

use crate::measure::Phase;
use crate::procs;
use crate::stack::{Options, Stack};
use crate::turns::{Client, INSTRUCTIONS};
use crate::wire::{Counts, Protocol, Proxy};

/// How the clients take their answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Json,
    /// As an SSE stream, whose every event also goes to the reply log.
    Streamed,
}

/// What one turn cost, averaged over the turns of the measured window.
#[derive(Clone, Debug)]
pub struct TurnCosts {
    pub mode: ReplyMode,
    pub clients: usize,
    pub answer: Answer,
    pub turns: u64,
    pub ingress: Counts,
    pub worker: Counts,
    /// CPU microseconds per turn: ingress, workers, Postgres (all its processes), RabbitMQ.
    pub cpu_us: [f64; 4],
}

impl TurnCosts {
    pub fn per_turn(&self, count: u64) -> f64 {
        count as f64 / self.turns.max(1) as f64
    }
}

/// The address in a `postgres://` or `amqp://` URL's authority (`host:port`).
fn upstream(url: &str) -> SocketAddr {
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?']).next())
        .expect("a URL with an authority");
    let host_port = authority.rsplit('@').next().expect("host:port");
    host_port.parse().expect("a numeric host:port")
}

/// `url` pointed at `proxy` instead of its own host and port.
fn through(url: &str, proxy: SocketAddr) -> String {
    url.replacen(&upstream(url).to_string(), &proxy.to_string(), 1)
}

/// The costs of `clients` closed loops against one ingress and `workers` worker processes
/// taking 16 jobs each.
pub async fn turn_costs(
    mode: ReplyMode,
    clients: usize,
    workers: usize,
    answer: Answer,
    phase: Phase,
) -> TurnCosts {
    let stack = Stack::start(Options {
        workers: 0,
        reply_mode: mode,
        ..Options::default()
    })
    .await;
    stack
        .create_assistant(json!({"name": "Bench", "instructions": INSTRUCTIONS}))
        .await;
    let database_url = stack.worker_config().shared.database_url;
    let amqp_url = stack.options.amqp_url.clone();
    let pg = upstream(&database_url);
    let amqp = upstream(&amqp_url);
    let proxies = [
        Proxy::start(pg, Protocol::Postgres).await,
        Proxy::start(amqp, Protocol::Amqp).await,
        Proxy::start(pg, Protocol::Postgres).await,
        Proxy::start(amqp, Protocol::Amqp).await,
    ];
    let env = |db: &Proxy, broker: &Proxy| {
        [
            ("CONFAB_DATABASE_URL", through(&database_url, db.addr)),
            ("CONFAB_AMQP_URL", through(&amqp_url, broker.addr)),
        ]
    };
    let mut ingress = procs::ingress_with(
        &stack,
        mode,
        stack.options.deadline,
        &env(&proxies[0], &proxies[1]),
    )
    .await;
    let mut worker_procs: Vec<_> = (0..workers)
        .map(|_| procs::worker_with(&stack, 16, &env(&proxies[2], &proxies[3])))
        .collect();
    procs::wait_for_consumers(&stack, workers as u32).await;
    let worker_pids: Vec<u32> = worker_procs
        .iter()
        .map(|w| w.id().expect("the worker runs"))
        .collect();
    let client = Client {
        http: reqwest::Client::new(),
        url: format!("{}/v1/api/chat/bench", ingress.url).into(),
        key: stack.api_key.clone().into(),
    };
    let turn_loops = |until: Instant| {
        let client = client.clone();
        async move {
            let loops = (0..clients).map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut turns = 0u64;
                    while Instant::now() < until {
                        match answer {
                            Answer::Json => {
                                client.json_turn().await;
                            }
                            Answer::Streamed => {
                                client.sse_turn().await;
                            }
                        }
                        turns += 1;
                    }
                    turns
                })
            });
            let mut turns = 0;
            for task in futures_util::future::join_all(loops).await {
                turns += task.expect("a client task");
            }
            turns
        }
    };
    turn_loops(Instant::now() + phase.warmup).await;
    let ingress_pid = ingress.pid();
    let counted = |proxies: &[Proxy; 4]| {
        let add = |a: Counts, b: Counts| Counts {
            statements: a.statements + b.statements,
            round_trips: a.round_trips + b.round_trips,
            publishes: a.publishes + b.publishes,
            deliveries: a.deliveries + b.deliveries,
        };
        (
            add(proxies[0].counts(), proxies[1].counts()),
            add(proxies[2].counts(), proxies[3].counts()),
        )
    };
    let cpu_before = cpu_ticks(ingress_pid, &worker_pids);
    let (ingress_before, worker_before) = counted(&proxies);
    let turns = turn_loops(Instant::now() + phase.measure).await;
    // The worker acknowledges and the ingress drops a turn's reply path just after the answer:
    // let the last turn's traffic finish before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ingress_after, worker_after) = counted(&proxies);
    let cpu_after = cpu_ticks(ingress_pid, &worker_pids);
    let micros_per_tick = 1e6 / clock_ticks_per_second();
    let cpu_us = std::array::from_fn(|i| {
        (cpu_after[i] - cpu_before[i]) as f64 * micros_per_tick / turns.max(1) as f64
    });
    for worker in &mut worker_procs {
        let _ = worker.kill().await;
    }
    let _ = ingress.child.kill().await;
    drop(stack);
    TurnCosts {
        mode,
        clients,
        answer,
        turns,
        ingress: ingress_after.since(ingress_before),
        worker: worker_after.since(worker_before),
        cpu_us,
    }
}

/// CPU ticks (user and system) of the ingress and the workers, and of every `postgres` and
/// every RabbitMQ (`beam.smp`) process.
fn cpu_ticks(ingress: u32, workers: &[u32]) -> [u64; 4] {
    let mut ticks = [0u64; 4];
    ticks[0] = process_ticks(ingress).map(|(_, t)| t).unwrap_or_default();
    ticks[1] = workers
        .iter()
        .filter_map(|&w| process_ticks(w).map(|(_, t)| t))
        .sum();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        match process_ticks(pid) {
            Some((name, t)) if name == "postgres" => ticks[2] += t,
            Some((name, t)) if name == "beam.smp" => ticks[3] += t,
            _ => {}
        }
    }
    ticks
}

/// A process's command name and its user plus system CPU ticks (`/proc/<pid>/stat`).
fn process_ticks(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_owned();
    // After the name: state is field 3, utime field 14 and stime field 15.
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}
