//! The ingress application: the router of every API family, with the OpenAPI document built
//! from it, and the server's lifecycle (`Application::build` binds, `run_until_stopped` serves
//! until shutdown and drains).

use std::future::Future;
use std::net::SocketAddr;

use axum::middleware::from_fn_with_state;
use axum::{Extension, Router};
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::broker::{Broker, BrokerSettings};
use crate::config::{ConnectionLimits, IngressConfig};
use crate::http::{ApiRouter, AppState, HeavyWriteGate, OpenApiJson, metrics, request_id};
use crate::pipeline::Pipeline;
use crate::relay::SharedRoutes;
use crate::store::assistant_cache::AssistantCache;
use crate::store::key_cache::KeyCache;

mod family;
mod guard;
mod resume;
mod server;
mod stall;

pub use family::Family;
pub use guard::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES};

/// Every route of the ingress with the operations that document them, each API family behind
/// its own guard and panic answer, and counted under its own name in the metrics.
pub fn routes() -> ApiRouter {
    ApiRouter::new()
        .merge(family(Family::Agents, crate::dialects::agents::router()))
        .merge(family(
            Family::IdentityChat,
            crate::dialects::identity_chat::router(),
        ))
        .merge(family(Family::AiHub, crate::dialects::ai_hub::router()))
        .merge(family(Family::OpenAi, crate::dialects::openai::router()))
        .merge(family(Family::Management, crate::api::router()))
        .merge(family(Family::Management, resume::router()))
        .merge(family(Family::Webhooks, crate::webhooks::router()))
        .merge(family(Family::Ops, crate::api::ops::router()))
}

/// The family's routes behind, from the outside in: the request count (which sees every answer,
/// a panic's included), the panic answer, and the guard. The operations endpoints get only the
/// panic answer: probes and scrapers are machines that send no bodies and have no error shape
/// to expect.
fn family<S: Clone + Send + Sync + 'static>(family: Family, routes: ApiRouter<S>) -> ApiRouter<S> {
    let catch_panic = CatchPanicLayer::custom(move |panic| guard::answer_panic(family, panic));
    if family == Family::Ops {
        return routes.map_router(|router| router.layer(catch_panic));
    }
    routes
        .with_edge_errors(family.takes_json_bodies())
        .map_router(|router| {
            router
                .layer(from_fn_with_state(family, guard::refuse_malformed))
                .layer(catch_panic)
                .layer(from_fn_with_state(family.name(), metrics::count_requests))
        })
}

/// The OpenAPI document of every route, as `GET /openapi.json` serves it.
pub fn openapi_document() -> serde_json::Value {
    routes().into_parts().1.to_json()
}

/// How a request's body is read: at most `max_bytes`, and never waiting longer than
/// `idle_timeout` for its next piece (a client that stalls mid-body is answered 400).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub idle_timeout: std::time::Duration,
}

/// The ingress's router, ready to serve.
pub fn app(state: AppState, body: BodyLimits) -> Router {
    let (router, doc) = routes().into_parts();
    router
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(Extension(OpenApiJson::new(&doc)))
        .layer(axum::middleware::from_fn(
            crate::dialects::identity_chat::web::cors::visitor_routes,
        ))
        // The web channel's CORS layer (above) decides by the channel a request names, so it
        // reads the database through the state, which a layer cannot take as handlers do.
        .layer(Extension(state.clone()))
        .layer(axum::middleware::from_fn(request_id::assign))
        .layer(axum::extract::DefaultBodyLimit::max(body.max_bytes))
        .layer(RequestBodyTimeoutLayer::new(body.idle_timeout))
        .with_state(state)
}

/// Unknown paths get JSON too, so that every answer of the ingress parses as JSON.
async fn no_route(uri: axum::http::Uri) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": {
            "code": "not_found",
            "message": format!("No route {}; see /openapi.json", uri.path()),
        }})),
    )
}

async fn no_method(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({"error": {
            "code": "method_not_allowed",
            "message": format!("{method} is not allowed on {}; see /openapi.json", uri.path()),
        }})),
    )
}

