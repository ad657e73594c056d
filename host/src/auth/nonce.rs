//! Replay protection: each accepted (key id, nonce) is remembered until `created + 300` s
//! has passed. The database implementation (shared by every host instance) lives in
//! `store`; `MemoryNonceStore` is for tests and single-process development.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use tessera_proto::signing::KeyId;

use super::StoreError;

/// Whether a nonce was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    /// First use inside its window; it is now remembered.
    Fresh,
    /// Already remembered for this key: the request is a replay.
    Replayed,
    /// The key is no longer active (revoked since it was resolved): nothing was recorded and
    /// the request is refused as signed by an unknown key.
    KeyInactive,
}

/// Remembers nonces per key id. Implementations must make check-and-insert atomic (a
/// unique key on (key id, nonce) in the database), so two instances racing on the same
/// replayed request cannot both see `Fresh`.
pub trait NonceStore: Send + Sync {
    /// Records `nonce` for `key_id` until `expires_at` (Unix seconds, inclusive), unless it
    /// is already recorded and not expired at `now`. Entries that expired before `now` may
    /// be purged.
    fn check_and_remember(
        &self,
        key_id: &KeyId,
        nonce: &str,
        expires_at: i64,
        now: i64,
    ) -> impl Future<Output = Result<NonceOutcome, StoreError>> + Send;
}

/// An in-process nonce store: correct for one process only.
#[derive(Debug, Default)]
pub struct MemoryNonceStore {
    seen: Mutex<HashMap<(KeyId, String), i64>>,
}

impl MemoryNonceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many nonces are remembered (expired ones included until the next purge).
    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |m| m.len())
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NonceStore for MemoryNonceStore {
    async fn check_and_remember(
        &self,
        key_id: &KeyId,
        nonce: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<NonceOutcome, StoreError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| StoreError::new("the in-memory nonce store is poisoned", None))?;
        seen.retain(|_, expiry| *expiry >= now);
        let key = (key_id.clone(), nonce.to_owned());
        if seen.contains_key(&key) {
            return Ok(NonceOutcome::Replayed);
        }
        seen.insert(key, expires_at);
        Ok(NonceOutcome::Fresh)
    }
}
