//! The first of a turn's two statements: store the job's message (once, however often the job
//! is delivered), check the turn's place in its conversation's order, and read everything the
//! context may hold, all in one call of `confab_prepare_turn`
//! (`migrations/0012_turn_functions.sql`), in that statement's own transaction. It commits
//! before the model is called, so no connection is held while the model generates, and a
//! redelivered job finds its message stored instead of storing it twice.

use confab_contract::{AssistantRef, Job, Role};
use confab_shared::db::DbError;
use deadpool_postgres::{GenericClient, Pool};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;
use uuid::Uuid;

use super::windows::ContextWindows;
use super::{Assistant, StoredAnswer};
use crate::context::{IdentityMemory, Parts, Turn};
use crate::knowledge;

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

/// What [`prepare_turn`] found.
#[derive(Debug)]
pub enum Prepared {
    Ready(Box<PreparedTurn>),
    /// An earlier turn of the conversation is pending: wait for it, then prepare again.
    Wait,
    /// The request was cancelled before it started.
    Cancelled,
}

const PREPARE_TURN: &str =
    "SELECT * FROM confab_prepare_turn($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Store the job's message and read what the context needs: one statement for a plain turn, a
/// second only for a knowledge search or when the window guess was too small.
///
/// With `check_order`, the turn's place in its conversation's order is checked first; if it
/// must wait (or was cancelled) nothing is written and that is the answer.
pub async fn prepare_turn(
    pool: &Pool,
    job: &Job,
    windows: &ContextWindows,
    check_order: bool,
) -> Result<Prepared, DbError> {
    let mut client = pool.get().await?;
    if !job.ephemeral {
        let on = On {
            client: &client,
            raw: &**client,
        };
        return prepare_on(on, job, windows, check_order).await;
    }
    // An ephemeral turn's messages are written only so that its context reads like any
    // other's; rolling back leaves nothing of them.
    let tx = client.transaction().await?;
    let on = On {
        client: &tx,
        raw: &*tx,
    };
    let prepared = prepare_on(on, job, windows, check_order).await;
    tx.rollback().await?;
    prepared
}

/// One connection (or transaction), as the pool's client for prepared statements and as the
/// driver's for the knowledge search, which takes either.
#[derive(Clone, Copy)]
struct On<'a, C, R> {
    client: &'a C,
    raw: &'a R,
}

async fn prepare_on<C: GenericClient, R: tokio_postgres::GenericClient>(
    on: On<'_, C, R>,
    job: &Job,
    windows: &ContextWindows,
    check_order: bool,
) -> Result<Prepared, DbError> {
    let client = on.client;
    let guess = windows.guess(&job.assistant);
    let stored_assistant_id = match job.assistant {
        AssistantRef::Stored { id } => Some(id),
        AssistantRef::Preview(_) => None,
    };
    let row = client
        .query_one(
            &client.prepare_cached(PREPARE_TURN).await?,
            &[
                &job.tenant_id,
                &job.conversation_id,
                &job.request_id,
                &check_order,
                &stored_assistant_id,
                &job.identity_id,
                &job.channel_id,
                &messages_of(job),
                &job.message.role.awaits_answer(),
                &i64::from(guess),
            ],
        )
        .await?;
    match row.get::<_, &str>(0) {
        "behind" => return Ok(Prepared::Wait),
        "cancelled" => return Ok(Prepared::Cancelled),
        _ => {}
    }
    let assistant = match &job.assistant {
        AssistantRef::Preview(preview) => Assistant {
            name: preview.name.clone(),
            instructions: preview.instructions.clone(),
            model: preview.model.clone(),
            folder_ids: Vec::new(),
            tools: Vec::new(),
        },
        AssistantRef::Stored { .. } => row
            .get::<_, Option<Value>>(1)
            .ok_or(DbError::NotFound("assistant"))
            .and_then(assistant_of)?,
    };
    let conversation = ConversationRow {
        pk: row.get(2),
        summary: row.get(3),
        summary_upto_pk: row.get(4),
    };
    let message_pk: i64 = row.get(5);
    let existing_answer = row
        .get::<_, Option<Value>>(6)
        .map(StoredAnswer::from_json)
        .transpose()?;
    let needs_context = existing_answer.is_none() && job.message.role.awaits_answer();
    let (parts, unsummarised_from_pk) = if needs_context {
        let read = Read {
            job,
            assistant: &assistant,
            conversation: &conversation,
            message_pk,
            guess,
        };
        read.context(on, &row, windows).await?
    } else {
        (Parts::default(), None)
    };
    Ok(Prepared::Ready(Box::new(PreparedTurn {
        conversation_pk: conversation.pk,
        assistant,
        parts,
        message_pk,
        unsummarised_from_pk,
        existing_answer,
    })))
}

