//! What every request must be before a handler reads it, checked once for every route and
//! refused in the route's own error shape: a path and query that decode to UTF-8 text without
//! NUL (Postgres text cannot hold it), a request line and headers inside the limits, and, where
//! the family takes JSON, a body declared as uncompressed JSON. And the last resort: a handler
//! that panics still answers, with a 500 in its family's shape, instead of a closed socket.

use std::any::Any;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use percent_encoding::percent_decode_str;

use super::family::Family;
use crate::http::{EdgeFailure, Reason};

/// Longest path and query accepted, in bytes: nginx's default request-line buffer.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields accepted; browsers send about twenty.
pub const MAX_HEADERS: usize = 64;
/// Largest sum of header names and values accepted, in bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuse a malformed request in the family's shape, or pass it on.
pub async fn refuse_malformed(
    State(family): State<Family>,
    request: Request,
    next: Next,
) -> Response {
    match check(family, &request) {
        Ok(()) => next.run(request).await,
        Err(failure) => family.render(failure),
    }
}

fn check(family: Family, request: &Request) -> Result<(), EdgeFailure> {
    let uri = request.uri();
    let length = uri.path().len() + uri.query().map_or(0, |query| query.len() + 1);
    if length > MAX_URI_BYTES {
        return Err(EdgeFailure::new(Reason::UriTooLong).with_message(format!(
            "The path and query are {length} bytes; the limit is {MAX_URI_BYTES}"
        )));
    }
    check_headers(request.headers())?;
    decoded_text("path", uri.path())?;
    if let Some(query) = uri.query() {
        decoded_text("query", query)?;
    }
    if family.takes_json_bodies() && has_body(request) {
        check_json_body(request.headers())?;
    }
    Ok(())
}

fn check_headers(headers: &HeaderMap) -> Result<(), EdgeFailure> {
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(
            EdgeFailure::new(Reason::HeadersTooLarge).with_message(format!(
                "{} header fields of {bytes} bytes; the limits are {MAX_HEADERS} fields and \
                 {MAX_HEADER_BYTES} bytes",
                headers.len()
            )),
        );
    }
    Ok(())
}

/// A percent-encoded part of the URI must decode to text a handler can store.
fn decoded_text(part: &str, encoded: &str) -> Result<(), EdgeFailure> {
    let decoded = percent_decode_str(encoded).decode_utf8().map_err(|_| {
        EdgeFailure::bad_request(
            part,
            format!("The {part} is not valid percent-encoded UTF-8"),
        )
    })?;
    if decoded.contains('\0') {
        return Err(EdgeFailure::bad_request(
            part,
            format!("The {part} must not contain NUL (%00)"),
        ));
    }
    Ok(())
}

/// Whether the request carries a body: a non-zero length, or one sent in chunks.
fn has_body(request: &Request) -> bool {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::DELETE
    ) {
        return false;
    }
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    declared.is_some_and(|length| length > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

/// A body the JSON families read must say it is JSON, and must not be compressed: nothing here
/// decompresses, so a compressed body would be parsed as garbage, or a false `Content-Encoding`
/// would be ignored.
fn check_json_body(headers: &HeaderMap) -> Result<(), EdgeFailure> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" && !essence.ends_with("+json") {
        let shown = if media_type.is_empty() {
            "no Content-Type".to_owned()
        } else {
            format!("Content-Type {media_type:?}")
        };
        return Err(unsupported(format!(
            "The body was sent with {shown}; send it as Content-Type: application/json"
        )));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|value| value.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    if let Some(encoding) = encoding.filter(|encoding| encoding != "identity") {
        return Err(unsupported(format!(
            "Content-Encoding {encoding:?} is not accepted; send the body uncompressed"
        )));
    }
    Ok(())
}

fn unsupported(message: String) -> EdgeFailure {
    EdgeFailure::new(Reason::UnsupportedMediaType)
        .with_message(message)
        .with_field("body")
}

/// A handler's panic, answered as a 500 of its family; the panic's message is logged, never
/// shown.
pub fn answer_panic(family: Family, panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    family.render(EdgeFailure::internal(format!(
        "handler panicked: {message}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(axum::body::Body::empty())
            .expect("a valid test request")
    }

    fn reason(family: Family, request: &Request) -> Option<Reason> {
        check(family, request).err().map(|failure| failure.reason)
    }

    #[test]
    fn nul_and_invalid_utf8_in_paths_and_queries_are_bad_requests() {
        for uri in [
            "/v1/conversations/ab%00cd",
            "/v1/conversations/%FF",
            "/v1/identities?external_id=a%00b",
            "/v1/identities?external_id=%C3%28",
        ] {
            let refused = reason(Family::Management, &request("GET", uri, &[]));
            assert_eq!(refused, Some(Reason::BadRequest), "{uri}");
        }
        let fine = request("GET", "/v1/identities?external_id=caf%C3%A9%20ok", &[]);
        assert_eq!(reason(Family::Management, &fine), None);
    }

    #[test]
    fn long_uris_and_large_headers_are_refused_with_their_own_statuses() {
        let long = format!("/v1/assistants?q={}", "a".repeat(MAX_URI_BYTES));
        assert_eq!(
            reason(Family::Management, &request("GET", &long, &[])),
            Some(Reason::UriTooLong)
        );
        let big = "b".repeat(MAX_HEADER_BYTES);
        assert_eq!(
            reason(Family::Agents, &request("GET", "/", &[("x-big", &big)])),
            Some(Reason::HeadersTooLarge)
        );
    }

    #[test]
    fn json_families_refuse_bodies_not_declared_as_uncompressed_json() {
        let post = |headers: &[(&str, &str)]| {
            let mut all = vec![("content-length", "2")];
            all.extend_from_slice(headers);
            request("POST", "/v1/api/chat/x", &all)
        };
        let unsupported = Some(Reason::UnsupportedMediaType);
        assert_eq!(reason(Family::Agents, &post(&[])), unsupported);
        let form = post(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(reason(Family::Agents, &form), unsupported);
        let gzip = post(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ]);
        assert_eq!(reason(Family::OpenAi, &gzip), unsupported);
        let json = post(&[("content-type", "Application/JSON; charset=utf-8")]);
        assert_eq!(reason(Family::AiHub, &json), None);
        let problem = post(&[("content-type", "application/merge-patch+json")]);
        assert_eq!(reason(Family::Management, &problem), None);
        // Platforms sign what they send; a webhook's body is checked by its signature instead.
        assert_eq!(reason(Family::Webhooks, &post(&[])), None);
        // No body, nothing to declare.
        let empty = request("POST", "/v1/stream-tokens", &[("content-length", "0")]);
        assert_eq!(reason(Family::Management, &empty), None);
    }
}
