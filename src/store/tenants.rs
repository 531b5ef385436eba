//! Tenants and their API keys. A key is 32 random bytes shown once as `cfk_<hex>`; only its
//! SHA-256 digest is stored. Lookup is by digest, so the time a lookup takes depends on the
//! digest, never on how much of a real key a guess shares; the final comparison of the stored
//! digest is constant-time as well.

use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

const KEY_PREFIX: &str = "cfk_";

/// A newly minted key: the secret (show it once) and what is stored of it.
pub struct NewKey {
    pub id: Uuid,
    pub secret: String,
}

pub(crate) fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_secret() -> Result<String, getrandom::Error> {
    random_token(KEY_PREFIX)
}

pub(crate) fn random_token(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let hex = hex::encode(bytes);
    Ok(format!("{prefix}{hex}"))
}

const STREAM_TOKEN_PREFIX: &str = "cfs_";

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("no randomness available: {0}")]
    Random(#[from] getrandom::Error),
}

pub async fn create_tenant(client: &impl GenericClient, name: &str) -> Result<Uuid, TenantError> {
    let id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, $2)",
            &[&id, &name],
        )
        .await?;
    Ok(id)
}

/// Mint a key; `rate_limit_per_min` overrides the deployment default for it.
pub async fn create_key(
    client: &impl GenericClient,
    tenant_id: Uuid,
    name: &str,
    rate_limit_per_min: Option<i32>,
) -> Result<NewKey, TenantError> {
    let id = Uuid::now_v7();
    let secret = random_secret()?;
    let prefix: String = secret.chars().take(KEY_PREFIX.len() + 6).collect();
    client
        .execute(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, digest, rate_limit_per_min) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &id,
                &tenant_id,
                &name,
                &prefix,
                &digest(&secret),
                &rate_limit_per_min,
            ],
        )
        .await?;
    Ok(NewKey { id, secret })
}

/// Mint a stream token for the caller's key, good for starting one stream of `identity_id` on
/// `channel_id` within `ttl_secs`. Returns the token and its expiry (RFC 3339).
pub async fn create_stream_token(
    client: &impl GenericClient,
    caller: StreamTokenOwner,
    identity_id: Uuid,
    channel_id: Uuid,
    ttl_secs: i32,
) -> Result<(String, String), TenantError> {
    let token = random_token(STREAM_TOKEN_PREFIX)?;
    let row = client
        .query_one(
            &format!(
                "INSERT INTO stream_tokens \
                   (digest, tenant_id, key_id, identity_id, channel_id, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING {}",
                crate::store::rfc3339("expires_at")
            ),
            &[
                &digest(&token),
                &caller.tenant_id,
                &caller.key_id,
                &identity_id,
                &channel_id,
                &f64::from(ttl_secs),
            ],
        )
        .await?;
    Ok((token, row.try_get(0)?))
}

/// The key a stream token is minted with: its uses count against that key's limit, and revoking
/// the key revokes its tokens.
#[derive(Debug, Clone, Copy)]
pub struct StreamTokenOwner {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
}

/// What a stream token allows: starting one stream of one identity on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGrant {
    digest: Vec<u8>,
    pub identity_id: Uuid,
    pub channel_id: Uuid,
}

/// Spend a stream token on the stream of `request_id`. False when it was already spent (by an
/// earlier stream, or a concurrent request that claimed it first): a token starts one stream.
pub async fn claim_stream_token(
    client: &impl GenericClient,
    grant: &StreamGrant,
    request_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let claimed = client
        .execute(
            "UPDATE stream_tokens SET used_at = now(), request_id = $2 \
             WHERE digest = $1 AND used_at IS NULL",
            &[&grant.digest, &request_id],
        )
        .await?;
    Ok(claimed == 1)
}

/// The request whose stream the token started, once it has.
pub async fn stream_of_token(
    client: &impl GenericClient,
    grant: &StreamGrant,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT request_id FROM stream_tokens WHERE digest = $1",
            &[&grant.digest],
        )
        .await?;
    Ok(row.and_then(|row| row.get(0)))
}

