//! Apps and their API keys, as a service the CLI (and later the HTTP API) calls: register
//! and list apps, mint, list and revoke API keys.
//!
//! Owns: app-name rules, minting a key (random key id and secret), deriving its signing key
//! and having it sealed for storage, and the one-time hand-over of the key string.
//!
//! Must never: store, log or put into an error message an API key, its secret or its
//! signing key. What is stored for a key is its id, owner, scopes, the signing key sealed by
//! the vault, and a one-way fingerprint. The [`ApiKey`] returned by [`Apps::create_key`] is
//! the only copy there will ever be.
//!
//! Key creation and revocation are audited (`key.create`, `key.revoke`) in the same
//! transaction as the change itself: if the audit row cannot be written, the key is not
//! created or revoked. An agent key for an agent the app does not have yet creates that
//! agent (`agent.create`, same transaction); one for a disabled agent is refused. Managing
//! agents otherwise is [`crate::agents`].

use std::sync::Arc;

use rand::RngCore as _;
use tessera_proto::scopes::Scope;
use tessera_proto::signing::{ApiKey, KEY_ID_LEN, KeyId, KeyKind, SECRET_LEN, SigningError};

use crate::agents::Agents;
use crate::audit::{self, Action, AuditEntry, AuditError, Origin, Outcome};
use crate::auth::{self, DbKeyResolver, DbNonceStore, KeyCache, NonceBatcher};
use crate::grants::Change;
use crate::keys::LiveRing;
use crate::setup::{self, KeySource, SetupError};
use crate::store::api_keys::ApiKeyRecord;
use crate::store::apps::App;
use crate::store::last_used::LastUsed;
use crate::store::{DatabaseConfig, Store, StoreError, Timestamp, agents, api_keys, apps};
use crate::vault::VaultError;

/// Longest app or agent name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// How many times minting retries when a random key id is already taken.
const KEY_ID_ATTEMPTS: usize = 4;

