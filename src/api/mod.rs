//! The management API under `/v1/` (tenant key; JSON; one error shape): the resources confab's
//! dialects refer to. List endpoints page with `limit` and `cursor`.

mod assistants;
mod channels;
mod conversations;
mod error;
mod fields;
mod folders;
mod identities;
mod keys;
mod pagination;

use axum::Router;

pub use error::{ApiError, object_body};

use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(assistants::router())
        .merge(channels::router())
        .merge(conversations::router())
        .merge(folders::router())
        .merge(identities::router())
        .merge(keys::router())
}
