//! Ingress memory per open idle SSE stream: an ingress process, no workers (so every job waits
//! in the queue and every stream stays open with nothing to send), its resident memory before
//! and after opening N streams.

use std::time::{Duration, Instant};

use confab::ReplyMode;
use confab_contract::QueueLimits;
use futures_util::StreamExt;

use crate::stack::Options;
use crate::turns::Confab;

/// Streams opened, and kept open, before the baseline is read: the ingress's pools, buffers and
/// allocator are warm, so the figure is the marginal cost of a stream.
const WARM_STREAMS: usize = 100;
/// Streams being opened at once.
const OPENING: usize = 256;

pub struct StreamMemory {
    pub mode: ReplyMode,
    pub streams: usize,
    /// Streams that opened (status 200, headers received) and stayed open.
    pub opened: usize,
    pub open_per_second: f64,
    pub before_kib: u64,
    pub after_kib: u64,
}

impl StreamMemory {
    pub fn kib_per_stream(&self) -> f64 {
        (self.after_kib as f64 - self.before_kib as f64) / self.streams as f64
    }
}

pub async fn idle_streams(mode: ReplyMode, streams: usize) -> StreamMemory {
    // The ingress's connection cap (`CONFAB_MAX_CONNECTIONS`, default 4096) raised as a
    // deployment holding this many streams would.
    let cap = (streams + WARM_STREAMS + 100).to_string();
    let confab = Confab::start_with(
        mode,
        Options {
            deadline: Duration::from_secs(600),
            queue_limits: QueueLimits {
                max_length: 100_000,
                ..QueueLimits::default()
            },
            ..Options::default()
        },
        &[("CONFAB_MAX_CONNECTIONS", cap)],
    )
    .await;
    let client = confab.client();
    let open = |count: usize| {
        let client = client.clone();
        futures_util::stream::iter(0..count)
            .map(move |_| {
                let client = client.clone();
                async move {
                    match client.request(true).send().await {
                        Ok(response) if response.status() == 200 => Some(response),
                        _ => None,
                    }
                }
            })
            .buffer_unordered(OPENING)
            .filter_map(|response| async move { response })
            .collect::<Vec<_>>()
    };
    let warm = open(WARM_STREAMS).await;
    assert_eq!(warm.len(), WARM_STREAMS, "warm-up streams open");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kib = confab.ingress.rss_kib();
    let started = Instant::now();
    let open_streams = open(streams).await;
    let open_per_second = open_streams.len() as f64 / started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_kib = confab.ingress.rss_kib();
    let opened = open_streams.len();
    // The ingress goes first, so it does not cancel 10,000 requests one by one; its reply queues
    // go with its connection, the waiting jobs with the stack's queue.
    confab.shutdown().await;
    drop((warm, open_streams));
    StreamMemory {
        mode,
        streams,
        opened,
        open_per_second,
        before_kib,
        after_kib,
    }
}
