//! The state every handler can reach.

use std::sync::Arc;

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::broker::Broker;
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
}

impl AppState {
    pub fn broker(&self) -> &Arc<Broker> {
        self.pipeline.broker()
    }
}
