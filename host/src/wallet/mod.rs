//! The wallet's server side: end users sign in with the operator's identity provider
//! (OpenID Connect, authorization code with PKCE) and see and take back what is theirs.
//!
//! Sign-in ([`Wallet::begin_login`], [`Wallet::finish_login`]): a random `state`, PKCE
//! verifier and `nonce`; the login row is keyed by the SHA-256 of the state and holds the
//! verifier sealed; the callback claims it once, checks `iss` (RFC 9207) when sent,
//! exchanges the code through `egress`, and verifies the ID token (signature by `kid`,
//! issuer, audience = the wallet's client id, expiry, `nonce`). A session is a random cookie
//! value whose SHA-256 keys its row; the CSRF token is an HMAC of the cookie value, so it
//! needs no storage and cannot be computed without the (HttpOnly) cookie.
//!
//! What a signed-in user may touch: grants whose principal is `user:ISSUER:SUB` with the
//! wallet's issuer, in any app; the delegations of those grants; their activity in the
//! audit log; the approvals of calls made with them. Everything else is *not found*.
//! Changes go through the same services as the API and CLI, audited with the user as actor
//! and `via: wallet`.
//!
//! Must never: accept a `state` twice, trust an ID token it did not verify, store a cookie
//! value or state in plaintext, or show a user anything whose principal is not them.

pub mod assets;
pub mod routes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use tessera_proto::approvals::{Approval, ApprovalPage, ApprovalStatus, DecideRequest};
use tessera_proto::audit::AuditPage;
use tessera_proto::connect::ConnectSessionRequest;
use tessera_proto::delegations::Delegation;
use tessera_proto::grants::GrantKind;
use tessera_proto::grants::{Grant, GrantStatus, Principal};
use tessera_proto::wallet::{WalletDelegation, WalletGrant, WalletGrantPage, WalletReconnect};

use crate::audit::{Actor, ActorKind, AuditError, Origin, Via};
use crate::calls::{ApprovalFilter, CallError, Calls};
use crate::delegations::{DelegationError, Delegations};
use crate::egress::Egress;
use crate::grants::{Change, GrantError, Grants, Owner};
use crate::identity::{IdpConfig, Verifier};
use crate::keys::LiveRing;
use crate::plugin::types::HttpRequest;
use crate::store::wallet::{self as repo, LoginRow, SEALED_KIND, SessionRow};
use crate::store::{AgentId, AppId, Store, StoreError, Timestamp};
use crate::vault::{Aad, VaultError};

/// How long a sign-in may take, from the redirect to the callback.
const LOGIN_TTL: Duration = Duration::from_mins(10);
/// The most grants one listing returns.
const MAX_GRANTS: usize = 1000;

/// The operator's wallet settings (config `[wallet]`).
#[derive(Clone)]
pub struct WalletSettings {
    /// The identity provider's issuer (its discovery document is at
    /// `{issuer}/.well-known/openid-configuration`). Users are `user:ISSUER:SUB`.
    pub issuer: String,
    /// The wallet's client id at it.
    pub client_id: String,
    /// Its client secret, for a confidential client (`client_secret_basic`); `None`: a
    /// public client (PKCE alone).
    pub client_secret: Option<SecretString>,
    /// The scopes asked for.
    pub scopes: String,
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// The longest TTL a user may give a grant.
    pub max_ttl: Duration,
}

