//! Visitor sessions of a public web channel: `POST /v1/web/channels/{id}/sessions` from a page
//! on one of the channel's allowed origins (or confab's own hosted page) makes the visitor an
//! identity and hands back a short-lived visitor token for that identity on that channel.
//!
//! Who the visitor is:
//! - a site's signed-in user, when the page passes `user_id` with `user_signature`, the hex
//!   HMAC-SHA256 of the id under the channel's `identity_secret` that the site's backend
//!   computed: the identity whose `external_id` is that id (memory included), made on first use.
//!   The signature is compared in constant time; a wrong one is a 403.
//! - else the anonymous visitor holding `visitor_key`, the secret a first session handed out and
//!   the page kept (only its digest is stored, as the identity's `external_id`);
//! - else a new anonymous visitor, with a new key.
//!
//! Sessions count against the channel's and the visitor's own limits, never the tenant's keys.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use super::super::ChannelChatError;
use super::cors;
use crate::http::{AppState, EdgeFailure, Reason, auth, json_body};
use crate::store::identities;
use crate::store::visitors::{self, PublicChannel};

/// The body of a session request; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    visitor_key: Option<String>,
    user_id: Option<String>,
    user_signature: Option<String>,
}

/// Who the session is for.
enum Who {
    SignedUser(String),
    Returning(String),
    New,
}

pub async fn start(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ChannelChatError> {
    let request: SessionRequest = match body {
        Ok(bytes) if bytes.is_empty() => SessionRequest::default(),
        body => serde_json::from_value(json_body(body)?)
            .map_err(|e| ChannelChatError::invalid(e.to_string()))?,
    };
    let channel_id =
        Uuid::parse_str(&channel_id).map_err(|_| ChannelChatError::not_found("Channel"))?;
    let db = state.db.get().await?;
    let channel = visitors::public_channel(&**db, channel_id, &state.secrets)
        .await?
        .ok_or_else(|| ChannelChatError::not_found("Channel"))?;
    check_origin(&channel, &headers)?;
    let who = who(&channel, request)?;
    // The channel's limit first: a refused session makes no identity.
    let limits = state.visitors;
    let channel_subject = format!("channel:{}", channel.id);
    auth::admit(&**db, &channel_subject, limits.per_channel_per_min).await?;
    let (external_id, visitor_key) = match &who {
        Who::SignedUser(user_id) => (user_id.clone(), None),
        Who::Returning(key) => (visitors::anonymous_external_id(key), Some(key.clone())),
        Who::New => {
            let key = visitors::new_key().map_err(EdgeFailure::internal)?;
            (visitors::anonymous_external_id(&key), Some(key))
        }
    };
    let identity_id =
        identities::for_platform_user(&**db, channel.tenant_id, "web", &external_id, &[], None)
            .await?;
    let visitor_subject = format!("visitor:{identity_id}");
    auth::admit(&**db, &visitor_subject, limits.per_visitor_per_min).await?;
    let token = visitors::create_token(&**db, &channel, identity_id, limits.token_ttl_secs)
        .await
        .map_err(EdgeFailure::internal)?;
    let mut session = json!({
        "token": token,
        "expires_in": limits.token_ttl_secs,
        "identity_id": identity_id,
        "channel_id": channel.id,
    });
    match who {
        Who::SignedUser(user_id) => session["user_id"] = user_id.into(),
        Who::Returning(_) | Who::New => session["visitor_key"] = visitor_key.into(),
    }
    Ok((StatusCode::CREATED, Json(session)))
}

/// A page may start a session from one of the channel's allowed origins, or from confab's own
/// origin (the hosted chat page). Browsers always send `Origin` with a POST.
fn check_origin(channel: &PublicChannel, headers: &HeaderMap) -> Result<(), ChannelChatError> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .unwrap_or_default();
    let own = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        });
    if own || cors::listed(&channel.allowed_origins, origin) {
        return Ok(());
    }
    Err(EdgeFailure::new(Reason::Forbidden)
        .with_message(format!(
            "Origin {origin:?} is not one of this channel's allowed_origins"
        ))
        .into())
}

fn who(channel: &PublicChannel, request: SessionRequest) -> Result<Who, ChannelChatError> {
    if let Some(user_id) = request.user_id {
        let signature = request
            .user_signature
            .ok_or_else(|| ChannelChatError::invalid("user_signature is required with user_id"))?;
        let Some(secret) = &channel.identity_secret else {
            return Err(forbidden(
                "This channel takes no signed users: its config has no identity_secret",
            ));
        };
        if user_id.is_empty() || user_id.len() > 200 {
            return Err(ChannelChatError::invalid(
                "user_id must be 1 to 200 characters",
            ));
        }
        if !signed(secret, &user_id, &signature) {
            return Err(forbidden("user_signature does not match user_id"));
        }
        return Ok(Who::SignedUser(user_id));
    }
    if request.user_signature.is_some() {
        return Err(ChannelChatError::invalid(
            "user_signature is only valid with user_id",
        ));
    }
    match request.visitor_key {
        Some(key) if is_visitor_key(&key) => Ok(Who::Returning(key)),
        Some(_) => Err(ChannelChatError::invalid(
            "visitor_key must be a key an earlier session returned",
        )),
        None => Ok(Who::New),
    }
}

fn is_visitor_key(key: &str) -> bool {
    key.strip_prefix(visitors::KEY_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `signature` is the hex HMAC-SHA256 of `user_id` under `secret`, compared in
/// constant time.
fn signed(secret: &str, user_id: &str, signature: &str) -> bool {
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(user_id.as_bytes());
    mac.verify_slice(&signature).is_ok()
}

fn forbidden(message: &str) -> ChannelChatError {
    EdgeFailure::new(Reason::Forbidden)
        .with_message(message)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, user_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(user_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn a_user_id_is_signed_only_by_its_own_hmac_under_the_channel_secret() {
        let good = sign("s3cret", "user-42");
        assert!(signed("s3cret", "user-42", &good));
        assert!(signed("s3cret", "user-42", &good.to_uppercase()));
        assert!(!signed("s3cret", "user-43", &good));
        assert!(!signed("other", "user-42", &good));
        assert!(!signed("s3cret", "user-42", &good[..62]));
        assert!(!signed("s3cret", "user-42", "not hex"));
    }

    #[test]
    fn a_visitor_key_is_the_prefix_and_32_random_bytes_in_hex() {
        let key = visitors::new_key().expect("randomness");
        assert!(is_visitor_key(&key));
        assert!(!is_visitor_key("cfv_abc"));
        assert!(!is_visitor_key(&key.replace("cfv_", "cfw_")));
    }
}
