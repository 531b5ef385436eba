//! A worker process's own `GET /metrics` endpoint (`CONFAB_WORKER_METRICS_LISTEN`), so operators
//! can scrape each worker they run, with the probes an orchestrator asks: `GET /healthz` (the
//! process answers) and `GET /readyz` (it consumes its queues; see `readiness.rs`). The
//! recorder is `confab_shared::metrics`; the routes are an axum router on hyper's HTTP/1.1
//! connection, as the ingress serves its own (not `axum::serve`, which cannot set a deadline
//! for a request's headers).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::readiness::Readiness;

/// A scrape request is one short line and a few headers; anything longer is not one.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// A client gets this long to send its request's headers, and then to take the answer.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /metrics` in Prometheus text and the two probes; every other request is a 404 (a 405 for
/// another method).
pub fn router(handle: PrometheusHandle, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                if readiness.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not consuming its queues\n",
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "only GET /metrics, /healthz and /readyz are served here\n",
            )
                .into_response()
        })
}

/// Answer on `listener` until `shutdown` flips to true. One request per connection, as
/// Prometheus scrapes.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(router(handle, readiness));
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(READ_TIMEOUT)
                        .max_buf_size(MAX_HEADER_BYTES)
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service.clone());
                    tokio::spawn(async move {
                        // A client that stops reading the answer cannot hold its task forever.
                        let _ = tokio::time::timeout(ANSWER_TIMEOUT, connection).await;
                    });
                }
                Err(e) => warn!(error = %e, "metrics endpoint: accept failed"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn started() -> (std::net::SocketAddr, watch::Sender<bool>) {
        started_with(Readiness::new(1)).await
    }

    async fn started_with(
        readiness: Arc<Readiness>,
    ) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, handle, readiness, stopped));
        (addr, stop)
    }

    #[tokio::test]
    async fn the_probes_say_alive_always_and_ready_only_while_consuming() {
        let readiness = Readiness::new(1);
        let (addr, _stop) = started_with(readiness.clone()).await;
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: w\r\n\r\n");
        let health = exchange(addr, get("/healthz").as_bytes()).await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        let ready = exchange(addr, get("/readyz").as_bytes()).await;
        assert!(ready.starts_with("HTTP/1.1 503 "), "{ready}");
        let consuming = readiness.consuming();
        let ready = exchange(addr, get("/readyz").as_bytes()).await;
        assert!(ready.starts_with("HTTP/1.1 200 OK\r\n"), "{ready}");
        drop(consuming);
        let ready = exchange(addr, get("/readyz").as_bytes()).await;
        assert!(ready.starts_with("HTTP/1.1 503 "), "{ready}");
    }

    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        // A server that closes on unread bytes resets the connection: what arrived before counts.
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn metrics_are_served_and_every_other_request_is_refused() {
        let (addr, _stop) = started().await;
        let metrics = exchange(addr, b"GET /metrics HTTP/1.1\r\nhost: w\r\n\r\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(
            metrics.contains("content-type: text/plain; version=0.0.4\r\n"),
            "{metrics}"
        );
        // One request per connection: the server closed it after the answer.
        assert!(metrics.contains("connection: close\r\n"), "{metrics}");
        let other = exchange(addr, b"GET / HTTP/1.1\r\nhost: w\r\n\r\n").await;
        assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
        assert!(
            other.ends_with("only GET /metrics, /healthz and /readyz are served here\n"),
            "{other}"
        );
        let post = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nhost: w\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    }

    #[tokio::test]
    async fn an_oversized_or_unfinished_request_head_is_not_waited_for() {
        let (addr, _stop) = started().await;
        let long = format!(
            "GET /metrics HTTP/1.1\r\nx: {}\r\n\r\n",
            "a".repeat(16 * 1024)
        );
        let refused = exchange(addr, long.as_bytes()).await;
        // The 431 itself may be lost to the reset of a connection closed on unread bytes.
        assert!(
            refused.is_empty() || refused.starts_with("HTTP/1.1 431 "),
            "{refused}"
        );
        let started = std::time::Instant::now();
        let unfinished = exchange(addr, b"GET /metrics HTTP/1.1\r\n").await;
        assert!(!unfinished.contains("200 OK"), "{unfinished}");
        let waited = started.elapsed();
        assert!(
            waited >= READ_TIMEOUT && waited < READ_TIMEOUT * 2,
            "{waited:?}"
        );
    }
}
