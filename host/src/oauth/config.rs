//! Provider configuration: an app's OAuth client for each OAuth provider (client id, client
//! secret, default scopes, redirect URI, extra authorization parameters and app-wide
//! connection parameters), as a service the API (`/v1/providers/{id}/config`), the CLI
//! (`tessera provider configure|config|unconfigure`) and the connect flow ([`ProviderConfigs::client`])
//! call.
//!
//! Owns: checking a configuration against the provider's manifest (an OAuth provider, its
//! declared connection parameters, no parameter the connect flow sets itself); sealing the
//! client secret (associated data = config id, app, `oauth-client-secret`) and opening it for
//! the connect flow only; keeping the stored secret when a change does not name one; auditing
//! every change (`provider.configure`, `provider.unconfigure`).
//!
//! Must never: return, log or audit a client secret (views say only whether one is set), put
//! it into an error message, or look a configuration up without the caller's app id (another
//! app's configuration is "not found").

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tessera_proto::calls::codes;
use tessera_proto::providers::{ProviderConfigRequest, ProviderConfigView};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::audit::{Action, AuditEntry, AuditError, AuditLog, Outcome};
use crate::grants::Change;
use crate::keys::LiveRing;
use crate::plugin::Registry;
use crate::plugin::types::{AuthKind, ProviderInfo};
use crate::store::provider_configs::{
    self as repo, ProviderConfigRecord, SEALED_KIND, SealedSecret,
};
use crate::store::{AppId, Store, StoreError, Timestamp};
use crate::vault::{Aad, VaultError};

/// Authorization-request (and token-request) parameters the connect flow sets itself, which
/// an operator's `extra_params` may therefore not name.
pub const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "code",
    "grant_type",
    "client_secret",
];

/// How many times [`ProviderConfigs::configure`] retries when a concurrent first
/// configuration of the same provider won the insert.
const MAX_ATTEMPTS: usize = 3;

/// Why a provider configuration operation failed. Messages name fields and providers, never
/// the client secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The app has no configuration for this provider.
    #[error("this app has no OAuth client configured for {provider:?}")]
    NotFound {
        /// The provider id asked for.
        provider: String,
    },
    /// The provider is not loaded.
    #[error("no provider {id:?} is loaded on this host")]
    ProviderNotFound {
        /// The provider id.
        id: String,
    },
    /// The configuration is not valid for this provider; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// Sealing or opening the client secret failed.
    #[error("the client secret could not be sealed or opened")]
    Vault(#[from] VaultError),
    /// The database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
    /// The change was applied but its audit row could not be written.
    #[error("the change was applied but could not be recorded in the audit log")]
    AuditUnavailable(#[source] AuditError),
}

impl ConfigError {
    /// The stable machine code of the API problem.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::NotFound { .. } => codes::PROVIDER_CONFIG_NOT_FOUND,
            ConfigError::ProviderNotFound { .. } => codes::PROVIDER_NOT_FOUND,
            ConfigError::Invalid(_) => codes::INVALID_REQUEST,
            ConfigError::AuditUnavailable(_) => codes::AUDIT_UNAVAILABLE,
            ConfigError::Vault(_) | ConfigError::Store(_) => "internal_error",
        }
    }

    /// The HTTP status of the API problem.
    pub fn status(&self) -> u16 {
        match self {
            ConfigError::NotFound { .. } | ConfigError::ProviderNotFound { .. } => 404,
            ConfigError::Invalid(_) => 400,
            ConfigError::AuditUnavailable(_) => 503,
            ConfigError::Vault(_) | ConfigError::Store(_) => 500,
        }
    }
}

