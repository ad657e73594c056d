//! Data keys at run time, on top of the vault and the store: the live key ring every part of
//! a running host opens and seals with ([`LiveRing`]), which learns data key versions added
//! while it runs; data-key rotation ([`rotate`], `tessera keys rotate`: store a new version,
//! then re-encrypt every value sealed with an older one, batch by batch, while hosts keep
//! serving; [`reseal_in_background`] does the same slowly inside `tessera serve`); and the
//! report of `tessera keys status` ([`status`]).
//!
//! Why not in `vault`: the vault does no database I/O by design; this module is where data
//! keys meet the `data_keys` table and the sealed columns (`store::reseal`).
//!
//! Must never: log, print or put into an error a key or a plaintext (only versions, counts,
//! column names and row ids); seal with a data key version before it is stored; overwrite a
//! value another writer changed meanwhile (every re-seal compares and swaps).

mod rotate;
mod status;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use rotate::{
    Background, ColumnReport, Progress, RotateOptions, RotateReport, Unreadable,
    reseal_in_background, rotate,
};
pub use status::{KeysStatus, VersionStatus, status};

use crate::store::{Store, StoreError, Timestamp, data_keys};
use crate::vault::{Aad, KeyRing, MasterKey, Sealed, SecretBytes, VaultError, WrappedDataKey};

/// How often a missing data key version may send the ring back to the database.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// How many missing versions the rate limiter remembers before it forgets them all (stored
/// values only name versions that exist, so more than this means corrupt rows).
const MAX_REMEMBERED_MISSES: usize = 64;

/// Why a data-key operation failed. Messages carry versions and counts, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Wrapping, unwrapping, sealing or opening failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another rotation stored the same new version first.
    #[error(
        "data key version {version} was just created by another `tessera keys rotate`; run \
         `tessera keys rotate --resume` to finish re-encrypting with it"
    )]
    VersionTaken {
        /// The version both tried to create.
        version: u32,
    },
}

/// The key ring of a running host, kept in step with the `data_keys` table.
///
/// Sealing uses the highest version the ring knows ([`KeyRing::seal`]). Opening a value
/// sealed with a version the ring does not hold yet (one that `tessera keys rotate` or
/// another host instance added after this one loaded its keys) reloads the stored data keys
/// once and retries ([`Self::open`]); reloads for one missing version happen at most once per
/// second, so a corrupt row cannot turn every request into a database round trip.
///
/// Cheap to clone; clones share the ring, the master key and the rate limiter. `Debug` shows
/// the versions only.
#[derive(Clone)]
pub struct LiveRing {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    master: Arc<MasterKey>,
    ring: Arc<KeyRing>,
    /// When each missing version last triggered a reload. The async mutex also makes
    /// concurrent misses wait for one reload instead of each starting their own.
    misses: tokio::sync::Mutex<HashMap<u32, Instant>>,
}

impl fmt::Debug for LiveRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveRing")
            .field("ring", &self.inner.ring)
            .finish_non_exhaustive()
    }
}

