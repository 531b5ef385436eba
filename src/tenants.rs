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

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{KEY_PREFIX}{hex}"))
}

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

pub async fn create_key(
    client: &impl GenericClient,
    tenant_id: Uuid,
    name: &str,
) -> Result<NewKey, TenantError> {
    let id = Uuid::now_v7();
    let secret = random_secret()?;
    let prefix: String = secret.chars().take(KEY_PREFIX.len() + 6).collect();
    client
        .execute(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, digest) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &tenant_id, &name, &prefix, &digest(&secret)],
        )
        .await?;
    Ok(NewKey { id, secret })
}

/// A presented key that exists and is not revoked, with its use in the current minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUse {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    /// Requests allowed per minute (the key's own limit, or `default_limit`).
    pub limit: i32,
    /// Requests made in the current minute, this one included.
    pub count: i32,
    /// Seconds until the current minute's window ends.
    pub window_left_secs: i64,
}

/// Look up a presented key and count this request against its per-minute window, in one round
/// trip. The window lives in an unlogged table: shared by every ingress process, cheap to bump.
pub async fn use_key(
    client: &impl GenericClient,
    secret: &str,
    default_limit: i32,
) -> Result<Option<KeyUse>, tokio_postgres::Error> {
    if !secret.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let presented = digest(secret);
    let row = client
        .query_opt(
            "WITH k AS ( \
               SELECT id, tenant_id, digest, coalesce(rate_limit_per_min, $2) AS lim \
               FROM api_keys WHERE digest = $1 AND revoked_at IS NULL \
             ), w AS ( \
               INSERT INTO rate_windows (key_id, window_start, count) \
               SELECT id, date_trunc('minute', now()), 1 FROM k \
               ON CONFLICT (key_id, window_start) DO UPDATE SET count = rate_windows.count + 1 \
               RETURNING count, window_start \
             ) \
             SELECT k.tenant_id, k.id, k.digest, k.lim, w.count, \
                    ceil(extract(epoch FROM w.window_start + interval '1 minute' - now()))::int8 \
             FROM k, w",
            &[&presented, &default_limit],
        )
        .await?;
    Ok(row.and_then(|row| {
        let stored: Vec<u8> = row.get(2);
        constant_time_eq(&stored, &presented).then(|| KeyUse {
            tenant_id: row.get(0),
            key_id: row.get(1),
            limit: row.get(3),
            count: row.get(4),
            window_left_secs: row.get(5),
        })
    }))
}

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
