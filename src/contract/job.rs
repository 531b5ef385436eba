//! The chat job: one per request, published by the ingress to the work queue.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Versioned;
use crate::tools::{ClientTools, ToolCall};

/// Everything a worker needs to answer one turn. The ingress has already authenticated the
/// caller and resolved every name to an id; the worker trusts these ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub v: u16,
    /// Correlates every log line, reply event and cancel of this request.
    pub request_id: Uuid,
    pub tenant_id: Uuid,
    pub assistant: AssistantRef,
    /// Public conversation id (client-chosen in some dialects, minted by the ingress otherwise).
    pub conversation_id: String,
    pub identity_id: Option<Uuid>,
    pub channel_id: Option<Uuid>,
    pub message: Message,
    /// Earlier turns the caller supplies itself (OpenAI-style requests that carry the whole
    /// history). Stored before `message`, once each (their ids are idempotency keys too), so the
    /// context is assembled from storage as for every other turn.
    #[serde(default)]
    pub history: Vec<Message>,
    /// Caller metadata, stored with the user turn.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Knowledge folders to search for this turn.
    #[serde(default)]
    pub folder_ids: Vec<Uuid>,
    /// Whether the caller relays tokens as they come (SSE) or waits for the whole answer.
    pub stream: bool,
    /// Answer without keeping anything: the turn's context is assembled as always, but nothing
    /// of it (conversation, messages, answer) is stored (OpenAI's `store: false`).
    #[serde(default)]
    pub ephemeral: bool,
    /// How the caller asked the answer to be sampled; absent, the provider's defaults.
    #[serde(default, skip_serializing_if = "Sampling::is_default")]
    pub sampling: Sampling,
    /// Functions the caller runs itself, which the model may call instead of answering.
    #[serde(default, skip_serializing_if = "ClientTools::is_empty")]
    pub tools: ClientTools,
    /// When the ingress stops waiting (ms since epoch); a worker drops a job past it.
    pub deadline_ms: i64,
    /// When the ingress published the job (ms since epoch), for queue-time figures.
    pub published_ms: i64,
    /// Routing key (a queue name on the default exchange) for this request's reply events.
    pub reply_to: String,
    /// The reader of this request's events takes a stream's last delta from `done`
    /// (`Done::last_delta`), so the worker need not publish it on its own. Added without a
    /// version bump: an older ingress leaves it false, and its streams get every delta as
    /// before; an older worker ignores it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_delta_in_done: bool,
    /// How a resumable stream is rendered (opaque to the worker), which the worker logs with
    /// its first logged event under [`crate::HEADER_STREAM_FORMAT`]; absent for a turn whose
    /// events are not logged. Added without a version bump: an older worker ignores it, and its
    /// streams work but cannot be read again through `/v1/requests/{id}/events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_format: Option<serde_json::Value>,
}

impl Versioned for Job {
    fn version(&self) -> u16 {
        self.v
    }
}

/// How the caller asked a turn's answer to be sampled and shaped (the OpenAI dialect's
/// parameters). Every field absent leaves it to the provider. The built-in model is
/// deterministic: it honours `max_tokens` and `stop`, the sampling controls change nothing in
/// what it says, and it takes no `response_format` (the ingress refuses that). Added
/// without a version bump: an older worker ignores it, as it ignored the parameters before.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Most tokens the answer may have; the answer's share of the context window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The answer ends before the first of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// The answer's form, as OpenAI's `response_format` says it (`json_object`, or
    /// `json_schema` with the schema), for a provider that takes it; absent, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<serde_json::Value>,
}

impl Sampling {
    pub fn is_default(&self) -> bool {
        *self == Sampling::default()
    }
}

/// Which assistant answers: a stored one, or an unsaved configuration (preview mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AssistantRef {
    Stored { id: Uuid },
    Preview(PreviewAssistant),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewAssistant {
    pub name: String,
    pub instructions: String,
    /// `builtin` or `openai/<model-name>`.
    pub model: String,
}

/// One conversation turn as the caller sent it. `id` is the idempotency key of the turn within
/// its conversation: the same id twice is stored once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub role: Role,
    pub content: String,
    pub created_ms: i64,
    /// An assistant message's calls of the caller's functions (its content may then be empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message's answer is to this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message of text only.
    pub fn text(id: String, role: Role, content: String, created_ms: i64) -> Message {
        Message {
            id,
            role,
            content,
            created_ms,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    System,
    /// The result of a call of the caller's function, answering the call `tool_call_id` names.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Tool => "tool",
        }
    }

    /// Whether a new message of this role asks the model for an answer: the user's, and a
    /// function's result, which the model goes on from. System and assistant messages only join
    /// the conversation.
    pub fn awaits_answer(self) -> bool {
        matches!(self, Role::User | Role::Tool)
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "system" => Some(Role::System),
            "tool" => Some(Role::Tool),
            _ => None,
        }
    }
}

/// Broadcast on the cancel exchange about a request's caller: it asked to stop, it went away
/// (the worker keeps answering for the resume grace, then stops unless someone listens), or a
/// reconnected client listens again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancel {
    pub v: u16,
    pub request_id: Uuid,
    #[serde(default)]
    pub kind: CancelKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelKind {
    /// Stop at once (an explicit cancel, a deadline).
    #[default]
    Stop,
    /// The caller's connection went away; it may come back.
    Left,
    /// A client reads the request's events again (sent while it does).
    Listening,
}

impl Versioned for Cancel {
    fn version(&self) -> u16 {
        self.v
    }
}
