//! The edge's one failure table. Every way a request can fail at the HTTP edge (its key, its
//! body, a lookup that finds nothing, the database, the broker refusing the job, the turn failing
//! after it was accepted) is classified here once, into an [`EdgeFailure`]: a [`Reason`] whose
//! row in [`Reason::row`] gives the HTTP status, a stable machine code, a default message and the
//! `Retry-After` seconds.
//!
//! Each API family's error type only names the failure in its own envelope (its
//! `From<EdgeFailure>`), gets `From` for every source of failure from [`envelope_from!`] so that
//! handlers can use `?`, and renders through [`error_response`], the one place that sets
//! `Retry-After`.
//!
//! The rule behind the table: a failure a client should simply retry (the broker or database
//! unreachable, the work queue full, the database busy: no pool connection within the wait, a
//! statement past its timeout, an answer cut off by a worker's crash) is a 503 with
//! `Retry-After`; one that retrying cannot fix (a bug, a database that answers with an error) is
//! a 500 whose cause is logged, never shown.

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use confab_contract::ErrorCode;
use serde_json::Value;
use tracing::warn;

use super::BodyError;
use super::auth::AuthError;
use super::state::HeavyWritesBusy;
use crate::pipeline::{Failure, FailureKind, SubmitError};
use crate::store::tenants::TenantError;

/// Seconds to wait after the broker or the database was unreachable: the broker session
/// reconnects by itself within a few seconds.
const UNAVAILABLE_RETRY_SECS: u64 = 5;
/// Seconds to wait after the work queue or the database was full: workers drain the queue
/// continuously, and connections come free as requests finish.
const OVERLOADED_RETRY_SECS: u64 = 1;
/// Seconds to wait after a worker died mid-answer: a new request is answered afresh at once.
const INTERRUPTED_RETRY_SECS: u64 = 1;

/// What went wrong, as the edge tells clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The body, a field, a path or a query parameter is invalid.
    BadRequest,
    /// The body is larger than the limit.
    PayloadTooLarge,
    /// The body is not declared as JSON, or is declared compressed.
    UnsupportedMediaType,
    /// The request's path and query are longer than the limit.
    UriTooLong,
    /// The request's headers are larger, or more, than the limit.
    HeadersTooLarge,
    /// No API key (or stream token) was presented.
    MissingKey,
    /// The key is unknown or revoked.
    InvalidKey,
    /// The key is over its per-minute limit.
    RateLimited,
    /// The credential is valid but does not cover what the request names (a stream token minted
    /// for another identity or channel).
    Forbidden,
    /// The stream token already started its stream; each token starts one.
    TokenSpent,
    /// What the request names does not exist in the caller's tenant.
    NotFound,
    /// The request was cancelled while it was being answered.
    Cancelled,
    /// No answer before the request's deadline.
    Timeout,
    /// The model provider failed or timed out.
    ModelFailed,
    /// The message broker or the database cannot be reached.
    Unavailable,
    /// The work queue is full, the database's connections are all in use or a statement ran
    /// past its timeout.
    Overloaded,
    /// The worker answering died after part of a streamed answer was relayed.
    Interrupted,
    /// A bug, or a dependency that answered with an error.
    Internal,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: &'static str,
    pub retry_after: Option<u64>,
}

impl Reason {
    pub const ALL: [Reason; 18] = [
        Reason::BadRequest,
        Reason::PayloadTooLarge,
        Reason::UnsupportedMediaType,
        Reason::UriTooLong,
        Reason::HeadersTooLarge,
        Reason::MissingKey,
        Reason::InvalidKey,
        Reason::RateLimited,
        Reason::Forbidden,
        Reason::TokenSpent,
        Reason::NotFound,
        Reason::Cancelled,
        Reason::Timeout,
        Reason::ModelFailed,
        Reason::Unavailable,
        Reason::Overloaded,
        Reason::Interrupted,
        Reason::Internal,
    ];

