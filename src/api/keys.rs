//! `/v1/keys`: the tenant's API keys. A new key's secret is in the creation response and nowhere
//! else, ever; revoking takes effect on the next request.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::fields;
use super::pagination::PageQuery;
use super::{ApiError, Resource, deleted, found, query_params};
use crate::http::openapi::schema::reference;
use crate::http::{ApiRouter, AppState, Authenticated, Operation, Reply};
use crate::store::tenants::{self, KeyInfo};

const DOC: Resource = Resource {
    tag: "keys",
    schema: "Key",
    id: "The key's id",
};

pub fn router() -> ApiRouter {
    // The one creation whose answer is not the resource as read: it holds the secret.
    let create_doc = Operation::new("createKey", "Create a key")
        .tag(DOC.tag)
        .body(reference("KeyCreate"))
        .response(
            201,
            Reply::new("Created; `api_key` is shown this once").json(reference("CreatedKey")),
        )
        .errors("ApiError", &[400, 401, 413, 429, 500, 503]);
    ApiRouter::new()
        .tag(
            DOC.tag,
            "API keys; a key's secret is shown once, when it is created",
        )
        .get(
            "/v1/keys",
            list,
            DOC.list("listKeys", "List keys, newest first, without secrets"),
        )
        .post("/v1/keys", create, create_doc)
        .get(
            "/v1/keys/{id}",
            read,
            DOC.read("getKey", "Read a key (never its secret)"),
        )
        .patch(
            "/v1/keys/{id}",
            update,
            DOC.update("updateKey", "Set or clear a key's own rate limit"),
        )
        .delete(
            "/v1/keys/{id}",
            revoke,
            DOC.delete("revokeKey", "Revoke a key, from its next request on"),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyCreate {
    #[serde(default, deserialize_with = "fields::text::<200, _>")]
    name: Option<String>,
    #[serde(
        rename = "rate_limit_per_min",
        default,
        deserialize_with = "fields::positive_int"
    )]
    limit: Option<i32>,
}

/// The limit must be given: a number, or `null` for the default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyUpdate {
    #[serde(
        rename = "rate_limit_per_min",
        default,
        deserialize_with = "fields::nullable_positive_int"
    )]
    limit: Option<Option<i32>>,
}

async fn create(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant_id = caller.tenant_id;
    let KeyCreate { name, limit } = fields::read(body)?;
    let name = name.unwrap_or_else(|| "api".into());
    let db = state.db.get().await?;
    let key = tenants::create_key(&**db, tenant_id, &name, limit).await?;
    let info = tenants::key_by_id(&**db, tenant_id, key.id)
        .await?
        .ok_or_else(|| ApiError::internal("the new key vanished"))?;
    let mut body = serde_json::to_value(info).map_err(ApiError::internal)?;
    body["api_key"] = json!(key.secret);
    Ok((StatusCode::CREATED, Json(body)))
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
    let items = tenants::list_keys(&**db, tenant_id, cursor, page.fetch()).await?;
    Ok(Json(page.body(items, |k| k.id.to_string())))
}

async fn read(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<Json<KeyInfo>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "key")?;
    let db = state.db.get().await?;
    found(tenants::key_by_id(&**db, tenant_id, id).await, "key")
}

/// `{"rate_limit_per_min": N}` sets the key's own limit; `null` returns it to the default.
async fn update(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<KeyInfo>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "key")?;
    let KeyUpdate { limit } = fields::read(body)?;
    let limit = fields::required(limit, "rate_limit_per_min")?;
    let db = state.db.get().await?;
    found(
        tenants::set_key_limit(&**db, tenant_id, id, limit).await,
        "key",
    )
}

async fn revoke(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "key")?;
    let db = state.db.get().await?;
    deleted(tenants::revoke_key(&**db, tenant_id, id).await, "key")
}
