//! Channel secrets encrypted at rest. The credentials a channel's config holds (`app_secret`,
//! `access_token`, `bot_token`, `secret_token`, `verify_token`) are sealed with XChaCha20-Poly1305
//! before they reach Postgres, so a database dump or a read replica never shows them, and opened
//! only where a platform call needs them (the ingress's webhooks, the worker's deliveries).
//!
//! Keys come from `CONFAB_SECRET_KEYS`: a comma-separated list of `id:key` (the key 32 bytes in
//! standard base64). The first seals; all of them open, so rotating is: put a new key first, keep
//! the old ones, run `confab admin reseal-secrets`, then drop the old ones. A sealed value is
//! `enc:v1:<key id>:<base64 of nonce and ciphertext>`, bound to its channel and field (the
//! associated data), so it cannot be moved to another channel or field. Without keys secrets are
//! stored as given (a warning at start says so); a value that is not sealed is read as it is,
//! which is also how values stored before encryption keep working until they are resealed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use confab_contract::settings::ConfigError;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The config fields that are credentials.
pub const SECRET_FIELDS: &[&str] = &[
    "app_secret",
    "identity_secret",
    "access_token",
    "bot_token",
    "secret_token",
    "verify_token",
];

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{0}")]
    Config(String),
    #[error("channel secret {field:?} was sealed with key {key_id:?}, which is not configured")]
    UnknownKey { field: String, key_id: String },
    #[error("channel secret {field:?} does not open with its key (altered, or moved)")]
    Corrupt { field: String },
}

/// The configured keys; cheap to clone.
#[derive(Clone, Default)]
pub struct SecretBox {
    /// In order: the first seals.
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SecretBox").field("key_ids", &ids).finish()
    }
}

impl SecretBox {
    /// `CONFAB_SECRET_KEYS`, default empty (secrets stored as given).
    pub fn from_env() -> Result<SecretBox, ConfigError> {
        SecretBox::parse(&std::env::var("CONFAB_SECRET_KEYS").unwrap_or_default()).map_err(|e| {
            ConfigError {
                var: "CONFAB_SECRET_KEYS",
                problem: e.to_string(),
            }
        })
    }

    pub fn parse(list: &str) -> Result<SecretBox, SecretsError> {
        let mut keys = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, key) = entry
                .split_once(':')
                .ok_or_else(|| SecretsError::Config(format!("{entry:?} is not id:base64-key")))?;
            if id.is_empty() || id.contains(':') || keys.iter().any(|(known, _)| known == id) {
                return Err(SecretsError::Config(format!(
                    "bad or repeated key id {id:?}"
                )));
            }
            let bytes = STANDARD
                .decode(key)
                .map_err(|e| SecretsError::Config(format!("key {id:?} is not base64: {e}")))?;
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| SecretsError::Config(format!("key {id:?} is not 32 bytes")))?;
            keys.push((id.to_owned(), cipher));
        }
        Ok(SecretBox { keys })
    }

    /// A fresh random key in the form `CONFAB_SECRET_KEYS` takes, for `id`.
    pub fn generate_key(id: &str) -> String {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random source");
        format!("{id}:{}", STANDARD.encode(key))
    }

    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Seal every credential field of a channel's config that is a plain string.
    pub fn seal_config(&self, channel_id: Uuid, config: &mut Map<String, Value>) {
        for (field, value) in config.iter_mut() {
            if let Value::String(plain) = value
                && SECRET_FIELDS.contains(&field.as_str())
            {
                *plain = self.seal_value(channel_id, field, plain);
            }
        }
    }

    /// `plain` sealed for `field` of `owner` (a channel, an assistant), unless it already is or
    /// no key is configured.
    pub fn seal_value(&self, owner: Uuid, field: &str, plain: &str) -> String {
        let Some((key_id, cipher)) = self.keys.first() else {
            return plain.to_owned();
        };
        if plain.starts_with(PREFIX) {
            return plain.to_owned();
        }
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source");
        let aad = associated_data(owner, field);
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("encryption with a valid key cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{PREFIX}{key_id}:{}", STANDARD.encode(blob))
    }

    /// A value [`SecretBox::seal_value`] stored, opened (a value never sealed is returned as
    /// it is).
    pub fn open_value(
        &self,
        owner: Uuid,
        field: &str,
        stored: &str,
    ) -> Result<String, SecretsError> {
        match stored.strip_prefix(PREFIX) {
            Some(sealed) => self.open(owner, field, sealed),
            None => Ok(stored.to_owned()),
        }
    }

    /// Open every sealed field of a channel's config in place.
    pub fn open_config(
        &self,
        channel_id: Uuid,
        config: &mut Map<String, Value>,
    ) -> Result<(), SecretsError> {
        for (field, value) in config.iter_mut() {
            if let Value::String(stored) = value
                && let Some(sealed) = stored.strip_prefix(PREFIX)
            {
                *stored = self.open(channel_id, field, sealed)?;
            }
        }
        Ok(())
    }

    fn open(&self, channel_id: Uuid, field: &str, sealed: &str) -> Result<String, SecretsError> {
        let corrupt = || SecretsError::Corrupt {
            field: field.to_owned(),
        };
        let (key_id, blob) = sealed.split_once(':').ok_or_else(corrupt)?;
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or_else(|| SecretsError::UnknownKey {
                field: field.to_owned(),
                key_id: key_id.to_owned(),
            })?;
        let blob = STANDARD.decode(blob).map_err(|_| corrupt())?;
        if blob.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| corrupt())?;
        let aad = associated_data(channel_id, field);
        let plain = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| corrupt())?;
        String::from_utf8(plain).map_err(|_| corrupt())
    }

    /// Whether a stored value is not sealed with the current key (plain, or an older key).
    pub fn value_needs_reseal(&self, stored: &str) -> bool {
        self.keys
            .first()
            .is_some_and(|(current, _)| !stored.starts_with(&format!("{PREFIX}{current}:")))
    }

    /// Whether a stored config has a credential not sealed with the current key (plain, or an
    /// older key): what `reseal` would change.
    pub fn needs_reseal(&self, config: &Map<String, Value>) -> bool {
        let Some((current, _)) = self.keys.first() else {
            return false;
        };
        let sealed_now = format!("{PREFIX}{current}:");
        config.iter().any(|(field, value)| {
            SECRET_FIELDS.contains(&field.as_str())
                && value.as_str().is_some_and(|v| !v.starts_with(&sealed_now))
        })
    }
}

