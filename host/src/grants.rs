//! Grants and managed secrets, as a service the API and the CLI call: store or rotate a
//! managed secret (validated by the provider's own connect state machine), list, show and
//! revoke grants, and resolve a grant to the credential a call signs with.
//!
//! Owns: validating secret fields and connection parameters against what the provider
//! declares; running the component's connect steps for a managed secret (each `send` through
//! [`Egress`], so the provider's allow-list holds); sealing credentials (associated data =
//! credential id, app, `credential`); keeping the grant id stable across rotation; deleting a
//! revoked grant's secret material; and the rule that an agent key reaches only its own
//! grants.
//!
//! Must never: return or log a secret field, look up a grant without the caller's app id
//! (another app's grant is "not found", never "forbidden"), or keep a revoked grant usable.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use tessera_proto::grants::{
    Grant, GrantKind, GrantPage, GrantStatus, ManagedSecretRequest, Principal,
};
use zeroize::Zeroizing;

use crate::audit::{Action, AuditEntry, AuditError, AuditLog, Origin, Outcome};
use crate::batch::Batcher;
use crate::egress::{Egress, EgressError};
use crate::keys::LiveRing;
use crate::plugin::types::{
    AuthKind, Context, Credential, Input, ProviderError, ProviderInfo, Step,
};
use crate::plugin::{Plugin, PluginError, Registry};
use crate::store::credentials::{self, CredentialRecord, SEALED_KIND};
use crate::store::delegations;
use crate::store::grants::{self as grant_repo, Filter, GrantRecord};
use crate::store::last_used::LastUsed;
use crate::store::{AgentId, AppId, CredentialId, GrantId, Store, StoreError, Timestamp};
use crate::vault::{Aad, Sealed, VaultError};

/// The most connect steps a managed secret's validation may take.
const MAX_STEPS: usize = 8;

/// Default and largest page size of a grant listing.
pub const DEFAULT_PAGE: u32 = 50;
/// The largest page size.
pub const MAX_PAGE: u32 = 500;

/// The longest TTL a grant may be given: two years.
pub const MAX_GRANT_TTL: std::time::Duration = std::time::Duration::from_hours(2 * 366 * 24);

/// The live grant `id` of `owner`'s app that a rotation replaces the secret of: it must be a
/// `kind` grant of `info`'s provider.
async fn rotatable(
    tx: &mut crate::store::Tx,
    owner: Owner,
    info: &ProviderInfo,
    kind: GrantKind,
    id: &str,
) -> Result<GrantRecord, GrantError> {
    let gid = parse_grant_id(id)?;
    let g = grant_repo::get(&mut *tx, owner.app_id, gid, true)
        .await?
        .filter(|g| owner.may_use(g))
        .ok_or_else(|| GrantError::NotFound { id: id.to_owned() })?;
    if g.revoked_at.is_some() {
        return Err(GrantError::Revoked { id: id.to_owned() });
    }
    if g.provider != info.id || g.kind != kind {
        return Err(GrantError::Invalid(format!(
            "grant {id} is not a {} {} grant",
            info.id,
            kind.as_str()
        )));
    }
    Ok(g)
}

/// Why a grant operation failed. Messages name fields and providers, never secret values.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// No such grant in the caller's app (or not one the caller may use).
    #[error("no grant {id} is visible to this key")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The grant was revoked.
    #[error("grant {id} was revoked")]
    Revoked {
        /// The grant id.
        id: String,
    },
    /// The grant needs the user to connect again.
    #[error("grant {id} needs to be connected again")]
    ReauthRequired {
        /// The grant id.
        id: String,
    },
    /// The grant's TTL has run out.
    #[error("grant {id} has expired (its TTL ran out); connect again or extend it")]
    Expired {
        /// The grant id.
        id: String,
    },
    /// The provider is not loaded.
    #[error("no provider {id:?} is loaded on this host")]
    ProviderNotFound {
        /// The provider id.
        id: String,
    },
    /// The request is malformed: unknown or missing field, wrong auth kind, bad filter.
    #[error("{0}")]
    Invalid(String),
    /// The provider's component refused the secret or its validation failed upstream.
    #[error("{provider} did not accept the secret: {reason}")]
    Rejected {
        /// The provider id.
        provider: String,
        /// The provider's reason (never a secret value).
        reason: String,
    },
    /// The component failed (trap, timeout, bad output).
    #[error("the {provider} component failed: {source}")]
    Component {
        /// The provider id.
        provider: String,
        /// What failed.
        source: PluginError,
    },
    /// A credential could not be refreshed; the stored one is unchanged.
    #[error("the {provider} credential could not be refreshed: {reason}")]
    RefreshFailed {
        /// The provider id.
        provider: String,
        /// What failed (never a token).
        reason: String,
    },
    /// A connect step could not be sent.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// A live grant with the same principal and account already exists (rotation by id
    /// would collide).
    #[error("{0}")]
    Conflict(String),
    /// Sealing or opening failed.
    #[error("the credential could not be sealed or opened")]
    Vault(#[from] VaultError),
    /// The database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
    /// The change was applied but its audit row could not be written.
    #[error("the change was applied but could not be recorded in the audit log")]
    AuditUnavailable(#[source] AuditError),
}

/// Who asks for a grant change, and from where: what its audit row records.
#[derive(Debug, Clone)]
pub struct Change {
    /// Who and via what (CLI, API, wallet).
    pub origin: Origin,
    /// The API key that signed the request, if any.
    pub key_id: Option<String>,
    /// The caller name the SDK declared.
    pub caller: Option<String>,
    /// The host's request id.
    pub request_id: Option<String>,
    /// Why (free text).
    pub reason: Option<String>,
    /// The app key that made the change acting as the agent of `origin` (`Tessera-Agent`).
    pub impersonated_by: Option<String>,
}

impl Change {
    /// `detail` with `impersonated_by` added when an app key acted as the agent: every audit
    /// row of a change says so.
    pub fn annotate(&self, mut detail: serde_json::Value) -> serde_json::Value {
        if let (Some(key), serde_json::Value::Object(map)) = (&self.impersonated_by, &mut detail) {
            map.insert("impersonated_by".into(), serde_json::json!(key));
        }
        detail
    }

    /// A change the host makes itself while refreshing a credential.
    pub fn refresh() -> Self {
        Self {
            origin: Origin {
                actor: crate::audit::Actor::new(crate::audit::ActorKind::Host, "refresh"),
                via: crate::audit::Via::Api,
            },
            key_id: None,
            caller: None,
            request_id: None,
            reason: None,
            impersonated_by: None,
        }
    }

    /// A change by the operator on the command line.
    pub fn cli() -> Self {
        Self {
            origin: Origin::cli_operator(operator_login()),
            key_id: None,
            caller: None,
            request_id: None,
            reason: None,
            impersonated_by: None,
        }
    }
}

/// The operator's login name for CLI audit rows (`$USER`, else `operator`).
pub fn operator_login() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".to_owned())
}

