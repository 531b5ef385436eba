//! API keys an ingress process has seen, by digest, so that a chat turn need not look its key up
//! before the turn is recorded: its key is then checked, and its request counted, in the same
//! statement that records the turn (`pending_turns::record_charged`), one round trip instead of
//! two.
//!
//! What is remembered never goes stale: a key's id and tenant never change, and whether it is
//! revoked, and its limit, are read by that statement at every use, never from here. So a revoked
//! key is refused at once by every process, without any notification; a use that finds its key
//! revoked forgets it. Only a digest that a lookup matched against the stored digest is
//! remembered, so a guessed key never is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

/// Keys remembered at most; past it the memory starts again (each key then costs one lookup).
const REMEMBERED: usize = 10_000;

/// A key as remembered: whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownKey {
    pub key_id: Uuid,
    pub tenant_id: Uuid,
}

#[derive(Clone, Default)]
pub struct KeyCache {
    by_digest: Arc<Mutex<HashMap<Vec<u8>, KnownKey>>>,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, KnownKey>> {
        self.by_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, digest: &[u8]) -> Option<KnownKey> {
        self.lock().get(digest).copied()
    }

    /// Remember a key whose stored digest matched `digest`.
    pub fn remember(&self, digest: Vec<u8>, key: KnownKey) {
        let mut keys = self.lock();
        if keys.len() >= REMEMBERED && !keys.contains_key(&digest) {
            keys.clear();
        }
        keys.insert(digest, key);
    }

    /// Forget a key found revoked (or gone).
    pub fn forget(&self, key_id: Uuid) {
        self.lock().retain(|_, key| key.key_id != key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KnownKey {
        KnownKey {
            key_id: Uuid::now_v7(),
            tenant_id: Uuid::now_v7(),
        }
    }

    #[test]
    fn a_forgotten_key_is_looked_up_again() {
        let cache = KeyCache::default();
        let (a, b) = (key(), key());
        cache.remember(vec![1], a);
        cache.remember(vec![2], b);
        cache.forget(a.key_id);
        assert_eq!(cache.get(&[1]), None);
        assert_eq!(cache.get(&[2]), Some(b));
    }

    #[test]
    fn the_memory_is_bounded() {
        let cache = KeyCache::default();
        for i in 0..=REMEMBERED as u32 {
            cache.remember(i.to_be_bytes().to_vec(), key());
        }
        assert!(cache.lock().len() <= REMEMBERED);
        assert!(cache.get(&(REMEMBERED as u32).to_be_bytes()).is_some());
    }
}
