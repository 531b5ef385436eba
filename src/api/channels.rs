//! `/v1/channels`: channels and the assistant each is connected to.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use super::fields;
use super::pagination::PageQuery;
use super::{ApiError, Resource, deleted, found, object_body, query_params};
use crate::http::{ApiRouter, AppState, Authenticated};
use crate::store::assistants;
use crate::store::channels::{self, Channel, KINDS, NewChannel};

const DOC: Resource = Resource {
    tag: "channels",
    schema: "Channel",
    id: "The channel's id",
};

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .tag(
            DOC.tag,
            "Channels, each connected to the assistant that answers on it",
        )
        .get(
            "/v1/channels",
            list,
            DOC.list("listChannels", "List channels, newest first"),
        )
        .post(
            "/v1/channels",
            create,
            DOC.create("createChannel", "Create a channel"),
        )
        .get(
            "/v1/channels/{id}",
            read,
            DOC.read("getChannel", "Read a channel"),
        )
        .patch(
            "/v1/channels/{id}",
            update,
            DOC.update(
                "updateChannel",
                "Rename, reconnect or reconfigure a channel",
            ),
        )
        .delete(
            "/v1/channels/{id}",
            remove,
            DOC.delete("deleteChannel", "Delete a channel"),
        )
}

/// The assistant a channel is to be connected to must be one of the tenant's.
async fn check_assistant(
    client: &impl tokio_postgres::GenericClient,
    tenant_id: Uuid,
    assistant_id: Uuid,
) -> Result<(), ApiError> {
    match assistants::by_id(client, tenant_id, assistant_id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::invalid("assistant_id", "no such assistant")),
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Channel>), ApiError> {
    let tenant_id = caller.tenant_id;
    let mut body = object_body(body)?;
    let name = fields::required_text(&mut body, "name", 200)?;
    let kind = fields::required_text(&mut body, "kind", 20)?;
    if !KINDS.contains(&kind.as_str()) {
        return Err(ApiError::invalid(
            "kind",
            format!("kind must be one of {}", KINDS.join(", ")),
        ));
    }
    let assistant_id = fields::optional_uuid(&mut body, "assistant_id")?
        .ok_or_else(|| ApiError::invalid("assistant_id", "assistant_id is required"))?;
    let config = fields::optional_object(&mut body, "config")?.unwrap_or_default();
    fields::no_unknown(&body)?;
    let db = state.db.get().await?;
    check_assistant(&**db, tenant_id, assistant_id).await?;
    let new = NewChannel {
        name,
        kind,
        assistant_id,
        config,
    };
    let channel = channels::create(&**db, tenant_id, &new, &state.secrets).await?;
    Ok((StatusCode::CREATED, Json(channel)))
}

async fn list(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant_id = caller.tenant_id;
    let query = query_params(query)?;
    let page = query.page()?;
    let cursor = page.uuid_cursor()?;
    let db = state.db.get().await?;
    let items = channels::list(&**db, tenant_id, cursor, page.fetch()).await?;
    Ok(Json(page.body(items, |c| c.id.to_string())))
}

async fn read(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<Json<Channel>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "channel")?;
    let db = state.db.get().await?;
    found(channels::by_id(&**db, tenant_id, id).await, "channel")
}

async fn update(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Channel>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "channel")?;
    let mut body = object_body(body)?;
    let name = fields::optional_text(&mut body, "name", 200)?;
    let assistant_id = fields::optional_uuid(&mut body, "assistant_id")?;
    let config = fields::optional_object(&mut body, "config")?;
    fields::no_unknown(&body)?;
    let db = state.db.get().await?;
    if let Some(assistant_id) = assistant_id {
        check_assistant(&**db, tenant_id, assistant_id).await?;
    }
    found(
        channels::update(
            &**db,
            tenant_id,
            id,
            name.as_deref(),
            assistant_id,
            config.as_ref(),
            &state.secrets,
        )
        .await,
        "channel",
    )
}

async fn remove(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "channel")?;
    let db = state.db.get().await?;
    deleted(channels::delete(&**db, tenant_id, id).await, "channel")
}
