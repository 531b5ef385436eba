//! The seed 001 dialect's error envelope, `{data: null, error: {name, message, details}}`: every
//! failure of the edge's table (`crate::http::failure`) under its seed-style `name`, with the
//! table's status and `Retry-After`; `details.field` names the invalid field of a
//! `ValidationError`.
//!
//! One departure from the table: an interrupted answer is an `InternalServerError` (500) here,
//! not a 503. Seed 001 tells its clients to "Implement retry logic for transient errors (429,
//! 500)", so a 500 is what they retry; and only a stream meets it, as its last event.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::failure::{envelope_from, names_of};
use crate::http::{EdgeFailure, Reason, error_response};

/// The dialect's error: a failure of the table, named at rendering.
#[derive(Debug)]
pub struct AgentsError(pub(super) EdgeFailure);

/// The `error.name` of each failure.
fn name(reason: Reason) -> &'static str {
    match reason {
        Reason::BadRequest
        | Reason::PayloadTooLarge
        | Reason::UnsupportedMediaType
        | Reason::UriTooLong
        | Reason::HeadersTooLarge => "ValidationError",
        Reason::MissingKey | Reason::InvalidKey => "UnauthorizedError",
        Reason::RateLimited => "RateLimitError",
        Reason::Forbidden => "ForbiddenError",
        Reason::TokenSpent => "ConflictError",
        Reason::NotFound => "NotFoundError",
        Reason::Cancelled => "CancelledError",
        Reason::Timeout => "TimeoutError",
        Reason::ModelFailed => "ModelError",
        Reason::Unavailable | Reason::Overloaded => "ServiceUnavailableError",
        Reason::Interrupted | Reason::Internal => "InternalServerError",
    }
}

/// Every `error.name` the dialect writes, for its schema.
pub fn names() -> Vec<&'static str> {
    names_of(&Reason::ALL, name)
}

impl AgentsError {
    pub(super) fn validation(field: &str, message: impl Into<String>) -> Self {
        EdgeFailure::bad_request(field, message).into()
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        EdgeFailure::not_found(message).into()
    }

    /// The JSON body, also the `data:` of the SSE event that ends a failed stream.
    pub(super) fn body(&self) -> Value {
        let failure = &self.0;
        let details = match (&failure.field, failure.reason) {
            (Some(field), Reason::BadRequest | Reason::PayloadTooLarge) => json!({"field": field}),
            _ => json!({}),
        };
        json!({
            "data": null,
            "error": {"name": name(failure.reason), "message": failure.message, "details": details},
        })
    }
}

impl From<EdgeFailure> for AgentsError {
    fn from(failure: EdgeFailure) -> Self {
        Self(match failure.reason {
            // The seed's words.
            Reason::MissingKey | Reason::InvalidKey => {
                failure.with_message("Invalid or missing API token")
            }
            // See the module's header: seed 001 retries 500s.
            Reason::Interrupted => EdgeFailure {
                reason: Reason::Internal,
                retry_after: None,
                ..failure
            },
            _ => failure,
        })
    }
}

envelope_from!(AgentsError);

impl IntoResponse for AgentsError {
    fn into_response(self) -> Response {
        error_response(self.0.status(), self.body(), self.0.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::http::header::RETRY_AFTER;

    use super::*;
    use crate::http::auth::AuthError;
    use crate::pipeline::{Failure, FailureKind, SubmitError};

    #[test]
    fn the_seed_errors_have_the_seed_names_and_messages() {
        let unauthorized = AgentsError::from(AuthError::Missing).body();
        assert_eq!(
            unauthorized,
            json!({"data": null, "error": {
                "name": "UnauthorizedError",
                "message": "Invalid or missing API token",
                "details": {},
            }})
        );
        let invalid = AgentsError::validation("message", "Message field is required").body();
        assert_eq!(invalid["error"]["name"], "ValidationError");
        assert_eq!(invalid["error"]["details"], json!({"field": "message"}));
    }

    #[test]
    fn a_full_queue_is_a_503_with_retry_after_and_an_interrupted_answer_a_500() {
        let response = AgentsError::from(SubmitError::QueueFull).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let interrupted = AgentsError::from(Failure {
            kind: FailureKind::Worker(confab_contract::ErrorCode::Interrupted),
            message: "stopped mid-answer".into(),
        });
        assert_eq!(interrupted.body()["error"]["name"], "InternalServerError");
        assert_eq!(interrupted.body()["error"]["message"], "stopped mid-answer");
        let response = interrupted.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }
}
