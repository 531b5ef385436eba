//! Seed 000: identities talk to assistants through channels.
//!
//! - `POST /conversation/{identity_id}/chat/{channel_id}` with `{text, metadata?,
//!   new_conversation?}` answers `{message, data}`; `data` has the reply, the conversation id and
//!   the ids of both turns.
//! - `GET /conversation/{identity_id}/streaming?channel_id=..&message=..` answers SSE events
//!   exactly as the seed shows: `{"type":"token","content":..}` per piece, then
//!   `{"type":"complete","content":<full reply>}`, or `{"type":"error","content":<message>}`. The
//!   conversation id is in the `X-Conversation-Id` header. Browsers' `EventSource` cannot send an
//!   `Authorization` header, so this route also takes `token=` in the query: a stream token minted
//!   by `POST /v1/stream-tokens` for one identity and channel (never the long-lived key; the query
//!   is never logged). A token starts one stream within a minute: for another identity or channel
//!   it is a 403, used again a 409 (which also stops a browser's automatic reconnect from asking
//!   the question again).
//!
//! The channel's connected assistant answers. An identity's conversation on a channel continues
//! across calls; `new_conversation: true` (or `&new_conversation=true`) closes it and starts anew.
//! Errors are `{message, data: null, error: {code}}` (see [`error`]) with 400, 401, 403, 404, 409, 413,
//! 429, 500, 502, 503, 504.

mod error;
mod schemas;
pub mod web;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use confab_contract::{AssistantRef, Message, Role, now_ms};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

pub use error::ChannelChatError;

use crate::http::openapi::schema::{enum_of, reference, string};
use crate::http::{
    ApiRouter, AppState, Auth, Authenticated, AuthenticatedStream, EdgeFailure, Operation, Reason,
    Reply, RequestId, json_body, resumed_sse_response, sse_response,
};
use crate::pipeline::{Turn, TurnEvent, TurnRequest};
use crate::store::assistants;
use crate::store::channels;
use crate::store::conversations;
use crate::store::identities;
use crate::store::tenants::{self, StreamGrant};
use crate::store::visitors;

/// How long a stream token may wait for its one stream: long enough for a page to open its
/// `EventSource`, short enough that a URL copied from a proxy log is already dead.
const STREAM_TOKEN_TTL_SECS: i32 = 60;

fn op(id: &'static str, summary: &'static str) -> Operation {
    Operation::new(id, summary).tag("identity-chat")
}

pub fn router() -> ApiRouter {
    let identity = "The identity (UUID) who speaks";
    ApiRouter::new()
        .tag(
            "identity-chat",
            "Seed 000: identities talk to assistants through channels",
        )
        .components(schemas::components())
        .post(
            "/conversation/{identity_id}/chat/{channel_id}",
            chat,
            op("channelChat", "Send an identity's message on a channel")
                .path_param("identity_id", identity)
                .path_param("channel_id", "The channel (UUID); its assistant answers")
                .body(reference("ChannelChatRequest"))
                .response(
                    200,
                    Reply::new("The answer").json(reference("ChannelChatReply")),
                )
                .errors(
                    "ChannelChatError",
                    &[400, 401, 404, 409, 413, 429, 500, 502, 503, 504],
                ),
        )
        .post(
            "/v1/stream-tokens",
            mint_stream_token,
            op(
                "createStreamToken",
                "Mint a stream token for one stream of an identity on a channel",
            )
            .body(reference("StreamTokenRequest"))
            .response(
                201,
                Reply::new(
                    "The token: it starts one stream of that identity on that channel, within \
                     a minute",
                )
                .json(reference("StreamToken")),
            )
            .errors("ChannelChatError", &[400, 401, 404, 413, 429, 500, 503]),
        )
        .merge(browser_routes())
        .merge(web::page_router())
}

