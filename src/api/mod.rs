//! The management API under `/v1/` (tenant key; JSON; one error shape): the resources confab's
//! dialects refer to. List endpoints page with `limit` and `cursor`.

mod assistants;
mod channels;
mod conversations;
mod documents;
mod error;
mod fields;
mod folders;
mod identities;
mod keys;
mod memory;
pub mod ops;
mod pagination;
mod requests;
mod schemas;

pub use error::{ApiError, object_body, query_params};

use crate::http::openapi::schema::reference;
use crate::http::{ApiRouter, Operation, Reply};

/// How one kind of resource is documented: its tag, its schema (`Assistant`, with
/// `AssistantCreate`, `AssistantUpdate` and `AssistantPage` beside it) and its `{id}`. Each method
/// documents one kind of operation with the statuses every such operation can answer (all with an
/// `ApiError` body); an operation adds its own, such as a 409, with `.errors("ApiError", ..)`.
struct Resource {
    tag: &'static str,
    schema: &'static str,
    id: &'static str,
}

impl Resource {
    fn op(&self, id: &'static str, summary: &'static str, errors: &[u16]) -> Operation {
        Operation::new(id, summary)
            .tag(self.tag)
            .errors("ApiError", errors)
    }

    fn ok(&self, schema: &str) -> Reply {
        Reply::new("OK").json(reference(schema))
    }

    fn list(&self, id: &'static str, summary: &'static str) -> Operation {
        self.op(id, summary, &[400, 401, 429, 500, 503])
            .paged()
            .response(200, self.ok(&format!("{}Page", self.schema)))
    }

    fn create(&self, id: &'static str, summary: &'static str) -> Operation {
        self.op(id, summary, &[400, 401, 413, 429, 500, 503])
            .body(reference(&format!("{}Create", self.schema)))
            .response(201, Reply::new("Created").json(reference(self.schema)))
    }

    fn read(&self, id: &'static str, summary: &'static str) -> Operation {
        self.op(id, summary, &[401, 404, 429, 500, 503])
            .path_param("id", self.id)
            .response(200, self.ok(self.schema))
    }

    fn update(&self, id: &'static str, summary: &'static str) -> Operation {
        self.op(id, summary, &[400, 401, 404, 413, 429, 500, 503])
            .path_param("id", self.id)
            .body(reference(&format!("{}Update", self.schema)))
            .response(200, self.ok(self.schema))
    }

    fn delete(&self, id: &'static str, summary: &'static str) -> Operation {
        self.op(id, summary, &[401, 404, 429, 500, 503])
            .path_param("id", self.id)
            .response(204, Reply::new("Deleted"))
    }
}

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .components(schemas::components())
        .merge(assistants::router())
        .merge(channels::router())
        .merge(conversations::router())
        .merge(folders::router())
        .merge(identities::router())
        .merge(keys::router())
        .merge(documents::router())
        .merge(memory::router())
        .merge(requests::router())
}

/// A lookup's answer: the resource as JSON, or the resource's 404.
fn found<T>(
    row: Result<Option<T>, tokio_postgres::Error>,
    what: &str,
) -> Result<axum::Json<T>, ApiError> {
    row?.map(axum::Json)
        .ok_or_else(|| ApiError::not_found(what))
}

/// A deletion's answer: 204, or the resource's 404.
fn deleted(
    result: Result<bool, tokio_postgres::Error>,
    what: &str,
) -> Result<axum::http::StatusCode, ApiError> {
    match result? {
        true => Ok(axum::http::StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found(what)),
    }
}