/// What the vault seals for a credential: everything secret the component returned.
#[derive(Serialize, Deserialize)]
struct SealedCredential {
    secrets: Vec<(String, String)>,
    scopes: Vec<String>,
    expires_at: Option<u64>,
}

impl Drop for SealedCredential {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        for (_, v) in &mut self.secrets {
            v.zeroize();
        }
    }
}

/// Who is asking: the app of the key, and the agent for an agent key.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    /// The caller's app.
    pub app_id: AppId,
    /// The agent, for an agent key: it reaches only grants whose principal is itself.
    pub agent_id: Option<AgentId>,
}

impl Owner {
    /// The app itself (operator, CLI, app key).
    pub fn app(app_id: AppId) -> Self {
        Self {
            app_id,
            agent_id: None,
        }
    }

    fn may_use(&self, grant: &GrantRecord) -> bool {
        match self.agent_id {
            None => true,
            Some(agent) => grant.principal == Principal::Agent(agent.to_string()),
        }
    }
}

/// A validated connection, ready to store.
struct Connection {
    plaintext: Zeroizing<Vec<u8>>,
    metadata: BTreeMap<String, String>,
    account_label: String,
    scopes: Vec<String>,
    expires_at: Option<Timestamp>,
    /// The grant's hard expiry to set (a reconnect without one keeps the grant's).
    valid_until: Option<Timestamp>,
}

impl Connection {
    /// What a finished connect flow stores: the secrets, scopes and expiry sealed; the
    /// connection parameters and the provider's metadata (its own win) in the clear.
    fn of(
        connected: &crate::plugin::types::Connected,
        connection_params: &[(String, String)],
    ) -> Result<Self, GrantError> {
        let mut metadata: BTreeMap<String, String> = connection_params.iter().cloned().collect();
        metadata.extend(connected.credential.metadata.iter().cloned());
        let payload = SealedCredential {
            secrets: connected.credential.secrets.clone(),
            scopes: connected.credential.scopes.clone(),
            expires_at: connected.credential.expires_at,
        };
        let plaintext = Zeroizing::new(
            serde_json::to_vec(&payload)
                .map_err(|_| GrantError::Invalid("the credential could not be encoded".into()))?,
        );
        Ok(Self {
            plaintext,
            metadata,
            account_label: connected.account_label.clone(),
            scopes: connected.credential.scopes.clone(),
            expires_at: connected
                .credential
                .expires_at
                .and_then(|s| i64::try_from(s.saturating_mul(1000)).ok())
                .map(Timestamp::from_unix_millis),
            valid_until: None,
        })
    }
}

/// A finished OAuth connect flow, for [`Grants::store_oauth_connection`].
#[derive(Debug)]
pub struct OAuthConnection<'a> {
    /// The provider id.
    pub provider: &'a str,
    /// Whose grant it becomes.
    pub principal: Principal,
    /// What the component's connect flow produced.
    pub connected: &'a crate::plugin::types::Connected,
    /// The connection parameters in force (kept as credential metadata).
    pub connection_params: &'a [(String, String)],
    /// The connect session, for the audit row.
    pub session_id: &'a str,
    /// The grant's TTL, if the session set one: it stops working after this long.
    pub ttl: Option<std::time::Duration>,
}

/// The outcome of storing a managed secret.
#[derive(Debug)]
pub struct Stored {
    /// The grant as now stored.
    pub grant: Grant,
    /// Whether an existing grant's secret was replaced.
    pub rotated: bool,
}

/// The outcome of a revocation.
#[derive(Debug)]
pub struct RevokeOutcome {
    /// The grant as now stored.
    pub grant: Grant,
    /// Whether this call revoked it (`false`: it already was).
    pub now: bool,
    /// The upstream revocation's result, when the provider has one: `Some(true)` if the
    /// provider confirmed it.
    pub upstream: Option<bool>,
}

/// A grant resolved for a call: the grant, its provider's component and the opened
/// credential. `Debug` never shows the credential.
pub struct Resolved {
    /// The grant.
    pub grant: GrantRecord,
    /// The provider's component.
    pub plugin: Arc<Plugin>,
    /// The opened credential (secrets in memory for the length of the call).
    pub credential: Credential,
    /// Values `{param}` host templates are filled from (credential metadata).
    pub params: Vec<(String, String)>,
    /// When the credential expires.
    pub expires_at: Option<Timestamp>,
    /// The credential's revision as read (refresh compares and swaps on it).
    pub revision: i64,
}

/// A grant checked for use, its credential still sealed ([`Grants::find_usable`]).
pub struct Found {
    /// The grant.
    pub grant: GrantRecord,
    /// The provider's component.
    pub plugin: Arc<Plugin>,
    /// The sealed credential.
    record: CredentialRecord,
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Found")
            .field("grant", &self.grant.id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("grant", &self.grant.id)
            .field("provider", &self.grant.provider)
            .finish_non_exhaustive()
    }
}

impl Drop for Resolved {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        for (_, v) in &mut self.credential.secrets {
            v.zeroize();
        }
    }
}

