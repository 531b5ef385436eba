//! The HTTP/1.1 server under the router, with the limits `axum::serve` cannot set: a deadline
//! for a request's headers (hyper's, which needs a timer), a cap on open connections whose
//! excess is refused with a clear 503 rather than left waiting in the backlog, and connections
//! whose writes make no progress closed (`stall.rs`). Shutdown stops accepting, lets each
//! connection finish its request, and waits for them up to the grace period.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

use super::stall::WriteStall;
use super::{MAX_HEADER_BYTES, MAX_HEADERS};
use crate::config::ConnectionLimits;

/// The answer to a connection over the limit: no request was read, so no family is known and
/// the body is the management API's error shape.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 97\r\n\
\r\n\
{\"error\":{\"code\":\"overloaded\",\"message\":\"Too many open connections; retry shortly\",\"details\":{}}}";

/// Serve `router` on `listener` until `shutdown`, then drain for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Every connection task holds a receiver: the sender sees them all gone when its
    // `closed()` resolves. The flag tells them to shut down gracefully.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: wait for some to be released.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // SSE events are small writes: without TCP_NODELAY, Nagle's algorithm holds each one
        // back until the previous is acknowledged, which delayed ACKs stretch to ~40 ms.
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached; refusing");
            tokio::spawn(refuse(tcp));
            continue;
        };
        let connection = serve_connection(tcp, router.clone(), limits, stop_rx.clone());
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    if tokio::time::timeout(grace, stop_tx.closed()).await.is_err() {
        warn!("grace period over; closing the remaining connections");
    }
}

async fn serve_connection(
    tcp: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(WriteStall::new(tcp, limits.write_stall));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Above the guard's own limits, so that the guard answers in the route's shape.
        .max_headers(MAX_HEADERS * 2)
        .max_buf_size(MAX_HEADER_BYTES * 8);
    let connection = builder.serve_connection(io, TowerToHyperService::new(router));
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(e) = connection.await {
        debug!(error = %e, "connection ended with an error while draining");
    }
}

async fn refuse(mut tcp: TcpStream) {
    // Bounded: a client that does not read its refusal does not keep the task.
    let write = async {
        tcp.write_all(REFUSAL).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

#[cfg(test)]
mod tests {
    use super::REFUSAL;

    #[test]
    fn the_refusal_declares_its_own_length_and_is_json() {
        let text = std::str::from_utf8(REFUSAL).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let declared = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|length| length.parse::<usize>().ok());
        assert_eq!(declared, Some(body.len()));
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body["error"]["code"], "overloaded");
    }
}
