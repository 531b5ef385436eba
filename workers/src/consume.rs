//! The worker's broker session: connect, declare, consume jobs with bounded concurrency, hand
//! each to [`crate::turn`], settle it, and start over after a lost connection.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confab_contract::{
    BrokerNodes, Cancel, CancelKind, HEADER_DELIVERY_COUNT, Job, TraceHeaders,
    declare_cancel_queue, declare_work_topology,
};
use confab_shared::reply_log::LogWriter;
use confab_shared::retry::Policy;
use confab_shared::telemetry;
use futures_util::StreamExt;
use lapin::{
    Channel, ConnectionProperties,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable},
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::WorkerConfig;
use crate::readiness::Readiness;
use crate::turn::{self, Settle, TurnEnv};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Topology(#[from] confab_contract::TopologyError),
    #[error("the broker closed the consumer")]
    ConsumerClosed,
    #[error("cannot set up: {0}")]
    Setup(String),
}

/// Run job-consuming broker sessions until `shutdown` flips to true.
pub async fn run_sessions(
    config: &WorkerConfig,
    env: Arc<TurnEnv>,
    readiness: Arc<Readiness>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let nodes = broker_nodes(config)?;
    reconnecting("job", shutdown.clone(), || {
        session(config, &nodes, &env, &readiness, shutdown.clone())
    })
    .await
}

/// The broker's nodes, connected to in turn (one, or a cluster's).
pub(crate) fn broker_nodes(config: &WorkerConfig) -> Result<BrokerNodes, SessionError> {
    BrokerNodes::parse(&config.shared.amqp_url).map_err(|e| SessionError::Setup(e.to_string()))
}

/// A session that lasted this long was a working one: the next failure starts the pauses over.
const SETTLED: Duration = Duration::from_secs(30);

