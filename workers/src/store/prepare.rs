//! The first of a turn's two transactions: store the job's message (once, however often the job
//! is delivered), check the turn's place in its conversation's order, and read everything the
//! context may hold. It commits before the model is called, so no connection is held while the
//! model generates, and a redelivered job finds its message stored instead of storing it twice.

use confab_contract::{AssistantRef, Job, Role};
use confab_shared::ModelSpec;
use confab_shared::db::DbError;
use deadpool_postgres::Pool;
use tracing::Instrument;
use uuid::Uuid;

use super::{ANSWER_OF_TURN, Assistant, StoredAnswer, load_assistant, stored_answer};
use crate::context::{IdentityMemory, Parts, Turn};
use crate::{knowledge, order};

/// A turn whose message is stored, with what answering it needs.
#[derive(Debug)]
pub struct PreparedTurn {
    pub conversation_pk: i64,
    pub assistant: Assistant,
    /// Everything the context may hold (empty for a turn that needs no model call).
    pub parts: Parts,
    /// The new message's storage key.
    pub message_pk: i64,
    /// The oldest turn the summary does not cover yet, if any.
    pub unsummarised_from_pk: Option<i64>,
    pub existing_answer: Option<StoredAnswer>,
}

/// Insert a message unless one with its id is already in the conversation; its key either way.
/// (On a conflict the no-op update is what makes `RETURNING` answer; it only happens when a
/// job is delivered again.)
async fn insert_message(
    tx: &deadpool_postgres::Transaction<'_>,
    conversation_pk: i64,
    message: &confab_contract::Message,
    metadata: &serde_json::Value,
    job: &Job,
) -> Result<i64, DbError> {
    let tool_calls = super::tool_calls_json(&message.tool_calls);
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "INSERT INTO messages \
           (conversation_pk, id, role, content, tokens, metadata, request_id, created_at, \
            tool_calls, tool_call_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8::float8 / 1000), $9, $10) \
         ON CONFLICT (conversation_pk, id) DO UPDATE SET id = EXCLUDED.id \
         RETURNING pk",
            )
            .await?,
            &[
                &conversation_pk,
                &message.id,
                &message.role.as_str(),
                &message.content,
                &(super::message_tokens(&message.content, &message.tool_calls) as i32),
                metadata,
                &job.request_id,
                &(message.created_ms as f64),
                &tool_calls,
                &message.tool_call_id,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// Store the job's message (once, whatever the number of deliveries) and read what the context
/// needs, in one transaction. Statements that do not depend on each other are sent together:
/// tokio-postgres pipelines them on the connection, so each group costs one round trip.
///
/// With `check_order`, the turn's place in its conversation's order is checked in the first
/// round trip; if it must wait (or was cancelled) nothing is written and that is the answer.
pub async fn prepare_turn(
    pool: &Pool,
    job: &Job,
    default_window: u32,
    check_order: bool,
) -> Result<Prepared, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let order = async {
        if check_order {
            order::check(&tx, job).await
        } else {
            Ok(order::Place::Free)
        }
    };
    // This transaction need not wait for its WAL flush: until the answer's own (synchronous)
    // commit, which flushes this one's WAL too, the job stays unacked in its queue, and a
    // redelivery after a database crash prepares the turn again.
    let relaxed = async {
        Ok::<_, DbError>(
            tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
                .await?,
        )
    };
    let (order, assistant, conversation, ()) = tokio::try_join!(
        order,
        load_assistant(&tx, job),
        upsert_conversation(&tx, job),
        relaxed
    )?;
    match order {
        order::Place::Free => {}
        // Dropping the transaction rolls back the conversation's upsert.
        order::Place::Behind => return Ok(Prepared::Wait),
        order::Place::Cancelled => return Ok(Prepared::Cancelled),
    }
    let no_metadata = serde_json::Value::Object(Default::default());
    for earlier in &job.history {
        insert_message(&tx, conversation.pk, earlier, &no_metadata, job).await?;
    }
    let message = &job.message;
    let metadata = serde_json::Value::Object(job.metadata.clone());
    // The message's key, whether stored now or by an earlier delivery of the job.
    let message_pk = insert_message(&tx, conversation.pk, message, &metadata, job).await?;
    let answer_of_turn = async {
        Ok::<_, DbError>(
            tx.query_opt(
                &tx.prepare_cached(ANSWER_OF_TURN).await?,
                &[&conversation.pk, &message.id],
            )
            .await?
            .map(|row| stored_answer(&row)),
        )
    };
    let (existing_answer, context) = if message.role.awaits_answer() {
        // The context is read alongside the check for an earlier answer and dropped if there
        // is one: a redelivery is rare, a round trip on every turn is not.
        let context = read_context(
            &tx,
            job,
            &assistant,
            &conversation,
            message_pk,
            default_window,
        );
        let (existing_answer, context) = tokio::try_join!(answer_of_turn, context)?;
        (existing_answer, Some(context))
    } else {
        (answer_of_turn.await?, None)
    };
    let (parts, unsummarised_from_pk) = match context {
        Some(context) if existing_answer.is_none() => context,
        _ => (Parts::default(), None),
    };
    // An ephemeral turn's messages were written only so that its context reads like any
    // other's; rolling back leaves nothing of them.
    if job.ephemeral {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(Prepared::Ready(Box::new(PreparedTurn {
        conversation_pk: conversation.pk,
        assistant,
        parts,
        message_pk,
        unsummarised_from_pk,
        existing_answer,
    })))
}

/// What [`prepare_turn`] found.
#[derive(Debug)]
pub enum Prepared {
    Ready(Box<PreparedTurn>),
    /// An earlier turn of the conversation is pending: wait for it, then prepare again.
    Wait,
    /// The request was cancelled before it started.
    Cancelled,
}

/// The conversation row a turn writes to, with its summary so far.
struct ConversationRow {
    pk: i64,
    summary: String,
    summary_upto_pk: i64,
}

/// The turn's conversation: created by its first turn; later turns only touch `updated_at`.
async fn upsert_conversation(
    tx: &deadpool_postgres::Transaction<'_>,
    job: &Job,
) -> Result<ConversationRow, DbError> {
    let stored_assistant_id: Option<Uuid> = match job.assistant {
        AssistantRef::Stored { id } => Some(id),
        AssistantRef::Preview(_) => None,
    };
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "INSERT INTO conversations (tenant_id, id, assistant_id, identity_id, channel_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, id) DO UPDATE SET updated_at = now() \
             RETURNING pk, summary, summary_upto_pk",
            )
            .await?,
            &[
                &job.tenant_id,
                &job.conversation_id,
                &stored_assistant_id,
                &job.identity_id,
                &job.channel_id,
            ],
        )
        .await?;
    Ok(ConversationRow {
        pk: row.get(0),
        summary: row.get(1),
        summary_upto_pk: row.get(2),
    })
}