/// The routes a page on another origin calls: the streaming route (an `EventSource`, or the
/// widget's stream) and the web channel's visitor routes. `web::cors` answers their
/// cross-origin calls (`crate::app` wraps the whole router in it).
fn browser_routes() -> ApiRouter {
    let identity = "The identity (UUID) who speaks";
    ApiRouter::new()
        .get(
            "/conversation/{identity_id}/streaming",
            streaming,
            op("channelChatStream", "Send a message and stream the answer")
                .auth(Auth::BearerOrStreamToken)
                .path_param("identity_id", identity)
                .query("channel_id", true, "The channel (UUID)", string())
                .query(
                    "message",
                    true,
                    "The identity's message; not blank",
                    string(),
                )
                .query(
                    "new_conversation",
                    false,
                    "Start a new conversation on this channel",
                    enum_of(&["true", "false", "1", "0"]),
                )
                .header(
                    "Last-Event-ID",
                    "Sent by a reconnecting EventSource: the `id` of the last event it got",
                    string(),
                )
                .query(
                    "last_event_id",
                    false,
                    "The same, for clients that cannot set the header",
                    string(),
                )
                .response(
                    200,
                    Reply::new(
                        "SSE `token` events, then one `complete` or `error` event; each with \
                         an `id` (request id:position), the first with `retry`",
                    )
                    .sse(reference("ChannelChatStreamEvent"), None)
                    .conversation_header(true, "The conversation id"),
                )
                .response(
                    204,
                    Reply::new(
                        "A reconnect (`Last-Event-ID`) of a stream that has ended: stop \
                         reconnecting; no new turn is started",
                    ),
                )
                .errors(
                    "ChannelChatError",
                    &[400, 401, 403, 404, 409, 429, 500, 503],
                ),
        )
        .merge(web::visitor_router())
}

/// What a turn needs once names are resolved.
struct Resolved {
    identity_id: Uuid,
    channel_id: Uuid,
    assistant_id: Uuid,
    conversation_id: String,
}

/// Check that the identity and the channel are the caller's, find the channel's assistant and
/// the conversation to continue (or start).
async fn resolve(
    state: &AppState,
    tenant_id: Uuid,
    identity_id: &str,
    channel_id: &str,
    start_new: bool,
) -> Result<Resolved, ChannelChatError> {
    let identity_id =
        Uuid::parse_str(identity_id).map_err(|_| ChannelChatError::not_found("Identity"))?;
    let channel_id =
        Uuid::parse_str(channel_id).map_err(|_| ChannelChatError::not_found("Channel"))?;
    let mut db = state.db.get().await?;
    identities::by_id(&**db, tenant_id, identity_id)
        .await?
        .ok_or_else(|| ChannelChatError::not_found("Identity"))?;
    let channel = channels::by_id(&**db, tenant_id, channel_id)
        .await?
        .ok_or_else(|| ChannelChatError::not_found("Channel"))?;
    assistants::by_id(&**db, tenant_id, channel.assistant_id)
        .await?
        .filter(|a| a.deployed)
        .ok_or_else(|| ChannelChatError::not_found("The channel's assistant"))?;
    let conversation_id = conversations::open_for_identity(
        &mut db,
        tenant_id,
        identity_id,
        channel_id,
        channel.assistant_id,
        start_new,
    )
    .await?;
    Ok(Resolved {
        identity_id,
        channel_id,
        assistant_id: channel.assistant_id,
        conversation_id,
    })
}

/// The family's name in a logged stream format (`TurnRequest::stream_format`).
pub const FORMAT: &str = "identity_chat";

fn turn_request(
    request_id: Uuid,
    tenant_id: Uuid,
    resolved: &Resolved,
    text: String,
    metadata: Map<String, Value>,
    stream: bool,
) -> TurnRequest {
    TurnRequest {
        request_id,
        tenant_id,
        assistant: AssistantRef::Stored {
            id: resolved.assistant_id,
        },
        conversation_id: resolved.conversation_id.clone(),
        identity_id: Some(resolved.identity_id),
        channel_id: Some(resolved.channel_id),
        message: Message::text(conversations::new_message_id(), Role::User, text, now_ms()),
        history: Vec::new(),
        metadata,
        folder_ids: Vec::new(),
        stream,
        ephemeral: false,
        sampling: Default::default(),
        tools: Default::default(),
        stream_format: stream.then(|| json!({"family": FORMAT})),
        charge: None,
    }
}