impl LiveRing {
    /// A live ring over `ring`, reloading from `store`'s `data_keys` with `master`.
    pub fn new(store: Store, master: Arc<MasterKey>, ring: Arc<KeyRing>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                master,
                ring,
                misses: tokio::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The shared ring (for sealing, and for code that must stay synchronous; its
    /// [`KeyRing::open`] does not reload).
    pub fn ring(&self) -> &Arc<KeyRing> {
        &self.inner.ring
    }

    /// The store data keys are reloaded from.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Seals `plaintext` for `aad` under the highest data key version this ring knows.
    pub fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Sealed, VaultError> {
        self.inner.ring.seal(aad, plaintext)
    }

    /// Opens `sealed`. A version the ring does not hold makes it reload the stored data keys
    /// (rate-limited) and try once more; if the version is still unknown, or the reload
    /// failed (logged), the error is [`VaultError::UnknownKeyVersion`]. Every other failure
    /// is returned as the vault reports it.
    pub async fn open(&self, aad: &Aad<'_>, sealed: &Sealed) -> Result<SecretBytes, VaultError> {
        match self.inner.ring.open(aad, sealed) {
            Err(VaultError::UnknownKeyVersion(version)) => {
                self.learn(version).await;
                self.inner.ring.open(aad, sealed)
            }
            other => other,
        }
    }

    /// Parses stored bytes and opens them (see [`Self::open`]).
    pub async fn open_bytes(&self, aad: &Aad<'_>, bytes: &[u8]) -> Result<SecretBytes, VaultError> {
        self.open(aad, &Sealed::from_bytes(bytes)?).await
    }

    /// Reads `data_keys` and adds every version the ring does not hold yet; returns those
    /// versions, ascending.
    pub async fn reload(&self) -> Result<Vec<u32>, KeysError> {
        let mut learnt = Vec::new();
        for record in data_keys::list(&self.inner.store).await? {
            let Ok(version) = u32::try_from(record.version) else {
                continue;
            };
            if self.inner.ring.holds(version) {
                continue;
            }
            let wrapped = WrappedDataKey {
                version,
                wrapped: record.wrapped,
            };
            self.inner.ring.insert(&self.inner.master, &wrapped)?;
            learnt.push(version);
        }
        if !learnt.is_empty() {
            tracing::info!(versions = ?learnt, current = self.inner.ring.current_version(),
                "learnt new data key versions");
        }
        Ok(learnt)
    }

    /// Reloads because `version` was missing, unless another caller just did (or is doing)
    /// so, or this version already caused a reload within [`RELOAD_INTERVAL`].
    async fn learn(&self, version: u32) {
        let mut misses = self.inner.misses.lock().await;
        if self.inner.ring.holds(version) {
            return;
        }
        let now = Instant::now();
        if misses
            .get(&version)
            .is_some_and(|at| now.duration_since(*at) < RELOAD_INTERVAL)
        {
            return;
        }
        if misses.len() >= MAX_REMEMBERED_MISSES {
            misses.clear();
        }
        misses.insert(version, now);
        if let Err(error) = self.reload().await {
            tracing::warn!(%error, version, "cannot reload the data keys");
        }
    }

    /// Stores a new data key version (current + 1, wrapped by the master key) and only then
    /// adds it to the ring, which makes it current here. Returns the version.
    pub async fn add_version(&self) -> Result<u32, KeysError> {
        let wrapped = self.inner.ring.wrap_next_version(&self.inner.master)?;
        let record = data_keys::DataKeyRecord {
            version: i64::from(wrapped.version),
            wrapped: wrapped.wrapped.clone(),
            wrapped_by: self.inner.master.fingerprint(),
            created_at: Timestamp::now(),
        };
        match data_keys::insert(&self.inner.store, &record).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(KeysError::VersionTaken {
                    version: wrapped.version,
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.inner.ring.insert(&self.inner.master, &wrapped)?;
        tracing::info!(version = wrapped.version, "added a data key version");
        Ok(wrapped.version)
    }
}

#[cfg(test)]
mod tests;

/// For other modules' tests: a live key ring over `store` with a fresh master key and one
/// data key version, stored as `tessera init` stores it.
#[cfg(test)]
pub(crate) async fn test_ring(store: &Store) -> anyhow::Result<LiveRing> {
    test_ring_with(store, Arc::new(MasterKey::generate())).await
}

/// [`test_ring`] under a given master key.
#[cfg(test)]
pub(crate) async fn test_ring_with(
    store: &Store,
    master: Arc<MasterKey>,
) -> anyhow::Result<LiveRing> {
    let (ring, wrapped) = KeyRing::generate(&master)?;
    data_keys::insert(
        store,
        &data_keys::DataKeyRecord {
            version: i64::from(wrapped.version),
            wrapped: wrapped.wrapped,
            wrapped_by: master.fingerprint(),
            created_at: Timestamp::now(),
        },
    )
    .await?;
    Ok(LiveRing::new(store.clone(), master, Arc::new(ring)))
}
