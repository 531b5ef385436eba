//! Prometheus metrics: the recorder, and a layer counting requests by API family and status.

use std::sync::OnceLock;

use axum::extract::Request;
use axum::extract::State;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// The process's Prometheus recorder. The `metrics` facade has one recorder per process, so
/// every application built in this process shares it.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .map(|builder| builder.build_recorder());
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    let _ = metrics::set_global_recorder(recorder);
                    handle
                }
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

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
