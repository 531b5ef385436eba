//! Identities: the end users who talk to assistants, with optional external ids (a phone number,
//! a platform user id) unique per tenant, and a free-form profile.

use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

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
        crate::db::rfc3339("created_at"),
        crate::db::rfc3339("updated_at")
    )
}

fn from_row(row: &tokio_postgres::Row) -> Identity {
    Identity {
        id: row.get(0),
        name: row.get(1),
        external_id: row.get(2),
        profile: row.get(3),
        created_at: row.get(4),
        updated_at: row.get(5),
    }
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
        .map(|row| from_row(&row))
        .map_err(|e| unique_violation(e, external_id))
}

pub async fn by_id(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Identity>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {} FROM identities WHERE tenant_id = $1 AND id = $2",
                columns()
            ),
            &[&tenant_id, &id],
        )
        .await?;
    Ok(row.map(|row| from_row(&row)))
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
    Ok(rows.iter().map(from_row).collect())
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
        .map(|row| row.map(|row| from_row(&row)))
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
