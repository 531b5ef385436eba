//! The benchmark harness: confab's real stack on this machine (an ingress process, worker
//! processes, RabbitMQ, Postgres) with the built-in model as a simulated model of configurable
//! latency and token rate, and the raw baselines measured in the same run. Every figure is
//! printed with its ratio to its baseline, and a last table checks the targets of the brief's
//! section 6.
//!
//! `cargo bench --bench pipeline -- --quick` (about three minutes; leave out `--quick` for the
//! full run). `--only baselines,turns,coalescing,streams,scaling,resume` runs some sections (ratios to
//! a baseline not measured show as `-`). Needs the local RabbitMQ and Postgres, like the tests;
//! leaves nothing behind in either.
//!
//! Sections: `raw` (broker RPC and Postgres turn transaction), `turns` (time to first token and
//! turns per second in both reply modes), `turns::coalescing` (reply events per turn),
//! `streams` (ingress memory per idle SSE stream), `scaling` (1, 2 and 4 workers), `resume`
//! (streamed turns with the reply log on and off), `costs` (what one turn costs the ingress and
//! the worker in Postgres statements and round trips, broker messages and CPU, counted on the
//! wire and in `/proc`).

#[path = "../../tests/e2e/support/stack.rs"]
#[allow(dead_code)]
mod stack;

mod costs;
mod measure;
mod procs;
mod raw;
mod report;
mod resume;
mod scaling;
mod streams;
mod turns;
mod wire;

use std::time::Duration;

use confab::ReplyMode;

use costs::Answer;
use measure::{Phase, Run};
use procs::mode_name;
use raw::{PostgresFigures, RAW_REPLIES};
use report::{Table, ms, rate, ratio, verdict};
use turns::{Coalescing, ModeTurns};

/// The sections, in the order they run (`--only` takes a comma-separated list of them).
const SECTIONS: [&str; 7] = [
    "baselines",
    "turns",
    "coalescing",
    "streams",
    "scaling",
    "resume",
    "costs",
];
/// Most Postgres round trips of a plain turn: ingress, worker; most statements of both (issue
/// targets for the work outside the model).
const ROUND_TRIP_TARGETS: (f64, f64) = (2.0, 3.0);
const STATEMENT_TARGET: f64 = 6.0;
/// Conversations at once for the cost of resumable streams.
const RESUME_CONCURRENCIES: [usize; 2] = [1, 50];
const MODES: [ReplyMode; 2] = [ReplyMode::PerRequest, ReplyMode::Shared];
/// The cost runs: reply mode, clients, worker processes. One client shows a turn alone, the
/// shared mode under load what decides its throughput (the two cores are then the limit).
const COST_RUNS: [(ReplyMode, usize, usize, Answer); 5] = [
    (ReplyMode::PerRequest, 1, 1, Answer::Json),
    (ReplyMode::Shared, 1, 1, Answer::Json),
    (ReplyMode::Shared, 64, TURN_WORKERS, Answer::Json),
    (ReplyMode::Shared, 1, 1, Answer::Streamed),
    (ReplyMode::Shared, 64, TURN_WORKERS, Answer::Streamed),
];
/// Concurrent conversations (and raw RPC clients) of the latency and throughput runs (issue
/// 18 sets its throughput targets at 64 and 200 clients).
const CONCURRENCIES: [usize; 3] = [1, 64, 200];
/// Connections of the parallel Postgres baseline.
const PG_CONNECTIONS: usize = 16;
/// Worker processes, and jobs each takes at once, in the turn runs (the default concurrency).
const TURN_WORKERS: usize = 2;
const TURN_WORKER_CONCURRENCY: u16 = 16;
/// Token paces of the coalescing runs (the coalescing window is the default 5 ms).
const TOKEN_DELAYS_MS: [u64; 4] = [0, 1, 5, 10];
/// Idle stream memory: per-request queues cost the broker ~28 KB each, so the quick run opens
/// 10,000 streams in shared mode only.
const STREAM_COUNTS: [usize; 2] = [1_000, 10_000];
/// Worker scale-out: a model of fixed latency, each worker taking a few jobs at once, and more
/// clients than all workers' slots.
const SCALE_WORKERS: [usize; 3] = [1, 2, 4];
const SCALE_CONCURRENCY: u16 = 2;
const SCALE_LATENCY: Duration = Duration::from_millis(50);
const SCALE_CLIENTS: usize = 32;
/// Open idle streams must cost the ingress at most this (brief section 6).
const STREAM_TARGET_KIB: f64 = 64.0;

