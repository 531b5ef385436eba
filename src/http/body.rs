//! Strict JSON bodies whose every rejection (too large, not UTF-8, malformed) becomes a message
//! the dialect wraps in its own error shape, instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use confab_shared::text::{depth, json_contains_nul};

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
    if json_contains_nul(&value) {
        return Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: "Request body must not contain NUL (\\u0000) characters".into(),
        });
    }
    // What is stored must read back: serde_json refuses documents nested deeper than 128 when
    // Postgres hands them back, and stored JSON sits a few levels below the body (memory
    // sections, metadata), so the body gets a limit well inside that.
    if depth(&value) > MAX_NESTING {
        return Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: format!("Request body is nested deeper than {MAX_NESTING} levels"),
        });
    }
    Ok(value)
}

pub use confab_shared::text::MAX_NESTING;

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

    #[test]
    fn bodies_nested_deeper_than_the_limit_are_refused() {
        let nested = |levels: usize| {
            let text = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
            json_body(Ok(axum::body::Bytes::from(text)))
        };
        assert!(nested(MAX_NESTING).is_ok());
        let error = nested(MAX_NESTING + 1).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.contains("nested deeper"), "{}", error.message);
    }
}