/// The grant service.
#[derive(Clone, Debug)]
pub struct Grants {
    store: Store,
    ring: LiveRing,
    registry: Arc<Registry>,
    egress: Egress,
    audit: AuditLog,
    last_used: LastUsed,
    reads: Arc<GrantReads>,
    /// SQLite only: the grants calls have read, kept while the grant epoch stays the same.
    kept: Option<Arc<GrantCache>>,
    configs: crate::oauth::config::ProviderConfigs,
}

/// The most grants one batched read asks for.
const MAX_READ_BATCH: usize = 128;

/// A grant and its sealed credential as a read found them, with the grant epoch of the
/// snapshot it was read in (SQLite, migration 0014; `0` on PostgreSQL, which keeps nothing).
#[derive(Clone, Debug)]
struct ReadGrant {
    grant: GrantRecord,
    record: Option<CredentialRecord>,
    epoch: i64,
}

/// Batched reads of a grant and its credential by (app, grant id): the one read every call
/// makes. Answers `None` for a grant that does not exist or belongs to another app.
type GrantReads = Batcher<(AppId, GrantId), Option<ReadGrant>>;

fn grant_reads(store: Store) -> GrantReads {
    if let Some(readers) = store.sqlite_readers() {
        let readers = std::sync::Arc::clone(readers);
        return Batcher::inline("grant read", move |asked: Vec<(AppId, GrantId)>| {
            let ids: Vec<GrantId> = asked.iter().map(|(_, id)| *id).collect();
            let (found, epoch) = readers
                .read(|conn| grant_repo::get_many_with_credential_on_sqlite(conn, &ids))
                .map_err(|e| e.to_string())?;
            Ok(answer_reads(&asked, &found, epoch.unwrap_or(0)))
        });
    }
    Batcher::new(
        "grant read",
        MAX_READ_BATCH,
        move |asked: Vec<(AppId, GrantId)>| {
            let store = store.clone();
            async move {
                let mut ids: Vec<GrantId> = asked.iter().map(|(_, id)| *id).collect();
                ids.sort_unstable();
                ids.dedup();
                let found = grant_repo::get_many_with_credential(&store, &ids)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(answer_reads(&asked, &found, 0))
            }
        },
    )
}

/// What each asker of a grant read gets: the grant with its id *and the asker's app*, so a
/// batch never answers one app with another's grant.
fn answer_reads(
    asked: &[(AppId, GrantId)],
    found: &[(GrantRecord, Option<CredentialRecord>)],
    epoch: i64,
) -> Vec<Option<ReadGrant>> {
    asked
        .iter()
        .map(|(app_id, id)| {
            found
                .iter()
                .find(|(g, _)| g.id == *id && g.app_id == *app_id)
                .map(|(grant, record)| ReadGrant {
                    grant: grant.clone(),
                    record: record.clone(),
                    epoch,
                })
        })
        .collect()
}

/// Grants that calls have read on SQLite, kept with the grant epoch they were read at.
///
/// Why: every commit of SQLite's request-path writer (each call's nonce and audit row)
/// resets the page cache of every other connection, so a grant read re-read its pages from
/// the file on every call. A kept grant is used only by a call whose own nonce transaction
/// saw the same epoch, and every change to a grant or its credential, by any connection or
/// process, increments the epoch in the change's transaction (triggers, migration 0014). So a
/// call that starts after a revoke committed has a newer epoch than anything kept from
/// before it, and reads again. What is kept is what the database holds: the credential
/// sealed, never opened.
#[derive(Debug, Default)]
struct GrantCache {
    kept: std::sync::Mutex<std::collections::HashMap<GrantId, ReadGrant>>,
}

/// At most this many grants are kept; past it the cache starts over.
const KEPT_GRANTS: usize = 10_000;

impl GrantCache {
    /// Grant `id` of `app_id`, if it was kept at `epoch` (`0`: unknown, never found).
    fn get(&self, app_id: AppId, id: GrantId, epoch: i64) -> Option<ReadGrant> {
        if epoch == 0 {
            return None;
        }
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.get(&id)
            .filter(|r| r.epoch == epoch && r.grant.app_id == app_id)
            .cloned()
    }

