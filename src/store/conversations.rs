//! Conversations as the ingress sees them: ids to mint and ids to check before a job is sent.
//! The worker creates the row on the conversation's first turn.

use tokio_postgres::GenericClient;
use uuid::Uuid;

/// A fresh public conversation id.
pub fn new_id() -> String {
    format!("conv_{}", Uuid::now_v7().simple())
}

/// A fresh public message id.
pub fn new_message_id() -> String {
    format!("msg_{}", Uuid::now_v7().simple())
}

/// The conversation of the tenant's turn `request_id` (answered, or still pending).
pub async fn of_request(
    client: &impl GenericClient,
    tenant_id: Uuid,
    request_id: Uuid,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT c.id FROM messages m JOIN conversations c ON c.pk = m.conversation_pk \
              WHERE m.request_id = $2 AND c.tenant_id = $1 \
             UNION ALL \
             SELECT conversation_id FROM pending_turns WHERE request_id = $2 AND tenant_id = $1 \
             LIMIT 1",
            &[&tenant_id, &request_id],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

pub async fn exists(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM conversations WHERE tenant_id = $1 AND id = $2",
            &[&tenant_id, &id],
        )
        .await?;
    Ok(row.is_some())
}

/// Whether the tenant has conversation `id` with `assistant_id`.
pub async fn exists_for_assistant(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: &str,
    assistant_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM conversations \
             WHERE tenant_id = $1 AND id = $2 AND assistant_id = $3",
            &[&tenant_id, &id, &assistant_id],
        )
        .await?;
    Ok(row.is_some())
}

/// A conversation as the management API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Conversation {
    pub id: String,
    pub assistant_id: Option<Uuid>,
    pub identity_id: Option<Uuid>,
    pub channel_id: Option<Uuid>,
    pub message_count: i64,
    pub created_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
    /// Internal key, the list cursor.
    #[serde(skip)]
    pub pk: i64,
}

/// Which conversations to list.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub assistant_id: Option<Uuid>,
    pub identity_id: Option<Uuid>,
    pub channel_id: Option<Uuid>,
}

fn columns() -> String {
    format!(
        "c.pk, c.id, c.assistant_id, c.identity_id, c.channel_id, \
         (SELECT count(*) FROM messages m WHERE m.conversation_pk = c.pk), {}, {}, {}",
        crate::store::rfc3339("c.created_at"),
        crate::store::rfc3339("c.updated_at"),
        crate::store::rfc3339("c.closed_at")
    )
}

fn from_row(row: &tokio_postgres::Row) -> Conversation {
    Conversation {
        pk: row.get(0),
        id: row.get(1),
        assistant_id: row.get(2),
        identity_id: row.get(3),
        channel_id: row.get(4),
        message_count: row.get(5),
        created_at: row.get(6),
        updated_at: row.get(7),
        closed_at: row.get(8),
    }
}

pub async fn list(
    client: &impl GenericClient,
    tenant_id: Uuid,
    filter: &Filter,
    cursor: Option<i64>,
    limit: i64,
) -> Result<Vec<Conversation>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM conversations c WHERE c.tenant_id = $1 \
                   AND ($2::uuid IS NULL OR c.assistant_id = $2) \
                   AND ($3::uuid IS NULL OR c.identity_id = $3) \
                   AND ($4::uuid IS NULL OR c.channel_id = $4) \
                   AND ($5::int8 IS NULL OR c.pk < $5) \
                 ORDER BY c.pk DESC LIMIT $6",
                columns()
            ),
            &[
                &tenant_id,
                &filter.assistant_id,
                &filter.identity_id,
                &filter.channel_id,
                &cursor,
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

pub async fn by_id(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: &str,
) -> Result<Option<Conversation>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {} FROM conversations c WHERE c.tenant_id = $1 AND c.id = $2",
                columns()
            ),
            &[&tenant_id, &id],
        )
        .await?;
    Ok(row.map(|row| from_row(&row)))
}

/// A stored turn.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredMessage {
    pub id: String,
    pub role: String,
    pub content: String,
    /// `complete`, or `interrupted` for an answer cut short.
    pub status: String,
    /// For an assistant turn: the id of the user turn it answers.
    pub answers: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub metadata: serde_json::Value,
    /// For an answer sent to a channel platform: `accepted`, `sent`, `delivered`, `read` or
    /// `failed`.
    pub delivery_status: Option<String>,
    pub delivery_error: Option<serde_json::Value>,
    /// For an assistant turn that called the caller's functions: `[{id, name, arguments}]`.
    pub tool_calls: Option<serde_json::Value>,
    /// For a `tool` turn: the call whose result it is.
    pub tool_call_id: Option<String>,
    pub created_at: String,
    #[serde(skip)]
    pub pk: i64,
}

/// A page of a conversation's turns, oldest first, after `cursor`.
pub async fn messages(
    client: &impl GenericClient,
    conversation_pk: i64,
    cursor: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredMessage>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT pk, id, role, content, status, answers, model, prompt_tokens, \
                   completion_tokens, metadata, delivery_status, delivery_error, {}, \
                   tool_calls, tool_call_id \
                 FROM messages WHERE conversation_pk = $1 AND ($2::int8 IS NULL OR pk > $2) \
                 ORDER BY pk LIMIT $3",
                crate::store::rfc3339("created_at")
            ),
            &[&conversation_pk, &cursor, &limit],
        )
        .await?;
    // Fallible reads: `metadata` is JSON a client wrote.
    rows.iter()
        .map(|row| {
            Ok(StoredMessage {
                pk: row.try_get(0)?,
                id: row.try_get(1)?,
                role: row.try_get(2)?,
                content: row.try_get(3)?,
                status: row.try_get(4)?,
                answers: row.try_get(5)?,
                model: row.try_get(6)?,
                prompt_tokens: row.try_get(7)?,
                completion_tokens: row.try_get(8)?,
                metadata: row.try_get(9)?,
                delivery_status: row.try_get(10)?,
                delivery_error: row.try_get(11)?,
                created_at: row.try_get(12)?,
                tool_calls: row.try_get(13)?,
                tool_call_id: row.try_get(14)?,
            })
        })
        .collect()
}

