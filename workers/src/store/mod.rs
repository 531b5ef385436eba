//! The worker's reads and writes of conversation memory in Postgres.
//!
//! A turn touches the database twice, each time in one short transaction, so no connection is
//! held while the model generates: [`prepare`] stores the user message and reads what the
//! context needs, [`answer`] stores the assistant message. What both need lives here: the
//! assistant answering, and the stored answer of a turn, which preparing finds when a job is
//! redelivered and storing finds when a concurrent delivery stored it first.

pub mod answer;
pub mod prepare;
pub mod steps;

use confab_contract::{AssistantRef, Job, ToolCall};
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

/// The answer stored for a turn; read by [`stored_answer`].
const ANSWER_OF_TURN: &str = "SELECT id, content, (extract(epoch FROM created_at) * 1000)::int8, \
       coalesce(model, ''), coalesce(prompt_tokens, 0), coalesce(completion_tokens, 0), \
       tool_calls \
     FROM messages WHERE conversation_pk = $1 AND answers = $2";

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

fn stored_answer(row: &tokio_postgres::Row) -> StoredAnswer {
    StoredAnswer {
        id: row.get(0),
        content: row.get(1),
        created_ms: row.get(2),
        model: row.get(3),
        prompt_tokens: row.get::<_, i32>(4) as u32,
        completion_tokens: row.get::<_, i32>(5) as u32,
        tool_calls: ToolCall::list_from_column(row.get(6)),
    }
}

/// Who answers the job: a preview carries its assistant; a stored one is read with the tenant,
/// so a job cannot name another tenant's assistant.
async fn load_assistant(
    tx: &deadpool_postgres::Transaction<'_>,
    job: &Job,
) -> Result<Assistant, DbError> {
    match &job.assistant {
        AssistantRef::Preview(preview) => Ok(Assistant {
            name: preview.name.clone(),
            instructions: preview.instructions.clone(),
            model: preview.model.clone(),
            folder_ids: Vec::new(),
            tools: Vec::new(),
        }),
        AssistantRef::Stored { id } => {
            let row = tx
                .query_opt(
                    &tx.prepare_cached(
                        "SELECT name, instructions, model, folder_ids, tools FROM assistants \
                     WHERE id = $1 AND tenant_id = $2",
                    )
                    .await?,
                    &[id, &job.tenant_id],
                )
                .await?
                .ok_or(DbError::NotFound("assistant"))?;
            Ok(Assistant {
                name: row.get(0),
                instructions: row.get(1),
                model: row.get(2),
                folder_ids: row.get(3),
                // Only the ingress writes it, checked; a value that does not read is no tools.
                tools: serde_json::from_value(row.get(4)).unwrap_or_default(),
            })
        }
    }
}
