//! Operations endpoints: `/healthz` (the process is alive), `/readyz` (broker and database are
//! reachable), `/metrics` (Prometheus text format) and `/openapi.json` (the OpenAPI document of
//! every route). None takes credentials.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::json;

use crate::http::openapi::schema::{any_object, enum_of, record, reference, string};
use crate::http::{ApiRouter, AppState, Auth, OpenApiJson, Operation, Reply};

fn op(id: &'static str, summary: &'static str) -> Operation {
    Operation::new(id, summary)
        .tag("operations")
        .auth(Auth::None)
}

pub fn router() -> ApiRouter {
    let up_down = || enum_of(&["up", "down"]);
    ApiRouter::new()
        .tag(
            "operations",
            "Liveness, readiness, metrics and this document; no credentials",
        )
        .component("Health", record([("status", enum_of(&["ok"]))]))
        .component(
            "Readiness",
            record([
                ("status", enum_of(&["ready", "not ready"])),
                (
                    "checks",
                    record([("broker", up_down()), ("database", up_down())]),
                ),
            ]),
        )
        .get(
            "/healthz",
            healthz,
            op("healthz", "The process is alive")
                .response(200, Reply::new("Alive").json(reference("Health"))),
        )
        .get(
            "/readyz",
            readyz,
            op("readyz", "The broker and the database are reachable")
                .response(200, Reply::new("Ready").json(reference("Readiness")))
                .response(
                    503,
                    Reply::new("The broker or the database is down").json(reference("Readiness")),
                ),
        )
        .get(
            "/metrics",
            metrics,
            op("metrics", "Prometheus metrics").response(
                200,
                Reply::new("Prometheus text format 0.0.4").content("text/plain", string()),
            ),
        )
        .get(
            "/openapi.json",
            openapi_json,
            op("openapi", "This OpenAPI document").response(
                200,
                Reply::new("The OpenAPI 3.1 document of every route").json(any_object()),
            ),
        )
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let broker = state.broker().session().is_some();
    let database = tokio::time::timeout(Duration::from_secs(2), async {
        let client = state.db.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    })
    .await
    .ok()
    .flatten()
    .is_some();
    let status = if broker && database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |up: bool| if up { "up" } else { "down" };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not ready" },
            "checks": {"broker": word(broker), "database": word(database)},
        })),
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The document rendered when the router was built (see `crate::http::app`).
async fn openapi_json(
    Extension(OpenApiJson(document)): Extension<OpenApiJson>,
) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document)
}
