//! Model providers: the one interface the turn pipeline calls, its implementations, and the
//! choice between them.
//!
//! A provider turns a list of chat messages into a stream of text deltas followed by usage. The
//! assistant's `model` setting picks the provider: `builtin` or `openai/<model-name>`. The
//! interface lives in `provider.rs`, so the providers and [`Models`] depend on it rather than on
//! each other.

mod builtin;
mod openai;
mod provider;
mod sse;
mod tool_calls;

use std::sync::Arc;

use confab_shared::ModelSpec;

pub use builtin::Builtin;
pub use openai::OpenAi;
pub use provider::{ChatMessage, ModelError, ModelEvent, ModelRequest, ModelStream, Provider};

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
