//! `/v1/identities`: the end users who talk to assistants.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::fields;
use super::pagination::PageQuery;
use super::{ApiError, Resource, deleted, found, query_params};
use crate::http::openapi::schema::string;
use crate::http::{ApiRouter, AppState, Authenticated, Operation};
use crate::store::identities::{self, Identity, IdentityError};

const DOC: Resource = Resource {
    tag: "identities",
    schema: "Identity",
    id: "The identity's id",
};

pub fn router() -> ApiRouter {
    let conflict = |op: Operation| op.errors("ApiError", &[409]);
    let by_external_id = "Only the identity with this external id";
    ApiRouter::new()
        .tag(DOC.tag, "Identities: the end users who talk to assistants")
        .get(
            "/v1/identities",
            list,
            DOC.list("listIdentities", "List identities, newest first")
                .query("external_id", false, by_external_id, string()),
        )
        .post(
            "/v1/identities",
            create,
            conflict(DOC.create("createIdentity", "Create an identity")),
        )
        .get(
            "/v1/identities/{id}",
            read,
            DOC.read("getIdentity", "Read an identity"),
        )
        .patch(
            "/v1/identities/{id}",
            update,
            conflict(DOC.update(
                "updateIdentity",
                "Change an identity; the profile is merged",
            )),
        )
        .delete(
            "/v1/identities/{id}",
            remove,
            DOC.delete("deleteIdentity", "Delete an identity"),
        )
}

fn identity_error(error: IdentityError) -> ApiError {
    match error {
        IdentityError::ExternalIdTaken(id) => {
            let mut error = ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("an identity with external id '{id}' already exists"),
            );
            error.details = serde_json::json!({"field": "external_id"});
            error
        }
        IdentityError::Db(e) => e.into(),
    }
}

/// A create or update body: every field may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityBody {
    #[serde(default, deserialize_with = "fields::text::<200, _>")]
    name: Option<String>,
    #[serde(default, deserialize_with = "fields::text::<200, _>")]
    external_id: Option<String>,
    #[serde(default, deserialize_with = "fields::object")]
    profile: Option<serde_json::Map<String, Value>>,
}

async fn create(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Identity>), ApiError> {
    let tenant_id = caller.tenant_id;
    let IdentityBody {
        name,
        external_id,
        profile,
    } = fields::read(body)?;
    let profile = Value::Object(profile.unwrap_or_default());
    let db = state.db.get().await?;
    let identity = identities::create(
        &**db,
        tenant_id,
        name.as_deref(),
        external_id.as_deref(),
        &profile,
    )
    .await
    .map_err(identity_error)?;
    Ok((StatusCode::CREATED, Json(identity)))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    page: PageQuery,
    external_id: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant_id = caller.tenant_id;
    let query = query_params(query)?;
    let page = query.page.page()?;
    let cursor = page.uuid_cursor()?;
    let db = state.db.get().await?;
    let items = identities::list(
        &**db,
        tenant_id,
        query.external_id.as_deref(),
        cursor,
        page.fetch(),
    )
    .await?;
    Ok(Json(page.body(items, |i| i.id.to_string())))
}

async fn read(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<Json<Identity>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "identity")?;
    let db = state.db.get().await?;
    found(identities::by_id(&**db, tenant_id, id).await, "identity")
}

async fn update(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Identity>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "identity")?;
    let IdentityBody {
        name,
        external_id,
        profile,
    } = fields::read(body)?;
    let profile = profile.map(Value::Object);
    let db = state.db.get().await?;
    identities::update(
        &**db,
        tenant_id,
        id,
        name.as_deref(),
        external_id.as_deref(),
        profile.as_ref(),
    )
    .await
    .map_err(identity_error)?
    .map(Json)
    .ok_or_else(|| ApiError::not_found("identity"))
}

async fn remove(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "identity")?;
    let db = state.db.get().await?;
    deleted(identities::delete(&**db, tenant_id, id).await, "identity")
}
