//! Publishing a job's reply events to its reply destination, and a streamed turn's also to the
//! reply log, from which a reconnecting client reads them again on any ingress.
//!
//! Every event is published `mandatory` on a confirm-mode channel: if the destination no longer
//! exists (the requester disconnected, the ingress died) the broker returns the message, and that
//! tells the job its caller left (see `inflight`: a stream's turn goes on for the resume grace).
//! Deltas are not waited for; the final event is, since the job is acked only after it is
//! confirmed, and so is its copy in the log, so that a resumed stream finds its end. The log is
//! written through the session's [`LogWriter`], on a connection of its own, so that a log that
//! cannot confirm holds up nothing else; its confirm is waited for only so long (see
//! [`LOG_CONFIRM_PATIENCE`]). A delta goes to its caller only once its copy is written to the
//! log's connection (see [`LOG_SEND_PATIENCE`]), so the log is not behind what a caller saw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_contract::{HEADER_STREAM_FORMAT, HEADER_VERSION, ReplyEvent, VERSION};
use confab_shared::reply_log::{LogWriter, Logged, Sent};
use lapin::{
    BasicProperties, Channel,
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable, ShortString},
};
use tracing::warn;
use uuid::Uuid;

use crate::inflight::Signals;

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("publishing a reply event failed: {0}")]
    Broker(#[from] lapin::Error),
    #[error("encoding a reply event failed: {0}")]
    Encode(#[from] serde_json::Error),
}

pub struct Replies {
    channel: Channel,
    routing_key: ShortString,
    /// The reply log's writer, for a streamed turn.
    log: Option<Arc<LogWriter>>,
    properties: BasicProperties,
    signals: Signals,
    last_publish: Instant,
    /// Until when the first event published waits for a missing reply destination to come
    /// back (see [`Replies::wait_for_path_at_first_publish`]).
    first_patience: Option<Instant>,
    /// The stream's format (`Job::stream_format`), logged with its first logged event.
    format: Option<serde_json::Value>,
    /// Set once a record failed to reach the log's connection in time: the log no longer keeps
    /// up with this turn, which then stops waiting for it.
    log_behind: bool,
}

/// Whether the final event reached the reply destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Yes,
    CallerGone,
}

/// How long a final event's copy in the reply log is waited for. A stream confirms only once a
/// majority of its replicas has the event, so its confirm hangs for as long as that majority
/// is gone after a node's loss, and a confirm can be lost outright across a leader change
/// (rabbitmq-server#9457). A turn waiting for it holds a slot of its worker, and once every
/// slot held one the worker took no job at all. Past this the job settles anyway: its answer is
/// stored and its caller has the event; only a client resuming from the log may miss the end,
/// and that client's turn then fails at its deadline with the dialect's timeout error.
const LOG_CONFIRM_PATIENCE: Duration = Duration::from_secs(5);

/// How long a delta waits for its copy to be written to the log's connection before it goes to
/// its caller. The log must never be behind what a caller saw: a redelivery continues the
/// answer from the log, and if its worker died between the two publishes the redelivery would
/// repeat what the caller has and the caller's stream fail. A healthy writer takes
/// microseconds; one whose connection the broker stopped reading takes up to its stall, and
/// the turn does not wait that long twice (the log then has a gap readers detect by `seq`).
const LOG_SEND_PATIENCE: Duration = Duration::from_millis(500);

/// How often a missing reply destination is tried again.
const ANNOUNCE_RETRY: Duration = Duration::from_millis(250);

const MANDATORY: BasicPublishOptions = BasicPublishOptions {
    mandatory: true,
    immediate: false,
};

impl Replies {
    pub fn new(
        channel: Channel,
        reply_to: &str,
        log: Option<Arc<LogWriter>>,
        format: Option<serde_json::Value>,
        request_id: Uuid,
        signals: Signals,
    ) -> Self {
        let mut headers = FieldTable::default();
        headers.insert(HEADER_VERSION.into(), AMQPValue::ShortUInt(VERSION));
        // The turn's trace context (made in its span), so that whoever consumes the events
        // where a trace goes on (the delivery role, for a channel's answer) joins its trace.
        confab_shared::telemetry::current_trace_headers().write(&mut headers);
        let properties = BasicProperties::default()
            .with_correlation_id(request_id.to_string().into())
            .with_content_type("application/json".into())
            .with_headers(headers);
        Self {
            channel,
            routing_key: reply_to.into(),
            log,
            properties,
            signals,
            last_publish: Instant::now(),
            first_patience: None,
            format,
            log_behind: false,
        }
    }

    /// Let the first event published, whichever it is, wait for a reply destination that may be
    /// coming back, as [`Replies::announce`] does: a job's first publish may be its first delta
    /// or, for a JSON turn, its `done` (whose answer is stored meanwhile, so a destination that
    /// stays away loses nothing the ingress cannot find). Patience counts from now.
    pub fn wait_for_path_at_first_publish(&mut self, patience: Duration) {
        self.first_patience = Some(Instant::now() + patience);
    }

