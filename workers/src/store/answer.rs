//! The second of a turn's two statements: store the assistant's answer once the model is done,
//! complete or interrupted, and release the turn's place in its conversation's order, in one
//! call of `confab_store_answer` (`migrations/0012_turn_functions.sql`). A turn has one answer,
//! so a concurrent redelivery that stored its answer first wins and its answer is the one
//! returned.

use confab_shared::db::DbError;
use deadpool_postgres::Pool;
use uuid::Uuid;

use super::StoredAnswer;

/// An assistant message to store.
#[derive(Debug)]
pub struct NewAnswer<'a> {
    pub tenant_id: Uuid,
    /// The conversation's public id, which names the turn's place in its order.
    pub conversation_id: &'a str,
    pub conversation_pk: i64,
    pub answers: &'a str,
    pub content: &'a str,
    pub interrupted: bool,
    pub model: &'a str,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub first_token_ms: Option<u64>,
    pub total_ms: u64,
    pub request_id: Uuid,
    /// The knowledge the answer drew on, kept with it in the history.
    pub sources: &'a [confab_contract::Source],
    /// The caller's functions the model called instead of (or besides) answering.
    pub tool_calls: &'a [confab_contract::ToolCall],
}

/// The answer as [`store_answer`] would return it, for an ephemeral turn that keeps nothing.
pub fn unstored_answer(answer: &NewAnswer<'_>) -> StoredAnswer {
    StoredAnswer {
        id: format!("msg_{}", Uuid::now_v7().simple()),
        content: answer.content.to_owned(),
        created_ms: confab_contract::now_ms(),
        model: answer.model.to_owned(),
        prompt_tokens: answer.prompt_tokens,
        completion_tokens: answer.completion_tokens,
        tool_calls: answer.tool_calls.to_vec(),
    }
}

/// Store the assistant's answer to a turn and release the turn's place. If an answer to that
/// turn is already stored (a concurrent redelivery won the race), that one is returned instead:
/// a turn has one answer.
pub async fn store_answer(pool: &Pool, answer: &NewAnswer<'_>) -> Result<StoredAnswer, DbError> {
    let client = pool.get().await?;
    let id = format!("msg_{}", Uuid::now_v7().simple());
    let metadata = if answer.sources.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({ "sources": answer.sources })
    };
    let status = if answer.interrupted {
        "interrupted"
    } else {
        "complete"
    };
    let row = client
        .query_one(
            &client
                .prepare_cached(
                    "SELECT * FROM confab_store_answer($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                     $11, $12, $13, $14, $15, $16)",
                )
                .await?,
            &[
                &answer.tenant_id,
                &answer.conversation_id,
                &answer.request_id,
                &answer.conversation_pk,
                &id,
                &answer.answers,
                &answer.content,
                &(answer
                    .completion_tokens
                    .max(super::message_tokens(answer.content, answer.tool_calls))
                    as i32),
                &status,
                &answer.model,
                &(answer.prompt_tokens as i32),
                &(answer.completion_tokens as i32),
                &answer.first_token_ms.map(|ms| ms as i32),
                &(answer.total_ms as i32),
                &metadata,
                &super::tool_calls_json(answer.tool_calls),
            ],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        let existing = row
            .get::<_, Option<serde_json::Value>>(2)
            .ok_or(DbError::NotFound("answer of the turn"))?;
        return StoredAnswer::from_json(existing);
    }
    Ok(StoredAnswer {
        id,
        content: answer.content.to_owned(),
        created_ms: row.get(1),
        model: answer.model.to_owned(),
        prompt_tokens: answer.prompt_tokens,
        completion_tokens: answer.completion_tokens,
        tool_calls: answer.tool_calls.to_vec(),
    })
}
