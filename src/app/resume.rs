//! `GET /v1/requests/{id}/events`: a stream started by a POST of any chat dialect, read again
//! after its connection dropped, on any ingress: every event after the client's
//! `Last-Event-ID` (or `last_event_id`; none means the whole stream), in the family's own
//! shape, then the live rest, with no second model call. It lives here, above the families,
//! because it renders each family's stream: the family is named by the format the worker
//! logged with the stream's first event (`TurnRequest::stream_format`, carried by the job).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::api::ApiError;
use crate::dialects::{agents, ai_hub, identity_chat, openai};
use crate::http::openapi::schema::{any_object, string};
use crate::http::{
    ApiRouter, AppState, Authenticated, EdgeFailure, Operation, Reply, parse_event_id,
};
use crate::pipeline::Turn;
use crate::store::conversations;

pub fn router() -> ApiRouter {
    let op = Operation::new(
        "resumeRequestEvents",
        "Read a dropped stream again from where its client was",
    )
    .tag("requests")
    .describe(
        "For streams started by a POST (seed 001, seed 002, OpenAI; seed 000's own GET route \
         resumes on its URL too). The events keep the ids and shapes of the first stream. \
         Events are kept `CONFAB_RESUME_RETENTION_SECS` after the request started.",
    )
    .path_param("id", "The request's id (the stream's `X-Request-Id`)")
    .header(
        "Last-Event-ID",
        "The `id` of the last event the client got; without it, the whole stream",
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
            "The events after the given one, in the stream's own family's shape (with its \
             `[DONE]`, where the family ends with one), then the live rest",
        )
        .sse(any_object(), None),
    )
    .response(
        204,
        Reply::new("The client already has the whole stream: stop reconnecting"),
    )
    .errors("ApiError", &[400, 401, 404, 429, 500, 503]);
    ApiRouter::new().get("/v1/requests/{id}/events", events, op)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    last_event_id: Option<String>,
}

async fn events(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let request_id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::invalid("id", "The request id must be a UUID"))?;
    let after = after_position(&headers, query.last_event_id, request_id)?;
    let db = state.db.get().await?;
    let conversation = conversations::of_request(&**db, caller.tenant_id, request_id).await?;
    drop(db);
    let Some(conversation_id) = conversation else {
        return Err(ApiError::not_found("Request"));
    };
    if state.pipeline.replay_expired(request_id) {
        return Err(gone_from_the_log());
    }
    let resumed = state
        .pipeline
        .resume_with_format(caller.tenant_id, request_id, conversation_id)
        .await
        .map_err(|e| ApiError::from(EdgeFailure::from(e)))?;
    let Some(format) = resumed.format else {
        return Err(gone_from_the_log());
    };
    match render(&format, resumed.turn, after).await {
        Some(stream) => Ok(stream),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// The position of the last event the client got (0: none), from the header or the query; it
/// must be an event of this request.
fn after_position(
    headers: &HeaderMap,
    query: Option<String>,
    request_id: Uuid,
) -> Result<u64, ApiError> {
    let given = headers
        .get("last-event-id")
        .map(|id| id.to_str().unwrap_or("?").to_owned())
        .or(query);
    let Some(given) = given else {
        return Ok(0);
    };
    match parse_event_id(&given) {
        Some((of, position)) if of == request_id => Ok(position),
        _ => Err(ApiError::invalid(
            "Last-Event-ID",
            "Last-Event-ID must be the id of an event of this request's stream",
        )),
    }
}

fn gone_from_the_log() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "This request has no stream in the reply log: it was answered as JSON, or it started \
         longer ago than its events are kept (CONFAB_RESUME_RETENTION_SECS); read its answer \
         from its conversation",
    )
}

/// The stream in the shape of the family that started it; `None` when nothing is left to send.
async fn render(format: &Value, turn: Turn, after: u64) -> Option<Response> {
    match format["family"].as_str()? {
        agents::FORMAT => agents::resumed_stream(turn, after).await,
        identity_chat::FORMAT => identity_chat::resumed_stream(turn, after).await,
        openai::FORMAT => openai::resumed_stream(format, turn, after).await,
        ai_hub::FORMAT => ai_hub::resumed_stream(format, turn, after).await,
        _ => None,
    }
}
