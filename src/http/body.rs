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
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| BodyError {
        status: StatusCode::BAD_REQUEST,
        message: format!("Request body is not valid JSON: {e}"),
    })?;
    // Postgres text cannot hold NUL; refused here, such a message would fail in the worker on
    // every delivery instead.
    if contains_nul(&value) {
        return Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: "Request body must not contain NUL (\\u0000) characters".into(),
        });
    }
    Ok(value)
}

fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || contains_nul(value)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_anywhere_in_the_body_are_refused() {
        let body = |text: &str| json_body(Ok(axum::body::Bytes::from(text.to_owned())));
        assert!(body(r#"{"message": "fine"}"#).is_ok());
        for bad in [
            r#"{"message": "a\u0000b"}"#,
            r#"{"a": [{"b": "\u0000"}]}"#,
            r#"{"\u0000": 1}"#,
        ] {
            let error = body(bad).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(error.message.contains("NUL"), "{bad}");
        }
    }
}
