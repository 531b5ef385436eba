//! The one path every dialect uses to get an answer: subscribe to the reply destination, publish
//! the job with publisher confirms, then read reply events until the answer is complete, failed,
//! or the deadline passes. Dialects map their request into a [`TurnRequest`] and the resulting
//! [`TurnEvent`]s into their own JSON or SSE; nothing here knows about dialects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_contract::{
    AssistantRef, ClientTools, Done, ErrorCode, Job, Message, Sampling, VERSION, now_ms,
};
use tracing::{Instrument, info, info_span, warn};
use uuid::Uuid;

use deadpool_postgres::Pool;

use crate::broker::{Broker, PublishError, Session};
use crate::relay::Subscription;
use crate::store::key_cache::KeyCache;
use crate::store::pending_turns;
use crate::store::tenants::{KeyCharge, KeyRefused};

mod turn;

pub use turn::Turn;

/// What a dialect asks the pipeline for.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    /// The HTTP request's id (see `http::RequestId`), reused as the job's.
    pub request_id: Uuid,
    pub tenant_id: Uuid,
    pub assistant: AssistantRef,
    pub conversation_id: String,
    pub identity_id: Option<Uuid>,
    pub channel_id: Option<Uuid>,
    pub message: Message,
    /// Earlier turns supplied by the caller; see `Job::history`.
    pub history: Vec<Message>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub folder_ids: Vec<Uuid>,
    pub stream: bool,
    /// See `Job::ephemeral`.
    pub ephemeral: bool,
    /// See `Job::sampling`.
    pub sampling: Sampling,
    /// See `Job::tools`.
    pub tools: ClientTools,
    /// How the dialect renders this stream, logged so that a reconnect renders it again (see
    /// `Pipeline::replay`); opaque here. `None` for JSON turns.
    pub stream_format: Option<serde_json::Value>,
    /// The caller's key, when it is to be checked and counted as the turn is recorded, in the
    /// same statement (`http::auth::TurnCaller`); `None` when it was already.
    pub charge: Option<KeyCharge>,
}

impl TurnRequest {
    /// The job of this turn; `last_delta_in_done` when its events are read by a `Turn`, which
    /// takes a stream's last delta from `done`; `resumable` when its worker logs its events,
    /// and with them the stream's format.
    fn into_job(
        self,
        deadline_ms: i64,
        reply_to: String,
        last_delta_in_done: bool,
        resumable: bool,
    ) -> Job {
        let stream_format = self.stream_format.filter(|_| resumable && self.stream);
        Job {
            v: VERSION,
            request_id: self.request_id,
            tenant_id: self.tenant_id,
            assistant: self.assistant,
            conversation_id: self.conversation_id,
            identity_id: self.identity_id,
            channel_id: self.channel_id,
            message: self.message,
            history: self.history,
            metadata: self.metadata,
            folder_ids: self.folder_ids,
            stream: self.stream,
            ephemeral: self.ephemeral,
            sampling: self.sampling,
            tools: self.tools,
            deadline_ms,
            published_ms: now_ms(),
            reply_to,
            last_delta_in_done,
            stream_format,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the message broker is unavailable")]
    Unavailable,
    #[error("too many requests are waiting for a worker")]
    QueueFull,
    /// The caller's key, checked as the turn was to be recorded, is revoked or over its limit;
    /// nothing was recorded.
    #[error("the API key is refused")]
    KeyRefused(KeyRefused),
}

/// How a turn failed after it was accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    /// A worker reported an error.
    Worker(ErrorCode),
    /// No answer before the deadline.
    Timeout,
    /// The broker connection was lost while waiting.
    BrokerLost,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    Delta(String),
    Done(Box<Done>),
    Failed(Failure),
}

/// How long a reader of the reply log looks for a request's format before it asks whether the
/// request is still pending.
const FORMAT_WAIT: Duration = Duration::from_secs(5);

/// A stream read again from the reply log, with how its dialect rendered it (see
/// `TurnRequest::stream_format`), if that was logged.
pub struct Resumed {
    pub format: Option<serde_json::Value>,
    pub turn: Turn,
}

#[derive(Clone)]
pub struct Pipeline {
    broker: Arc<Broker>,
    /// Records each turn as pending before its job is published, so that workers answer the
    /// turns of one conversation in the order they were recorded (`migrations/0006_turn_places.sql`).
    db: Pool,
    deadline: Duration,
    /// How long a streamed turn waits for its caller to read (see [`Turn::stream_stall`]).
    stream_stall: Duration,
    /// How long a worker keeps answering a stream whose client left; a resumed stream says it
    /// listens well within it.
    resume_grace: Duration,
    /// How long the reply log keeps events.
    resume_retention: Duration,
    /// The keys remembered by this process; one found revoked as its turn is recorded is
    /// forgotten.
    keys: KeyCache,
}

impl Pipeline {
    pub fn new(broker: Arc<Broker>, db: Pool, deadline: Duration, stream_stall: Duration) -> Self {
        Self {
            broker,
            db,
            deadline,
            stream_stall,
            resume_grace: Duration::from_secs(10),
            resume_retention: Duration::from_secs(600),
            keys: KeyCache::default(),
        }
    }

