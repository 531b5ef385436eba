//! What resumable streams cost: streamed turns with the reply log on (every event of a stream
//! also published to the RabbitMQ stream) and off (`CONFAB_RESUME_RETENTION_SECS=0`), in each
//! reply mode, measured in the same run: time to first token at one conversation and turns per
//! second at many.

use std::time::Duration;

use confab::ReplyMode;
use confab_contract::QueueLimits;

use crate::measure::{Phase, Run, closed_loop};
use crate::procs;
use crate::stack::Options;
use crate::turns::Confab;

pub struct ResumeCost {
    pub mode: ReplyMode,
    pub logged: bool,
    /// One SSE run per concurrency.
    pub runs: Vec<Run>,
}

pub async fn resume_cost(
    modes: &[ReplyMode],
    concurrencies: &[usize],
    phase: Phase,
    workers: usize,
    concurrency: u16,
) -> Vec<ResumeCost> {
    let mut figures = Vec::new();
    for &mode in modes {
        for logged in [false, true] {
            let retention = if logged { 600 } else { 0 };
            let mut confab = Confab::start(
                mode,
                Options {
                    deadline: Duration::from_secs(60),
                    queue_limits: QueueLimits {
                        resume_retention_secs: retention,
                        ..QueueLimits::default()
                    },
                    ..Options::default()
                },
            )
            .await;
            confab.workers = procs::workers(&confab.stack, workers, concurrency).await;
            let client = confab.client();
            let mut runs = Vec::new();
            for &clients in concurrencies {
                let client = client.clone();
                runs.push(
                    closed_loop(clients, phase, move |_| {
                        let client = client.clone();
                        async move { client.sse_turn().await.timing }
                    })
                    .await,
                );
            }
            confab.shutdown().await;
            figures.push(ResumeCost { mode, logged, runs });
        }
    }
    figures
}
