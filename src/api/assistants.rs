//! `/v1/assistants`: create an assistant and read it back.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use confab_worker::model::ModelSpec;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::{ApiError, object_body};
use crate::assistants::{self, Assistant, AssistantError, NewAssistant};
use crate::auth;
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/assistants", post(create))
        .route("/v1/assistants/{id}", get(read))
}

fn optional_string(
    fields: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match fields.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a string"),
        )),
    }
}

fn parse_new(mut fields: Map<String, Value>) -> Result<NewAssistant, ApiError> {
    let name = optional_string(&mut fields, "name")?
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("name", "name is required"))?;
    if name.chars().count() > 200 {
        return Err(ApiError::invalid(
            "name",
            "name must be at most 200 characters",
        ));
    }
    let slug = match optional_string(&mut fields, "slug")? {
        Some(slug) if assistants::is_valid_slug(&slug) => slug,
        Some(_) => {
            return Err(ApiError::invalid(
                "slug",
                "slug must be lowercase letters and digits in hyphen-separated words, at most 64 characters",
            ));
        }
        None => assistants::slug_from_name(&name),
    };
    if slug.is_empty() {
        return Err(ApiError::invalid(
            "slug",
            "name has no letters or digits to make a slug from; give a slug",
        ));
    }
    let instructions = optional_string(&mut fields, "instructions")?.unwrap_or_default();
    let model = optional_string(&mut fields, "model")?.unwrap_or_else(|| "builtin".into());
    if ModelSpec::parse(&model).is_none() {
        return Err(ApiError::invalid(
            "model",
            "model must be \"builtin\" or \"openai/<model-name>\"",
        ));
    }
    if let Some(unknown) = fields.keys().next() {
        return Err(ApiError::invalid(
            unknown,
            format!("unknown field {unknown:?}"),
        ));
    }
    Ok(NewAssistant {
        name,
        slug,
        instructions,
        model,
    })
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Assistant>), ApiError> {
    let tenant_id = auth::authorize(&state, &headers).await?.tenant_id;
    let new = parse_new(object_body(body)?)?;
    let db = state.db.get().await.map_err(ApiError::internal)?;
    match assistants::create(&**db, tenant_id, &new).await {
        Ok(assistant) => Ok((StatusCode::CREATED, Json(assistant))),
        Err(AssistantError::SlugTaken(slug)) => {
            let mut error = ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("an assistant with slug '{slug}' already exists"),
            );
            error.details = serde_json::json!({"field": "slug"});
            Err(error)
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Assistant>, ApiError> {
    let tenant_id = auth::authorize(&state, &headers).await?.tenant_id;
    let Ok(id) = Uuid::parse_str(&id) else {
        return Err(ApiError::not_found("assistant"));
    };
    let db = state.db.get().await.map_err(ApiError::internal)?;
    assistants::by_id(&**db, tenant_id, id)
        .await
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("assistant"))
}
