//! Prometheus metrics: the recorder, and a layer counting requests by API family and status.

use axum::extract::Request;
use axum::extract::State;
use axum::middleware::Next;
use axum::response::Response;

/// The process's Prometheus recorder, shared with workers running in the same process.
pub use confab_shared::metrics::recorder;

/// Count every request of an API family (the layer's state) by response status.
pub async fn count_requests(
    State(dialect): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    metrics::counter!(
        "confab_http_requests_total",
        "dialect" => dialect,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}