    /// Keeps `read` unless something read at a later epoch is kept already.
    fn keep(&self, read: &ReadGrant) {
        if read.epoch == 0 {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept
            .get(&read.grant.id)
            .is_some_and(|k| k.epoch >= read.epoch)
        {
            return;
        }
        if kept.len() >= KEPT_GRANTS {
            kept.clear();
        }
        kept.insert(read.grant.id, read.clone());
    }
}

impl Grants {
    /// A service over the store, key ring, providers, egress client and audit log.
    pub fn new(
        store: Store,
        ring: LiveRing,
        registry: Arc<Registry>,
        egress: Egress,
        audit: AuditLog,
    ) -> Self {
        let configs = crate::oauth::config::ProviderConfigs::new(
            store.clone(),
            ring.clone(),
            Arc::clone(&registry),
            audit.clone(),
        );
        Self {
            reads: Arc::new(grant_reads(store.clone())),
            kept: store
                .sqlite_readers()
                .map(|_| Arc::new(GrantCache::default())),
            configs,
            store,
            ring,
            registry,
            egress,
            last_used: LastUsed::default(),
            audit,
        }
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    async fn record(
        &self,
        change: &Change,
        app_id: AppId,
        action: Action,
        grant: &Grant,
        mut detail: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), GrantError> {
        detail.insert("via".into(), change.origin.via.as_str().into());
        detail.insert("kind".into(), grant.kind.as_str().into());
        detail.insert("account_label".into(), grant.account_label.clone().into());
        self.audit
            .record(AuditEntry {
                app_id: Some(app_id),
                key_id: change.key_id.clone(),
                caller: change.caller.clone(),
                provider: Some(grant.provider.clone()),
                grant_id: Some(grant.id.clone()),
                principal: Some(grant.principal.to_string()),
                reason: change.reason.clone(),
                request_id: change.request_id.clone(),
                detail: change.annotate(serde_json::Value::Object(detail)),
                ..AuditEntry::new(action, change.origin.actor.clone(), Outcome::Ok)
            })
            .await
            .map(|_| ())
            .map_err(GrantError::AuditUnavailable)
    }

    /// The provider registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The egress client.
    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The apps' OAuth client configurations.
    pub fn configs(&self) -> &crate::oauth::config::ProviderConfigs {
        &self.configs
    }

    /// The key ring credentials are sealed with.
    pub fn keys(&self) -> &LiveRing {
        &self.ring
    }

    fn plugin(&self, id: &str) -> Result<Arc<Plugin>, GrantError> {
        self.registry
            .get(id)
            .ok_or_else(|| GrantError::ProviderNotFound { id: id.to_owned() })
    }

    /// Stores (or rotates) a managed secret for `owner`'s app: checks the fields against the
    /// provider's declaration, runs the provider's validation, seals the credential and
    /// creates or updates the grant.
    pub async fn set_managed_secret(
        &self,
        owner: Owner,
        change: &Change,
        request: ManagedSecretRequest,
    ) -> Result<Stored, GrantError> {
        let plugin = self.plugin(&request.provider)?;
        let info = plugin.info().clone();
        if info.auth_kind != AuthKind::ManagedSecret {
            return Err(GrantError::Invalid(format!(
                "{} is connected through OAuth, not with a managed secret",
                info.id
            )));
        }
        let principal = request.principal.clone().unwrap_or(Principal::System);
        if let Some(agent) = owner.agent_id
            && principal != Principal::Agent(agent.to_string())
        {
            return Err(GrantError::Invalid(
                "an agent key may only store secrets for its own agent principal".into(),
            ));
        }
        check_fields(&info, &request)?;
        let connection_params: Vec<(String, String)> = request
            .connection_params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let connected = self
            .run_connect(&plugin, &info, &request, &connection_params)
            .await?;
        let connection = Connection::of(&connected, &connection_params)?;
        let (grant_id, rotated) = self
            .store_connected(
                owner,
                &info,
                request.grant_id.as_deref(),
                GrantKind::ManagedSecret,
                principal,
                connection,
            )
            .await?;
        let grant = self.get(owner, &grant_id.to_string()).await?;
        let action = if rotated {
            Action::GrantRotate
        } else {
            Action::GrantCreate
        };
        let fields: Vec<&String> = request.fields.keys().collect();
        let mut detail = serde_json::Map::new();
        detail.insert("fields".into(), serde_json::json!(fields));
        self.record(change, owner.app_id, action, &grant, detail)
            .await?;
        Ok(Stored { grant, rotated })
    }

    /// Stores the result of a finished OAuth connect flow as principal's grant: a new grant,
    /// or, when the principal already has a live grant for the same upstream account, that
    /// grant with the new tokens (a reconnect keeps the grant id and makes it active again).
    /// Audited as `grant.create` or `grant.rotate` with `via` and the connect session id.
    pub async fn store_oauth_connection(
        &self,
        app_id: AppId,
        change: &Change,
        c: OAuthConnection<'_>,
    ) -> Result<Stored, GrantError> {
        let OAuthConnection {
            provider,
            principal,
            connected,
            connection_params,
            session_id,
            ttl,
        } = c;
        let plugin = self.plugin(provider)?;
        let info = plugin.info().clone();
        let owner = Owner::app(app_id);
        let mut connection = Connection::of(connected, connection_params)?;
        connection.valid_until = ttl.map(|t| Timestamp::now().plus(t));
        let (grant_id, rotated) = self
            .store_connected(owner, &info, None, GrantKind::Oauth, principal, connection)
            .await?;
        let grant = self.get(owner, &grant_id.to_string()).await?;
        let action = if rotated {
            Action::GrantRotate
        } else {
            Action::GrantCreate
        };
        let mut detail = serde_json::Map::new();
        detail.insert("connect_session".into(), session_id.into());
        detail.insert("scopes".into(), serde_json::json!(grant.scopes));
        self.record(change, app_id, action, &grant, detail).await?;
        Ok(Stored { grant, rotated })
    }

    /// Stores a validated connection: rotates the matching live grant's credential, or
    /// creates a credential and a grant. One transaction.
    async fn store_connected(
        &self,
        owner: Owner,
        info: &ProviderInfo,
        grant_id: Option<&str>,
        kind: GrantKind,
        principal: Principal,
        c: Connection,
    ) -> Result<(GrantId, bool), GrantError> {
        let Connection {
            plaintext,
            metadata,
            account_label,
            scopes,
            expires_at,
            valid_until,
        } = c;
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        let existing = match grant_id {
            Some(id) => Some(rotatable(&mut tx, owner, info, kind, id).await?),
            None => {
                grant_repo::find_live(&mut tx, owner.app_id, &info.id, &principal, &account_label)
                    .await?
            }
        };
        let (grant_id, rotated) = if let Some(g) = existing {
            let current = credentials::get(&mut tx, owner.app_id, g.credential_id, true)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    table: "grants",
                    detail: format!("grant {} names a missing credential", g.id),
                })?;
            let sealed = self.seal(g.credential_id, owner.app_id, &plaintext)?;
            let record = CredentialRecord {
                sealed: sealed.to_bytes(),
                key_version: sealed.key_version(),
                metadata,
                expires_at,
                ..current.clone()
            };
            credentials::replace(&mut tx, &record, current.revision, now).await?;
            grant_repo::update_connected(&mut tx, owner.app_id, g.id, &account_label, &scopes, now)
                .await
                .map_err(conflict)?;
            if valid_until.is_some() {
                grant_repo::set_valid_until(&mut tx, owner.app_id, g.id, valid_until, now).await?;
            }
            (g.id, true)
        } else {
            let credential_id = CredentialId::new();
            let sealed = self.seal(credential_id, owner.app_id, &plaintext)?;
            credentials::insert(
                &mut tx,
                &CredentialRecord {
                    id: credential_id,
                    app_id: owner.app_id,
                    provider: info.id.clone(),
                    sealed: sealed.to_bytes(),
                    key_version: sealed.key_version(),
                    metadata,
                    expires_at,
                    revision: 1,
                    created_at: now,
                    updated_at: now,
                },
            )
            .await?;
            let grant = GrantRecord {
                id: GrantId::new(),
                app_id: owner.app_id,
                provider: info.id.clone(),
                principal,
                credential_id,
                kind,
                account_label,
                scopes,
                status: GrantStatus::Active,
                created_at: now,
                updated_at: now,
                last_used_at: None,
                revoked_at: None,
                valid_until,
            };
            grant_repo::insert(&mut tx, &grant)
                .await
                .map_err(conflict)?;
            (grant.id, false)
        };
        tx.commit().await?;
        Ok((grant_id, rotated))
    }

