//! One turn, from a delivered job to its acknowledgement.
//!
//! Order of work: drop the job if past its deadline; announce `accepted`; store the user turn and
//! read the context (one transaction); stream the model's output as coalesced deltas; store the
//! answer; publish `done`; only then ack. A redelivered job finds its user turn already stored
//! (message ids are idempotency keys) and, if its answer was stored too, replays it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_contract::{Done, ErrorCode, Job, ReplyEvent, Role, Source, Timing, Usage, now_ms};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use lapin::Channel;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::inflight::InFlight;
use crate::model::{ModelError, ModelEvent, ModelRequest, Models};
use crate::reply::{Delivered, Replies, ReplyError};
use crate::store::answer::NewAnswer;
use crate::store::prepare::{Prepared, PreparedTurn};
use crate::store::{self, StoredAnswer};
use crate::{context, order, summary};
use confab_shared::ModelSpec;
use confab_shared::db::DbError;

/// What the worker shares between its turns.
pub struct TurnEnv {
    pub worker_id: String,
    pub pool: Pool,
    pub models: Models,
    pub inflight: InFlight,
    pub coalesce: Duration,
    /// Context window assumed for models confab does not know.
    pub default_context_window: u32,
    /// Last attempt the broker allows before dead-lettering (delivery limit + 1).
    pub final_attempt: u32,
}

/// What to tell the broker about the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with (answered, failed for good, or the caller is gone).
    Ack,
    /// Could not be worked on now; return it so this or another worker tries again (and the
    /// broker dead-letters it past the delivery limit).
    Requeue,
}

/// While the model is silent, a keepalive this often tells a vanished caller apart.
const KEEPALIVE: Duration = Duration::from_millis(400);

/// How long a job's reply destination may be missing when the job starts before its caller
/// counts as gone: longer than the ingress takes to reconnect after a broker restart (its retry
/// interval grows to 5 s). Only a worker that (re)connected less than this ago is patient: that
/// is when a broker restart is the likely cause; otherwise a missing destination means the
/// caller is gone, and the worker stops at once without waiting for a confirm.
pub const REPLY_PATH_PATIENCE: Duration = Duration::from_secs(10);

/// Deltas larger than this are published without waiting for the coalescing window.
const MAX_PENDING_BYTES: usize = 8 * 1024;

pub async fn run(
    env: &TurnEnv,
    channel: Channel,
    job: &Job,
    attempt: u32,
    reconnected: bool,
) -> Settle {
    let started = Instant::now();
    let registration = env.inflight.register(job.request_id);
    let mut replies = Replies::new(
        channel,
        &job.reply_to,
        job.request_id,
        registration.gone.clone(),
    );
    if now_ms() >= job.deadline_ms {
        info!("job past its deadline; dropped without calling the model");
        metrics::counter!("confab_worker_jobs_total", "outcome" => "expired").increment(1);
        let _ = replies.finish(&deadline_error()).await;
        release_turn(env, job).await;
        return Settle::Ack;
    }
    let accepted = ReplyEvent::Accepted {
        worker: env.worker_id.clone(),
        attempt,
    };
    let announced = if reconnected {
        let patience = REPLY_PATH_PATIENCE.min(Duration::from_millis(
            (job.deadline_ms - now_ms()).max(0) as u64,
        ));
        match replies.announce(&accepted, patience).await {
            Ok(Delivered::CallerGone) => {
                info!("nobody listens for this request's replies");
                Ok(())
            }
            other => other.map(|_| ()),
        }
    } else {
        replies.send(&accepted).await
    };
    if let Err(e) = announced {
        warn!(error = %e, "cannot publish to the broker; returning the job");
        return Settle::Requeue;
    }
    let outcome = answer(
        env,
        &mut replies,
        job,
        attempt,
        started,
        registration.gone.subscribe(),
    )
    .await;
    let (settle, label) = match outcome {
        Ok(settle) => (settle, "answered"),
        Err(TurnError::Reply(e)) => {
            warn!(error = %e, "reply destination unreachable; returning the job");
            (Settle::Requeue, "broker_error")
        }
        Err(TurnError::Store(e)) => {
            warn!(error = %e, attempt, "turn failed on the database");
            if attempt >= env.final_attempt {
                let event = ReplyEvent::Error {
                    code: ErrorCode::Internal,
                    message: "the conversation store is unavailable".into(),
                };
                let _ = replies.finish(&event).await;
            }
            (Settle::Requeue, "store_error")
        }
    };
    metrics::counter!("confab_worker_jobs_total", "outcome" => label).increment(1);
    metrics::histogram!("confab_worker_turn_seconds").record(started.elapsed().as_secs_f64());
    // A returned job keeps its place in its conversation, unless the broker is about to
    // dead-letter it.
    if settle == Settle::Ack || attempt >= env.final_attempt {
        release_turn(env, job).await;
    }
    settle
}