impl std::fmt::Debug for WalletSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why a wallet request failed. Messages hold ids, never a token or cookie.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The operator has not configured the wallet's identity provider.
    #[error("the wallet is not configured on this host (wallet.issuer, wallet.client_id)")]
    NotConfigured,
    /// No valid session cookie.
    #[error("sign in to the wallet first")]
    SessionRequired,
    /// A state-changing request without the session's CSRF token.
    #[error("the request lacks the session's x-csrf-token")]
    CsrfInvalid,
    /// Nothing with this id is the user's.
    #[error("no {what} {id} is yours")]
    NotFound {
        /// What was asked for.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A malformed request.
    #[error("{0}")]
    Invalid(String),
    /// The sign-in failed; `code` says how (`access_denied`, `invalid_state`, …).
    #[error("sign-in failed ({code}): {why}")]
    SignIn {
        /// A stable code.
        code: &'static str,
        /// Why.
        why: String,
    },
    /// A grant operation failed.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// A delegation operation failed.
    #[error(transparent)]
    Delegation(#[from] DelegationError),
    /// An approval operation failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The audit log could not be read.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A value could not be sealed or opened.
    #[error("the vault failed")]
    Vault(#[from] VaultError),
    /// The database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
}

impl WalletError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured => "wallet_not_configured",
            Self::SessionRequired => "wallet_session_required",
            Self::CsrfInvalid => "csrf_token_invalid",
            Self::NotFound { what: "grant", .. } => "grant_not_found",
            Self::NotFound {
                what: "delegation", ..
            } => "delegation_not_found",
            Self::NotFound {
                what: "approval", ..
            } => "approval_not_found",
            Self::NotFound { .. } => "not_found",
            Self::Invalid(_) | Self::Audit(AuditError::InvalidFilter(_)) => "invalid_request",
            Self::SignIn { code, .. } => code,
            Self::Grant(e) => CallError::grant_code(e),
            Self::Delegation(e) => e.code(),
            Self::Call(e) => e.code(),
            Self::Audit(_) | Self::Vault(_) | Self::Store(_) => "internal_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotConfigured => 503,
            Self::SessionRequired => 401,
            Self::CsrfInvalid => 403,
            Self::NotFound { .. } => 404,
            Self::SignIn {
                code: "idp_unavailable",
                ..
            } => 502,
            Self::Invalid(_) | Self::Audit(AuditError::InvalidFilter(_)) | Self::SignIn { .. } => {
                400
            }
            Self::Grant(e) => crate::calls::status_for_code(CallError::grant_code(e)),
            Self::Delegation(e) => e.status(),
            Self::Call(e) => e.status(),
            Self::Audit(_) | Self::Vault(_) | Self::Store(_) => 500,
        }
    }
}

/// A signed-in user, as the routes hand it to the service.
#[derive(Debug, Clone)]
pub struct WalletUser {
    /// The session.
    pub session: SessionRow,
    /// The user as a grant principal.
    pub principal: Principal,
}

impl WalletUser {
    fn change(&self) -> Change {
        Change {
            origin: Origin {
                actor: Actor::new(
                    ActorKind::User,
                    format!("{}:{}", self.session.issuer, self.session.subject),
                ),
                via: Via::Wallet,
            },
            key_id: None,
            caller: None,
            request_id: Some(uuid::Uuid::now_v7().to_string()),
            reason: None,
            impersonated_by: None,
        }
    }
}

/// The identity provider's endpoints, from its discovery document.
#[derive(Debug, Clone)]
struct Endpoints {
    authorization: String,
    token: String,
}

struct Inner {
    settings: WalletSettings,
    store: Store,
    keys: LiveRing,
    egress: Egress,
    verifier: Verifier,
    grants: Grants,
    delegations: Delegations,
    calls: Calls,
    connect: crate::oauth::connect::Connect,
    public_origin: String,
    redirect_uri: String,
    secure: bool,
    endpoints: Mutex<Option<Endpoints>>,
}

/// The wallet service. Cheap to clone; without settings every request is
/// `wallet_not_configured`.
#[derive(Clone, Default)]
pub struct Wallet {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("configured", &self.inner.is_some())
            .finish()
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The CSRF token of a session: HMAC-SHA256 keyed by the cookie value.
pub fn csrf_token(cookie: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(cookie.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"tessera-wallet-csrf");
    hex::encode(mac.finalize().into_bytes())
}

/// `host[:port]` of a URL, as an egress allow-list entry.
fn authority(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    Some(match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    })
}

/// A wallet path to return to after sign-in: under `/wallet/`, else `/wallet/`.
fn return_path(asked: Option<&str>) -> String {
    match asked {
        Some(p)
            if p.starts_with("/wallet/")
                && !p.starts_with("/wallet//")
                && !p.contains(['\\', '\r', '\n'])
                && p.len() <= 512 =>
        {
            p.to_owned()
        }
        _ => "/wallet/".to_owned(),
    }
}

