//! Authentication and rate limiting of API calls: `Authorization: Bearer <key>` resolved to the
//! calling tenant and key, and counted against the key's per-minute limit.
//!
//! Handlers authenticate by taking an extractor, [`Authenticated<E>`] (or, on a route browsers
//! open with `EventSource`, [`AuthenticatedStream<E>`]); a request it refuses never reaches the
//! handler and is answered with the API family's own error `E`, made from the [`AuthError`].
//!
//! The limit is GCRA: a key may burst its whole per-minute limit, then gets one request per
//! emission interval (a minute divided by the limit). It holds across any number of ingress
//! processes because its state lives in Postgres (`rate_gcra`, one theoretical arrival time per
//! key, updated in the same statement as the key lookup; see `store::tenants::use_key`).

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::{FromRequestParts, Query};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::Deserialize;
use uuid::Uuid;

use super::failure::DatabaseError;
use crate::http::AppState;
use crate::store::tenants::{self, KeyUse, StreamGrant};
use crate::store::visitors::{self, Visitor};

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
    Database(#[from] DatabaseError),
}

/// The caller of a route that takes an API key, authenticated before the handler runs. It
/// dereferences to the [`Caller`]; a refused request is answered with `E`.
pub struct Authenticated<E> {
    caller: Caller,
    // `fn() -> E`: the extractor holds no `E`, so it is `Send` whatever `E` is.
    rejection: PhantomData<fn() -> E>,
}

/// The caller of a route that browsers open with `EventSource`, which cannot send headers: an
/// API key in `Authorization`, else a token in the `token` query parameter (never the key
/// itself, so the long-lived secret stays out of URLs): a short-lived stream token, or a web
/// channel visitor's token. A token grants less than a key: the route checks
/// [`AuthenticatedStream::grant`] (and spends a stream token before it streams) or
/// [`AuthenticatedStream::visitor`]. A refused request is answered with `E`.
pub struct AuthenticatedStream<E> {
    tenant_id: Uuid,
    grant: Option<StreamGrant>,
    visitor: Option<Visitor>,
    rejection: PhantomData<fn() -> E>,
}

impl<E> AuthenticatedStream<E> {
    pub fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }

    /// What the stream token allows, when the caller came with one rather than a key.
    pub fn grant(&self) -> Option<&StreamGrant> {
        self.grant.as_ref()
    }

    /// The web channel visitor, when the caller came with a visitor token.
    pub fn visitor(&self) -> Option<&Visitor> {
        self.visitor.as_ref()
    }
}

impl<E> Deref for Authenticated<E> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<E> FromRequestParts<AppState> for Authenticated<E>
where
    E: From<AuthError> + IntoResponse + Send,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, E> {
        let key = bearer(&parts.headers).ok_or(AuthError::Missing)?;
        Ok(Self {
            caller: authorize_key(state, key).await?,
            rejection: PhantomData,
        })
    }
}

/// A web channel visitor, by the visitor token in `Authorization: Bearer`; the request counts
/// against the visitor's and the channel's limits. It dereferences to the [`Visitor`]; a refused
/// request is answered with `E`.
pub struct Visiting<E> {
    visitor: Visitor,
    rejection: PhantomData<fn() -> E>,
}

impl<E> Deref for Visiting<E> {
    type Target = Visitor;

    fn deref(&self) -> &Visitor {
        &self.visitor
    }
}

impl<E> FromRequestParts<AppState> for Visiting<E>
where
    E: From<AuthError> + IntoResponse + Send,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, E> {
        let token = bearer(&parts.headers).ok_or(AuthError::Missing)?;
        Ok(Self {
            visitor: authorize_visitor(state, token).await?,
            rejection: PhantomData,
        })
    }
}

/// The one query parameter [`AuthenticatedStream`] reads; the handler reads the rest.
#[derive(Deserialize)]
struct StreamTokenQuery {
    token: Option<String>,
}

impl<E> FromRequestParts<AppState> for AuthenticatedStream<E>
where
    E: From<AuthError> + IntoResponse + Send,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, E> {
        let mut authenticated = Self {
            tenant_id: Uuid::nil(),
            grant: None,
            visitor: None,
            rejection: PhantomData,
        };
        // A key, when sent, is what counts: a stale token beside it must not refuse the request.
        if let Some(key) = bearer(&parts.headers) {
            authenticated.tenant_id = authorize_key(state, key).await?.tenant_id;
            return Ok(authenticated);
        }
        let token = Query::<StreamTokenQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|Query(query)| query.token)
            .ok_or(AuthError::Missing)?;
        if token.starts_with(visitors::TOKEN_PREFIX) {
            let visitor = authorize_visitor(state, &token).await?;
            authenticated.tenant_id = visitor.tenant_id;
            authenticated.visitor = Some(visitor);
        } else {
            let (caller, grant) = authorize_stream_token(state, &token).await?;
            authenticated.tenant_id = caller.tenant_id;
            authenticated.grant = Some(grant);
        }
        Ok(authenticated)
    }
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Authorise a presented API key.
#[tracing::instrument(name = "auth", skip_all, fields(credential = "api_key"))]
async fn authorize_key(state: &AppState, key: &str) -> Result<Caller, AuthError> {
    let client = state.db.get().await.map_err(DatabaseError::from)?;
    let usage = tenants::use_key(&client, key, state.rate_limit_per_min)
        .await
        .map_err(DatabaseError::from)?;
    within_limit(usage)
}