    async fn run_connect(
        &self,
        plugin: &Arc<Plugin>,
        info: &ProviderInfo,
        request: &ManagedSecretRequest,
        connection_params: &[(String, String)],
    ) -> Result<crate::plugin::types::Connected, GrantError> {
        let mut entropy = vec![0u8; 32];
        rand::rng().fill_bytes(&mut entropy);
        let ctx = Context {
            client_id: String::new(),
            client_secret: None,
            redirect_uri: String::new(),
            scopes: info.default_scopes.clone(),
            connection_params: connection_params.to_vec(),
            secret_fields: request
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            extra_params: Vec::new(),
            state: uuid::Uuid::new_v4().simple().to_string(),
            entropy,
            now: unix_seconds(),
        };
        let component = |source| GrantError::Component {
            provider: info.id.clone(),
            source,
        };
        let mut step = plugin
            .begin_connect_async(ctx.clone())
            .await
            .map_err(component)?;
        for _ in 0..MAX_STEPS {
            match step {
                Step::Done(connected) => return Ok(connected),
                Step::Fail(e) => {
                    return Err(GrantError::Rejected {
                        provider: info.id.clone(),
                        reason: provider_error_text(&e),
                    });
                }
                Step::Redirect(_) => {
                    return Err(GrantError::Invalid(format!(
                        "{} wants a browser redirect; managed secrets cannot do that",
                        info.id
                    )));
                }
                Step::Send(outgoing) => {
                    let response = self
                        .egress
                        .exchange(&outgoing.request, &info.allowed_hosts, connection_params)
                        .await?;
                    step = plugin
                        .resume_async(ctx.clone(), outgoing.state, Input::HttpResponse(response))
                        .await
                        .map_err(component)?;
                }
            }
        }
        Err(GrantError::Rejected {
            provider: info.id.clone(),
            reason: format!("the validation took more than {MAX_STEPS} steps"),
        })
    }

    fn seal(
        &self,
        id: CredentialId,
        app_id: AppId,
        plaintext: &[u8],
    ) -> Result<Sealed, GrantError> {
        let (id, app) = (id.to_string(), app_id.to_string());
        Ok(self.ring.seal(&credential_aad(&id, &app), plaintext)?)
    }

    /// Whether `owner` may use `grant` in a call or read it: any grant of its app for an app
    /// key; for an agent, its own grants and those delegated to it (live, unexpired).
    async fn may_reach(&self, owner: Owner, grant: &GrantRecord) -> Result<bool, GrantError> {
        if owner.may_use(grant) {
            return Ok(true);
        }
        let Some(agent) = owner.agent_id else {
            return Ok(false);
        };
        Ok(
            delegations::live_for(&self.store, owner.app_id, grant.id, agent, Timestamp::now())
                .await?
                .is_some(),
        )
    }

    /// Grant `id` of the owner's app, as the API shows it (for an agent: its own or one
    /// delegated to it).
    pub async fn get(&self, owner: Owner, id: &str) -> Result<Grant, GrantError> {
        let gid = parse_grant_id(id)?;
        let g = grant_repo::get(&self.store, owner.app_id, gid, false)
            .await?
            .ok_or_else(|| GrantError::NotFound { id: id.to_owned() })?;
        if !self.may_reach(owner, &g).await? {
            return Err(GrantError::NotFound { id: id.to_owned() });
        }
        self.view(g).await
    }

    async fn view(&self, g: GrantRecord) -> Result<Grant, GrantError> {
        let c = credentials::get(&self.store, g.app_id, g.credential_id, false).await?;
        let wanted = self.configured_scopes(&g).await?;
        let mut grant = to_wire(g, c.as_ref());
        grant.missing_scopes = missing_scopes(&grant, wanted.as_deref());
        Ok(grant)
    }

    /// The scopes the app's OAuth configuration asks of `g`'s provider now (its own list,
    /// else the provider's defaults); `None` for a managed secret or an unconfigured
    /// provider.
    async fn configured_scopes(&self, g: &GrantRecord) -> Result<Option<Vec<String>>, GrantError> {
        if g.kind != GrantKind::Oauth {
            return Ok(None);
        }
        let record =
            crate::store::provider_configs::get(&self.store, g.app_id, &g.provider, false).await?;
        Ok(record.map(|c| {
            if c.scopes.is_empty() {
                self.registry
                    .get(&g.provider)
                    .map(|p| p.info().default_scopes.clone())
                    .unwrap_or_default()
            } else {
                c.scopes
            }
        }))
    }