struct Settings {
    quick: bool,
    phase: Phase,
    coalescing_turns: usize,
    /// Sequential streamed turns whose time to first token is split.
    split_turns: usize,
    only: Option<Vec<String>>,
}

impl Settings {
    fn from_args() -> Settings {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(|list| list.split(',').map(str::to_owned).collect::<Vec<_>>());
        if let Some(unknown) = only
            .iter()
            .flatten()
            .find(|s| !SECTIONS.contains(&s.as_str()))
        {
            panic!("unknown section {unknown:?}; the sections are {SECTIONS:?}");
        }
        Settings {
            quick,
            phase: if quick {
                Phase {
                    warmup: Duration::from_millis(500),
                    measure: Duration::from_secs(2),
                }
            } else {
                Phase {
                    warmup: Duration::from_secs(1),
                    measure: Duration::from_secs(8),
                }
            },
            coalescing_turns: if quick { 20 } else { 100 },
            split_turns: if quick { 100 } else { 500 },
            only,
        }
    }

    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }

    fn stream_cases(&self) -> Vec<(ReplyMode, usize)> {
        let mut cases = vec![
            (ReplyMode::PerRequest, STREAM_COUNTS[0]),
            (ReplyMode::Shared, STREAM_COUNTS[0]),
        ];
        if !self.quick {
            cases.push((ReplyMode::PerRequest, STREAM_COUNTS[1]));
        }
        cases.push((ReplyMode::Shared, STREAM_COUNTS[1]));
        cases
    }
}

/// Everything measured, for the closing table of targets.
#[derive(Default)]
struct Results {
    /// Raw RPC runs by mode, one per concurrency.
    raw: Vec<(ReplyMode, Vec<Run>)>,
    /// The layout of each raw RPC run, in the same order.
    raw_layouts: Vec<Vec<raw::Layout>>,
    postgres: Option<PostgresFigures>,
    /// Persistent publish with confirm to a quorum queue: 1 client, `PG_CONNECTIONS` clients.
    quorum: Option<(Run, Run)>,
    turns: Vec<ModeTurns>,
    coalescing: Vec<Coalescing>,
    streams: Vec<streams::StreamMemory>,
    scaling: Vec<scaling::Scaling>,
    resume: Vec<resume::ResumeCost>,
    costs: Vec<costs::TurnCosts>,
}

impl Results {
    fn raw(&self, mode: ReplyMode) -> Option<&[Run]> {
        self.raw
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, runs)| runs.as_slice())
    }
}

