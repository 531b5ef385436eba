//! Timing one call, running calls from many clients at once, and the figures of a run.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One call's timings: to its first reply (message, token) and to its end.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub first: Duration,
    pub total: Duration,
}

impl Timing {
    /// A call whose first reply is its whole answer (JSON, a database transaction).
    pub fn whole(total: Duration) -> Self {
        Self {
            first: total,
            total,
        }
    }
}

/// Latency quantiles in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Quantiles {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[index].as_secs_f64() * 1000.0
        };
        Self {
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

/// The figures of one measured phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    pub clients: usize,
    /// Calls started inside the measured window (the latency samples).
    pub samples: usize,
    pub first: Quantiles,
    pub total: Quantiles,
    /// Calls completed inside the measured window, per second.
    pub per_second: f64,
}

/// A warm-up, whose calls are not counted, then the measured window.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    pub warmup: Duration,
    pub measure: Duration,
}

/// `clients` loops calling `one(client)` back to back (a closed loop) through the warm-up and the
/// measured window. Latencies are those of the calls started inside the window; the rate counts
/// the calls completed inside it.
pub async fn closed_loop<F, Fut>(clients: usize, phase: Phase, one: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Timing> + Send + 'static,
{
    let one = Arc::new(one);
    let window_start = Instant::now() + phase.warmup;
    let end = window_start + phase.measure;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let one = one.clone();
            tokio::spawn(async move {
                let mut timings = Vec::new();
                let mut completed = 0usize;
                loop {
                    let started = Instant::now();
                    if started >= end {
                        break;
                    }
                    let timing = one(client).await;
                    let done = Instant::now();
                    if started >= window_start {
                        timings.push(timing);
                    }
                    if done >= window_start && done <= end {
                        completed += 1;
                    }
                }
                (timings, completed)
            })
        })
        .collect();
    let mut timings = Vec::new();
    let mut completed = 0;
    for task in tasks {
        let (mine, done) = task.await.expect("a client task");
        timings.extend(mine);
        completed += done;
    }
    Run {
        clients,
        samples: timings.len(),
        first: Quantiles::of(timings.iter().map(|t| t.first).collect()),
        total: Quantiles::of(timings.iter().map(|t| t.total).collect()),
        per_second: completed as f64 / phase.measure.as_secs_f64(),
    }
}