    /// A page of the owner's grants.
    pub async fn list(
        &self,
        owner: Owner,
        mut filter: Filter,
        limit: Option<u32>,
    ) -> Result<GrantPage, GrantError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        if let Some(agent) = owner.agent_id {
            filter.reachable_by = Some((agent, Timestamp::now()));
        }
        let mut rows = grant_repo::list(&self.store, owner.app_id, &filter, limit + 1).await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|g| g.id.to_string())
        } else {
            None
        };
        let mut items = Vec::with_capacity(rows.len());
        for g in rows {
            items.push(self.view(g).await?);
        }
        Ok(GrantPage { items, next_cursor })
    }

    /// Sets grant `id`'s hard expiry to `ttl` from now (`None`: no expiry), audited as
    /// `grant.ttl` by `change`. An expired grant can be extended again; a revoked one not.
    pub async fn set_ttl(
        &self,
        owner: Owner,
        change: &Change,
        id: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<Grant, GrantError> {
        if ttl.is_some_and(|t| t.is_zero() || t > MAX_GRANT_TTL) {
            return Err(GrantError::Invalid(format!(
                "a grant's TTL must be 1 second to {} days",
                MAX_GRANT_TTL.as_secs() / 86_400
            )));
        }
        let gid = parse_grant_id(id)?;
        let now = Timestamp::now();
        let g = grant_repo::get(&self.store, owner.app_id, gid, false)
            .await?
            .filter(|g| owner.may_use(g))
            .ok_or_else(|| GrantError::NotFound { id: id.to_owned() })?;
        let valid_until = ttl.map(|t| now.plus(t));
        if !grant_repo::set_valid_until(&self.store, owner.app_id, g.id, valid_until, now).await? {
            return Err(GrantError::Revoked { id: id.to_owned() });
        }
        let grant = self.get(owner, id).await?;
        let mut detail = serde_json::Map::new();
        detail.insert(
            "valid_until".into(),
            serde_json::json!(valid_until.map(Timestamp::to_rfc3339)),
        );
        self.record(change, owner.app_id, Action::GrantTtl, &grant, detail)
            .await?;
        Ok(grant)
    }

    /// Revokes grant `id`: marks it revoked, deletes its secret material (unless another
    /// live grant shares the credential), then asks the provider to revoke upstream where it
    /// supports that.
    pub async fn revoke(
        &self,
        owner: Owner,
        change: &Change,
        id: &str,
    ) -> Result<RevokeOutcome, GrantError> {
        let gid = parse_grant_id(id)?;
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        let g = grant_repo::get(&mut tx, owner.app_id, gid, true)
            .await?
            .filter(|g| owner.may_use(g))
            .ok_or_else(|| GrantError::NotFound { id: id.to_owned() })?;
        if g.revoked_at.is_some() {
            drop(tx);
            let grant = self.view(g).await?;
            return Ok(RevokeOutcome {
                grant,
                now: false,
                upstream: None,
            });
        }
        // Open the credential before its material is deleted, for the upstream revocation.
        let plugin = self.registry.get(&g.provider);
        let upstream_material = match &plugin {
            Some(p) if p.info().supports_revoke => {
                match credentials::get(&mut tx, owner.app_id, g.credential_id, true).await? {
                    Some(c) if !c.is_wiped() => Some(self.open(&c).await?),
                    _ => None,
                }
            }
            _ => None,
        };
        grant_repo::revoke(&mut tx, owner.app_id, gid, now).await?;
        let delegations_ended =
            delegations::revoke_for_grant(&mut tx, owner.app_id, gid, now).await?;
        credentials::wipe_if_unused(&mut tx, owner.app_id, g.credential_id, now).await?;
        tx.commit().await?;
        let upstream = match (plugin, upstream_material) {
            (Some(p), Some(credential)) => {
                Some(self.revoke_upstream(owner.app_id, &p, credential).await)
            }
            _ => None,
        };
        let grant = self.get(owner, id).await?;
        let mut detail = serde_json::Map::new();
        detail.insert("upstream_revoked".into(), serde_json::json!(upstream));
        detail.insert(
            "delegations_revoked".into(),
            serde_json::json!(delegations_ended),
        );
        self.record(change, owner.app_id, Action::GrantRevoke, &grant, detail)
            .await?;
        Ok(RevokeOutcome {
            grant,
            now: true,
            upstream,
        })
    }

    async fn revoke_upstream(
        &self,
        app_id: AppId,
        plugin: &Arc<Plugin>,
        credential: Credential,
    ) -> bool {
        let info = plugin.info();
        let params = credential.metadata.clone();
        // RFC 7009 §2.1: a confidential client authenticates at the revocation endpoint, so
        // the component gets the app's OAuth client (if it has one) as for a refresh.
        let client = match self.configs.client(app_id, &info.id).await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(provider = %info.id, error = %e, "cannot read the OAuth client for an upstream revocation");
                None
            }
        };
        let ctx = Context {
            client_id: client
                .as_ref()
                .map(|c| c.client_id.clone())
                .unwrap_or_default(),
            client_secret: client
                .as_ref()
                .and_then(|c| c.client_secret.as_ref().map(|s| s.as_str().to_owned())),
            redirect_uri: String::new(),
            scopes: Vec::new(),
            connection_params: params.clone(),
            secret_fields: Vec::new(),
            extra_params: Vec::new(),
            state: String::new(),
            entropy: vec![0; 32],
            now: unix_seconds(),
        };
        match plugin.revoke_async(ctx, credential).await {
            Ok(Some(request)) => match self
                .egress
                .exchange(&request, &info.allowed_hosts, &params)
                .await
            {
                Ok(r) => (200..300).contains(&r.status),
                Err(e) => {
                    tracing::warn!(provider = %info.id, error = %e, "upstream revocation failed");
                    false
                }
            },
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(provider = %info.id, error = %e, "upstream revocation failed");
                false
            }
        }
    }

    async fn open(&self, c: &CredentialRecord) -> Result<Credential, GrantError> {
        let (id, app) = (c.id.to_string(), c.app_id.to_string());
        let sealed = Sealed::from_bytes(&c.sealed)?;
        let plain = self.ring.open(&credential_aad(&id, &app), &sealed).await?;
        let payload: SealedCredential =
            serde_json::from_slice(plain.expose()).map_err(|_| StoreError::Corrupt {
                table: "credentials",
                detail: format!("credential {id} does not decode"),
            })?;
        Ok(Credential {
            secrets: payload.secrets.clone(),
            metadata: c
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            scopes: payload.scopes.clone(),
            expires_at: payload.expires_at,
        })
    }

    /// Resolves grant `id` for a call by `owner`: it must exist in the owner's app, be
    /// usable by the owner, and be active; its credential is opened.
    pub async fn resolve(&self, owner: Owner, id: &str) -> Result<Resolved, GrantError> {
        let found = self.find_usable(owner, id).await?;
        self.open_found(found).await
    }

    /// The first half of [`Grants::resolve`]: grant `id` and its sealed credential, checked
    /// (visible to `owner`, live, its provider loaded) but not opened, so that policy can
    /// decide before any secret is decrypted.
    pub async fn find_usable(&self, owner: Owner, id: &str) -> Result<Found, GrantError> {
        self.find_usable_at(owner, id, 0).await
    }

    /// The latest grant epoch a nonce transaction of this host saw (SQLite; `0` on
    /// PostgreSQL, or before the first). Read after a request's nonce was committed, it is
    /// at least what that transaction saw: [`Grants::find_usable_at`] may trust what was
    /// kept at it.
    pub fn epoch_seen(&self) -> i64 {
        self.store.sqlite_writer().map_or(0, |w| w.grant_epoch())
    }

    /// [`Grants::find_usable`] for a call whose nonce transaction saw grant epoch `epoch`
    /// (see [`Grants::epoch_seen`]; `0`: none): a grant kept from a read at that same epoch
    /// is used without reading it again (SQLite).
    pub async fn find_usable_at(
        &self,
        owner: Owner,
        id: &str,
        epoch: i64,
    ) -> Result<Found, GrantError> {
        let gid = parse_grant_id(id)?;
        let kept = self
            .kept
            .as_ref()
            .and_then(|k| k.get(owner.app_id, gid, epoch));
        let read = if let Some(read) = kept {
            read
        } else {
            let read = self
                .reads
                .run((owner.app_id, gid))
                .await
                .map_err(StoreError::Batch)?
                .ok_or_else(|| GrantError::NotFound { id: id.to_owned() })?;
            if let Some(k) = &self.kept {
                k.keep(&read);
            }
            read
        };
        let ReadGrant { grant, record, .. } = read;
        if !self.may_reach(owner, &grant).await? {
            return Err(GrantError::NotFound { id: id.to_owned() });
        }
        match grant.status {
            GrantStatus::Revoked => return Err(GrantError::Revoked { id: id.to_owned() }),
            GrantStatus::ReauthRequired => {
                return Err(GrantError::ReauthRequired { id: id.to_owned() });
            }
            GrantStatus::Active => {}
        }
        if grant.valid_until.is_some_and(|t| t <= Timestamp::now()) {
            return Err(GrantError::Expired { id: id.to_owned() });
        }
        let plugin = self.plugin(&grant.provider)?;
        let record = record
            .filter(|c| !c.is_wiped())
            .ok_or_else(|| GrantError::Revoked { id: id.to_owned() })?;
        Ok(Found {
            grant,
            plugin,
            record,
        })
    }

    /// The second half of [`Grants::resolve`]: opens the credential of a found grant.
    pub async fn open_found(&self, found: Found) -> Result<Resolved, GrantError> {
        let Found {
            grant,
            plugin,
            record,
        } = found;
        let credential = self.open(&record).await?;
        let params = credential.metadata.clone();
        Ok(Resolved {
            grant,
            plugin,
            credential,
            params,
            expires_at: record.expires_at,
            revision: record.revision,
        })
    }

    /// `resolved` again with its credential read afresh from the database (after another
    /// caller or host instance may have refreshed it). The grant row is not re-read.
    pub async fn reload(&self, resolved: &Resolved) -> Result<Resolved, GrantError> {
        let id = resolved.grant.id.to_string();
        let record = credentials::get(
            &self.store,
            resolved.grant.app_id,
            resolved.grant.credential_id,
            false,
        )
        .await?
        .filter(|c| !c.is_wiped())
        .ok_or(GrantError::Revoked { id })?;
        let credential = self.open(&record).await?;
        let params = credential.metadata.clone();
        Ok(Resolved {
            grant: resolved.grant.clone(),
            plugin: Arc::clone(&resolved.plugin),
            credential,
            params,
            expires_at: record.expires_at,
            revision: record.revision,
        })
    }

    /// The credential record a refresh of `resolved` stores: the new secrets, scopes and
    /// expiry sealed for the same credential id; the old metadata with the provider's new
    /// metadata on top.
    pub fn refreshed_record(
        &self,
        resolved: &Resolved,
        connected: &crate::plugin::types::Connected,
    ) -> Result<CredentialRecord, GrantError> {
        let connection = Connection::of(connected, &resolved.params)?;
        let sealed = self.seal(
            resolved.grant.credential_id,
            resolved.grant.app_id,
            &connection.plaintext,
        )?;
        let now = Timestamp::now();
        Ok(CredentialRecord {
            id: resolved.grant.credential_id,
            app_id: resolved.grant.app_id,
            provider: resolved.grant.provider.clone(),
            sealed: sealed.to_bytes(),
            key_version: sealed.key_version(),
            metadata: connection.metadata,
            expires_at: connection.expires_at,
            revision: resolved.revision,
            created_at: now,
            updated_at: now,
        })
    }

    /// Marks `resolved`'s grant as needing the user to connect again and audits it
    /// (`grant.reauth_required`, by the host).
    pub async fn mark_reauth_required(
        &self,
        resolved: &Resolved,
        why: &str,
    ) -> Result<(), GrantError> {
        let g = &resolved.grant;
        grant_repo::set_status(
            &self.store,
            g.app_id,
            g.id,
            GrantStatus::ReauthRequired,
            Timestamp::now(),
        )
        .await?;
        let grant = self.view(g.clone()).await?;
        let mut detail = serde_json::Map::new();
        detail.insert("why".into(), why.into());
        let change = Change::refresh();
        self.record(
            &change,
            g.app_id,
            Action::GrantReauthRequired,
            &grant,
            detail,
        )
        .await
    }

    /// Audits a refresh of `resolved`'s credential (`grant.rotate`, `via: refresh`).
    pub async fn record_refresh(&self, resolved: &Resolved) -> Result<(), GrantError> {
        let g = &resolved.grant;
        let grant = self.view(g.clone()).await?;
        let mut detail = serde_json::Map::new();
        detail.insert("refresh".into(), true.into());
        let change = Change::refresh();
        self.record(&change, g.app_id, Action::GrantRotate, &grant, detail)
            .await
    }

    /// Records that grant `id` was used (informational, to within
    /// [`crate::store::last_used::RESOLUTION`]; failures are logged only).
    pub async fn touch(&self, id: GrantId) {
        if !self.last_used.due(&id.to_string()) {
            return;
        }
        if let Err(e) = grant_repo::touch_last_used(&self.store, id, Timestamp::now()).await {
            tracing::warn!(grant = %id, error = %e, "cannot record grant use");
        }
    }
}

