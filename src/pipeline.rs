//! The one path every dialect uses to get an answer: subscribe to the reply destination, publish
//! the job with publisher confirms, then read reply events until the answer is complete, failed,
//! or the deadline passes. Dialects map their request into a [`TurnRequest`] and the resulting
//! [`TurnEvent`]s into their own JSON or SSE; nothing here knows about dialects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_contract::{AssistantRef, Done, ErrorCode, Job, Message, ReplyEvent, VERSION, now_ms};
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use deadpool_postgres::Pool;

use crate::broker::{Broker, PublishError, Session};
use crate::relay::Subscription;
use crate::store::pending_turns;

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
}

impl TurnRequest {
    fn into_job(self, deadline_ms: i64, reply_to: String) -> Job {
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
            deadline_ms,
            published_ms: now_ms(),
            reply_to,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the message broker is unavailable")]
    Unavailable,
    #[error("too many requests are waiting for a worker")]
    QueueFull,
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

#[derive(Clone)]
pub struct Pipeline {
    broker: Arc<Broker>,
    /// Records each turn as pending before its job is published, so that workers answer the
    /// turns of one conversation in arrival order (see `migrations/0004_turn_order.sql`).
    db: Pool,
    deadline: Duration,
}

impl Pipeline {
    pub fn new(broker: Arc<Broker>, db: Pool, deadline: Duration) -> Self {
        Self {
            broker,
            db,
            deadline,
        }
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
        let (subscription, marked) = tokio::join!(
            session.relay.subscribe(request_id, expires_ms),
            self.mark_pending(&request, deadline_ms)
        );
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
        let job = request.into_job(deadline_ms, subscription.reply_to.clone());
        self.publish(&session, &job).await?;
        info!(%request_id, conversation_id = %job.conversation_id, stream = job.stream, "job queued");
        metrics::gauge!("confab_jobs_in_flight").increment(1.0);
        Ok(Turn {
            request_id,
            conversation_id: job.conversation_id,
            stream: job.stream,
            subscription,
            lost: session.lost(),
            deadline: tokio::time::Instant::now() + self.deadline,
            submitted,
            first_event: None,
            attempt: 0,
            relayed: false,
            held_done: None,
            finished: false,
            broker: self.broker.clone(),
        })
    }
}

/// How long a reply queue may live unused: a little past the request's deadline, so late events
/// are not returned as unroutable while the request is still finishing.
fn reply_expiry_ms(until_deadline: Duration) -> u32 {
    (until_deadline.as_millis() as u32).saturating_add(30_000)
}

impl Pipeline {
    /// The job of a turn whose answer nobody waits for here: its reply events go to the
    /// durable queue `reply_to` (channel answers, which the delivery role sends). The caller
    /// marks it pending, publishes it, and settles its own records around those steps (see
    /// `webhooks::inbox`), all on one database connection.
    pub fn detached_job(&self, request: TurnRequest, reply_to: String) -> Job {
        let deadline_ms = now_ms() + self.deadline.as_millis() as i64;
        request.into_job(deadline_ms, reply_to)
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
        let published = self.broker.publish_job(session, job).await;
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
        let client = self.db.get().await.map_err(|e| {
            warn!(error = %e, "cannot record the pending turn");
            SubmitError::Unavailable
        })?;
        pending_turns::record(
            &**client,
            request.tenant_id,
            &request.conversation_id,
            request.request_id,
            deadline_ms,
        )
        .await
        .map_err(|e| {
            warn!(error = %e, "cannot record the pending turn");
            SubmitError::Unavailable
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

/// One accepted turn: its reply events, in order, until the end.
pub struct Turn {
    pub request_id: Uuid,
    pub conversation_id: String,
    stream: bool,
    subscription: Subscription,
    lost: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
    submitted: Instant,
    first_event: Option<Instant>,
    attempt: u32,
    relayed: bool,
    /// A `done` held back while its text goes out as a delta first.
    held_done: Option<Box<Done>>,
    finished: bool,
    broker: Arc<Broker>,
}

impl Turn {
    /// The next event for the caller; `None` after the final one.
    pub async fn next(&mut self) -> Option<TurnEvent> {
        if let Some(done) = self.held_done.take() {
            return Some(self.settle_done(done));
        }
        if self.finished {
            return None;
        }
        Some(match self.next_event().await {
            // An answer stored by an earlier attempt (or made without the model) comes back as
            // a `done` with no deltas before it: a stream still gets its text as a delta.
            TurnEvent::Done(done) if self.stream && !self.relayed && !done.text.is_empty() => {
                let text = done.text.clone();
                self.held_done = Some(done);
                self.relayed(text)
            }
            TurnEvent::Done(done) => self.settle_done(done),
            TurnEvent::Delta(text) => self.relayed(text),
            TurnEvent::Failed(failure) => {
                self.finish(false);
                // The worker is still at it after a timeout or a broken stream; stop it.
                if matches!(
                    failure.kind,
                    FailureKind::Timeout | FailureKind::Worker(ErrorCode::Interrupted)
                ) {
                    self.cancel_upstream();
                }
                TurnEvent::Failed(failure)
            }
        })
    }

    fn relayed(&mut self, text: String) -> TurnEvent {
        self.relayed = true;
        self.mark_first_event();
        TurnEvent::Delta(text)
    }

    fn settle_done(&mut self, done: Box<Done>) -> TurnEvent {
        self.mark_first_event();
        self.finish(true);
        TurnEvent::Done(done)
    }

    /// Wait for the whole answer (JSON mode).
    pub async fn collect(mut self) -> Result<Done, Failure> {
        while let Some(event) = self.next().await {
            match event {
                TurnEvent::Delta(_) => {}
                TurnEvent::Done(done) => return Ok(*done),
                TurnEvent::Failed(failure) => return Err(failure),
            }
        }
        Err(Failure {
            kind: FailureKind::BrokerLost,
            message: "the reply stream ended without an answer".into(),
        })
    }

    fn mark_first_event(&mut self) {
        if self.first_event.is_none() {
            let now = Instant::now();
            self.first_event = Some(now);
            metrics::histogram!("confab_time_to_first_token_seconds")
                .record(now.duration_since(self.submitted).as_secs_f64());
        }
    }

    fn finish(&mut self, completed: bool) {
        self.finished = true;
        let outcome = if completed { "done" } else { "failed" };
        metrics::histogram!("confab_turn_duration_seconds", "outcome" => outcome)
            .record(self.submitted.elapsed().as_secs_f64());
    }

    fn cancel_upstream(&self) {
        let broker = self.broker.clone();
        let request_id = self.request_id;
        tokio::spawn(async move { broker.broadcast_cancel(request_id).await });
    }

    async fn next_event(&mut self) -> TurnEvent {
        loop {
            let event = tokio::select! {
                event = self.subscription.events.recv() => event,
                _ = tokio::time::sleep_until(self.deadline) => {
                    return failed(FailureKind::Timeout, "no answer before the request's deadline");
                }
                _ = self.lost.wait_for(|lost| *lost) => None,
            };
            let Some(event) = event else {
                // A streamed answer already relayed in part cannot be resumed without risking a
                // splice; anything else waits for the broker, where its job is still queued.
                if self.stream && self.relayed {
                    return failed(
                        FailureKind::BrokerLost,
                        "lost the connection to the message broker",
                    );
                }
                // Boxed: every waiting stream holds this future, and only one that lost its
                // broker needs room for the reconnection's.
                if let Err(failure) = Box::pin(self.resubscribe()).await {
                    return failure;
                }
                continue;
            };
            match event {
                ReplyEvent::Accepted { worker, attempt } => {
                    if attempt > 1 {
                        info!(request_id = %self.request_id, %worker, attempt, "job redelivered");
                    }
                    // A streamed answer cannot be spliced: the caller already has part of the
                    // first attempt's text. JSON callers simply wait for the new attempt.
                    if self.stream && self.relayed && attempt > self.attempt {
                        return failed(
                            FailureKind::Worker(ErrorCode::Interrupted),
                            "the worker answering this request stopped mid-answer; please retry",
                        );
                    }
                    self.attempt = self.attempt.max(attempt);
                }
                ReplyEvent::Delta { text, .. } => return TurnEvent::Delta(text),
                ReplyEvent::Keepalive => {}
                ReplyEvent::Done(done) => return TurnEvent::Done(done),
                ReplyEvent::Error { code, message } => {
                    return failed(FailureKind::Worker(code), &message);
                }
            }
        }
    }
}

impl Turn {
    /// After the broker connection was lost: wait (within the deadline) for the next session and
    /// listen again under the same reply destination, which the job names. The job itself is
    /// durable, so a worker answers it once the broker is back.
    async fn resubscribe(&mut self) -> Result<(), TurnEvent> {
        warn!(request_id = %self.request_id, "lost the broker while waiting; waiting for it to return");
        let timeout = || {
            failed(
                FailureKind::Timeout,
                "no answer before the request's deadline",
            )
        };
        let (session, subscription) = loop {
            let session = tokio::time::timeout_at(self.deadline, self.broker.next_session())
                .await
                .map_err(|_| timeout())?;
            let until_deadline = self
                .deadline
                .saturating_duration_since(tokio::time::Instant::now());
            match session
                .relay
                .subscribe(self.request_id, reply_expiry_ms(until_deadline))
                .await
            {
                Ok(subscription) => break (session, subscription),
                Err(e) => {
                    warn!(request_id = %self.request_id, error = %e, "cannot reopen the reply path");
                    // That session is failing too; its successor is worth another try.
                    tokio::time::timeout_at(self.deadline, session.lost().wait_for(|lost| *lost))
                        .await
                        .map_err(|_| timeout())?
                        .ok();
                }
            }
        };
        debug_assert_eq!(subscription.reply_to, self.subscription.reply_to);
        self.subscription = subscription;
        self.lost = session.lost();
        info!(request_id = %self.request_id, "reply path reopened after a broker reconnection");
        Ok(())
    }
}

fn failed(kind: FailureKind, message: &str) -> TurnEvent {
    TurnEvent::Failed(Failure {
        kind,
        message: message.to_owned(),
    })
}

impl Drop for Turn {
    fn drop(&mut self) {
        metrics::gauge!("confab_jobs_in_flight").decrement(1.0);
        if !self.finished {
            info!(request_id = %self.request_id, "caller went away; cancelling the job");
            self.cancel_upstream();
        }
    }
}
