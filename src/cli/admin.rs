//! Bootstrapping commands that would otherwise mean editing tables by hand.

use confab_shared::secrets::{SecretBox, SecretsError};
use serde_json::json;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::store::tenants::{self, TenantError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Migrate(#[from] crate::store::migrate::MigrateError),
    #[error("channel {channel}: {error}")]
    Secrets { channel: Uuid, error: SecretsError },
    #[error("CONFAB_SECRET_KEYS is not set: there is no key to seal with")]
    NoSecretKeys,
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

/// Seal every channel's credentials under the first of `secrets`' keys: those stored in plain
/// (before encryption was turned on) and those sealed with an older key. One transaction, so a
/// secret that does not open (its key already dropped) changes nothing. How many channels
/// changed.
pub async fn reseal_secrets(
    client: &mut tokio_postgres::Client,
    secrets: &SecretBox,
) -> Result<u64, AdminError> {
    if !secrets.is_enabled() {
        return Err(AdminError::NoSecretKeys);
    }
    let tx = client.transaction().await?;
    let mut changed = 0;
    let configs = crate::store::channels::all_configs_for_update(&tx).await?;
    // A tenant with many channels waits a while: show how far it got (on a terminal only).
    let progress = channel_progress(configs.len() as u64);
    for (id, mut config) in configs {
        progress.inc(1);
        if !secrets.needs_reseal(&config) {
            continue;
        }
        secrets
            .open_config(id, &mut config)
            .map_err(|error| AdminError::Secrets { channel: id, error })?;
        secrets.seal_config(id, &mut config);
        crate::store::channels::set_stored_config(&tx, id, &config).await?;
        changed += 1;
    }
    tx.commit().await?;
    progress.finish_and_clear();
    Ok(changed)
}

/// Channels done of `total`, with rate and time left, on stderr when it is a terminal.
fn channel_progress(total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let target = if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), target);
    let style = indicatif::ProgressStyle::with_template(
        "[{elapsed_precise}] [{wide_bar}] {pos}/{len} channels ({per_sec}, {eta} left)",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
