//! `/v1/folders`: knowledge folders (documents come with the knowledge base).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::fields;
use super::pagination::PageQuery;
use super::{ApiError, Resource, found, query_params};
use crate::http::{ApiRouter, AppState, Authenticated};
use crate::store::folders::{self, Folder, FolderError};

const DOC: Resource = Resource {
    tag: "folders",
    schema: "Folder",
    id: "The folder's id",
};

pub fn router() -> ApiRouter {
    let create_doc = DOC.create("createFolder", "Create a folder");
    ApiRouter::new()
        .tag(DOC.tag, "Knowledge folders")
        .get(
            "/v1/folders",
            list,
            DOC.list("listFolders", "List folders, newest first"),
        )
        .post("/v1/folders", create, create_doc.errors("ApiError", &[409]))
        .get(
            "/v1/folders/{id}",
            read,
            DOC.read("getFolder", "Read a folder"),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderCreate {
    #[serde(default, deserialize_with = "fields::text::<200, _>")]
    name: Option<String>,
    #[serde(default, deserialize_with = "fields::text::<63, _>")]
    language: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Folder>), ApiError> {
    let tenant_id = caller.tenant_id;
    let FolderCreate { name, language } = fields::read(body)?;
    let name = fields::required(name, "name")?;
    let language = language.unwrap_or_else(|| "english".into());
    let db = state.db.get().await?;
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
        Err(FolderError::Db(e)) => Err(e.into()),
    }
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
    let items = folders::list(&**db, tenant_id, cursor, page.fetch()).await?;
    Ok(Json(page.body(items, |f| f.id.to_string())))
}

async fn read(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<Json<Folder>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "folder")?;
    let db = state.db.get().await?;
    found(folders::by_id(&**db, tenant_id, id).await, "folder")
}