    /// The keys the turn routes remember (`http::auth::TurnCaller`).
    pub fn with_keys(mut self, keys: KeyCache) -> Self {
        self.keys = keys;
        self
    }

    /// The resume grace the workers apply (`CONFAB_RESUME_GRACE_SECS`) and how long the reply
    /// log keeps events (`CONFAB_RESUME_RETENTION_SECS`).
    pub fn with_resume(mut self, grace: Duration, retention: Duration) -> Self {
        self.resume_grace = grace;
        self.resume_retention = retention;
        self
    }

    /// Whether `request_id` started longer ago than the reply log keeps events.
    pub fn replay_expired(&self, request_id: Uuid) -> bool {
        let started_ms = request_id
            .get_timestamp()
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                secs * 1000 + u64::from(nanos / 1_000_000)
            })
            .unwrap_or(0);
        let age_ms = (now_ms().max(0) as u64).saturating_sub(started_ms);
        age_ms > self.resume_retention.as_millis() as u64
    }

    /// The stream of an earlier request, read again from the reply log: every event from its
    /// start, then the live rest (or its end, if it has ended). Its caller relays what its client
    /// has not seen yet, in a shape it knows without the logged format.
    pub async fn resume(
        &self,
        request_id: Uuid,
        conversation_id: String,
    ) -> Result<Turn, SubmitError> {
        let (session, subscription) = self.replay(request_id).await?;
        Ok(self.resumed_turn(&session, request_id, conversation_id, subscription))
    }

    /// [`Pipeline::resume`] with the format the stream was logged with, for a caller that
    /// renders any family: `None` if the log has none (a JSON turn, or events past the
    /// retention). The worker logs the format with the stream's first event, so the wait for
    /// it is short unless the job is still queued: then it lasts while the turn is pending.
    pub async fn resume_with_format(
        &self,
        tenant_id: Uuid,
        request_id: Uuid,
        conversation_id: String,
    ) -> Result<Resumed, SubmitError> {
        let (session, mut subscription) = self.replay(request_id).await?;
        let format = match tokio::time::timeout(FORMAT_WAIT, subscription.stream_format()).await {
            Ok(format) => format,
            Err(_) => match self.pending_for(tenant_id, request_id).await {
                Some(left) => tokio::time::timeout(left, subscription.stream_format())
                    .await
                    .unwrap_or(None),
                None => None,
            },
        };
        let turn = self.resumed_turn(&session, request_id, conversation_id, subscription);
        Ok(Resumed { format, turn })
    }

    /// A consumer of `request_id`'s records in the reply log, from its start.
    async fn replay(&self, request_id: Uuid) -> Result<(Arc<Session>, Subscription), SubmitError> {
        let session = self.broker.session().ok_or(SubmitError::Unavailable)?;
        let subscription = tokio::time::timeout(
            self.deadline,
            session.replay(self.broker.names(), request_id),
        )
        .await
        .map_err(|_| SubmitError::Unavailable)?
        .map_err(|e| {
            warn!(%request_id, error = %e, "cannot read the reply log");
            SubmitError::Unavailable
        })?;
        Ok((session, subscription))
    }

    /// How long the tenant's turn `request_id` may still be answered, if it is pending.
    async fn pending_for(&self, tenant_id: Uuid, request_id: Uuid) -> Option<Duration> {
        let client = self.db.get().await.ok()?;
        pending_turns::time_left(&**client, tenant_id, request_id)
            .await
            .ok()
            .flatten()
    }

    fn resumed_turn(
        &self,
        session: &Session,
        request_id: Uuid,
        conversation_id: String,
        subscription: Subscription,
    ) -> Turn {
        metrics::gauge!("confab_jobs_in_flight").increment(1.0);
        let mut turn = Turn::resumed(
            request_id,
            conversation_id,
            subscription,
            session.lost(),
            self.deadline,
            self.broker.clone(),
        );
        turn.stream_stall = self.stream_stall;
        // Without a grace a worker stops when its caller leaves; there is nothing to keep going.
        if !self.resume_grace.is_zero() {
            turn.listen(self.resume_grace);
        }
        turn
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    pub async fn submit(&self, request: TurnRequest) -> Result<Turn, SubmitError> {
        let session = self.broker.session().ok_or(SubmitError::Unavailable)?;
        let request_id = request.request_id;
        let submitted = Instant::now();
        let deadline_ms = now_ms() + self.deadline.as_millis() as i64;
        let expires_ms = reply_expiry_ms(self.deadline);
        // Independent round trips (broker and database), so they overlap; both must be done
        // before the job is published.
        // Bounded by the deadline like every broker wait of a request: a session that stops
        // answering without closing must not hold the caller forever.
        let subscribing = tokio::time::timeout(
            self.deadline,
            session.relay.subscribe(request_id, expires_ms),
        );
        let (subscription, marked) = tokio::join!(
            async {
                subscribing
                    .await
                    .map_err(|_| "no answer from the broker".to_owned())
            },
            self.mark_pending(&request, deadline_ms)
        );
        let subscription = subscription.and_then(|s| s.map_err(|e| e.to_string()));
        let subscription = match (subscription, marked) {
            (Ok(subscription), Ok(())) => subscription,
            (subscription, marked) => {
                if marked.is_ok()
                    && let Ok(client) = self.db.get().await
                {
                    pending_turns::forget(
                        &**client,
                        request.tenant_id,
                        &request.conversation_id,
                        request_id,
                    )
                    .await;
                }
                if let Err(e) = &subscription {
                    warn!(%request_id, error = %e, "cannot open the reply path");
                }
                return Err(marked.err().unwrap_or(SubmitError::Unavailable));
            }
        };
        let resumable = !self.resume_retention.is_zero();
        let job = request.into_job(deadline_ms, subscription.reply_to.clone(), true, resumable);
        self.publish(&session, &job).await?;
        info!(%request_id, conversation_id = %job.conversation_id, stream = job.stream, "job queued");
        metrics::gauge!("confab_jobs_in_flight").increment(1.0);
        let mut turn = Turn::accepted(
            job,
            subscription,
            session.lost(),
            self.deadline,
            submitted,
            self.broker.clone(),
        );
        turn.db = Some(self.db.clone());
        turn.stream_stall = self.stream_stall;
        Ok(turn)
    }
}

