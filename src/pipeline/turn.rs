//! One accepted turn as its caller sees it: the reply events of its request, read from the relay
//! in order and turned into [`TurnEvent`]s until the answer is done, failed or past its deadline.
//! A lost broker session is waited out (the job is still queued) and the reply path reopened;
//! a stream that already relayed text ends with an error instead. A turn whose events stop for a
//! few seconds also looks for its answer in the database: in a cluster the node holding its reply
//! queue may die while its connection lives on another, and the worker's answer then reaches
//! nobody (the worker acks, the answer stored). A redelivered job's stream
//! goes on only if the new attempt continues the answer already relayed (its deltas are then
//! read by `seq`, skipping those the caller has); one that starts over ends with an error, as
//! a stream is never spliced onto another answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_contract::{CancelKind, Done, ErrorCode, Job, ReplyEvent};
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};
use uuid::Uuid;

use super::{Failure, FailureKind, TurnEvent, reply_expiry_ms};
use crate::broker::Broker;
use crate::relay::Subscription;

/// One accepted turn: its reply events, in order, until the end.
pub struct Turn {
    pub request_id: Uuid,
    pub conversation_id: String,
    /// How long a stream of this turn may wait for its client to read before it stops relaying
    /// and only finishes the turn (`crate::http::sse`).
    pub stream_stall: Duration,
    stream: bool,
    subscription: Subscription,
    lost: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
    submitted: Instant,
    first_event: Option<Instant>,
    attempt: u32,
    relayed: bool,
    /// The `seq` of the next delta of the answer; earlier ones were relayed (or skipped as not
    /// the answer's) and come again only from a redelivery that continues the answer.
    next_seq: u32,
    /// A `done` held back while its text, or its last delta, goes out as a delta first.
    held_done: Option<Box<Done>>,
    finished: bool,
    broker: Arc<Broker>,
    /// Says "a client listens" to the workers while a resumed turn is read; stopped on drop.
    listening: Option<tokio::task::AbortHandle>,
    /// Read again from the reply log: its events are the original stream's, so it is turned
    /// into the same events, but it has no reply path to reopen and is not measured again.
    resumed: bool,
    /// The `relay` span, a child of the request's: from acceptance to the last event read, so
    /// for a stream it goes on after the request's handler (and its span) returned. Every
    /// read is in it.
    relay: tracing::Span,
    /// Where a turn whose events stopped looks for an answer that reached nobody.
    pub(super) db: Option<deadpool_postgres::Pool>,
}

/// How long a turn's events may stop before it looks for its stored answer, and how often it
/// looks again. A worker sends keepalives every 400 ms while it answers, so this much silence
/// means the job is still queued or the reply path is gone.
const STORED_ANSWER_CHECK: Duration = Duration::from_secs(3);

impl Turn {
    /// The turn of `job`, accepted by the broker, whose events arrive on `subscription`.
    pub(super) fn accepted(
        job: Job,
        subscription: Subscription,
        lost: watch::Receiver<bool>,
        until_deadline: Duration,
        submitted: Instant,
        broker: Arc<Broker>,
    ) -> Turn {
        let (id, conversation) = (job.request_id, job.conversation_id);
        let mut turn = Turn::reading(id, conversation, job.stream, subscription, lost, broker);
        // The request's one deadline, the job's, counted from its submission: opening the reply
        // path and publishing may already have waited out a broker node's loss, and the caller
        // must not wait a second deadline here.
        turn.deadline = tokio::time::Instant::from_std(submitted) + until_deadline;
        turn.submitted = submitted;
        turn
    }

    /// An earlier request's stream, read again from the reply log (see `Pipeline::resume`). It
    /// can never be spliced onto another reply path: if the broker goes, the stream ends.
    pub(super) fn resumed(
        request_id: Uuid,
        conversation_id: String,
        subscription: Subscription,
        lost: watch::Receiver<bool>,
        until_deadline: Duration,
        broker: Arc<Broker>,
    ) -> Turn {
        let mut turn = Turn::reading(
            request_id,
            conversation_id,
            true,
            subscription,
            lost,
            broker,
        );
        turn.deadline = tokio::time::Instant::now() + until_deadline;
        turn.resumed = true;
        turn
    }

    /// A turn reading `subscription` from its first event, submitted now, due now: its makers
    /// set what differs.
    fn reading(
        request_id: Uuid,
        conversation_id: String,
        stream: bool,
        subscription: Subscription,
        lost: watch::Receiver<bool>,
        broker: Arc<Broker>,
    ) -> Turn {
        Turn {
            request_id,
            conversation_id,
            stream_stall: Duration::from_secs(30),
            stream,
            subscription,
            lost,
            deadline: tokio::time::Instant::now(),
            submitted: Instant::now(),
            first_event: None,
            attempt: 0,
            relayed: false,
            next_seq: 0,
            held_done: None,
            finished: false,
            broker,
            listening: None,
            resumed: false,
            relay: info_span!("relay", %request_id, stream),
            db: None,
        }
    }

