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
    #[error("assistant {assistant}'s tools: {error}")]
    ToolSecrets {
        assistant: Uuid,
        error: SecretsError,
    },
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

/// What `reseal_secrets` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Resealed {
    #[serde(rename = "channels_resealed")]
    pub channels: u64,
    /// Assistants whose tools' secrets were resealed.
    #[serde(rename = "assistants_resealed")]
    pub assistants: u64,
}

/// Seal every channel's credentials and every assistant tool's secret under the first of
/// `secrets`' keys: those stored in plain (before encryption was turned on) and those sealed
/// with an older key. One transaction, so a secret that does not open (its key already
/// dropped) changes nothing.
pub async fn reseal_secrets(
    client: &mut tokio_postgres::Client,
    secrets: &SecretBox,
) -> Result<Resealed, AdminError> {
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
    progress.finish_and_clear();
    let assistants = reseal_tool_secrets(&tx, secrets).await?;
    tx.commit().await?;
    Ok(Resealed {
        channels: changed,
        assistants,
    })
}

/// Reseal the secrets of assistants' HTTP tools; how many assistants changed.
async fn reseal_tool_secrets(
    tx: &tokio_postgres::Transaction<'_>,
    secrets: &SecretBox,
) -> Result<u64, AdminError> {
    use confab_shared::tools::ServerTool;
    let rows = tx
        .query(
            "SELECT id, tools FROM assistants WHERE tools <> '[]' FOR UPDATE",
            &[],
        )
        .await?;
    let mut changed = 0;
    for row in rows {
        let id: Uuid = row.get(0);
        let Ok(mut tools) = serde_json::from_value::<Vec<ServerTool>>(row.get(1)) else {
            continue;
        };
        let mut resealed = false;
        for tool in &mut tools {
            let ServerTool::Http(tool) = tool else {
                continue;
            };
            if !secrets.value_needs_reseal(&tool.secret) {
                continue;
            }
            let field = ServerTool::secret_field(&tool.name);
            let plain = secrets
                .open_value(id, &field, &tool.secret)
                .map_err(|error| AdminError::ToolSecrets {
                    assistant: id,
                    error,
                })?;
            tool.secret = secrets.seal_value(id, &field, &plain);
            resealed = true;
        }
        if resealed {
            tx.execute(
                "UPDATE assistants SET tools = $2 WHERE id = $1",
                &[&id, &serde_json::json!(tools)],
            )
            .await?;
            changed += 1;
        }
    }
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
