//! OpenAI's error envelope, `{"error": {"message", "type", "param", "code"}}`, with the status
//! codes and `type`/`code` values OpenAI's SDKs branch on (they pick the exception class from the
//! status, and show `message`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confab_contract::ErrorCode;
use serde_json::{Value, json};
use tracing::warn;

use crate::http::BodyError;
use crate::http::auth::AuthError;
use crate::pipeline::{Failure, FailureKind, SubmitError};

const INVALID_REQUEST: &str = "invalid_request_error";
const SERVER_ERROR: &str = "server_error";

/// Every way a chat completion or model list can fail, in OpenAI's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiError {
    pub status: StatusCode,
    /// OpenAI's `type`.
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl OpenAiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A 400 about one request field (`param` names it, e.g. `messages[2].role`).
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::BAD_REQUEST, INVALID_REQUEST, message);
        error.param = Some(param.into());
        error
    }

    pub fn model_not_found(slug: &str) -> Self {
        let mut error = Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            format!("The model '{slug}' does not exist or you do not have access to it."),
        )
        .with_code("model_not_found");
        error.param = Some("model".into());
        error
    }

    pub fn conversation_not_found(id: &str, slug: &str) -> Self {
        let mut error = Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            format!("Conversation '{id}' not found for model '{slug}'."),
        )
        .with_code("conversation_not_found");
        error.param = Some("conversation_id".into());
        error
    }

    /// A 500 whose cause is logged, never shown.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        warn!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            SERVER_ERROR,
            "The server had an error while processing your request.",
        )
    }

    /// The JSON body, also sent as an SSE `data:` line when a stream fails.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<AuthError> for OpenAiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => Self::new(
                StatusCode::UNAUTHORIZED,
                INVALID_REQUEST,
                "You didn't provide an API key. Send it in the Authorization header as \
                 'Bearer YOUR_KEY'.",
            )
            .with_code("invalid_api_key"),
            AuthError::Invalid => Self::new(
                StatusCode::UNAUTHORIZED,
                INVALID_REQUEST,
                "Incorrect API key provided.",
            )
            .with_code("invalid_api_key"),
            AuthError::RateLimited { retry_after } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                format!("Rate limit reached for requests. Please try again in {retry_after}s."),
            )
            .with_code("rate_limit_exceeded")
            .retry_after(retry_after),
            AuthError::Unavailable(e) => Self::internal(e),
        }
    }
}

impl From<BodyError> for OpenAiError {
    fn from(error: BodyError) -> Self {
        Self::new(error.status, INVALID_REQUEST, error.message)
    }
}

impl From<SubmitError> for OpenAiError {
    fn from(error: SubmitError) -> Self {
        let (message, seconds) = match error {
            SubmitError::Unavailable => {
                ("The service is temporarily unavailable; retry shortly.", 5)
            }
            SubmitError::QueueFull => ("The service is overloaded; retry shortly.", 1),
        };
        Self::new(StatusCode::SERVICE_UNAVAILABLE, SERVER_ERROR, message)
            .with_code("service_unavailable")
            .retry_after(seconds)
    }
}

impl From<Failure> for OpenAiError {
    fn from(failure: Failure) -> Self {
        let (status, kind, code) = match failure.kind {
            FailureKind::Timeout | FailureKind::Worker(ErrorCode::DeadlineExceeded) => {
                (StatusCode::GATEWAY_TIMEOUT, SERVER_ERROR, Some("timeout"))
            }
            // The assistant was removed while the job waited.
            FailureKind::Worker(ErrorCode::NotFound) => (
                StatusCode::NOT_FOUND,
                INVALID_REQUEST,
                Some("model_not_found"),
            ),
            FailureKind::Worker(ErrorCode::ModelError | ErrorCode::ModelTimeout) => {
                (StatusCode::BAD_GATEWAY, SERVER_ERROR, Some("model_error"))
            }
            FailureKind::BrokerLost => (
                StatusCode::SERVICE_UNAVAILABLE,
                SERVER_ERROR,
                Some("service_unavailable"),
            ),
            FailureKind::Worker(ErrorCode::Cancelled) => (
                StatusCode::CONFLICT,
                INVALID_REQUEST,
                Some("request_cancelled"),
            ),
            FailureKind::Worker(_) => (StatusCode::INTERNAL_SERVER_ERROR, SERVER_ERROR, None),
        };
        let mut error = Self::new(status, kind, failure.message);
        error.code = code;
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_error_names_its_param_in_the_openai_envelope() {
        let body = OpenAiError::invalid("messages[1].role", "bad role").body();
        assert_eq!(
            body,
            json!({"error": {
                "message": "bad role",
                "type": "invalid_request_error",
                "param": "messages[1].role",
                "code": null,
            }})
        );
    }

    #[test]
    fn a_rate_limit_carries_retry_after_and_the_requests_type() {
        let error = OpenAiError::from(AuthError::RateLimited { retry_after: 7 });
        assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error.kind, "requests");
        assert_eq!(error.code, Some("rate_limit_exceeded"));
        let response = error.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn turn_failures_map_to_gateway_statuses() {
        let status_of = |kind| {
            OpenAiError::from(Failure {
                kind,
                message: "x".into(),
            })
            .status
        };
        assert_eq!(status_of(FailureKind::Timeout), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            status_of(FailureKind::Worker(ErrorCode::ModelError)),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            status_of(FailureKind::BrokerLost),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(FailureKind::Worker(ErrorCode::Internal)),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
