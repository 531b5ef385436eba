//! Server-Sent-Events responses with the headers that keep proxies from buffering and a
//! keep-alive comment on idle streams, and bounded in memory whatever the client does.
//!
//! The events are produced by a task of their own (the pump) into a channel of
//! [`BUFFERED_EVENTS`], which the response body reads. A client that stops reading fills the
//! socket, then the channel; after `stall` without room the pump stops relaying, ends the body,
//! and goes on reading the turn to its end without keeping anything, so the answer is still
//! finished and stored while nothing piles up. A client that goes away closes the channel, and
//! the pump drops the turn at once: that is a cancel, as before.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc::{self, error::SendTimeoutError};

/// How often an idle stream gets a `:` comment line, short enough for common proxy timeouts.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Events a stream holds for a client that is slower than its answer.
pub const BUFFERED_EVENTS: usize = 256;

pub fn sse_response<S>(
    events: S,
    extra_headers: &[(HeaderName, HeaderValue)],
    stall: Duration,
) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(BUFFERED_EVENTS);
    tokio::spawn(pump(Box::pin(events), tx, stall));
    let relayed = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    });
    let mut response = Sse::new(relayed)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text(""))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // nginx and compatible proxies buffer responses unless told not to.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    for (name, value) in extra_headers {
        headers.insert(name.clone(), value.clone());
    }
    response
}

async fn pump<S>(mut events: S, tx: mpsc::Sender<Result<Event, Infallible>>, stall: Duration)
where
    S: Stream<Item = Result<Event, Infallible>> + Unpin,
{
    while let Some(event) = events.next().await {
        match tx.send_timeout(event, stall).await {
            Ok(()) => {}
            // The client went away: dropping the events cancels the turn.
            Err(SendTimeoutError::Closed(_)) => return,
            Err(SendTimeoutError::Timeout(_)) => {
                tracing::warn!(
                    ?stall,
                    "the client stopped reading its stream; ending it and finishing the turn"
                );
                drop(tx);
                while events.next().await.is_some() {}
                return;
            }
        }
    }
}
