//! Identities: the end users who talk to assistants, with optional external ids (a phone number,
//! a platform user id) unique per tenant, and a free-form profile.

use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

pub use confab_shared::memory::{MEMORY_COLUMNS, Memory, MemoryUpdate, write_memory};

#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub id: Uuid,
    pub name: Option<String>,
    pub external_id: Option<String>,
    pub profile: serde_json::Value,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("an identity with external id '{0}' already exists")]
    ExternalIdTaken(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

fn columns() -> String {
    format!(
        "id, name, external_id, profile, {}, {}",
        crate::store::rfc3339("created_at"),
        crate::store::rfc3339("updated_at")
    )
}

/// Fallible reads: `profile` is JSON a client wrote, and one that cannot be read back must be an
/// error of this request, never a panic that closes the socket.
fn from_row(row: &tokio_postgres::Row) -> Result<Identity, tokio_postgres::Error> {
    Ok(Identity {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        external_id: row.try_get(2)?,
        profile: row.try_get(3)?,
        created_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
    })
}

fn unique_violation(error: tokio_postgres::Error, external_id: Option<&str>) -> IdentityError {
    if error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        IdentityError::ExternalIdTaken(external_id.unwrap_or_default().to_owned())
    } else {
        error.into()
    }
}

pub async fn create(
    client: &impl GenericClient,
    tenant_id: Uuid,
    name: Option<&str>,
    external_id: Option<&str>,
    profile: &serde_json::Value,
) -> Result<Identity, IdentityError> {
    client
        .query_one(
            &format!(
                "INSERT INTO identities (id, tenant_id, name, external_id, profile) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING {}",
                columns()
            ),
            &[&Uuid::now_v7(), &tenant_id, &name, &external_id, profile],
        )
        .await
        .and_then(|row| from_row(&row))
        .map_err(|e| unique_violation(e, external_id))
}

pub async fn by_id(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Identity>, tokio_postgres::Error> {
    let row = crate::store::tenant_row(client, "identities", &columns(), tenant_id, id).await?;
    row.map(|row| from_row(&row)).transpose()
}

/// A page of identities, newest first, optionally only the one with `external_id`.
pub async fn list(
    client: &impl GenericClient,
    tenant_id: Uuid,
    external_id: Option<&str>,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Identity>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM identities WHERE tenant_id = $1 \
                   AND ($2::text IS NULL OR external_id = $2) \
                   AND ($3::uuid IS NULL OR id < $3) \
                 ORDER BY id DESC LIMIT $4",
                columns()
            ),
            &[&tenant_id, &external_id, &cursor, &limit],
        )
        .await?;
    rows.iter().map(from_row).collect()
}

/// Apply a partial update; `profile` keys are merged (a `null` removes one).
pub async fn update(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    name: Option<&str>,
    external_id: Option<&str>,
    profile: Option<&serde_json::Value>,
) -> Result<Option<Identity>, IdentityError> {
    client
        .query_opt(
            &format!(
                "UPDATE identities SET name = coalesce($3, name), \
                   external_id = coalesce($4, external_id), \
                   profile = jsonb_strip_nulls(profile || coalesce($5, '{{}}'::jsonb)), \
                   updated_at = now() \
                 WHERE tenant_id = $1 AND id = $2 RETURNING {}",
                columns()
            ),
            &[&tenant_id, &id, &name, &external_id, &profile],
        )
        .await
        .and_then(|row| row.map(|row| from_row(&row)).transpose())
        .map_err(|e| unique_violation(e, external_id))
}

pub async fn delete(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "DELETE FROM identities WHERE tenant_id = $1 AND id = $2",
            &[&tenant_id, &id],
        )
        .await?;
    Ok(n > 0)
}

/// The parts of memory that are key-value objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Preferences,
    Data,
    Associations,
}

impl Section {
    pub fn parse(name: &str) -> Option<Section> {
        match name {
            "preferences" => Some(Section::Preferences),
            "data" => Some(Section::Data),
            "associations" => Some(Section::Associations),
            _ => None,
        }
    }

    /// The column; a fixed name, never input, so it can be spliced into SQL.
    fn column(self) -> &'static str {
        match self {
            Section::Preferences => "preferences",
            Section::Data => "data",
            Section::Associations => "associations",
        }
    }
}

pub async fn memory(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Memory>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!("SELECT {MEMORY_COLUMNS} FROM identities WHERE tenant_id = $1 AND id = $2"),
            &[&tenant_id, &id],
        )
        .await?;
    row.map(|row| Memory::from_row(&row)).transpose()
}

/// Set (`Some`) or remove (`None`) one key of a memory section.
pub async fn set_memory_key(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    section: Section,
    key: &str,
    value: Option<&serde_json::Value>,
) -> Result<Option<Memory>, tokio_postgres::Error> {
    let column = section.column();
    let row = match value {
        Some(value) => {
            client
                .query_opt(
                    &format!(
                        "UPDATE identities SET {column} = {column} || jsonb_build_object($3::text, $4::jsonb), \
                           updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING {MEMORY_COLUMNS}"
                    ),
                    &[&tenant_id, &id, &key, value],
                )
                .await?
        }
        None => {
            client
                .query_opt(
                    &format!(
                        "UPDATE identities SET {column} = {column} - $3::text, updated_at = now() \
                         WHERE tenant_id = $1 AND id = $2 RETURNING {MEMORY_COLUMNS}"
                    ),
                    &[&tenant_id, &id, &key],
                )
                .await?
        }
    };
    row.map(|row| Memory::from_row(&row)).transpose()
}

/// A channel platform's user (a WhatsApp number, a Telegram user) as the tenant's identity:
/// found by any of their platform ids, created on their first message. The profile name fills
/// an identity that has none; new platform ids are remembered so the user is recognised by
/// whichever id a later message carries. Concurrent first messages agree on one identity.
pub async fn for_platform_user(
    client: &impl GenericClient,
    tenant_id: Uuid,
    kind: &str,
    external_id: &str,
    other_ids: &[String],
    name: Option<&str>,
) -> Result<Uuid, tokio_postgres::Error> {
    let ids: Vec<&str> = std::iter::once(external_id)
        .chain(other_ids.iter().map(String::as_str))
        .collect();
    let found = client
        .query_opt(
            "UPDATE identities SET \
               name = coalesce(name, $3), \
               platform_ids = ARRAY(SELECT DISTINCT unnest(platform_ids || $2::text[])), \
               updated_at = now() \
             WHERE id = (SELECT id FROM identities WHERE tenant_id = $1 \
                           AND (external_id = ANY($2) OR platform_ids && $2) \
                         ORDER BY external_id = $4 DESC NULLS LAST LIMIT 1) \
             RETURNING id",
            &[&tenant_id, &ids, &name, &external_id],
        )
        .await?;
    if let Some(row) = found {
        return Ok(row.get(0));
    }
    let profile = serde_json::json!({ "channel": kind });
    let row = client
        .query_one(
            "INSERT INTO identities (id, tenant_id, name, external_id, profile, platform_ids) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, external_id) DO UPDATE SET updated_at = now() \
             RETURNING id",
            &[
                &Uuid::now_v7(),
                &tenant_id,
                &name,
                &external_id,
                &profile,
                &ids,
            ],
        )
        .await?;
    Ok(row.get(0))
}
