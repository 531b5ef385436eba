//! Worker scale-out: a model of fixed latency, each worker process taking a fixed number of jobs
//! at once, throughput with 1, 2 and 4 workers.

use std::time::Duration;

use confab::ReplyMode;

use crate::measure::{Phase, Run, closed_loop};
use crate::procs;
use crate::stack::Options;
use crate::turns::Confab;

pub struct Scaling {
    pub workers: usize,
    /// Jobs the workers take at once, together.
    pub slots: usize,
    pub run: Run,
}

/// JSON turns from `clients` clients (more than the slots, so the workers are the limit) in
/// shared reply mode, with `counts` workers in turn, each taking `concurrency` jobs at once.
pub async fn scaling(
    counts: &[usize],
    concurrency: u16,
    latency: Duration,
    clients: usize,
    phase: Phase,
) -> Vec<Scaling> {
    let confab = Confab::start(
        ReplyMode::Shared,
        Options {
            deadline: Duration::from_secs(60),
            builtin_latency: latency,
            ..Options::default()
        },
    )
    .await;
    let client = confab.client();
    let mut figures = Vec::new();
    for &count in counts {
        let workers = procs::workers(&confab.stack, count, concurrency).await;
        let client = client.clone();
        let run = closed_loop(clients, phase, move |_| {
            let client = client.clone();
            async move { client.json_turn().await }
        })
        .await;
        procs::stop_workers(&confab.stack, workers).await;
        figures.push(Scaling {
            workers: count,
            slots: count * concurrency as usize,
            run,
        });
    }
    confab.shutdown().await;
    figures
}
