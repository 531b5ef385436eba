//! Ending a turn: store its answer, publish its last event, and tell the broker what to do with
//! the job.
//!
//! `done` goes out only once the answer is stored, and the job is acked only after that, so a
//! turn reported done is always in the history and a worker dying before that leaves the job to
//! be delivered again. A redelivered job whose answer was stored replays it instead of calling
//! the model again. An answer cut short (caller gone, deadline, model failure) is kept as
//! interrupted, so the history shows what the user saw.

use std::time::Instant;

use confab_contract::{Done, ErrorCode, FinishReason, Job, ReplyEvent, Timing, Usage};
use confab_shared::ModelSpec;
use confab_shared::db::DbError;
use tracing::{Instrument, info, info_span, warn};

use super::earlier::Earlier;
use super::env::TurnEnv;
use super::generate::{Generated, Generation};
use super::retry;
use crate::model::ModelError;
use crate::reply::{Delivered, Replies, ReplyError};
use crate::store::StoredAnswer;
use crate::store::answer::{NewAnswer, store_answer, unstored_answer};
use crate::store::prepare::PreparedTurn;
use crate::{order, summary};

/// What to tell the broker about the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with (answered, failed for good, or the caller is gone).
    Ack,
    /// Could not be worked on now; return it so this or another worker tries again (and the
    /// broker dead-letters it past the delivery limit).
    Requeue,
}

/// Why a turn could not be finished here: the job goes back to the queue.
#[derive(Debug, thiserror::Error)]
pub(super) enum TurnError {
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error(transparent)]
    Store(DbError),
}

pub(super) fn deadline_error() -> ReplyEvent {
    ReplyEvent::Error {
        code: ErrorCode::DeadlineExceeded,
        message: "the request reached its deadline before the answer was complete".into(),
    }
}

/// Let the conversation's next turn go ahead. Best effort: a row left behind stops holding
/// anything up at the job's deadline.
pub(super) async fn release_turn(env: &TurnEnv, job: &Job) {
    if let Err(e) = order::release(&env.pool, job).await {
        warn!(error = %e, "cannot release the turn; later turns wait until its deadline");
    }
}

/// An earlier attempt stored the turn's answer: publish it again rather than generate another.
/// A stream continuing what that attempt streamed gets the rest of the answer as its next delta.
pub(super) async fn replay(
    replies: &mut Replies,
    job: &Job,
    existing: &StoredAnswer,
    queued_ms: u64,
    earlier: Option<&Earlier>,
) -> Result<Settle, TurnError> {
    if let Some(earlier) = earlier
        && let Some(rest) = existing.content.strip_prefix(earlier.text().as_str())
        && !rest.is_empty()
    {
        let delta = ReplyEvent::Delta {
            seq: earlier.next_seq(),
            text: rest.to_owned(),
        };
        replies.send(&delta).await?;
    }
    let timing = Timing {
        queued_ms,
        ..Timing::default()
    };
    replies.finish(&done_event(job, existing, timing)).await?;
    Ok(Settle::Ack)
}

/// System and assistant messages join the conversation without a model call: their turn is done
/// once the message is stored.
pub(super) async fn without_model_call(
    replies: &mut Replies,
    job: &Job,
    queued_ms: u64,
) -> Result<Settle, TurnError> {
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
        finish_reason: FinishReason::Stop,
        tool_calls: Vec::new(),
        last_delta: None,
    }));
    replies.finish(&done).await?;
    Ok(Settle::Ack)
}

/// What a turn the model answered has to settle.
pub(super) struct Answered<'a> {
    pub prepared: &'a PreparedTurn,
    pub spec: &'a ModelSpec,
    pub generated: Generated,
    pub started: Instant,
    pub queued_ms: u64,
}

