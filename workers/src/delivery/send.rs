//! One channel answer on its way to its user: find where it goes (the inbound message it
//! answers), put an apology in place of a failed turn's answer, send it in parts the platform
//! accepts, retrying while the platform throttles, and record the outcome on the stored message,
//! so that an answer delivered once is not sent again when its delivery comes back.

use std::time::Duration;

use confab_contract::{ErrorCode, ReplyEvent};
use deadpool_postgres::Pool;
use serde_json::{Value, json};
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::DeliveryConfig;
use confab_shared::db::DbError;
use confab_shared::platforms::{self, Adapter, Config, DeliveryStatus, SendError};
use confab_shared::retry::{self, Retryable};

/// What a user hears when their turn failed (the model erred, timed out, or the deadline passed).
const APOLOGY: &str = "Sorry, I can't answer right now. Please try again in a little while.";

/// How long an answer waits for its inbound message to become visible: this many looks, this
/// far apart (see [`Deliverer::wait_for_target`]).
const TARGET_LOOKUPS: u32 = 20;
const TARGET_LOOKUP_PAUSE: Duration = Duration::from_millis(100);

/// What delivering answers needs, shared by a session's concurrent deliveries.
pub(super) struct Deliverer {
    pub(super) pool: Pool,
    pub(super) http: reqwest::Client,
    pub(super) settings: DeliveryConfig,
}

/// Where an answer goes, from the inbound message it answers.
struct Target {
    tenant_id: Uuid,
    channel_id: Uuid,
    kind: String,
    config: Config,
    reply_address: String,
    conversation_id: String,
    /// The user's message (its id is the platform's).
    message_id: String,
}

impl Deliverer {
    /// Deliver the answer a turn's final event carries, or an apology for a failed turn, and
    /// record the outcome. `Err` only when the database is unreachable: then the delivery is
    /// worth trying again.
    pub(super) async fn handle(&self, request_id: Uuid, event: ReplyEvent) -> Result<(), DbError> {
        let failed = match &event {
            ReplyEvent::Done(_) => None,
            // Stopped on purpose: nothing to say.
            ReplyEvent::Error {
                code: ErrorCode::Cancelled | ErrorCode::Interrupted,
                ..
            } => return Ok(()),
            ReplyEvent::Error { code, message } => {
                warn!(%request_id, ?code, %message, "a channel turn failed; sending an apology");
                Some(*code)
            }
            // Progress events of the turn: only its answer is sent.
            _ => return Ok(()),
        };
        let Some(mut target) = self.wait_for_target(request_id).await? else {
            warn!(%request_id, "no channel message for this answer (channel deleted?); dropping it");
            return Ok(());
        };
        let (message_id, text) = match (event, failed) {
            (ReplyEvent::Done(done), _) => (done.message_id, done.text),
            (_, Some(code)) => self.store_apology(&target, request_id, code).await?,
            _ => return Ok(()),
        };
        let Some((message_pk, already)) = self.answer(&target, &message_id).await? else {
            warn!(%request_id, "the answer is not stored; dropping it");
            return Ok(());
        };
        if already.is_some() {
            info!(%request_id, "answer already delivered; not sending it again");
            return Ok(());
        }
        let Some(adapter) = platforms::adapter(&target.kind) else {
            return self
                .record_failure(message_pk, &json!({"code": "unsupported_channel"}))
                .await;
        };
        if let Err(e) = self
            .settings
            .secrets
            .open_config(target.channel_id, &mut target.config)
        {
            warn!(%request_id, error = %e, "channel credentials do not open; not sending");
            let details = json!({"code": "channel_secrets", "message": e.to_string()});
            return self.record_failure(message_pk, &details).await;
        }
        self.send(adapter, &target, message_pk, &text).await
    }

