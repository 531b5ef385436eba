//! `/v1/conversations`: list (filtered by assistant, identity or channel), read, the full
//! history in order, and delete.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::pagination::PageQuery;
use super::{ApiError, Resource, deleted, query_params};
use crate::http::openapi::schema::{reference, uuid};
use crate::http::{ApiRouter, AppState, Authenticated, Operation, Reply};
use crate::store::conversations::{self, Conversation, Filter};

const DOC: Resource = Resource {
    tag: "conversations",
    schema: "Conversation",
    id: "The conversation's id",
};

pub fn router() -> ApiRouter {
    let history = Operation::new("listMessages", "A conversation's turns, oldest first")
        .tag(DOC.tag)
        .path_param("id", DOC.id)
        .paged()
        .response(200, Reply::new("OK").json(reference("MessagePage")))
        .errors("ApiError", &[400, 401, 404, 429, 500, 503]);
    ApiRouter::new()
        .tag(DOC.tag, "Conversations and their stored turns")
        .get(
            "/v1/conversations",
            list,
            DOC.list("listConversations", "List conversations, newest first")
                .query("assistant_id", false, "Only this assistant's", uuid())
                .query("identity_id", false, "Only this identity's", uuid())
                .query("channel_id", false, "Only this channel's", uuid()),
        )
        .get(
            "/v1/conversations/{id}",
            read,
            DOC.read("getConversation", "Read a conversation"),
        )
        .delete(
            "/v1/conversations/{id}",
            remove,
            DOC.delete("deleteConversation", "Delete a conversation and its turns"),
        )
        .get("/v1/conversations/{id}/messages", messages, history)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    page: PageQuery,
    assistant_id: Option<String>,
    identity_id: Option<String>,
    channel_id: Option<String>,
}

fn query_uuid(value: &Option<String>, field: &str) -> Result<Option<Uuid>, ApiError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| {
            Uuid::parse_str(v)
                .map_err(|_| ApiError::invalid(field, format!("{field} must be a UUID")))
        })
        .transpose()
}

async fn list(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant_id = caller.tenant_id;
    let query = query_params(query)?;
    let page = query.page.page()?;
    let filter = Filter {
        assistant_id: query_uuid(&query.assistant_id, "assistant_id")?,
        identity_id: query_uuid(&query.identity_id, "identity_id")?,
        channel_id: query_uuid(&query.channel_id, "channel_id")?,
    };
    let cursor = page.numeric_cursor()?;
    let db = state.db.get().await?;
    let items = conversations::list(&**db, tenant_id, &filter, cursor, page.fetch()).await?;
    Ok(Json(page.body(items, |c| c.pk.to_string())))
}

async fn find(state: &AppState, tenant_id: Uuid, id: &str) -> Result<Conversation, ApiError> {
    let db = state.db.get().await?;
    conversations::by_id(&**db, tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))
}

async fn read(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    let tenant_id = caller.tenant_id;
    find(&state, tenant_id, &id).await.map(Json)
}

async fn messages(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant_id = caller.tenant_id;
    let query = query_params(query)?;
    let page = query.page()?;
    let cursor = page.numeric_cursor()?;
    let conversation = find(&state, tenant_id, &id).await?;
    let db = state.db.get().await?;
    let items = conversations::messages(&**db, conversation.pk, cursor, page.fetch()).await?;
    Ok(Json(page.body(items, |m| m.pk.to_string())))
}

async fn remove(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = caller.tenant_id;
    let db = state.db.get().await?;
    deleted(
        conversations::delete(&**db, tenant_id, &id).await,
        "conversation",
    )
}
