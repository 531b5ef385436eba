//! One turn, from a delivered job to its acknowledgement.
//!
//! A job is acked only after its answer is stored and `done` is published, so a worker that dies
//! mid-turn loses nothing: the broker delivers the job again, which finds its user turn already
//! stored (message ids are idempotency keys) and, if its answer was stored too, replays it. This
//! module runs the phases in their order: drop the job if past its deadline; announce a
//! redelivered stream's `accepted`; [`prepare`] the turn in its conversation's order (store the user turn and read
//! the context, one transaction); [`generate`] the answer as coalesced deltas; [`settle`] it
//! (store the answer, publish `done`), and only then ack. A redelivered stream first reads what
//! the [`earlier`] attempts streamed and continues that answer.

mod earlier;
mod env;
mod generate;
mod prepare;
mod retry;
mod settle;
mod tools;

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_contract::{AssistantRef, ErrorCode, Job, ReplyEvent, now_ms};
use confab_shared::ModelSpec;
use confab_shared::db::DbError;
use confab_shared::reply_log::LogWriter;
use lapin::Channel;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use earlier::Earlier;
pub use env::TurnEnv;
use generate::Generation;
use prepare::Readiness;
pub use settle::Settle;
use settle::TurnError;

use crate::reply::Replies;
use crate::store::steps::StepLog;
use crate::tools::CallContext;

/// How long a job's reply destination may be missing when the job starts before its caller
/// counts as gone: longer than the ingress takes to reconnect after a broker restart (its retry
/// interval grows to 5 s). Only a worker that (re)connected less than this ago is patient: that
/// is when a broker restart is the likely cause; otherwise a missing destination means the
/// caller is gone, and the worker stops at once without waiting for a confirm.
pub const REPLY_PATH_PATIENCE: Duration = Duration::from_secs(10);

/// Longest read of the reply log for what a redelivered stream's earlier attempts sent; beyond
/// it the attempt starts the answer over (and a caller that has part of it gets an error).
const EARLIER_READ_LIMIT: Duration = Duration::from_secs(10);

/// What a turn works on: the channel replies go out on (in confirm mode), the connection on
/// which a redelivered stream reads the reply log on a channel of its own, and the session's
/// writer to the log (none when streams are not resumable).
pub struct Channels {
    pub publish: Channel,
    pub connection: Arc<lapin::Connection>,
    pub log: Option<Arc<LogWriter>>,
}