    /// A user on a messaging app waits for an answer that will not come: tell them. The apology
    /// is stored as the turn's answer (unless the turn has one), under an id made from the
    /// request's, so a redelivered failure finds it instead of storing another.
    async fn store_apology(
        &self,
        target: &Target,
        request_id: Uuid,
        code: ErrorCode,
    ) -> Result<(String, String), DbError> {
        let id = format!("msg_{}", request_id.simple());
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO messages \
                   (conversation_pk, id, role, content, tokens, answers, metadata, request_id) \
                 SELECT pk, $3, 'assistant', $4, $5, $6, $7, $8 FROM conversations \
                 WHERE tenant_id = $1 AND id = $2 \
                 ON CONFLICT DO NOTHING",
                &[
                    &target.tenant_id,
                    &target.conversation_id,
                    &id,
                    &APOLOGY,
                    &(confab_shared::tokens::estimate_tokens(APOLOGY) as i32),
                    &target.message_id,
                    &json!({ "failed": code }),
                    &request_id,
                ],
            )
            .await?;
        Ok((id, APOLOGY.to_owned()))
    }

    /// The ingress commits the inbox row only after the broker confirmed what it published, so
    /// an answer can arrive a moment before its row is visible; a row that never appears
    /// belongs to a hand-off that failed (and that the platform will retry).
    async fn wait_for_target(&self, request_id: Uuid) -> Result<Option<Target>, DbError> {
        for _ in 0..TARGET_LOOKUPS {
            if let Some(target) = self.target(request_id).await? {
                return Ok(Some(target));
            }
            tokio::time::sleep(TARGET_LOOKUP_PAUSE).await;
        }
        Ok(None)
    }

    async fn target(&self, request_id: Uuid) -> Result<Option<Target>, DbError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT i.tenant_id, i.channel_id, c.kind, c.config, i.reply_address, \
                   i.conversation_id, i.external_id \
                 FROM channel_inbox i JOIN channels c ON c.id = i.channel_id \
                 WHERE i.request_id = $1",
                &[&request_id],
            )
            .await?;
        Ok(row.map(|row| Target {
            tenant_id: row.get(0),
            channel_id: row.get(1),
            kind: row.get(2),
            config: match row.get::<_, Value>(3) {
                Value::Object(config) => config,
                _ => Config::new(),
            },
            reply_address: row.get(4),
            conversation_id: row.get(5),
            message_id: row.get(6),
        }))
    }

    /// The stored answer's key and its delivery status so far.
    async fn answer(
        &self,
        target: &Target,
        message_id: &str,
    ) -> Result<Option<(i64, Option<String>)>, DbError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT m.pk, m.delivery_status FROM messages m \
                 JOIN conversations c ON c.pk = m.conversation_pk \
                 WHERE c.tenant_id = $1 AND c.id = $2 AND m.id = $3",
                &[&target.tenant_id, &target.conversation_id, &message_id],
            )
            .await?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }

    async fn send(
        &self,
        adapter: &dyn Adapter,
        target: &Target,
        message_pk: i64,
        text: &str,
    ) -> Result<(), DbError> {
        for part in platforms::split_text(text, adapter.max_text_chars()) {
            match self.send_part(adapter, target, part).await {
                Ok(external_id) => {
                    self.record_sent(target.channel_id, &external_id, message_pk)
                        .await?;
                    metrics::counter!("confab_channel_messages_sent_total", "kind" => adapter.kind())
                        .increment(1);
                }
                Err(e) => {
                    warn!(kind = adapter.kind(), error = %e, "could not send an answer");
                    metrics::counter!("confab_channel_send_failures_total", "kind" => adapter.kind())
                        .increment(1);
                    return self.record_failure(message_pk, &failure_details(&e)).await;
                }
            }
        }
        Ok(())
    }

    /// One message part, retried while the platform throttles or fails transiently.
    #[tracing::instrument(name = "send", skip_all, fields(kind = adapter.kind()))]
    async fn send_part(
        &self,
        adapter: &dyn Adapter,
        target: &Target,
        part: &str,
    ) -> Result<String, SendError> {
        let mut attempt = 1;
        (|| {
            adapter.send(
                &self.http,
                &self.settings.endpoints,
                &target.config,
                &target.reply_address,
                part,
            )
        })
        .retry(self.settings.retry_policy().backoff())
        .when(SendError::is_retryable)
        .adjust(retry::honour_retry_after)
        .notify(|e, wait| {
            info!(attempt, retry_in = ?wait, error = %e, "send failed; retrying");
            attempt += 1;
        })
        .await
    }

    async fn record_sent(
        &self,
        channel_id: Uuid,
        external_id: &str,
        message_pk: i64,
    ) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        // A status notification may have created the row first; keep whichever status is
        // further along. The table's trigger carries it over to the message.
        client
            .execute(
                "INSERT INTO channel_outbox (channel_id, external_id, message_pk, status) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (channel_id, external_id) DO UPDATE SET \
                   message_pk = EXCLUDED.message_pk, updated_at = now()",
                &[
                    &channel_id,
                    &external_id,
                    &message_pk,
                    &DeliveryStatus::Accepted.as_str(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn record_failure(&self, message_pk: i64, details: &Value) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE messages SET delivery_status = 'failed', delivery_error = $2 \
                 WHERE pk = $1",
                &[&message_pk, details],
            )
            .await?;
        Ok(())
    }
}

fn failure_details(error: &SendError) -> Value {
    match error {
        SendError::Rejected {
            code,
            message,
            details,
        } => json!({"code": code, "message": message, "details": details}),
        SendError::Throttled { code, message, .. } => {
            json!({"code": code, "message": message, "retries_exhausted": true})
        }
        SendError::Transient(message) => {
            json!({"code": "transient", "message": message, "retries_exhausted": true})
        }
    }
}