/// How long a reply queue may live unused: a little past the request's deadline, so late events
/// are not returned as unroutable while the request is still finishing.
pub(super) fn reply_expiry_ms(until_deadline: Duration) -> u32 {
    (until_deadline.as_millis() as u32).saturating_add(30_000)
}

impl Pipeline {
    /// The job of a turn whose answer nobody waits for here: its reply events go to the
    /// durable queue `reply_to` (channel answers, which the delivery role sends). The caller
    /// marks it pending, publishes it, and settles its own records around those steps (see
    /// `webhooks::inbox`), all on one database connection.
    pub fn detached_job(&self, request: TurnRequest, reply_to: String) -> Job {
        let deadline_ms = now_ms() + self.deadline.as_millis() as i64;
        request.into_job(deadline_ms, reply_to, false, false)
    }

    /// Publish a job (see [`Pipeline::detached_job`]) and wait for the broker's confirmation.
    pub async fn publish_detached(&self, job: &Job) -> Result<(), SubmitError> {
        let session = self.broker.session().ok_or(SubmitError::Unavailable)?;
        self.broker
            .publish_job(&session, job)
            .await
            .map_err(|e| submit_error(job, e))?;
        info!(request_id = %job.request_id, conversation_id = %job.conversation_id, "detached job queued");
        Ok(())
    }

    async fn publish(&self, session: &Session, job: &Job) -> Result<(), SubmitError> {
        // What is left of the request's one deadline: opening the reply path may already have
        // waited on a broker node's loss, and the caller must not wait twice.
        let left = Duration::from_millis((job.deadline_ms - now_ms()).max(0) as u64);
        let published = tokio::time::timeout(left, self.broker.publish_job(session, job))
            .await
            .unwrap_or_else(|_| {
                Err(PublishError::Unavailable(
                    "no confirm before the deadline".into(),
                ))
            });
        if let Err(e) = published {
            if let Ok(client) = self.db.get().await {
                pending_turns::forget(
                    &**client,
                    job.tenant_id,
                    &job.conversation_id,
                    job.request_id,
                )
                .await;
            }
            return Err(submit_error(job, e));
        }
        Ok(())
    }

    async fn mark_pending(
        &self,
        request: &TurnRequest,
        deadline_ms: i64,
    ) -> Result<(), SubmitError> {
        let unrecorded = |e: &dyn std::fmt::Display| {
            warn!(error = %e, "cannot record the pending turn");
            SubmitError::Unavailable
        };
        let client = self.db.get().await.map_err(|e| unrecorded(&e))?;
        let (conversation, request_id) = (request.conversation_id.as_str(), request.request_id);
        let Some(charge) = request.charge else {
            return pending_turns::record(
                &client,
                request.tenant_id,
                conversation,
                request_id,
                deadline_ms,
            )
            .await
            .map_err(|e| unrecorded(&e));
        };
        // The key's check is this statement: it is the request's `auth` span.
        let auth = info_span!("auth", credential = "api_key", with = "pending turn");
        let recorded =
            pending_turns::record_charged(&client, charge, conversation, request_id, deadline_ms)
                .instrument(auth)
                .await
                .map_err(|e| unrecorded(&e))?;
        recorded.map_err(|refused| {
            if refused == KeyRefused::Invalid {
                self.keys.forget(charge.key_id);
            }
            SubmitError::KeyRefused(refused)
        })
    }
}

fn submit_error(job: &Job, error: PublishError) -> SubmitError {
    match error {
        PublishError::QueueFull => SubmitError::QueueFull,
        e => {
            warn!(request_id = %job.request_id, error = %e, "job not accepted by the broker");
            SubmitError::Unavailable
        }
    }
}