/// One app's OAuth client for one provider, with the client secret opened. `Debug` shows
/// the secret as `[redacted]`.
pub struct ClientConfig {
    /// The configuration's id.
    pub id: String,
    /// The app it belongs to.
    pub app_id: AppId,
    /// The provider id.
    pub provider: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The client secret, for a confidential client.
    pub client_secret: Option<Zeroizing<String>>,
    /// Provider scopes to request; empty means the provider's default scopes.
    pub scopes: Vec<String>,
    /// The registered redirect URI; `None` means the host's own callback.
    pub redirect_uri: Option<String>,
    /// Extra authorization-request parameters.
    pub extra_params: Vec<(String, String)>,
    /// App-wide connection parameter values.
    pub connection_params: Vec<(String, String)>,
    /// When it was first configured.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("scopes", &self.scopes)
            .field("redirect_uri", &self.redirect_uri)
            .field("extra_params", &self.extra_params)
            .field("connection_params", &self.connection_params)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// The provider configuration service.
#[derive(Clone, Debug)]
pub struct ProviderConfigs {
    store: Store,
    ring: LiveRing,
    registry: Arc<Registry>,
    audit: AuditLog,
}

impl ProviderConfigs {
    /// A service over the store, key ring, providers and audit log.
    pub fn new(store: Store, keys: LiveRing, registry: Arc<Registry>, audit: AuditLog) -> Self {
        Self {
            store,
            ring: keys,
            registry,
            audit,
        }
    }

    /// Stores app `app_id`'s OAuth client for `request.provider`, replacing any previous
    /// configuration whole — except the client secret, which an absent `client_secret`
    /// keeps unless `clear_client_secret` is set. Audited as `provider.configure`.
    pub async fn configure(
        &self,
        app_id: AppId,
        change: &Change,
        mut request: ProviderConfigRequest,
    ) -> Result<ProviderConfigView, ConfigError> {
        // Out of the request at once, so it is wiped whatever happens next.
        let secret = request.client_secret.take().map(Zeroizing::new);
        let info = self.oauth_provider(&request.provider)?;
        let checked = check(&info, &request, secret.as_deref().map(String::as_str))?;
        let mut stored = None;
        for _ in 0..MAX_ATTEMPTS {
            if let Some(record) = self
                .store_config(app_id, &request, &checked, secret.as_ref())
                .await?
            {
                stored = Some(record);
                break;
            }
        }
        let record = stored.ok_or_else(|| {
            ConfigError::Invalid(format!(
                "the configuration of {} kept changing while it was being stored; try again",
                request.provider
            ))
        })?;
        let view = to_view(&record);
        let mut detail = serde_json::Map::new();
        detail.insert("client_id".into(), view.client_id.clone().into());
        detail.insert("scopes".into(), serde_json::json!(view.scopes));
        detail.insert("confidential".into(), view.client_secret_set.into());
        detail.insert(
            "redirect_uri".into(),
            serde_json::json!(view.redirect_uri.as_deref()),
        );
        detail.insert(
            "connection_params".into(),
            serde_json::json!(view.connection_params.keys().collect::<Vec<_>>()),
        );
        detail.insert(
            "extra_params".into(),
            serde_json::json!(view.extra_params.keys().collect::<Vec<_>>()),
        );
        self.record(
            change,
            app_id,
            Action::ProviderConfigure,
            &record.provider,
            detail,
        )
        .await?;
        Ok(view)
    }

    /// One transaction: read the current row (locked), seal the new secret for its id (or a
    /// fresh one), upsert. `None` when a concurrent first configuration won the insert.
    async fn store_config(
        &self,
        app_id: AppId,
        request: &ProviderConfigRequest,
        checked: &Checked,
        secret: Option<&Zeroizing<String>>,
    ) -> Result<Option<ProviderConfigRecord>, ConfigError> {
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        let existing = repo::get(&mut tx, app_id, &request.provider, true).await?;
        let id = existing.as_ref().map_or_else(Uuid::now_v7, |c| c.id);
        let client_secret = match secret {
            Some(plaintext) => {
                let (id, app) = (id.to_string(), app_id.to_string());
                let sealed = self
                    .ring
                    .seal(&secret_aad(&id, &app), plaintext.as_bytes())?;
                Some(SealedSecret {
                    bytes: sealed.to_bytes(),
                    key_version: sealed.key_version(),
                })
            }
            None if request.clear_client_secret => None,
            None => existing.as_ref().and_then(|c| c.client_secret.clone()),
        };
        let record = ProviderConfigRecord {
            id,
            app_id,
            provider: request.provider.clone(),
            client_id: request.client_id.clone(),
            client_secret,
            scopes: request.scopes.clone(),
            redirect_uri: checked.redirect_uri.clone(),
            extra_params: pairs(&request.extra_params),
            connection_params: pairs(&request.connection_params),
            created_at: existing.as_ref().map_or(now, |c| c.created_at),
            updated_at: now,
        };
        let Some(stored) = repo::upsert(&mut tx, &record).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(stored))
    }