/// Why an app or key operation failed. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    /// The data directory could not be opened (not set up, wrong master key, …).
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// An app or agent name breaks the naming rules.
    #[error(
        "invalid {what} name {name:?}: use 1 to {MAX_NAME_LEN} characters of a-z A-Z 0-9 . _ -"
    )]
    InvalidName {
        /// `app` or `agent`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// An app with this name already exists.
    #[error("app {name:?} already exists")]
    DuplicateApp {
        /// The name.
        name: String,
    },
    /// No app has this name.
    #[error("no app named {name:?} (see `tessera app list`)")]
    UnknownApp {
        /// The name.
        name: String,
    },
    /// A key was requested for a disabled agent.
    #[error("agent {name:?} is disabled: enable it first (`tessera agent enable {name} --app …`)")]
    AgentDisabled {
        /// The agent's name.
        name: String,
    },
    /// A key was requested without scopes.
    #[error("a key needs at least one scope; valid scopes are: {}", valid_scopes())]
    NoScopes,
    /// No key has this id.
    #[error("no API key with id {key_id}")]
    UnknownKey {
        /// The key id.
        key_id: String,
    },
    /// The string is not a key id.
    #[error("{given:?} is not an API key id: expected 16 lower-case hex characters")]
    InvalidKeyId {
        /// What was given (a key id is public; a full key is never echoed, see below).
        given: String,
    },
    /// A fresh key could not be assembled (never expected).
    #[error("cannot mint an API key: {0}")]
    Mint(#[from] SigningError),
    /// Sealing or opening failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change could not be audited, so it was not made.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Who [`Apps::create_key`] and [`Apps::revoke_key`] record as acting: the local operator
/// on the command line.
pub const LOCAL_OPERATOR: &str = "local";

fn valid_scopes() -> String {
    Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Who a new key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOwner {
    /// The app itself (`tsr_app_…`).
    App,
    /// The app's agent of this name (`tsr_agent_…`), created if it does not exist yet; it
    /// must not be disabled.
    Agent(String),
}

/// A freshly minted key: the key itself (show it once, then drop it) and what was stored.
#[derive(Debug)]
pub struct CreatedKey {
    /// The full key. Its `Debug` is redacted; [`ApiKey::expose`] gives the string.
    pub key: ApiKey,
    /// The stored record.
    pub record: ApiKeyRecord,
    /// The app it belongs to.
    pub app: App,
    /// The agent's name, for an agent key.
    pub agent: Option<String>,
}

/// What may be shown about a stored key: everything but the sealed signing key. This is
/// what listings print and serialise, so no secret-bearing field can slip into them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeySummary {
    /// The public key id.
    pub key_id: String,
    /// The app's name.
    pub app: String,
    /// `app` or `agent`.
    pub kind: &'static str,
    /// The agent's name, for an agent key.
    pub agent: Option<String>,
    /// Tessera scopes, in catalog order.
    pub scopes: Vec<Scope>,
    /// `hex(SHA-256(full key))`, to match a leaked key against.
    pub fingerprint: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, if ever used.
    pub last_used_at: Option<String>,
    /// RFC 3339, if revoked.
    pub revoked_at: Option<String>,
}

impl KeySummary {
    /// The summary of `record`, which belongs to `app` (and agent `agent`).
    pub fn of(record: &ApiKeyRecord, app: &str, agent: Option<String>) -> Self {
        Self {
            key_id: record.key_id.to_string(),
            app: app.to_owned(),
            kind: record.kind.as_str(),
            agent,
            scopes: record.scopes.clone(),
            fingerprint: record.fingerprint.clone(),
            created_at: record.created_at.to_rfc3339(),
            last_used_at: record.last_used_at.map(Timestamp::to_rfc3339),
            revoked_at: record.revoked_at.map(Timestamp::to_rfc3339),
        }
    }
}

/// The result of a revocation.
#[derive(Debug)]
pub struct Revoked {
    /// The key as now stored.
    pub record: ApiKeyRecord,
    /// Whether this call revoked it (`false`: it already was).
    pub now: bool,
}

/// The app and key service over one database and key ring.
#[derive(Debug, Clone)]
pub struct Apps {
    store: Store,
    keys: LiveRing,
    last_used: LastUsed,
    /// Opened signing keys, shared by the resolver and nonce store this hands out.
    key_cache: Arc<KeyCache>,
    /// Group commit of nonces, shared by the nonce stores this hands out.
    nonce_batcher: Arc<NonceBatcher>,
}

impl Apps {
    /// A service over an open store and live key ring.
    pub fn new(store: Store, keys: LiveRing) -> Self {
        Self {
            nonce_batcher: Arc::new(auth::nonce_batcher(store.clone())),
            store,
            keys,
            last_used: LastUsed::default(),
            key_cache: Arc::default(),
        }
    }

    /// Opens a data directory set up by `tessera init` (see [`setup::open`]).
    pub async fn open(database: &DatabaseConfig, key: KeySource<'_>) -> Result<Self, AppsError> {
        let (store, keys) = setup::open(database, key).await?;
        Ok(Self::new(store, keys))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The live key ring (seal with it; open through [`LiveRing::open`], which learns data
    /// key versions a rotation adds while the host runs).
    pub fn keys(&self) -> &LiveRing {
        &self.keys
    }

    /// The agent service over the same database.
    pub fn agents(&self) -> Agents {
        Agents::new(self.store.clone())
    }

    /// A key resolver for request verification over the same database and key ring.
    pub fn key_resolver(&self) -> DbKeyResolver {
        DbKeyResolver::new(
            self.store.clone(),
            self.keys.clone(),
            Arc::clone(&self.key_cache),
        )
    }

    /// A nonce store over the same database.
    pub fn nonce_store(&self) -> DbNonceStore {
        DbNonceStore::new(
            self.store.clone(),
            Arc::clone(&self.nonce_batcher),
            Arc::clone(&self.key_cache),
        )
    }

    /// Records that a request signed with `key_id` has just verified (`last_used_at`, to
    /// within [`crate::store::last_used::RESOLUTION`]).
    pub async fn record_key_use(&self, key_id: &KeyId) -> Result<(), AppsError> {
        if !self.last_used.due(key_id.as_str()) {
            return Ok(());
        }
        Ok(api_keys::touch_last_used(&self.store, key_id, Timestamp::now()).await?)
    }

    /// Registers app `name`.
    pub async fn create_app(&self, name: &str) -> Result<App, AppsError> {
        check_name("app", name)?;
        apps::create(&self.store, name, Timestamp::now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => AppsError::DuplicateApp {
                    name: name.to_owned(),
                },
                e => e.into(),
            })
    }

    /// Every app, by name.
    pub async fn list_apps(&self) -> Result<Vec<App>, AppsError> {
        Ok(apps::list(&self.store).await?)
    }

    /// The app named `name`.
    pub async fn app(&self, name: &str) -> Result<App, AppsError> {
        apps::get_by_name(&self.store, name)
            .await?
            .ok_or_else(|| AppsError::UnknownApp {
                name: name.to_owned(),
            })
    }

    /// [`Self::create_key_as`] by the operator [`LOCAL_OPERATOR`] on the command line.
    pub async fn create_key(
        &self,
        app_name: &str,
        owner: KeyOwner,
        scopes: &[Scope],
    ) -> Result<CreatedKey, AppsError> {
        self.create_key_as(
            &Origin::cli_operator(LOCAL_OPERATOR),
            app_name,
            owner,
            scopes,
        )
        .await
    }

    /// Mints a key for app `app_name` (or one of its agents) with `scopes`, audited as a
    /// `key.create` by `origin`. The returned [`CreatedKey::key`] is the only copy: the
    /// database keeps the sealed signing key and a fingerprint.
    pub async fn create_key_as(
        &self,
        origin: &Origin,
        app_name: &str,
        owner: KeyOwner,
        scopes: &[Scope],
    ) -> Result<CreatedKey, AppsError> {
        if scopes.is_empty() {
            return Err(AppsError::NoScopes);
        }
        let mut scopes = scopes.to_vec();
        scopes.sort_unstable();
        scopes.dedup();
        if let KeyOwner::Agent(name) = &owner {
            check_name("agent", name)?;
        }
        let app = self.app(app_name).await?;
        let mut attempt = 1;
        loop {
            match self.try_create_key(origin, &app, &owner, &scopes).await {
                // A 64-bit random key id collides about never, and two instances creating
                // the same agent at once is rare; either way a fresh attempt (new id, agent
                // now visible) succeeds. Each attempt is its own transaction, because on
                // PostgreSQL a failed statement aborts the transaction it is in.
                Err(AppsError::Store(StoreError::Conflict { .. })) if attempt < KEY_ID_ATTEMPTS => {
                    attempt += 1;
                }
                Ok((key, record, agent)) => {
                    return Ok(CreatedKey {
                        key,
                        record,
                        app,
                        agent,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_create_key(
        &self,
        origin: &Origin,
        app: &App,
        owner: &KeyOwner,
        scopes: &[Scope],
    ) -> Result<(ApiKey, ApiKeyRecord, Option<String>), AppsError> {
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        let mut entries = Vec::with_capacity(2);
        let (kind, agent) = match owner {
            KeyOwner::App => (KeyKind::App, None),
            KeyOwner::Agent(name) => {
                let agent = match agents::get_by_name(&mut tx, app.id, name).await? {
                    // Its keys would be refused anyway; minting one is a mistake to point out.
                    Some(agent) if agent.disabled_at.is_some() => {
                        return Err(AppsError::AgentDisabled { name: name.clone() });
                    }
                    Some(agent) => agent,
                    None => {
                        let agent = agents::create(&mut tx, app.id, name, now).await?;
                        let change = Change {
                            origin: origin.clone(),
                            key_id: None,
                            caller: None,
                            request_id: None,
                            reason: None,
                            impersonated_by: None,
                        };
                        entries.push(crate::agents::entry(
                            Action::AgentCreate,
                            &change,
                            &agent,
                            now,
                        ));
                        agent
                    }
                };
                (KeyKind::Agent, Some(agent))
            }
        };
        let key = mint(kind)?;
        let record = ApiKeyRecord {
            key_id: key.key_id().clone(),
            app_id: app.id,
            kind,
            agent_id: agent.as_ref().map(|a| a.id),
            scopes: scopes.to_vec(),
            sealed_signing_key: auth::seal_signing_key(
                self.keys.ring(),
                key.key_id(),
                app.id,
                &key.signing_key(),
            )?,
            fingerprint: key.fingerprint(),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        api_keys::insert(&mut tx, &record).await?;
        let detail = serde_json::json!({
            "via": origin.via.as_str(),
            "key_id": record.key_id.as_str(),
            "kind": kind.as_str(),
            "agent": agent.as_ref().map(|a| a.name.as_str()),
            "scopes": scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        });
        entries.push(AuditEntry {
            at: now,
            app_id: Some(app.id),
            detail,
            ..AuditEntry::new(Action::KeyCreate, origin.actor.clone(), Outcome::Ok)
        });
        audit::append(&mut tx, &entries).await?;
        tx.commit().await?;
        Ok((key, record, agent.map(|a| a.name)))
    }

    /// Every key of app `app_name` (revoked ones included), oldest first. Never the keys
    /// themselves: only what is stored.
    pub async fn list_keys(&self, app_name: &str) -> Result<Vec<ApiKeyRecord>, AppsError> {
        let app = self.app(app_name).await?;
        Ok(api_keys::list_for_app(&self.store, app.id).await?)
    }

    /// [`Self::list_keys`] as summaries, with agent names.
    pub async fn key_summaries(&self, app_name: &str) -> Result<Vec<KeySummary>, AppsError> {
        let app = self.app(app_name).await?;
        let mut out = Vec::new();
        for record in api_keys::list_for_app(&self.store, app.id).await? {
            let agent = self.agent_name(&record).await?;
            out.push(KeySummary::of(&record, &app.name, agent));
        }
        Ok(out)
    }

    /// The summary of a revocation's key.
    pub async fn summary(&self, record: &ApiKeyRecord) -> Result<KeySummary, AppsError> {
        let app = apps::get(&self.store, record.app_id)
            .await?
            .map(|a| a.name)
            .unwrap_or_default();
        let agent = self.agent_name(record).await?;
        Ok(KeySummary::of(record, &app, agent))
    }

    async fn agent_name(&self, record: &ApiKeyRecord) -> Result<Option<String>, AppsError> {
        Ok(match record.agent_id {
            Some(id) => agents::get(&self.store, record.app_id, id)
                .await?
                .map(|a| a.name),
            None => None,
        })
    }

    /// [`Self::revoke_key_as`] by the operator [`LOCAL_OPERATOR`] on the command line.
    pub async fn revoke_key(&self, key_id: &str) -> Result<Revoked, AppsError> {
        self.revoke_key_as(&Origin::cli_operator(LOCAL_OPERATOR), key_id)
            .await
    }

    /// Revokes the key with id `key_id`, audited as a `key.revoke` by `origin`. Revoking a
    /// revoked key changes nothing, writes no audit row, and is not an error.
    pub async fn revoke_key_as(&self, origin: &Origin, key_id: &str) -> Result<Revoked, AppsError> {
        let parsed = KeyId::parse(key_id).map_err(|_| AppsError::InvalidKeyId {
            // Someone may paste a whole key here by mistake: never echo more than an id's
            // worth of it.
            given: key_id.chars().take(KEY_ID_LEN).collect(),
        })?;
        let at = Timestamp::now();
        let mut tx = self.store.begin().await?;
        let now = api_keys::revoke(&mut tx, &parsed, at).await?;
        let record = api_keys::get_by_key_id(&mut tx, &parsed)
            .await?
            .ok_or_else(|| AppsError::UnknownKey {
                key_id: parsed.to_string(),
            })?;
        if now {
            let detail = serde_json::json!({
                "via": origin.via.as_str(),
                "key_id": record.key_id.as_str(),
                "kind": record.kind.as_str(),
                "agent_id": record.agent_id.map(|a| a.to_string()),
            });
            let entry = AuditEntry {
                at,
                app_id: Some(record.app_id),
                detail,
                ..AuditEntry::new(Action::KeyRevoke, origin.actor.clone(), Outcome::Ok)
            };
            audit::append(&mut tx, &[entry]).await?;
        }
        tx.commit().await?;
        Ok(Revoked { record, now })
    }

    /// Closes the database connections.
    pub async fn close(&self) {
        self.store.close().await;
    }
}

/// A new key of `kind`: a random 64-bit key id and 256-bit secret.
fn mint(kind: KeyKind) -> Result<ApiKey, SigningError> {
    let mut rng = rand::rng();
    let mut id = [0u8; 8];
    rng.fill_bytes(&mut id);
    let mut secret = zeroize::Zeroizing::new([0u8; SECRET_LEN]);
    rng.fill_bytes(secret.as_mut_slice());
    let key_id = KeyId::parse(&hex::encode(id))?;
    Ok(ApiKey::new(kind, key_id, *secret))
}

/// Checks an app or agent name (`what`) against the naming rules.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), AppsError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AppsError::InvalidName {
            what,
            name: name.chars().take(MAX_NAME_LEN + 1).collect(),
        })
    }
}

#[cfg(test)]
mod tests;