/// Run `session` until it ends cleanly (on shutdown), starting it again after a failure with
/// a growing pause (reset once a session has lasted a while). A topology error is a
/// configuration problem that retrying cannot fix.
pub(crate) async fn reconnecting<F, Fut>(
    what: &str,
    mut shutdown: watch::Receiver<bool>,
    mut session: F,
) -> Result<(), SessionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), SessionError>>,
{
    let mut pauses = Policy::BROKER_SESSION.pauses();
    loop {
        let started = std::time::Instant::now();
        let ended = session().await;
        if started.elapsed() > SETTLED {
            pauses = Policy::BROKER_SESSION.pauses();
        }
        let pause = pauses.next_pause();
        match ended {
            Ok(()) => return Ok(()),
            Err(SessionError::Topology(e)) => return Err(e.into()),
            Err(e) => warn!(error = %e, retry_in = ?pause, "{what} session ended; reconnecting"),
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

async fn session(
    config: &WorkerConfig,
    nodes: &BrokerNodes,
    env: &Arc<TurnEnv>,
    readiness: &Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let names = &config.shared.names;
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("confab-worker {}", env.worker_id).into());
    let (connection, _node) = nodes.connect(properties).await?;
    let connected = std::time::Instant::now();
    // Jobs arrive on one channel and replies leave on another, so a slow confirm never delays a
    // delivery and vice versa.
    let consume = connection.create_channel().await?;
    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let connection = Arc::new(connection);
    // The log is written on a connection of the session's own writer (see `reply_log`).
    let log = env.reply_log.as_ref().map(|log| {
        Arc::new(LogWriter::start(
            nodes.clone(),
            format!("confab-worker {} reply log", env.worker_id),
            log.clone(),
        ))
    });
    let channels = Arc::new(turn::Channels {
        publish,
        connection: connection.clone(),
        log,
    });
    declare_work_topology(&connection, names, config.shared.queue_limits).await?;
    if let Err(e) =
        confab_contract::declare_reply_log(&connection, names, config.shared.queue_limits).await
    {
        warn!(error = %e, "the reply log is unavailable; streams cannot be resumed for now");
    }

    // Prefetch bounds the jobs this process holds unacked, and so its concurrency: the broker
    // keeps the rest for other workers. Per consumer (global = false), as quorum queues require.
    consume
        .basic_qos(config.concurrency, BasicQosOptions { global: false })
        .await?;
    let mut jobs = consume
        .basic_consume(
            names.jobs().as_str().into(),
            env.worker_id.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    // Cancels are fire-and-forget broadcasts: auto-ack, nothing to redeliver if we die.
    let cancel_queue = declare_cancel_queue(&consume, names, &env.worker_id).await?;
    let mut cancels = consume
        .basic_consume(
            cancel_queue.as_str().into(),
            format!("{}-cancels", env.worker_id).as_str().into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    info!(worker = %env.worker_id, concurrency = config.concurrency, queue = %names.jobs(), "consuming jobs");
    let consuming = readiness.consuming();

    let mut turns = JoinSet::new();
    let ended = loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break Ok(()),
            delivery = jobs.next() => match delivery {
                Some(Ok(delivery)) => {
                    let reconnected = connected.elapsed() < turn::REPLY_PATH_PATIENCE;
                    turns.spawn(handle(env.clone(), channels.clone(), delivery, reconnected));
                }
                Some(Err(e)) => break Err(e.into()),
                None => break Err(SessionError::ConsumerClosed),
            },
            Some(Ok(cancel)) = cancels.next() => {
                if let Ok(cancel) = confab_contract::decode::<Cancel>(&cancel.data)
                    && let Some(signals) = env.inflight.get(cancel.request_id)
                {
                    match cancel.kind {
                        CancelKind::Stop => signals.cancel(),
                        CancelKind::Left => signals.left(),
                        CancelKind::Listening => signals.listening(),
                    }
                }
            }
            Some(_) = turns.join_next() => {}
        }
    };
    drop(consuming);
    if ended.is_ok() {
        drain(&consume, &env.worker_id, &mut turns, config.shutdown_grace).await;
        let _ = connection.close(200, "worker stopping".into()).await;
    }
    ended
}

/// Stop taking jobs, let the running ones finish within `grace`; whatever is left unacked goes
/// back to the queue when the connection closes.
pub(crate) async fn drain<T: 'static>(
    consume: &Channel,
    tag: &str,
    turns: &mut JoinSet<T>,
    grace: Duration,
) {
    let _ = consume
        .basic_cancel(tag.into(), BasicCancelOptions::default())
        .await;
    info!(running = turns.len(), "stopping: finishing running jobs");
    let finished =
        tokio::time::timeout(grace, async { while turns.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        warn!(
            returned = turns.len(),
            "grace period over; returning unfinished jobs"
        );
        turns.abort_all();
    }
}

/// The attempt number of a delivery: 1, plus how often the quorum queue saw it returned.
fn attempt_of(delivery: &Delivery) -> u32 {
    let count = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(HEADER_DELIVERY_COUNT).cloned());
    let returned = match count {
        Some(AMQPValue::LongLongInt(n)) => n.max(0) as u32,
        Some(AMQPValue::LongInt(n)) => n.max(0) as u32,
        Some(AMQPValue::LongUInt(n)) => n,
        Some(AMQPValue::ShortInt(n)) => n.max(0) as u32,
        _ => 0,
    };
    returned + 1
}

async fn handle(
    env: Arc<TurnEnv>,
    channels: Arc<turn::Channels>,
    delivery: Delivery,
    reconnected: bool,
) {
    let job: Job = match confab_contract::decode(&delivery.data) {
        Ok(job) => job,
        Err(e) => {
            error!(error = %e, "undecodable job; dead-lettering it");
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    let attempt = attempt_of(&delivery);
    let span = turn_span(&job, &delivery, attempt);
    async move {
        metrics::gauge!("confab_worker_jobs_in_flight").increment(1.0);
        let settle = turn::run(&env, &channels, &job, attempt, reconnected).await;
        metrics::gauge!("confab_worker_jobs_in_flight").decrement(1.0);
        let result = match settle {
            Settle::Ack => delivery.ack(BasicAckOptions::default()).await,
            Settle::Requeue => {
                delivery
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await
            }
        };
        if let Err(e) = result {
            warn!(error = %e, ?settle, "could not settle the job; the broker will redeliver it");
        }
    }
    .instrument(span)
    .await
}

/// The span of a job's turn, in the trace of the request that published it: a child of the
/// ingress's `publish` span, whose context came in the job's W3C headers, beside a `queue wait`
/// span from the job's publication to now. A job without them (its ingress does not trace)
/// starts a trace of its own, the queue wait under the turn.
fn turn_span(job: &Job, delivery: &Delivery, attempt: u32) -> tracing::Span {
    let span = info_span!(
        "turn",
        request_id = %job.request_id,
        trace_id = tracing::field::Empty,
        conversation_id = %job.conversation_id,
        attempt
    );
    if !telemetry::enabled() {
        return span;
    }
    let remote = TraceHeaders::read(delivery.properties.headers().as_ref());
    telemetry::set_remote_parent(&span, &remote);
    telemetry::record_trace_id(&span);
    let published = UNIX_EPOCH + Duration::from_millis(job.published_ms.max(0) as u64);
    telemetry::past_span(
        "queue wait",
        &remote,
        &span,
        published,
        SystemTime::now(),
        vec![
            ("request_id", job.request_id.to_string()),
            ("attempt", attempt.to_string()),
        ],
    );
    span
}