    /// The table. A rate limit's `Retry-After` is when the key's next request would be admitted,
    /// so it is set per failure.
    pub const fn row(self) -> Row {
        let (status, code, message, retry_after) = match self {
            Reason::BadRequest => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request is invalid",
                None,
            ),
            Reason::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large",
                None,
            ),
            Reason::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "The request body must be sent as Content-Type: application/json, uncompressed",
                None,
            ),
            Reason::UriTooLong => (
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "The request's path and query are too long",
                None,
            ),
            Reason::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "The request's headers are too large or too many",
                None,
            ),
            Reason::MissingKey => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Invalid or missing API key",
                None,
            ),
            Reason::InvalidKey => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Invalid or missing API key",
                None,
            ),
            Reason::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Rate limit exceeded",
                None,
            ),
            Reason::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "This credential does not allow this request",
                None,
            ),
            Reason::TokenSpent => (
                StatusCode::CONFLICT,
                "stream_token_used",
                "This stream token already started its stream; mint a new one",
                None,
            ),
            Reason::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found", None),
            Reason::Cancelled => (
                StatusCode::CONFLICT,
                "cancelled",
                "The request was cancelled",
                None,
            ),
            Reason::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "No answer before the request's deadline",
                None,
            ),
            Reason::ModelFailed => (
                StatusCode::BAD_GATEWAY,
                "model_error",
                "The model provider failed",
                None,
            ),
            Reason::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The service is temporarily unavailable; retry shortly",
                Some(UNAVAILABLE_RETRY_SECS),
            ),
            Reason::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "The service is overloaded; retry shortly",
                Some(OVERLOADED_RETRY_SECS),
            ),
            Reason::Interrupted => (
                StatusCode::SERVICE_UNAVAILABLE,
                "interrupted",
                "The answer was interrupted; please retry",
                Some(INTERRUPTED_RETRY_SECS),
            ),
            Reason::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                // Seed 000's words for a 500.
                "Server error during processing",
                None,
            ),
        };
        Row {
            status,
            code,
            message,
            retry_after,
        }
    }
}

/// A failure at the edge, classified: its reason, what the client is told, the field at fault
/// (a bad request's, or what a lookup went by) and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeFailure {
    pub reason: Reason,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
}

impl EdgeFailure {
    /// The failure with its row's message and `Retry-After`.
    pub fn new(reason: Reason) -> Self {
        let row = reason.row();
        Self {
            reason,
            message: row.message.to_owned(),
            field: None,
            retry_after: row.retry_after,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// A 400 naming the field at fault.
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest)
            .with_message(message)
            .with_field(field)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Reason::NotFound).with_message(message)
    }

    /// A 500 whose cause is logged, never shown.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        warn!(%error, "internal error");
        Self::new(Reason::Internal)
    }

    pub fn status(&self) -> StatusCode {
        self.reason.row().status
    }

    pub fn code(&self) -> &'static str {
        self.reason.row().code
    }
}

impl From<AuthError> for EdgeFailure {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => Self::new(Reason::MissingKey),
            AuthError::Invalid => Self::new(Reason::InvalidKey),
            AuthError::RateLimited { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(Reason::RateLimited)
            },
            AuthError::Database(error) => Self::from(error),
        }
    }
}

impl From<BodyError> for EdgeFailure {
    fn from(error: BodyError) -> Self {
        let reason = match error.status {
            StatusCode::PAYLOAD_TOO_LARGE => Reason::PayloadTooLarge,
            _ => Reason::BadRequest,
        };
        Self::new(reason)
            .with_message(error.message)
            .with_field("body")
    }
}

impl From<SubmitError> for EdgeFailure {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Unavailable => Self::new(Reason::Unavailable),
            SubmitError::QueueFull => Self::new(Reason::Overloaded),
            SubmitError::KeyRefused(refused) => Self::from(AuthError::from(refused)),
        }
    }
}

/// A turn that failed after it was accepted; the client sees the pipeline's or worker's reason.
impl From<Failure> for EdgeFailure {
    fn from(failure: Failure) -> Self {
        let reason = match failure.kind {
            FailureKind::Timeout | FailureKind::Worker(ErrorCode::DeadlineExceeded) => {
                Reason::Timeout
            }
            FailureKind::BrokerLost => Reason::Unavailable,
            FailureKind::Worker(ErrorCode::NotFound) => Reason::NotFound,
            FailureKind::Worker(ErrorCode::ModelError | ErrorCode::ModelTimeout) => {
                Reason::ModelFailed
            }
            FailureKind::Worker(ErrorCode::Interrupted) => Reason::Interrupted,
            FailureKind::Worker(ErrorCode::Cancelled) => Reason::Cancelled,
            FailureKind::Worker(ErrorCode::BadJob | ErrorCode::Internal) => Reason::Internal,
        };
        Self::new(reason).with_message(failure.message)
    }
}

/// A database error, classified once: the database could not be reached, or it was too busy
/// (no pool connection came free within the wait, a statement ran past its timeout), both worth
/// a retry; or it answered with an error (a bug, or a broken deployment such as a dropped
/// database, which no retry fixes).
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct DatabaseError {
    pub kind: DatabaseFailure,
    detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseFailure {
    /// Unreachable, restarting or refusing connections.
    Unreachable,
    /// Every connection is in use, or a statement hit `statement_timeout`.
    Busy,
    /// The server answered the query with an error.
    Refused,
}

impl From<tokio_postgres::Error> for DatabaseError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self {
            kind: classify(&error),
            detail: error.to_string(),
        }
    }
}

