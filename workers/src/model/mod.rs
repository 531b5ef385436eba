//! Model providers: the one interface the turn pipeline calls, and its implementations.
//!
//! A provider turns a list of chat messages into a stream of text deltas followed by usage. The
//! assistant's `model` setting picks the provider: `builtin` or `openai/<model-name>`.

mod builtin;
mod openai;
mod sse;

use std::sync::Arc;

use confab_shared::ModelSpec;

use confab_contract::{Role, Usage};
use futures_util::stream::BoxStream;

pub use builtin::Builtin;
pub use openai::OpenAi;

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelEvent {
    Delta(String),
    /// Token counts as the provider reported them; sent at most once, at the end.
    Usage(Usage),
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

/// The providers of one worker process.
#[derive(Clone)]
pub struct Models {
    builtin: Arc<Builtin>,
    openai: Arc<OpenAi>,
}

impl Models {
    pub fn new(builtin: Builtin, openai: OpenAi) -> Self {
        Self {
            builtin: Arc::new(builtin),
            openai: Arc::new(openai),
        }
    }

    pub fn provider(&self, spec: &ModelSpec) -> Arc<dyn Provider> {
        match spec {
            ModelSpec::Builtin => self.builtin.clone(),
            ModelSpec::OpenAi(_) => self.openai.clone(),
        }
    }
}
