//! What every API family at the HTTP edge shares: the state handlers reach (`state.rs`),
//! authentication extractors (`auth.rs`), the one failure table every error envelope names
//! (`failure.rs`), strict JSON bodies (`body.rs`), SSE responses (`sse.rs`), request ids, request
//! metrics and the OpenAPI builder (`openapi/`). Nothing here knows an API family (nothing here
//! imports `api`, `dialects` or `webhooks`); `crate::app` composes them.

pub mod auth;
mod body;
pub mod failure;
pub mod metrics;
pub mod openapi;
pub mod request_id;
mod sse;
mod state;

pub use auth::{Authenticated, AuthenticatedStream, Caller, TurnCaller, Visiting, turn_route};
pub use body::{BodyError, json_body};
pub use failure::{EdgeFailure, Reason, error_response};
pub use openapi::{ApiRouter, Auth, OpenApiJson, Operation, Reply};
pub use request_id::RequestId;
pub use sse::{conversation_header, parse_event_id, resumed_sse_response, sse_response};
pub use state::{AppState, HeavyWriteGate, HeavyWritesBusy};
