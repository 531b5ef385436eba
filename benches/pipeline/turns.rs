//! confab end to end: a stack whose ingress and workers are processes of their own, a client of
//! its agents dialect, and the turn runs (time to first token, turns per second, coalescing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab::ReplyMode;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::process::Child;

use crate::measure::{Phase, Quantiles, Run, Timing, closed_loop};
use crate::procs::{self, Ingress};
use crate::stack::{Options, Stack, sse_data};

/// Instructions whose best sentence is a ~50-token answer to QUESTION.
pub const INSTRUCTIONS: &str = "You are the benchmark assistant. \
    Our opening hours are long and varied because the shop serves customers in many time zones, \
    so the hours run from seven in the morning until eleven at night on weekdays, from nine until \
    nine on Saturdays, and from ten until six on Sundays and public holidays, except at Christmas.";
pub const QUESTION: &str = "What are your opening hours?";

/// A stack (fresh database and queue prefix, its assistant) with an ingress process.
pub struct Confab {
    pub workers: Vec<Child>,
    pub ingress: Ingress,
    pub stack: Stack,
}

impl Confab {
    /// The stack in `mode`, no workers yet (`options.workers` is ignored).
    pub async fn start(mode: ReplyMode, options: Options) -> Confab {
        Confab::start_with(mode, options, &[]).await
    }

    /// [`Confab::start`] with more variables for the ingress.
    pub async fn start_with(
        mode: ReplyMode,
        options: Options,
        ingress_env: &[(&str, String)],
    ) -> Confab {
        let stack = Stack::start(Options {
            workers: 0,
            reply_mode: mode,
            ..options
        })
        .await;
        stack
            .create_assistant(json!({"name": "Bench", "instructions": INSTRUCTIONS}))
            .await;
        let ingress = procs::ingress_with(&stack, mode, stack.options.deadline, ingress_env).await;
        Confab {
            workers: Vec::new(),
            ingress,
            stack,
        }
    }

    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .build()
                .expect("HTTP client"),
            url: format!("{}/v1/api/chat/bench", self.ingress.url).into(),
            key: self.stack.api_key.clone().into(),
        }
    }

    /// Stop the processes, then remove the stack's database and broker objects.
    pub async fn shutdown(mut self) {
        for mut child in self.workers.drain(..) {
            let _ = child.kill().await;
        }
        let _ = self.ingress.child.kill().await;
        drop(self.stack);
    }
}

/// A client of the agents dialect (`POST /v1/api/chat/bench`), a new conversation each turn.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub url: Arc<str>,
    pub key: Arc<str>,
}

/// One streamed turn as the client saw it.
pub struct Streamed {
    pub timing: Timing,
    /// `{"chunk": ..}` events: one per delta reply event.
    pub chunks: usize,
    pub text: String,
}

impl Client {
    pub fn request(&self, stream: bool) -> reqwest::RequestBuilder {
        self.http
            .post(&*self.url)
            .bearer_auth(&*self.key)
            .json(&json!({"message": QUESTION, "stream": stream}))
    }

    /// A JSON turn: request sent to the whole answer read.
    pub async fn json_turn(&self) -> Timing {
        let started = Instant::now();
        let response = self.request(false).send().await.expect("request");
        assert_eq!(response.status(), 200, "a JSON turn");
        response.bytes().await.expect("body");
        Timing::whole(started.elapsed())
    }

