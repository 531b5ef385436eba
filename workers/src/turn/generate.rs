//! Calling the model for a turn and relaying its answer as it comes.
//!
//! The caller sees the first words as soon as the model has them; later deltas are merged over
//! the coalescing window, so a fast model does not cost one publish per token; while the model
//! is silent, keepalives find out whether the caller is still there; and generation stops as
//! soon as the caller is gone or the deadline passes, keeping what was said so far. A call that
//! continues what earlier attempts streamed asks the model for the rest only, and numbers its
//! deltas on from theirs. When the model calls the assistant's own tools, their round runs
//! (`tools.rs`, which records it) and the model is called again with the results, up to the
//! step limit; the caller sees the text of every call as one answer. Nothing here touches the
//! database itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_contract::{
    ClientTools, FinishReason, LastDelta, ReplyEvent, Sampling, Source, ToolCall, Usage, now_ms,
};
use confab_shared::ModelSpec;
use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{Instrument, info_span};

use super::earlier::Earlier;
use super::env::TurnEnv;
use super::tools::{ToolSteps, unanswered};
use crate::context::{self, Parts};
use crate::model::{ModelError, ModelEvent, ModelRequest, Provider};
use crate::reply::{Replies, ReplyError};
use crate::tokenizer::Tokenizer;

/// While the model is silent, a keepalive this often tells a vanished caller apart.
const KEEPALIVE: Duration = Duration::from_millis(400);

/// Deltas larger than this are published without waiting for the coalescing window.
const MAX_PENDING_BYTES: usize = 8 * 1024;

/// How a generation ended.
pub(super) enum Generation {
    Complete,
    Failed(ModelError),
    /// Somebody cancelled the request.
    Cancelled,
    /// Its caller left (and did not come back within the resume grace).
    CallerGone,
    DeadlineExceeded,
    /// A round of tool calls could not be recorded: the job goes back to the queue.
    StoreFailed(confab_shared::db::DbError),
}

/// Why a generation whose "gone" signal rose ended.
fn gone_ending(replies: &Replies) -> Generation {
    if replies.cancelled() {
        Generation::Cancelled
    } else {
        Generation::CallerGone
    }
}

/// The model's answer to a turn, as far as it got.
pub(super) struct Generated {
    pub text: String,
    pub ending: Generation,
    /// As the provider reported it, else estimated.
    pub usage: Usage,
    pub first_token_ms: Option<u64>,
    /// The knowledge the model was shown, cited with the answer.
    pub sources: Vec<Source>,
    /// The oldest earlier turn the context held; turns before it are for the summary.
    pub oldest_turn_pk: Option<i64>,
    /// Complete, cut at `max_tokens`, or ended with calls of the caller's functions.
    pub finish_reason: FinishReason,
    pub tool_calls: Vec<ToolCall>,
    /// The answer's last delta, not yet published: `done` carries it (`Call::last_delta_in_done`).
    pub last_delta: Option<LastDelta>,
}

/// One model call of a turn.
pub(super) struct Call<'a> {
    pub spec: &'a ModelSpec,
    pub parts: Parts,
    /// The turn's `context assembly` span, which ends once the context is fitted.
    pub context_span: tracing::Span,
    pub deadline_ms: i64,
    pub started: Instant,
    /// What earlier attempts of a redelivered stream said, to be continued.
    pub earlier: Option<Earlier>,
    /// How the caller asked the answer to be sampled.
    pub sampling: &'a Sampling,
    /// The caller's functions the model may call.
    pub tools: &'a ClientTools,
    /// The assistant's own tools, and the rounds of them taken.
    pub steps: ToolSteps<'a>,
    /// Whether the caller relays the answer as it comes (a stream) or waits for all of it.
    pub stream: bool,
    /// A stream's caller takes the last delta of a complete answer from `done` (the job's
    /// `last_delta_in_done`): it is kept for `done` rather than published.
    pub last_delta_in_done: bool,
}

