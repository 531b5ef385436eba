//! Server-Sent-Events responses with the headers that keep proxies from buffering and a
//! keep-alive comment on idle streams, and bounded in memory whatever the client does.
//!
//! The events are produced by a task of their own (the pump) into a channel of
//! [`BUFFERED_EVENTS`], which the response body reads. A client that stops reading fills the
//! socket, then the channel; after `stall` without room the pump stops relaying, ends the body,
//! and goes on reading the turn to its end without keeping anything, so the answer is still
//! finished and stored while nothing piles up. A client that goes away closes the channel, and
//! the pump drops the turn at once: the turn tells the workers its caller left, and they go on
//! for the resume grace (`CONFAB_RESUME_GRACE_SECS`) before they stop (`pipeline/turn.rs`).

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc::{self, error::SendTimeoutError};
use uuid::Uuid;

/// How often an idle stream gets a `:` comment line, short enough for common proxy timeouts.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Events a stream holds for a client that is slower than its answer.
pub const BUFFERED_EVENTS: usize = 256;

/// How long a browser waits before it reconnects a dropped stream (`retry:`).
pub const RECONNECT_AFTER: Duration = Duration::from_secs(3);

/// `X-Conversation-Id: conversation_id`; conversation ids are visible ASCII, validated on the
/// way in.
pub fn conversation_header(conversation_id: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("x-conversation-id"),
        HeaderValue::from_str(conversation_id).unwrap_or(HeaderValue::from_static("")),
    )
}

/// The `id:` of a stream's `position`-th event (from 1): the request and the position, so that a
/// reconnecting client's `Last-Event-ID` names both.
pub fn event_id(request_id: Uuid, position: u64) -> String {
    format!("{request_id}:{position}")
}

/// The request a `Last-Event-ID` names, and the position of the last event its client got.
pub fn parse_event_id(id: &str) -> Option<(Uuid, u64)> {
    let (request, position) = id.trim().rsplit_once(':')?;
    Some((Uuid::parse_str(request).ok()?, position.parse().ok()?))
}

/// The SSE response of request `request_id`'s `events`: each gets its [`event_id`], the first
/// the `retry:` hint too.
pub fn sse_response<S>(
    events: S,
    request_id: Uuid,
    extra_headers: &[(HeaderName, HeaderValue)],
    stall: Duration,
) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let relayed = received(numbered(events, request_id, 0, stall));
    respond(relayed, extra_headers)
}

/// A stream read again for a reconnecting client: the same `events` as the first time, of which
/// only those after position `after` (its `Last-Event-ID`) are sent. `None` when there are none:
/// the client already has the whole stream.
pub async fn resumed_sse_response<S>(
    events: S,
    request_id: Uuid,
    after: u64,
    extra_headers: &[(HeaderName, HeaderValue)],
    stall: Duration,
) -> Option<Response>
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut rx = numbered(events, request_id, after, stall);
    let first = rx.recv().await?;
    let relayed = futures_util::stream::once(std::future::ready(first)).chain(received(rx));
    Some(respond(relayed, extra_headers))
}

/// Number the events from 1, keep those after `after` (the first of them with the `retry:`
/// hint), and produce them in the pump's task into a bounded channel.
fn numbered<S>(
    events: S,
    request_id: Uuid,
    after: u64,
    stall: Duration,
) -> mpsc::Receiver<Result<Event, Infallible>>
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut position = 0;
    let events = events.filter_map(move |event| {
        position += 1;
        let event = (position > after).then(|| {
            let event = event.map(|event| event.id(event_id(request_id, position)));
            if position == after + 1 {
                event.map(|event| event.retry(RECONNECT_AFTER))
            } else {
                event
            }
        });
        std::future::ready(event)
    });
    let (tx, rx) = mpsc::channel(BUFFERED_EVENTS);
    tokio::spawn(pump(Box::pin(events), tx, stall));
    rx
}

fn received(
    rx: mpsc::Receiver<Result<Event, Infallible>>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    })
}

fn respond<S>(relayed: S, extra_headers: &[(HeaderName, HeaderValue)]) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
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
            // The client went away: dropping the events drops the turn, which says its caller
            // left (a reconnect within the grace finds the answer still going).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_names_its_request_and_position_and_reads_back() {
        let request = Uuid::now_v7();
        assert_eq!(parse_event_id(&event_id(request, 7)), Some((request, 7)));
        assert_eq!(parse_event_id("not-an-id:3"), None);
        assert_eq!(parse_event_id(&request.to_string()), None);
        assert_eq!(parse_event_id(&format!("{request}:x")), None);
    }
}
