//! Reply events: what a worker sends to a request's reply destination, in this order:
//! `accepted`, any number of `delta`s (and `keepalive`s while the model is silent), then exactly
//! one of `done` or `error`. A first delivery says no `accepted`: its stream starts with its
//! first delta (and may end with a `done` carrying the last one, `Done::last_delta`), and a JSON
//! caller hears `done` alone. A redelivered job's stream starts again with a new `accepted`
//! whose `attempt` is higher. Its deltas restart at `seq` 0, unless it `continues` the earlier
//! attempts' answer: then it first sends their deltas again (to the reply destination, not the
//! log, which has them), with their own `seq`s, and goes on from there, so a reader that skips
//! every `seq` it already has sees one answer.

use serde::{Deserialize, Serialize};

use crate::Versioned;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u16,
    #[serde(flatten)]
    pub event: ReplyEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplyEvent {
    /// A worker took the job. `attempt` is 1 on the first delivery.
    Accepted {
        worker: String,
        attempt: u32,
        /// On a redelivery: the `seq` this attempt's own deltas start at, continuing the
        /// answer the earlier attempts streamed (read back from the reply log); absent when it
        /// starts the answer over. Added without a version bump: an older reader ignores it
        /// and ends such a stream as interrupted, as it always did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        continues: Option<u32>,
    },
    /// Model output since the previous delta (coalesced over a few milliseconds).
    Delta {
        seq: u32,
        text: String,
    },
    /// Sent while the model is silent, so a vanished caller is noticed within a second.
    Keepalive,
    /// Boxed: far larger than the other events, and every queued event would pay for its size.
    Done(Box<Done>),
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl ReplyEvent {
    /// Whether this event ends the request's stream.
    pub fn is_final(&self) -> bool {
        matches!(self, ReplyEvent::Done(_) | ReplyEvent::Error { .. })
    }

    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&EnvelopeRef {
            v: crate::VERSION,
            event: self,
        })
    }

    pub fn decode(body: &[u8]) -> Result<ReplyEvent, crate::DecodeError> {
        crate::decode::<Envelope>(body).map(|e| e.event)
    }
}

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    v: u16,
    #[serde(flatten)]
    event: &'a ReplyEvent,
}

impl Versioned for Envelope {
    fn version(&self) -> u16 {
        self.v
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// Id of the stored assistant turn.
    pub message_id: String,
    pub conversation_id: String,
    pub text: String,
    pub created_ms: i64,
    pub usage: Usage,
    /// The model that answered, as the provider named it.
    pub model: String,
    #[serde(default)]
    pub sources: Vec<Source>,
    pub timing: Timing,
    /// Why the answer ended: it was complete, or it reached its `max_tokens` (absent from an
    /// older worker, which never stopped early).
    #[serde(default)]
    pub finish_reason: FinishReason,
    /// The calls of the caller's functions the model answered with (`finish_reason`
    /// `tool_calls`); the text is then usually empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<crate::ToolCall>,
    /// A stream's last delta, which a job with `last_delta_in_done` gets here rather than as
    /// an event of its own before `done` (one publish less to the reply destination and the
    /// log): the reader relays it as that delta first. Its text is already in `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delta: Option<LastDelta>,
}

/// See [`Done::last_delta`]: what a `delta` event would have carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastDelta {
    pub seq: u32,
    pub text: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    #[default]
    Stop,
    Length,
    /// The model called the caller's functions instead of answering.
    ToolCalls,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// A knowledge passage that went into the answer's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub document_id: String,
    pub title: String,
    pub folder_id: String,
    pub score: f32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// From publish by the ingress to pick-up by the worker.
    pub queued_ms: u64,
    /// From pick-up to the model's first token.
    pub first_token_ms: u64,
    /// From pick-up to the stored answer.
    pub total_ms: u64,
}

/// Stable error codes; each dialect maps them to its own status and wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The job reached its deadline before an answer was complete.
    DeadlineExceeded,
    /// The model provider refused or failed the call.
    ModelError,
    /// The model provider did not answer in time.
    ModelTimeout,
    /// The assistant or conversation the job names no longer exists.
    NotFound,
    /// The job could not be understood (wrong contract version, malformed body).
    BadJob,
    /// The worker processing the job died after tokens were relayed; the redelivery cannot be
    /// spliced onto a stream the caller has already seen.
    Interrupted,
    /// The request was cancelled (`POST /v1/requests/{id}/cancel`, or its caller went away).
    Cancelled,
    /// Anything else that went wrong inside the worker.
    Internal,
}
