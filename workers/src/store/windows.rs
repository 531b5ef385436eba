//! The context window a turn's recent turns are read for, known before its assistant is read.
//!
//! Preparing a turn is one statement (`migrations/0012_turn_functions.sql`), which reads the
//! assistant and the turns that fit its model's window together, so the window must be guessed
//! before the model is known: a preview names its model, and a stored assistant's is the one it
//! had when this worker last answered for it. The guess is checked against the model read: a
//! smaller real window trims the turns read, a larger one (a first turn, or a model changed to a
//! bigger one) reads them again. So a stale guess costs a statement, never a wrong context.

use std::collections::HashMap;
use std::sync::Mutex;

use confab_contract::AssistantRef;
use confab_shared::ModelSpec;
use uuid::Uuid;

/// Assistants remembered at most; past it the memory starts again (each costs one more read).
const REMEMBERED: usize = 10_000;

/// Windows of the models this worker has seen, per stored assistant.
pub struct ContextWindows {
    /// The window of a model confab does not know (`CONFAB_DEFAULT_CONTEXT_TOKENS`).
    default: u32,
    seen: Mutex<HashMap<Uuid, u32>>,
}

impl ContextWindows {
    pub fn new(default: u32) -> Self {
        ContextWindows {
            default,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The window of a model setting; one that names no provider fails later, on its own.
    pub fn of(&self, model: &str) -> u32 {
        ModelSpec::parse(model)
            .map(|spec| spec.context_window(self.default))
            .unwrap_or(self.default)
    }

    /// The window a turn of `assistant` is first read for.
    pub fn guess(&self, assistant: &AssistantRef) -> u32 {
        match assistant {
            AssistantRef::Preview(preview) => self.of(&preview.model),
            AssistantRef::Stored { id } => self.lock().get(id).copied().unwrap_or(self.default),
        }
    }

    /// Remember the window of the model `assistant` has now.
    pub fn learn(&self, assistant: &AssistantRef, window: u32) {
        if let AssistantRef::Stored { id } = *assistant {
            let mut seen = self.lock();
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            seen.insert(id, window);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, u32>> {
        // A panic while holding it leaves a map of plain numbers, still good to read.
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_assistant_s_window_is_the_default_until_its_model_is_learned() {
        let windows = ContextWindows::new(8_192);
        let assistant = AssistantRef::Stored { id: Uuid::now_v7() };
        assert_eq!(windows.guess(&assistant), 8_192);
        windows.learn(&assistant, windows.of("openai/gpt-4o"));
        assert_eq!(windows.guess(&assistant), 128_000);
        let other = AssistantRef::Stored { id: Uuid::now_v7() };
        assert_eq!(windows.guess(&other), 8_192);
    }
}
