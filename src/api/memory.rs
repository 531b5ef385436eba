//! `/v1/identities/{id}/memory`: what the assistant knows about an identity (preferences, data,
//! a stage, custom associations), included in the context of the identity's every turn on every
//! channel; a change takes effect on the next turn. `GET` reads it, `PUT` replaces it, `PATCH`
//! merges into it (a `null` value removes a key; `"stage": null` clears the stage), and
//! `PUT`/`DELETE /v1/identities/{id}/memory/{section}/{key}` set or remove one key of
//! `preferences`, `data` or `associations`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde_json::Value;
use uuid::Uuid;

use super::fields;
use super::{ApiError, Resource, found, object_body};
use crate::http::openapi::schema::{
    any_object, closed, described, nullable, record, reference, string,
};
use crate::http::{ApiRouter, AppState, Authenticated, Reply, json_body};
use crate::store::identities::{self, Memory, MemoryUpdate, Section};

const DOC: Resource = Resource {
    tag: "identities",
    schema: "Memory",
    id: "The identity's id",
};

pub fn router() -> ApiRouter {
    let ok = || Reply::new("The identity's memory").json(reference("Memory"));
    let key = |id: &'static str, summary: &'static str| {
        DOC.op(id, summary, &[400, 401, 404, 429, 500, 503])
            .path_param("id", DOC.id)
            .path_param("section", "`preferences`, `data` or `associations`")
            .path_param("key", "The key within the section")
            .response(200, ok())
    };
    ApiRouter::new()
        .components(schemas())
        .get(
            "/v1/identities/{id}/memory",
            read,
            DOC.read("getMemory", "Read an identity's memory"),
        )
        .put(
            "/v1/identities/{id}/memory",
            replace,
            DOC.update("replaceMemory", "Replace an identity's memory")
                .body(reference("MemoryWrite")),
        )
        .patch(
            "/v1/identities/{id}/memory",
            merge,
            DOC.update("mergeMemory", "Merge into an identity's memory")
                .body(reference("MemoryWrite")),
        )
        .put(
            "/v1/identities/{id}/memory/{section}/{key}",
            set_key,
            key("setMemoryKey", "Set one key of a memory section")
                .body(described(serde_json::json!({}), "Any JSON value")),
        )
        .delete(
            "/v1/identities/{id}/memory/{section}/{key}",
            remove_key,
            key("removeMemoryKey", "Remove one key of a memory section"),
        )
}

fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Memory",
            record([
                ("preferences", any_object()),
                ("data", any_object()),
                ("stage", nullable(string())),
                ("associations", any_object()),
            ]),
        ),
        (
            "MemoryWrite",
            closed(
                [
                    ("preferences", nullable(any_object())),
                    ("data", nullable(any_object())),
                    (
                        "stage",
                        described(nullable(string()), "At most 100 characters"),
                    ),
                    ("associations", nullable(any_object())),
                ],
                &[],
            ),
        ),
    ]
}

async fn read(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<Json<Memory>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "identity")?;
    let db = state.db.get().await?;
    found(identities::memory(&**db, tenant_id, id).await, "identity")
}

async fn write(
    state: AppState,
    tenant_id: Uuid,
    id: String,
    body: Result<Bytes, BytesRejection>,
    replace: bool,
) -> Result<Json<Memory>, ApiError> {
    let id = fields::path_uuid(&id, "identity")?;
    // The same rules as the memory tool's writes (`confab_shared::memory`).
    let update = MemoryUpdate::parse(&object_body(body)?)
        .map_err(|e| ApiError::invalid(&e.field, e.message))?;
    let db = state.db.get().await?;
    found(
        identities::write_memory(&**db, tenant_id, id, &update, replace).await,
        "identity",
    )
}

async fn replace(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Memory>, ApiError> {
    write(state, caller.tenant_id, id, body, true).await
}

async fn merge(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Memory>, ApiError> {
    write(state, caller.tenant_id, id, body, false).await
}

fn section(name: &str) -> Result<Section, ApiError> {
    Section::parse(name).ok_or_else(|| {
        ApiError::invalid(
            "section",
            "section must be preferences, data or associations",
        )
    })
}

async fn set_key(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path((id, section_name, key)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Memory>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "identity")?;
    let section = section(&section_name)?;
    let value = json_body(body)?;
    let db = state.db.get().await?;
    found(
        identities::set_memory_key(&**db, tenant_id, id, section, &key, Some(&value)).await,
        "identity",
    )
}

async fn remove_key(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path((id, section_name, key)): Path<(String, String, String)>,
) -> Result<Json<Memory>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "identity")?;
    let section = section(&section_name)?;
    let db = state.db.get().await?;
    found(
        identities::set_memory_key(&**db, tenant_id, id, section, &key, None).await,
        "identity",
    )
}
