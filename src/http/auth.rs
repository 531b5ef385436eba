//! Authentication and rate limiting of API calls: `Authorization: Bearer <key>` resolved to the
//! calling tenant and key, and counted against the key's per-minute limit. Each dialect turns an
//! [`AuthError`] into its own error shape.
//!
//! The limit holds across any number of ingress processes because the count lives in Postgres
//! (`rate_windows`, fixed one-minute windows, bumped in the same round trip as the key lookup).

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use uuid::Uuid;

use crate::http::AppState;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing or malformed Authorization header")]
    Missing,
    #[error("unknown or revoked API key")]
    Invalid,
    #[error("rate limit exceeded; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("cannot check the API key: {0}")]
    Unavailable(String),
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The caller whose key authorises this request, if within its rate limit.
pub async fn authorize(state: &AppState, headers: &HeaderMap) -> Result<Caller, AuthError> {
    let key = bearer(headers).ok_or(AuthError::Missing)?;
    authorize_key(state, key).await
}

/// Authorise a presented API key.
pub async fn authorize_key(state: &AppState, key: &str) -> Result<Caller, AuthError> {
    let client = state
        .db
        .get()
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))?;
    let usage = crate::store::tenants::use_key(&**client, key, state.rate_limit_per_min)
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))?;
    within_limit(usage)
}

/// Authorise a short-lived stream token (for browsers' `EventSource`, which cannot send headers).
pub async fn authorize_stream_token(state: &AppState, token: &str) -> Result<Caller, AuthError> {
    let client = state
        .db
        .get()
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))?;
    let usage = crate::store::tenants::use_stream_token(&**client, token, state.rate_limit_per_min)
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))?;
    within_limit(usage)
}

fn within_limit(usage: Option<crate::store::tenants::KeyUse>) -> Result<Caller, AuthError> {
    let usage = usage.ok_or(AuthError::Invalid)?;
    if usage.count > usage.limit {
        return Err(AuthError::RateLimited {
            retry_after: usage.window_left_secs.max(1) as u64,
        });
    }
    Ok(Caller {
        tenant_id: usage.tenant_id,
        key_id: usage.key_id,
    })
}