/// The associated data a credential is sealed with.
pub fn credential_aad<'a>(id: &'a str, app: &'a str) -> Aad<'a> {
    Aad {
        record_id: id,
        app_id: app,
        kind: SEALED_KIND,
    }
}

fn conflict(e: StoreError) -> GrantError {
    match e {
        StoreError::Conflict { what } => GrantError::Conflict(format!("{what} already exists")),
        e => e.into(),
    }
}

fn parse_grant_id(id: &str) -> Result<GrantId, GrantError> {
    id.parse()
        .map_err(|_| GrantError::NotFound { id: id.to_owned() })
}

/// Checks the request's fields and parameters against the provider's declaration.
fn check_fields(info: &ProviderInfo, request: &ManagedSecretRequest) -> Result<(), GrantError> {
    let check = |what: &str,
                 declared: &[crate::plugin::types::Field],
                 given: &BTreeMap<String, String>|
     -> Result<(), GrantError> {
        let names = || {
            declared
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for name in given.keys() {
            if !declared.iter().any(|f| &f.name == name) {
                return Err(GrantError::Invalid(format!(
                    "{} declares no {what} {name:?}; it takes: {}",
                    info.id,
                    if declared.is_empty() {
                        "none".to_owned()
                    } else {
                        names()
                    }
                )));
            }
        }
        for f in declared.iter().filter(|f| !f.optional) {
            if given.get(&f.name).is_none_or(|v| v.trim().is_empty()) {
                return Err(GrantError::Invalid(format!(
                    "{} needs the {what} {:?} ({})",
                    info.id, f.name, f.label
                )));
            }
        }
        Ok(())
    };
    check("secret field", &info.secret_fields, &request.fields)?;
    check(
        "connection parameter",
        &info.connection_params,
        &request.connection_params,
    )
}

fn to_wire(g: GrantRecord, c: Option<&CredentialRecord>) -> Grant {
    Grant {
        id: g.id.to_string(),
        provider: g.provider,
        kind: g.kind,
        principal: g.principal,
        account_label: g.account_label,
        scopes: g.scopes,
        missing_scopes: Vec::new(),
        status: g.status,
        metadata: c.map(|c| c.metadata.clone()).unwrap_or_default(),
        expires_at: c.and_then(|c| c.expires_at).map(Timestamp::to_rfc3339),
        created_at: g.created_at.to_rfc3339(),
        updated_at: g.updated_at.to_rfc3339(),
        last_used_at: g.last_used_at.map(Timestamp::to_rfc3339),
        revoked_at: g.revoked_at.map(Timestamp::to_rfc3339),
        valid_until: g.valid_until.map(Timestamp::to_rfc3339),
    }
}

/// Of `wanted`, the scopes `grant` does not hold: a scope mismatch after the operator
/// added scopes. Nothing for a revoked grant, or one whose provider did not say what it
/// granted.
fn missing_scopes(grant: &Grant, wanted: Option<&[String]>) -> Vec<String> {
    match wanted {
        Some(wanted) if grant.status != GrantStatus::Revoked && !grant.scopes.is_empty() => wanted
            .iter()
            .filter(|s| !grant.scopes.contains(s))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// A provider error as text for people: its kind and message (components are told never to
/// put secret values there).
pub fn provider_error_text(e: &ProviderError) -> String {
    match e {
        ProviderError::ReauthorizeRequired(m) => format!("reauthorization required: {m}"),
        ProviderError::AccessDenied(m) => format!("access denied: {m}"),
        ProviderError::InvalidInput(m) => format!("invalid input: {m}"),
        ProviderError::HostNotAllowed(m) => format!("host not allowed: {m}"),
        ProviderError::Upstream(u) => format!(
            "the provider answered {} ({}): {}",
            u.status, u.code, u.description
        ),
        ProviderError::MalformedResponse(m) => format!("malformed provider response: {m}"),
        ProviderError::Unsupported(m) => format!("unsupported: {m}"),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds() -> u64 {
    u64::try_from(Timestamp::now().unix_millis() / 1000).unwrap_or(0)
}

#[cfg(test)]
mod cache_tests {
    use tessera_proto::grants::{GrantKind, GrantStatus, Principal};

    use super::*;

    fn read(app_id: AppId, id: GrantId, epoch: i64) -> ReadGrant {
        let now = Timestamp::now();
        ReadGrant {
            grant: GrantRecord {
                id,
                app_id,
                provider: "stripe".into(),
                principal: Principal::System,
                credential_id: CredentialId::new(),
                kind: GrantKind::ManagedSecret,
                account_label: format!("read at {epoch}"),
                scopes: Vec::new(),
                status: GrantStatus::Active,
                created_at: now,
                updated_at: now,
                last_used_at: None,
                revoked_at: None,
                valid_until: None,
            },
            record: None,
            epoch,
        }
    }

    /// A kept grant answers only a call that saw the epoch it was read at, only for its own
    /// app; a read from an older snapshot never replaces a newer one; epoch 0 keeps nothing.
    #[test]
    fn a_kept_grant_serves_only_its_epoch_and_its_app() {
        let cache = GrantCache::default();
        let (app, other, id) = (AppId::new(), AppId::new(), GrantId::new());
        cache.keep(&read(app, id, 7));
        let hit = cache.get(app, id, 7).expect("kept at 7");
        assert_eq!(hit.grant.account_label, "read at 7");
        assert!(cache.get(app, id, 8).is_none(), "a newer epoch reads again");
        assert!(cache.get(app, id, 6).is_none());
        assert!(cache.get(other, id, 7).is_none(), "another app's call");
        assert!(cache.get(app, id, 0).is_none(), "no epoch seen");
        cache.keep(&read(app, id, 5));
        assert!(
            cache.get(app, id, 7).is_some(),
            "an older read does not replace it"
        );
        cache.keep(&read(app, id, 9));
        assert!(cache.get(app, id, 9).is_some() && cache.get(app, id, 7).is_none());
        let fresh = GrantId::new();
        cache.keep(&read(app, fresh, 0));
        assert!(cache.get(app, fresh, 0).is_none());
    }
}