#[tokio::main]
async fn main() {
    let settings = Settings::from_args();
    print_setting(&settings).await;
    let mut results = Results::default();
    if settings.runs("baselines") {
        for mode in MODES {
            let (runs, layouts) = raw::rpc_runs(mode, &CONCURRENCIES, settings.phase)
                .await
                .into_iter()
                .unzip();
            results.raw.push((mode, runs));
            results.raw_layouts.push(layouts);
        }
        results.quorum = Some(raw::quorum_publish(PG_CONNECTIONS, settings.phase).await);
        results.postgres = Some(raw::postgres(PG_CONNECTIONS, settings.phase).await);
        print_baselines(&results);
    }
    if settings.runs("turns") {
        for mode in MODES {
            results.turns.push(
                turns::turn_runs(
                    mode,
                    &CONCURRENCIES,
                    settings.phase,
                    TURN_WORKERS,
                    TURN_WORKER_CONCURRENCY,
                    settings.split_turns,
                )
                .await,
            );
        }
        print_first_token(&results);
        print_split(&results);
        print_throughput(&results);
    }
    if settings.runs("coalescing") {
        let delays = TOKEN_DELAYS_MS.map(Duration::from_millis);
        results.coalescing = turns::coalescing(&delays, settings.coalescing_turns).await;
        print_coalescing(&results);
    }
    if settings.runs("streams") {
        for (mode, count) in settings.stream_cases() {
            results
                .streams
                .push(streams::idle_streams(mode, count).await);
        }
        print_streams(&results);
    }
    if settings.runs("scaling") {
        results.scaling = scaling::scaling(
            &SCALE_WORKERS,
            SCALE_CONCURRENCY,
            SCALE_LATENCY,
            SCALE_CLIENTS,
            settings.phase,
        )
        .await;
        print_scaling(&results);
    }
    if settings.runs("resume") {
        results.resume = resume::resume_cost(
            &MODES,
            &RESUME_CONCURRENCIES,
            settings.phase,
            TURN_WORKERS,
            TURN_WORKER_CONCURRENCY,
        )
        .await;
        print_resume(&results);
    }
    if settings.runs("costs") {
        for (mode, clients, workers, answer) in COST_RUNS {
            let run = costs::turn_costs(mode, clients, workers, answer, settings.phase).await;
            results.costs.push(run);
        }
        print_costs(&results);
    }
    print_targets(&results);
}

async fn print_setting(settings: &Settings) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let rabbitmq = tokio::process::Command::new("rabbitmqctl")
        .arg("version")
        .output()
        .await
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!(
        "confab pipeline benchmark ({} run): {cpu}, {cores} cores, {memory_gib:.0} GiB; RabbitMQ {rabbitmq}",
        if settings.quick { "quick" } else { "full" }
    );
    println!(
        "phases: {:?} warm-up, {:?} measured; closed loops (each client sends its next request \
         when its last is answered); each confab turn in a new conversation; ingress and workers \
         are release-built processes with default settings; everything shares this machine",
        settings.phase.warmup, settings.phase.measure
    );
}

fn print_baselines(results: &Results) {
    let mut table = Table::new(
        format!(
            "1. Raw baselines, no confab code (RPC = lapin only, as durable as a turn: a \
             persistent request to a quorum queue, confirmed, acked after its {RAW_REPLIES} \
             replies, the better of two connection layouts; Postgres = tokio-postgres, one \
             transaction inserting a turn and reading the last 20)"
        ),
        &[
            ("baseline", 34),
            ("clients", 7),
            ("n", 6),
            ("1st p50", 7),
            ("1st p99", 7),
            ("1st p999", 8),
            ("p50 ms", 7),
            ("p99 ms", 7),
            ("p999 ms", 7),
            ("per s", 6),
        ],
    );
    for ((mode, runs), layouts) in results.raw.iter().zip(&results.raw_layouts) {
        for (run, layout) in runs.iter().zip(layouts) {
            table.row(vec![
                format!("RPC, {}, {}", mode_name(*mode), layout.name()),
                run.clients.to_string(),
                run.samples.to_string(),
                ms(run.first.p50),
                ms(run.first.p99),
                ms(run.first.p999),
                ms(run.total.p50),
                ms(run.total.p99),
                ms(run.total.p999),
                rate(run.per_second),
            ]);
        }
    }
    if let Some((single, parallel)) = &results.quorum {
        for run in [single, parallel] {
            table.row(vec![
                "quorum publish, confirmed".into(),
                run.clients.to_string(),
                run.samples.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                ms(run.total.p50),
                ms(run.total.p99),
                ms(run.total.p999),
                rate(run.per_second),
            ]);
        }
    }
    if let Some(pg) = &results.postgres {
        for run in [&pg.single, &pg.parallel] {
            table.row(vec![
                format!("Postgres {} turn tx", pg.version),
                run.clients.to_string(),
                run.samples.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                ms(run.total.p50),
                ms(run.total.p99),
                ms(run.total.p999),
                rate(run.per_second),
            ]);
        }
    }
    table.print();
    println!(
        "(1st = time to the first reply message: the baseline of time to first token; quorum \
         publish = a persistent 1 KiB message to a quorum queue until its confirm, as a job's)"
    );
}

