//! `/v1/folders/{id}/documents` and `/v1/documents/{id}`: the knowledge base's documents. A
//! document is identified by its title within its folder: posting it again replaces it when its
//! content changed and changes nothing when it did not (`stored` says which).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{FOLDER_FULL, TOO_MANY_PASSAGES};
use super::fields;
use super::pagination::PageQuery;
use super::{ApiError, Resource, deleted, found, query_params};
use crate::http::openapi::schema::{
    closed, date_time, described, enum_of, integer, nullable, page, record, reference, string, uuid,
};
use crate::http::{ApiRouter, AppState, Authenticated, EdgeFailure, Reply};
use crate::store::documents::{self, Draft, StoreError, Stored};
use crate::store::folders;

const DOC: Resource = Resource {
    tag: "documents",
    schema: "Document",
    id: "The document's id",
};

/// Largest document accepted, in bytes (the request body limit may be lower).
const MAX_CONTENT: usize = 2 * 1024 * 1024;

pub fn router() -> ApiRouter {
    let create = DOC
        .op(
            "putDocument",
            "Add a document to a folder, or replace it",
            &[400, 401, 404, 413, 422, 429, 500, 503],
        )
        .path_param("id", "The folder's id")
        .body(reference("DocumentCreate"))
        .response(201, Reply::new("Created").json(reference("StoredDocument")))
        .response(
            200,
            Reply::new("Replaced, or unchanged").json(reference("StoredDocument")),
        );
    let list = DOC
        .op(
            "listDocuments",
            "List a folder's documents, newest first",
            &[400, 401, 404, 429, 500, 503],
        )
        .path_param("id", "The folder's id")
        .paged()
        .response(200, Reply::new("OK").json(reference("DocumentPage")));
    ApiRouter::new()
        .tag(
            DOC.tag,
            "Knowledge documents, split into searchable passages",
        )
        .components(schemas())
        .post("/v1/folders/{id}/documents", put, create)
        .get("/v1/folders/{id}/documents", list_in_folder, list)
        .get(
            "/v1/documents/{id}",
            read,
            DOC.read("getDocument", "Read a document"),
        )
        .delete(
            "/v1/documents/{id}",
            remove,
            DOC.delete("deleteDocument", "Delete a document"),
        )
}

fn schemas() -> Vec<(&'static str, Value)> {
    let document = [
        ("id", uuid()),
        ("folder_id", uuid()),
        ("title", string()),
        ("format", enum_of(&["text", "markdown"])),
        (
            "chunks",
            described(integer(), "Passages the document was split into"),
        ),
        ("created_at", date_time()),
        ("updated_at", date_time()),
    ];
    let mut stored = document.to_vec();
    stored.push(("stored", enum_of(&["created", "updated", "unchanged"])));
    vec![
        ("Document", record(document)),
        ("StoredDocument", record(stored)),
        ("DocumentPage", page("Document")),
        (
            "DocumentCreate",
            closed(
                [
                    (
                        "title",
                        described(
                            string(),
                            "Not blank, at most 300 characters; names the document in its folder and in answers' sources",
                        ),
                    ),
                    (
                        "content",
                        described(
                            string(),
                            "The text; at most 2 MiB, split into at most the configured passages per document (422 `too_many_passages`), and within the folder's byte budget (422 `folder_full`)",
                        ),
                    ),
                    (
                        "format",
                        described(
                            nullable(enum_of(&["text", "markdown"])),
                            "Default `markdown`: `#` lines are headings",
                        ),
                    ),
                ],
                &["title", "content"],
            ),
        ),
    ]
}

async fn put(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(folder_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant_id = caller.tenant_id;
    let folder_id = fields::path_uuid(&folder_id, "folder")?;
    let upload = Upload::read(fields::read(body)?)?;
    // Split and count before any database work, so a refused document costs none.
    let draft = Draft::new(
        &upload.title,
        &upload.format,
        &upload.content,
        &state.knowledge,
    )
    .map_err(refusal)?;
    // Held until the response: the upload's connection counts against the heavy writes' share.
    let _permit = state
        .heavy_writes
        .enter()
        .await
        .map_err(EdgeFailure::from)?;
    let mut db = state.db.get().await?;
    let tx = db.transaction().await?;
    let (document, stored) = documents::store(&tx, tenant_id, folder_id, &draft, &state.knowledge)
        .await
        .map_err(refusal)?;
    tx.commit().await?;
    let status = if stored == Stored::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut body = serde_json::to_value(document).map_err(ApiError::internal)?;
    body["stored"] = json!(stored);
    Ok((status, Json(body)))
}

/// A document upload's fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadBody {
    #[serde(default, deserialize_with = "fields::text::<300, _>")]
    title: Option<String>,
    #[serde(default, deserialize_with = "fields::string")]
    content: Option<String>,
    #[serde(default, deserialize_with = "fields::string")]
    format: Option<String>,
}

/// An upload whose fields are all there and within their limits.
struct Upload {
    title: String,
    content: String,
    format: String,
}

impl Upload {
    fn read(body: UploadBody) -> Result<Self, ApiError> {
        let title = fields::required(body.title, "title")?;
        let content = fields::required(body.content, "content")?;
        if content.len() > MAX_CONTENT {
            return Err(ApiError::invalid(
                "content",
                "content must be at most 2 MiB",
            ));
        }
        let format = body.format.unwrap_or_else(|| "markdown".into());
        if format != "markdown" && format != "text" {
            return Err(ApiError::invalid(
                "format",
                "format must be \"markdown\" or \"text\"",
            ));
        }
        Ok(Self {
            title,
            content,
            format,
        })
    }
}

/// A document the limits refuse is a 422 naming the limit, its value and what the document
/// would have taken; the folder's budget is refused the same way, since the request itself is
/// within the body limit (413 stays the body limit's).
fn refusal(error: StoreError) -> ApiError {
    let message = error.to_string();
    let (code, limit, max, actual) = match error {
        StoreError::TooManyPassages { passages, limit } => (
            TOO_MANY_PASSAGES,
            "max_passages_per_document",
            limit as u64,
            passages as u64,
        ),
        StoreError::FolderFull { would_hold, limit } => {
            (FOLDER_FULL, "max_folder_bytes", limit, would_hold)
        }
        StoreError::FolderNotFound => return ApiError::not_found("folder"),
        StoreError::Db(error) => return error.into(),
    };
    let mut refused = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
    refused.details = json!({"field": "content", "limit": limit, "max": max, "actual": actual});
    refused
}

async fn list_in_folder(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(folder_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant_id = caller.tenant_id;
    let folder_id = fields::path_uuid(&folder_id, "folder")?;
    let page = query_params(query)?.page()?;
    let cursor = page.uuid_cursor()?;
    let db = state.db.get().await?;
    folders::by_id(&**db, tenant_id, folder_id)
        .await?
        .ok_or_else(|| ApiError::not_found("folder"))?;
    let items = documents::list(&**db, tenant_id, folder_id, cursor, page.fetch()).await?;
    Ok(Json(page.body(items, |d| d.id.to_string())))
}

async fn read(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<Json<documents::Document>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "document")?;
    let db = state.db.get().await?;
    found(documents::by_id(&**db, tenant_id, id).await, "document")
}

async fn remove(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "document")?;
    let db = state.db.get().await?;
    deleted(documents::delete(&**db, tenant_id, id).await, "document")
}