/// The JSON claims of a JWT's payload (the token was verified before this is called).
fn claims(jwt: &str) -> serde_json::Value {
    jwt.split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The body and headers of the token request for `code`: the client authenticates with
/// `client_secret_basic` when it has a secret, else names itself (a public client).
fn token_request(
    settings: &WalletSettings,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> (Vec<u8>, Vec<(String, String)>) {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_verifier", verifier);
    let mut headers = vec![
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("accept".to_owned(), "application/json".to_owned()),
    ];
    match &settings.client_secret {
        Some(secret) => {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(&settings.client_id),
                enc(secret.expose_secret())
            ));
            headers.push(("authorization".to_owned(), format!("Basic {basic}")));
        }
        None => {
            form.append_pair("client_id", &settings.client_id);
        }
    }
    (form.finish().into_bytes(), headers)
}

impl Wallet {
    /// The wallet with `settings` (`None`: not configured), over the call service's grants
    /// and `keys`; `public_origin` is the host's (`https://tessera.example.com`).
    pub fn new(
        settings: Option<WalletSettings>,
        calls: &Calls,
        connect: crate::oauth::connect::Connect,
        keys: LiveRing,
        public_origin: &str,
    ) -> Self {
        let Some(settings) = settings else {
            return Self { inner: None };
        };
        let grants = calls.grants().clone();
        Self {
            inner: Some(Arc::new(Inner {
                settings,
                store: grants.store().clone(),
                keys,
                egress: grants.egress().clone(),
                verifier: Verifier::new(grants.egress().clone()),
                delegations: Delegations::new(grants.store().clone()),
                calls: calls.clone(),
                connect,
                public_origin: public_origin.trim_end_matches('/').to_owned(),
                grants,
                redirect_uri: format!("{}/wallet/callback", public_origin.trim_end_matches('/')),
                secure: public_origin.starts_with("https://"),
                endpoints: Mutex::new(None),
            })),
        }
    }

    fn inner(&self) -> Result<&Inner, WalletError> {
        self.inner.as_deref().ok_or(WalletError::NotConfigured)
    }