/// Forget the rate state of keys with their full burst again, and expired stream tokens, once a
/// minute. Several ingress processes may do this at once; the deletes are idempotent.
async fn housekeeping(db: Pool) {
    let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        every_minute.tick().await;
        let Ok(client) = db.get().await else {
            continue;
        };
        let swept = crate::store::forget_expired(&**client).await;
        if let Err(e) = swept {
            tracing::warn!(error = %e, "housekeeping failed");
        }
    }
}

/// How often the work queue's counts are read for the metrics.
const QUEUE_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Keep `confab_work_queue_messages` (jobs waiting) and `confab_work_queue_consumers` (worker
/// slots connected) current: what an operator scales workers on. Every ingress process
/// reports the same queue; dashboards take the max.
async fn sample_work_queue(broker: std::sync::Arc<Broker>) {
    let mut every = tokio::time::interval(QUEUE_SAMPLE_INTERVAL);
    loop {
        every.tick().await;
        match broker.work_queue().await {
            Ok(counts) => {
                ::metrics::gauge!("confab_work_queue_messages").set(f64::from(counts.messages));
                ::metrics::gauge!("confab_work_queue_consumers").set(f64::from(counts.consumers));
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the work queue's counts"),
        }
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    grace: std::time::Duration,
    _background: Background,
}

/// The ingress's tasks besides serving (the broker's supervisor, housekeeping, the work queue's
/// sampler): they end with the application, however it ends, so that an application stopped
/// in a process that goes on (a test's or the benchmark's) leaves no session behind.
struct Background(Vec<tokio::task::AbortHandle>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Db(#[from] confab_shared::db::DbError),
    #[error("{0}")]
    Config(#[from] confab_contract::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Application {
    /// Connect, bind `config.listen` (port 0 picks a free port) and prepare the router.
    pub async fn build(config: &IngressConfig) -> Result<Application, StartError> {
        let db = confab_shared::db::pool(&config.shared.database_url, config.database)?;
        let settings = BrokerSettings {
            nodes: confab_contract::BrokerNodes::parse(&config.shared.amqp_url)?,
            names: config.shared.names.clone(),
            queue_limits: config.shared.queue_limits,
            reply_mode: config.reply_mode,
            ingress_id: confab_shared::process::instance_id(),
        };
        let (broker, supervisor) = Broker::start(settings, SharedRoutes::default()).await;
        let keys = KeyCache::default();
        let state = AppState {
            pipeline: Pipeline::new(broker, db.clone(), config.job_deadline, config.stream_stall)
                .with_resume(
                    config.shared.resume_grace,
                    std::time::Duration::from_secs(
                        config.shared.queue_limits.resume_retention_secs.into(),
                    ),
                )
                .with_keys(keys.clone()),
            db,
            metrics: metrics::recorder(),
            rate_limit_per_min: config.rate_limit_per_min,
            webhook_max_age: config.webhook_max_age,
            secrets: config.secrets.clone(),
            heavy_writes: HeavyWriteGate::new(config.heavy_writes),
            knowledge: config.knowledge,
            visitors: config.visitors,
            assistants: AssistantCache::listening(&config.shared.database_url)?,
            keys,
        };
        if !state.secrets.is_enabled() {
            tracing::warn!("CONFAB_SECRET_KEYS is not set: channel secrets are stored unencrypted");
        }
        let background = Background(vec![
            supervisor,
            tokio::spawn(housekeeping(state.db.clone())).abort_handle(),
            tokio::spawn(sample_work_queue(state.broker().clone())).abort_handle(),
        ]);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let body = BodyLimits {
            max_bytes: config.max_body_bytes,
            idle_timeout: config.body_read_timeout,
        };
        Ok(Application {
            listener,
            router: app(state, body),
            limits: config.connection_limits,
            grace: config.shutdown_grace,
            _background: background,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serve until `shutdown` completes, then stop accepting and let open requests (streams
    /// included) finish for up to the configured grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        server::serve(
            self.listener,
            self.router,
            self.limits,
            shutdown,
            self.grace,
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod openapi_tests;

#[cfg(test)]
mod panic_tests;