/// Store what the model said (as interrupted if it was cut short), which releases the turn's
/// place (then `released` is set), then publish `done` or the reason it stopped.
pub(super) async fn answered(
    env: &TurnEnv,
    replies: &mut Replies,
    job: &Job,
    answered: Answered<'_>,
    released: &mut bool,
) -> Result<Settle, TurnError> {
    let Answered {
        prepared,
        spec,
        generated,
        started,
        queued_ms,
    } = answered;
    let Generated {
        text,
        ending,
        usage,
        first_token_ms,
        sources,
        oldest_turn_pk,
        finish_reason,
        tool_calls,
        last_delta,
    } = generated;
    if let Generation::StoreFailed(e) = ending {
        return Err(TurnError::Store(e));
    }
    let summarise_before = oldest_turn_pk.unwrap_or(prepared.message_pk);
    let interrupted = !matches!(ending, Generation::Complete);
    // A turn cut before its first word (the caller left, the deadline passed) still gets its
    // interrupted record, so the history tells why it has no answer; a model that failed
    // before saying anything has nothing to record.
    if matches!(ending, Generation::Failed(_)) && text.is_empty() && tool_calls.is_empty() {
        return without_answer(replies, ending).await;
    }
    let new_answer = NewAnswer {
        tenant_id: job.tenant_id,
        conversation_id: &job.conversation_id,
        conversation_pk: prepared.conversation_pk,
        answers: &job.message.id,
        content: &text,
        interrupted,
        model: spec.model_name(),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        first_token_ms,
        total_ms: started.elapsed().as_millis() as u64,
        request_id: job.request_id,
        sources: &sources,
        tool_calls: &tool_calls,
    };
    let stored = if job.ephemeral {
        unstored_answer(&new_answer)
    } else {
        let stored =
            retry::until_deadline(job.deadline_ms, || store_answer(&env.pool, &new_answer))
                .await
                .map_err(TurnError::Store)?;
        *released = true;
        stored
    };
    if interrupted {
        info!(chars = text.len(), "partial answer stored as interrupted");
        return without_answer(replies, ending).await;
    }
    let timing = Timing {
        queued_ms,
        first_token_ms: first_token_ms.unwrap_or_default(),
        total_ms: started.elapsed().as_millis() as u64,
    };
    let mut done = done_event(job, &stored, timing);
    if let ReplyEvent::Done(done) = &mut done {
        done.sources = sources;
        done.finish_reason = finish_reason;
        done.last_delta = last_delta;
    }
    let delivered = replies.finish(&done).await?;
    // Turns that no longer fit are folded into the summary, off the reply's path.
    if !job.ephemeral
        && prepared
            .unsummarised_from_pk
            .is_some_and(|first| first < summarise_before)
    {
        // In the turn's trace, as the last of its work, though the reply is already out.
        let refreshing = summary::refresh(
            env.pool.clone(),
            env.models.clone(),
            spec.clone(),
            prepared.conversation_pk,
            summarise_before,
        );
        tokio::spawn(refreshing.instrument(info_span!("summary")));
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

/// Tell the caller why there is no (complete) answer.
pub(super) async fn without_answer(
    replies: &mut Replies,
    ending: Generation,
) -> Result<Settle, TurnError> {
    let event = match ending {
        // A cancelled request's caller may still be listening (an explicit cancel).
        Generation::Complete | Generation::Cancelled => {
            info!("request cancelled; generation stopped");
            ReplyEvent::Error {
                code: ErrorCode::Cancelled,
                message: "The request was cancelled".into(),
            }
        }
        // Usually nobody reads this (the publish comes back unroutable); but a caller whose
        // reply path was lost with a broker node and opened again gets it, and must hear that
        // its answer was cut short, not that it cancelled.
        Generation::CallerGone => {
            info!("caller gone; generation stopped");
            ReplyEvent::Error {
                code: ErrorCode::Interrupted,
                message: "the reply path to this request was lost; the answer was stopped".into(),
            }
        }
        Generation::DeadlineExceeded => deadline_error(),
        Generation::StoreFailed(error) => {
            warn!(%error, "a round of tool calls could not be recorded");
            ReplyEvent::Error {
                code: ErrorCode::Internal,
                message: "the conversation store is unavailable".into(),
            }
        }
        Generation::Failed(error) => {
            warn!(%error, "model call failed");
            let (code, kind) = match error {
                ModelError::Timeout(_) => (ErrorCode::ModelTimeout, "timeout"),
                _ => (ErrorCode::ModelError, "error"),
            };
            metrics::counter!("confab_model_errors_total", "kind" => kind).increment(1);
            ReplyEvent::Error {
                code,
                message: error.to_string(),
            }
        }
    };
    replies.finish(&event).await?;
    Ok(Settle::Ack)
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
        finish_reason: if answer.tool_calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        },
        tool_calls: answer.tool_calls.clone(),
        last_delta: None,
    }))
}
