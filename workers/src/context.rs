//! Context assembly: what the model sees for one turn, within the model's token budget.
//!
//! Priority is fixed: the assistant's instructions and the new message always go in; the newest
//! earlier turns fill what is left, oldest dropped first. The history arrives already cut to the
//! budget by the store (see `store::prepare_turn`), so this module only orders and frames it.

use confab_contract::Role;

use crate::model::ChatMessage;
use crate::tokens::estimate_tokens;

/// Tokens kept free for the answer itself.
pub const ANSWER_TOKENS: u32 = 1_024;

/// One stored earlier turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

/// Tokens the history may use: the model's window minus the answer, the instructions and the
/// new message.
pub fn history_budget(context_window: u32, instructions: &str, message: &str) -> u32 {
    context_window
        .saturating_sub(ANSWER_TOKENS)
        .saturating_sub(estimate_tokens(instructions))
        .saturating_sub(estimate_tokens(message))
}

/// The messages sent to the model: instructions, history (oldest first), the new message.
pub fn assemble(instructions: &str, history: Vec<Turn>, message: &str) -> Vec<ChatMessage> {
    let mut messages = Vec::with_capacity(history.len() + 2);
    if !instructions.trim().is_empty() {
        messages.push(ChatMessage {
            role: Role::System,
            content: instructions.to_owned(),
        });
    }
    messages.extend(history.into_iter().map(|turn| ChatMessage {
        role: turn.role,
        content: turn.content,
    }));
    messages.push(ChatMessage {
        role: Role::User,
        content: message.to_owned(),
    });
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_come_first_and_the_new_message_last() {
        let history = vec![
            Turn {
                role: Role::User,
                content: "hi".into(),
            },
            Turn {
                role: Role::Assistant,
                content: "hello".into(),
            },
        ];
        let messages = assemble("Be brief.", history, "bye");
        let roles: Vec<_> = messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::User, Role::Assistant, Role::User]
        );
        assert_eq!(messages[3].content, "bye");
    }

    #[test]
    fn the_history_budget_leaves_room_for_instructions_message_and_answer() {
        let budget = history_budget(2_048, &"x".repeat(400), &"y".repeat(40));
        assert_eq!(budget, 2_048 - ANSWER_TOKENS - 101 - 11);
        assert_eq!(history_budget(100, "", ""), 0);
    }
}