/// `{identity_id, channel_id}`, both UUIDs.
fn parse_stream_token_body(body: Value) -> Result<(Uuid, Uuid), ChannelChatError> {
    let Value::Object(fields) = body else {
        return Err(ChannelChatError::invalid(
            "Request body must be a JSON object with identity_id and channel_id",
        ));
    };
    let uuid = |name: &str| match fields.get(name) {
        Some(Value::String(id)) => Uuid::parse_str(id)
            .map_err(|_| ChannelChatError::invalid(format!("{name} must be a UUID"))),
        None | Some(Value::Null) => Err(ChannelChatError::invalid(format!("{name} is required"))),
        Some(_) => Err(ChannelChatError::invalid(format!(
            "{name} must be a UUID string"
        ))),
    };
    Ok((uuid("identity_id")?, uuid("channel_id")?))
}

/// `{text, metadata?, new_conversation?}`.
fn parse_chat_body(body: Value) -> Result<(String, Map<String, Value>, bool), ChannelChatError> {
    let Value::Object(mut fields) = body else {
        return Err(ChannelChatError::invalid(
            "Request body must be a JSON object",
        ));
    };
    let text = match fields.remove("text") {
        Some(Value::String(text)) if !text.trim().is_empty() => text,
        Some(Value::String(_)) => return Err(ChannelChatError::invalid("text must not be empty")),
        None | Some(Value::Null) => return Err(ChannelChatError::invalid("text is required")),
        Some(_) => return Err(ChannelChatError::invalid("text must be a string")),
    };
    let metadata = match fields.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(metadata)) => metadata,
        Some(_) => return Err(ChannelChatError::invalid("metadata must be an object")),
    };
    let start_new = match fields.remove("new_conversation") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(ChannelChatError::invalid(
                "new_conversation must be a boolean",
            ));
        }
    };
    Ok((text, metadata, start_new))
}

