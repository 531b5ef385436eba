//! `confab dev`: the whole stack on one machine against local RabbitMQ and Postgres. Migrates,
//! makes sure a demo tenant and assistant exist, mints a fresh key for this run, starts worker
//! processes, serves the ingress and prints a curl line that works as pasted.

use std::time::Duration;

use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::cli::admin::{self, AdminError};
use crate::config::IngressConfig;
use crate::store::assistants::{self, NewAssistant};
use crate::store::migrate;
use crate::store::tenants;

pub const DEMO_TENANT: &str = "demo";
pub const DEMO_SLUG: &str = "support-agent";
const DEMO_INSTRUCTIONS: &str = "You are the support agent of confab, a conversation service. \
    Our business hours are 9:00 to 17:00, Monday to Friday. \
    confab relays each chat turn through RabbitMQ to workers that remember the conversation in Postgres. \
    Refunds are processed within five business days.";

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("cannot start a worker process: {0}")]
    Spawn(std::io::Error),
    #[error(transparent)]
    Start(#[from] crate::app::StartError),
    #[error(transparent)]
    Assistant(#[from] assistants::AssistantError),
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

impl From<tokio_postgres::Error> for DevError {
    fn from(e: tokio_postgres::Error) -> Self {
        DevError::Admin(e.into())
    }
}

/// The demo tenant's id and a key minted for this run.
async fn demo_tenant(
    client: &mut tokio_postgres::Client,
) -> Result<(uuid::Uuid, String), DevError> {
    let tx = client.transaction().await?;
    let existing = tx
        .query_opt(
            "SELECT id FROM tenants WHERE name = $1 ORDER BY created_at LIMIT 1",
            &[&DEMO_TENANT],
        )
        .await?;
    let tenant_id = match existing {
        Some(row) => row.get(0),
        None => tenants::create_tenant(&tx, DEMO_TENANT)
            .await
            .map_err(AdminError::from)?,
    };
    let demo = NewAssistant {
        name: "Support Agent".into(),
        slug: DEMO_SLUG.into(),
        description: "The demo assistant of `confab dev`".into(),
        instructions: DEMO_INSTRUCTIONS.into(),
        model: "builtin".into(),
        deployed: true,
        folder_ids: Vec::new(),
        tools: Vec::new(),
    };
    if assistants::by_slug(&tx, tenant_id, DEMO_SLUG)
        .await?
        .is_none()
    {
        assistants::create(&tx, tenant_id, uuid::Uuid::now_v7(), &demo).await?;
    }
    let key = tenants::create_key(&tx, tenant_id, "confab dev", None)
        .await
        .map_err(AdminError::from)?;
    tx.commit().await?;
    Ok((tenant_id, key.secret))
}

fn spawn_workers(count: usize) -> Result<Vec<Child>, DevError> {
    let exe = std::env::current_exe().map_err(DevError::Spawn)?;
    (0..count)
        .map(|_| {
            Command::new(&exe)
                .arg("worker")
                .kill_on_drop(true)
                .spawn()
                .map_err(DevError::Spawn)
        })
        .collect()
}

/// Ask workers to stop the way an orchestrator would (SIGTERM), then wait for them.
async fn stop_workers(workers: &mut [Child]) {
    for worker in workers.iter() {
        if let Some(pid) = worker.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
    }
    for worker in workers.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(35), worker.wait())
            .await
            .is_err()
        {
            warn!("worker did not stop in time; killing it");
            let _ = worker.kill().await;
        }
    }
}

pub async fn run(config: IngressConfig, workers: usize) -> Result<(), DevError> {
    let mut client = admin::connect(&config.shared.database_url).await?;
    let applied = migrate::run(&mut client).await.map_err(AdminError::from)?;
    info!(?applied, "database migrated");
    let (_tenant, key) = demo_tenant(&mut client).await?;
    drop(client);
    let mut children = spawn_workers(workers)?;
    let app = crate::Application::build(&config).await?;
    let addr = app.local_addr();
    println!(
        "\nconfab is running on http://{addr} with {workers} worker processes.\n\n\
         Ask the demo assistant (JSON):\n\n  \
         curl -s http://{addr}/v1/api/chat/{DEMO_SLUG} -H 'Authorization: Bearer {key}' \
         -H 'Content-Type: application/json' -d '{{\"message\": \"What are your business hours?\"}}'\n\n\
         Stream the answer (SSE):\n\n  \
         curl -N http://{addr}/v1/api/chat/{DEMO_SLUG} -H 'Authorization: Bearer {key}' \
         -H 'Content-Type: application/json' -d '{{\"message\": \"How fast are refunds?\", \"stream\": true}}'\n"
    );
    let served = app
        .run_until_stopped(confab_shared::process::shutdown_signal())
        .await
        .map_err(DevError::Serve);
    stop_workers(&mut children).await;
    served
}