impl From<deadpool_postgres::PoolError> for DatabaseError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::{PoolError, TimeoutType};
        let kind = match &error {
            // Waiting for a free connection timed out: the pool is in use, not the server gone.
            PoolError::Timeout(TimeoutType::Wait) => DatabaseFailure::Busy,
            PoolError::Timeout(_) | PoolError::Closed => DatabaseFailure::Unreachable,
            PoolError::Backend(error) => classify(error),
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                DatabaseFailure::Refused
            }
        };
        Self {
            kind,
            detail: error.to_string(),
        }
    }
}

fn classify(error: &tokio_postgres::Error) -> DatabaseFailure {
    let canceled = error
        .as_db_error()
        .is_some_and(|db| db.code().code() == confab_shared::db::QUERY_CANCELED);
    if canceled {
        DatabaseFailure::Busy
    } else if is_unreachable(error) {
        DatabaseFailure::Unreachable
    } else {
        DatabaseFailure::Refused
    }
}

/// Whether the server could not be reached or is going away, rather than refusing the query.
fn is_unreachable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(db) = error.as_db_error() {
        // Class 08: connection exceptions; 53300: too many connections; 57P01-57P03: the server
        // is shutting down, crashed or is starting up.
        let code = db.code().code();
        return code.starts_with("08") || ["53300", "57P01", "57P02", "57P03"].contains(&code);
    }
    // Connecting and talking to the server fail with the socket's own error.
    std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>())
}

impl From<DatabaseError> for EdgeFailure {
    fn from(error: DatabaseError) -> Self {
        match error.kind {
            DatabaseFailure::Unreachable => {
                warn!(%error, "database unavailable");
                Self::new(Reason::Unavailable)
            }
            DatabaseFailure::Busy => {
                warn!(%error, "database busy");
                Self::new(Reason::Overloaded)
            }
            DatabaseFailure::Refused => Self::internal(error),
        }
    }
}

/// Every heavy-write permit stayed in use for the whole wait.
impl From<HeavyWritesBusy> for EdgeFailure {
    fn from(_: HeavyWritesBusy) -> Self {
        Self::new(Reason::Overloaded)
            .with_message("Too many document uploads at once; retry shortly")
    }
}

impl From<tokio_postgres::Error> for EdgeFailure {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::from(DatabaseError::from(error))
    }
}

/// Keys and stream tokens: minting one needs the database and the system's randomness.
impl From<TenantError> for EdgeFailure {
    fn from(error: TenantError) -> Self {
        match error {
            TenantError::Db(error) => Self::from(error),
            TenantError::Random(error) => Self::internal(error),
        }
    }
}

impl From<deadpool_postgres::PoolError> for EdgeFailure {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::from(DatabaseError::from(error))
    }
}

/// An error response of any API family: the status, the family's JSON body, and `Retry-After`
/// when the failure says when to retry.
pub fn error_response(status: StatusCode, body: Value, retry_after: Option<u64>) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The distinct names a family gives these failures (its `error.name`s, codes or phrases), in
/// the table's order: what its schema lists, so the document cannot drift from the naming.
pub fn names_of(reasons: &[Reason], name: impl Fn(Reason) -> &'static str) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for reason in reasons {
        let named = name(*reason);
        if !names.contains(&named) {
            names.push(named);
        }
    }
    names
}

/// `From` for each listed source of failure on an error envelope that implements
/// `From<EdgeFailure>`, each through the table: `envelope_from!(MyError)` covers all of them
/// (auth, body, database, keys, submit, turn), `envelope_from!(MyError: AuthError, ...)` the ones
/// named, by their names in `crate::http::failure::sources`.
macro_rules! envelope_from {
    ($envelope:ty) => {
        $crate::http::failure::envelope_from!(
            $envelope: AuthError, BodyError, DatabaseError, PoolError, PgError, TenantError,
            SubmitError, Failure
        );
    };
    ($envelope:ty: $($source:ident),+ $(,)?) => {
        $(
            impl From<$crate::http::failure::sources::$source> for $envelope {
                fn from(error: $crate::http::failure::sources::$source) -> Self {
                    Self::from($crate::http::failure::EdgeFailure::from(error))
                }
            }
        )+
    };
}
pub(crate) use envelope_from;

/// The sources of failure [`envelope_from!`] converts, under short names.
pub mod sources {
    pub use crate::http::BodyError;
    pub use crate::http::auth::AuthError;
    pub use crate::http::failure::DatabaseError;
    pub use crate::pipeline::{Failure, SubmitError};
    pub use crate::store::tenants::TenantError;
    pub use deadpool_postgres::PoolError;
    pub use tokio_postgres::Error as PgError;
}

#[cfg(test)]
mod tests;