/// Fit the turn's context into the model's window, call the model and relay its answer until it
/// finishes, fails, the caller goes or the deadline passes. The context is fitted in the call's
/// `context assembly` span, which then ends; the model's part is the `model call` span.
pub(super) async fn generate(
    env: &TurnEnv,
    replies: &mut Replies,
    call: Call<'_>,
    gone: watch::Receiver<bool>,
) -> Result<Generated, ReplyError> {
    let Call {
        spec,
        parts,
        context_span,
        deadline_ms,
        started,
        earlier,
        sampling,
        tools,
        steps,
        stream: streamed,
        last_delta_in_done,
    } = call;
    // The answer's share of the window: what the caller allows it, else the default.
    let answer_tokens = sampling.max_tokens.unwrap_or(context::ANSWER_TOKENS);
    let budget = spec
        .context_window(env.default_context_window)
        .saturating_sub(answer_tokens);
    let tokenizer = Tokenizer::for_model(spec);
    let pending = unanswered(&parts.steps);
    let assembled = context_span.in_scope(|| context::assemble(parts, budget, tokenizer));
    drop(context_span);
    let sources: Vec<Source> = assembled.passages.iter().map(|p| p.source()).collect();
    let prompt_estimate = assembled.tokens;
    let oldest_turn_pk = assembled.oldest_turn_pk;
    let mut stream = Streamed {
        relays: streamed,
        keeps_last_delta: streamed && last_delta_in_done,
        ..Streamed::default()
    };
    if let Some(earlier) = earlier {
        stream.text = earlier.text();
        stream.seq = earlier.next_seq();
    }
    let mut request = ModelRequest {
        model: spec.model_name().to_owned(),
        messages: assembled.messages,
        passages: assembled.passages,
        // An answer continued was partly written: its start, now in the prompt, was part of
        // the answer's share of the window, so the rest gets what is left of it.
        max_tokens: match stream.text.as_str() {
            "" => answer_tokens,
            so_far => answer_tokens.saturating_sub(tokenizer.count(so_far)).max(1),
        },
        sampling: sampling.clone(),
        continues: (!stream.text.is_empty()).then(|| stream.text.clone()),
        tools: tools.clone(),
    };
    let mut calls = Calls {
        env,
        spec,
        client_tools: tools,
        steps,
        deadline_ms,
        gone,
        prompt_tokens: prompt_estimate,
    };
    let ending = stream
        .call_model(replies, &mut request, &mut calls, pending)
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
    let last_delta = stream.last_delta(&ending);
    Ok(Generated {
        text: stream.text,
        ending,
        usage,
        first_token_ms,
        sources,
        oldest_turn_pk,
        finish_reason: stream.finish_reason,
        tool_calls: stream.tool_calls,
        last_delta,
    })
}

/// What the model calls of one generation share.
struct Calls<'e> {
    env: &'e TurnEnv,
    spec: &'e ModelSpec,
    client_tools: &'e ClientTools,
    steps: ToolSteps<'e>,
    deadline_ms: i64,
    gone: watch::Receiver<bool>,
    prompt_tokens: u32,
}

/// The model's output as relayed so far.
#[derive(Default)]
struct Streamed {
    text: String,
    pending: String,
    /// The caller reads the answer as it comes. Otherwise it waits for `done`, which carries the
    /// whole answer and its time to first token, and no delta is published.
    relays: bool,
    /// What is pending when the model completes stays for `done` (see `Call`).
    keeps_last_delta: bool,
    seq: u32,
    pieces: u32,
    first_token: Option<Instant>,
    usage: Option<Usage>,
    finish_reason: FinishReason,
    tool_calls: Vec<ToolCall>,
}

