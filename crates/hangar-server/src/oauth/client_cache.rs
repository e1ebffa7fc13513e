//! Registered clients recently read from the store, so the token, introspection, revocation
//! and device endpoints do not read the client's row on every request (oidc-provider and
//! Keycloak keep their clients in memory the same way).
//!
//! An entry lives [`ClientCache::TTL`]. This process forgets a client the moment it removes
//! one ([`ClientCache::forget`]); another `hangar serve` sharing the database notices within
//! the TTL. Misses (unknown client ids) are never remembered, so a client registered anywhere
//! is usable at once. The map is bounded ([`ClientCache::MAX_ENTRIES`]; cleared when full).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hangar_oauth::client::{ClientId, OAuthClient};

/// Client records and when each stops counting.
#[derive(Debug, Default)]
pub struct ClientCache {
    entries: Mutex<HashMap<ClientId, (OAuthClient, Instant)>>,
}

impl ClientCache {
    /// How long a client read from the store is used without reading it again.
    pub const TTL: Duration = Duration::from_secs(10);
    /// Most remembered clients.
    pub const MAX_ENTRIES: usize = 10_000;

    /// The client `id` if it was read within the TTL (as of `now`).
    pub fn get(&self, id: &ClientId, now: Instant) -> Option<OAuthClient> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(id)
            .filter(|(_, until)| now < *until)
            .map(|(client, _)| client.clone())
    }

    /// Remembers `client` as just read from the store (as of `now`).
    pub fn put(&self, client: &OAuthClient, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::MAX_ENTRIES && !entries.contains_key(&client.id) {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(client.id.clone(), (client.clone(), now + Self::TTL));
    }

    /// Forgets the client `id` (it was removed or changed).
    pub fn forget(&self, id: &ClientId) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::Timestamp;
    use hangar_oauth::client::{ClientType, NewClient};
    use hangar_oauth::scope::ScopeSet;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn client(seed: u64) -> OAuthClient {
        NewClient {
            name: format!("App {seed}"),
            client_type: ClientType::Public,
            redirect_uris: vec!["https://app.test/cb".into()],
            scopes: ScopeSet::parse("sandboxes:read").expect("scopes"),
            grant_types: vec![],
        }
        .register(Timestamp::from_unix_ms(0), &mut StdRng::seed_from_u64(seed))
        .expect("client")
        .0
    }

    #[test]
    fn a_client_counts_within_the_ttl_until_forgotten() {
        let cache = ClientCache::default();
        let (a, b) = (client(1), client(2));
        let t0 = Instant::now();
        assert_eq!(cache.get(&a.id, t0), None);
        cache.put(&a, t0);
        assert_eq!(
            cache.get(&a.id, t0 + Duration::from_secs(1)),
            Some(a.clone())
        );
        assert_eq!(cache.get(&b.id, t0), None, "another client is not served");
        assert_eq!(cache.get(&a.id, t0 + ClientCache::TTL), None, "expired");
        cache.put(&a, t0);
        cache.forget(&a.id);
        assert_eq!(cache.get(&a.id, t0), None, "forgotten");
    }

    #[test]
    fn the_map_stays_bounded() {
        let cache = ClientCache::default();
        let template = client(1);
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..=ClientCache::MAX_ENTRIES {
            let mut c = template.clone();
            c.id = ClientId::generate(&mut rng);
            cache.put(&c, t0);
        }
        let len = cache.entries.lock().map(|e| e.len()).unwrap_or(usize::MAX);
        assert!(len <= ClientCache::MAX_ENTRIES, "{len}");
    }
}
