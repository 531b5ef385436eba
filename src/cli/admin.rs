//! Bootstrapping commands that would otherwise mean editing tables by hand.

use serde_json::json;
use tokio_postgres::NoTls;

use crate::store::tenants::{self, TenantError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Migrate(#[from] crate::store::migrate::MigrateError),
}

/// A single connection for one-off commands, its driver running in the background.
pub async fn connect(database_url: &str) -> Result<tokio_postgres::Client, AdminError> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "database connection ended");
        }
    });
    Ok(client)
}

/// Create a tenant and its first API key; the key is in the result and nowhere else.
pub async fn create_tenant(
    client: &mut tokio_postgres::Client,
    name: &str,
) -> Result<serde_json::Value, AdminError> {
    let tx = client.transaction().await?;
    let tenant_id = tenants::create_tenant(&tx, name).await?;
    let key = tenants::create_key(&tx, tenant_id, "initial", None).await?;
    tx.commit().await?;
    Ok(json!({
        "tenant_id": tenant_id,
        "name": name,
        "api_key": key.secret,
        "api_key_id": key.id,
    }))
}
