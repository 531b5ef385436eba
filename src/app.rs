//! The ingress application: the router of every API family, with the OpenAPI document built
//! from it, and the server's lifecycle (`Application::build` binds, `run_until_stopped` serves
//! until shutdown and drains).

use std::future::Future;
use std::net::SocketAddr;

use axum::middleware::from_fn_with_state;
use axum::serve::ListenerExt;
use axum::{Extension, Router};
use deadpool_postgres::Pool;
use tokio::net::TcpListener;

use crate::broker::{Broker, BrokerSettings};
use crate::config::IngressConfig;
use crate::http::{ApiRouter, AppState, HeavyWriteGate, OpenApiJson, metrics, request_id};
use crate::pipeline::Pipeline;
use crate::relay::SharedRoutes;

/// Every route of the ingress with the operations that document them; each API family's
/// requests are counted under its own name in the metrics.
pub fn routes() -> ApiRouter {
    ApiRouter::new()
        .merge(counted("agents", crate::dialects::agents::router()))
        .merge(counted(
            "identity_chat",
            crate::dialects::identity_chat::router(),
        ))
        .merge(counted("ai_hub", crate::dialects::ai_hub::router()))
        .merge(counted("openai", crate::dialects::openai::router()))
        .merge(counted("management", crate::api::router()))
        .merge(counted("webhooks", crate::webhooks::router()))
        .merge(crate::api::ops::router())
}

fn counted(family: &'static str, routes: ApiRouter) -> ApiRouter {
    routes.map_router(|router| router.layer(from_fn_with_state(family, metrics::count_requests)))
}

/// The OpenAPI document of every route, as `GET /openapi.json` serves it.
pub fn openapi_document() -> serde_json::Value {
    routes().into_parts().1.to_json()
}

/// The ingress's router, ready to serve.
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    let (router, doc) = routes().into_parts();
    router
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(Extension(OpenApiJson::new(&doc)))
        .layer(axum::middleware::from_fn(request_id::assign))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
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

pub struct Application {
    listener: TcpListener,
    router: Router,
    grace: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Db(#[from] confab_shared::db::DbError),
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
            amqp_url: config.shared.amqp_url.clone(),
            names: config.shared.names.clone(),
            queue_limits: config.shared.queue_limits,
            reply_mode: config.reply_mode,
            ingress_id: confab_shared::process::instance_id(),
        };
        let broker = Broker::start(settings, SharedRoutes::default()).await;
        let state = AppState {
            pipeline: Pipeline::new(broker, db.clone(), config.job_deadline),
            db,
            metrics: metrics::recorder(),
            rate_limit_per_min: config.rate_limit_per_min,
            webhook_max_age: config.webhook_max_age,
            secrets: config.secrets.clone(),
            heavy_writes: HeavyWriteGate::new(config.heavy_writes),
            knowledge: config.knowledge,
        };
        if !state.secrets.is_enabled() {
            tracing::warn!("CONFAB_SECRET_KEYS is not set: channel secrets are stored unencrypted");
        }
        tokio::spawn(housekeeping(state.db.clone()));
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        Ok(Application {
            listener,
            router: app(state, config.max_body_bytes),
            grace: config.shutdown_grace,
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
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let grace = self.grace;
        // SSE events are small writes: without TCP_NODELAY, Nagle's algorithm holds each one back
        // until the previous is acknowledged, which delayed ACKs stretch to ~40 ms.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, self.router).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut stop_rx = stop_rx;
        tokio::select! {
            result = serve => result,
            _ = async {
                let _ = stop_rx.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("grace period over; closing the remaining connections");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod openapi_tests;
