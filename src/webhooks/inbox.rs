//! The durable hand-off of channel events. A user message is recorded in `channel_inbox` under
//! the platform's message id, in the same transaction that is committed only after its job
//! (or its fixed answer) was confirmed by the broker: an id seen before is not answered again,
//! even across restarts and concurrent deliveries of one webhook (the second insert waits for
//! the first transaction and then finds the row), and a failed hand-off leaves no row behind,
//! so the platform's retry is answered.

use confab_contract::{AssistantRef, Done, Job, Message, ReplyEvent, Role, now_ms};
use confab_shared::platforms::{Content, Inbound, StatusUpdate};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::unavailable;
use crate::api::ApiError;
use crate::http::AppState;
use crate::pipeline::{SubmitError, TurnRequest};
use crate::store::channels::WebhookChannel;
use crate::store::conversations::{self, NewMessage};
use crate::store::identities;
use crate::store::pending_turns;

/// What became of one user message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A job answers it.
    Queued,
    /// Seen before: not answered again.
    Duplicate,
    /// Older than the webhook age limit: stored, not answered.
    Stale,
    /// A kind of message the assistant cannot read: answered with a fixed text.
    Fixed,
}

/// What a webhook's events became, as the platform's 200 reports it.
#[derive(Debug, Default, Serialize)]
pub struct Receipt {
    pub queued: u64,
    pub duplicates: u64,
    pub stale: u64,
    pub unsupported: u64,
    pub statuses: u64,
}

impl Receipt {
    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Queued => self.queued += 1,
            Outcome::Duplicate => self.duplicates += 1,
            Outcome::Stale => self.stale += 1,
            Outcome::Fixed => self.unsupported += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.queued + self.duplicates + self.stale + self.unsupported + self.statuses
    }
}

/// The answer to a message the assistant cannot read.
const UNSUPPORTED_REPLY: &str =
    "Sorry, I can only read text messages. Could you write your question as text?";

pub async fn take(
    state: &AppState,
    channel: &WebhookChannel,
    message: &Inbound,
) -> Result<Outcome, ApiError> {
    let mut client = state.db.get().await.map_err(unavailable)?;
    // Most duplicates are platform retries of a message long handed off: skip them cheaply.
    let seen = client
        .query_opt(
            "SELECT 1 FROM channel_inbox WHERE channel_id = $1 AND external_id = $2",
            &[&channel.id, &message.external_id],
        )
        .await
        .map_err(unavailable)?;
    if seen.is_some() {
        return Ok(Outcome::Duplicate);
    }
    let sender = &message.sender;
    let identity_id = identities::for_platform_user(
        &**client,
        channel.tenant_id,
        &channel.kind,
        &sender.external_id,
        sender.alternate_id.as_slice(),
        sender.name.as_deref(),
    )
    .await
    .map_err(unavailable)?;
    let conversation_id = conversations::open_for_identity(
        &mut client,
        channel.tenant_id,
        identity_id,
        channel.id,
        channel.assistant_id,
        false,
    )
    .await
    .map_err(unavailable)?;

    let age_secs = now_ms() / 1000 - message.sent_at;
    let outcome = match &message.content {
        _ if age_secs > state.webhook_max_age.as_secs() as i64 => Outcome::Stale,
        Content::Unsupported(_) => Outcome::Fixed,
        Content::Text(_) => Outcome::Queued,
    };
    let turn = Turn {
        channel,
        message,
        identity_id,
        conversation_id: &conversation_id,
        request_id: Uuid::now_v7(),
    };
    // A job is marked pending (committed) before it is published, on this same connection:
    // a webhook holds one connection, however many messages it carries.
    let job = (outcome == Outcome::Queued).then(|| turn.job(state));
    if let Some(job) = &job {
        pending_turns::record(
            &client,
            job.tenant_id,
            &job.conversation_id,
            job.request_id,
            job.deadline_ms,
        )
        .await
        .map_err(unavailable)?;
    }
    let handed_off = turn
        .hand_off(state, &mut client, outcome, job.as_ref())
        .await;
    if let (Some(job), Err(_) | Ok(Outcome::Duplicate)) = (&job, &handed_off) {
        pending_turns::forget(
            &**client,
            job.tenant_id,
            &job.conversation_id,
            job.request_id,
        )
        .await;
    }
    handed_off
}

fn state_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Stale => "stale",
        Outcome::Fixed => "fixed",
        Outcome::Queued | Outcome::Duplicate => "queued",
    }
}

struct Turn<'a> {
    channel: &'a WebhookChannel,
    message: &'a Inbound,
    identity_id: Uuid,
    conversation_id: &'a str,
    request_id: Uuid,
}

