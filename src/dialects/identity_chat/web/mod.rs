//! The web channel: seed 000's `web` channel kind made public, for pages on other sites (the
//! widget, `GET /widget.js`) and confab's own hosted chat page (`GET /chat/{channel_id}`).
//!
//! A channel of kind `web` whose config has `"public": true` and `"allowed_origins": [..]` takes
//! visitors: a page on one of those origins starts a visitor session ([`sessions`]) and gets a
//! visitor token for one identity on that channel, with which it streams turns on the seed-000
//! streaming route (`token=`) and reads that identity's conversation on the channel
//! (`GET /v1/web/channels/{id}/conversation`), and nothing else. These routes, and only these,
//! answer cross-origin browsers ([`cors`]).

mod assets;
pub mod cors;
mod sessions;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use uuid::Uuid;

use super::ChannelChatError;
use crate::http::openapi::schema::{
    array, date_time, described, enum_of, integer, nullable, obj, record, reference, string, uuid,
};
use crate::http::{ApiRouter, AppState, Auth, EdgeFailure, Operation, Reason, Reply, Visiting};
use crate::store::visitors;

/// Turns of the conversation a page shows on load.
const SHOWN_TURNS: i64 = 50;

fn op(id: &'static str, summary: &'static str) -> Operation {
    Operation::new(id, summary).tag("web-channel")
}

/// The visitor routes, which take cross-origin calls (the caller adds the CORS layer).
pub fn visitor_router() -> ApiRouter {
    ApiRouter::new()
        .tag(
            "web-channel",
            "Public web channels: visitor sessions of the widget and the hosted chat page",
        )
        .components(components())
        .post(
            "/v1/web/channels/{channel_id}/sessions",
            sessions::start,
            op("startVisitorSession", "Start (or resume) a visitor session")
                .auth(Auth::None)
                .describe(
                    "From a page on one of the channel's allowed origins (its `Origin`), or \
                     confab's own. Without a body, a new anonymous visitor; with the \
                     `visitor_key` an earlier session returned, that visitor again; with a \
                     `user_id` and its `user_signature` (hex HMAC-SHA256 of the id under the \
                     channel's `identity_secret`), that user's identity.",
                )
                .path_param("channel_id", "The public web channel (UUID)")
                .body(reference("VisitorSessionRequest"))
                .response(
                    201,
                    Reply::new("The session").json(reference("VisitorSession")),
                )
                .errors("ChannelChatError", &[400, 403, 404, 413, 429, 500, 503]),
        )
        .get(
            "/v1/web/channels/{channel_id}/conversation",
            conversation,
            op(
                "getVisitorConversation",
                "The visitor's conversation on the channel, as a page shows it",
            )
            .describe("Takes the visitor token as `Authorization: Bearer`.")
            .path_param("channel_id", "The public web channel (UUID)")
            .response(
                200,
                Reply::new("The latest turns, oldest first").json(reference("VisitorConversation")),
            )
            .errors("ChannelChatError", &[401, 403, 404, 429, 500, 503]),
        )
}

/// The widget and the hosted page: same-origin files, no CORS needed.
pub fn page_router() -> ApiRouter {
    assets::router()
}

/// `GET /v1/web/channels/{id}/conversation`.
async fn conversation(
    State(state): State<AppState>,
    visitor: Visiting<ChannelChatError>,
    Path(channel_id): Path<String>,
) -> Result<Json<Value>, ChannelChatError> {
    if Uuid::parse_str(&channel_id).ok() != Some(visitor.channel_id) {
        return Err(EdgeFailure::new(Reason::Forbidden)
            .with_message("This visitor token is for another channel")
            .into());
    }
    let db = state.db.get().await?;
    let found = visitors::conversation(&**db, &visitor, SHOWN_TURNS).await?;
    let (conversation_id, messages) = match found {
        Some((id, messages)) => (Some(id), messages),
        None => (None, Vec::new()),
    };
    Ok(Json(json!({
        "conversation_id": conversation_id,
        "identity_id": visitor.identity_id,
        "messages": messages,
    })))
}

fn components() -> Vec<(&'static str, Value)> {
    vec![
        (
            "VisitorSessionRequest",
            obj(
                [
                    (
                        "visitor_key",
                        described(string(), "The key an earlier session returned"),
                    ),
                    ("user_id", described(string(), "The site's own user id")),
                    (
                        "user_signature",
                        described(
                            string(),
                            "Hex HMAC-SHA256 of user_id under the channel's identity_secret",
                        ),
                    ),
                ],
                &[],
            ),
        ),
        (
            "VisitorSession",
            obj(
                [
                    (
                        "token",
                        described(
                            string(),
                            "The visitor token: `Authorization: Bearer` here, `token=` on the \
                             streaming route",
                        ),
                    ),
                    (
                        "expires_in",
                        described(integer(), "Seconds; start a new session before then"),
                    ),
                    ("identity_id", uuid()),
                    ("channel_id", uuid()),
                    (
                        "visitor_key",
                        described(string(), "Keep it to be this visitor again (anonymous)"),
                    ),
                    (
                        "user_id",
                        described(string(), "The signed user (signed sessions)"),
                    ),
                ],
                &["token", "expires_in", "identity_id", "channel_id"],
            ),
        ),
        (
            "VisitorConversation",
            record([
                ("conversation_id", nullable(string())),
                ("identity_id", uuid()),
                (
                    "messages",
                    array(record([
                        ("id", string()),
                        ("role", enum_of(&["user", "assistant"])),
                        ("content", string()),
                        ("status", string()),
                        ("created_at", date_time()),
                    ])),
                ),
            ]),
        ),
    ]
}
