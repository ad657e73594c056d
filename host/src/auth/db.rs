//! The database side of authentication: [`DbKeyResolver`] finds an active key's sealed
//! signing key in `api_keys` and opens it with the live key ring (which learns a data key
//! version added by a rotation while the host runs); [`DbNonceStore`] remembers
//! nonces in the `nonces` table, shared by every host instance. Also the one place that
//! knows the vault's associated data for a stored signing key ([`seal_signing_key`],
//! [`open_signing_key`]), so sealing and opening cannot disagree.
//!
//! Opened keys are kept in a [`KeyCache`] shared by the two, so a key in use costs neither a
//! read of `api_keys` nor a vault open per request; revocation still takes effect at once,
//! because every nonce insert checks, in the same statement, that its key is active.
//!
//! Never logs or returns in an error a signing key; an unsealed key lives only in the
//! zeroizing [`SigningKey`] handed to the verifier and in the cache (zeroized on eviction).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tessera_proto::scopes::Scope;
use tessera_proto::signing::{KeyId, KeyKind, SigningKey};

use super::{KeyResolver, NonceOutcome, NonceStore, ResolvedKey, StoreError};
use crate::batch::Batcher;
use crate::keys::LiveRing;
use crate::store::{self, AgentId, AppId, Store, Timestamp, api_keys, nonces};
use crate::vault::{Aad, KeyRing, Sealed, SecretBytes, VaultError};

/// The `kind` of the vault's associated data for an API key's signing key. With record id =
/// key id and app = app id, a sealed key copied to another key's row, or another app's,
/// does not open.
pub const SIGNING_KEY_AAD_KIND: &str = api_keys::SEALED_KIND;

/// Seals `signing_key` for the `api_keys` row of `key_id` in app `app_id`; returns the bytes
/// to store.
pub fn seal_signing_key(
    ring: &KeyRing,
    key_id: &KeyId,
    app_id: AppId,
    signing_key: &SigningKey,
) -> Result<Vec<u8>, VaultError> {
    let app_id = app_id.to_string();
    let aad = Aad {
        record_id: key_id.as_str(),
        app_id: &app_id,
        kind: SIGNING_KEY_AAD_KIND,
    };
    Ok(ring.seal(&aad, signing_key.as_bytes())?.to_bytes())
}

/// Opens the signing key stored in `record`. Fails if the bytes were altered, moved from
/// another row, or sealed under a data key the ring does not hold (this does not reload the
/// ring: a running host goes through [`DbKeyResolver`], which does).
pub fn open_signing_key(
    ring: &KeyRing,
    record: &api_keys::ApiKeyRecord,
) -> Result<SigningKey, VaultError> {
    let app_id = record.app_id.to_string();
    let sealed = Sealed::from_bytes(&record.sealed_signing_key)?;
    signing_key(&ring.open(&signing_key_aad(record, &app_id), &sealed)?)
}

/// [`open_signing_key`] with a live ring, which reloads the stored data keys when `record`
/// names a version it does not hold yet.
async fn open_signing_key_live(
    keys: &LiveRing,
    record: &api_keys::ApiKeyRecord,
) -> Result<SigningKey, VaultError> {
    let app_id = record.app_id.to_string();
    let sealed = Sealed::from_bytes(&record.sealed_signing_key)?;
    signing_key(
        &keys
            .open(&signing_key_aad(record, &app_id), &sealed)
            .await?,
    )
}

/// The associated data of `record`'s signing key; `app_id` is its app id as text.
fn signing_key_aad<'a>(record: &'a api_keys::ApiKeyRecord, app_id: &'a str) -> Aad<'a> {
    Aad {
        record_id: record.key_id.as_str(),
        app_id,
        kind: SIGNING_KEY_AAD_KIND,
    }
}

fn signing_key(plain: &SecretBytes) -> Result<SigningKey, VaultError> {
    let bytes: [u8; 32] = plain
        .expose()
        .try_into()
        .map_err(|_| VaultError::Malformed("a stored signing key is not 32 bytes"))?;
    Ok(SigningKey::from_bytes(bytes))
}

