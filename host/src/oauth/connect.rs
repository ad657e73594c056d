//! Connect sessions: an app asks for one (`POST /v1/connect/sessions`), sends its end user to
//! the link, the user agrees on the host's consent page and is sent to the provider, the
//! provider sends them back to `/connect/callback`, and the host finishes the component's
//! connect state machine and stores the grant.
//!
//! Owns: minting the link token and the OAuth `state` (random, stored only as SHA-256
//! hashes); sealing the flow between steps (component state, PKCE entropy, redirect URI and
//! parameters; associated data = session id, app, `connect-session`); single use of each
//! `state` (a compare-and-swap moves the session out of `authorizing` before the code is
//! exchanged, so a replayed or raced callback finds nothing); every `send` step through
//! [`Egress`] with the provider's allow-list; ending the session with a typed result.
//!
//! Must never: log or return a token, code, client secret, `state` or link token; exchange a
//! code twice; accept a callback for an expired session.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tessera_proto::connect::{ConnectError, ConnectSession, ConnectSessionRequest, ConnectStatus};
use tessera_proto::grants::Principal;
use zeroize::Zeroizing;

use super::config::{ConfigError, ProviderConfigs};
use crate::audit::{Actor, ActorKind, Origin, Via};
use crate::delegations::DelegationError;
use crate::egress::{Egress, EgressError};
use crate::grants::{
    Change, GrantError, Grants, OAuthConnection, Owner, provider_error_text, unix_seconds,
};
use crate::keys::LiveRing;
use crate::plugin::types::{
    AuthKind, Connected, Context, Input, ProviderError, ProviderInfo, Step,
};
use crate::plugin::{Plugin, PluginError, Registry};
use crate::store::connect_sessions::{self as repo, Ending, SEALED_KIND, SessionRecord};
use crate::store::delegations::DelegationOrigin;
use crate::store::{AgentId, SessionId, Store, StoreError, Timestamp, apps};
use crate::vault::{Aad, Sealed, VaultError};

/// How long a connect link stays usable, and the whole flow may take.
pub const SESSION_TTL: Duration = Duration::from_mins(30);

/// The most `send` steps one connect may take (discovery, token, user info, …).
const MAX_STEPS: usize = 8;

/// The path of the host's OAuth callback (the default redirect URI).
pub const CALLBACK_PATH: &str = "/connect/callback";

/// Why a connect operation failed. Messages never hold a secret, code or state.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// No such session in the caller's app.
    #[error("no connect session {id} in this app")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The link or `state` is unknown, already used, or expired.
    #[error("{0}")]
    Gone(String),
    /// The provider is not loaded.
    #[error("no provider {id:?} is loaded on this host")]
    ProviderNotFound {
        /// The provider id.
        id: String,
    },
    /// The app has no OAuth client for the provider.
    #[error(
        "{provider} has no OAuth client configured for this app: run `tessera provider configure {provider} --app APP --client-id ...`"
    )]
    NotConfigured {
        /// The provider id.
        provider: String,
    },
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The component failed.
    #[error("the {provider} component failed: {source}")]
    Component {
        /// The provider id.
        provider: String,
        /// What failed.
        source: PluginError,
    },
    /// The provider's configuration could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Sealing or opening failed.
    #[error("the connect state could not be sealed or opened")]
    Vault(#[from] VaultError),
    /// The database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
}

impl FlowError {
    /// The stable machine code of the API's problem document.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "connect_session_not_found",
            Self::Gone(_) => "connect_session_gone",
            Self::ProviderNotFound { .. } => "provider_not_found",
            Self::NotConfigured { .. } => "provider_not_configured",
            Self::Invalid(_) => "invalid_request",
            Self::Component { .. } => "component_failed",
            Self::Config(_) | Self::Vault(_) | Self::Store(_) => "internal_error",
        }
    }

    /// The HTTP status that goes with [`Self::code`].
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound { .. } | Self::ProviderNotFound { .. } => 404,
            Self::Gone(_) => 410,
            Self::NotConfigured { .. } => 409,
            Self::Invalid(_) => 400,
            Self::Component { .. } => 502,
            Self::Config(_) | Self::Vault(_) | Self::Store(_) => 500,
        }
    }
}