impl Turn<'_> {
    /// The platform's message id is the turn's message id, so a job published twice (a crash
    /// between the broker's confirm and the commit) still stores and answers the turn once.
    fn user_message_id(&self) -> &str {
        &self.message.external_id
    }

    fn metadata(&self) -> serde_json::Value {
        json!({"channel": self.channel.kind, "external_id": self.message.external_id})
    }

    fn user_text(&self) -> String {
        match &self.message.content {
            Content::Text(text) => text.clone(),
            Content::Unsupported(kind) => format!("[{kind}]"),
        }
    }

    fn job(&self, state: &AppState) -> Job {
        let request = TurnRequest {
            request_id: self.request_id,
            tenant_id: self.channel.tenant_id,
            assistant: AssistantRef::Stored {
                id: self.channel.assistant_id,
            },
            conversation_id: self.conversation_id.to_owned(),
            identity_id: Some(self.identity_id),
            channel_id: Some(self.channel.id),
            message: Message::text(
                self.user_message_id().to_owned(),
                Role::User,
                self.user_text(),
                self.message.sent_at * 1000,
            ),
            history: Vec::new(),
            metadata: match self.metadata() {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            folder_ids: Vec::new(),
            stream: false,
            ephemeral: false,
            sampling: Default::default(),
            tools: Default::default(),
            stream_format: None,
            charge: None,
        };
        let deliveries = state.broker().names().deliveries();
        state.pipeline.detached_job(request, deliveries)
    }

    /// Record the message in the inbox and hand it on (job, fixed answer, or storage only) in
    /// one transaction, committed only after the broker confirmed what was published.
    async fn hand_off(
        &self,
        state: &AppState,
        client: &mut deadpool_postgres::Client,
        outcome: Outcome,
        job: Option<&Job>,
    ) -> Result<Outcome, ApiError> {
        let tx = client.transaction().await.map_err(unavailable)?;
        let inserted = tx
            .execute(
                "INSERT INTO channel_inbox (channel_id, external_id, tenant_id, identity_id, \
                   conversation_id, reply_address, request_id, state, sent_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9::float8)) \
                 ON CONFLICT (channel_id, external_id) DO NOTHING",
                &[
                    &self.channel.id,
                    &self.message.external_id,
                    &self.channel.tenant_id,
                    &self.identity_id,
                    &self.conversation_id,
                    &self.message.reply_address,
                    &self.request_id,
                    &state_name(outcome),
                    &(self.message.sent_at as f64),
                ],
            )
            .await
            .map_err(unavailable)?;
        if inserted == 0 {
            return Ok(Outcome::Duplicate);
        }
        match (outcome, job) {
            (Outcome::Queued, Some(job)) => {
                state
                    .pipeline
                    .publish_detached(job)
                    .await
                    .map_err(|e| match e {
                        SubmitError::QueueFull => unavailable("the work queue is full"),
                        e => unavailable(e),
                    })?
            }
            (Outcome::Stale, _) => self.store_unanswered(&*tx).await?,
            (Outcome::Fixed, _) => self.answer_fixed(state, &*tx).await?,
            _ => {}
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(outcome)
    }

    async fn store_unanswered(&self, tx: &impl GenericClient) -> Result<(), ApiError> {
        let text = self.user_text();
        conversations::append(
            tx,
            self.channel.tenant_id,
            self.conversation_id,
            &[NewMessage {
                id: self.user_message_id(),
                role: "user",
                content: &text,
                answers: None,
                metadata: {
                    let mut metadata = self.metadata();
                    metadata["unanswered"] = json!("stale");
                    metadata
                },
            }],
        )
        .await
        .map_err(unavailable)
    }

    /// Store the message and its fixed answer, and hand the answer to the delivery role.
    async fn answer_fixed(
        &self,
        state: &AppState,
        tx: &impl GenericClient,
    ) -> Result<(), ApiError> {
        let text = self.user_text();
        let answer_id = conversations::new_message_id();
        conversations::append(
            tx,
            self.channel.tenant_id,
            self.conversation_id,
            &[
                NewMessage {
                    id: self.user_message_id(),
                    role: "user",
                    content: &text,
                    answers: None,
                    metadata: self.metadata(),
                },
                NewMessage {
                    id: &answer_id,
                    role: "assistant",
                    content: UNSUPPORTED_REPLY,
                    answers: Some(self.user_message_id()),
                    metadata: json!({}),
                },
            ],
        )
        .await
        .map_err(unavailable)?;
        let done = ReplyEvent::Done(Box::new(Done {
            message_id: answer_id,
            conversation_id: self.conversation_id.to_owned(),
            text: UNSUPPORTED_REPLY.to_owned(),
            created_ms: now_ms(),
            usage: Default::default(),
            model: "confab/fixed".to_owned(),
            sources: Vec::new(),
            timing: Default::default(),
            tool_calls: Vec::new(),
            finish_reason: Default::default(),
            last_delta: None,
        }));
        let broker = state.broker();
        let session = broker
            .session()
            .ok_or_else(|| unavailable("no broker session"))?;
        broker
            .publish_reply(
                &session,
                &broker.names().deliveries(),
                self.request_id,
                &done,
            )
            .await
            .map_err(unavailable)
    }
}

/// A platform's status notification for a message we sent, applied monotonically: the outbox
/// row keeps the furthest status (a trigger carries it to the message). It may arrive before
/// the sender recorded the row; then it waits there for the sender.
pub async fn apply_status(
    state: &AppState,
    channel: &WebhookChannel,
    update: &StatusUpdate,
) -> Result<(), ApiError> {
    let client = state.db.get().await.map_err(unavailable)?;
    client
        .execute(
            "INSERT INTO channel_outbox (channel_id, external_id, status, error) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (channel_id, external_id) DO UPDATE SET \
               status = EXCLUDED.status, \
               error = coalesce(EXCLUDED.error, channel_outbox.error), \
               updated_at = now() \
             WHERE delivery_rank(EXCLUDED.status) > delivery_rank(channel_outbox.status)",
            &[
                &channel.id,
                &update.external_id,
                &update.status.as_str(),
                &update.error,
            ],
        )
        .await
        .map_err(unavailable)?;
    Ok(())
}
