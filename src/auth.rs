//! Authentication of API calls: `Authorization: Bearer <key>` resolved to a tenant. Each dialect
//! turns an [`AuthError`] into its own error shape.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use uuid::Uuid;

use crate::http::AppState;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing or malformed Authorization header")]
    Missing,
    #[error("unknown or revoked API key")]
    Invalid,
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

/// The tenant whose key authorises this request.
pub async fn tenant(state: &AppState, headers: &HeaderMap) -> Result<Uuid, AuthError> {
    let key = bearer(headers).ok_or(AuthError::Missing)?;
    let client = state
        .db
        .get()
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))?;
    crate::tenants::tenant_of_key(&**client, key)
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))?
        .ok_or(AuthError::Invalid)
}