/// Let the conversation's next turn go ahead. Best effort: a row left behind stops holding
/// anything up at the job's deadline.
async fn release_turn(env: &TurnEnv, job: &Job) {
    if let Err(e) = order::release(&env.pool, job).await {
        warn!(error = %e, "cannot release the turn; later turns wait until its deadline");
    }
}

#[derive(Debug, thiserror::Error)]
enum TurnError {
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error(transparent)]
    Store(DbError),
}

fn deadline_error() -> ReplyEvent {
    ReplyEvent::Error {
        code: ErrorCode::DeadlineExceeded,
        message: "the request reached its deadline before the answer was complete".into(),
    }
}

/// Retry a database step while the database is unavailable, until the job's deadline.
async fn with_retry<T, F, Fut>(deadline_ms: i64, mut step: F) -> Result<T, DbError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DbError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match step().await {
            Err(DbError::Unavailable(reason))
                if now_ms() + (backoff.as_millis() as i64) < deadline_ms =>
            {
                warn!(%reason, retry_in = ?backoff, "database unavailable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

async fn answer(
    env: &TurnEnv,
    replies: &mut Replies,
    job: &Job,
    attempt: u32,
    started: Instant,
    gone: watch::Receiver<bool>,
) -> Result<Settle, TurnError> {
    // The order is checked while the turn is prepared; only a turn behind an earlier one of its
    // conversation polls for it, and is then prepared without checking again (it may go after
    // its deadline or once its caller is gone, to settle).
    let mut check_order = true;
    let prepared = loop {
        let prepared = with_retry(job.deadline_ms, || {
            store::prepare::prepare_turn(&env.pool, job, env.default_context_window, check_order)
        })
        .await;
        let cancelled = match prepared {
            Ok(Prepared::Ready(prepared)) => break Ok(*prepared),
            Ok(Prepared::Wait) => {
                let turn = with_retry(job.deadline_ms, || {
                    order::wait_for_earlier_turns(&env.pool, job, gone.clone())
                })
                .await
                .map_err(TurnError::Store)?;
                check_order = false;
                turn == order::WaitEnded::Cancelled
            }
            Ok(Prepared::Cancelled) => true,
            Err(e) => break Err(e),
        };
        if cancelled {
            info!("request cancelled before it started");
            return finish_without_answer(replies, Generation::CallerGone).await;
        }
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(DbError::NotFound(what)) => {
            let event = ReplyEvent::Error {
                code: ErrorCode::NotFound,
                message: format!("the {what} of this request no longer exists"),
            };
            replies.finish(&event).await?;
            return Ok(Settle::Ack);
        }
        Err(e) => return Err(TurnError::Store(e)),
    };
    let queued_ms = (started_ms(started) - job.published_ms).max(0) as u64;
    if let Some(existing) = &prepared.existing_answer {
        info!(
            attempt,
            "answer already stored by an earlier attempt; replaying it"
        );
        let timing = Timing {
            queued_ms,
            ..Timing::default()
        };
        replies.finish(&done_event(job, existing, timing)).await?;
        return Ok(Settle::Ack);
    }
    if job.message.role != Role::User {
        // System and assistant messages join the conversation without a model call.
        let done = ReplyEvent::Done(Box::new(Done {
            message_id: job.message.id.clone(),
            conversation_id: job.conversation_id.clone(),
            text: String::new(),
            created_ms: job.message.created_ms,
            usage: Usage::default(),
            model: String::new(),
            sources: Vec::new(),
            timing: Timing {
                queued_ms,
                ..Timing::default()
            },
        }));
        replies.finish(&done).await?;
        return Ok(Settle::Ack);
    }
    let Some(spec) = ModelSpec::parse(&prepared.assistant.model) else {
        let event = ReplyEvent::Error {
            code: ErrorCode::ModelError,
            message: format!(
                "the assistant's model setting {:?} names no provider",
                prepared.assistant.model
            ),
        };
        replies.finish(&event).await?;
        return Ok(Settle::Ack);
    };
    generate_and_store(env, replies, job, prepared, spec, started, queued_ms, gone).await
}

fn started_ms(started: Instant) -> i64 {
    now_ms() - started.elapsed().as_millis() as i64
}

fn done_event(job: &Job, answer: &StoredAnswer, timing: Timing) -> ReplyEvent {
    ReplyEvent::Done(Box::new(Done {
        message_id: answer.id.clone(),
        conversation_id: job.conversation_id.clone(),
        text: answer.content.clone(),
        created_ms: answer.created_ms,
        usage: Usage {
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: answer.completion_tokens,
        },
        model: answer.model.clone(),
        sources: Vec::new(),
        timing,
    }))
}

/// How a generation ended.
enum Generation {
    Complete,
    Failed(ModelError),
    CallerGone,
    DeadlineExceeded,
}

#[allow(clippy::too_many_arguments)]
async fn generate_and_store(
    env: &TurnEnv,
    replies: &mut Replies,
    job: &Job,
    prepared: PreparedTurn,
    spec: ModelSpec,
    started: Instant,
    queued_ms: u64,
    gone: watch::Receiver<bool>,
) -> Result<Settle, TurnError> {
    let budget = spec
        .context_window(env.default_context_window)
        .saturating_sub(context::ANSWER_TOKENS);
    let assembled = context::assemble(prepared.parts, budget);
    let sources: Vec<Source> = assembled.passages.iter().map(|p| p.source()).collect();
    let prompt_estimate = assembled.tokens;
    let summarise_before = assembled.oldest_turn_pk.unwrap_or(prepared.message_pk);
    let request = ModelRequest {
        model: spec.model_name().to_owned(),
        messages: assembled.messages,
        passages: assembled.passages,
        max_tokens: context::ANSWER_TOKENS,
    };
    let mut stream = Streamed::default();
    let ending = stream
        .relay(env, replies, &spec, request, job.deadline_ms, gone)
        .await?;
    let first_token_ms = stream
        .first_token
        .map(|t| t.duration_since(started).as_millis() as u64);
    if let Some(ms) = first_token_ms {
        metrics::histogram!("confab_worker_first_token_seconds").record(ms as f64 / 1000.0);
    }
    let usage = stream.usage.unwrap_or(Usage {
        prompt_tokens: prompt_estimate,
        completion_tokens: stream.pieces,
    });
    let interrupted = !matches!(ending, Generation::Complete);
    if interrupted && stream.text.is_empty() {
        return finish_without_answer(replies, ending).await;
    }
    let new_answer = NewAnswer {
        conversation_pk: prepared.conversation_pk,
        answers: &job.message.id,
        content: &stream.text,
        interrupted,
        model: spec.model_name(),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        first_token_ms,
        total_ms: started.elapsed().as_millis() as u64,
        request_id: job.request_id,
        sources: &sources,
    };
    let stored = with_retry(job.deadline_ms, || {
        store::answer::store_answer(&env.pool, &new_answer)
    })
    .await
    .map_err(TurnError::Store)?;
    if interrupted {
        info!(
            chars = stream.text.len(),
            "partial answer stored as interrupted"
        );
        return finish_without_answer(replies, ending).await;
    }
    let timing = Timing {
        queued_ms,
        first_token_ms: first_token_ms.unwrap_or_default(),
        total_ms: started.elapsed().as_millis() as u64,
    };
    let mut done = done_event(job, &stored, timing);
    if let ReplyEvent::Done(done) = &mut done {
        done.sources = sources;
    }
    let delivered = replies.finish(&done).await?;
    // Turns that no longer fit are folded into the summary, off the reply's path.
    if prepared
        .unsummarised_from_pk
        .is_some_and(|first| first < summarise_before)
    {
        tokio::spawn(summary::refresh(
            env.pool.clone(),
            env.models.clone(),
            spec.clone(),
            prepared.conversation_pk,
            summarise_before,
        ));
    }
    info!(
        message_id = %stored.id,
        completion_tokens = usage.completion_tokens,
        total_ms = timing.total_ms,
        delivered = (delivered == Delivered::Yes),
        "turn answered"
    );
    Ok(Settle::Ack)
}

async fn finish_without_answer(
    replies: &mut Replies,
    ending: Generation,
) -> Result<Settle, TurnError> {
    let event = match ending {
        // A cancelled request's caller may still be listening (an explicit cancel); one that
        // went away makes this publish come back unroutable, which is harmless.
        Generation::Complete | Generation::CallerGone => {
            info!("request cancelled or caller gone; generation stopped");
            ReplyEvent::Error {
                code: ErrorCode::Cancelled,
                message: "The request was cancelled".into(),
            }
        }
        Generation::DeadlineExceeded => deadline_error(),
        Generation::Failed(error) => {
            warn!(%error, "model call failed");
            let code = match error {
                ModelError::Timeout(_) => ErrorCode::ModelTimeout,
                _ => ErrorCode::ModelError,
            };
            ReplyEvent::Error {
                code,
                message: error.to_string(),
            }
        }
    };
    replies.finish(&event).await?;
    Ok(Settle::Ack)
}

/// The model's output as relayed so far.
#[derive(Default)]
struct Streamed {
    text: String,
    pending: String,
    seq: u32,
    pieces: u32,
    first_token: Option<Instant>,
    usage: Option<Usage>,
}

impl Streamed {
    async fn flush(&mut self, replies: &mut Replies) -> Result<(), ReplyError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let event = ReplyEvent::Delta {
            seq: self.seq,
            text: std::mem::take(&mut self.pending),
        };
        self.seq += 1;
        replies.send(&event).await
    }

    /// Relay the model's deltas until it finishes, fails, the caller goes or the deadline passes.
    /// The first delta goes out at once; later ones are merged over the coalescing window.
    async fn relay(
        &mut self,
        env: &TurnEnv,
        replies: &mut Replies,
        spec: &ModelSpec,
        request: ModelRequest,
        deadline_ms: i64,
        mut gone: watch::Receiver<bool>,
    ) -> Result<Generation, ReplyError> {
        let provider: Arc<dyn crate::model::Provider> = env.models.provider(spec);
        let mut model = provider.stream(request);
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis((deadline_ms - now_ms()).max(0) as u64);
        let mut flush_at: Option<tokio::time::Instant> = None;
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = async { gone.wait_for(|gone| *gone).await.is_ok() } => return Ok(Generation::CallerGone),
                _ = tokio::time::sleep_until(deadline) => {
                    self.flush(replies).await?;
                    return Ok(Generation::DeadlineExceeded);
                }
                _ = async { tokio::time::sleep_until(flush_at.unwrap_or(deadline)).await }, if flush_at.is_some() => {
                    flush_at = None;
                    self.flush(replies).await?;
                }
                event = model.next() => match event {
                    Some(Ok(ModelEvent::Delta(text))) => {
                        self.text.push_str(&text);
                        self.pending.push_str(&text);
                        self.pieces += 1;
                        if self.first_token.is_none() {
                            self.first_token = Some(Instant::now());
                            self.flush(replies).await?;
                        } else if env.coalesce.is_zero() || self.pending.len() >= MAX_PENDING_BYTES {
                            flush_at = None;
                            self.flush(replies).await?;
                        } else if flush_at.is_none() {
                            flush_at = Some(tokio::time::Instant::now() + env.coalesce);
                        }
                    }
                    Some(Ok(ModelEvent::Usage(usage))) => self.usage = Some(usage),
                    Some(Err(error)) => {
                        self.flush(replies).await?;
                        return Ok(Generation::Failed(error));
                    }
                    None => {
                        self.flush(replies).await?;
                        return Ok(Generation::Complete);
                    }
                },
                _ = keepalive.tick() => {
                    if replies.idle_for() >= KEEPALIVE {
                        replies.send(&ReplyEvent::Keepalive).await?;
                    }
                }
            }
        }
    }
}