fn print_first_token(results: &Results) {
    let mut table = Table::new(
        "2. Time to first token, zero-latency model: request sent -> first SSE chunk; \
         raw = raw RPC's first reply, same mode and concurrency; x = confab / raw",
        &[
            ("mode", 11),
            ("convs", 5),
            ("n", 6),
            ("raw p50", 7),
            ("raw p99", 7),
            ("raw p999", 8),
            ("p50 ms", 7),
            ("p99 ms", 7),
            ("p999 ms", 7),
            ("x p50", 7),
            ("x p99", 7),
            ("x p999", 7),
        ],
    );
    for turns in &results.turns {
        for (i, run) in turns.sse.iter().enumerate() {
            let raw = results.raw(turns.mode).and_then(|r| r.get(i));
            let raw_ms = |q: fn(&Run) -> f64| raw.map_or("-".into(), |r| ms(q(r)));
            let x = |q: fn(&Run) -> f64| raw.map_or("-".into(), |r| ratio(q(run), q(r)));
            table.row(vec![
                mode_name(turns.mode).into(),
                run.clients.to_string(),
                run.samples.to_string(),
                raw_ms(|r| r.first.p50),
                raw_ms(|r| r.first.p99),
                raw_ms(|r| r.first.p999),
                ms(run.first.p50),
                ms(run.first.p99),
                ms(run.first.p999),
                x(|r| r.first.p50),
                x(|r| r.first.p99),
                x(|r| r.first.p999),
            ]);
        }
    }
    table.print();
    println!(
        "(p999 of fewer than 1,000 samples is close to the maximum; the full run takes more samples)"
    );
}

fn print_split(results: &Results) {
    let mut table = Table::new(
        "2b. One conversation's time to first token, split (means over sequential turns): \
         pipeline = ingress histogram from opening the reply path to the first delta (reply path, \
         pending turn, confirmed job publish, worker, broker); before = HTTP, key lookup with \
         rate limit bump, assistant lookup, dialect",
        &[
            ("mode", 11),
            ("turns", 5),
            ("TTFT ms", 7),
            ("pipeline", 8),
            ("before", 7),
            ("share", 6),
        ],
    );
    for turns in &results.turns {
        if let Some(split) = &turns.split {
            table.row(vec![
                mode_name(turns.mode).into(),
                split.turns.to_string(),
                ms(split.client_ms),
                ms(split.pipeline_ms),
                ms(split.client_ms - split.pipeline_ms),
                ratio(split.pipeline_ms, split.client_ms),
            ]);
        }
    }
    table.print();
    if let (Some((quorum, _)), Some(pg)) = (&results.quorum, &results.postgres) {
        println!(
            "(for scale, 1 client p50: confirmed quorum publish {} ms, Postgres turn tx {} ms)",
            ms(quorum.total.p50),
            ms(pg.single.total.p50)
        );
    }
}

fn print_throughput(results: &Results) {
    let mut table = Table::new(
        "3. Completed turns per second (~50-token replies), JSON and SSE, vs raw RPC round trips \
         per second at the same mode and concurrency",
        &[
            ("mode", 11),
            ("clients", 7),
            ("raw RPC/s", 9),
            ("JSON/s", 7),
            ("ratio", 6),
            ("SSE/s", 7),
            ("ratio", 6),
            ("JSON p50", 8),
            ("JSON p99", 8),
            ("raw p50", 7),
        ],
    );
    for turns in &results.turns {
        for (i, (json, sse)) in turns.json.iter().zip(&turns.sse).enumerate() {
            let raw = results.raw(turns.mode).and_then(|r| r.get(i));
            let x = |run: &Run| raw.map_or("-".into(), |r| ratio(run.per_second, r.per_second));
            table.row(vec![
                mode_name(turns.mode).into(),
                json.clients.to_string(),
                raw.map_or("-".into(), |r| rate(r.per_second)),
                rate(json.per_second),
                x(json),
                rate(sse.per_second),
                x(sse),
                ms(json.total.p50),
                ms(json.total.p99),
                raw.map_or("-".into(), |r| ms(r.total.p50)),
            ]);
        }
    }
    table.print();
    println!(
        "(JSON p50/p99 = whole turn in ms; raw p50 = whole raw RPC; {TURN_WORKERS} worker \
         processes taking {TURN_WORKER_CONCURRENCY} jobs each)"
    );
}