/// The statement of [`use_key`] and [`use_stream_token`] around the query `$key` that finds the
/// presented credential's key (`id, tenant_id, digest, lim`; `$1` the digest, `$2` the default
/// limit): the lookup and the rate limit in one round trip, one statement.
///
/// The limit is GCRA (`migrations/0007_rate_gcra.sql`): with emission interval `step` = a
/// minute / `lim` (in whole microseconds, rounded down so that `lim` steps never exceed the
/// minute and a fresh key's whole burst is admitted; a limit above 60 million a minute is no
/// limit), a request is admitted when
/// `greatest(tat, now()) + step` is at most a minute ahead, and that becomes the new `tat`. The
/// upsert's `WHERE` decides on the row's latest version under its row lock, so concurrent
/// requests through any number of ingress processes are admitted one after another; a refused
/// request updates nothing (no `g` row), so retrying early does not push the next admission
/// back.
///
/// The wait of a refused request is read from the row it was refused on: the statement's
/// snapshot may predate a concurrent admission that moved `tat`, and `FOR NO KEY UPDATE` (the
/// lock the upsert already holds, so it waits for nothing) reads the latest version instead. Only
/// a row inserted after the snapshot is not found; its key then spent a whole burst since, so the
/// wait is one step. `coalesce` reads that row only when the request was refused.
///
/// `$admitted` adds statements that run only for an admitted request: common table expressions
/// (`, name AS (...)`) that read `g`, which has a row only then (see `pending_turns`).
macro_rules! gcra_use {
    ($key:expr) => {
        gcra_use!($key, "", "")
    };
    ($key:expr, $extra_columns:literal) => {
        gcra_use!($key, $extra_columns, "")
    };
    ($key:expr, $extra_columns:literal, $admitted:literal) => {
        concat!(
            "WITH k AS (",
            $key,
            "), p AS ( \
               SELECT k.*, (60000000 / k.lim) * interval '1 microsecond' AS step FROM k \
             ), g AS ( \
               INSERT INTO rate_gcra AS r (key_id, tat) SELECT id, now() + step FROM p \
               ON CONFLICT (key_id) DO UPDATE \
                 SET tat = greatest(r.tat, now()) + (SELECT step FROM p) \
                 WHERE greatest(r.tat, now()) + (SELECT step FROM p) \
                       <= now() + interval '1 minute' \
               RETURNING tat \
             )",
            $admitted,
            " SELECT p.tenant_id, p.id, p.digest, p.lim, g.tat IS NOT NULL, \
                    greatest(0, ceil(extract(epoch FROM coalesce( \
                      g.tat, \
                      (SELECT tat FROM rate_gcra WHERE key_id = p.id FOR NO KEY UPDATE), \
                      now() + interval '1 minute' \
                    ) + p.step - interval '1 minute' - now())))::int8",
            $extra_columns,
            " FROM p LEFT JOIN g ON true"
        )
    };
}
pub(crate) use gcra_use;

/// The key `$1`, by id, unless it is revoked (`$2` the default limit), for [`gcra_use`]: a key
/// the ingress remembers (`store::key_cache`) had its digest checked when it was remembered, and
/// is charged by id from then on.
macro_rules! unrevoked_key_by_id {
    () => {
        "SELECT id, tenant_id, digest, coalesce(rate_limit_per_min, $2) AS lim \
         FROM api_keys WHERE id = $1 AND revoked_at IS NULL"
    };
}
pub(crate) use unrevoked_key_by_id;

/// A request of a key known by id, to be counted against its limit where it is recorded (see
/// `pending_turns::record_charged`) rather than before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCharge {
    pub key_id: Uuid,
    pub default_limit: i32,
}

/// Why a key's request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefused {
    /// Unknown, or revoked.
    Invalid,
    /// Over its limit; `retry_after` whole seconds, at least one.
    RateLimited { retry_after: u64 },
}

/// The use of a key if its limit admits it: `None` (no such key, or revoked) and a refused use
/// are the reasons.
pub fn admitted(usage: Option<KeyUse>) -> Result<KeyUse, KeyRefused> {
    let usage = usage.ok_or(KeyRefused::Invalid)?;
    if !usage.allowed {
        // `Retry-After` is whole seconds; a wait rounded down to 0 would invite a retry that is
        // refused again.
        return Err(KeyRefused::RateLimited {
            retry_after: usage.wait_secs.max(1).unsigned_abs(),
        });
    }
    Ok(usage)
}

/// Count one request of a key known by id (see [`KeyCharge`]), as [`use_key`] does for a
/// presented one: one statement.
pub async fn charge_key(
    client: &impl deadpool_postgres::GenericClient,
    charge: KeyCharge,
) -> Result<Option<KeyUse>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(gcra_use!(unrevoked_key_by_id!()))
        .await?;
    let row = client
        .query_opt(&statement, &[&charge.key_id, &charge.default_limit])
        .await?;
    Ok(row.as_ref().map(charged_use))
}

/// The [`KeyUse`] of a row of [`gcra_use`] (whose key was found by id, or whose digest matched).
pub(crate) fn charged_use(row: &tokio_postgres::Row) -> KeyUse {
    KeyUse {
        tenant_id: row.get(0),
        key_id: row.get(1),
        limit: row.get(3),
        allowed: row.get(4),
        wait_secs: row.get(5),
    }
}

/// Undo [`claim_stream_token`] for a stream that never started.
pub async fn unclaim_stream_token(
    client: &impl GenericClient,
    grant: &StreamGrant,
    request_id: Uuid,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE stream_tokens SET used_at = NULL, request_id = NULL \
             WHERE digest = $1 AND request_id = $2",
            &[&grant.digest, &request_id],
        )
        .await?;
    Ok(())
}

