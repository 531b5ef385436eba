//! `POST /v1/requests/{id}/cancel`: stop a request that is still being answered; its id is the
//! `X-Request-Id` of its response. A request not started yet never starts; one being answered
//! stops within moments, its partial answer stored as interrupted; its caller, if still waiting,
//! gets a "cancelled" error in its own dialect (409).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, Resource, fields};
use crate::http::openapi::schema::{enum_of, record, uuid};
use crate::http::{ApiRouter, AppState, Authenticated, Reply};
use crate::store::pending_turns;

const DOC: Resource = Resource {
    tag: "requests",
    schema: "CancelledRequest",
    id: "The request's id (its `X-Request-Id`)",
};

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .tag(DOC.tag, "Requests being answered")
        .component(
            "CancelledRequest",
            record([("request_id", uuid()), ("status", enum_of(&["cancelling"]))]),
        )
        .post(
            "/v1/requests/{id}/cancel",
            cancel,
            DOC.op(
                "cancelRequest",
                "Cancel a request still being answered",
                &[401, 404, 429, 500, 503],
            )
            .path_param("id", DOC.id)
            .response(
                202,
                Reply::new("Cancelling")
                    .json(crate::http::openapi::schema::reference("CancelledRequest")),
            ),
        )
}

async fn cancel(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant_id = caller.tenant_id;
    let request_id = fields::path_uuid(&id, "request")?;
    let db = state.db.get().await?;
    // Only the caller's own requests still being answered can be cancelled; the flag stops one
    // that no worker has taken yet, the broadcast one that is running.
    let marked = pending_turns::flag_cancelled(&**db, tenant_id, request_id).await?;
    if !marked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "No request with this id is being answered",
        ));
    }
    state.broker().broadcast_cancel(request_id).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"request_id": request_id, "status": "cancelling"})),
    ))
}