async fn chat(
    State(state): State<AppState>,
    caller: Authenticated<ChannelChatError>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path((identity_id, channel_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ChannelChatError> {
    let (text, metadata, start_new) = parse_chat_body(json_body(body)?)?;
    let resolved = resolve(
        &state,
        caller.tenant_id,
        &identity_id,
        &channel_id,
        start_new,
    )
    .await?;
    let request = turn_request(
        request_id,
        caller.tenant_id,
        &resolved,
        text,
        metadata,
        false,
    );
    let message_id = request.message.id.clone();
    let turn = state.pipeline.submit(request).await?;
    let done = turn.collect().await?;
    Ok(Json(json!({
        "message": "Message processed successfully",
        "data": {
            "response": done.text,
            "conversation_id": resolved.conversation_id,
            "message_id": message_id,
            "response_message_id": done.message_id,
            "identity_id": resolved.identity_id,
            "channel_id": resolved.channel_id,
            "assistant_id": resolved.assistant_id,
            "model": done.model,
            "usage": {
                "prompt_tokens": done.usage.prompt_tokens,
                "completion_tokens": done.usage.completion_tokens,
                "total_tokens": done.usage.total(),
            },
            "sources": done.sources,
        },
    })))
}

/// The query of the streaming route; its credential, `token=`, is read by
/// [`AuthenticatedStream`].
#[derive(Debug, Deserialize)]
struct StreamingQuery {
    channel_id: Option<String>,
    message: Option<String>,
    new_conversation: Option<String>,
    /// For clients that cannot set the `Last-Event-ID` header.
    last_event_id: Option<String>,
}

async fn streaming(
    State(state): State<AppState>,
    caller: AuthenticatedStream<ChannelChatError>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(identity_id): Path<String>,
    headers: axum::http::HeaderMap,
    query: Result<Query<StreamingQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ChannelChatError> {
    let Query(query) = query.map_err(|e| ChannelChatError::invalid(e.body_text()))?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|id| id.to_str().unwrap_or("?").to_owned())
        .or(query.last_event_id);
    if let Some(last_event_id) = last_event_id {
        return reconnected(&state, &caller, &last_event_id).await;
    }
    let channel_id = query
        .channel_id
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ChannelChatError::invalid("channel_id is required"))?;
    let message = query
        .message
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| ChannelChatError::invalid("message is required"))?;
    if message.contains('\0') {
        return Err(ChannelChatError::invalid(
            "message must not contain NUL characters",
        ));
    }
    let start_new = match query.new_conversation.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(ChannelChatError::invalid(
                "new_conversation must be true or false",
            ));
        }
    };
    if let Some(visitor) = caller.visitor() {
        granted(
            &identity_id,
            &channel_id,
            visitor.identity_id,
            visitor.channel_id,
        )?;
    }
    let grant = caller.grant();
    if let Some(grant) = grant {
        spend_stream_token(&state, grant, request_id, &identity_id, &channel_id).await?;
    }
    let started = async {
        let resolved = resolve(
            &state,
            caller.tenant_id(),
            &identity_id,
            &channel_id,
            start_new,
        )
        .await?;
        let request = turn_request(
            request_id,
            caller.tenant_id(),
            &resolved,
            message,
            Map::new(),
            true,
        );
        Ok::<_, ChannelChatError>(state.pipeline.submit(request).await?)
    };
    match started.await {
        Ok(turn) => Ok(stream_reply(turn)),
        Err(error) => {
            if let Some(grant) = grant {
                give_back_stream_token(&state, grant, request_id).await;
            }
            Err(error)
        }
    }
}

