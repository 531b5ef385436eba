//! `/v1/assistants`: create, list, read, update (`PATCH`, e.g. `{"deployed": false}` undeploys)
//! and delete assistants.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use confab_shared::ModelSpec;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::fields;
use super::pagination::PageQuery;
use super::{ApiError, Resource, found, object_body, query_params};
use crate::http::{ApiRouter, AppState, Authenticated, Operation};
use crate::store::assistants::{self, Assistant, AssistantError, NewAssistant};
use confab_shared::secrets::SecretBox;
use confab_shared::tools::{ServerTool, parse_tools};

const DOC: Resource = Resource {
    tag: "assistants",
    schema: "Assistant",
    id: "The assistant's id",
};

pub fn router() -> ApiRouter {
    let conflict = |op: Operation| op.errors("ApiError", &[409]);
    ApiRouter::new()
        .tag(
            DOC.tag,
            "Assistants: instructions, model, knowledge folders, deployment",
        )
        .get(
            "/v1/assistants",
            list,
            DOC.list("listAssistants", "List assistants, newest first"),
        )
        .post(
            "/v1/assistants",
            create,
            conflict(DOC.create("createAssistant", "Create an assistant")),
        )
        .get(
            "/v1/assistants/{id}",
            read,
            DOC.read("getAssistant", "Read an assistant"),
        )
        .patch(
            "/v1/assistants/{id}",
            update,
            conflict(DOC.update("updateAssistant", "Change an assistant's fields")),
        )
        .delete(
            "/v1/assistants/{id}",
            remove,
            conflict(DOC.delete(
                "deleteAssistant",
                "Delete an assistant; not while a channel uses it",
            )),
        )
}

/// A create or update body: a field left out keeps its value (or its default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssistantBody {
    #[serde(default, deserialize_with = "fields::text::<200, _>")]
    name: Option<String>,
    #[serde(default, deserialize_with = "fields::string")]
    slug: Option<String>,
    #[serde(default, deserialize_with = "fields::string")]
    description: Option<String>,
    #[serde(default, deserialize_with = "fields::string")]
    instructions: Option<String>,
    #[serde(default, deserialize_with = "fields::string")]
    model: Option<String>,
    #[serde(default, deserialize_with = "fields::boolean")]
    deployed: Option<bool>,
    #[serde(default, deserialize_with = "fields::uuids")]
    folder_ids: Option<Vec<Uuid>>,
    /// Checked by `confab_shared::tools::parse_tools`, which names the bad field.
    #[serde(default)]
    tools: Option<Value>,
}

/// Apply the fields of a create or update body to `target` (assistant `id`), checking what the
/// types cannot; new tool secrets are sealed with `secrets`.
fn apply(
    mut body: AssistantBody,
    target: &mut NewAssistant,
    id: Uuid,
    secrets: &SecretBox,
) -> Result<(), ApiError> {
    if let Some(name) = body.name {
        target.name = name;
    }
    match body.slug {
        Some(slug) if assistants::is_valid_slug(&slug) => target.slug = slug,
        Some(_) => {
            return Err(ApiError::invalid(
                "slug",
                "slug must be lowercase letters and digits in hyphen-separated words, at most 64 characters",
            ));
        }
        None if target.slug.is_empty() => target.slug = assistants::slug_from_name(&target.name),
        None => {}
    }
    if target.slug.is_empty() {
        return Err(ApiError::invalid(
            "slug",
            "name has no letters or digits to make a slug from; give a slug",
        ));
    }
    if let Some(description) = body.description {
        target.description = description;
    }
    if let Some(instructions) = body.instructions {
        target.instructions = instructions;
    }
    if let Some(model) = body.model {
        if ModelSpec::parse(&model).is_none() {
            return Err(ApiError::invalid(
                "model",
                "model must be \"builtin\" or \"openai/<model-name>\"",
            ));
        }
        target.model = model;
    }
    if let Some(deployed) = body.deployed {
        target.deployed = deployed;
    }
    if let Some(folder_ids) = body.folder_ids.take() {
        target.folder_ids = folder_ids;
    }
    if let Some(tools) = body.tools.take().filter(|t| !t.is_null()) {
        target.tools = read_tools(&tools, &target.tools, id, secrets)?;
    }
    if !target.tools.is_empty() && ModelSpec::parse(&target.model) == Some(ModelSpec::Builtin) {
        return Err(ApiError::invalid(
            "tools",
            "the built-in model calls no tools; give the assistant an OpenAI-compatible model \
             (\"openai/<model-name>\") to use them",
        ));
    }
    Ok(())
}

