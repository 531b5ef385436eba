//! The worker's reads and writes of conversation memory in Postgres.
//!
//! A turn touches the database twice, each time in one statement (a function of
//! `migrations/0012_turn_functions.sql`, in its own transaction), so no connection is held
//! while the model generates: [`prepare`] stores the user message and reads what the context
//! needs, [`answer`] stores the assistant message and releases the turn's place in its
//! conversation's order. What both need lives here: the assistant answering, and the stored
//! answer of a turn, which preparing finds when a job is redelivered and storing finds when a
//! concurrent delivery stored it first.

pub mod answer;
pub mod prepare;
pub mod steps;
pub mod windows;

use confab_contract::ToolCall;
use confab_shared::db::DbError;
use uuid::Uuid;

/// The assistant answering a turn.
#[derive(Debug, Clone)]
pub struct Assistant {
    pub name: String,
    pub instructions: String,
    pub model: String,
    /// Folders searched when the request names none.
    pub folder_ids: Vec<Uuid>,
    /// The functions it calls itself while it answers (secrets still sealed).
    pub tools: Vec<confab_shared::tools::ServerTool>,
}

/// An answer already stored for a turn (a redelivered job whose first attempt got that far).
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    pub id: String,
    pub content: String,
    pub created_ms: i64,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub tool_calls: Vec<ToolCall>,
}

/// A message's `tool_calls` column: NULL for a message of text.
fn tool_calls_json(calls: &[ToolCall]) -> Option<serde_json::Value> {
    (!calls.is_empty()).then(|| serde_json::json!(calls))
}

/// What a message costs in a context, as stored with it: its text and its calls.
fn message_tokens(content: &str, calls: &[ToolCall]) -> u32 {
    use confab_shared::tokens::estimate_tokens;
    let calls: u32 = calls
        .iter()
        .map(|call| estimate_tokens(&call.name) + estimate_tokens(&call.arguments))
        .sum();
    estimate_tokens(content) + calls
}

impl StoredAnswer {
    /// An answer as `confab_answer_of_turn` reads it (`migrations/0012_turn_functions.sql`).
    fn from_json(value: serde_json::Value) -> Result<StoredAnswer, DbError> {
        #[derive(serde::Deserialize)]
        struct Row {
            id: String,
            content: String,
            created_ms: i64,
            model: String,
            prompt_tokens: u32,
            completion_tokens: u32,
            tool_calls: Option<serde_json::Value>,
        }
        let row: Row = serde_json::from_value(value)?;
        Ok(StoredAnswer {
            id: row.id,
            content: row.content,
            created_ms: row.created_ms,
            model: row.model,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            tool_calls: ToolCall::list_from_column(row.tool_calls),
        })
    }
}