fn print_resume(results: &Results) {
    let mut table = Table::new(
        "8. Resumable streams: SSE turns with the reply log on (each stream event also on the \
         RabbitMQ stream) vs off (CONFAB_RESUME_RETENTION_SECS=0), same run; x = on / off",
        &[
            ("mode", 11),
            ("log", 3),
            ("clients", 7),
            ("n", 6),
            ("TTFT p50", 8),
            ("TTFT p99", 8),
            ("SSE/s", 7),
            ("x p50", 6),
            ("x SSE/s", 7),
        ],
    );
    for cost in &results.resume {
        let off = results
            .resume
            .iter()
            .find(|other| other.mode == cost.mode && !other.logged);
        for (i, run) in cost.runs.iter().enumerate() {
            let base = off.and_then(|off| off.runs.get(i));
            let x = |q: fn(&Run) -> f64| base.map_or("-".into(), |b| ratio(q(run), q(b)));
            table.row(vec![
                mode_name(cost.mode).into(),
                if cost.logged { "on" } else { "off" }.into(),
                run.clients.to_string(),
                run.samples.to_string(),
                ms(run.first.p50),
                ms(run.first.p99),
                rate(run.per_second),
                x(|r| r.first.p50),
                x(|r| r.per_second),
            ]);
        }
    }
    table.print();
}

fn print_coalescing(results: &Results) {
    let mut table = Table::new(
        format!(
            "4. SSE chunks per turn (the deltas a client is relayed) by the model's token pace; \
             coalescing window 5 ms; the raw RPC sends {RAW_REPLIES} messages (reply events on \
             the wire: section 8)"
        ),
        &[
            ("ms per token", 12),
            ("turns", 5),
            ("tokens/turn", 11),
            ("chunks/turn", 11),
            ("chunks/token", 12),
            ("TTFT p50", 8),
            ("TTFT p99", 8),
        ],
    );
    for c in &results.coalescing {
        table.row(vec![
            c.token_delay.as_millis().to_string(),
            c.turns.to_string(),
            format!("{:.1}", c.tokens_per_turn),
            format!("{:.1}", c.chunks_per_turn),
            ratio(c.chunks_per_turn, c.tokens_per_turn),
            ms(c.first_token.p50),
            ms(c.first_token.p99),
        ]);
    }
    table.print();
    println!(
        "(one conversation after another, shared mode, one worker; TTFT includes the model's own \
         delay before its first token)"
    );
}

fn print_streams(results: &Results) {
    let mut table = Table::new(
        format!(
            "5. Ingress memory per open idle SSE stream (ingress process RSS; no worker runs, so \
             every stream waits with nothing to send); target <= {STREAM_TARGET_KIB:.0} KiB"
        ),
        &[
            ("mode", 11),
            ("streams", 7),
            ("opened", 7),
            ("opened/s", 8),
            ("RSS before", 10),
            ("RSS after", 10),
            ("KiB/stream", 10),
            ("vs target", 9),
        ],
    );
    for s in &results.streams {
        table.row(vec![
            mode_name(s.mode).into(),
            s.streams.to_string(),
            s.opened.to_string(),
            rate(s.open_per_second),
            format!("{:.1} MiB", s.before_kib as f64 / 1024.0),
            format!("{:.1} MiB", s.after_kib as f64 / 1024.0),
            format!("{:.1}", s.kib_per_stream()),
            ratio(s.kib_per_stream(), STREAM_TARGET_KIB),
        ]);
    }
    table.print();
    println!("(before = with 100 streams already open; KiB/stream = (after - before) / streams)");
}