/// Who signed a verified request: the key, its app (and agent) and its Tessera scopes. The
/// layers above check scopes and isolate apps with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrincipal {
    /// The key that signed.
    pub key_id: KeyId,
    /// The app that owns the key.
    pub app_id: AppId,
    /// App key or agent key.
    pub kind: KeyKind,
    /// The agent, for an agent key.
    pub agent_id: Option<AgentId>,
    /// The key's Tessera scopes, in catalog order.
    pub scopes: Vec<Scope>,
}

/// How many opened keys a [`KeyCache`] holds before it starts over (a bound, not a working
/// set: a deployment has far fewer live keys).
const MAX_CACHED_KEYS: usize = 4096;

/// Signing keys already opened, by key id, with their principals. Only sound with a
/// [`DbNonceStore`] sharing it: a cached key is used without reading `api_keys`, and it is
/// the nonce insert that refuses (and evicts) a key revoked since. A key's scopes, app and
/// agent never change after creation, and its signing key survives data-key rotation
/// unchanged, so an entry never goes stale otherwise (whether its agent is disabled is
/// answered by that same insert, like revocation).
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<KeyId, (SigningKey, KeyPrincipal)>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.entries.lock().map_or(0, |e| e.len());
        f.debug_struct("KeyCache").field("keys", &len).finish()
    }
}

impl KeyCache {
    fn get(&self, key_id: &KeyId) -> Option<ResolvedKey<KeyPrincipal>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key_id)
            .map(|(signing_key, principal)| ResolvedKey {
                signing_key: signing_key.clone(),
                principal: principal.clone(),
            })
    }

    fn put(&self, resolved: &ResolvedKey<KeyPrincipal>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_CACHED_KEYS {
                entries.clear();
            }
            entries.insert(
                resolved.principal.key_id.clone(),
                (resolved.signing_key.clone(), resolved.principal.clone()),
            );
        }
    }

    fn evict(&self, key_id: &KeyId) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key_id);
        }
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Resolves key ids against the `api_keys` table. Revoked and unknown keys, and keys of
/// disabled agents, are `None` (the verifier answers `unknown_key` for all of them, so a
/// caller cannot tell them apart).
#[derive(Debug, Clone)]
pub struct DbKeyResolver {
    store: Store,
    keys: LiveRing,
    cache: Arc<KeyCache>,
}

impl DbKeyResolver {
    /// A resolver over `store`, opening signing keys with `keys` and keeping them in
    /// `cache`, which must be the cache of the [`DbNonceStore`] verifying with it.
    pub fn new(store: Store, keys: LiveRing, cache: Arc<KeyCache>) -> Self {
        Self { store, keys, cache }
    }
}

fn unavailable(
    message: String,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::new(message, Some(Box::new(source)))
}

impl KeyResolver for DbKeyResolver {
    type Principal = KeyPrincipal;

    async fn resolve(
        &self,
        key_id: &KeyId,
    ) -> Result<Option<ResolvedKey<KeyPrincipal>>, StoreError> {
        if let Some(hit) = self.cache.get(key_id) {
            return Ok(Some(hit));
        }
        // Only a live key: not revoked, and not the key of a disabled agent.
        let record = api_keys::get_live(&self.store, key_id)
            .await
            .map_err(|e| unavailable("cannot read the API key table".into(), e))?;
        let Some(record) = record else {
            return Ok(None);
        };
        // A key that does not open is an integrity problem on our side, not the caller's
        // mistake: refuse (fail closed) as unavailable, and let the log say which key.
        let signing_key = open_signing_key_live(&self.keys, &record)
            .await
            .map_err(|e| {
                unavailable(
                    format!("the stored signing key of API key {key_id} cannot be opened"),
                    e,
                )
            })?;
        let resolved = ResolvedKey {
            signing_key,
            principal: KeyPrincipal {
                key_id: record.key_id,
                app_id: record.app_id,
                kind: record.kind,
                agent_id: record.agent_id,
                scopes: record.scopes,
            },
        };
        self.cache.put(&resolved);
        Ok(Some(resolved))
    }
}

