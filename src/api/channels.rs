//! `/v1/channels`: channels and the assistant each is connected to.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::fields;
use super::pagination::PageQuery;
use super::{ApiError, Resource, deleted, found, query_params};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelCreate {
    #[serde(default, deserialize_with = "fields::text::<200, _>")]
    name: Option<String>,
    #[serde(default, deserialize_with = "fields::text::<20, _>")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "fields::uuid")]
    assistant_id: Option<Uuid>,
    #[serde(default, deserialize_with = "fields::object")]
    config: Option<Map<String, Value>>,
}

/// A channel's kind is fixed at creation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelUpdate {
    #[serde(default, deserialize_with = "fields::text::<200, _>")]
    name: Option<String>,
    #[serde(default, deserialize_with = "fields::uuid")]
    assistant_id: Option<Uuid>,
    #[serde(default, deserialize_with = "fields::object")]
    config: Option<Map<String, Value>>,
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

/// A web channel's own settings, where given (`null` removes one): `public` (whether pages may
/// start visitor sessions), `allowed_origins` (the sites that may embed it: origins such as
/// `https://shop.example`, never `*`) and `identity_secret` (the key a site signs its users'
/// ids with; sealed like every channel secret).
fn check_web_config(config: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    let field = |name: &str| config.get(name).filter(|v| !v.is_null());
    if let Some(public) = field("public")
        && !public.is_boolean()
    {
        return Err(ApiError::invalid("config.public", "must be true or false"));
    }
    if let Some(origins) = field("allowed_origins") {
        let origins = origins.as_array().ok_or_else(|| {
            ApiError::invalid("config.allowed_origins", "must be a list of origins")
        })?;
        if origins.len() > 50 {
            return Err(ApiError::invalid(
                "config.allowed_origins",
                "at most 50 origins",
            ));
        }
        for origin in origins {
            if !origin.as_str().is_some_and(is_origin) {
                return Err(ApiError::invalid(
                    "config.allowed_origins",
                    format!(
                        "{origin} is not an origin: scheme and host (and port), such as \
                         https://shop.example, with no path and no wildcard"
                    ),
                ));
            }
        }
    }
    if let Some(secret) = field("identity_secret")
        && secret.as_str().is_none_or(|s| s.len() < 16)
    {
        return Err(ApiError::invalid(
            "config.identity_secret",
            "must be a string of at least 16 characters",
        ));
    }
    Ok(())
}

/// `http(s)://host[:port]` as a browser sends it in `Origin`.
fn is_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host, Some(port))
        }
        _ => (authority, None),
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

async fn create(
    State(state): State<AppState>,
    caller: Authenticated<ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Channel>), ApiError> {
    let tenant_id = caller.tenant_id;
    let body: ChannelCreate = fields::read(body)?;
    let name = fields::required(body.name, "name")?;
    let kind = fields::required(body.kind, "kind")?;
    if !KINDS.contains(&kind.as_str()) {
        return Err(ApiError::invalid(
            "kind",
            format!("kind must be one of {}", KINDS.join(", ")),
        ));
    }
    let assistant_id = fields::required(body.assistant_id, "assistant_id")?;
    let config = body.config.unwrap_or_default();
    if kind == "web" {
        check_web_config(&config)?;
    }
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
    let ChannelUpdate {
        name,
        assistant_id,
        config,
    } = fields::read(body)?;
    let db = state.db.get().await?;
    if let Some(assistant_id) = assistant_id {
        check_assistant(&**db, tenant_id, assistant_id).await?;
    }
    if let Some(config) = &config {
        let channel = channels::by_id(&**db, tenant_id, id).await?;
        if channel.is_some_and(|c| c.kind == "web") {
            check_web_config(config)?;
        }
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

#[cfg(test)]
mod tests {
    use super::is_origin;

    #[test]
    fn an_origin_is_a_scheme_a_host_and_maybe_a_port() {
        for good in [
            "https://shop.example",
            "http://localhost:8080",
            "http://127.0.0.1:3000",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "*",
            "https://*.shop.example",
            "https://shop.example/",
            "https://shop.example/path",
            "shop.example",
            "ftp://shop.example",
            "https://",
            "https://shop.example:",
            "https://shop.example:80a",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
