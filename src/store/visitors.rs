//! Visitors of public web channels: the channels a page may open a session on, the visitor
//! tokens sessions hand out (short-lived, bound to one identity on one channel), the visitor's
//! own conversation as the page shows it, and the visitor rate limits.

use confab_shared::secrets::SecretBox;
use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::tenants::{TenantError, digest, random_token};

/// A visitor token: what a page sends with each call.
pub const TOKEN_PREFIX: &str = "cfw_";
/// A visitor key: the anonymous visitor's own secret, kept by the page to be recognised on
/// return; only its digest is stored (in the identity's `external_id`).
pub const KEY_PREFIX: &str = "cfv_";

/// A `web` channel whose config makes it public.
#[derive(Debug, Clone)]
pub struct PublicChannel {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub allowed_origins: Vec<String>,
    /// The key a site's backend signs its users' ids with, if the channel has one.
    pub identity_secret: Option<String>,
}

/// The public web channel `id`, if there is one; its secret opened.
pub async fn public_channel(
    client: &impl GenericClient,
    id: Uuid,
    secrets: &SecretBox,
) -> Result<Option<PublicChannel>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT tenant_id, config FROM channels \
             WHERE id = $1 AND kind = 'web' AND config->'public' = 'true'::jsonb",
            &[&id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut config = match row.try_get::<_, serde_json::Value>(1)? {
        serde_json::Value::Object(config) => config,
        _ => serde_json::Map::new(),
    };
    // A secret sealed under a key this process lacks cannot verify anything: no signed users.
    let opened = secrets.open_config(id, &mut config).is_ok();
    let allowed_origins = config
        .get("allowed_origins")
        .and_then(|o| o.as_array())
        .map(|origins| {
            origins
                .iter()
                .filter_map(|o| o.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let identity_secret = config
        .get("identity_secret")
        .and_then(|s| s.as_str())
        .filter(|_| opened)
        .map(str::to_owned);
    Ok(Some(PublicChannel {
        id,
        tenant_id: row.try_get(0)?,
        allowed_origins,
        identity_secret,
    }))
}

/// A new visitor key.
pub fn new_key() -> Result<String, getrandom::Error> {
    random_token(KEY_PREFIX)
}

/// The `external_id` of the anonymous visitor holding `key`.
pub fn anonymous_external_id(key: &str) -> String {
    format!("web-visitor:{}", hex::encode(digest(key)))
}

/// Mint a visitor token for `identity_id` on `channel`, good for `ttl_secs`.
pub async fn create_token(
    client: &impl GenericClient,
    channel: &PublicChannel,
    identity_id: Uuid,
    ttl_secs: i32,
) -> Result<String, TenantError> {
    let token = random_token(TOKEN_PREFIX)?;
    client
        .execute(
            "INSERT INTO visitor_tokens (digest, tenant_id, channel_id, identity_id, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
            &[
                &digest(&token),
                &channel.tenant_id,
                &channel.id,
                &identity_id,
                &f64::from(ttl_secs),
            ],
        )
        .await?;
    Ok(token)
}

/// Who an unexpired visitor token is, on a channel that is still public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visitor {
    pub tenant_id: Uuid,
    pub channel_id: Uuid,
    pub identity_id: Uuid,
}

pub async fn by_token(
    client: &impl GenericClient,
    token: &str,
) -> Result<Option<Visitor>, tokio_postgres::Error> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT t.tenant_id, t.channel_id, t.identity_id FROM visitor_tokens t \
             JOIN channels c ON c.id = t.channel_id \
             WHERE t.digest = $1 AND t.expires_at > now() AND c.config->'public' = 'true'::jsonb",
            &[&digest(token)],
        )
        .await?;
    row.map(|row| {
        Ok(Visitor {
            tenant_id: row.try_get(0)?,
            channel_id: row.try_get(1)?,
            identity_id: row.try_get(2)?,
        })
    })
    .transpose()
}

