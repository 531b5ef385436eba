//! Context assembly: what the model sees for one turn, within the model's token budget.
//!
//! The budget is the model's window minus room for the answer. The new message always goes in;
//! then, in this fixed priority, each part takes what still fits: the assistant's instructions,
//! what is known about the identity (memory), knowledge passages, the running summary of turns
//! that no longer fit, and finally the newest earlier turns, newest first. Parts that do not fit
//! whole are cut (instructions, memory, summary) or left out (passages, turns); the total never
//! exceeds the budget. An earlier tool result never goes in without the assistant message whose
//! call it answers (a model refuses such a context).

use confab_contract::{Role, ToolCall};
use serde_json::Value;

use crate::knowledge::Passage;
use crate::model::ChatMessage;
use crate::tokenizer::Tokenizer;

/// Tokens kept free for the answer itself.
pub const ANSWER_TOKENS: u32 = 1_024;

/// One stored earlier turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Storage order; older turns have smaller keys.
    pub pk: i64,
    pub role: Role,
    pub content: String,
    /// An assistant turn's calls of the caller's functions.
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool result answers.
    pub tool_call_id: Option<String>,
}

impl Turn {
    fn into_message(self) -> ChatMessage {
        ChatMessage {
            role: self.role,
            content: self.content,
            tool_calls: self.tool_calls,
            tool_call_id: self.tool_call_id,
        }
    }
}

/// What the assistant knows about the identity it talks to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdentityMemory {
    pub name: Option<String>,
    pub stage: Option<String>,
    pub preferences: Value,
    pub data: Value,
    pub associations: Value,
}

impl IdentityMemory {
    /// The memory as one paragraph for the model, or `None` when nothing is known.
    pub fn render(&self) -> Option<String> {
        let mut lines = Vec::new();
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            lines.push(format!("Name: {name}"));
        }
        if let Some(stage) = self.stage.as_deref().filter(|s| !s.is_empty()) {
            lines.push(format!("Stage: {stage}"));
        }
        for (label, value) in [
            ("Preferences", &self.preferences),
            ("Data", &self.data),
            ("Associations", &self.associations),
        ] {
            if value.as_object().is_some_and(|o| !o.is_empty()) {
                lines.push(format!("{label}: {value}"));
            }
        }
        (!lines.is_empty()).then(|| format!("What you know about this user:\n{}", lines.join("\n")))
    }
}

/// Everything that may go into a turn's context.
#[derive(Debug, Clone, Default)]
pub struct Parts {
    pub instructions: String,
    pub memory: Option<IdentityMemory>,
    /// Best first.
    pub passages: Vec<Passage>,
    pub summary: String,
    /// Oldest first.
    pub turns: Vec<Turn>,
    pub message: String,
    /// The call the new message answers, when it is a function's result rather than the
    /// user's words.
    pub answers_call: Option<String>,
    /// The tool loop's steps an earlier attempt of this turn took (calls and results), which
    /// follow the message; they always go in.
    pub steps: Vec<Turn>,
}

/// The messages for the model and what went into them.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub messages: Vec<ChatMessage>,
    /// The passages that fit, best first.
    pub passages: Vec<Passage>,
    /// The oldest earlier turn that fit; turns before it are for the summary.
    pub oldest_turn_pk: Option<i64>,
    /// Prompt tokens as counted; never more than the budget.
    pub tokens: u32,
}

/// Cut `text` so that it costs at most `budget` tokens (by the model's count), ending in an
/// ellipsis.
fn truncate_to(text: &str, budget: u32, tokens: Tokenizer) -> Option<String> {
    if tokens.count(text) <= budget {
        return Some(text.to_owned());
    }
    // The ellipsis takes a token of its own, and may merge with the cut's end: try again a
    // token shorter until the whole fits.
    let mut room = budget.checked_sub(1)?;
    loop {
        let cut = tokens.prefix(text, room)?;
        if cut.is_empty() {
            return None;
        }
        let cut = format!("{cut}…");
        if tokens.count(&cut) <= budget {
            return Some(cut);
        }
        room = room.checked_sub(1)?;
    }
}

/// Cut `text` to what is left of the budget, and take its cost from it.
fn take(text: &str, left: &mut u32, tokens: Tokenizer) -> Option<String> {
    let cut = truncate_to(text, *left, tokens)?;
    *left -= tokens.count(&cut);
    Some(cut)
}

fn system(content: String) -> ChatMessage {
    ChatMessage::text(Role::System, content)
}

