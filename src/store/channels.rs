//! Channels: how identities reach an assistant (web, WhatsApp, Telegram, custom). Each channel is
//! connected to one assistant, which answers there. Its `config` holds channel credentials and is
//! write-only: only the names of its keys are ever shown, and its credentials are sealed before
//! they are stored (`confab_shared::secrets`).

use confab_shared::secrets::SecretBox;
use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

pub const KINDS: &[&str] = &["web", "whatsapp", "telegram", "custom"];

#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub assistant_id: Uuid,
    /// The keys set in the channel's config; their values are never returned.
    pub config_keys: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A validated channel to store.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub name: String,
    pub kind: String,
    pub assistant_id: Uuid,
    pub config: serde_json::Map<String, serde_json::Value>,
}

fn columns() -> String {
    format!(
        "id, name, kind, assistant_id, \
         ARRAY(SELECT jsonb_object_keys(config) ORDER BY 1), {}, {}",
        crate::store::rfc3339("created_at"),
        crate::store::rfc3339("updated_at")
    )
}

fn from_row(row: &tokio_postgres::Row) -> Channel {
    Channel {
        id: row.get(0),
        name: row.get(1),
        kind: row.get(2),
        assistant_id: row.get(3),
        config_keys: row.get(4),
        created_at: row.get(5),
        updated_at: row.get(6),
    }
}

pub async fn create(
    client: &impl GenericClient,
    tenant_id: Uuid,
    new: &NewChannel,
    secrets: &SecretBox,
) -> Result<Channel, tokio_postgres::Error> {
    let id = Uuid::now_v7();
    let mut config = new.config.clone();
    secrets.seal_config(id, &mut config);
    let config = serde_json::Value::Object(config);
    let row = client
        .query_one(
            &format!(
                "INSERT INTO channels (id, tenant_id, name, kind, assistant_id, config) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {}",
                columns()
            ),
            &[
                &id,
                &tenant_id,
                &new.name,
                &new.kind,
                &new.assistant_id,
                &config,
            ],
        )
        .await?;
    Ok(from_row(&row))
}

pub async fn by_id(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Channel>, tokio_postgres::Error> {
    let row = crate::store::tenant_row(client, "channels", &columns(), tenant_id, id).await?;
    Ok(row.map(|row| from_row(&row)))
}

pub async fn list(
    client: &impl GenericClient,
    tenant_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Channel>, tokio_postgres::Error> {
    let rows =
        crate::store::tenant_page(client, "channels", &columns(), tenant_id, cursor, limit).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Apply a partial update: `None` fields stay; `config` keys are merged (a `null` removes one).
pub async fn update(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    name: Option<&str>,
    assistant_id: Option<Uuid>,
    config: Option<&serde_json::Map<String, serde_json::Value>>,
    secrets: &SecretBox,
) -> Result<Option<Channel>, tokio_postgres::Error> {
    let config = config.map(|c| {
        let mut c = c.clone();
        secrets.seal_config(id, &mut c);
        serde_json::Value::Object(c)
    });
    let row = client
        .query_opt(
            &format!(
                "UPDATE channels SET name = coalesce($3, name), \
                   assistant_id = coalesce($4, assistant_id), \
                   config = jsonb_strip_nulls(config || coalesce($5, '{{}}'::jsonb)), \
                   updated_at = now() \
                 WHERE tenant_id = $1 AND id = $2 RETURNING {}",
                columns()
            ),
            &[&tenant_id, &id, &name, &assistant_id, &config],
        )
        .await?;
    Ok(row.map(|row| from_row(&row)))
}

pub async fn delete(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "DELETE FROM channels WHERE tenant_id = $1 AND id = $2",
            &[&tenant_id, &id],
        )
        .await?;
    Ok(n > 0)
}

/// What a platform webhook needs of its channel: found by id alone, since the platform
/// proves itself with the channel's secret, not with an API key.
#[derive(Debug, Clone)]
pub struct WebhookChannel {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: String,
    pub assistant_id: Uuid,
    pub config: serde_json::Map<String, serde_json::Value>,
}

pub async fn for_webhook(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<WebhookChannel>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT tenant_id, kind, assistant_id, config FROM channels WHERE id = $1",
            &[&id],
        )
        .await?;
    // Fallible reads: `config` is JSON a client wrote.
    row.map(|row| {
        Ok(WebhookChannel {
            id,
            tenant_id: row.try_get(0)?,
            kind: row.try_get(1)?,
            assistant_id: row.try_get(2)?,
            config: match row.try_get::<_, serde_json::Value>(3)? {
                serde_json::Value::Object(config) => config,
                _ => serde_json::Map::new(),
            },
        })
    })
    .transpose()
}

/// Every channel's id and stored config, locked until the transaction ends: for resealing
/// secrets under a new key.
pub async fn all_configs_for_update(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<Vec<(Uuid, serde_json::Map<String, serde_json::Value>)>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT id, config FROM channels ORDER BY id FOR UPDATE",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let config = match row.try_get::<_, serde_json::Value>(1)? {
                serde_json::Value::Object(config) => config,
                _ => serde_json::Map::new(),
            };
            Ok((row.try_get(0)?, config))
        })
        .collect()
}

/// Replace a channel's stored config as it is (already sealed).
pub async fn set_stored_config(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
    config: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), tokio_postgres::Error> {
    let config = serde_json::Value::Object(config.clone());
    tx.execute(
        "UPDATE channels SET config = $2 WHERE id = $1",
        &[&id, &config],
    )
    .await?;
    Ok(())
}
