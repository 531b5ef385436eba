//! Strict JSON bodies whose every rejection (too large, not UTF-8, malformed) becomes a message
//! the dialect wraps in its own error shape, instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;

/// Why a body could not be read as JSON: a status and a message for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
}

/// Parse a body as a JSON value. Dialects validate fields themselves so that every problem can be
/// reported in their own words.
pub fn json_body(body: Result<Bytes, BytesRejection>) -> Result<serde_json::Value, BodyError> {
    let bytes = body.map_err(|rejection| BodyError {
        status: match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        },
        message: rejection.body_text(),
    })?;
    if bytes.is_empty() {
        return Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: "Request body is empty; a JSON object is required".into(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| BodyError {
        status: StatusCode::BAD_REQUEST,
        message: format!("Request body is not valid JSON: {e}"),
    })
}