/// What a message costs in the prompt: its text, and its calls as the model reads them.
fn cost(content: &str, tool_calls: &[ToolCall], tokens: Tokenizer) -> u32 {
    let calls: u32 = tool_calls
        .iter()
        .map(|call| tokens.count(&call.name) + tokens.count(&call.arguments))
        .sum();
    tokens.count(content) + calls
}

fn knowledge_block(passages: &[Passage]) -> String {
    let mut block = String::from("Relevant knowledge (cite the source titles you use):");
    for passage in passages {
        block.push_str(&format!("\n\n[Source: {}]", passage.title));
        if !passage.heading.is_empty() {
            block.push_str(&format!(" {}", passage.heading));
        }
        block.push('\n');
        block.push_str(&passage.content);
    }
    block
}

/// Fit the parts into `budget` tokens, as `tokens` counts them, in priority order.
pub fn assemble(parts: Parts, budget: u32, tokens: Tokenizer) -> Assembled {
    let message = truncate_to(&parts.message, budget, tokens).unwrap_or_default();
    let steps_cost: u32 = parts
        .steps
        .iter()
        .map(|s| cost(&s.content, &s.tool_calls, tokens))
        .sum();
    let mut left = budget.saturating_sub(tokens.count(&message) + steps_cost);
    let mut head = Vec::new();
    if !parts.instructions.trim().is_empty() {
        head.extend(take(&parts.instructions, &mut left, tokens).map(system));
    }
    if let Some(memory) = parts.memory.as_ref().and_then(IdentityMemory::render) {
        head.extend(take(&memory, &mut left, tokens).map(system));
    }
    let mut passages = Vec::new();
    for passage in parts.passages {
        passages.push(passage);
        if passages_cost(&passages, tokens) > left {
            passages.pop();
        }
    }
    if !passages.is_empty() {
        left -= passages_cost(&passages, tokens);
        head.push(system(knowledge_block(&passages)));
    }
    if !parts.summary.trim().is_empty() {
        let summary = format!("Summary of the earlier conversation: {}", parts.summary);
        head.extend(take(&summary, &mut left, tokens).map(system));
    }
    let mut turns = Vec::new();
    for turn in parts.turns.into_iter().rev() {
        let cost = cost(&turn.content, &turn.tool_calls, tokens);
        if cost > left {
            break;
        }
        left -= cost;
        turns.push(turn);
    }
    // Newest first: the oldest taken are last. Tool results whose call did not fit go too.
    while turns.last().is_some_and(|t| t.role == Role::Tool) {
        turns.pop();
    }
    turns.reverse();
    let oldest_turn_pk = turns.first().map(|t| t.pk);
    let mut messages = head;
    messages.extend(turns.into_iter().map(Turn::into_message));
    messages.push(ChatMessage {
        role: if parts.answers_call.is_some() {
            Role::Tool
        } else {
            Role::User
        },
        content: message,
        tool_calls: Vec::new(),
        tool_call_id: parts.answers_call,
    });
    messages.extend(parts.steps.into_iter().map(Turn::into_message));
    Assembled {
        tokens: messages
            .iter()
            .map(|m| cost(&m.content, &m.tool_calls, tokens))
            .sum(),
        messages,
        passages,
        oldest_turn_pk,
    }
}

fn passages_cost(passages: &[Passage], tokens: Tokenizer) -> u32 {
    if passages.is_empty() {
        0
    } else {
        tokens.count(&knowledge_block(passages))
    }
}

#[cfg(test)]
mod tests {
    use confab_shared::ModelSpec;
    use confab_shared::tokens::estimate_tokens;

    use super::*;

    const ESTIMATE: Tokenizer = Tokenizer::ESTIMATE;

