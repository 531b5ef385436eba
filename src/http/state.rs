//! The state every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::broker::Broker;
use crate::config::{HeavyWrites, KnowledgeLimits, VisitorLimits};
use crate::pipeline::Pipeline;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Pool,
    pub pipeline: Pipeline,
    pub metrics: PrometheusHandle,
    /// Requests per minute for keys without a limit of their own.
    pub rate_limit_per_min: i32,
    /// Channel messages older than this are stored but not answered.
    pub webhook_max_age: std::time::Duration,
    /// Seals channel secrets on the way in, opens them for webhooks.
    pub secrets: confab_shared::secrets::SecretBox,
    /// The bounded share of the pool that heavy writes may hold.
    pub heavy_writes: HeavyWriteGate,
    /// What one document and one folder may hold.
    pub knowledge: KnowledgeLimits,
    /// What the visitors of public web channels may do.
    pub visitors: VisitorLimits,
    /// The assistants looked up by slug, kept true by the database's notifications.
    pub assistants: crate::store::assistant_cache::AssistantCache,
    /// The API keys chat turns came with, so that a turn's key is checked where it is recorded.
    pub keys: crate::store::key_cache::KeyCache,
}

/// Heavy writes (document uploads) each hold one of a few permits while they use the database,
/// so however many arrive at once they hold at most that many pool connections and chat and
/// management keep the rest.
#[derive(Clone)]
pub struct HeavyWriteGate {
    permits: Arc<Semaphore>,
    wait: Duration,
}

/// No permit came free within the wait: the heavy writes' share is in use.
#[derive(Debug, thiserror::Error)]
#[error("every heavy-write permit is in use")]
pub struct HeavyWritesBusy;

impl HeavyWriteGate {
    pub fn new(settings: HeavyWrites) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.permits)),
            wait: settings.wait,
        }
    }

    /// A permit, held until it is dropped; or `HeavyWritesBusy` after the configured wait.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, HeavyWritesBusy> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await;
        // The semaphore is never closed, so an acquire error cannot happen; treat it as busy.
        permit
            .map_err(|_| HeavyWritesBusy)?
            .map_err(|_| HeavyWritesBusy)
    }
}

impl AppState {
    pub fn broker(&self) -> &Arc<Broker> {
        self.pipeline.broker()
    }
}