    /// Whether the session cookie must be `Secure` (the host is served over https).
    pub fn secure_cookie(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.secure)
    }

    /// How long a new session lasts.
    pub fn session_ttl(&self) -> Duration {
        self.inner
            .as_ref()
            .map_or(Duration::ZERO, |i| i.settings.session_ttl)
    }

    async fn endpoints(&self) -> Result<Endpoints, WalletError> {
        let inner = self.inner()?;
        if let Some(e) = inner
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Ok(e);
        }
        let issuer = inner.settings.issuer.trim_end_matches('/');
        let unavailable = |why: String| WalletError::SignIn {
            code: "idp_unavailable",
            why,
        };
        let request = HttpRequest {
            method: "GET".into(),
            url: format!("{issuer}/.well-known/openid-configuration"),
            headers: vec![("accept".into(), "application/json".into())],
            body: Vec::new(),
        };
        let allowed: Vec<String> = authority(issuer).into_iter().collect();
        let response = inner
            .egress
            .exchange(&request, &allowed, &[])
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let doc: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|_| unavailable("the discovery document is not JSON".into()))?;
        if doc["issuer"].as_str() != Some(inner.settings.issuer.as_str()) {
            return Err(unavailable(
                "the discovery document names another issuer".into(),
            ));
        }
        let field = |name: &str| {
            doc[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| unavailable(format!("the discovery document has no {name}")))
        };
        let e = Endpoints {
            authorization: field("authorization_endpoint")?,
            token: field("token_endpoint")?,
        };
        *inner
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.clone());
        Ok(e)
    }

    /// Starts a sign-in: returns the identity provider's authorization URL to redirect to.
    pub async fn begin_login(&self, return_to: Option<&str>) -> Result<String, WalletError> {
        let inner = self.inner()?;
        let endpoints = self.endpoints().await?;
        let state = random_token();
        let verifier = random_token();
        let nonce = random_token();
        let state_hash = sha256_hex(&state);
        let sealed = inner.keys.seal(
            &Aad {
                record_id: &state_hash,
                app_id: "wallet",
                kind: SEALED_KIND,
            },
            verifier.as_bytes(),
        )?;
        let now = Timestamp::now();
        repo::insert_login(
            &inner.store,
            &LoginRow {
                state_hash,
                verifier: sealed.to_bytes(),
                nonce: nonce.clone(),
                return_to: return_path(return_to),
                created_at: now.unix_millis(),
                expires_at: now.plus(LOGIN_TTL).unix_millis(),
            },
        )
        .await?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url =
            url::Url::parse(&endpoints.authorization).map_err(|_| WalletError::SignIn {
                code: "idp_unavailable",
                why: "the authorization endpoint is not a URL".into(),
            })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &inner.settings.client_id)
            .append_pair("redirect_uri", &inner.redirect_uri)
            .append_pair("scope", &inner.settings.scopes)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Finishes a sign-in from the callback's query: returns the new session's cookie value
    /// and where to send the browser.
    pub async fn finish_login(
        &self,
        query: &HashMap<String, String>,
    ) -> Result<(String, String), WalletError> {
        let inner = self.inner()?;
        let fail = |code: &'static str, why: &str| WalletError::SignIn {
            code,
            why: why.to_owned(),
        };
        let state = query
            .get("state")
            .ok_or_else(|| fail("invalid_callback", "the callback has no state"))?;
        let login = repo::claim_login(&inner.store, &sha256_hex(state), Timestamp::now())
            .await?
            .ok_or_else(|| {
                fail(
                    "invalid_state",
                    "this sign-in is unknown, used or too old; start again",
                )
            })?;
        if let Some(error) = query.get("error") {
            return Err(if error == "access_denied" {
                fail("access_denied", "you did not allow the sign-in")
            } else {
                fail("idp_error", "the identity provider refused the sign-in")
            });
        }
        if let Some(iss) = query.get("iss")
            && *iss != inner.settings.issuer
        {
            return Err(fail(
                "invalid_callback",
                "the callback names another issuer",
            ));
        }
        let code = query
            .get("code")
            .ok_or_else(|| fail("invalid_callback", "the callback has no code"))?;
        let verifier = inner
            .keys
            .open_bytes(
                &Aad {
                    record_id: &login.state_hash,
                    app_id: "wallet",
                    kind: SEALED_KIND,
                },
                &login.verifier,
            )
            .await?;
        let verifier = String::from_utf8_lossy(verifier.expose()).into_owned();
        let id_token = self.exchange(code, &verifier).await?;
        let idp = IdpConfig {
            issuer: inner.settings.issuer.clone(),
            jwks_url: None,
            audiences: vec![inner.settings.client_id.clone()],
            groups_claim: None,
            algorithms: Vec::new(),
            leeway_secs: 60,
        };
        let user =
            inner
                .verifier
                .verify(&idp, &id_token)
                .await
                .map_err(|e| WalletError::SignIn {
                    code: "invalid_id_token",
                    why: e.to_string(),
                })?;
        let claims = claims(&id_token);
        if claims["nonce"].as_str() != Some(login.nonce.as_str()) {
            return Err(fail(
                "invalid_id_token",
                "the ID token's nonce is not this sign-in's",
            ));
        }
        let cookie = random_token();
        let now = Timestamp::now();
        repo::insert_session(
            &inner.store,
            &SessionRow {
                id_hash: sha256_hex(&cookie),
                issuer: user.issuer,
                subject: user.subject,
                email: claims["email"].as_str().map(str::to_owned),
                name: claims["name"].as_str().map(str::to_owned),
                created_at: now.unix_millis(),
                expires_at: now.plus(inner.settings.session_ttl).unix_millis(),
            },
        )
        .await?;
        Ok((cookie, login.return_to))
    }

    /// The authorization code for an ID token, at the token endpoint.
    async fn exchange(&self, code: &str, verifier: &str) -> Result<String, WalletError> {
        let inner = self.inner()?;
        let endpoints = self.endpoints().await?;
        let (body, headers) = token_request(&inner.settings, &inner.redirect_uri, code, verifier);
        let request = HttpRequest {
            method: "POST".into(),
            url: endpoints.token.clone(),
            headers,
            body,
        };
        let allowed: Vec<String> = [
            authority(&endpoints.token),
            authority(&inner.settings.issuer),
        ]
        .into_iter()
        .flatten()
        .collect();
        let response = inner
            .egress
            .exchange(&request, &allowed, &[])
            .await
            .map_err(|e| WalletError::SignIn {
                code: "idp_unavailable",
                why: e.to_string(),
            })?;
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        if !(200..300).contains(&response.status) {
            return Err(WalletError::SignIn {
                code: "idp_error",
                why: format!(
                    "the token endpoint answered {} ({})",
                    response.status,
                    body["error"].as_str().unwrap_or("no error code")
                ),
            });
        }
        body["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| WalletError::SignIn {
                code: "invalid_id_token",
                why: "the token endpoint returned no ID token".into(),
            })
    }

    /// The user of session cookie `cookie`.
    pub async fn user(&self, cookie: &str) -> Result<WalletUser, WalletError> {
        let inner = self.inner()?;
        let session = repo::session(&inner.store, &sha256_hex(cookie), Timestamp::now())
            .await?
            .ok_or(WalletError::SessionRequired)?;
        let principal = Principal::User {
            issuer: session.issuer.clone(),
            subject: session.subject.clone(),
        };
        Ok(WalletUser { session, principal })
    }

    /// Ends the session of `cookie`.
    pub async fn sign_out(&self, cookie: &str) -> Result<(), WalletError> {
        repo::end_session(&self.inner()?.store, &sha256_hex(cookie)).await?;
        Ok(())
    }

    /// The longest TTL a user may set, in seconds.
    pub fn max_ttl_secs(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.settings.max_ttl.as_secs())
    }

    /// The user's live grants, by app name, with their delegations.
    pub async fn grants(&self, user: &WalletUser) -> Result<WalletGrantPage, WalletError> {
        let inner = self.inner()?;
        let registry = inner.grants.registry();
        let names: HashMap<String, String> = registry
            .catalogue()
            .into_iter()
            .map(|p| (p.id, p.display_name))
            .collect();
        let labels = |provider: &str, scopes: &[String]| {
            let mut out = std::collections::BTreeMap::new();
            if let Some(p) = registry.get(provider) {
                for d in &p.info().scopes {
                    if scopes.contains(&d.name) {
                        out.insert(d.name.clone(), d.label.clone());
                    }
                }
            }
            out
        };
        let mut apps = crate::store::apps::list(&inner.store).await?;
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        let mut items = Vec::new();
        for app in apps {
            let owner = Owner::app(app.id);
            let mut cursor = None;
            loop {
                let filter = crate::store::grants::Filter {
                    principal: Some(user.principal.clone()),
                    before: cursor,
                    ..crate::store::grants::Filter::default()
                };
                let page = inner.grants.list(owner, filter, Some(500)).await?;
                for grant in page.items {
                    if grant.status == GrantStatus::Revoked || items.len() >= MAX_GRANTS {
                        continue;
                    }
                    let delegations = self.delegations_of(app.id, &grant.id).await?;
                    items.push(WalletGrant {
                        app_id: app.id.to_string(),
                        app_name: app.name.clone(),
                        provider_name: names
                            .get(&grant.provider)
                            .cloned()
                            .unwrap_or_else(|| grant.provider.clone()),
                        scope_labels: labels(&grant.provider, &grant.scopes),
                        grant,
                        delegations,
                    });
                }
                match page.next_cursor.and_then(|c| c.parse().ok()) {
                    Some(next) if items.len() < MAX_GRANTS => cursor = Some(next),
                    _ => break,
                }
            }
        }
        Ok(WalletGrantPage { items })
    }

    async fn delegations_of(
        &self,
        app: AppId,
        grant_id: &str,
    ) -> Result<Vec<WalletDelegation>, WalletError> {
        let inner = self.inner()?;
        let page = inner
            .delegations
            .list(Owner::app(app), None, Some(grant_id), false)
            .await?;
        let mut out = Vec::with_capacity(page.items.len());
        for d in page.items {
            let agent_name = match d.agent_id.parse::<AgentId>() {
                Ok(id) => crate::store::agents::get(&inner.store, app, id)
                    .await?
                    .map_or_else(|| d.agent_id.clone(), |a| a.name),
                Err(_) => d.agent_id.clone(),
            };
            out.push(WalletDelegation {
                id: d.id,
                agent_id: d.agent_id,
                agent_name,
                created_at: d.created_at,
                expires_at: d.expires_at,
            });
        }
        Ok(out)
    }

    /// Grant `id` if it is the user's: its app and wire form.
    async fn own_grant(&self, user: &WalletUser, id: &str) -> Result<(AppId, Grant), WalletError> {
        let inner = self.inner()?;
        let not_found = || WalletError::NotFound {
            what: "grant",
            id: id.to_owned(),
        };
        let app = repo::app_of(&inner.store, repo::Kind::Grant, id)
            .await?
            .ok_or_else(not_found)?;
        let grant = inner
            .grants
            .get(Owner::app(app), id)
            .await
            .map_err(|_| not_found())?;
        if grant.principal != user.principal {
            return Err(not_found());
        }
        Ok((app, grant))
    }

    /// Revokes one of the user's grants (upstream too, where the provider supports it).
    pub async fn revoke_grant(&self, user: &WalletUser, id: &str) -> Result<Grant, WalletError> {
        let (app, _) = self.own_grant(user, id).await?;
        let outcome = self
            .inner()?
            .grants
            .revoke(Owner::app(app), &user.change(), id)
            .await?;
        Ok(outcome.grant)
    }

    /// Sets one of the user's grants to expire `ttl_secs` from now (at most the operator's
    /// maximum).
    pub async fn set_grant_ttl(
        &self,
        user: &WalletUser,
        id: &str,
        ttl_secs: u64,
    ) -> Result<Grant, WalletError> {
        let max = self.max_ttl_secs();
        if ttl_secs == 0 || ttl_secs > max {
            return Err(WalletError::Invalid(format!(
                "a TTL is 1 to {max} seconds on this host"
            )));
        }
        let (app, _) = self.own_grant(user, id).await?;
        Ok(self
            .inner()?
            .grants
            .set_ttl(
                Owner::app(app),
                &user.change(),
                id,
                Some(Duration::from_secs(ttl_secs)),
            )
            .await?)
    }

    /// A connect session that connects one of the user's OAuth grants again (its account,
    /// its scopes): the grant is revived when the user finishes it.
    pub async fn reconnect(
        &self,
        user: &WalletUser,
        id: &str,
    ) -> Result<WalletReconnect, WalletError> {
        let inner = self.inner()?;
        let (app, grant) = self.own_grant(user, id).await?;
        if grant.kind != GrantKind::Oauth {
            return Err(WalletError::Invalid(
                "only an OAuth grant is connected again; the app's operator replaces a managed secret".into(),
            ));
        }
        let session = inner
            .connect
            .create(
                Owner::app(app),
                ConnectSessionRequest {
                    provider: grant.provider.clone(),
                    principal: user.principal.clone(),
                    allowed_scopes: None,
                    return_url: Some(format!("{}/wallet/", inner.public_origin)),
                    connection_params: std::collections::BTreeMap::new(),
                    agent: None,
                    delegation_ttl_secs: None,
                    grant_ttl_secs: None,
                },
            )
            .await
            .map_err(|e| WalletError::Invalid(e.to_string()))?;
        Ok(WalletReconnect {
            connect_url: session.connect_url.unwrap_or_default(),
            session_id: session.id,
        })
    }

    /// Makes a delegation of one of the user's grants end `ttl_secs` from now (at most the
    /// operator's maximum).
    pub async fn set_delegation_ttl(
        &self,
        user: &WalletUser,
        id: &str,
        ttl_secs: u64,
    ) -> Result<Delegation, WalletError> {
        let max = self.max_ttl_secs();
        if ttl_secs == 0 || ttl_secs > max {
            return Err(WalletError::Invalid(format!(
                "a TTL is 1 to {max} seconds on this host"
            )));
        }
        let (app, _) = self.own_delegation(user, id).await?;
        Ok(self
            .inner()?
            .delegations
            .set_ttl(
                Owner::app(app),
                &user.change(),
                id,
                Duration::from_secs(ttl_secs),
            )
            .await?)
    }

    /// Delegation `id` if it is of one of the user's grants: its app and wire form.
    async fn own_delegation(
        &self,
        user: &WalletUser,
        id: &str,
    ) -> Result<(AppId, Delegation), WalletError> {
        let inner = self.inner()?;
        let not_found = || WalletError::NotFound {
            what: "delegation",
            id: id.to_owned(),
        };
        let app = repo::app_of(&inner.store, repo::Kind::Delegation, id)
            .await?
            .ok_or_else(not_found)?;
        let delegation = inner
            .delegations
            .get(Owner::app(app), id)
            .await
            .map_err(|_| not_found())?;
        self.own_grant(user, &delegation.grant_id)
            .await
            .map_err(|_| not_found())?;
        Ok((app, delegation))
    }

    /// Ends a delegation of one of the user's grants; the grant stays.
    pub async fn revoke_delegation(&self, user: &WalletUser, id: &str) -> Result<(), WalletError> {
        let inner = self.inner()?;
        let (app, _) = self.own_delegation(user, id).await?;
        inner
            .delegations
            .revoke(Owner::app(app), &user.change(), id)
            .await?;
        Ok(())
    }

    /// A page of one of the user's grants' activity: newest first.
    pub async fn activity(
        &self,
        user: &WalletUser,
        grant_id: &str,
        mut filter: crate::audit::AuditFilter,
    ) -> Result<AuditPage, WalletError> {
        let (app, _) = self.own_grant(user, grant_id).await?;
        filter.app_id = Some(app);
        filter.grant_id = Some(grant_id.to_owned());
        filter.newest_first = true;
        let items = crate::audit::list(&self.inner()?.store, &filter).await?;
        let full = items.len() >= filter.effective_limit() as usize;
        let next = if full {
            items.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(AuditPage {
            items,
            next_after: next,
        })
    }

    /// The approvals of calls made with the user's grants, newest first.
    pub async fn approvals(
        &self,
        user: &WalletUser,
        status: Option<ApprovalStatus>,
    ) -> Result<ApprovalPage, WalletError> {
        let inner = self.inner()?;
        let mut items = Vec::new();
        for app in crate::store::apps::list(&inner.store).await? {
            let filter = ApprovalFilter {
                status,
                principal: Some(user.principal.to_string()),
                ..ApprovalFilter::default()
            };
            items.extend(
                inner
                    .calls
                    .approvals(Owner::app(app.id), &filter)
                    .await?
                    .items
                    .into_iter()
                    .map(|mut a| {
                        a.app_name = Some(app.name.clone());
                        a
                    }),
            );
        }
        items.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(ApprovalPage { items })
    }

    async fn own_approval(
        &self,
        user: &WalletUser,
        id: &str,
    ) -> Result<(AppId, Approval), WalletError> {
        let inner = self.inner()?;
        let not_found = || WalletError::NotFound {
            what: "approval",
            id: id.to_owned(),
        };
        let app = repo::app_of(&inner.store, repo::Kind::Approval, id)
            .await?
            .ok_or_else(not_found)?;
        let approval = inner.calls.approval(Owner::app(app), id).await?;
        if approval.principal != user.principal.to_string() {
            return Err(not_found());
        }
        Ok((app, approval))
    }

    /// One approval of the user's, with the exact request it holds.
    pub async fn approval(&self, user: &WalletUser, id: &str) -> Result<Approval, WalletError> {
        let (app, mut approval) = self.own_approval(user, id).await?;
        approval.app_name = crate::store::apps::get(&self.inner()?.store, app)
            .await?
            .map(|a| a.name);
        Ok(approval)
    }

    /// Approves (sending the stored request once) or denies one of the user's approvals.
    pub async fn decide(
        &self,
        user: &WalletUser,
        id: &str,
        approve: bool,
        request: &DecideRequest,
    ) -> Result<Approval, WalletError> {
        let (app, _) = self.own_approval(user, id).await?;
        Ok(self
            .inner()?
            .calls
            .decide(app, id, approve, request, &user.change())
            .await?)
    }
}