/// The tools of a body, their secrets sealed; a tool sent without its secret keeps the one
/// stored with the tool of that name.
fn read_tools(
    given: &Value,
    stored: &[ServerTool],
    id: Uuid,
    secrets: &SecretBox,
) -> Result<Vec<ServerTool>, ApiError> {
    let kept = |name: &str| {
        stored.iter().find_map(|t| match t {
            ServerTool::Http(tool) if tool.name == name => Some(tool.secret.clone()),
            _ => None,
        })
    };
    let mut tools = parse_tools(given, kept).map_err(|e| ApiError::invalid(&e.field, e.message))?;
    for tool in &mut tools {
        if let ServerTool::Http(tool) = tool {
            tool.secret =
                secrets.seal_value(id, &ServerTool::secret_field(&tool.name), &tool.secret);
        }
    }
    Ok(tools)
}

fn slug_conflict(slug: &str) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("an assistant with slug '{slug}' already exists"),
    );
    error.details = serde_json::json!({"field": "slug"});
    error
}

fn assistant_error(error: AssistantError) -> ApiError {
    match error {
        AssistantError::SlugTaken(slug) => slug_conflict(&slug),
        AssistantError::InUse => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "a channel is connected to this assistant; connect it to another assistant first",
        ),
        AssistantError::Db(e) => e.into(),
    }
}

/// Every folder id must be a folder of the tenant.
async fn check_folders(
    client: &impl tokio_postgres::GenericClient,
    tenant_id: Uuid,
    folder_ids: &[Uuid],
) -> Result<(), ApiError> {
    if folder_ids.is_empty() {
        return Ok(());
    }
    let found: i64 = client
        .query_one(
            "SELECT count(*) FROM folders WHERE tenant_id = $1 AND id = ANY($2)",
            &[&tenant_id, &folder_ids],
        )
        .await?
        .get(0);
    if found as usize != folder_ids.len() {
        return Err(ApiError::invalid(
            "folder_ids",
            "every folder id must name one of your folders",
        ));
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Assistant>), ApiError> {
    let tenant_id = caller.tenant_id;
    let mut body: AssistantBody = fields::read(body)?;
    let name = fields::required(body.name.take(), "name")?;
    let mut new = NewAssistant {
        name,
        slug: String::new(),
        description: String::new(),
        instructions: String::new(),
        model: "builtin".into(),
        deployed: true,
        folder_ids: Vec::new(),
        tools: Vec::new(),
    };
    let id = Uuid::now_v7();
    apply(body, &mut new, id, &state.secrets)?;
    let db = state.db.get().await?;
    check_folders(&**db, tenant_id, &new.folder_ids).await?;
    let created = assistants::create(&**db, tenant_id, id, &new)
        .await
        .map_err(assistant_error)?;
    Ok((StatusCode::CREATED, Json(created)))
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
    let items = assistants::list(&**db, tenant_id, cursor, page.fetch()).await?;
    Ok(Json(page.body(items, |a| a.id.to_string())))
}

async fn read(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<Json<Assistant>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "assistant")?;
    let db = state.db.get().await?;
    found(assistants::by_id(&**db, tenant_id, id).await, "assistant")
}

async fn update(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Assistant>, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "assistant")?;
    let body = object_body(body)?;
    let db = state.db.get().await?;
    let current = assistants::by_id(&**db, tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("assistant"))?;
    let mut new = NewAssistant::from_existing(&current);
    apply(fields::typed(body)?, &mut new, id, &state.secrets)?;
    check_folders(&**db, tenant_id, &new.folder_ids).await?;
    let updated = assistants::update(&**db, tenant_id, id, &new).await;
    state.assistants.changed(tenant_id);
    updated
        .map_err(assistant_error)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("assistant"))
}

async fn remove(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = caller.tenant_id;
    let id = fields::path_uuid(&id, "assistant")?;
    let db = state.db.get().await?;
    let deleted = assistants::delete(&**db, tenant_id, id).await;
    state.assistants.changed(tenant_id);
    match deleted {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found("assistant")),
        Err(e) => Err(assistant_error(e)),
    }
}