/// Work on one delivered job and say what the broker should do with it.
pub async fn run(
    env: &TurnEnv,
    channels: &Channels,
    job: &Job,
    attempt: u32,
    reconnected: bool,
) -> Settle {
    let started = Instant::now();
    // Only a stream can be reconnected to, so only a stream's turn outlives its caller.
    let grace = if job.stream {
        env.resume_grace
    } else {
        Duration::ZERO
    };
    let registration = env.inflight.register(job.request_id, grace);
    // Held from the start: a grace watch ends early once nobody holds the signal.
    let gone = registration.signals.gone.subscribe();
    // Nothing of an ephemeral turn is kept, its reply log included.
    let log = channels
        .log
        .as_ref()
        .filter(|_| job.stream && !job.ephemeral);
    let mut replies = Replies::new(
        channels.publish.clone(),
        &job.reply_to,
        log.cloned(),
        job.stream_format.clone(),
        job.request_id,
        registration.signals.clone(),
    );
    if now_ms() >= job.deadline_ms {
        info!("job past its deadline; dropped without calling the model");
        metrics::counter!("confab_worker_jobs_total", "outcome" => "expired").increment(1);
        let _ = replies.finish(&settle::deadline_error()).await;
        settle::release_turn(env, job).await;
        return Settle::Ack;
    }
    let earlier = match log {
        Some(log) if attempt > 1 => read_earlier(channels, log, job).await,
        _ => None,
    };
    let accepted = ReplyEvent::Accepted {
        worker: env.worker_id.clone(),
        attempt,
        continues: earlier.as_ref().map(Earlier::next_seq),
    };
    // Ends once the context is fitted to the model's window, in `generate`.
    let context_span = info_span!("context assembly");
    // The turn is prepared while `accepted` goes out: one waits on the database, the other on
    // the broker, and the first delta needs both.
    let preparing = prepare::in_order(env, job, gone.clone()).instrument(context_span.clone());
    let preparing = async { Ok(preparing.await) };
    let announcing = announce(&mut replies, &accepted, earlier.as_ref(), reconnected, job);
    let prepared = match tokio::try_join!(announcing, preparing) {
        Ok(((), prepared)) => prepared,
        Err(e) => {
            warn!(error = %e, "cannot publish to the broker; returning the job");
            return Settle::Requeue;
        }
    };
    // Storing the answer releases the turn's place too, in the same statement.
    let mut released = false;
    let outcome = answer(
        env,
        &mut replies,
        job,
        Prepare {
            prepared,
            context_span,
        },
        attempt,
        started,
        gone,
        earlier,
        &mut released,
    )
    .await;
    let (verdict, label) = match outcome {
        Ok(verdict) => (verdict, "answered"),
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
    if !released && (verdict == Settle::Ack || attempt >= env.final_attempt) {
        settle::release_turn(env, job).await;
    }
    verdict
}

/// What the earlier attempts of `job` streamed; `None` (start over) if the log cannot say.
async fn read_earlier(channels: &Channels, log: &LogWriter, job: &Job) -> Option<Earlier> {
    let until_deadline = Duration::from_millis((job.deadline_ms - now_ms()).max(0) as u64);
    let within = EARLIER_READ_LIMIT.min(until_deadline);
    let read = earlier::read(&channels.connection, log, job.request_id, within).await;
    match read {
        Ok(earlier) => {
            info!(
                continues = earlier.next_seq(),
                "continuing the answer the earlier attempts streamed"
            );
            Some(earlier)
        }
        Err(e) => {
            warn!(error = %e, "cannot read what the earlier attempts streamed; starting over");
            None
        }
    }
}

/// Publish a redelivered stream's `accepted`, then what earlier attempts streamed, for a stream
/// that continues them. A job that came back after a broker reconnection first lets its first
/// publish, whichever it is, wait for the reply path.
async fn announce(
    replies: &mut Replies,
    accepted: &ReplyEvent,
    earlier: Option<&Earlier>,
    reconnected: bool,
    job: &Job,
) -> Result<(), crate::reply::ReplyError> {
    if reconnected {
        replies.wait_for_path_at_first_publish(REPLY_PATH_PATIENCE.min(Duration::from_millis(
            (job.deadline_ms - now_ms()).max(0) as u64,
        )));
    }
    // A stream's reader follows one attempt (`Turn` in the ingress), and only a redelivery
    // tells it something new: a first delivery's stream starts with its first delta, which
    // saves the reply destination and the log a message each. A JSON caller waits for `done`
    // alone.
    let redelivered = matches!(accepted, ReplyEvent::Accepted { attempt, .. } if *attempt > 1);
    if job.stream && redelivered {
        replies.send(accepted).await?;
    }
    for delta in earlier.iter().flat_map(|earlier| earlier.deltas()) {
        replies.resend(&delta).await?;
    }
    Ok(())
}

/// The turn's preparation, and the span it ran in.
struct Prepare {
    prepared: Result<Readiness, DbError>,
    context_span: tracing::Span,
}

/// The turn's phases after `accepted`; any of them may end the turn early.
#[allow(clippy::too_many_arguments)]
async fn answer(
    env: &TurnEnv,
    replies: &mut Replies,
    job: &Job,
    preparation: Prepare,
    attempt: u32,
    started: Instant,
    gone: watch::Receiver<bool>,
    earlier: Option<Earlier>,
    released: &mut bool,
) -> Result<Settle, TurnError> {
    let Prepare {
        prepared,
        context_span,
    } = preparation;
    let mut prepared = match prepared {
        Ok(Readiness::Ready(prepared)) => *prepared,
        Ok(Readiness::Cancelled) => {
            info!("request cancelled before it started");
            return settle::without_answer(replies, Generation::Cancelled).await;
        }
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
        return settle::replay(replies, job, existing, queued_ms, earlier.as_ref()).await;
    }
    if !job.message.role.awaits_answer() {
        return settle::without_model_call(replies, job, queued_ms).await;
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
    let parts = std::mem::take(&mut prepared.parts);
    let toolbox = env.tools.toolbox(&prepared.assistant.tools).await;
    let steps = tools::ToolSteps::new(
        env,
        toolbox,
        call_context(job),
        (!job.ephemeral).then(|| StepLog {
            conversation_pk: prepared.conversation_pk,
            message_id: job.message.id.clone(),
            request_id: job.request_id,
        }),
        &parts.steps,
        job.deadline_ms,
    );
    let call = generate::Call {
        spec: &spec,
        parts,
        context_span,
        deadline_ms: job.deadline_ms,
        started,
        earlier,
        sampling: &job.sampling,
        tools: &job.tools,
        steps,
        stream: job.stream,
        last_delta_in_done: job.last_delta_in_done,
    };
    let generated = generate::generate(env, replies, call, gone).await?;
    let answered = settle::Answered {
        prepared: &prepared,
        spec: &spec,
        generated,
        started,
        queued_ms,
    };
    settle::answered(env, replies, job, answered, released).await
}

/// Who the assistant's tools are called for.
fn call_context(job: &Job) -> CallContext {
    CallContext {
        tenant_id: job.tenant_id,
        assistant_id: match job.assistant {
            AssistantRef::Stored { id } => id,
            // A preview has no stored tools.
            AssistantRef::Preview(_) => uuid::Uuid::nil(),
        },
        conversation_id: job.conversation_id.clone(),
        identity_id: job.identity_id,
        request_id: job.request_id,
    }
}

fn started_ms(started: Instant) -> i64 {
    now_ms() - started.elapsed().as_millis() as i64
}
