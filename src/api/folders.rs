//! `/v1/folders`: knowledge folders (documents come with the knowledge base).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::fields;
use super::pagination::PageQuery;
use super::{ApiError, object_body};
use crate::auth;
use crate::folders::{self, Folder, FolderError};
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/folders", get(list).post(create))
        .route("/v1/folders/{id}", get(read))
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Folder>), ApiError> {
    let tenant_id = auth::authorize(&state, &headers).await?.tenant_id;
    let mut body = object_body(body)?;
    let name = fields::required_text(&mut body, "name", 200)?;
    let language =
        fields::optional_text(&mut body, "language", 63)?.unwrap_or_else(|| "english".into());
    fields::no_unknown(&body)?;
    let db = state.db.get().await.map_err(ApiError::internal)?;
    match folders::create(&**db, tenant_id, &name, &language).await {
        Ok(folder) => Ok((StatusCode::CREATED, Json(folder))),
        Err(FolderError::NameTaken(name)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a folder named '{name}' already exists"),
        )),
        Err(FolderError::UnknownLanguage(language)) => Err(ApiError::invalid(
            "language",
            format!("'{language}' is not a supported text search language"),
        )),
        Err(FolderError::Db(e)) => Err(ApiError::internal(e)),
    }
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let tenant_id = auth::authorize(&state, &headers).await?.tenant_id;
    let page = query.page()?;
    let cursor = page.uuid_cursor()?;
    let db = state.db.get().await.map_err(ApiError::internal)?;
    let items = folders::list(&**db, tenant_id, cursor, page.fetch())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(page.body(items, |f| f.id.to_string())))
}

async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Folder>, ApiError> {
    let tenant_id = auth::authorize(&state, &headers).await?.tenant_id;
    let id = fields::path_uuid(&id, "folder")?;
    let db = state.db.get().await.map_err(ApiError::internal)?;
    folders::by_id(&**db, tenant_id, id)
        .await
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("folder"))
}
