//! A short-lived memory of client secrets that already passed Argon2 verification, so a
//! confidential client pays the password hash once per [`SecretCache::TTL`] instead of on
//! every token, introspection or revocation request.
//!
//! Entries are keyed by the SHA-256 of (client id, stored hash, presented secret): a client
//! removed and registered again (a new stored hash) or a different secret never matches. The
//! secret itself is never kept. Only successes are remembered; failures always pay the full
//! Argon2 cost. The map is bounded ([`SecretCache::MAX_ENTRIES`]; cleared when full).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Verified (client, stored hash, secret) triples and when they stop counting.
#[derive(Debug, Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl SecretCache {
    /// How long a verification is remembered.
    pub const TTL: Duration = Duration::from_secs(300);
    /// Most remembered verifications.
    pub const MAX_ENTRIES: usize = 10_000;

    fn key(client_id: &str, stored_hash: &str, presented: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [client_id, stored_hash, presented] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    /// Whether this exact triple was verified within the TTL (as of `now`).
    pub fn is_verified(
        &self,
        client_id: &str,
        stored_hash: &str,
        presented: &str,
        now: Instant,
    ) -> bool {
        let key = Self::key(client_id, stored_hash, presented);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&key).is_some_and(|until| now < *until)
    }

    /// Remembers a successful verification (as of `now`).
    pub fn remember(&self, client_id: &str, stored_hash: &str, presented: &str, now: Instant) {
        let key = Self::key(client_id, stored_hash, presented);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::MAX_ENTRIES {
            entries.retain(|_, until| now < *until);
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, now + Self::TTL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_client_hash_and_secret_within_the_ttl_match() {
        let cache = SecretCache::default();
        let t0 = Instant::now();
        assert!(!cache.is_verified("c", "h", "s", t0));
        cache.remember("c", "h", "s", t0);
        assert!(cache.is_verified("c", "h", "s", t0 + Duration::from_secs(1)));
        // Another secret, another stored hash (a re-registered client), another client.
        assert!(!cache.is_verified("c", "h", "t", t0));
        assert!(!cache.is_verified("c", "h2", "s", t0));
        assert!(!cache.is_verified("d", "h", "s", t0));
        // Field boundaries count: ("ch", "") is not ("c", "h").
        assert!(!cache.is_verified("ch", "", "s", t0));
        // Expired.
        assert!(!cache.is_verified("c", "h", "s", t0 + SecretCache::TTL));
    }

    #[test]
    fn the_map_stays_bounded() {
        let cache = SecretCache::default();
        let t0 = Instant::now();
        for i in 0..=SecretCache::MAX_ENTRIES {
            cache.remember("c", "h", &i.to_string(), t0);
        }
        let len = cache.entries.lock().map(|e| e.len()).unwrap_or(usize::MAX);
        assert!(len <= SecretCache::MAX_ENTRIES, "{len}");
    }
}