    /// App `app_id`'s configuration for `provider`, without the secret.
    pub async fn get(
        &self,
        app_id: AppId,
        provider: &str,
    ) -> Result<ProviderConfigView, ConfigError> {
        repo::get(&self.store, app_id, provider, false)
            .await?
            .map(|c| to_view(&c))
            .ok_or_else(|| not_found(provider))
    }

    /// Every configuration of app `app_id`, ordered by provider id, without the secrets.
    pub async fn list(&self, app_id: AppId) -> Result<Vec<ProviderConfigView>, ConfigError> {
        Ok(repo::list(&self.store, app_id)
            .await?
            .iter()
            .map(to_view)
            .collect())
    }

    /// Deletes app `app_id`'s configuration for `provider` (its sealed secret with it).
    /// Audited as `provider.unconfigure`. A provider that is no longer loaded can still be
    /// unconfigured.
    pub async fn remove(
        &self,
        app_id: AppId,
        change: &Change,
        provider: &str,
    ) -> Result<(), ConfigError> {
        if !repo::delete(&self.store, app_id, provider).await? {
            return Err(not_found(provider));
        }
        self.record(
            change,
            app_id,
            Action::ProviderUnconfigure,
            provider,
            serde_json::Map::new(),
        )
        .await
    }

    /// App `app_id`'s OAuth client for `provider` with the client secret opened, for the
    /// connect flow; `None` when the app has not configured the provider.
    pub async fn client(
        &self,
        app_id: AppId,
        provider: &str,
    ) -> Result<Option<ClientConfig>, ConfigError> {
        let Some(c) = repo::get(&self.store, app_id, provider, false).await? else {
            return Ok(None);
        };
        let client_secret = match &c.client_secret {
            Some(sealed) => {
                let (id, app) = (c.id.to_string(), c.app_id.to_string());
                let plain = self
                    .ring
                    .open_bytes(&secret_aad(&id, &app), &sealed.bytes)
                    .await?;
                let text = String::from_utf8(plain.expose().to_vec()).map_err(|e| {
                    // Wipe the bytes the failed conversion hands back.
                    drop(Zeroizing::new(e.into_bytes()));
                    StoreError::Corrupt {
                        table: "provider_configs",
                        detail: format!("the client secret of config {id} is not UTF-8"),
                    }
                })?;
                Some(Zeroizing::new(text))
            }
            None => None,
        };
        Ok(Some(ClientConfig {
            id: c.id.to_string(),
            app_id: c.app_id,
            provider: c.provider,
            client_id: c.client_id,
            client_secret,
            scopes: c.scopes,
            redirect_uri: c.redirect_uri,
            extra_params: c.extra_params,
            connection_params: c.connection_params,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }))
    }

    /// The manifest of provider `id`, which must be loaded and use OAuth.
    fn oauth_provider(&self, id: &str) -> Result<ProviderInfo, ConfigError> {
        if id.is_empty() {
            return Err(ConfigError::Invalid("provider is required".into()));
        }
        let plugin = self
            .registry
            .get(id)
            .ok_or_else(|| ConfigError::ProviderNotFound { id: id.to_owned() })?;
        let info = plugin.info().clone();
        match info.auth_kind {
            AuthKind::Oauth2 | AuthKind::Oauth1 => Ok(info),
            AuthKind::ManagedSecret => Err(ConfigError::Invalid(format!(
                "{id} is configured with `tessera secret set`, not an OAuth client"
            ))),
        }
    }

