//! Cross-origin access for the routes a visitor's page calls, and only those: tower-http's CORS
//! layer, allowing exactly the origins the request's public web channel lists. The channel is
//! named in the URL (`/v1/web/channels/{id}/..`, or the streaming route's `channel_id`), so
//! preflights, which carry no credentials, are answered too. No credentials (cookies) are
//! allowed: a visitor's token travels in the `Authorization` header or the stream's query.
//! Every other route has no CORS layer, so a browser never lets another origin call it.
//!
//! It wraps the whole router as a middleware that sends only the visitor routes through the
//! layer: a preflight is an `OPTIONS` request, which the routes (POST or GET only) would
//! otherwise answer 405 before any route layer saw it.

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};
use uuid::Uuid;

use crate::http::AppState;
use crate::store::visitors;

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

static LAYER: LazyLock<CorsLayer> = LazyLock::new(layer);

/// Middleware: a visitor route's request goes through the CORS layer, any other straight on.
pub async fn visitor_routes(request: Request, next: Next) -> Response {
    if !is_visitor_route(request.uri()) {
        return next.run(request).await;
    }
    match LAYER.layer(next).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}

/// The web channel's routes and the streaming route.
fn is_visitor_route(uri: &Uri) -> bool {
    let path = uri.path();
    path.starts_with("/v1/web/channels/")
        || path
            .strip_prefix("/conversation/")
            .is_some_and(|rest| rest.ends_with("/streaming") && rest.matches('/').count() == 1)
}

fn layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::async_predicate(|origin, parts: &Parts| {
            let state = parts.extensions.get::<AppState>().cloned();
            let channel = channel_named(parts);
            async move {
                match (state, channel) {
                    (Some(state), Some(channel)) => allowed(&state, channel, &origin).await,
                    _ => false,
                }
            }
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-conversation-id"),
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
        ])
        .max_age(PREFLIGHT_MAX_AGE)
}

/// The channel a visitor route's URL names.
fn channel_named(parts: &Parts) -> Option<Uuid> {
    if let Some(rest) = parts.uri.path().strip_prefix("/v1/web/channels/") {
        let id = rest.split('/').next()?;
        return Uuid::parse_str(id).ok();
    }
    let query = parts.uri.query()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("channel_id="))
        .and_then(|id| Uuid::parse_str(id).ok())
}

async fn allowed(state: &AppState, channel: Uuid, origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Ok(db) = state.db.get().await else {
        return false;
    };
    match visitors::public_channel(&**db, channel, &state.secrets).await {
        Ok(Some(channel)) => listed(&channel.allowed_origins, origin),
        _ => false,
    }
}

/// Whether `origin` is one of `allowed` (scheme and host compare without case, as browsers
/// write them in lower case anyway).
pub fn listed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> Parts {
        let (parts, ()) = axum::http::Request::get(uri)
            .body(())
            .expect("a request")
            .into_parts();
        parts
    }

    #[test]
    fn the_channel_is_read_from_the_path_or_the_streaming_query() {
        let id = Uuid::now_v7();
        assert_eq!(
            channel_named(&parts(&format!("/v1/web/channels/{id}/sessions"))),
            Some(id)
        );
        assert_eq!(
            channel_named(&parts(&format!(
                "/conversation/x/streaming?message=hi&channel_id={id}&token=t"
            ))),
            Some(id)
        );
        assert_eq!(
            channel_named(&parts("/v1/web/channels/nope/sessions")),
            None
        );
        assert_eq!(channel_named(&parts("/v1/channels")), None);
    }

    #[test]
    fn only_the_visitor_routes_take_cross_origin_calls() {
        let visitor = |uri: &str| is_visitor_route(&uri.parse().expect("a URI"));
        assert!(visitor("/v1/web/channels/abc/sessions"));
        assert!(visitor("/conversation/abc/streaming?channel_id=x"));
        assert!(!visitor("/conversation/abc/chat/def"));
        assert!(!visitor("/v1/channels"));
        assert!(!visitor("/v1/stream-tokens"));
        assert!(!visitor("/conversation/a/b/streaming"));
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let allowed = vec!["https://shop.example".to_owned()];
        assert!(listed(&allowed, "https://shop.example"));
        assert!(listed(&allowed, "HTTPS://SHOP.EXAMPLE"));
        assert!(!listed(&allowed, "https://shop.example.evil"));
        assert!(!listed(&allowed, "http://shop.example"));
        assert!(!listed(&allowed, "null"));
    }
}
