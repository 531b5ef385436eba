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
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{FromRequestParts, Query, Request};
use axum::handler::Handler;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::failure::DatabaseError;
use crate::http::AppState;
use crate::store::key_cache::{KeyCache, KnownKey};
use crate::store::tenants::{self, KeyCharge, KeyRefused, KeyUse, StreamGrant};
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

/// The caller of a chat turn route. A key this process has seen before (`store::key_cache`) is
/// not looked up here: it is checked, and its request counted, in the statement that records
/// the turn ([`TurnCaller::charge`], `TurnRequest::charge`), which saves the turn a round trip.
/// A request that ends without recording a turn (a bad body, an unknown assistant) is charged
/// after its handler by [`charge_unrecorded`], the route's layer, which answers a refused one
/// with `E` in place of the handler's answer: a revoked or throttled key gets what it always
/// got. A route without that layer charges every key here, as [`Authenticated`] does.
pub struct TurnCaller<E> {
    caller: Caller,
    due: Option<ChargeSlot>,
    rejection: PhantomData<fn() -> E>,
}

impl<E> Deref for TurnCaller<E> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<E> TurnCaller<E> {
    /// The charge to make where the turn is recorded, if the key was not charged yet. Taken by
    /// the request that records the turn, so that the layer does not charge it again.
    pub fn charge(&self) -> Option<KeyCharge> {
        self.due.as_ref().and_then(ChargeSlot::take)
    }
}

/// A request's charge still to make, shared by [`TurnCaller`] and [`charge_unrecorded`].
#[derive(Clone, Default)]
struct ChargeSlot(Arc<Mutex<Option<DueCharge>>>);

struct DueCharge {
    charge: KeyCharge,
    db: deadpool_postgres::Pool,
    keys: KeyCache,
}

impl ChargeSlot {
    fn put(&self, due: DueCharge) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(due);
    }

    fn take_due(&self) -> Option<DueCharge> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn take(&self) -> Option<KeyCharge> {
        self.take_due().map(|due| due.charge)
    }
}

impl<E> FromRequestParts<AppState> for TurnCaller<E>
where
    E: From<AuthError> + IntoResponse + Send,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, E> {
        let key = bearer(&parts.headers).ok_or(AuthError::Missing)?;
        let digest = tenants::digest(key);
        let slot = parts.extensions.get::<ChargeSlot>().cloned();
        if let Some(slot) = slot
            && let Some(known) = state.keys.get(&digest)
        {
            slot.put(DueCharge {
                charge: KeyCharge {
                    key_id: known.key_id,
                    default_limit: state.rate_limit_per_min,
                },
                db: state.db.clone(),
                keys: state.keys.clone(),
            });
            return Ok(Self {
                caller: Caller {
                    tenant_id: known.tenant_id,
                    key_id: known.key_id,
                },
                due: Some(slot),
                rejection: PhantomData,
            });
        }
        let usage = key_use(state, key).await?;
        if let Some(usage) = usage {
            let known = KnownKey {
                key_id: usage.key_id,
                tenant_id: usage.tenant_id,
            };
            state.keys.remember(digest, known);
        }
        Ok(Self {
            caller: within_limit(usage)?,
            due: None,
            rejection: PhantomData,
        })
    }
}

/// `handler`, which takes a [`TurnCaller<E>`], with [`charge_unrecorded`] around it.
pub fn turn_route<E, H, T>(handler: H) -> impl Handler<T, AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
    E: From<AuthError> + IntoResponse + 'static,
{
    handler.layer(axum::middleware::from_fn(charge_unrecorded::<E>))
}

/// The layer of a route that takes a [`TurnCaller`]: charges the key of a request that ended
/// without recording a turn, and answers with `E` instead if the key is refused.
async fn charge_unrecorded<E>(mut request: Request, next: Next) -> Response
where
    E: From<AuthError> + IntoResponse,
{
    let slot = ChargeSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let Some(due) = slot.take_due() else {
        return response;
    };
    match charge(&due).await {
        Ok(()) => response,
        Err(refused) => E::from(refused).into_response(),
    }
}

#[tracing::instrument(name = "auth", skip_all, fields(credential = "api_key"))]
async fn charge(due: &DueCharge) -> Result<(), AuthError> {
    let client = due.db.get().await.map_err(DatabaseError::from)?;
    let usage = tenants::charge_key(&client, due.charge)
        .await
        .map_err(DatabaseError::from)?;
    if usage.is_none() {
        due.keys.forget(due.charge.key_id);
    }
    within_limit(usage).map(|_| ())
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
async fn authorize_key(state: &AppState, key: &str) -> Result<Caller, AuthError> {
    within_limit(key_use(state, key).await?)
}

/// Look a presented API key up and count the request against its limit.
#[tracing::instrument(name = "auth", skip_all, fields(credential = "api_key"))]
async fn key_use(state: &AppState, key: &str) -> Result<Option<KeyUse>, AuthError> {
    let client = state.db.get().await.map_err(DatabaseError::from)?;
    let usage = tenants::use_key(&client, key, state.rate_limit_per_min)
        .await
        .map_err(DatabaseError::from)?;
    Ok(usage)
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
    let usage = tenants::admitted(usage)?;
    Ok(Caller {
        tenant_id: usage.tenant_id,
        key_id: usage.key_id,
    })
}

impl From<KeyRefused> for AuthError {
    fn from(refused: KeyRefused) -> Self {
        match refused {
            KeyRefused::Invalid => AuthError::Invalid,
            KeyRefused::RateLimited { retry_after } => AuthError::RateLimited { retry_after },
        }
    }
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