/// How a flow the end user went through ended, for the page they see next.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The session.
    pub session_id: String,
    /// `completed` or `failed`.
    pub status: ConnectStatus,
    /// Why it failed.
    pub error: Option<ConnectError>,
    /// Where the app wants the browser to go.
    pub return_url: Option<String>,
    /// Whether the flow runs in a popup (the result is posted to its opener).
    pub popup: bool,
    /// The provider's name for people.
    pub provider_name: String,
}

/// What the consent page shows.
#[derive(Debug, Clone)]
pub struct Consent {
    /// The app's name.
    pub app_name: String,
    /// The provider's name for people.
    pub provider_name: String,
    /// The provider's logo, if it has one.
    pub logo_url: Option<String>,
    /// The scopes asked for, each in words where the provider has them (and the raw name).
    pub scopes: Vec<(String, String)>,
    /// Whose account it becomes: the principal's text form.
    pub principal: String,
    /// The agent that will be able to use the grant (its name), if the session names one.
    pub agent_name: Option<String>,
    /// For how long, in seconds (`None`: until revoked).
    pub delegation_ttl_secs: Option<u64>,
    /// Where it is (an ended or expired session shows that instead of the form).
    pub status: ConnectStatus,
    /// When the link stops working.
    pub expires_at: Timestamp,
}

/// The flow between the consent page and the callback, sealed in the session row.
#[derive(Serialize, Deserialize)]
struct Flow {
    /// The OAuth `state` value (the row keeps only its hash).
    state: String,
    /// The component's opaque state.
    #[serde(with = "b64")]
    component: Vec<u8>,
    /// The entropy the flow started with (PKCE verifiers derive from it).
    #[serde(with = "b64")]
    entropy: Vec<u8>,
    /// The redirect URI sent in the authorization request.
    redirect_uri: String,
    /// The connection parameters in force (configured, then the app's).
    params: Vec<(String, String)>,
    /// Whether the flow runs in a popup.
    popup: bool,
}

impl Drop for Flow {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.state.zeroize();
        self.component.zeroize();
        self.entropy.zeroize();
    }
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// The connect service. Cheap to clone.
#[derive(Clone)]
pub struct Connect {
    store: Store,
    ring: LiveRing,
    registry: Arc<Registry>,
    egress: Egress,
    grants: Grants,
    configs: ProviderConfigs,
    public_origin: Arc<str>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("public_origin", &self.public_origin)
            .finish_non_exhaustive()
    }
}

fn hash(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

fn random_token() -> String {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(bytes.as_mut());
    URL_SAFE_NO_PAD.encode(bytes.as_ref())
}

fn parse_session_id(id: &str) -> Result<SessionId, FlowError> {
    id.parse()
        .map_err(|_| FlowError::NotFound { id: id.to_owned() })
}

/// Checks a URL the app gave as `return_url`: absolute `http(s)`, no fragment, no user info.
fn check_return_url(url: &str) -> Result<(), FlowError> {
    let bad = |why: &str| FlowError::Invalid(format!("return_url {why}"));
    let parsed = url::Url::parse(url).map_err(|_| bad("is not an absolute URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("must be http or https"));
    }
    if parsed.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("must not carry user info"));
    }
    Ok(())
}

impl Connect {
    /// The service over the shared parts; `public_origin` makes the links and the default
    /// redirect URI.
    pub fn new(
        grants: Grants,
        configs: ProviderConfigs,
        ring: LiveRing,
        public_origin: &str,
    ) -> Self {
        Self {
            store: grants.store().clone(),
            registry: grants.registry().clone(),
            egress: grants.egress().clone(),
            ring,
            grants,
            configs,
            public_origin: Arc::from(public_origin.trim_end_matches('/')),
        }
    }