/// Everything the model may see besides the new message, read in one pipelined round trip, and
/// the oldest turn the summary does not cover yet.
async fn read_context(
    tx: &deadpool_postgres::Transaction<'_>,
    job: &Job,
    assistant: &Assistant,
    conversation: &ConversationRow,
    message_pk: i64,
    default_window: u32,
) -> Result<(Parts, Option<i64>), DbError> {
    let window = ModelSpec::parse(&assistant.model)
        .map(|spec| spec.context_window(default_window))
        .unwrap_or(8_192);
    let folders = if job.folder_ids.is_empty() {
        &assistant.folder_ids
    } else {
        &job.folder_ids
    };
    let memory = async {
        match job.identity_id {
            Some(identity_id) => identity_memory(tx, job.tenant_id, identity_id).await,
            None => Ok(None),
        }
    };
    let retrieval = tracing::info_span!("retrieval", folders = folders.len());
    let passages = async {
        Ok::<_, DbError>(
            knowledge::search(
                &**tx,
                job.tenant_id,
                folders,
                &job.message.content,
                knowledge::MAX_PASSAGES,
            )
            .await?,
        )
    }
    .instrument(retrieval);
    let turns = recent_turns(
        tx,
        conversation.pk,
        conversation.summary_upto_pk,
        message_pk,
        window,
    );
    // Only a turn with tools can have steps, and only a redelivered one has any stored.
    let steps = async {
        if assistant.tools.is_empty() {
            Ok(Vec::new())
        } else {
            steps_so_far(tx, conversation.pk, message_pk, job.request_id).await
        }
    };
    let ((turns, unsummarised_from_pk), memory, passages, steps) =
        tokio::try_join!(turns, memory, passages, steps)?;
    let parts = Parts {
        instructions: assistant.instructions.clone(),
        memory,
        passages,
        summary: conversation.summary.clone(),
        turns,
        message: job.message.content.clone(),
        answers_call: job.message.tool_call_id.clone(),
        steps,
    };
    Ok((parts, unsummarised_from_pk))
}