    /// Tell the workers, now and then well within `grace`, that a client listens to this
    /// turn again, so that its answer is not stopped for the client that left.
    pub(super) fn listen(&mut self, grace: Duration) {
        let every = (grace / 3).max(Duration::from_millis(100));
        let (broker, request_id) = (self.broker.clone(), self.request_id);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                broker.broadcast(request_id, CancelKind::Listening).await;
            }
        });
        self.listening = Some(task.abort_handle());
    }

    /// The next event for the caller; `None` after the final one.
    pub async fn next(&mut self) -> Option<TurnEvent> {
        let relay = self.relay.clone();
        self.next_relayed().instrument(relay).await
    }

    async fn next_relayed(&mut self) -> Option<TurnEvent> {
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
                // The worker is still at it after a timeout or a broken stream; stop it (not
                // for a reader of the log, whose deadline is its own).
                if !self.resumed
                    && matches!(
                        failure.kind,
                        FailureKind::Timeout | FailureKind::Worker(ErrorCode::Interrupted)
                    )
                {
                    self.cancel_upstream();
                }
                TurnEvent::Failed(failure)
            }
        })
    }

    fn relayed(&mut self, text: String) -> TurnEvent {
        self.relayed = true;
        self.mark_first_event(Instant::now());
        TurnEvent::Delta(text)
    }

    fn settle_done(&mut self, done: Box<Done>) -> TurnEvent {
        // A JSON turn hears no delta: its first token came as long before `done` as the worker
        // says.
        let timing = done.timing;
        let since_first_token =
            Duration::from_millis(timing.total_ms.saturating_sub(timing.first_token_ms));
        let now = Instant::now();
        self.mark_first_event(now.checked_sub(since_first_token).unwrap_or(now));
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

    fn mark_first_event(&mut self, at: Instant) {
        if self.first_event.is_none() && !self.resumed {
            self.first_event = Some(at);
            metrics::histogram!("confab_time_to_first_token_seconds")
                .record(at.saturating_duration_since(self.submitted).as_secs_f64());
        }
    }

    fn finish(&mut self, completed: bool) {
        self.finished = true;
        if self.resumed {
            return;
        }
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
        // Only after a silence: a turn reading its events needs no query.
        let first = tokio::time::Instant::now() + STORED_ANSWER_CHECK;
        let mut check = tokio::time::interval_at(first, STORED_ANSWER_CHECK);
        loop {
            // A stream that relayed part of an answer cannot be finished from the store.
            let may_look = !(self.stream && self.relayed);
            let event = tokio::select! {
                event = self.subscription.events.recv() => Some(event),
                _ = check.tick(), if may_look => None,
                _ = tokio::time::sleep_until(self.deadline) => {
                    return failed(FailureKind::Timeout, "no answer before the request's deadline");
                }
                _ = self.lost.wait_for(|lost| *lost) => Some(None),
            };
            let Some(event) = event else {
                if let Some(done) = self.stored_answer().await {
                    info!(request_id = %self.request_id, "the answer reached no reply path; read from the database");
                    return TurnEvent::Done(Box::new(done));
                }
                continue;
            };
            let Some(event) = event else {
                // A streamed answer already relayed in part cannot be resumed without risking a
                // splice; anything else waits for the broker, where its job is still queued.
                if self.resumed || (self.stream && self.relayed) {
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
                ReplyEvent::Accepted {
                    worker,
                    attempt,
                    continues,
                } => {
                    if attempt > 1 {
                        info!(request_id = %self.request_id, %worker, attempt, ?continues, "job redelivered");
                    }
                    // The caller has part of an earlier attempt's text: only an attempt that
                    // continues from at least there can follow it. JSON callers simply wait for
                    // the new attempt.
                    if self.stream
                        && self.relayed
                        && attempt > self.attempt
                        && continues.is_none_or(|from| from < self.next_seq)
                    {
                        return failed(
                            FailureKind::Worker(ErrorCode::Interrupted),
                            "the worker answering this request stopped mid-answer; please retry",
                        );
                    }
                    self.attempt = self.attempt.max(attempt);
                }
                // Sent again by an attempt that continues the answer; the caller has it.
                ReplyEvent::Delta { seq, .. } if seq < self.next_seq => {}
                // Deltas reach a reply destination in order; only the reply log can miss some
                // (its writer drops what it cannot write), and an answer is never relayed with
                // a hole in it.
                ReplyEvent::Delta { seq, .. } if seq > self.next_seq => return gap(),
                ReplyEvent::Delta { seq, text } => {
                    self.next_seq = seq + 1;
                    return TurnEvent::Delta(text);
                }
                ReplyEvent::Keepalive => {}
                ReplyEvent::Done(mut done) => {
                    // The answer's last delta, carried by `done`: relayed as a delta first.
                    if let Some(last) = done.last_delta.take()
                        && last.seq >= self.next_seq
                    {
                        if last.seq > self.next_seq {
                            return gap();
                        }
                        self.next_seq = last.seq + 1;
                        self.held_done = Some(done);
                        return TurnEvent::Delta(last.text);
                    }
                    return TurnEvent::Done(done);
                }
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
            let subscribing = session
                .relay
                .subscribe(self.request_id, reply_expiry_ms(until_deadline));
            match tokio::time::timeout_at(self.deadline, subscribing)
                .await
                .map_err(|_| timeout())?
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

impl Turn {
    /// The turn's answer, if a worker stored it complete.
    async fn stored_answer(&self) -> Option<Done> {
        let db = self.db.as_ref()?.get().await.ok()?;
        crate::store::conversations::answer_of_request(&**db, self.request_id)
            .await
            .ok()
            .flatten()
    }
}

/// A delta that skips some: the answer cannot be relayed whole.
fn gap() -> TurnEvent {
    failed(
        FailureKind::Worker(ErrorCode::Interrupted),
        "part of this answer was not kept for the stream; please retry",
    )
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
        if let Some(listening) = &self.listening {
            listening.abort();
        }
        // A resumed turn's client leaving changes nothing: the worker stops once the turn's
        // `listening` broadcasts stop, after its grace.
        if !self.finished && !self.resumed {
            // Not a cancel: a stream's client may reconnect within the resume grace, and the
            // worker decides (it stops at once when there is none, or the turn is JSON).
            info!(request_id = %self.request_id, "caller went away");
            let broker = self.broker.clone();
            let request_id = self.request_id;
            tokio::spawn(async move { broker.broadcast(request_id, CancelKind::Left).await });
        }
    }
}
