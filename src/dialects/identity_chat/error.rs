//! The seed 000 dialect's one error shape, `{message, data: null, error: {code}}`; statuses with a
//! retry hint also carry the `Retry-After` header.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confab_contract::ErrorCode;
use serde_json::json;
use tracing::warn;

use crate::http::auth::AuthError;
use crate::pipeline::{Failure, FailureKind, SubmitError};

#[derive(Debug)]
pub struct ChannelChatError {
    pub(super) status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ChannelChatError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_message", message)
    }

    pub(super) fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub(super) fn internal(error: impl std::fmt::Display) -> Self {
        warn!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Server error during processing",
        )
    }

    pub(super) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ChannelChatError {
    fn into_response(self) -> Response {
        let body = json!({"message": self.message, "data": null, "error": {"code": self.code}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<AuthError> for ChannelChatError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing | AuthError::Invalid => Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication failed",
            ),
            AuthError::RateLimited { retry_after } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Rate limit exceeded",
            )
            .retry_after(retry_after),
            AuthError::Unavailable(e) => Self::internal(e),
        }
    }
}

impl From<SubmitError> for ChannelChatError {
    fn from(error: SubmitError) -> Self {
        let (message, retry) = match error {
            SubmitError::Unavailable => ("The service is temporarily unavailable", 5),
            SubmitError::QueueFull => ("The service is overloaded; retry shortly", 1),
        };
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(retry)
    }
}

impl From<Failure> for ChannelChatError {
    fn from(failure: Failure) -> Self {
        let (status, code) = match failure.kind {
            FailureKind::Timeout | FailureKind::Worker(ErrorCode::DeadlineExceeded) => {
                (StatusCode::GATEWAY_TIMEOUT, "timeout")
            }
            FailureKind::Worker(ErrorCode::NotFound) => (StatusCode::NOT_FOUND, "not_found"),
            FailureKind::Worker(ErrorCode::ModelError | ErrorCode::ModelTimeout) => {
                (StatusCode::BAD_GATEWAY, "model_error")
            }
            FailureKind::BrokerLost => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            FailureKind::Worker(ErrorCode::Cancelled) => (StatusCode::CONFLICT, "cancelled"),
            FailureKind::Worker(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        Self::new(status, code, failure.message)
    }
}
