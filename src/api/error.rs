//! The management API's one error shape: `{"error": {"code", "message", "details"}}`. The
//! failures every API family meets are named from the edge's table (`crate::http::failure`),
//! with its codes and `details.field` naming the field at fault; the API's own refusals (a
//! conflict, a refused webhook) are made with [`ApiError::new`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::failure::{envelope_from, names_of};
use crate::http::{EdgeFailure, Reason, error_response, json_body};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

/// The failures of the table that management routes (and channel webhooks) meet.
const MEETS: &[Reason] = &[
    Reason::BadRequest,
    Reason::PayloadTooLarge,
    Reason::UnsupportedMediaType,
    Reason::UriTooLong,
    Reason::HeadersTooLarge,
    Reason::MissingKey,
    Reason::InvalidKey,
    Reason::RateLimited,
    Reason::NotFound,
    Reason::Unavailable,
    Reason::Overloaded,
    Reason::Internal,
];

/// Codes of the API's own refusals: a taken name or slug; a webhook's refused handshake or
/// missing secret; a handshake the platform does not have; a document over the knowledge
/// limits.
const OWN_CODES: &[&str] = &[
    "conflict",
    "forbidden",
    "method_not_allowed",
    TOO_MANY_PASSAGES,
    FOLDER_FULL,
];

/// The `error.code`s of a document the knowledge limits refuse (422).
pub const TOO_MANY_PASSAGES: &str = "too_many_passages";
pub const FOLDER_FULL: &str = "folder_full";

/// The management code of a failure of the table: the table's own, but for an oversized body,
/// which the API has always called an invalid request.
fn code_of(reason: Reason) -> &'static str {
    match reason {
        Reason::PayloadTooLarge => Reason::BadRequest.row().code,
        reason => reason.row().code,
    }
}

/// Every `error.code` the API writes, for its schema.
pub fn codes() -> Vec<&'static str> {
    let mut codes = names_of(MEETS, code_of);
    codes.extend(OWN_CODES);
    codes
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
        EdgeFailure::bad_request(field, message).into()
    }

    pub fn not_found(what: &str) -> Self {
        EdgeFailure::not_found(format!("{what} not found")).into()
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        EdgeFailure::internal(error).into()
    }
}

impl From<EdgeFailure> for ApiError {
    fn from(failure: EdgeFailure) -> Self {
        Self {
            status: failure.status(),
            code: code_of(failure.reason),
            details: match failure.field {
                Some(field) => json!({ "field": field }),
                None => json!({}),
            },
            message: failure.message,
            retry_after: failure.retry_after,
        }
    }
}

envelope_from!(ApiError: AuthError, BodyError, DatabaseError, PoolError, PgError, TenantError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {"code": self.code, "message": self.message, "details": self.details}
        });
        error_response(self.status, body, self.retry_after)
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