fn print_scaling(results: &Results) {
    let mut table = Table::new(
        format!(
            "6. Worker scale-out: model latency {} ms per turn, {SCALE_CONCURRENCY} jobs at once \
             per worker process, {SCALE_CLIENTS} clients, JSON turns, shared mode",
            SCALE_LATENCY.as_millis()
        ),
        &[
            ("workers", 7),
            ("slots", 5),
            ("turns/s", 7),
            ("vs 1 worker", 11),
            ("model bound/s", 13),
            ("of bound", 8),
            ("turn p50", 8),
            ("turn p99", 8),
        ],
    );
    let base = results.scaling.first().map_or(0.0, |s| s.run.per_second);
    for s in &results.scaling {
        let bound = s.slots as f64 / SCALE_LATENCY.as_secs_f64();
        table.row(vec![
            s.workers.to_string(),
            s.slots.to_string(),
            rate(s.run.per_second),
            ratio(s.run.per_second, base),
            rate(bound),
            ratio(s.run.per_second, bound),
            ms(s.run.total.p50),
            ms(s.run.total.p99),
        ]);
    }
    table.print();
    println!(
        "(model bound = slots / model latency: what the workers could do if confab cost nothing)"
    );
}

/// One figure of a turn's costs.
type Figure = fn(&costs::TurnCosts) -> f64;

fn print_costs(results: &Results) {
    let mut table = Table::new(
        "8. What a plain turn costs outside the model, JSON or streamed (SSE) (per turn; \
         counted on the wire between each process and Postgres or RabbitMQ, CPU from /proc; 1 \
         worker process for 1 client, 2 for 64)",
        &[
            ("measure", 44),
            ("per-request 1", 14),
            ("shared 1", 12),
            ("shared 64", 12),
            ("SSE shared 1", 13),
            ("SSE shared 64", 14),
        ],
    );
    let cell = |f: Figure| -> Vec<String> {
        COST_RUNS
            .iter()
            .map(|(mode, clients, _, answer)| {
                results
                    .costs
                    .iter()
                    .find(|c| c.mode == *mode && c.clients == *clients && c.answer == *answer)
                    .map(|c| format!("{:.2}", f(c)))
                    .unwrap_or_else(|| "-".into())
            })
            .collect()
    };
    let rows: [(&str, Figure); 12] = [
        ("turns measured", |c| c.turns as f64),
        ("Postgres statements, ingress", |c| {
            c.per_turn(c.ingress.statements)
        }),
        ("Postgres round trips, ingress", |c| {
            c.per_turn(c.ingress.round_trips)
        }),
        ("Postgres statements, worker", |c| {
            c.per_turn(c.worker.statements)
        }),
        ("Postgres round trips, worker", |c| {
            c.per_turn(c.worker.round_trips)
        }),
        ("broker messages published, ingress", |c| {
            c.per_turn(c.ingress.publishes)
        }),
        ("broker messages delivered, ingress", |c| {
            c.per_turn(c.ingress.deliveries)
        }),
        ("broker messages published, worker", |c| {
            c.per_turn(c.worker.publishes)
        }),
        ("CPU µs, ingress", |c| c.cpu_us[0]),
        ("CPU µs, worker", |c| c.cpu_us[1]),
        ("CPU µs, Postgres", |c| c.cpu_us[2]),
        ("CPU µs, RabbitMQ", |c| c.cpu_us[3]),
    ];
    for (name, f) in rows {
        let mut cells = vec![name.to_owned()];
        cells.extend(cell(f));
        table.row(cells);
    }
    table.print();
}

