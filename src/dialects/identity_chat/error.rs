//! The seed 000 dialect's one error shape, `{message, data: null, error: {code}}`: every failure
//! of the edge's table (`crate::http::failure`) under its `error.code`, with the table's status
//! and `Retry-After`, and the seed's words where it has them: "401 - Authentication failed" (and
//! "500 - Server error during processing", which is the table's own).

use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::failure::{envelope_from, names_of};
use crate::http::{EdgeFailure, Reason, error_response};

/// The dialect's error: a failure of the table, named at rendering.
#[derive(Debug)]
pub struct ChannelChatError(EdgeFailure);

/// The `error.code` of each failure.
fn code(reason: Reason) -> &'static str {
    match reason {
        Reason::BadRequest | Reason::PayloadTooLarge => "invalid_message",
        Reason::Unavailable | Reason::Overloaded | Reason::Interrupted => "unavailable",
        Reason::Internal => "server_error",
        reason => reason.row().code,
    }
}

/// Every `error.code` the dialect writes, for its schema.
pub fn codes() -> Vec<&'static str> {
    names_of(&Reason::ALL, code)
}

impl ChannelChatError {
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        EdgeFailure::new(Reason::BadRequest)
            .with_message(message)
            .into()
    }

    pub(super) fn not_found(what: &str) -> Self {
        EdgeFailure::not_found(format!("{what} not found")).into()
    }
}

impl From<EdgeFailure> for ChannelChatError {
    fn from(failure: EdgeFailure) -> Self {
        Self(match failure.reason {
            Reason::MissingKey | Reason::InvalidKey => {
                failure.with_message("Authentication failed")
            }
            _ => failure,
        })
    }
}

envelope_from!(ChannelChatError);

impl IntoResponse for ChannelChatError {
    fn into_response(self) -> Response {
        let failure = self.0;
        let body = json!({
            "message": failure.message,
            "data": null,
            "error": {"code": code(failure.reason)},
        });
        error_response(failure.status(), body, failure.retry_after)
    }
}