/// Delete a conversation and its turns; false if the tenant has no such conversation.
pub async fn delete(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "DELETE FROM conversations WHERE tenant_id = $1 AND id = $2",
            &[&tenant_id, &id],
        )
        .await?;
    Ok(n > 0)
}

/// The open conversation of an identity on a channel, created if there is none; with
/// `start_new`, the open one (if any) is closed first. Concurrent callers agree on one
/// conversation: a unique index admits one open conversation per identity and channel.
pub async fn open_for_identity(
    client: &mut tokio_postgres::Client,
    tenant_id: Uuid,
    identity_id: Uuid,
    channel_id: Uuid,
    assistant_id: Uuid,
    start_new: bool,
) -> Result<String, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    if start_new {
        tx.execute(
            "UPDATE conversations SET closed_at = now() \
             WHERE tenant_id = $1 AND identity_id = $2 AND channel_id = $3 AND closed_at IS NULL",
            &[&tenant_id, &identity_id, &channel_id],
        )
        .await?;
    }
    let inserted = tx
        .query_opt(
            "INSERT INTO conversations (tenant_id, id, assistant_id, identity_id, channel_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, identity_id, channel_id) \
               WHERE closed_at IS NULL AND identity_id IS NOT NULL AND channel_id IS NOT NULL \
             DO NOTHING RETURNING id",
            &[
                &tenant_id,
                &new_id(),
                &assistant_id,
                &identity_id,
                &channel_id,
            ],
        )
        .await?;
    let id = match inserted {
        Some(row) => row.get(0),
        None => tx
            .query_one(
                "SELECT id FROM conversations WHERE tenant_id = $1 AND identity_id = $2 \
                   AND channel_id = $3 AND closed_at IS NULL",
                &[&tenant_id, &identity_id, &channel_id],
            )
            .await?
            .get(0),
    };
    tx.commit().await?;
    Ok(id)
}

/// A message to add to a conversation without a job (a channel message stored but not
/// answered, or answered without the model).
pub struct NewMessage<'a> {
    pub id: &'a str,
    pub role: &'a str,
    pub content: &'a str,
    pub answers: Option<&'a str>,
    pub metadata: serde_json::Value,
}

/// Add messages to the tenant's conversation `conversation_id`; a message whose id is already
/// there is left as it is.
pub async fn append(
    client: &impl GenericClient,
    tenant_id: Uuid,
    conversation_id: &str,
    messages: &[NewMessage<'_>],
) -> Result<(), tokio_postgres::Error> {
    for message in messages {
        let tokens = confab_shared::tokens::estimate_tokens(message.content) as i32;
        client
            .execute(
                "INSERT INTO messages (conversation_pk, id, role, content, tokens, answers, metadata) \
                 SELECT pk, $3, $4, $5, $6, $7, $8 FROM conversations \
                 WHERE tenant_id = $1 AND id = $2 \
                 ON CONFLICT (conversation_pk, id) DO NOTHING",
                &[
                    &tenant_id,
                    &conversation_id,
                    &message.id,
                    &message.role,
                    &message.content,
                    &tokens,
                    &message.answers,
                    &message.metadata,
                ],
            )
            .await?;
    }
    Ok(())
}

/// The answer stored for request `request_id`, complete, as its `done` event would carry it:
/// for a caller whose reply path was lost while a worker answered (the answer's publish then
/// reached nobody). Request ids are UUIDv7s, unique across tenants.
pub async fn answer_of_request(
    client: &impl GenericClient,
    request_id: uuid::Uuid,
) -> Result<Option<confab_contract::Done>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT m.id, c.id, m.content, \
                    (extract(epoch FROM m.created_at) * 1000)::int8, \
                    coalesce(m.prompt_tokens, 0), coalesce(m.completion_tokens, 0), \
                    coalesce(m.model, ''), m.tool_calls \
             FROM messages m JOIN conversations c ON c.pk = m.conversation_pk \
             WHERE m.request_id = $1 AND m.role = 'assistant' AND m.status = 'complete'",
            &[&request_id],
        )
        .await?;
    row.map(|row| {
        let tool_calls = confab_contract::ToolCall::list_from_column(row.try_get(7)?);
        Ok(confab_contract::Done {
            message_id: row.try_get(0)?,
            conversation_id: row.try_get(1)?,
            text: row.try_get(2)?,
            created_ms: row.try_get(3)?,
            usage: confab_contract::Usage {
                prompt_tokens: row.try_get::<_, i32>(4)?.max(0) as u32,
                completion_tokens: row.try_get::<_, i32>(5)?.max(0) as u32,
            },
            model: row.try_get(6)?,
            sources: Vec::new(),
            timing: Default::default(),
            last_delta: None,
            finish_reason: if tool_calls.is_empty() {
                confab_contract::FinishReason::Stop
            } else {
                confab_contract::FinishReason::ToolCalls
            },
            tool_calls,
        })
    })
    .transpose()
}
