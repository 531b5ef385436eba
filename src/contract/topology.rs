//! Declaration of every exchange and queue, with every argument set explicitly: the broker on a
//! developer machine (RabbitMQ 3.10) and a newer one in a container must behave alike, so no
//! version default is relied on. Both the ingress and the workers declare the shared part, so
//! either may start first; RabbitMQ refuses a redeclaration with other arguments, which is why
//! [`QueueLimits`] must be configured the same on both sides.

use lapin::{
    Channel, ExchangeKind,
    options::{BasicCancelOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};

use tracing::warn;

use crate::Names;

/// Bounds of the work queue, read by both sides from the same variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Jobs waiting at most; beyond it publishes are refused (nacked) and the ingress answers
    /// at once instead of queueing without limit. `CONFAB_WORK_QUEUE_MAX_LENGTH`, default 10000.
    pub max_length: u32,
    /// Deliveries of one job that may fail (worker crash, requeue) before it is dead-lettered.
    /// `CONFAB_JOB_DELIVERY_LIMIT`, default 3.
    pub delivery_limit: u32,
    /// How long the reply log keeps streamed turns' events for reconnecting clients.
    /// `CONFAB_RESUME_RETENTION_SECS`, default 600; it is the stream's `x-max-age`, fixed when
    /// the stream is first declared (changing it means deleting the stream). 0: streams are not
    /// logged, and cannot be resumed.
    pub resume_retention_secs: u32,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_length: 10_000,
            delivery_limit: 3,
            resume_retention_secs: 600,
        }
    }
}

/// How long dead-lettered jobs are kept for inspection.
const DEAD_LETTER_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
const DEAD_LETTER_MAX_LENGTH: i64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "queue or exchange `{name}` exists with other arguments ({source}); every ingress and \
         worker sharing CONFAB_QUEUE_PREFIX must use the same CONFAB_WORK_QUEUE_MAX_LENGTH and \
         CONFAB_JOB_DELIVERY_LIMIT, or delete the queue first"
    )]
    Mismatch { name: String, source: lapin::Error },
    #[error("declaring `{name}` failed: {source}")]
    Broker { name: String, source: lapin::Error },
}

fn declare_error(name: &str, source: lapin::Error) -> TopologyError {
    // 406 PRECONDITION_FAILED is how the broker reports an argument mismatch.
    if source.to_string().contains("PRECONDITION_FAILED") {
        TopologyError::Mismatch {
            name: name.to_owned(),
            source,
        }
    } else {
        TopologyError::Broker {
            name: name.to_owned(),
            source,
        }
    }
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in pairs {
        table.insert((*key).into(), value.clone());
    }
    table
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

const DURABLE: QueueDeclareOptions = QueueDeclareOptions {
    passive: false,
    durable: true,
    exclusive: false,
    auto_delete: false,
    nowait: false,
};

const DURABLE_EXCHANGE: ExchangeDeclareOptions = ExchangeDeclareOptions {
    passive: false,
    durable: true,
    auto_delete: false,
    internal: false,
    nowait: false,
};

/// Declare the work queue, the deliveries queue, their dead-letter path and the cancel exchange,
/// on a channel of their own (a refused declare closes its channel).
pub async fn declare_work_topology(
    connection: &lapin::Connection,
    names: &Names,
    limits: QueueLimits,
) -> Result<(), TopologyError> {
    let opening = |e| declare_error(&names.jobs(), e);
    let mut channel = connection.create_channel().await.map_err(opening)?;
    if let Err(e) = declare_dead_letters(&channel, names).await {
        let TopologyError::Mismatch { name, .. } = &e else {
            return Err(e);
        };
        // Earlier builds declared it as a classic queue; it still takes dead jobs, only
        // unreplicated. Deleting it (once its jobs are read) lets the next start replicate it.
        warn!(queue = %name, "the dead-letter queue exists with other arguments (an earlier \
              version's classic queue); dead jobs are kept unreplicated until it is deleted");
        channel = connection.create_channel().await.map_err(opening)?;
    }
    let declared = declare_work_queues(&channel, names, limits).await;
    let _ = channel.close(200, "declared".into()).await;
    declared
}

/// The dead-letter exchange and its queue: a quorum queue, so that a jobs queue's dead job
/// survives a node's loss as the job did.
async fn declare_dead_letters(channel: &Channel, names: &Names) -> Result<(), TopologyError> {
    let dlx = names.dead_letter_exchange();
    channel
        .exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Direct,
            DURABLE_EXCHANGE,
            FieldTable::default(),
        )
        .await
        .map_err(|e| declare_error(&dlx, e))?;

    let dead = names.dead_letters();
    let dead_args = args(&[
        ("x-queue-type", text("quorum")),
        ("x-message-ttl", AMQPValue::LongLongInt(DEAD_LETTER_TTL_MS)),
        (
            "x-max-length",
            AMQPValue::LongLongInt(DEAD_LETTER_MAX_LENGTH),
        ),
        ("x-overflow", text("drop-head")),
    ]);
    channel
        .queue_declare(dead.as_str().into(), DURABLE, dead_args)
        .await
        .map_err(|e| declare_error(&dead, e))?;
    channel
        .queue_bind(
            dead.as_str().into(),
            dlx.as_str().into(),
            dead.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| declare_error(&dead, e))
}