fn print_targets(results: &Results) {
    let mut table = Table::new(
        "7. Targets (brief section 6; issue 18's where it is stricter)",
        &[("target", 62), ("measured", 14), ("verdict", 7)],
    );
    for turns in &results.turns {
        let mode = turns.mode;
        let name = mode_name(mode);
        // Issue 18: 3 ms shared, 6 ms per-request (the brief allowed 8).
        let limit = match mode {
            ReplyMode::Shared => 3.0,
            ReplyMode::PerRequest => 6.0,
        };
        if let Some(one) = turns.sse.first() {
            table.row(vec![
                format!("TTFT overhead, 1 conversation, {name}: p50 <= {limit:.0} ms"),
                format!("{} ms", ms(one.first.p50)),
                verdict(one.first.p50 <= limit),
            ]);
        }
        if let (Some(many), Some(raw)) =
            (turns.sse.last(), results.raw(mode).and_then(|r| r.last()))
        {
            let x = many.first.p99 / raw.first.p99;
            table.row(vec![
                format!(
                    "TTFT, {} conversations, {name}: p99 <= 2x raw RPC p99",
                    many.clients
                ),
                format!("{x:.2}x"),
                verdict(x <= 2.0),
            ]);
        }
        for (i, json) in turns.json.iter().enumerate().skip(1) {
            if let Some(raw) = results.raw(mode).and_then(|r| r.get(i)) {
                let x = json.per_second / raw.per_second;
                table.row(vec![
                    format!(
                        "JSON turns/s, {} clients, {name}: >= 0.5x raw RPC/s",
                        json.clients
                    ),
                    format!("{x:.2}x"),
                    verdict(x >= 0.5),
                ]);
            }
        }
    }
    if let [zero, ..] = results.coalescing.as_slice() {
        for c in &results.coalescing[1..] {
            table.row(vec![
                format!(
                    "SSE chunks/turn at {} ms/token vs {} tokens (0 ms/token: {:.1})",
                    c.token_delay.as_millis(),
                    c.tokens_per_turn.round(),
                    zero.chunks_per_turn
                ),
                format!("{:.1}", c.chunks_per_turn),
                "-".into(),
            ]);
        }
    }
    for s in &results.streams {
        table.row(vec![
            format!(
                "Idle SSE stream, {}, {} streams: <= 64 KiB each",
                mode_name(s.mode),
                s.streams
            ),
            format!("{:.1} KiB", s.kib_per_stream()),
            verdict(s.kib_per_stream() <= STREAM_TARGET_KIB),
        ]);
        if s.streams >= 10_000 {
            table.row(vec![
                format!(
                    "{} concurrent streams work, {}",
                    s.streams,
                    mode_name(s.mode)
                ),
                format!("{} open", s.opened),
                verdict(s.opened == s.streams),
            ]);
        }
    }
    // Round trips are bursts, which merge under load: the targets are a turn alone's.
    for c in results
        .costs
        .iter()
        .filter(|c| c.clients == 1 && c.answer == Answer::Json)
    {
        let name = mode_name(c.mode);
        let (ingress, worker) = (
            c.per_turn(c.ingress.round_trips),
            c.per_turn(c.worker.round_trips),
        );
        table.row(vec![
            format!(
                "Postgres round trips per turn, {name}: ingress <= {}, worker <= {}",
                ROUND_TRIP_TARGETS.0, ROUND_TRIP_TARGETS.1
            ),
            format!("{ingress:.1} / {worker:.1}"),
            verdict(ingress <= ROUND_TRIP_TARGETS.0 && worker <= ROUND_TRIP_TARGETS.1),
        ]);
        let statements = c.per_turn(c.ingress.statements + c.worker.statements);
        table.row(vec![
            format!("Postgres statements per turn, {name}: <= {STATEMENT_TARGET}"),
            format!("{statements:.1}"),
            verdict(statements <= STATEMENT_TARGET),
        ]);
    }
    for pair in results.scaling.windows(2) {
        let x = pair[1].run.per_second / pair[0].run.per_second;
        let doubling = pair[1].workers == 2 * pair[0].workers;
        table.row(vec![
            format!(
                "Workers {} -> {}: throughput doubles (>= 1.8x counts)",
                pair[0].workers, pair[1].workers
            ),
            format!("{x:.2}x"),
            if doubling {
                verdict(x >= 1.8)
            } else {
                "-".into()
            },
        ]);
    }
    table.print();
}
