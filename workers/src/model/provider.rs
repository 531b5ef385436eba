//! The one interface the turn pipeline calls, apart from the providers that implement it, so
//! that they and the dispatch in [`super`] depend on it and not on each other.

use confab_contract::{ClientTools, FinishReason, Role, Sampling, ToolCall, Usage};
use futures_util::stream::BoxStream;

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// An assistant message's calls of the caller's functions.
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn text(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// The model name as the provider knows it (`gpt-4o-mini`, `llama3`, `builtin`).
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// The knowledge passages in `messages`, best first, for providers that answer from them
    /// directly (the built-in one); others read them in the messages.
    pub passages: Vec<crate::knowledge::Passage>,
    /// Most tokens the answer may have.
    pub max_tokens: u32,
    /// The caller's sampling controls and stop sequences (its `max_tokens` is already in
    /// `max_tokens`).
    pub sampling: Sampling,
    /// The start of the answer, already streamed by an earlier attempt of a redelivered job:
    /// the provider produces only what follows it.
    pub continues: Option<String>,
    /// The caller's functions the model may call instead of answering.
    pub tools: ClientTools,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelEvent {
    Delta(String),
    /// Token counts as the provider reported them; sent at most once, at the end.
    Usage(Usage),
    /// Why the answer ended, when the provider says (absent: it was complete).
    Finish(FinishReason),
    /// The model's calls of the caller's functions, whole; sent at most once, at the end.
    ToolCalls(Vec<ToolCall>),
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model provider answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("model provider did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("model provider unreachable: {0}")]
    Transport(String),
    #[error("model provider sent something unexpected: {0}")]
    Protocol(String),
}

pub type ModelStream = BoxStream<'static, Result<ModelEvent, ModelError>>;

pub trait Provider: Send + Sync {
    fn stream(&self, request: ModelRequest) -> ModelStream;
}
