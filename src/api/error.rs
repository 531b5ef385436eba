//! The management API's one error shape: `{"error": {"code", "message", "details"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::warn;

use crate::http::auth::AuthError;
use crate::http::json_body;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
            retry_after: None,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        error.details = json!({ "field": field });
        error
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        warn!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "An internal error occurred",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {"code": self.code, "message": self.message, "details": self.details}
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing | AuthError::Invalid => Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Invalid or missing API key",
            ),
            AuthError::RateLimited { retry_after } => {
                let mut error = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "Rate limit exceeded",
                );
                error.retry_after = Some(retry_after);
                error
            }
            AuthError::Unavailable(e) => Self::internal(e),
        }
    }
}

impl From<crate::http::BodyError> for ApiError {
    fn from(error: crate::http::BodyError) -> Self {
        let mut api = Self::invalid("body", error.message);
        api.status = error.status;
        api
    }
}

/// A JSON object body, or the API's error.
pub fn object_body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    match json_body(body)? {
        Value::Object(fields) => Ok(fields),
        _ => Err(ApiError::invalid(
            "body",
            "Request body must be a JSON object",
        )),
    }
}

/// A query string, or the API's error: axum's own rejection (e.g. of a repeated parameter) would
/// be plain text.
pub fn query_params<T>(
    query: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    query
        .map(|axum::extract::Query(query)| query)
        .map_err(|rejection| ApiError::invalid("query", rejection.body_text()))
}
