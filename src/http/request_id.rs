//! Every request gets an id (UUIDv7) before any handler runs: it is the job's `request_id`, a
//! field of every log line of the request on both sides, and the `X-Request-Id` response header.
//! Its span is the root of the request's trace when tracing is on (`confab_shared::telemetry`),
//! and then its log lines carry the `trace_id` as well.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::{Instrument, info_span};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub Uuid);

pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = Uuid::now_v7();
    request.extensions_mut().insert(RequestId(id));
    // The path only: query strings may carry credentials and are never logged.
    let span = info_span!(
        "request",
        request_id = %id,
        trace_id = tracing::field::Empty,
        method = %request.method(),
        path = %request.uri().path()
    );
    // With tracing on, the request is the root of its trace, and its log lines name the trace.
    confab_shared::telemetry::record_trace_id(&span);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
