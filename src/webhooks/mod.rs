//! `/webhooks/{kind}/{channel_id}`: channel platforms (WhatsApp Cloud API, Telegram Bot API)
//! calling in. The channel's [`Adapter`] answers the platform's handshake, checks the request's
//! signature on its raw bytes, and reads its events; [`inbox`] hands each message off durably
//! (deduplicated, with a confirmed job) before the platform gets its 200. The answer is sent
//! later by a worker in the delivery role, never by the ingress.
//!
//! Events the channel does not handle still get a 200, so the platform does not retry them for
//! days; a failure to hand off gets a 503, so it does.

mod inbox;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use confab_shared::platforms::{self, Adapter, AuthError, Event, Handshake};
use serde_json::json;
use tracing::{info, warn};
use uuid::Uuid;

use crate::api::ApiError;
use crate::http::openapi::schema::{described, integer, obj, record, reference, string};
use crate::http::{ApiRouter, AppState, Auth, EdgeFailure, Operation, Reason, Reply};
use crate::store::channels::WebhookChannel;

const PATH: &str = "/webhooks/{kind}/{channel_id}";

pub fn router() -> ApiRouter {
    let params = |op: Operation| {
        op.tag("webhooks")
            .auth(Auth::None)
            .path_param("kind", "The channel's kind: `whatsapp` or `telegram`")
            .path_param("channel_id", "The channel's id")
    };
    ApiRouter::new()
        .tag(
            "webhooks",
            "Channel platforms calling in: WhatsApp Cloud API and Telegram Bot API webhooks",
        )
        .components([(
            "WebhookReceipt",
            described(
                record([
                    ("queued", integer()),
                    ("duplicates", integer()),
                    ("stale", integer()),
                    ("unsupported", integer()),
                    ("statuses", integer()),
                ]),
                "What the webhook's events became: user messages queued for an answer, seen \
                 before, too old to answer, or of a kind answered with a fixed text; and status \
                 notifications applied",
            ),
        )])
        .get(
            PATH,
            verify,
            params(Operation::new(
                "verifyWebhook",
                "Answer a platform's verification handshake",
            ))
            .describe(
                "WhatsApp: `hub.mode=subscribe` with the channel's `verify_token` in \
                 `hub.verify_token` is answered with `hub.challenge`, verbatim, as text.",
            )
            .query("hub.mode", false, "`subscribe`", string())
            .query(
                "hub.verify_token",
                false,
                "The channel's `verify_token`",
                string(),
            )
            .query(
                "hub.challenge",
                false,
                "Echoed back when the token matches",
                string(),
            )
            .response(
                200,
                Reply::new("The challenge, verbatim").content("text/plain", string()),
            )
            .errors("ApiError", &[403, 404, 405, 503]),
        )
        .post(
            PATH,
            receive,
            params(Operation::new(
                "receiveWebhook",
                "Receive a platform's events",
            ))
            .describe(
                "Signed by the platform (WhatsApp: `X-Hub-Signature-256` over the raw body \
                     with the channel's `app_secret`; Telegram: the channel's `secret_token` in \
                     `X-Telegram-Bot-Api-Secret-Token`). Each new user message is answered on \
                     the platform; a message id seen before is not answered again, and messages \
                     older than `CONFAB_WEBHOOK_MAX_AGE_SECS` are stored without an answer. \
                     Status notifications update the delivery status of sent answers.",
            )
            .body(obj([], &[]))
            .response(
                200,
                Reply::new("Events taken over").json(reference("WebhookReceipt")),
            )
            .errors("ApiError", &[401, 403, 404, 413, 503]),
        )
}

async fn channel_for(
    state: &AppState,
    kind: &str,
    channel_id: &str,
) -> Result<(WebhookChannel, &'static dyn Adapter), ApiError> {
    let not_found = || ApiError::not_found("Channel");
    let id = Uuid::parse_str(channel_id).map_err(|_| not_found())?;
    let adapter = platforms::adapter(kind).ok_or_else(not_found)?;
    let client = state.db.get().await.map_err(unavailable)?;
    let mut channel = crate::store::channels::for_webhook(&**client, id)
        .await
        .map_err(unavailable)?
        .filter(|channel| channel.kind == kind)
        .ok_or_else(not_found)?;
    // A secret that does not open (its key was dropped too early) is the operator's to fix;
    // meanwhile the platform is asked to retry rather than told the payload is bad.
    state
        .secrets
        .open_config(channel.id, &mut channel.config)
        .map_err(unavailable)?;
    Ok((channel, adapter))
}

async fn verify(
    State(state): State<AppState>,
    Path((kind, channel_id)): Path<(String, String)>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (channel, adapter) = channel_for(&state, &kind, &channel_id).await?;
    // A query that does not even parse cannot carry the verify token: refused below.
    let query = query.map(|Query(pairs)| pairs).unwrap_or_default();
    match adapter.handshake(&channel.config, &query) {
        Handshake::Accept(challenge) => Ok((
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            challenge,
        )
            .into_response()),
        Handshake::Refuse => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The verify token does not match the channel's",
        )),
        Handshake::Unsupported => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{kind} webhooks have no verification handshake"),
        )),
    }
}

async fn receive(
    State(state): State<AppState>,
    Path((kind, channel_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        ApiError::new(rejection.status(), "invalid_request", rejection.body_text())
    })?;
    let (channel, adapter) = channel_for(&state, &kind, &channel_id).await?;
    adapter
        .authenticate(&channel.config, &headers, &body)
        .map_err(refused)?;
    let events = adapter.parse(&channel.config, &body);
    let mut receipt = inbox::Receipt::default();
    for event in events {
        match event {
            Event::Message(message) => {
                let outcome = inbox::take(&state, &channel, &message).await?;
                receipt.count(outcome);
            }
            Event::Status(update) => {
                inbox::apply_status(&state, &channel, &update).await?;
                receipt.statuses += 1;
            }
        }
    }
    info!(channel_id = %channel.id, kind, ?receipt, "webhook taken over");
    metrics::counter!("confab_webhook_events_total", "kind" => adapter.kind())
        .increment(receipt.total());
    Ok((StatusCode::OK, Json(json!(receipt))).into_response())
}

fn refused(error: AuthError) -> ApiError {
    warn!(error = %error, "webhook refused");
    match error {
        AuthError::NoSecret(_) => {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", error.to_string())
        }
        AuthError::Missing(_) | AuthError::Mismatch(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", error.to_string())
        }
    }
}

/// The platform should try again later: nothing of this request was kept. Whatever failed (the
/// database, the broker, a full queue), the platform's retry is the remedy, so every failure to
/// hand off is the table's `Unavailable`, a 503 with its `Retry-After`.
fn unavailable(error: impl std::fmt::Display) -> ApiError {
    warn!(%error, "webhook not taken over");
    EdgeFailure::new(Reason::Unavailable)
        .with_message("The service cannot take this webhook right now; retry later")
        .into()
}
