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

/// The tenant a presented key belongs to, if the key exists and is not revoked.
pub async fn tenant_of_key(
    client: &impl GenericClient,
    secret: &str,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    if !secret.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let presented = digest(secret);
    let row = client
        .query_opt(
            "SELECT tenant_id, digest FROM api_keys WHERE digest = $1 AND revoked_at IS NULL",
            &[&presented],
        )
        .await?;
    Ok(row.and_then(|row| {
        let stored: Vec<u8> = row.get(1);
        constant_time_eq(&stored, &presented).then(|| row.get(0))
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