/// The tool loop's steps an earlier attempt of this turn stored (`steps.rs`), in order.
async fn steps_so_far(
    tx: &deadpool_postgres::Transaction<'_>,
    conversation_pk: i64,
    message_pk: i64,
    request_id: Uuid,
) -> Result<Vec<Turn>, DbError> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT pk, role, content, tool_calls, tool_call_id FROM messages \
             WHERE conversation_pk = $1 AND pk > $2 AND request_id = $3 AND answers IS NULL \
             ORDER BY pk",
            )
            .await?,
            &[&conversation_pk, &message_pk, &request_id],
        )
        .await?;
    Ok(rows.iter().filter_map(turn_of).collect())
}

/// A stored message as a turn of the context, from a row that starts with `pk, role, content,
/// tool_calls, tool_call_id`.
fn turn_of(row: &tokio_postgres::Row) -> Option<Turn> {
    Some(Turn {
        pk: row.get(0),
        role: Role::parse(row.get(1))?,
        content: row.get(2),
        tool_calls: confab_contract::ToolCall::list_from_column(row.get(3)),
        tool_call_id: row.get(4),
    })
}

/// What is known about an identity; `None` if it no longer exists.
async fn identity_memory(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant_id: Uuid,
    identity_id: Uuid,
) -> Result<Option<IdentityMemory>, DbError> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT name, stage, preferences, data, associations FROM identities \
             WHERE tenant_id = $1 AND id = $2",
            )
            .await?,
            &[&tenant_id, &identity_id],
        )
        .await?;
    // Fallible reads: every memory section is JSON a client wrote.
    let memory = row.map(|row| {
        Ok::<_, tokio_postgres::Error>(IdentityMemory {
            name: row.try_get(0)?,
            stage: row.try_get(1)?,
            preferences: row.try_get(2)?,
            data: row.try_get(3)?,
            associations: row.try_get(4)?,
        })
    });
    Ok(memory.transpose()?)
}

/// The newest complete turns after the summary and before the new message that could fit the
/// whole window, oldest first (`context::assemble` decides how many really go in), and the
/// oldest turn the summary does not cover yet.
async fn recent_turns(
    tx: &deadpool_postgres::Transaction<'_>,
    conversation_pk: i64,
    after_pk: i64,
    before_pk: i64,
    window: u32,
) -> Result<(Vec<Turn>, Option<i64>), DbError> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT pk, role, content, tool_calls, tool_call_id, oldest, running <= $4 FROM ( \
               SELECT pk, role, content, sum(tokens) OVER (ORDER BY pk DESC) AS running, \
                      min(pk) OVER () AS oldest, tool_calls, tool_call_id \
               FROM (SELECT pk, role, content, tokens, tool_calls, tool_call_id FROM messages \
                     WHERE conversation_pk = $1 AND pk > $2 AND pk < $3 \
                       AND status = 'complete' \
                     ORDER BY pk DESC LIMIT 1000) newest \
             ) sized WHERE running <= $4 OR pk = oldest ORDER BY pk",
            )
            .await?,
            &[&conversation_pk, &after_pk, &before_pk, &i64::from(window)],
        )
        .await?;
    let oldest = rows.first().map(|row| row.get::<_, i64>(5));
    // The oldest row comes along even when it does not fit, to tell what the summary lacks.
    let turns = rows
        .iter()
        .filter(|row| row.get::<_, bool>(6))
        .filter_map(turn_of)
        .collect();
    Ok((turns, oldest))
}