/// The jobs and deliveries queues and the cancel exchange.
async fn declare_work_queues(
    channel: &Channel,
    names: &Names,
    limits: QueueLimits,
) -> Result<(), TopologyError> {
    let dlx = names.dead_letter_exchange();
    let dead = names.dead_letters();

    // A quorum queue: it counts deliveries (so a poison job or a job that kills its workers ends
    // in the dead-letter queue instead of looping), supports per-message TTL (job deadlines) and
    // refuses publishes when full, which publisher confirms turn into an immediate answer.
    // At-least-once dead-lettering keeps a dead job until the dead-letter queue confirmed it.
    let jobs = names.jobs();
    let job_args = args(&[
        ("x-queue-type", text("quorum")),
        (
            "x-max-length",
            AMQPValue::LongLongInt(limits.max_length.into()),
        ),
        ("x-overflow", text("reject-publish")),
        (
            "x-delivery-limit",
            AMQPValue::LongLongInt(limits.delivery_limit.into()),
        ),
        ("x-dead-letter-exchange", text(&dlx)),
        ("x-dead-letter-routing-key", text(&dead)),
        ("x-dead-letter-strategy", text("at-least-once")),
    ]);
    channel
        .queue_declare(jobs.as_str().into(), DURABLE, job_args.clone())
        .await
        .map_err(|e| declare_error(&jobs, e))?;
    // Channel answers wait here for a delivery worker with the same guarantees as jobs: an
    // answer that keeps failing to be sent ends in the dead-letter queue, not in a loop.
    let deliveries = names.deliveries();
    channel
        .queue_declare(deliveries.as_str().into(), DURABLE, job_args)
        .await
        .map_err(|e| declare_error(&deliveries, e))?;

    let cancel = names.cancel_exchange();
    channel
        .exchange_declare(
            cancel.as_str().into(),
            ExchangeKind::Fanout,
            DURABLE_EXCHANGE,
            FieldTable::default(),
        )
        .await
        .map_err(|e| declare_error(&cancel, e))?;
    Ok(())
}

/// Declare the reply log, on a channel of its own: a stream can be unavailable for a while
/// after a broker restart (its replicas recover after the queues), and a declare that fails
/// closes its channel. Without it streams still work; they only cannot be resumed.
pub async fn declare_reply_log(
    connection: &lapin::Connection,
    names: &Names,
    limits: QueueLimits,
) -> Result<(), TopologyError> {
    // Streams are not resumable: nothing is logged.
    if limits.resume_retention_secs == 0 {
        return Ok(());
    }
    let log = names.reply_log();
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| declare_error(&log, e))?;
    let log_args = args(&[
        ("x-queue-type", text("stream")),
        (
            "x-max-age",
            text(&format!("{}s", limits.resume_retention_secs)),
        ),
    ]);
    let declared = channel
        .queue_declare(log.as_str().into(), DURABLE, log_args)
        .await
        .map_err(|e| declare_error(&log, e));
    let _ = channel.close(200, "declared".into()).await;
    declared.map(|_| ())
}

/// How far before a request's own timestamp reading it from the reply log starts: the
/// timestamp is the ingress's clock, the log's is the broker's, and the log seeks by whole
/// seconds.
const LOG_CLOCK_MARGIN_SECS: u64 = 5;

/// The consumer arguments that read the reply log from a little before `request_id` (a v7
/// uuid, which carries its time) was made: every event of the request is after that point.
pub fn reply_log_from(request_id: uuid::Uuid) -> FieldTable {
    let started_secs = request_id
        .get_timestamp()
        .map(|ts| ts.to_unix().0)
        .unwrap_or(0);
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-stream-offset".into(),
        AMQPValue::Timestamp(started_secs.saturating_sub(LOG_CLOCK_MARGIN_SECS)),
    );
    arguments
}

/// End a reader of the reply log: cancel its consumer, then close its channel. The caller keeps
/// a handle of `consumer` until here because lapin cancels a consumer whose last handle drops
/// from a task of its own, and a cancel that finds its channel already closing fails the whole
/// connection (every request then on it with it). A cancel under way makes that drop a no-op.
pub async fn close_log_reader(channel: &Channel, consumer: Option<lapin::Consumer>) {
    if let Some(consumer) = &consumer {
        let _ = channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await;
    }
    let _ = channel.close(200, "read".into()).await;
}

/// Declare a reply queue (one request's, or one ingress process's). Exclusive: it disappears with
/// the connection that declared it, so a crashed ingress leaves nothing behind, and a worker's
/// mandatory publish to it comes back unroutable. `expires_ms` bounds its life even while the
/// connection lives but nobody consumes from it.
pub async fn declare_reply_queue(
    channel: &Channel,
    name: &str,
    expires_ms: u32,
) -> Result<(), TopologyError> {
    let options = QueueDeclareOptions {
        passive: false,
        durable: false,
        exclusive: true,
        auto_delete: true,
        nowait: false,
    };
    let reply_args = args(&[
        ("x-queue-type", text("classic")),
        (
            "x-expires",
            AMQPValue::LongLongInt(expires_ms.max(1).into()),
        ),
    ]);
    channel
        .queue_declare(name.into(), options, reply_args)
        .await
        .map_err(|e| declare_error(name, e))?;
    Ok(())
}

/// Declare a worker's cancel queue and bind it to the cancel broadcast.
pub async fn declare_cancel_queue(
    channel: &Channel,
    names: &Names,
    worker_id: &str,
) -> Result<String, TopologyError> {
    let queue = names.worker_cancels(worker_id);
    declare_reply_queue(channel, &queue, u32::MAX).await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            names.cancel_exchange().as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| declare_error(&queue, e))?;
    Ok(queue)
}