/// The job's messages as `confab_prepare_turn` stores them: its history, then its message
/// (the only one that keeps the caller's metadata).
fn messages_of(job: &Job) -> Value {
    let stored = |message: &confab_contract::Message, metadata: Value| {
        json!({
            "id": message.id,
            "role": message.role.as_str(),
            "content": message.content,
            "tokens": super::message_tokens(&message.content, &message.tool_calls),
            "metadata": metadata,
            "created_ms": message.created_ms,
            "tool_calls": super::tool_calls_json(&message.tool_calls),
            "tool_call_id": message.tool_call_id,
        })
    };
    let history = job.history.iter().map(|earlier| stored(earlier, json!({})));
    let message = stored(&job.message, Value::Object(job.metadata.clone()));
    Value::Array(history.chain([message]).collect())
}

/// An assistant as `confab_prepare_turn` reads it.
fn assistant_of(value: Value) -> Result<Assistant, DbError> {
    #[derive(Deserialize)]
    struct Row {
        name: String,
        instructions: String,
        model: String,
        folder_ids: Vec<Uuid>,
        tools: Value,
    }
    let row: Row = serde_json::from_value(value)?;
    Ok(Assistant {
        name: row.name,
        instructions: row.instructions,
        model: row.model,
        folder_ids: row.folder_ids,
        // Only the ingress writes it, checked; a value that does not read is no tools.
        tools: serde_json::from_value(row.tools).unwrap_or_default(),
    })
}

/// The conversation row a turn writes to, with its summary so far.
struct ConversationRow {
    pk: i64,
    summary: String,
    summary_upto_pk: i64,
}

/// What reading a turn's context needs to know.
struct Read<'a> {
    job: &'a Job,
    assistant: &'a Assistant,
    conversation: &'a ConversationRow,
    message_pk: i64,
    /// The window the recent turns in the row were read for.
    guess: u32,
}