/// A browser's `EventSource` reconnects by itself, with the same URL and the `Last-Event-ID` of
/// the last event it got. That is never a new turn: the stream goes on from where the client
/// was, read again from the reply log on whichever ingress the reconnect reaches (its answer
/// was still generated meanwhile, for the resume grace); a client that already has the whole
/// stream gets `204 No Content`, which tells the browser to stop reconnecting. Only the caller's
/// own streams are recognised: with a stream token, the one it started; with a key, any request
/// of the tenant; a visitor's, the streams of its own conversations on its channel.
async fn reconnected(
    state: &AppState,
    caller: &AuthenticatedStream<ChannelChatError>,
    last_event_id: &str,
) -> Result<Response, ChannelChatError> {
    let Some((request_id, after)) = crate::http::parse_event_id(last_event_id) else {
        return Err(ChannelChatError::invalid(
            "Last-Event-ID must be an event id of an earlier stream (request id:position)",
        ));
    };
    let db = state.db.get().await?;
    let ours = match caller.grant() {
        Some(grant) => tenants::stream_of_token(&**db, grant).await? == Some(request_id),
        None => true,
    };
    let mut conversation = match ours {
        true => conversations::of_request(&**db, caller.tenant_id(), request_id).await?,
        false => None,
    };
    if let (Some(visitor), Some(id)) = (caller.visitor(), &conversation)
        && !visitors::holds_conversation(&**db, visitor, id).await?
    {
        conversation = None;
    }
    drop(db);
    let Some(conversation_id) = conversation else {
        return Err(ChannelChatError::not_found("Stream"));
    };
    if state.pipeline.replay_expired(request_id) {
        return Err(EdgeFailure::not_found(
            "This stream ended longer ago than its events are kept \
             (CONFAB_RESUME_RETENTION_SECS); read its answer from the conversation",
        )
        .into());
    }
    let turn = state.pipeline.resume(request_id, conversation_id).await?;
    match resumed_stream(turn, after).await {
        Some(stream) => Ok(stream),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Spend the request's stream token, if it is one for this identity and channel and has not
/// started a stream yet.
async fn spend_stream_token(
    state: &AppState,
    grant: &StreamGrant,
    request_id: Uuid,
    identity_id: &str,
    channel_id: &str,
) -> Result<(), ChannelChatError> {
    granted(identity_id, channel_id, grant.identity_id, grant.channel_id)?;
    let db = state.db.get().await?;
    if !tenants::claim_stream_token(&**db, grant, request_id).await? {
        return Err(EdgeFailure::new(Reason::TokenSpent).into());
    }
    Ok(())
}

/// A token is good for the identity and channel it was made for only.
fn granted(
    identity_id: &str,
    channel_id: &str,
    granted_identity: Uuid,
    granted_channel: Uuid,
) -> Result<(), ChannelChatError> {
    let names = |id: &str, granted: Uuid| Uuid::parse_str(id).is_ok_and(|id| id == granted);
    if !names(identity_id, granted_identity) || !names(channel_id, granted_channel) {
        return Err(EdgeFailure::new(Reason::Forbidden)
            .with_message("This token was made for another identity or channel")
            .into());
    }
    Ok(())
}

/// A stream that never started (its conversation or the broker refused it) leaves its token
/// unspent, so that the page's retry works.
async fn give_back_stream_token(state: &AppState, grant: &StreamGrant, request_id: Uuid) {
    let given_back = match state.db.get().await {
        Ok(db) => tenants::unclaim_stream_token(&**db, grant, request_id)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = given_back {
        tracing::warn!(%error, "could not give back a stream token");
    }
}

fn stream_reply(turn: Turn) -> Response {
    let headers = [crate::http::conversation_header(&turn.conversation_id)];
    let (stall, request_id) = (turn.stream_stall, turn.request_id);
    sse_response(seed_events(turn), request_id, &headers, stall)
}

/// A reconnect's stream: what its client missed after event `after`, then the live rest; `None`
/// when it missed nothing.
pub async fn resumed_stream(turn: Turn, after: u64) -> Option<Response> {
    let headers = [crate::http::conversation_header(&turn.conversation_id)];
    let (stall, request_id) = (turn.stream_stall, turn.request_id);
    resumed_sse_response(seed_events(turn), request_id, after, &headers, stall).await
}

/// The seed's events of a turn: `token`s, then `complete` or `error`.
fn seed_events(
    mut turn: Turn,
) -> impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>> {
    async_stream::stream! {
        while let Some(event) = turn.next().await {
            let data = match event {
                TurnEvent::Delta(piece) => json!({"type": "token", "content": piece}),
                TurnEvent::Done(done) => json!({"type": "complete", "content": done.text}),
                TurnEvent::Failed(failure) => json!({"type": "error", "content": failure.message}),
            };
            yield Ok(Event::default().data(data.to_string()));
        }
    }
}

/// `POST /v1/stream-tokens` with `{identity_id, channel_id}`: a token for one browser's
/// `EventSource`, good for one stream of that identity on that channel, started within
/// [`STREAM_TOKEN_TTL_SECS`].
async fn mint_stream_token(
    State(state): State<AppState>,
    caller: Authenticated<ChannelChatError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ChannelChatError> {
    let (identity_id, channel_id) = parse_stream_token_body(json_body(body)?)?;
    let db = state.db.get().await?;
    identities::by_id(&**db, caller.tenant_id, identity_id)
        .await?
        .ok_or_else(|| ChannelChatError::not_found("Identity"))?;
    channels::by_id(&**db, caller.tenant_id, channel_id)
        .await?
        .ok_or_else(|| ChannelChatError::not_found("Channel"))?;
    let owner = tenants::StreamTokenOwner {
        tenant_id: caller.tenant_id,
        key_id: caller.key_id,
    };
    let (token, expires_at) =
        tenants::create_stream_token(&**db, owner, identity_id, channel_id, STREAM_TOKEN_TTL_SECS)
            .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"token": token, "expires_at": expires_at, "expires_in": STREAM_TOKEN_TTL_SECS}),
        ),
    ))
}
