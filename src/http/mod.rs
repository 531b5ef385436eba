//! What every API family at the HTTP edge shares: the state handlers reach (`state.rs`),
//! authentication (`auth.rs`), strict JSON bodies (`body.rs`), SSE responses (`sse.rs`),
//! request ids, request metrics and the OpenAPI builder (`openapi/`). Nothing here knows an API
//! family; `crate::app` composes them.

pub mod auth;
mod body;
pub mod metrics;
pub mod openapi;
pub mod request_id;
mod sse;
mod state;

pub use body::{BodyError, json_body};
pub use openapi::{ApiRouter, Auth, OpenApiJson, Operation, Reply};
pub use request_id::RequestId;
pub use sse::sse_response;
pub use state::AppState;