impl Streamed {
    /// Call the model, and again after each round of the assistant's tools it calls, until it
    /// answers, calls only the caller's functions, or stops. `pending` are calls an earlier
    /// attempt recorded but did not finish: they are answered first.
    async fn call_model(
        &mut self,
        replies: &mut Replies,
        request: &mut ModelRequest,
        calls: &mut Calls<'_>,
        pending: Vec<ToolCall>,
    ) -> Result<Generation, ReplyError> {
        if !pending.is_empty() {
            match calls.steps.answer(&pending).await {
                Ok(results) => request.messages.extend(results),
                Err(e) => return Ok(Generation::StoreFailed(e)),
            }
        }
        loop {
            request.tools = calls.steps.offered(calls.client_tools);
            let model_call = info_span!(
                "model call",
                model = %calls.spec.model_name(),
                purpose = "answer",
                prompt_tokens = calls.prompt_tokens,
            );
            let ending = self
                .relay(calls, replies, request.clone())
                .instrument(model_call)
                .await?;
            let (ours, theirs): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tool_calls)
                .into_iter()
                .partition(|call| calls.steps.owns(call));
            self.tool_calls = theirs;
            if !matches!(ending, Generation::Complete) || ours.is_empty() {
                return Ok(ending);
            }
            // The tools run, and the model is called again, after the caller saw all it said.
            self.flush(replies).await?;
            let mut gone = calls.gone.clone();
            let round = tokio::select! {
                round = calls.steps.round(ours) => round,
                _ = gone.wait_for(|gone| *gone) => return Ok(gone_ending(replies)),
            };
            match round {
                Ok(messages) => request.messages.extend(messages),
                Err(e) => return Ok(Generation::StoreFailed(e)),
            }
            // The caller's functions called in the same round go back to the caller now.
            if !self.tool_calls.is_empty() {
                return Ok(Generation::Complete);
            }
            self.finish_reason = FinishReason::Stop;
            request.continues = None;
        }
    }

    /// The delta still pending once the answer is complete, for `done`. An answer cut short
    /// has none: what it said is in `text`, stored as interrupted.
    fn last_delta(&mut self, ending: &Generation) -> Option<LastDelta> {
        if !matches!(ending, Generation::Complete) || self.pending.is_empty() {
            return None;
        }
        let last = LastDelta {
            seq: self.seq,
            text: std::mem::take(&mut self.pending),
        };
        self.seq += 1;
        Some(last)
    }

    async fn flush(&mut self, replies: &mut Replies) -> Result<(), ReplyError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if !self.relays {
            // Already in `text`, which the stored answer and `done` carry.
            self.pending.clear();
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
        calls: &Calls<'_>,
        replies: &mut Replies,
        request: ModelRequest,
    ) -> Result<Generation, ReplyError> {
        let (env, deadline_ms) = (calls.env, calls.deadline_ms);
        let mut gone = calls.gone.clone();
        let provider: Arc<dyn Provider> = env.models.provider(calls.spec);
        let mut model = provider.stream(request);
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis((deadline_ms - now_ms()).max(0) as u64);
        let mut flush_at: Option<tokio::time::Instant> = None;
        // Not `interval`, whose first tick is due at once: tokio rounds a due time up to its
        // next millisecond tick, so awaiting it delayed every first token by up to 1 ms.
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            tokio::select! {
                biased;
                _ = async { gone.wait_for(|gone| *gone).await.is_ok() } => return Ok(gone_ending(replies)),
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
                    // A tool loop calls the model more than once: the turn used them all.
                    Some(Ok(ModelEvent::Usage(usage))) => {
                        self.usage = Some(match self.usage {
                            Some(so_far) => Usage {
                                prompt_tokens: so_far.prompt_tokens + usage.prompt_tokens,
                                completion_tokens: so_far.completion_tokens
                                    + usage.completion_tokens,
                            },
                            None => usage,
                        });
                    }
                    Some(Ok(ModelEvent::Finish(reason))) => self.finish_reason = reason,
                    Some(Ok(ModelEvent::ToolCalls(calls))) => {
                        self.tool_calls = calls;
                        self.finish_reason = FinishReason::ToolCalls;
                    }
                    Some(Err(error)) => {
                        self.flush(replies).await?;
                        return Ok(Generation::Failed(error));
                    }
                    None => {
                        if !self.keeps_last_delta {
                            self.flush(replies).await?;
                        }
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