/// Whether the tenant's conversation `id` is the visitor's own, on its channel.
pub async fn holds_conversation(
    client: &impl GenericClient,
    visitor: &Visitor,
    id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM conversations WHERE tenant_id = $1 AND id = $2                AND identity_id = $3 AND channel_id = $4",
            &[
                &visitor.tenant_id,
                &id,
                &visitor.identity_id,
                &visitor.channel_id,
            ],
        )
        .await?;
    Ok(row.is_some())
}

/// One turn of the visitor's conversation, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ShownMessage {
    pub id: String,
    pub role: String,
    pub content: String,
    pub status: String,
    pub created_at: String,
}

/// The visitor's open conversation on the channel: its id and its latest `limit` user and
/// assistant turns, oldest first; `None` before the first turn.
pub async fn conversation(
    client: &impl GenericClient,
    visitor: &Visitor,
    limit: i64,
) -> Result<Option<(String, Vec<ShownMessage>)>, tokio_postgres::Error> {
    let found = client
        .query_opt(
            "SELECT pk, id FROM conversations WHERE tenant_id = $1 AND identity_id = $2 \
               AND channel_id = $3 AND closed_at IS NULL",
            &[
                &visitor.tenant_id,
                &visitor.identity_id,
                &visitor.channel_id,
            ],
        )
        .await?;
    let Some(found) = found else { return Ok(None) };
    let pk: i64 = found.try_get(0)?;
    let rows = client
        .query(
            &format!(
                "SELECT id, role, content, status, created_at FROM ( \
                   SELECT pk, id, role, content, status, {} AS created_at FROM messages \
                   WHERE conversation_pk = $1 AND role IN ('user', 'assistant') \
                   ORDER BY pk DESC LIMIT $2 \
                 ) latest ORDER BY pk",
                super::rfc3339("created_at")
            ),
            &[&pk, &limit],
        )
        .await?;
    let messages = rows
        .iter()
        .map(|row| {
            Ok(ShownMessage {
                id: row.try_get(0)?,
                role: row.try_get(1)?,
                content: row.try_get(2)?,
                status: row.try_get(3)?,
                created_at: row.try_get(4)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(Some((found.try_get(1)?, messages)))
}

/// Admit one request of `subject` under `limit_per_min` (GCRA, as `tenants::use_key`): `None`
/// if admitted, else the whole seconds to wait. A refused request changes nothing.
pub async fn admit(
    client: &impl GenericClient,
    subject: &str,
    limit_per_min: i32,
) -> Result<Option<u64>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "WITH p AS (SELECT (60000000 / greatest($2::int4, 1)) * interval '1 microsecond' AS step), \
             g AS ( \
               INSERT INTO visitor_rate AS r (subject, tat) SELECT $1, now() + step FROM p \
               ON CONFLICT (subject) DO UPDATE \
                 SET tat = greatest(r.tat, now()) + (SELECT step FROM p) \
                 WHERE greatest(r.tat, now()) + (SELECT step FROM p) \
                       <= now() + interval '1 minute' \
               RETURNING tat \
             ) \
             SELECT EXISTS (SELECT 1 FROM g), \
                    greatest(1, ceil(extract(epoch FROM coalesce( \
                      (SELECT tat FROM visitor_rate WHERE subject = $1 FOR NO KEY UPDATE), \
                      now() + interval '1 minute' \
                    ) + (SELECT step FROM p) - interval '1 minute' - now())))::int8",
            &[&subject, &limit_per_min],
        )
        .await?;
    let admitted: bool = row.try_get(0)?;
    let wait: i64 = row.try_get(1)?;
    Ok((!admitted).then_some(wait.unsigned_abs()))
}

/// SQL that forgets expired visitor tokens and visitor rate state whose `tat` has passed.
pub const FORGET_EXPIRED: &str = "DELETE FROM visitor_tokens WHERE expires_at < now(); \
     DELETE FROM visitor_rate WHERE tat < now()";