    /// The patience left for this publish, if it is the first of a patient turn.
    fn patience_now(&mut self) -> Option<Duration> {
        self.first_patience
            .take()
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    /// Time since the last event was published.
    pub fn idle_for(&self) -> std::time::Duration {
        self.last_publish.elapsed()
    }

    /// Publish a non-final event without waiting for the broker's confirmation (unless it is
    /// the first one of a patient turn).
    pub async fn send(&mut self, event: &ReplyEvent) -> Result<(), ReplyError> {
        if let Some(patience) = self.patience_now() {
            self.announce(event, patience).await?;
            return Ok(());
        }
        let (confirm, _logged) = self.publish(event, true).await?;
        self.watch_return(confirm);
        Ok(())
    }

    /// Publish an event again to the reply destination only: the log has it already (an earlier
    /// attempt's delta, which a redelivery that continues the answer repeats for its caller).
    /// Never a turn's first publish: `accepted` goes before.
    pub async fn resend(&mut self, event: &ReplyEvent) -> Result<(), ReplyError> {
        let (confirm, _) = self.publish(event, false).await?;
        self.watch_return(confirm);
        Ok(())
    }

    /// Whether the request was cancelled (the caller did not merely leave).
    pub fn cancelled(&self) -> bool {
        self.signals.was_cancelled()
    }

    /// A publish that comes back unroutable means the caller left.
    fn watch_return(&self, confirm: lapin::PublisherConfirm) {
        let signals = self.signals.clone();
        tokio::spawn(async move {
            if let Ok(confirmation) = confirm.await
                && confirmation.take_message().is_some()
            {
                signals.left();
            }
        });
    }

    /// Publish the first event and wait until the reply destination has it. A destination that
    /// is missing may be coming back: after a broker restart the ingress declares it again once
    /// it has reconnected, which can be after this worker did. So try again for `patience`
    /// before concluding that the caller is gone. A final event's copy in the log is waited
    /// for too, as [`Replies::finish`] does.
    async fn announce(
        &mut self,
        event: &ReplyEvent,
        patience: Duration,
    ) -> Result<Delivered, ReplyError> {
        let started = Instant::now();
        let mut logged = false;
        loop {
            // The log needs the event once, however often the destination is tried.
            let (confirm, in_log) = self.publish(event, !logged).await?;
            logged = true;
            if let Some(in_log) = in_log {
                confirmed_in_log(in_log).await;
            }
            if confirm.await?.take_message().is_none() {
                return Ok(Delivered::Yes);
            }
            // A cancel broadcast needs no more patience, nor does a client that already reads
            // the request's events from the log on another ingress.
            if started.elapsed() >= patience
                || *self.signals.gone.borrow()
                || self.signals.listened()
            {
                self.signals.left();
                return Ok(Delivered::CallerGone);
            }
            tokio::time::sleep(ANNOUNCE_RETRY).await;
        }
    }

    /// Publish the final event and wait until the broker has it.
    pub async fn finish(&mut self, event: &ReplyEvent) -> Result<Delivered, ReplyError> {
        if let Some(patience) = self.patience_now() {
            return self.announce(event, patience).await;
        }
        let (confirm, logged) = self.publish(event, true).await?;
        if let Some(logged) = logged {
            confirmed_in_log(logged).await;
        }
        if confirm.await?.take_message().is_some() {
            self.signals.left();
            return Ok(Delivered::CallerGone);
        }
        Ok(Delivered::Yes)
    }

    /// Publish to the reply destination and, for a stream and if `to_log`, to the log; the
    /// destination's confirmation, and for a final event the log's.
    async fn publish(
        &mut self,
        event: &ReplyEvent,
        to_log: bool,
    ) -> Result<(lapin::PublisherConfirm, Option<Logged>), ReplyError> {
        let body = event.encode()?;
        self.last_publish = Instant::now();
        // Keepalives only keep the caller's connection alive; a log reader needs none.
        let to_log = to_log && self.log.is_some() && !matches!(event, ReplyEvent::Keepalive);
        let log_properties = to_log.then(|| self.log_properties());
        let logged = match (&self.log, log_properties) {
            (Some(log), Some(properties)) => {
                if event.is_final() {
                    Some(log.append_confirmed(body.clone(), properties))
                } else {
                    let sent = log.append(body.clone(), properties);
                    self.sent_to_log(sent).await;
                    None
                }
            }
            _ => None,
        };
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                self.routing_key.clone(),
                MANDATORY,
                &body,
                self.properties.clone(),
            )
            .await?;
        Ok((confirm, logged))
    }

    /// The properties of a record for the log: the first one also carries the stream's format,
    /// so that the format costs no record of its own.
    fn log_properties(&mut self) -> BasicProperties {
        let Some(format) = self.format.take() else {
            return self.properties.clone();
        };
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(
            HEADER_STREAM_FORMAT.into(),
            AMQPValue::LongString(format.to_string().into()),
        );
        self.properties.clone().with_headers(headers)
    }

    /// Wait until a record is written to the log's connection, unless the log already fell
    /// behind this turn.
    async fn sent_to_log(&mut self, sent: Sent) {
        if self.log_behind {
            return;
        }
        if let Ok(Ok(())) = tokio::time::timeout(LOG_SEND_PATIENCE, sent).await {
            return;
        }
        self.log_behind = true;
        warn!(patience = ?LOG_SEND_PATIENCE, "the reply log's writer is behind; this turn's stream goes on without waiting for it");
        metrics::counter!("confab_worker_reply_log_behind_total").increment(1);
    }
}

/// Wait for the log's confirm of a final event, at most [`LOG_CONFIRM_PATIENCE`].
async fn confirmed_in_log(logged: Logged) {
    let unconfirmed = match tokio::time::timeout(LOG_CONFIRM_PATIENCE, logged).await {
        Ok(Ok(())) => return,
        Ok(Err(_)) => "the reply log's writer could not log the final event",
        Err(_) => "the reply log did not confirm the final event in time",
    };
    warn!(patience = ?LOG_CONFIRM_PATIENCE, "{unconfirmed}; settling the job without it");
    metrics::counter!("confab_worker_reply_log_unconfirmed_total").increment(1);
}