    async fn record(
        &self,
        change: &Change,
        app_id: AppId,
        action: Action,
        provider: &str,
        mut detail: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ConfigError> {
        detail.insert("via".into(), change.origin.via.as_str().into());
        self.audit
            .record(AuditEntry {
                app_id: Some(app_id),
                key_id: change.key_id.clone(),
                caller: change.caller.clone(),
                provider: Some(provider.to_owned()),
                reason: change.reason.clone(),
                request_id: change.request_id.clone(),
                detail: change.annotate(serde_json::Value::Object(detail)),
                ..AuditEntry::new(action, change.origin.actor.clone(), Outcome::Ok)
            })
            .await
            .map(|_| ())
            .map_err(ConfigError::AuditUnavailable)
    }
}

/// The associated data a client secret is sealed with.
pub fn secret_aad<'a>(config_id: &'a str, app_id: &'a str) -> Aad<'a> {
    Aad {
        record_id: config_id,
        app_id,
        kind: SEALED_KIND,
    }
}

fn not_found(provider: &str) -> ConfigError {
    ConfigError::NotFound {
        provider: provider.to_owned(),
    }
}

fn pairs(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn to_view(c: &ProviderConfigRecord) -> ProviderConfigView {
    ProviderConfigView {
        provider: c.provider.clone(),
        client_id: c.client_id.clone(),
        client_secret_set: c.client_secret.is_some(),
        scopes: c.scopes.clone(),
        redirect_uri: c.redirect_uri.clone(),
        extra_params: c.extra_params.iter().cloned().collect(),
        connection_params: c.connection_params.iter().cloned().collect(),
        created_at: c.created_at.to_rfc3339(),
        updated_at: c.updated_at.to_rfc3339(),
    }
}

/// What [`check`] normalised.
struct Checked {
    redirect_uri: Option<String>,
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Checks a configuration against the provider's manifest. `secret` is only ever checked
/// for shape; no message quotes it.
fn check(
    info: &ProviderInfo,
    request: &ProviderConfigRequest,
    secret: Option<&str>,
) -> Result<Checked, ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    if request.client_id.trim().is_empty() {
        return invalid("client_id is required".into());
    }
    if has_control(&request.client_id) {
        return invalid("client_id contains a control character".into());
    }
    match secret {
        Some(_) if request.clear_client_secret => {
            return invalid("give either client_secret or clear_client_secret, not both".into());
        }
        Some("") => {
            return invalid(
                "client_secret is empty: leave it out to keep the stored secret, or set \
                 clear_client_secret to remove it"
                    .into(),
            );
        }
        Some(s) if has_control(s) => {
            return invalid("client_secret contains a control character".into());
        }
        _ => {}
    }
    for scope in &request.scopes {
        if scope.is_empty() {
            return invalid("scopes contains an empty scope".into());
        }
        if scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid(format!(
                "scope {scope:?} contains whitespace: give each scope as its own item"
            ));
        }
    }
    let redirect_uri = match &request.redirect_uri {
        None => None,
        Some(uri) => Some(check_redirect_uri(uri)?),
    };
    let declared = || {
        info.connection_params
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, value) in &request.connection_params {
        if !info.connection_params.iter().any(|f| &f.name == name) {
            return invalid(if info.connection_params.is_empty() {
                format!(
                    "connection_params: {} takes no connection parameters (got {name:?})",
                    info.id
                )
            } else {
                format!(
                    "connection_params: {} declares no connection parameter {name:?}; it takes: {}",
                    info.id,
                    declared()
                )
            });
        }
        if value.trim().is_empty() || has_control(value) {
            return invalid(format!(
                "connection_params: {name:?} must be a non-empty value without control characters"
            ));
        }
    }
    for (name, value) in &request.extra_params {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid(format!(
                "extra_params: parameter name {name:?} must be non-empty, without whitespace"
            ));
        }
        if RESERVED_PARAMS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return invalid(format!(
                "extra_params: {name:?} is set by the connect flow itself and cannot be \
                 configured (reserved: {})",
                RESERVED_PARAMS.join(", ")
            ));
        }
        if has_control(value) {
            return invalid(format!(
                "extra_params: the value of {name:?} contains a control character"
            ));
        }
    }
    Ok(Checked { redirect_uri })
}

fn check_redirect_uri(uri: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| {
        ConfigError::Invalid(format!(
            "redirect_uri {uri:?} {why}: it must be an absolute https or http URL without a \
             fragment"
        ))
    };
    let parsed = url::Url::parse(uri).map_err(|_| bad("is not a URL"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(bad("has another scheme"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if parsed.fragment().is_some() {
        return Err(bad("has a fragment"));
    }
    // Kept exactly as given: the provider compares it byte for byte with the registered one.
    Ok(uri.to_owned())
}

#[cfg(test)]
mod tests;