impl Read<'_> {
    /// Everything the model may see besides the new message, and the oldest turn the summary
    /// does not cover yet: what the row holds, plus the knowledge search (and the recent turns
    /// again, if the assistant's window is larger than the one they were read for).
    async fn context<C: GenericClient, R: tokio_postgres::GenericClient>(
        &self,
        on: On<'_, C, R>,
        row: &tokio_postgres::Row,
        windows: &ContextWindows,
    ) -> Result<(Parts, Option<i64>), DbError> {
        let job = self.job;
        let window = windows.of(&self.assistant.model);
        windows.learn(&job.assistant, window);
        let read = RecentTurns {
            turns: row.get::<_, Option<Value>>(8).map(turns_of).transpose()?,
            oldest_pk: row.get(9),
        };
        let (turns, unsummarised_from_pk) = if window <= self.guess {
            read.within(window)
        } else {
            self.recent_turns(on.client, window).await?
        };
        let memory = row.get::<_, Option<Value>>(7).map(memory_of).transpose()?;
        let steps = row
            .get::<_, Option<Value>>(10)
            .map(turns_of)
            .transpose()?
            .map(|steps| steps.into_iter().map(|(turn, _)| turn).collect())
            .unwrap_or_default();
        let parts = Parts {
            instructions: self.assistant.instructions.clone(),
            memory,
            passages: self.passages(on.raw).await?,
            summary: self.conversation.summary.clone(),
            turns,
            message: job.message.content.clone(),
            answers_call: job.message.tool_call_id.clone(),
            steps,
        };
        Ok((parts, unsummarised_from_pk))
    }

    /// The knowledge passages for the message, from the request's folders or else the
    /// assistant's.
    async fn passages(
        &self,
        client: &impl tokio_postgres::GenericClient,
    ) -> Result<Vec<knowledge::Passage>, DbError> {
        let job = self.job;
        let folders = if job.folder_ids.is_empty() {
            &self.assistant.folder_ids
        } else {
            &job.folder_ids
        };
        let retrieval = tracing::info_span!("retrieval", folders = folders.len());
        let search = knowledge::search(
            client,
            job.tenant_id,
            folders,
            &job.message.content,
            knowledge::MAX_PASSAGES,
        );
        Ok(search.instrument(retrieval).await?)
    }

    /// The recent turns read again for a window larger than the guess.
    async fn recent_turns(
        &self,
        client: &impl GenericClient,
        window: u32,
    ) -> Result<(Vec<Turn>, Option<i64>), DbError> {
        let row = client
            .query_one(
                &client
                    .prepare_cached("SELECT * FROM confab_recent_turns($1, $2, $3, $4)")
                    .await?,
                &[
                    &self.conversation.pk,
                    &self.conversation.summary_upto_pk,
                    &self.message_pk,
                    &i64::from(window),
                ],
            )
            .await?;
        let read = RecentTurns {
            turns: row.get::<_, Option<Value>>(0).map(turns_of).transpose()?,
            oldest_pk: row.get(1),
        };
        Ok(read.within(window))
    }
}

/// The recent turns `confab_prepare_turn` read, each with the tokens of it and every newer one.
struct RecentTurns {
    turns: Option<Vec<(Turn, i64)>>,
    oldest_pk: Option<i64>,
}

impl RecentTurns {
    /// Those that fit `window` (no larger than the one they were read for), oldest first, and
    /// the oldest turn the summary does not cover yet.
    fn within(self, window: u32) -> (Vec<Turn>, Option<i64>) {
        let turns = self
            .turns
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, running)| *running <= i64::from(window))
            .map(|(turn, _)| turn)
            .collect();
        (turns, self.oldest_pk)
    }
}

/// Stored messages as turns of the context, each with its running token count (0 if none), from
/// `[{pk, role, content, tool_calls, tool_call_id, running?}]`.
fn turns_of(value: Value) -> Result<Vec<(Turn, i64)>, DbError> {
    #[derive(Deserialize)]
    struct Row {
        pk: i64,
        role: String,
        content: String,
        tool_calls: Option<Value>,
        tool_call_id: Option<String>,
        #[serde(default)]
        running: i64,
    }
    let rows: Vec<Row> = serde_json::from_value(value)?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let turn = Turn {
                pk: row.pk,
                role: Role::parse(&row.role)?,
                content: row.content,
                tool_calls: confab_contract::ToolCall::list_from_column(row.tool_calls),
                tool_call_id: row.tool_call_id,
            };
            Some((turn, row.running))
        })
        .collect())
}

/// What is known about an identity, from `{name, stage, preferences, data, associations}`.
fn memory_of(value: Value) -> Result<IdentityMemory, DbError> {
    #[derive(Deserialize)]
    struct Row {
        name: Option<String>,
        stage: Option<String>,
        preferences: Value,
        data: Value,
        associations: Value,
    }
    let row: Row = serde_json::from_value(value)?;
    Ok(IdentityMemory {
        name: row.name,
        stage: row.stage,
        preferences: row.preferences,
        data: row.data,
        associations: row.associations,
    })
}
