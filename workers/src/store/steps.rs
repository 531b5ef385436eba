//! The steps of a turn's tool loop, stored as they happen: an assistant message holding the
//! server-side calls the model made (recorded before any of them is sent), then one `tool`
//! message per result (recorded as it returns). They sit after the turn's message in its
//! conversation, so later turns read them as history; a redelivered job reads them back
//! (`prepare.rs`) and goes on from the last one instead of calling a tool twice.
//!
//! Ids derive from the turn's message id, so a second write of the same step is a no-op.

use confab_contract::ToolCall;
use confab_shared::db::DbError;
use deadpool_postgres::Pool;
use uuid::Uuid;

/// Where a turn's steps go.
#[derive(Debug, Clone)]
pub struct StepLog {
    pub conversation_pk: i64,
    /// The id of the message the turn answers.
    pub message_id: String,
    pub request_id: Uuid,
}

impl StepLog {
    /// Record step `step`'s calls, before any is sent.
    pub async fn record_calls(
        &self,
        pool: &Pool,
        step: u32,
        calls: &[ToolCall],
    ) -> Result<(), DbError> {
        let id = format!("{}.step{step}", self.message_id);
        self.insert(pool, &id, "assistant", "", Some(calls), None)
            .await
    }

    /// Record the result of the call `call_id`.
    pub async fn record_result(
        &self,
        pool: &Pool,
        call_id: &str,
        content: &str,
    ) -> Result<(), DbError> {
        let id = format!("{}.result.{call_id}", self.message_id);
        self.insert(pool, &id, "tool", content, None, Some(call_id))
            .await
    }

    async fn insert(
        &self,
        pool: &Pool,
        id: &str,
        role: &str,
        content: &str,
        calls: Option<&[ToolCall]>,
        call_id: Option<&str>,
    ) -> Result<(), DbError> {
        let client = pool.get().await?;
        let calls = calls.unwrap_or_default();
        client
            .execute(
                &client.prepare_cached("INSERT INTO messages (conversation_pk, id, role, content, tokens, request_id, \
                   tool_calls, tool_call_id, metadata) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '{\"server_tool\": true}') \
                 ON CONFLICT (conversation_pk, id) DO NOTHING").await?,
                &[
                    &self.conversation_pk,
                    &id,
                    &role,
                    &content,
                    &(super::message_tokens(content, calls) as i32),
                    &self.request_id,
                    &super::tool_calls_json(calls),
                    &call_id,
                ],
            )
            .await?;
        Ok(())
    }
}
