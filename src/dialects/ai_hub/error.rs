//! The dialect's one error shape, `{success: false, error, ...}`: `error` is a fixed phrase per
//! kind of failure; the extra fields are the seed's (`issues`, `retry_after`, `assistant_id`) and,
//! where the pipeline gave a reason, `message`. Statuses with `retry_after` also carry the
//! `Retry-After` header.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confab_contract::ErrorCode;
use serde_json::{Map, Value, json};
use tracing::warn;

use super::request::Issue;
use crate::http::BodyError;
use crate::http::auth::AuthError;
use crate::pipeline::{Failure, FailureKind, SubmitError};

#[derive(Debug)]
pub struct AiHubError {
    status: StatusCode,
    error: &'static str,
    extra: Map<String, Value>,
}

impl AiHubError {
    fn new(status: StatusCode, error: &'static str) -> Self {
        Self {
            status,
            error,
            extra: Map::new(),
        }
    }

    fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(field.to_owned(), value.into());
        self
    }

    /// 400 with every invalid field.
    pub fn invalid(issues: Vec<Issue>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Message parse problem from ask assistant",
        )
        .with("issues", json!(issues))
    }

    /// A body that could not be read as JSON: the parse-problem shape, one issue on `body`.
    pub fn unreadable(error: BodyError) -> Self {
        let mut invalid = Self::invalid(vec![Issue {
            field: "body".into(),
            message: error.message,
        }]);
        invalid.status = error.status;
        invalid
    }

    /// 404 naming the `assistantId` exactly as the client sent it.
    pub fn assistant_not_found(assistant_id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Assistant not found or not deployed")
            .with("assistant_id", assistant_id)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        warn!(%error, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    /// A failed turn; a worker's "not found" means the assistant vanished after the lookup.
    pub fn from_failure(failure: Failure, assistant_id: &str) -> Self {
        let error = match failure.kind {
            FailureKind::Worker(ErrorCode::NotFound) => {
                return Self::assistant_not_found(assistant_id);
            }
            FailureKind::Timeout | FailureKind::Worker(ErrorCode::DeadlineExceeded) => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "The assistant did not answer in time",
            ),
            FailureKind::Worker(ErrorCode::ModelError | ErrorCode::ModelTimeout) => {
                Self::new(StatusCode::BAD_GATEWAY, "The model provider failed")
            }
            FailureKind::BrokerLost => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable")
                    .with("retry_after", 5)
            }
            // Only a stream sees this (the worker died after tokens were relayed); a new request
            // is answered afresh.
            FailureKind::Worker(ErrorCode::Interrupted) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The answer was interrupted; please retry",
            )
            .with("retry_after", 1),
            FailureKind::Worker(ErrorCode::Cancelled) => {
                Self::new(StatusCode::CONFLICT, "Request cancelled")
            }
            FailureKind::Worker(ErrorCode::BadJob | ErrorCode::Internal) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            }
        };
        error.with("message", failure.message)
    }

    /// The JSON body (also the payload of an SSE `error` event).
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("success".into(), Value::Bool(false));
        body.insert("error".into(), Value::from(self.error));
        body.extend(self.extra.clone());
        Value::Object(body)
    }
}

impl IntoResponse for AiHubError {
    fn into_response(self) -> Response {
        let retry_after = self.extra.get("retry_after").and_then(Value::as_u64);
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<AuthError> for AiHubError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing | AuthError::Invalid => {
                Self::new(StatusCode::UNAUTHORIZED, "Unauthorized")
                    .with("message", "Invalid or missing API key")
            }
            AuthError::RateLimited { retry_after } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded")
                    .with("retry_after", retry_after)
            }
            AuthError::Unavailable(e) => Self::internal(e),
        }
    }
}

impl From<SubmitError> for AiHubError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Unavailable => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable")
                    .with("retry_after", 5)
            }
            SubmitError::QueueFull => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many requests are waiting for an assistant",
            )
            .with("retry_after", 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_error_bodies_have_exactly_the_seed_fields() {
        assert_eq!(
            AiHubError::from(AuthError::RateLimited { retry_after: 60 }).body(),
            json!({"success": false, "error": "Rate limit exceeded", "retry_after": 60})
        );
        assert_eq!(
            AiHubError::assistant_not_found("x").body(),
            json!({"success": false, "error": "Assistant not found or not deployed", "assistant_id": "x"})
        );
        let issues = vec![Issue {
            field: "assistantId".into(),
            message: "The assistant id is required!".into(),
        }];
        assert_eq!(
            AiHubError::invalid(issues).body(),
            json!({
                "success": false,
                "error": "Message parse problem from ask assistant",
                "issues": [{"field": "assistantId", "message": "The assistant id is required!"}],
            })
        );
    }

    #[test]
    fn retryable_errors_carry_a_retry_after_header() {
        let response = AiHubError::from(SubmitError::QueueFull).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = AiHubError::from(AuthError::RateLimited { retry_after: 7 }).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