/// The most nonces one statement records (three parameters each).
const MAX_NONCE_BATCH: usize = 256;

/// Records the nonces of concurrent requests in one statement each batch
/// ([`nonces::remember_many`]): one write transaction for many requests. A request still
/// gets its answer only once its nonce is committed.
pub type NonceBatcher = Batcher<nonces::NonceUse, nonces::Remembered>;

/// The nonce batcher of `store`: on SQLite a lane of its writer thread, on PostgreSQL a
/// task on the pool.
pub fn nonce_batcher(store: Store) -> NonceBatcher {
    if let Some(writer) = store.sqlite_writer() {
        let seen = Arc::clone(writer);
        return Batcher::on_sqlite_writer("nonce", MAX_NONCE_BATCH, writer, move |conn, uses| {
            let remembered = nonces::remember_on_sqlite(conn, uses).map_err(|e| e.to_string())?;
            // The grant epoch, in the same transaction: the calls of this batch may use grants
            // kept at it (`grants::GrantCache`). A batch that cannot read it is refused, so
            // no call goes on with an epoch older than its nonce.
            let epoch = store::grants::epoch_on_sqlite(conn).map_err(|e| e.to_string())?;
            seen.observe_grant_epoch(epoch);
            Ok(remembered)
        });
    }
    Batcher::new(
        "nonce",
        MAX_NONCE_BATCH,
        move |uses: Vec<nonces::NonceUse>| {
            let store = store.clone();
            async move {
                nonces::remember_many(&store, &uses)
                    .await
                    .map_err(|e| e.to_string())
            }
        },
    )
}

/// Remembers nonces in the database, so a nonce accepted by one host instance is a replay
/// on every other. Check-and-insert is one atomic insert on the (key id, nonce) primary key,
/// which also checks that the key is still active (see [`KeyCache`]); concurrent requests'
/// nonces are written together ([`NonceBatcher`]).
#[derive(Debug, Clone)]
pub struct DbNonceStore {
    store: Store,
    batcher: Arc<NonceBatcher>,
    cache: Arc<KeyCache>,
}

impl DbNonceStore {
    /// A nonce store writing through `batcher` (see [`nonce_batcher`], over the same
    /// `store`); a key found inactive is evicted from `cache`.
    pub fn new(store: Store, batcher: Arc<NonceBatcher>, cache: Arc<KeyCache>) -> Self {
        Self {
            store,
            batcher,
            cache,
        }
    }

    /// Forgets nonces whose window closed strictly before `now` (Unix seconds); returns how
    /// many. A nonce is kept through its last second, when a replay could still verify.
    pub async fn purge_expired(&self, now: i64) -> Result<u64, store::StoreError> {
        let cutoff = now.saturating_mul(1000).saturating_sub(1);
        nonces::purge(&self.store, Timestamp::from_unix_millis(cutoff)).await
    }
}

impl NonceStore for DbNonceStore {
    async fn check_and_remember(
        &self,
        key_id: &KeyId,
        nonce: &str,
        expires_at: i64,
        _now: i64,
    ) -> Result<NonceOutcome, StoreError> {
        // An expired row that is still present reads as a replay; that is harmless, since
        // a request that old already failed the skew check before reaching this point.
        let expires_at = Timestamp::from_unix_millis(expires_at.saturating_mul(1000));
        let outcome = self
            .batcher
            .run(nonces::NonceUse {
                key_id: key_id.as_str().to_owned(),
                nonce: nonce.to_owned(),
                expires_at,
            })
            .await
            .map_err(|reason| {
                StoreError::new(format!("cannot reach the nonce table: {reason}"), None)
            })?;
        Ok(match outcome {
            nonces::Remembered::Fresh => NonceOutcome::Fresh,
            nonces::Remembered::Replayed => NonceOutcome::Replayed,
            nonces::Remembered::KeyInactive => {
                self.cache.evict(key_id);
                NonceOutcome::KeyInactive
            }
        })
    }
}
