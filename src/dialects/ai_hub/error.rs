//! The dialect's one error shape, `{success: false, error, ...}`: every failure of the edge's
//! table (`crate::http::failure`) under a fixed `error` phrase, with the table's status and
//! `Retry-After`. The extra fields are the seed's (`issues` for a 400, `retry_after` wherever
//! there is a `Retry-After`, `assistant_id` for a 404), and `message`, the reason, on every other
//! failure; the seed's three bodies carry exactly the seed's fields.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::request::Issue;
use crate::http::failure::{envelope_from, names_of};
use crate::http::{EdgeFailure, Reason, error_response};
use crate::pipeline::{Failure, FailureKind};

#[derive(Debug)]
pub struct AiHubError {
    status: StatusCode,
    error: &'static str,
    extra: Map<String, Value>,
    retry_after: Option<u64>,
}

/// The `error` phrase of each failure.
fn phrase(reason: Reason) -> &'static str {
    match reason {
        Reason::BadRequest | Reason::PayloadTooLarge => "Message parse problem from ask assistant",
        Reason::MissingKey | Reason::InvalidKey => "Unauthorized",
        Reason::UnsupportedMediaType => "Unsupported media type",
        Reason::UriTooLong => "Request URI too long",
        Reason::HeadersTooLarge => "Request headers too large",
        Reason::RateLimited => "Rate limit exceeded",
        Reason::Forbidden => "Forbidden",
        Reason::TokenSpent => "Stream token already used",
        Reason::NotFound => "Assistant not found or not deployed",
        Reason::Timeout => "The assistant did not answer in time",
        Reason::ModelFailed => "The model provider failed",
        Reason::Unavailable => "Service unavailable",
        Reason::Overloaded => "Too many requests are waiting for an assistant",
        Reason::Interrupted => "The answer was interrupted; please retry",
        Reason::Cancelled => "Request cancelled",
        Reason::Internal => "Internal server error",
    }
}

/// Every `error` phrase the dialect writes, for its schema.
pub fn phrases() -> Vec<&'static str> {
    names_of(&Reason::ALL, phrase)
}

impl AiHubError {
    fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(field.to_owned(), value.into());
        self
    }

    /// 400 with every invalid field.
    pub fn invalid(issues: Vec<Issue>) -> Self {
        Self::named(&EdgeFailure::new(Reason::BadRequest)).with("issues", json!(issues))
    }

    /// 404 naming the `assistantId` exactly as the client sent it.
    pub fn assistant_not_found(assistant_id: &str) -> Self {
        Self::named(&EdgeFailure::new(Reason::NotFound)).with("assistant_id", assistant_id)
    }

    /// A failed turn; a worker's "not found" means the assistant vanished after the lookup.
    pub fn from_failure(failure: Failure, assistant_id: &str) -> Self {
        match failure.kind {
            FailureKind::Worker(confab_contract::ErrorCode::NotFound) => {
                Self::assistant_not_found(assistant_id)
            }
            _ => EdgeFailure::from(failure).into(),
        }
    }

    /// The phrase, the status and the retry of a failure, without its extra fields.
    fn named(failure: &EdgeFailure) -> Self {
        let plain = Self {
            status: failure.status(),
            error: phrase(failure.reason),
            extra: Map::new(),
            retry_after: failure.retry_after,
        };
        match failure.retry_after {
            Some(seconds) => plain.with("retry_after", seconds),
            None => plain,
        }
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

impl From<EdgeFailure> for AiHubError {
    fn from(failure: EdgeFailure) -> Self {
        match failure.reason {
            Reason::BadRequest | Reason::PayloadTooLarge => Self {
                status: failure.status(),
                ..Self::invalid(vec![Issue {
                    field: failure.field.unwrap_or_else(|| "body".into()),
                    message: failure.message,
                }])
            },
            // The seed's rate-limit body has no message.
            Reason::RateLimited => Self::named(&failure),
            _ => Self::named(&failure).with("message", failure.message),
        }
    }
}

// Not `Failure`: a turn's failure needs the request's `assistantId` (see `from_failure`).
envelope_from!(AiHubError: AuthError, BodyError, DatabaseError, PoolError, PgError, SubmitError);

impl IntoResponse for AiHubError {
    fn into_response(self) -> Response {
        error_response(self.status, self.body(), self.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header::RETRY_AFTER;

    use super::*;
    use crate::http::auth::AuthError;
    use crate::pipeline::SubmitError;

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
    fn retryable_errors_carry_a_retry_after_header_and_field() {
        let error = AiHubError::from(SubmitError::QueueFull);
        assert_eq!(error.body()["retry_after"], 1);
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let response = AiHubError::from(AuthError::RateLimited { retry_after: 7 }).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "7");
    }

    #[test]
    fn a_turn_the_assistant_vanished_from_names_the_assistant() {
        let failure = Failure {
            kind: FailureKind::Worker(confab_contract::ErrorCode::NotFound),
            message: "gone".into(),
        };
        let body = AiHubError::from_failure(failure, "a-1").body();
        assert_eq!(body["assistant_id"], "a-1");
    }
}