    /// An SSE turn: `first` is the first `chunk` event (time to first token), `total` the end
    /// of the stream.
    pub async fn sse_turn(&self) -> Streamed {
        let started = Instant::now();
        let response = self.request(true).send().await.expect("request");
        assert_eq!(response.status(), 200, "an SSE turn");
        let mut body = response.bytes_stream();
        let mut received = Vec::new();
        let mut first = None;
        while let Some(bytes) = body.next().await {
            received.extend_from_slice(&bytes.expect("body"));
            if first.is_none() && contains(&received, b"{\"chunk\"") {
                first = Some(started.elapsed());
            }
        }
        let total = started.elapsed();
        let body = String::from_utf8(received).expect("UTF-8");
        let mut chunks = 0;
        let mut text = String::new();
        for data in sse_data(&body) {
            if let Ok(Value::Object(event)) = serde_json::from_str::<Value>(&data)
                && let Some(Value::String(chunk)) = event.get("chunk")
            {
                chunks += 1;
                text.push_str(chunk);
            }
        }
        assert!(chunks > 0, "a streamed answer: {body}");
        Streamed {
            timing: Timing {
                first: first.expect("a first token"),
                total,
            },
            chunks,
            text,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Streamed (SSE) and JSON turns of one reply mode, one run per concurrency.
pub struct ModeTurns {
    pub mode: ReplyMode,
    pub sse: Vec<Run>,
    pub json: Vec<Run>,
    pub split: Option<Split>,
}

/// Where one conversation's time to first token goes, as means over sequential turns: the
/// client's view, and the ingress's own histogram from opening the reply path to the first
/// delta (`confab_time_to_first_token_seconds`); the rest is HTTP, authentication with the rate
/// limit bump, the assistant's lookup and the dialect.
pub struct Split {
    pub turns: usize,
    pub client_ms: f64,
    pub pipeline_ms: f64,
}

/// Sum and count of a histogram without labels in the ingress's `/metrics`.
async fn histogram(client: &Client, base: &str, name: &str) -> Option<(f64, f64)> {
    let text = client
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |suffix: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}{suffix} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some((value("_sum")?, value("_count")?))
}

/// `turns` streamed turns one after another, split as `Split` says.
async fn split(confab: &Confab, client: &Client, turns: usize) -> Option<Split> {
    const METRIC: &str = "confab_time_to_first_token_seconds";
    let before = histogram(client, &confab.ingress.url, METRIC).await?;
    let mut client_ms = 0.0;
    for _ in 0..turns {
        client_ms += client.sse_turn().await.timing.first.as_secs_f64() * 1000.0;
    }
    let after = histogram(client, &confab.ingress.url, METRIC).await?;
    let counted = after.1 - before.1;
    (counted > 0.0).then(|| Split {
        turns,
        client_ms: client_ms / turns as f64,
        pipeline_ms: (after.0 - before.0) / counted * 1000.0,
    })
}

/// Turns with the zero-latency built-in model: SSE runs (time to first token, turns/s), then
/// JSON runs, at each concurrency, each client in a conversation of its own; then `split_turns`
/// streamed turns one after another to split the time to first token.
pub async fn turn_runs(
    mode: ReplyMode,
    concurrencies: &[usize],
    phase: Phase,
    workers: usize,
    concurrency: u16,
    split_turns: usize,
) -> ModeTurns {
    let mut confab = Confab::start(
        mode,
        Options {
            deadline: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .await;
    confab.workers = procs::workers(&confab.stack, workers, concurrency).await;
    let client = confab.client();
    let mut sse = Vec::new();
    for &clients in concurrencies {
        let client = client.clone();
        sse.push(
            closed_loop(clients, phase, move |_| {
                let client = client.clone();
                async move { client.sse_turn().await.timing }
            })
            .await,
        );
    }
    let mut json = Vec::new();
    for &clients in concurrencies {
        let client = client.clone();
        json.push(
            closed_loop(clients, phase, move |_| {
                let client = client.clone();
                async move { client.json_turn().await }
            })
            .await,
        );
    }
    let split = split(&confab, &client, split_turns).await;
    confab.shutdown().await;
    ModeTurns {
        mode,
        sse,
        json,
        split,
    }
}

/// Reply events of turns at one token pace.
pub struct Coalescing {
    pub token_delay: Duration,
    pub turns: usize,
    pub tokens_per_turn: f64,
    /// The answer's SSE chunks as the client got them, one per delta it was relayed (the
    /// worker's reply events are counted on the wire, in the costs section).
    pub chunks_per_turn: f64,
    pub first_token: Quantiles,
}

/// Streamed turns one after another with the built-in model at each token pace (one worker
/// process per pace, coalescing window 5 ms, the default).
pub async fn coalescing(delays: &[Duration], turns: usize) -> Vec<Coalescing> {
    let mut confab = Confab::start(
        ReplyMode::Shared,
        Options {
            deadline: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .await;
    let client = confab.client();
    let mut figures = Vec::new();
    for &delay in delays {
        confab.stack.options.builtin_token_delay = delay;
        let workers = procs::workers(&confab.stack, 1, 16).await;
        client.sse_turn().await;
        let mut tokens = 0;
        let mut chunks = 0;
        let mut firsts = Vec::new();
        for _ in 0..turns {
            let turn = client.sse_turn().await;
            // The built-in model streams word by word: a word is a token.
            tokens += turn.text.split_whitespace().count();
            chunks += turn.chunks;
            firsts.push(turn.timing.first);
        }
        procs::stop_workers(&confab.stack, workers).await;
        figures.push(Coalescing {
            token_delay: delay,
            turns,
            tokens_per_turn: tokens as f64 / turns as f64,
            chunks_per_turn: chunks as f64 / turns as f64,
            first_token: Quantiles::of(firsts),
        });
    }
    confab.shutdown().await;
    figures
}
