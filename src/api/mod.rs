//! The management API under `/v1/` (tenant key; JSON): resources confab's dialects refer to.

mod assistants;
mod error;

use axum::Router;

use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new().merge(assistants::router())
}