    /// The redirect URI a provider is sent when the operator configured none.
    pub fn default_redirect_uri(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.public_origin)
    }

    fn plugin(&self, id: &str) -> Result<Arc<Plugin>, FlowError> {
        self.registry
            .get(id)
            .ok_or_else(|| FlowError::ProviderNotFound { id: id.to_owned() })
    }

    /// Starts a session for `request` and returns it with its link.
    pub async fn create(
        &self,
        owner: Owner,
        request: ConnectSessionRequest,
    ) -> Result<ConnectSession, FlowError> {
        if owner.agent_id.is_some() {
            return Err(FlowError::Invalid(
                "agent keys cannot start connect sessions yet; use an app key".into(),
            ));
        }
        let plugin = self.plugin(&request.provider)?;
        let info = plugin.info();
        if info.auth_kind == AuthKind::ManagedSecret {
            return Err(FlowError::Invalid(format!(
                "{} takes a managed secret (POST /v1/managed-secrets), not a connect flow",
                info.id
            )));
        }
        let config = self
            .configs
            .client(owner.app_id, &info.id)
            .await?
            .ok_or_else(|| FlowError::NotConfigured {
                provider: info.id.clone(),
            })?;
        let configured = if config.scopes.is_empty() {
            info.default_scopes.clone()
        } else {
            config.scopes.clone()
        };
        let scopes = match &request.allowed_scopes {
            None => configured,
            Some(asked) => {
                let extra: Vec<&String> =
                    asked.iter().filter(|s| !configured.contains(s)).collect();
                if !extra.is_empty() {
                    return Err(FlowError::Invalid(format!(
                        "allowed_scopes may only narrow the configured scopes ({}); not configured: {}",
                        configured.join(" "),
                        extra
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    )));
                }
                configured
                    .into_iter()
                    .filter(|s| asked.contains(s))
                    .collect()
            }
        };
        let agent_id = self.check_request(owner, info, &request).await?;
        if request
            .grant_ttl_secs
            .is_some_and(|t| t == 0 || t > crate::grants::MAX_GRANT_TTL.as_secs())
        {
            return Err(FlowError::Invalid(format!(
                "grant_ttl_secs must be 1 to {} (two years)",
                crate::grants::MAX_GRANT_TTL.as_secs()
            )));
        }
        let now = Timestamp::now();
        let expires_at = Timestamp::from_unix_millis(
            now.unix_millis() + i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX),
        );
        let record = SessionRecord {
            id: SessionId::new(),
            app_id: owner.app_id,
            provider: info.id.clone(),
            principal: request.principal,
            scopes,
            connection_params: request.connection_params.into_iter().collect(),
            return_url: request.return_url,
            status: ConnectStatus::Pending,
            grant_id: None,
            error_code: None,
            error_message: None,
            sealed: None,
            key_version: None,
            created_at: now,
            expires_at,
            agent_id,
            delegation_ttl_secs: request.delegation_ttl_secs,
            grant_ttl_secs: request.grant_ttl_secs,
        };
        let link = Zeroizing::new(random_token());
        repo::insert(&self.store, &record, &hash(&link)).await?;
        let mut view = to_wire(&record, now);
        view.connect_url = Some(format!("{}/connect/{}", self.public_origin, link.as_str()));
        Ok(view)
    }

    /// The checks of a session request that do not depend on the configuration: declared
    /// connection parameters, a usable `return_url`, an agent principal of this app, and
    /// the agent to delegate to (returned: it must be an agent of this app, for a user's
    /// grant, with a TTL of at most a year).
    async fn check_request(
        &self,
        owner: Owner,
        info: &ProviderInfo,
        request: &ConnectSessionRequest,
    ) -> Result<Option<AgentId>, FlowError> {
        for name in request.connection_params.keys() {
            if !info.connection_params.iter().any(|f| &f.name == name) {
                let known: Vec<&str> = info
                    .connection_params
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect();
                return Err(FlowError::Invalid(format!(
                    "{} has no connection parameter {name:?} (it declares: {})",
                    info.id,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        if let Some(url) = &request.return_url {
            check_return_url(url)?;
        }
        if let Principal::Agent(agent) = &request.principal {
            let unknown = || FlowError::Invalid(format!("this app has no agent {agent}"));
            let id = agent.parse().map_err(|_| unknown())?;
            if crate::store::agents::get(&self.store, owner.app_id, id)
                .await?
                .is_none()
            {
                return Err(unknown());
            }
        }
        let Some(agent) = &request.agent else {
            if request.delegation_ttl_secs.is_some() {
                return Err(FlowError::Invalid(
                    "delegation_ttl_secs needs an agent to delegate to".into(),
                ));
            }
            return Ok(None);
        };
        if !matches!(request.principal, Principal::User { .. }) {
            return Err(FlowError::Invalid(
                "a connect session delegates to an agent only a user's grant (a user: principal)"
                    .into(),
            ));
        }
        crate::delegations::check_ttl(request.delegation_ttl_secs)
            .map_err(|e| FlowError::Invalid(e.to_string()))?;
        let found = match agent.parse::<AgentId>() {
            Ok(id) => crate::store::agents::get(&self.store, owner.app_id, id).await?,
            Err(_) => crate::store::agents::get_by_name(&self.store, owner.app_id, agent).await?,
        };
        match found {
            Some(a) if a.disabled_at.is_none() => Ok(Some(a.id)),
            Some(_) => Err(FlowError::Invalid(format!("agent {agent} is disabled"))),
            None => Err(FlowError::Invalid(format!("this app has no agent {agent}"))),
        }
    }

    /// Session `id` of the owner's app.
    pub async fn get(&self, owner: Owner, id: &str) -> Result<ConnectSession, FlowError> {
        let sid = parse_session_id(id)?;
        let record = repo::get(&self.store, owner.app_id, sid)
            .await?
            .ok_or_else(|| FlowError::NotFound { id: id.to_owned() })?;
        Ok(to_wire(&record, Timestamp::now()))
    }

    async fn by_link(&self, link: &str) -> Result<SessionRecord, FlowError> {
        repo::by_link(&self.store, &hash(link))
            .await?
            .ok_or_else(|| FlowError::Gone("this connect link is not valid".into()))
    }

    /// What the consent page behind `link` shows.
    pub async fn consent(&self, link: &str) -> Result<Consent, FlowError> {
        let s = self.by_link(link).await?;
        let plugin = self.plugin(&s.provider)?;
        let info = plugin.info();
        let app_name = apps::get(&self.store, s.app_id)
            .await?
            .map(|a| a.name)
            .unwrap_or_default();
        let scopes = s
            .scopes
            .iter()
            .map(|name| {
                let label = info
                    .scopes
                    .iter()
                    .find(|d| &d.name == name)
                    .map_or_else(|| name.clone(), |d| d.label.clone());
                (label, name.clone())
            })
            .collect();
        let agent_name = match s.agent_id {
            Some(id) => Some(
                crate::store::agents::get(&self.store, s.app_id, id)
                    .await?
                    .map_or_else(|| id.to_string(), |a| a.name),
            ),
            None => None,
        };
        Ok(Consent {
            agent_name,
            delegation_ttl_secs: s.delegation_ttl_secs,
            app_name,
            provider_name: info.display_name.clone(),
            logo_url: info.logo_url.clone(),
            scopes,
            principal: s.principal.to_string(),
            status: s.status_at(Timestamp::now()),
            expires_at: s.expires_at,
        })
    }

    /// The end user agreed on the consent page: runs the flow up to the provider's
    /// authorization page and returns the URL to send the browser to. A flow that finishes
    /// without a browser step (or fails) returns how it ended instead.
    pub async fn approve(&self, link: &str, popup: bool) -> Result<Approved, FlowError> {
        let s = self.by_link(link).await?;
        let now = Timestamp::now();
        if s.status_at(now) != ConnectStatus::Pending
            && s.status_at(now) != ConnectStatus::Authorizing
        {
            return Err(FlowError::Gone(match s.status_at(now) {
                ConnectStatus::Expired => {
                    "this connect link has expired; ask the app for a new one".into()
                }
                _ => "this connect link has already been used".into(),
            }));
        }
        let plugin = self.plugin(&s.provider)?;
        let info = plugin.info().clone();
        let config = self
            .configs
            .client(s.app_id, &s.provider)
            .await?
            .ok_or_else(|| FlowError::NotConfigured {
                provider: s.provider.clone(),
            })?;
        let mut params = config.connection_params.clone();
        for (k, v) in &s.connection_params {
            params.retain(|(n, _)| n != k);
            params.push((k.clone(), v.clone()));
        }
        let mut entropy = vec![0u8; 32];
        rand::rng().fill_bytes(&mut entropy);
        let mut flow = Flow {
            state: random_token(),
            component: Vec::new(),
            entropy,
            redirect_uri: config
                .redirect_uri
                .clone()
                .unwrap_or_else(|| self.default_redirect_uri()),
            params,
            popup,
        };
        let ctx = Self::context(&config, &s, &flow);
        let first = plugin
            .begin_connect_async(ctx.clone())
            .await
            .map_err(|source| FlowError::Component {
                provider: info.id.clone(),
                source,
            });
        let outcome = match first {
            Ok(step) => self.drive(&plugin, &info, &ctx, &flow.params, step).await,
            Err(e) => Err(Self::failure_of_flow_error(&e)),
        };
        match outcome {
            Ok(Driven::Redirect(url, state)) => {
                flow.component = state;
                let plaintext = Zeroizing::new(
                    serde_json::to_vec(&flow)
                        .map_err(|_| FlowError::Invalid("the flow could not be encoded".into()))?,
                );
                let (id, app) = (s.id.to_string(), s.app_id.to_string());
                let sealed = self.ring.seal(&session_aad(&id, &app), &plaintext)?;
                let started = repo::start_authorizing(
                    &self.store,
                    s.id,
                    &hash(&flow.state),
                    &sealed.to_bytes(),
                    sealed.key_version(),
                    Timestamp::now(),
                )
                .await?;
                if !started {
                    return Err(FlowError::Gone(
                        "this connect link has expired or was already used".into(),
                    ));
                }
                Ok(Approved::Redirect(url))
            }
            Ok(Driven::Done(connected)) => Ok(Approved::Finished(
                self.complete(&s, &info, &connected, &flow.params, popup)
                    .await?,
            )),
            Err(error) => Ok(Approved::Finished(
                self.fail(&s, &info, error, popup).await?,
            )),
        }
    }

    /// The end user declined on the consent page.
    pub async fn decline(&self, link: &str, popup: bool) -> Result<Finished, FlowError> {
        let s = self.by_link(link).await?;
        let info = self.plugin(&s.provider)?.info().clone();
        let error = ConnectError {
            code: "access_denied".into(),
            message: "you declined to connect".into(),
        };
        self.fail(&s, &info, error, popup).await
    }

    /// The provider sent the browser back with `query` (`code`, `state`, `iss`, or
    /// `error`). Finishes the flow once: a second callback with the same `state` is refused.
    pub async fn callback(&self, query: Vec<(String, String)>) -> Result<Finished, FlowError> {
        let state = query
            .iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                FlowError::Gone("the provider's answer has no state parameter".into())
            })?;
        let s = repo::by_state(&self.store, &hash(&state))
            .await?
            .ok_or_else(|| {
                FlowError::Gone(
                    "this authorization answer is not for an open connect flow (already used, expired or unknown)".into(),
                )
            })?;
        let now = Timestamp::now();
        if !repo::claim_callback(&self.store, s.id, now).await? {
            return Err(FlowError::Gone(
                "this connect flow has expired or its answer was already used".into(),
            ));
        }
        let result = self.finish_claimed(&s, &state, query).await;
        if let Err(e) = &result {
            // The state is spent; never leave the session `exchanging` for ever.
            let ending = Ending::Failed(
                e.code().into(),
                "the connection could not be finished because of a problem on the host".into(),
            );
            if let Err(store) = repo::finish(&self.store, s.id, &ending, Timestamp::now()).await {
                tracing::error!(session = %s.id, error = %store, "cannot end a failed connect session");
            }
        }
        result
    }

    /// The callback of session `s`, whose `state` this caller claimed.
    async fn finish_claimed(
        &self,
        s: &SessionRecord,
        state: &str,
        query: Vec<(String, String)>,
    ) -> Result<Finished, FlowError> {
        let plugin = self.plugin(&s.provider)?;
        let info = plugin.info().clone();
        let (Some(sealed), Some(_)) = (&s.sealed, s.key_version) else {
            return Err(FlowError::Store(StoreError::Corrupt {
                table: "connect_sessions",
                detail: format!("session {} is authorizing without a flow", s.id),
            }));
        };
        let (id, app) = (s.id.to_string(), s.app_id.to_string());
        let plain = self
            .ring
            .open(&session_aad(&id, &app), &Sealed::from_bytes(sealed)?)
            .await?;
        let flow: Flow = serde_json::from_slice(plain.expose()).map_err(|_| {
            FlowError::Store(StoreError::Corrupt {
                table: "connect_sessions",
                detail: format!("session {} has a flow that does not decode", s.id),
            })
        })?;
        if flow.state != state {
            // The hash matched; a mismatch means the row was tampered with.
            return Err(FlowError::Gone("the state does not match this flow".into()));
        }
        let Some(config) = self.configs.client(s.app_id, &s.provider).await? else {
            let error = ConnectError {
                code: "not_configured".into(),
                message: format!("{} is no longer configured for this app", info.display_name),
            };
            return self.fail(s, &info, error, flow.popup).await;
        };
        let ctx = Self::context(&config, s, &flow);
        let step = plugin
            .resume_async(ctx.clone(), flow.component.clone(), Input::Callback(query))
            .await
            .map_err(|source| FlowError::Component {
                provider: info.id.clone(),
                source,
            });
        let outcome = match step {
            Ok(step) => self.drive(&plugin, &info, &ctx, &flow.params, step).await,
            Err(e) => Err(Self::failure_of_flow_error(&e)),
        };
        match outcome {
            Ok(Driven::Done(connected)) => {
                self.complete(s, &info, &connected, &flow.params, flow.popup)
                    .await
            }
            Ok(Driven::Redirect(..)) => {
                let error = ConnectError {
                    code: "component_failed".into(),
                    message: format!(
                        "the {} component asked for a second browser redirect",
                        info.id
                    ),
                };
                self.fail(s, &info, error, flow.popup).await
            }
            Err(error) => self.fail(s, &info, error, flow.popup).await,
        }
    }

    fn context(config: &super::config::ClientConfig, s: &SessionRecord, flow: &Flow) -> Context {
        Context {
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.as_ref().map(|c| c.as_str().to_owned()),
            redirect_uri: flow.redirect_uri.clone(),
            scopes: s.scopes.clone(),
            connection_params: flow.params.clone(),
            secret_fields: Vec::new(),
            extra_params: config.extra_params.clone(),
            state: flow.state.clone(),
            entropy: flow.entropy.clone(),
            now: unix_seconds(),
        }
    }

    /// Runs `step` and the `send` steps after it until the flow needs the browser, is done,
    /// or fails.
    async fn drive(
        &self,
        plugin: &Arc<Plugin>,
        info: &ProviderInfo,
        ctx: &Context,
        params: &[(String, String)],
        mut step: Step,
    ) -> Result<Driven, ConnectError> {
        for _ in 0..MAX_STEPS {
            match step {
                Step::Done(connected) => return Ok(Driven::Done(connected)),
                Step::Redirect(r) => return Ok(Driven::Redirect(r.url, r.state)),
                Step::Fail(e) => return Err(failure_of_provider_error(info, &e)),
                Step::Send(outgoing) => {
                    let response = self
                        .egress
                        .exchange(&outgoing.request, &info.allowed_hosts, params)
                        .await
                        .map_err(|e| failure_of_egress(info, &e))?;
                    step = plugin
                        .resume_async(ctx.clone(), outgoing.state, Input::HttpResponse(response))
                        .await
                        .map_err(|source| {
                            Self::failure_of_flow_error(&FlowError::Component {
                                provider: info.id.clone(),
                                source,
                            })
                        })?;
                }
            }
        }
        Err(ConnectError {
            code: "component_failed".into(),
            message: format!(
                "the {} connect flow took more than {MAX_STEPS} steps",
                info.id
            ),
        })
    }

    fn failure_of_flow_error(e: &FlowError) -> ConnectError {
        tracing::warn!(error = %e, "connect flow failed");
        ConnectError {
            code: "component_failed".into(),
            message: e.to_string(),
        }
    }

    async fn complete(
        &self,
        s: &SessionRecord,
        info: &ProviderInfo,
        connected: &Connected,
        params: &[(String, String)],
        popup: bool,
    ) -> Result<Finished, FlowError> {
        let change = change_for(s);
        let session_id = s.id.to_string();
        let stored = self
            .grants
            .store_oauth_connection(
                s.app_id,
                &change,
                OAuthConnection {
                    provider: &info.id,
                    principal: s.principal.clone(),
                    connected,
                    connection_params: params,
                    session_id: &session_id,
                    ttl: s.grant_ttl_secs.map(std::time::Duration::from_secs),
                },
            )
            .await;
        if let (Ok(grant), Some(agent)) = (&stored, s.agent_id)
            && let Err(e) = self.delegate(s, &change, grant, agent).await
        {
            tracing::error!(error = %e, "connect: grant stored but its delegation was not");
            let error = ConnectError {
                code: "delegation_not_stored".into(),
                message: format!(
                    "the account was connected (the grant exists) but its delegation to the \
                     agent was not stored: {e}"
                ),
            };
            return self.fail(s, info, error, popup).await;
        }
        match stored {
            Ok(stored) => {
                repo::finish(
                    &self.store,
                    s.id,
                    &Ending::Completed(stored.grant.id.clone()),
                    Timestamp::now(),
                )
                .await?;
                Ok(Finished {
                    session_id: s.id.to_string(),
                    status: ConnectStatus::Completed,
                    error: None,
                    return_url: s.return_url.clone(),
                    popup,
                    provider_name: info.display_name.clone(),
                })
            }
            Err(GrantError::AuditUnavailable(e)) => {
                // The grant exists; only its audit row is missing. The session ends with a
                // code that says exactly that.
                tracing::error!(error = %e, "connect: grant stored but not audited");
                let error = ConnectError {
                    code: "audit_unavailable".into(),
                    message: "the account was connected (the grant exists) but the change could not be recorded in the audit log".into(),
                };
                self.fail(s, info, error, popup).await
            }
            Err(e) => {
                let error = ConnectError {
                    code: "grant_not_stored".into(),
                    message: e.to_string(),
                };
                self.fail(s, info, error, popup).await
            }
        }
    }

    /// The user consented to a session that named an agent: delegates the stored grant to it
    /// (a live delegation from an earlier consent is kept as it is).
    async fn delegate(
        &self,
        s: &SessionRecord,
        change: &Change,
        stored: &crate::grants::Stored,
        agent: AgentId,
    ) -> Result<(), GrantError> {
        let grant_id = stored
            .grant
            .id
            .parse()
            .map_err(|_| GrantError::Invalid("the stored grant has no valid id".into()))?;
        let ttl = s.delegation_ttl_secs.map(std::time::Duration::from_secs);
        let mut tx = self.store.begin().await?;
        match crate::delegations::create_in(
            &mut tx,
            s.app_id,
            grant_id,
            agent,
            DelegationOrigin::Consent,
            ttl,
            change,
        )
        .await
        {
            Ok(_) => {
                tx.commit().await?;
                Ok(())
            }
            Err(DelegationError::Duplicate { .. }) => Ok(()),
            Err(DelegationError::AuditUnavailable(e)) => Err(GrantError::AuditUnavailable(e)),
            Err(DelegationError::Store(e)) => Err(GrantError::Store(e)),
            Err(e) => Err(GrantError::Invalid(format!(
                "the delegation was not stored: {e}"
            ))),
        }
    }

    async fn fail(
        &self,
        s: &SessionRecord,
        info: &ProviderInfo,
        error: ConnectError,
        popup: bool,
    ) -> Result<Finished, FlowError> {
        let ended = repo::finish(
            &self.store,
            s.id,
            &Ending::Failed(error.code.clone(), error.message.clone()),
            Timestamp::now(),
        )
        .await?;
        if !ended {
            return Err(FlowError::Gone(
                "this connect flow had already ended".into(),
            ));
        }
        Ok(Finished {
            session_id: s.id.to_string(),
            status: ConnectStatus::Failed,
            error: Some(error),
            return_url: s.return_url.clone(),
            popup,
            provider_name: info.display_name.clone(),
        })
    }
}

/// What the consent page's "continue" leads to.
#[derive(Debug)]
pub enum Approved {
    /// Send the browser here (the provider's authorization page).
    Redirect(String),
    /// The flow already ended.
    Finished(Finished),
}

enum Driven {
    Redirect(String, Vec<u8>),
    Done(Connected),
}

fn session_aad<'a>(id: &'a str, app: &'a str) -> Aad<'a> {
    Aad {
        record_id: id,
        app_id: app,
        kind: SEALED_KIND,
    }
}

/// The audit origin of a finished connect: the end user when the grant is theirs, else the
/// host acting on the app's connect link.
fn change_for(s: &SessionRecord) -> Change {
    let actor = match &s.principal {
        Principal::User { issuer, subject } => {
            Actor::new(ActorKind::User, format!("{issuer}:{subject}"))
        }
        _ => Actor::new(ActorKind::Host, "connect"),
    };
    Change {
        origin: Origin {
            actor,
            via: Via::Connect,
        },
        key_id: None,
        caller: None,
        request_id: None,
        reason: None,
        impersonated_by: None,
    }
}

fn failure_of_provider_error(info: &ProviderInfo, e: &ProviderError) -> ConnectError {
    let code = match e {
        ProviderError::AccessDenied(_) => "access_denied",
        ProviderError::InvalidInput(_) => "invalid_callback",
        ProviderError::HostNotAllowed(_) => "host_not_allowed",
        ProviderError::Unsupported(_) => "unsupported",
        ProviderError::ReauthorizeRequired(_)
        | ProviderError::Upstream(_)
        | ProviderError::MalformedResponse(_) => "provider_error",
    };
    ConnectError {
        code: code.into(),
        message: format!("{}: {}", info.display_name, provider_error_text(e)),
    }
}

fn failure_of_egress(info: &ProviderInfo, e: &EgressError) -> ConnectError {
    let code = match e {
        EgressError::HostNotAllowed { .. } => "host_not_allowed",
        EgressError::Unreachable { .. } | EgressError::TooLarge { .. } => "provider_unreachable",
        EgressError::InvalidRequest(_) => "provider_error",
    };
    ConnectError {
        code: code.into(),
        message: format!("{}: {e}", info.display_name),
    }
}

fn to_wire(s: &SessionRecord, now: Timestamp) -> ConnectSession {
    let status = s.status_at(now);
    let error = match (&s.error_code, &s.error_message) {
        (Some(code), message) => Some(ConnectError {
            code: code.clone(),
            message: message.clone().unwrap_or_default(),
        }),
        _ if status == ConnectStatus::Expired => Some(ConnectError {
            code: "expired".into(),
            message: "the end user did not finish connecting in time".into(),
        }),
        _ => None,
    };
    ConnectSession {
        id: s.id.to_string(),
        provider: s.provider.clone(),
        principal: s.principal.clone(),
        scopes: s.scopes.clone(),
        status,
        connect_url: None,
        grant_id: s.grant_id.clone(),
        agent_id: s.agent_id.map(|a| a.to_string()),
        error,
        created_at: s.created_at.to_rfc3339(),
        expires_at: s.expires_at.to_rfc3339(),
    }
}
