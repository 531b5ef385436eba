//! confab's assistant worker: a stateless process that consumes chat jobs from RabbitMQ,
//! assembles context from Postgres, streams the model's answer back as reply events and stores
//! the turn. Run any number of them; each takes at most `concurrency` jobs at once.

pub mod config;
mod consume;
pub mod context;
mod delivery;
mod inflight;
pub mod knowledge;
pub mod metrics;
pub mod model;
mod order;
pub mod readiness;
mod reply;
pub mod store;
mod summary;
pub mod tokenizer;
pub mod tools;
mod turn;

use std::future::Future;
use std::sync::Arc;

pub use config::{WorkerArgs, WorkerConfig};
use tokio::sync::watch;
use tracing::{info, warn};

use confab_shared::db::DbError;
use confab_shared::process::instance_id;

use crate::inflight::InFlight;
use crate::model::{Builtin, Models, OpenAi};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] DbError),
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error(transparent)]
    Broker(#[from] consume::SessionError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up the HTTP client of server-side tools: {0}")]
    Tools(String),
}

/// Run one worker until `shutdown` completes, then finish or return its jobs and exit.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let pool = confab_shared::db::pool(&config.shared.database_url, config.database)?;
    let models = Models::new(
        Builtin::new(config.builtin_latency, config.builtin_token_delay),
        OpenAi::new(
            &config.openai_base_url,
            &config.openai_api_key,
            config.model_timeout,
        )?,
    );
    let worker_id = instance_id();
    let (stop, stopped) = watch::channel(false);
    let roles = usize::from(config.roles.chat) + usize::from(config.roles.delivery);
    let readiness = readiness::Readiness::new(roles);
    tokio::spawn(async move {
        shutdown.await;
        stop.send_replace(true);
    });
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| WorkerError::Metrics { addr, source })?;
        info!(%addr, "serving GET /metrics");
        // Installed before any job runs, so no measurement is lost to a recorder-less start.
        let handle = confab_shared::metrics::recorder();
        tokio::spawn(metrics::serve(
            listener,
            handle,
            readiness.clone(),
            stopped.clone(),
        ));
    }
    let delivery = config.roles.delivery.then(|| {
        let (config, pool, worker_id, readiness, stopped) = (
            config.clone(),
            pool.clone(),
            worker_id.clone(),
            readiness.clone(),
            stopped.clone(),
        );
        tokio::spawn(
            async move { delivery::run(&config, pool, &worker_id, readiness, stopped).await },
        )
    });
    if config.roles.chat {
        let env = Arc::new(turn::TurnEnv {
            worker_id,
            pool: pool.clone(),
            models,
            inflight: InFlight::default(),
            coalesce: config.coalesce,
            default_context_window: config.default_context_window,
            windows: store::windows::ContextWindows::new(config.default_context_window),
            final_attempt: config.shared.queue_limits.delivery_limit + 1,
            resume_grace: config.shared.resume_grace,
            reply_log: (config.shared.queue_limits.resume_retention_secs > 0)
                .then(|| config.shared.names.reply_log()),
            tools: tools::ToolRunner::new(
                config.delivery.secrets.clone(),
                pool.clone(),
                config.tools.result_max_bytes,
            )
            .map_err(|e| WorkerError::Tools(e.to_string()))?,
            tool_limits: config.tools,
        });
        consume::run_sessions(&config, env, readiness, stopped).await?;
    }
    if let Some(delivery) = delivery {
        match delivery.await {
            Ok(result) => result?,
            Err(e) => warn!(error = %e, "the delivery role panicked"),
        }
    }
    info!("worker stopped");
    Ok(())
}