    fn turn(pk: i64, role: Role, content: &str) -> Turn {
        Turn {
            pk,
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    fn passage(title: &str, content: &str) -> Passage {
        Passage {
            document_id: uuid::Uuid::nil(),
            folder_id: uuid::Uuid::nil(),
            title: title.into(),
            heading: String::new(),
            content: content.into(),
            tokens: estimate_tokens(content),
            score: 0.5,
        }
    }

    fn parts() -> Parts {
        Parts {
            instructions: "Be brief.".into(),
            memory: Some(IdentityMemory {
                name: Some("Ada".into()),
                stage: Some("lead".into()),
                ..IdentityMemory::default()
            }),
            passages: vec![passage("FAQ", "Refunds take five days.")],
            summary: "The user asked about refunds.".into(),
            turns: vec![turn(1, Role::User, "hi"), turn(2, Role::Assistant, "hello")],
            message: "bye".into(),
            answers_call: None,
            steps: Vec::new(),
        }
    }

    #[test]
    fn everything_fits_in_priority_order_with_the_message_last() {
        let assembled = assemble(parts(), 10_000, ESTIMATE);
        let contents: Vec<&str> = assembled
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(contents[0], "Be brief.");
        assert!(contents[1].contains("Name: Ada") && contents[1].contains("Stage: lead"));
        assert!(contents[2].contains("[Source: FAQ]") && contents[2].contains("five days"));
        assert!(contents[3].starts_with("Summary of the earlier conversation"));
        assert_eq!(&contents[4..], ["hi", "hello", "bye"]);
        assert_eq!(assembled.oldest_turn_pk, Some(1));
        assert_eq!(assembled.passages.len(), 1);
    }

    #[test]
    fn the_budget_is_never_exceeded_and_low_priority_parts_go_first() {
        let full = assemble(parts(), 10_000, ESTIMATE).tokens;
        // Two tokens are the least that holds a (cut) message at all.
        for budget in 2..=full + 5 {
            let assembled = assemble(parts(), budget, ESTIMATE);
            assert!(
                assembled.tokens <= budget,
                "budget {budget}: {}",
                assembled.tokens
            );
        }
        // Just short of everything: the oldest turn is the first to go.
        let tight = assemble(parts(), full - 1, ESTIMATE);
        assert_eq!(tight.oldest_turn_pk, Some(2));
        assert!(
            tight
                .messages
                .iter()
                .any(|m| m.content.contains("[Source: FAQ]"))
        );
    }

    #[test]
    fn newest_turns_win_over_older_ones() {
        let mut parts = parts();
        parts.turns = (1..=50)
            .map(|pk| turn(pk, Role::User, &format!("turn number {pk} with some words")))
            .collect();
        let assembled = assemble(parts, 200, ESTIMATE);
        let last = assembled.messages.iter().rev().nth(1).unwrap();
        assert_eq!(last.content, "turn number 50 with some words");
        assert!(assembled.oldest_turn_pk.unwrap() > 1);
    }

    #[test]
    fn counted_by_the_models_tokenizer_the_budget_holds_exactly() {
        let exact = Tokenizer::for_model(&ModelSpec::OpenAi("gpt-4o".into()));
        let mut parts = parts();
        parts.instructions = "店铺早上九点开门，下午五点关门。".repeat(30);
        parts.message = "Ünïcödé wörds ✓ ".repeat(20);
        let full = assemble(parts.clone(), 100_000, exact);
        let counted: u32 = full.messages.iter().map(|m| exact.count(&m.content)).sum();
        assert_eq!(full.tokens, counted);
        for budget in [8, 20, 64, 200, full.tokens - 1] {
            let assembled = assemble(parts.clone(), budget, exact);
            assert!(
                assembled.tokens <= budget,
                "budget {budget}: {}",
                assembled.tokens
            );
        }
    }

    #[test]
    fn a_tool_result_never_goes_in_without_the_call_it_answers() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "lookup_order".into(),
            arguments: r#"{"order": "A-1001 and a long reason to make it cost"}"#.into(),
        };
        let mut parts = parts();
        parts.passages.clear();
        parts.turns = vec![
            turn(1, Role::User, "Where is my order?"),
            Turn {
                tool_calls: vec![call.clone()],
                ..turn(2, Role::Assistant, "")
            },
            Turn {
                tool_call_id: Some("call_1".into()),
                ..turn(3, Role::Tool, "shipped")
            },
        ];
        parts.message = "And when does it arrive?".into();
        let full = assemble(parts.clone(), 10_000, ESTIMATE);
        let roles: Vec<Role> = full.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles[roles.len() - 4..],
            [Role::User, Role::Assistant, Role::Tool, Role::User]
        );
        assert_eq!(full.messages[roles.len() - 3].tool_calls, [call]);
        // Room for the result but not for the call: neither goes in.
        let tight = assemble(parts, full.tokens - 10, ESTIMATE);
        assert!(tight.messages.iter().all(|m| m.role != Role::Tool));
        assert!(tight.tokens <= full.tokens - 10);
    }

    #[test]
    fn a_new_tool_result_is_sent_as_the_answer_to_its_call() {
        let mut parts = parts();
        parts.message = r#"{"status": "shipped"}"#.into();
        parts.answers_call = Some("call_9".into());
        let last = assemble(parts, 10_000, ESTIMATE).messages.pop().unwrap();
        assert_eq!(
            (last.role, last.tool_call_id.as_deref()),
            (Role::Tool, Some("call_9"))
        );
    }

    #[test]
    fn empty_memory_renders_nothing() {
        assert_eq!(IdentityMemory::default().render(), None);
    }
}