/// Like [`use_key`], for an unexpired stream token of a key that is not revoked; the request
/// counts against that key's limit. A token is found whether or not it was spent: what it grants
/// is checked, and it is claimed, by the route it opens ([`claim_stream_token`]).
pub async fn use_stream_token(
    client: &impl GenericClient,
    token: &str,
    default_limit: i32,
) -> Result<Option<(KeyUse, StreamGrant)>, tokio_postgres::Error> {
    if !token.starts_with(STREAM_TOKEN_PREFIX) {
        return Ok(None);
    }
    let presented = digest(token);
    let row = client
        .query_opt(
            gcra_use!(
                "SELECT k.id, k.tenant_id, t.digest, coalesce(k.rate_limit_per_min, $2) AS lim, \
                        t.identity_id, t.channel_id \
                 FROM stream_tokens t JOIN api_keys k ON k.id = t.key_id \
                 WHERE t.digest = $1 AND t.expires_at > now() AND k.revoked_at IS NULL",
                ", p.identity_id, p.channel_id"
            ),
            &[&presented, &default_limit],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let Some(usage) = key_use(&row, &presented) else {
        return Ok(None);
    };
    let grant = StreamGrant {
        digest: presented,
        identity_id: row.try_get(6)?,
        channel_id: row.try_get(7)?,
    };
    Ok(Some((usage, grant)))
}

fn key_use(row: &tokio_postgres::Row, presented: &[u8]) -> Option<KeyUse> {
    let stored: Vec<u8> = row.get(2);
    constant_time_eq(&stored, presented).then(|| charged_use(row))
}

/// A key as listings show it: never the secret, only its first characters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub rate_limit_per_min: Option<i32>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

fn key_columns() -> String {
    format!(
        "id, name, prefix, rate_limit_per_min, {}, {}",
        crate::store::rfc3339("created_at"),
        crate::store::rfc3339("revoked_at")
    )
}

fn key_info(row: &tokio_postgres::Row) -> KeyInfo {
    KeyInfo {
        id: row.get(0),
        name: row.get(1),
        prefix: row.get(2),
        rate_limit_per_min: row.get(3),
        created_at: row.get(4),
        revoked_at: row.get(5),
    }
}

pub async fn key_by_id(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<KeyInfo>, tokio_postgres::Error> {
    let row = crate::store::tenant_row(client, "api_keys", &key_columns(), tenant_id, id).await?;
    Ok(row.map(|row| key_info(&row)))
}

pub async fn list_keys(
    client: &impl GenericClient,
    tenant_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<KeyInfo>, tokio_postgres::Error> {
    let rows =
        crate::store::tenant_page(client, "api_keys", &key_columns(), tenant_id, cursor, limit)
            .await?;
    Ok(rows.iter().map(key_info).collect())
}

/// Change a key's own rate limit (`None` returns it to the deployment default).
pub async fn set_key_limit(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    rate_limit_per_min: Option<i32>,
) -> Result<Option<KeyInfo>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "UPDATE api_keys SET rate_limit_per_min = $3 WHERE tenant_id = $1 AND id = $2 \
                 RETURNING {}",
                key_columns()
            ),
            &[&tenant_id, &id, &rate_limit_per_min],
        )
        .await?;
    Ok(row.map(|row| key_info(&row)))
}

/// Revoke a key at once; false if the tenant has no such key.
pub async fn revoke_key(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) \
             WHERE tenant_id = $1 AND id = $2",
            &[&tenant_id, &id],
        )
        .await?;
    Ok(n > 0)
}

/// A presented key that exists and is not revoked, and whether its rate limit admits this
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUse {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    /// Requests allowed per minute (the key's own limit, or `default_limit`).
    pub limit: i32,
    /// Whether the limit admits this request; a refused one is not counted.
    pub allowed: bool,
    /// Whole seconds, rounded up, until the key's next request would be admitted: 0 while the
    /// key has burst left, else at most one emission interval (a minute divided by the limit).
    pub wait_secs: i64,
}

/// Look up a presented key and count this request against its rate limit, in one round trip.
/// The limit's state lives in an unlogged table: shared by every ingress process, cheap to bump.
///
/// On every API call: its statement is prepared once per pooled connection, so it costs one
/// round trip.
pub async fn use_key(
    client: &impl deadpool_postgres::GenericClient,
    secret: &str,
    default_limit: i32,
) -> Result<Option<KeyUse>, tokio_postgres::Error> {
    if !secret.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let presented = digest(secret);
    let statement = client
        .prepare_cached(gcra_use!(
            "SELECT id, tenant_id, digest, coalesce(rate_limit_per_min, $2) AS lim \
             FROM api_keys WHERE digest = $1 AND revoked_at IS NULL"
        ))
        .await?;
    let row = client
        .query_opt(&statement, &[&presented, &default_limit])
        .await?;
    Ok(row.and_then(|row| key_use(&row, &presented)))
}

/// SQL that forgets stream tokens no request can use any more, and the rate state of keys whose
/// `tat` has passed (such a key has its full burst again, exactly as if it had no row).
pub const FORGET_EXPIRED: &str = "DELETE FROM rate_gcra WHERE tat < now(); \
     DELETE FROM stream_tokens WHERE expires_at < now()";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_long() {
        let a = random_secret().unwrap();
        let b = random_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 64);
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
