//! OpenAI's error envelope, `{"error": {"message", "type", "param", "code"}}`: every failure of
//! the edge's table (`crate::http::failure`) with the table's status (OpenAI's SDKs pick their
//! exception class from it, and show `message`) and `Retry-After`, under OpenAI's `type` and
//! `code` values; `param` names the field at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::failure::{envelope_from, names_of};
use crate::http::{EdgeFailure, Reason, error_response};

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

/// OpenAI's `type` of each failure: the SDKs pick their exception from the status, the type says
/// whose fault it was.
fn kind(reason: Reason) -> &'static str {
    match reason {
        Reason::RateLimited => "requests",
        Reason::Timeout
        | Reason::ModelFailed
        | Reason::Unavailable
        | Reason::Overloaded
        | Reason::Interrupted
        | Reason::Internal => SERVER_ERROR,
        Reason::BadRequest
        | Reason::PayloadTooLarge
        | Reason::UnsupportedMediaType
        | Reason::UriTooLong
        | Reason::HeadersTooLarge
        | Reason::MissingKey
        | Reason::InvalidKey
        | Reason::Forbidden
        | Reason::TokenSpent
        | Reason::NotFound
        | Reason::Cancelled => INVALID_REQUEST,
    }
}

/// The `code` of each failure; a 404 says what was not found by the `param` it names.
fn code(reason: Reason, param: Option<&str>) -> Option<&'static str> {
    match reason {
        Reason::BadRequest | Reason::PayloadTooLarge | Reason::Internal => None,
        Reason::MissingKey | Reason::InvalidKey => Some("invalid_api_key"),
        Reason::RateLimited => Some("rate_limit_exceeded"),
        Reason::NotFound if param == Some(CONVERSATION_PARAM) => Some("conversation_not_found"),
        // A model named in the request, or an assistant removed while its job waited.
        Reason::NotFound => Some("model_not_found"),
        Reason::Cancelled => Some("request_cancelled"),
        Reason::Unavailable | Reason::Overloaded => Some("service_unavailable"),
        reason => Some(reason.row().code),
    }
}

const CONVERSATION_PARAM: &str = "conversation_id";

/// Every `type` the dialect writes, for its schema.
pub fn kinds() -> Vec<&'static str> {
    names_of(&Reason::ALL, kind)
}

/// Every `code` the dialect writes, for its schema.
pub fn codes() -> Vec<&'static str> {
    let mut codes = names_of(&Reason::ALL, |reason| code(reason, None).unwrap_or(""));
    codes.retain(|code| !code.is_empty());
    codes.push("conversation_not_found");
    codes
}

impl OpenAiError {
    /// A 400 about one request field (`param` names it, e.g. `messages[2].role`).
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        EdgeFailure::bad_request(param, message).into()
    }

    pub fn model_not_found(slug: &str) -> Self {
        EdgeFailure::not_found(format!(
            "The model '{slug}' does not exist or you do not have access to it."
        ))
        .with_field("model")
        .into()
    }

    pub fn conversation_not_found(id: &str, slug: &str) -> Self {
        EdgeFailure::not_found(format!("Conversation '{id}' not found for model '{slug}'."))
            .with_field(CONVERSATION_PARAM)
            .into()
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

/// OpenAI's own words for a refused key or a rate limit, which its SDKs' users know.
fn openai_message(failure: &EdgeFailure) -> Option<String> {
    match failure.reason {
        Reason::MissingKey => Some(
            "You didn't provide an API key. Send it in the Authorization header as \
             'Bearer YOUR_KEY'."
                .into(),
        ),
        Reason::InvalidKey => Some("Incorrect API key provided.".into()),
        Reason::RateLimited => Some(format!(
            "Rate limit reached for requests. Please try again in {}s.",
            failure.retry_after.unwrap_or(1)
        )),
        _ => None,
    }
}

impl From<EdgeFailure> for OpenAiError {
    fn from(failure: EdgeFailure) -> Self {
        let message = openai_message(&failure).unwrap_or_else(|| failure.message.clone());
        Self {
            status: failure.status(),
            kind: kind(failure.reason),
            code: code(failure.reason, failure.field.as_deref()),
            message,
            param: failure.field,
            retry_after: failure.retry_after,
        }
    }
}

envelope_from!(OpenAiError);

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.body(), self.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header::RETRY_AFTER;
    use confab_contract::ErrorCode;

    use super::*;
    use crate::http::auth::AuthError;
    use crate::pipeline::{Failure, FailureKind};

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
        assert_eq!(response.headers()[RETRY_AFTER], "7");
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
