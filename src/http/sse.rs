//! Server-Sent-Events responses with the headers that keep proxies from buffering and a
//! keep-alive comment on idle streams.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;

/// How often an idle stream gets a `:` comment line, short enough for common proxy timeouts.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn sse_response<S>(events: S, extra_headers: &[(HeaderName, HeaderValue)]) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut response = Sse::new(events)
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
