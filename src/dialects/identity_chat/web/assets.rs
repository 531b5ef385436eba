//! The widget's script (`GET /widget.js`) and the hosted chat page (`GET /chat/{channel_id}`),
//! built into the binary. The script is cached by browsers for a few minutes and revalidated by
//! its ETag (a hash of its bytes), so a new release reaches pages within minutes.

use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::super::ChannelChatError;
use crate::http::openapi::schema::string;
use crate::http::{ApiRouter, AppState, Auth, Operation, Reply};
use crate::store::visitors;

const WIDGET: &str = include_str!("widget.js");
const PAGE: &str = include_str!("chat.html");

static WIDGET_ETAG: LazyLock<String> = LazyLock::new(|| {
    let hash = Sha256::digest(WIDGET.as_bytes());
    format!("\"{}\"", hex::encode(&hash[..12]))
});

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .get(
            "/widget.js",
            widget,
            Operation::new("getWidget", "The chat widget's script")
                .tag("web-channel")
                .auth(Auth::None)
                .header(
                    "If-None-Match",
                    "The ETag of a copy the browser has",
                    string(),
                )
                .response(
                    200,
                    Reply::new("The script, with an ETag").content("text/javascript", string()),
                )
                .response(304, Reply::new("The browser's copy is current"))
                .errors("ChannelChatError", &[500]),
        )
        .get(
            "/chat/{channel_id}",
            page,
            Operation::new("getChatPage", "A full-page chat on a public web channel")
                .tag("web-channel")
                .auth(Auth::None)
                .path_param("channel_id", "The public web channel (UUID)")
                .response(200, Reply::new("The page").content("text/html", string()))
                .response(
                    404,
                    Reply::new("No such public channel").content("text/html", string()),
                )
                .errors("ChannelChatError", &[500, 503]),
        )
}

async fn widget(headers: HeaderMap) -> Response {
    let etag = WIDGET_ETAG.as_str();
    let cache = [
        (header::ETAG, etag.to_owned()),
        (header::CACHE_CONTROL, "public, max-age=300".to_owned()),
    ];
    let current = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if current {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let javascript = HeaderValue::from_static("text/javascript; charset=utf-8");
    (cache, [(header::CONTENT_TYPE, javascript)], WIDGET).into_response()
}

async fn page(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
) -> Result<Response, ChannelChatError> {
    let html = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    )];
    let public = match Uuid::parse_str(&channel_id) {
        Ok(id) => {
            let db = state.db.get().await?;
            visitors::public_channel(&**db, id, &state.secrets).await?
        }
        Err(_) => None,
    };
    let Some(channel) = public else {
        let body = "<!doctype html><title>Not found</title><p>This chat is not available.</p>";
        return Ok((StatusCode::NOT_FOUND, html, body).into_response());
    };
    let body = PAGE.replace("{{channel_id}}", &channel.id.to_string());
    Ok((html, body).into_response())
}