fn associated_data(channel_id: Uuid, field: &str) -> Vec<u8> {
    let mut aad = channel_id.as_bytes().to_vec();
    aad.extend_from_slice(field.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn credentials_are_sealed_other_settings_are_not_and_both_read_back() {
        let keys = SecretBox::parse(&SecretBox::generate_key("k1")).unwrap();
        let channel = Uuid::now_v7();
        let plain = config(json!({"bot_token": "123:SECRET", "phone_number_id": "42"}));
        let mut stored = plain.clone();
        keys.seal_config(channel, &mut stored);
        let sealed = stored["bot_token"].as_str().unwrap();
        assert!(
            sealed.starts_with("enc:v1:k1:") && !sealed.contains("SECRET"),
            "{sealed}"
        );
        assert_eq!(stored["phone_number_id"], "42");
        keys.open_config(channel, &mut stored).unwrap();
        assert_eq!(stored, plain);
    }

    #[test]
    fn a_sealed_secret_does_not_open_for_another_channel_or_field() {
        let keys = SecretBox::parse(&SecretBox::generate_key("k1")).unwrap();
        let channel = Uuid::now_v7();
        let mut stored = config(json!({"app_secret": "s1"}));
        keys.seal_config(channel, &mut stored);
        let mut moved = stored.clone();
        assert!(matches!(
            keys.open_config(Uuid::now_v7(), &mut moved),
            Err(SecretsError::Corrupt { .. })
        ));
        let mut renamed = config(json!({"verify_token": stored["app_secret"].clone()}));
        assert!(keys.open_config(channel, &mut renamed).is_err());
    }

    #[test]
    fn after_rotation_old_secrets_open_and_reseal_moves_them_to_the_new_key() {
        let old_key = SecretBox::generate_key("old");
        let old = SecretBox::parse(&old_key).unwrap();
        let channel = Uuid::now_v7();
        let mut stored = config(json!({"access_token": "EAAG"}));
        old.seal_config(channel, &mut stored);

        let rotated =
            SecretBox::parse(&format!("{},{old_key}", SecretBox::generate_key("new"))).unwrap();
        assert!(rotated.needs_reseal(&stored));
        let mut opened = stored.clone();
        rotated.open_config(channel, &mut opened).unwrap();
        assert_eq!(opened["access_token"], "EAAG");
        rotated.seal_config(channel, &mut opened);
        assert!(
            opened["access_token"]
                .as_str()
                .unwrap()
                .starts_with("enc:v1:new:")
        );
        assert!(!rotated.needs_reseal(&opened));

        let new_only = SecretBox::parse(&SecretBox::generate_key("new")).unwrap();
        assert!(matches!(
            new_only.open_config(channel, &mut stored),
            Err(SecretsError::UnknownKey { .. })
        ));
    }

    #[test]
    fn malformed_key_lists_are_refused_with_the_reason() {
        for bad in ["k1", "k1:not-base64!", "k1:AAAA", ":AAAA"] {
            assert!(SecretBox::parse(bad).is_err(), "{bad}");
        }
        let key = SecretBox::generate_key("k1");
        assert!(SecretBox::parse(&format!("{key},{key}")).is_err());
        assert!(!SecretBox::parse("").unwrap().is_enabled());
    }
}