/// Authorise a short-lived stream token.
#[tracing::instrument(name = "auth", skip_all, fields(credential = "stream_token"))]
async fn authorize_stream_token(
    state: &AppState,
    token: &str,
) -> Result<(Caller, StreamGrant), AuthError> {
    let client = state.db.get().await.map_err(DatabaseError::from)?;
    let found = tenants::use_stream_token(&**client, token, state.rate_limit_per_min)
        .await
        .map_err(DatabaseError::from)?;
    let (usage, grant) = found.ok_or(AuthError::Invalid)?;
    Ok((within_limit(Some(usage))?, grant))
}

/// Authorise a web channel visitor's token, and count the request against the visitor's and
/// the channel's own limits (never the tenant's keys').
#[tracing::instrument(name = "auth", skip_all, fields(credential = "visitor_token"))]
async fn authorize_visitor(state: &AppState, token: &str) -> Result<Visitor, AuthError> {
    let client = state.db.get().await.map_err(DatabaseError::from)?;
    let visitor = visitors::by_token(&**client, token)
        .await
        .map_err(DatabaseError::from)?
        .ok_or(AuthError::Invalid)?;
    admit_visitor(&**client, state, &visitor).await?;
    Ok(visitor)
}

/// Count one request of `visitor` against its own limit and its channel's.
async fn admit_visitor(
    client: &impl tokio_postgres::GenericClient,
    state: &AppState,
    visitor: &Visitor,
) -> Result<(), AuthError> {
    let limits = state.visitors;
    let channel = format!("channel:{}", visitor.channel_id);
    admit(client, &channel, limits.per_channel_per_min).await?;
    let own = format!("visitor:{}", visitor.identity_id);
    admit(client, &own, limits.per_visitor_per_min).await
}

/// Count one request of a visitor limit's `subject` (`channel:<id>`, `visitor:<identity id>`).
pub async fn admit(
    client: &impl tokio_postgres::GenericClient,
    subject: &str,
    limit_per_min: i32,
) -> Result<(), AuthError> {
    let refused = visitors::admit(client, subject, limit_per_min)
        .await
        .map_err(DatabaseError::from)?;
    match refused {
        Some(retry_after) => Err(AuthError::RateLimited { retry_after }),
        None => Ok(()),
    }
}

fn within_limit(usage: Option<KeyUse>) -> Result<Caller, AuthError> {
    let usage = usage.ok_or(AuthError::Invalid)?;
    if !usage.allowed {
        // `Retry-After` is whole seconds; a wait rounded down to 0 would invite a retry that is
        // refused again.
        return Err(AuthError::RateLimited {
            retry_after: usage.wait_secs.max(1).unsigned_abs(),
        });
    }
    Ok(Caller {
        tenant_id: usage.tenant_id,
        key_id: usage.key_id,
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn only_a_non_empty_bearer_token_is_a_key() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            bearer(&headers).map(str::to_owned)
        };
        assert_eq!(with("Bearer cfk_1").as_deref(), Some("cfk_1"));
        assert_eq!(with("bearer  cfk_1 ").as_deref(), Some("cfk_1"));
        assert_eq!(with("Bearer"), None);
        assert_eq!(with("Bearer  "), None);
        assert_eq!(with("Basic abc"), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    fn key_use(allowed: bool, wait_secs: i64) -> Option<KeyUse> {
        Some(KeyUse {
            tenant_id: Uuid::nil(),
            key_id: Uuid::nil(),
            limit: 60,
            allowed,
            wait_secs,
        })
    }

    #[test]
    fn a_refused_request_retries_after_its_wait_and_at_least_one_second() {
        assert!(matches!(
            within_limit(key_use(false, 7)),
            Err(AuthError::RateLimited { retry_after: 7 })
        ));
        assert!(matches!(
            within_limit(key_use(false, 0)),
            Err(AuthError::RateLimited { retry_after: 1 })
        ));
    }

    #[test]
    fn an_admitted_request_is_the_caller_whatever_its_wait() {
        // The last request of a burst is admitted with the wait of the next one.
        assert!(within_limit(key_use(true, 7)).is_ok());
        assert!(matches!(within_limit(None), Err(AuthError::Invalid)));
    }
}
