//! [`App`]: one API key and one host. Builds the host's endpoint URLs, signs and sends every
//! request to the host, and reads its answers (JSON or problem documents).
//!
//! Must never: keep the API key string, send a request to the host unsigned, follow a
//! redirect from the host (the signature covers the exact URL), or print the signing key.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url, redirect};
use serde::de::DeserializeOwned;
use tessera_proto::agents::{Agent, AgentPage, CreateAgentRequest};
use tessera_proto::approvals::{Approval, ApprovalPage, ApprovalStatus, DecideRequest};
use tessera_proto::calls::{AGENT_HEADER, CALLER_HEADER, CONSTRAINTS_HEADER};
use tessera_proto::connect::{ConnectSession, ConnectSessionRequest, ConnectStatus};
use tessera_proto::delegations::{CreateDelegationRequest, Delegation, DelegationPage};
use tessera_proto::grants::{
    Grant, GrantTtlRequest, ManagedSecretRequest, ManagedSecretResponse, RevokeRequest,
};
use tessera_proto::identity::{IdpConfigRequest, IdpConfigView};
use tessera_proto::policy::{PolicyRule, PolicyRulePage, RuleRequest};
use tessera_proto::providers::{ProviderConfigRequest, ProviderConfigView, ProviderSummary};
use tessera_proto::scopes::Scope;
use tessera_proto::signing::{
    CONTENT_DIGEST_HEADER, OPTIONAL_COVERED_HEADERS, SIGNATURE_HEADER, SIGNATURE_INPUT_HEADER,
};
use tessera_proto::webhooks::{Delivery, DeliveryPage, WebhookRequest, WebhookView};
use tessera_proto::whoami::Whoami;

use crate::Error;
use crate::calls::{CallBuilder, Proxy, ProxyResponse, Retrieve, upstream};
use crate::queries::{AuditQuery, GrantQuery};
use crate::signer::Signer;

/// The attribution headers the request signature covers when they are sent, in this order,
/// after the mandatory `"@method" "@target-uri" "content-digest"`. The host refuses a
/// request that sends one of them uncovered, so nobody on the way can add, change or strip
/// a constraint or the caller name.
const SIGNED_ATTRIBUTION_HEADERS: &[&str] = &OPTIONAL_COVERED_HEADERS;

/// The longest caller name sent, in characters (the host keeps no more).
const MAX_CALLER_LEN: usize = 128;

/// How long to wait for a TCP/TLS connection to the host or a provider.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many same-origin redirects a retrieve-mode call follows.
const MAX_UPSTREAM_REDIRECTS: usize = 10;

/// A Tessera client: one API key (app or agent) talking to one host.
///
/// Cheap to clone (the key and HTTP clients are shared). [`App::caller`] and
/// [`App::with_constraints`] give variants that share the same key.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
    host: reqwest::Client,
    upstream: reqwest::Client,
    caller: Option<Arc<str>>,
    constraints: Option<Arc<[Scope]>>,
    agent: Option<Arc<str>>,
}

struct Inner {
    signer: Signer,
    base: Url,
}

impl App {
    /// A client for the host at `host_url` (its public origin, e.g.
    /// `https://tessera.example.com`, optionally with a path prefix) using `api_key`
    /// (`tsr_app_…` or `tsr_agent_…`). The key is parsed and its signing key derived; the
    /// key string itself is not kept.
    pub fn new(api_key: &str, host_url: &str) -> Result<Self, Error> {
        let signer = Signer::from_api_key(api_key).map_err(Error::InvalidKey)?;
        let base = Url::parse(host_url.trim())
            .map_err(|e| Error::InvalidInput(format!("host URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https")
            || base.cannot_be_a_base()
            || base.host().is_none()
        {
            return Err(Error::InvalidInput(
                "host URL must be an absolute http or https URL".into(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() || !base.username().is_empty() {
            return Err(Error::InvalidInput(
                "host URL must not carry credentials, a query or a fragment".into(),
            ));
        }
        // The signature covers the exact URL: a redirect would send it elsewhere, unsigned
        // for that URL, so the host client never follows one.
        let host = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(Error::Transport)?;
        let upstream = reqwest::Client::builder()
            .redirect(same_origin_redirects())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(Error::Transport)?;
        Ok(Self {
            inner: Arc::new(Inner { signer, base }),
            host,
            upstream,
            caller: None,
            constraints: None,
            agent: None,
        })
    }

    /// Names the caller (`"email-bot"`), sent with every request as `tessera-caller` and
    /// recorded in the audit log. Attribution only, not an access boundary. Must be 1–128
    /// printable ASCII characters; a request with any other name fails with
    /// [`Error::InvalidInput`].
    #[must_use]
    pub fn caller(mut self, name: impl Into<String>) -> Self {
        self.caller = Some(Arc::from(name.into()));
        self
    }

    /// A client of this app key acting as one of the app's agents (by agent id), sent as
    /// `tessera-agent`: every request is held to exactly what that agent may do (its own and
    /// delegated grants) and audited as the agent's, naming this key as the one acting. Only
    /// an app key may; the host answers `invalid_request` for an agent key.
    #[must_use]
    pub fn as_agent(&self, agent_id: impl Into<String>) -> Self {
        let mut acting = self.clone();
        acting.agent = Some(Arc::from(agent_id.into()));
        acting
    }

    /// A client that may use at most `scopes` of its key's Tessera scopes, sent as
    /// `tessera-constraints`; the host uses the intersection with the key's scopes. Applied
    /// to an already constrained client it narrows further (never widens). An empty list
    /// leaves no scope at all.
    #[must_use]
    pub fn with_constraints(&self, scopes: &[Scope]) -> Self {
        let mut narrowed: Vec<Scope> = match &self.constraints {
            Some(current) => scopes
                .iter()
                .copied()
                .filter(|s| current.contains(s))
                .collect(),
            None => scopes.to_vec(),
        };
        narrowed.sort_unstable();
        narrowed.dedup();
        Self {
            constraints: Some(narrowed.into()),
            ..self.clone()
        }
    }

    /// Uses `client` for requests to the host (timeouts, proxies, TLS roots). It must not
    /// follow redirects: a signed request is only valid for its exact URL.
    #[must_use]
    pub fn with_host_client(mut self, client: reqwest::Client) -> Self {
        self.host = client;
        self
    }

    /// Uses `client` for the requests retrieve mode sends to providers. The default client
    /// follows redirects only within the same origin, so auth material never follows a
    /// redirect to another host; a cross-origin redirect is returned as it is.
    #[must_use]
    pub fn with_upstream_client(mut self, client: reqwest::Client) -> Self {
        self.upstream = client;
        self
    }

    /// The public id of this client's key.
    pub fn key_id(&self) -> &str {
        self.inner.signer.key_id().as_str()
    }

    /// The host's base URL.
    pub fn host_url(&self) -> &Url {
        &self.inner.base
    }

    /// The caller name set with [`App::caller`].
    pub fn caller_name(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    /// The scopes this client is narrowed to, if [`App::with_constraints`] was used.
    pub fn constraints(&self) -> Option<&[Scope]> {
        self.constraints.as_deref()
    }

    /// A retrieve-mode call (`tokens:retrieve`): the host returns the auth material for
    /// exactly this request, and the SDK sends it to the provider itself. See
    /// [`CallBuilder::send`](crate::RetrieveBuilder::send).
    pub fn request(&self, method: Method, url: impl Into<String>) -> CallBuilder<Retrieve> {
        CallBuilder::new(self.clone(), method, url.into())
    }

    /// A proxy-mode call (`proxy:execute`): the host sends the request to the provider and
    /// streams back its answer. See [`CallBuilder::send`](crate::ProxyBuilder::send).
    pub fn proxy_request(&self, method: Method, url: impl Into<String>) -> CallBuilder<Proxy> {
        CallBuilder::new(self.clone(), method, url.into())
    }

    /// `GET /v1/whoami`: the app, key, kind and Tessera scopes the host sees for this key.
    pub async fn whoami(&self) -> Result<Whoami, Error> {
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "whoami"], &[]),
            Vec::new(),
        )
        .await
    }

    /// `GET /v1/providers`: the providers the host has loaded.
    pub async fn providers(&self) -> Result<Vec<ProviderSummary>, Error> {
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "providers"], &[]),
            Vec::new(),
        )
        .await
    }

    /// `PUT /v1/providers/{provider}/config` (`providers:write`): configures the app's OAuth
    /// client for `provider`, replacing the previous configuration (an absent
    /// `client_secret` keeps the stored secret unless `clear_client_secret` is set). The
    /// answer never holds the secret.
    pub async fn configure_provider(
        &self,
        provider: &str,
        request: &ProviderConfigRequest,
    ) -> Result<ProviderConfigView, Error> {
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::InvalidInput(format!("provider config request: {e}")))?;
        self.call_json(
            Method::PUT,
            self.endpoint(&["v1", "providers", provider, "config"], &[]),
            body,
        )
        .await
    }

    /// `GET /v1/providers/{provider}/config` (`providers:write`): the app's OAuth client
    /// for `provider`, without the secret. `provider_config_not_found` when there is none.
    pub async fn provider_config(&self, provider: &str) -> Result<ProviderConfigView, Error> {
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "providers", provider, "config"], &[]),
            Vec::new(),
        )
        .await
    }

    /// `DELETE /v1/providers/{provider}/config` (`providers:write`): removes the app's
    /// OAuth client for `provider`.
    pub async fn unconfigure_provider(&self, provider: &str) -> Result<(), Error> {
        let response = self
            .send_signed(
                Method::DELETE,
                self.endpoint(&["v1", "providers", provider, "config"], &[]),
                Vec::new(),
            )
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(read_host_error(status, response).await)
    }

    /// `POST /v1/managed-secrets` (`grants:write`): stores or rotates a managed secret
    /// (an API key, an access key pair, …) and returns the grant that holds it.
    pub async fn set_managed_secret(
        &self,
        request: &ManagedSecretRequest,
    ) -> Result<ManagedSecretResponse, Error> {
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::InvalidInput(format!("managed secret request: {e}")))?;
        self.call_json(
            Method::POST,
            self.endpoint(&["v1", "managed-secrets"], &[]),
            body,
        )
        .await
    }

    /// `GET /v1/grants` (`grants:read`): a filtered, paginated listing; set the filters on
    /// the returned query, then [`GrantQuery::list`].
    pub fn grants(&self) -> GrantQuery {
        GrantQuery::new(self.clone())
    }

    /// `GET /v1/grants/{id}` (`grants:read`).
    pub async fn grant(&self, id: &str) -> Result<Grant, Error> {
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "grants", id], &[]),
            Vec::new(),
        )
        .await
    }

    /// `DELETE /v1/grants/{id}` (`grants:write`): revokes a grant, with an optional reason
    /// for the audit log.
    pub async fn revoke_grant(&self, id: &str, reason: Option<&str>) -> Result<(), Error> {
        let body = serde_json::to_vec(&RevokeRequest {
            reason: reason.map(str::to_owned),
        })
        .map_err(|e| Error::InvalidInput(format!("revoke request: {e}")))?;
        let response = self
            .send_signed(
                Method::DELETE,
                self.endpoint(&["v1", "grants", id], &[]),
                body,
            )
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(read_host_error(status, response).await)
    }

    /// `PUT /v1/idp` (`providers:write`, app keys only): trusts this identity provider for
    /// the app's end users' tokens, replacing any earlier one.
    pub async fn configure_idp(&self, idp: &IdpConfigRequest) -> Result<IdpConfigView, Error> {
        let body = serde_json::to_vec(idp)
            .map_err(|e| Error::InvalidInput(format!("identity provider: {e}")))?;
        self.call_json(Method::PUT, self.endpoint(&["v1", "idp"], &[]), body)
            .await
    }

    /// `GET /v1/idp` (`providers:write`): the app's identity provider
    /// (`idp_not_configured` when it has none).
    pub async fn idp(&self) -> Result<IdpConfigView, Error> {
        self.call_json(Method::GET, self.endpoint(&["v1", "idp"], &[]), Vec::new())
            .await
    }

    /// `DELETE /v1/idp` (`providers:write`): stops trusting the app's identity provider.
    pub async fn remove_idp(&self) -> Result<(), Error> {
        let response = self
            .send_signed(
                Method::DELETE,
                self.endpoint(&["v1", "idp"], &[]),
                Vec::new(),
            )
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(read_host_error(status, response).await)
    }

    /// `PUT /v1/grants/{id}/ttl` (`grants:write`): the grant stops working `ttl` from now
    /// (whole seconds; `None`: no expiry). Calls after it fail with `grant_expired`.
    pub async fn set_grant_ttl(&self, id: &str, ttl: Option<Duration>) -> Result<Grant, Error> {
        let body = serde_json::to_vec(&GrantTtlRequest {
            ttl_secs: ttl.map(|t| t.as_secs()),
        })
        .map_err(|e| Error::InvalidInput(format!("grant TTL request: {e}")))?;
        self.call_json(
            Method::PUT,
            self.endpoint(&["v1", "grants", id, "ttl"], &[]),
            body,
        )
        .await
    }

    /// `POST /v1/connect/sessions` (`connect:create`): starts connecting an end user's
    /// account at an OAuth provider. Send the user to the answer's `connect_url` (shown only
    /// here), then follow the session with [`App::connect_session`].
    pub async fn create_connect_session(
        &self,
        request: &ConnectSessionRequest,
    ) -> Result<ConnectSession, Error> {
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::InvalidInput(format!("connect session request: {e}")))?;
        self.call_json(
            Method::POST,
            self.endpoint(&["v1", "connect", "sessions"], &[]),
            body,
        )
        .await
    }

    /// `GET /v1/connect/sessions/{id}` (`connect:create`): where a connect session is; once
    /// `completed`, its `grant_id`.
    pub async fn connect_session(&self, id: &str) -> Result<ConnectSession, Error> {
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "connect", "sessions", id], &[]),
            Vec::new(),
        )
        .await
    }

    /// Headless connect, for command-line tools and notebooks: starts a connect session,
    /// hands its link to `show` (print it, open a browser), then polls the session every
    /// `every` until it completes, and returns the grant id. A session that fails or
    /// expires, or `timeout` running out, is [`Error::ConnectFailed`].
    pub async fn connect(
        &self,
        request: &ConnectSessionRequest,
        show: impl FnOnce(&str),
        every: Duration,
        timeout: Duration,
    ) -> Result<String, Error> {
        let session = self.create_connect_session(request).await?;
        let link = session
            .connect_url
            .as_deref()
            .ok_or_else(|| Error::Decode {
                detail: "the connect session has no connect_url".into(),
            })?;
        show(link);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.connect_session(&session.id).await?;
            match now.status {
                ConnectStatus::Completed => {
                    return now.grant_id.ok_or_else(|| Error::Decode {
                        detail: "a completed connect session has no grant_id".into(),
                    });
                }
                ConnectStatus::Failed | ConnectStatus::Expired => {
                    let (code, detail) = now.error.map_or_else(
                        || (now.status.as_str().to_owned(), String::new()),
                        |e| (e.code, e.message),
                    );
                    return Err(Error::ConnectFailed {
                        session_id: session.id,
                        code,
                        detail,
                    });
                }
                ConnectStatus::Pending | ConnectStatus::Authorizing | ConnectStatus::Exchanging => {
                }
            }
            if tokio::time::Instant::now() + every > deadline {
                return Err(Error::ConnectFailed {
                    session_id: session.id,
                    code: "timed_out".into(),
                    detail: format!("no grant after {timeout:?}"),
                });
            }
            tokio::time::sleep(every).await;
        }
    }

    /// `GET /v1/agents` (`agents:read`): the app's agents by name, the first page (up to
    /// 100; [`App::agents_page`] pages on). An agent key sees only itself.
    pub async fn agents(&self) -> Result<AgentPage, Error> {
        self.agents_page(None, None).await
    }

    /// `GET /v1/agents` (`agents:read`) with a page size (1–500) and the previous page's
    /// `next_cursor`.
    pub async fn agents_page(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<AgentPage, Error> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "agents"], &query),
            Vec::new(),
        )
        .await
    }

    /// `POST /v1/agents` (`agents:write`, app keys only): creates an agent of the app.
    /// `agent_conflict` when the name is taken, `app_key_required` for an agent key.
    pub async fn create_agent(&self, name: &str) -> Result<Agent, Error> {
        let body = serde_json::to_vec(&CreateAgentRequest {
            name: name.to_owned(),
        })
        .map_err(|e| Error::InvalidInput(format!("create agent request: {e}")))?;
        self.call_json(Method::POST, self.endpoint(&["v1", "agents"], &[]), body)
            .await
    }

    /// `GET /v1/agents/{id}` (`agents:read`): one agent of the app (an agent key: only
    /// itself). `agent_not_found` otherwise.
    pub async fn agent(&self, id: &str) -> Result<Agent, Error> {
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "agents", id], &[]),
            Vec::new(),
        )
        .await
    }

    /// `POST /v1/agents/{id}/disable` (`agents:write`, app keys only): the agent's keys are
    /// refused (`unknown_key`) from their next request on, until it is enabled again.
    pub async fn disable_agent(&self, id: &str) -> Result<Agent, Error> {
        self.call_json(
            Method::POST,
            self.endpoint(&["v1", "agents", id, "disable"], &[]),
            Vec::new(),
        )
        .await
    }

    /// `POST /v1/agents/{id}/enable` (`agents:write`, app keys only): the agent's keys work
    /// again.
    pub async fn enable_agent(&self, id: &str) -> Result<Agent, Error> {
        self.call_json(
            Method::POST,
            self.endpoint(&["v1", "agents", id, "enable"], &[]),
            Vec::new(),
        )
        .await
    }

    /// `POST /v1/delegations` (`agents:write`, app keys only): lets `agent` (id or name) use
    /// the existing grant `grant_id` for `ttl` (whole seconds) or until revoked, without
    /// changing the grant. `delegation_conflict` when a live one exists.
    pub async fn delegate(
        &self,
        grant_id: &str,
        agent: &str,
        ttl: Option<Duration>,
    ) -> Result<Delegation, Error> {
        let body = serde_json::to_vec(&CreateDelegationRequest {
            grant_id: grant_id.to_owned(),
            agent: agent.to_owned(),
            ttl_secs: ttl.map(|t| t.as_secs()),
        })
        .map_err(|e| Error::InvalidInput(format!("delegation request: {e}")))?;
        self.call_json(
            Method::POST,
            self.endpoint(&["v1", "delegations"], &[]),
            body,
        )
        .await
    }

    /// `GET /v1/delegations` (`agents:read`): the app's delegations, newest first, live ones
    /// unless `include_ended`; optionally of one agent (id or name) or one grant. An agent
    /// key sees only its own.
    pub async fn delegations(
        &self,
        agent: Option<&str>,
        grant_id: Option<&str>,
        include_ended: bool,
    ) -> Result<Vec<Delegation>, Error> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(agent) = agent {
            query.push(("agent", agent.to_owned()));
        }
        if let Some(grant) = grant_id {
            query.push(("grant_id", grant.to_owned()));
        }
        if include_ended {
            query.push(("include_ended", "true".to_owned()));
        }
        let page: DelegationPage = self
            .call_json(
                Method::GET,
                self.endpoint(&["v1", "delegations"], &query),
                Vec::new(),
            )
            .await?;
        Ok(page.items)
    }

    /// `GET /v1/delegations/{id}` (`agents:read`): one delegation (an agent key: only its
    /// own).
    pub async fn delegation(&self, id: &str) -> Result<Delegation, Error> {
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "delegations", id], &[]),
            Vec::new(),
        )
        .await
    }

    /// `DELETE /v1/delegations/{id}` (`agents:write`): ends a delegation at once, leaving the
    /// grant alone. An agent key may end its own.
    pub async fn revoke_delegation(
        &self,
        id: &str,
        reason: Option<&str>,
    ) -> Result<Delegation, Error> {
        let body = serde_json::to_vec(&RevokeRequest {
            reason: reason.map(str::to_owned),
        })
        .map_err(|e| Error::InvalidInput(format!("revoke request: {e}")))?;
        self.call_json(
            Method::DELETE,
            self.endpoint(&["v1", "delegations", id], &[]),
            body,
        )
        .await
    }

    /// `PUT /v1/webhook` (`webhooks:write`, app keys only): sets where the app's events go.
    /// A first configuration (or `rotate_secret`) returns the signing secret, once: keep it
    /// and check each delivery with [`crate::webhooks::verify`].
    pub async fn configure_webhook(&self, webhook: &WebhookRequest) -> Result<WebhookView, Error> {
        let body = serde_json::to_vec(webhook)
            .map_err(|e| Error::InvalidInput(format!("webhook: {e}")))?;
        self.call_json(Method::PUT, self.endpoint(&["v1", "webhook"], &[]), body)
            .await
    }

    /// `GET /v1/webhook` (`webhooks:write`, app keys only): the endpoint, without its secret.
    pub async fn webhook(&self) -> Result<WebhookView, Error> {
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "webhook"], &[]),
            Vec::new(),
        )
        .await
    }

    /// `DELETE /v1/webhook` (`webhooks:write`, app keys only): stops sending events.
    pub async fn remove_webhook(&self) -> Result<(), Error> {
        let response = self
            .send_signed(
                Method::DELETE,
                self.endpoint(&["v1", "webhook"], &[]),
                Vec::new(),
            )
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(read_host_error(status, response).await)
    }

    /// `GET /v1/webhook/deliveries` (`webhooks:write`, app keys only): the app's event
    /// deliveries, newest first, optionally of one status (`pending`, `delivered`,
    /// `failed`).
    pub async fn webhook_deliveries(&self, status: Option<&str>) -> Result<Vec<Delivery>, Error> {
        let query: Vec<(&str, String)> = status
            .map(|s| vec![("status", s.to_owned())])
            .unwrap_or_default();
        let page: DeliveryPage = self
            .call_json(
                Method::GET,
                self.endpoint(&["v1", "webhook", "deliveries"], &query),
                Vec::new(),
            )
            .await?;
        Ok(page.items)
    }

    /// `GET /v1/approvals` (`approvals:read`): the app's approvals, newest first, optionally
    /// only those with `status` (an agent key: only those it asked for). Lists leave the
    /// request out; [`App::approval`] shows it.
    pub async fn approvals(&self, status: Option<ApprovalStatus>) -> Result<Vec<Approval>, Error> {
        let query: Vec<(&str, String)> = status
            .map(|s| vec![("status", s.as_str().to_owned())])
            .unwrap_or_default();
        let page: ApprovalPage = self
            .call_json(
                Method::GET,
                self.endpoint(&["v1", "approvals"], &query),
                Vec::new(),
            )
            .await?;
        Ok(page.items)
    }

    /// `GET /v1/approvals/{id}` (`approvals:read`): one approval with the exact request it
    /// holds and that request's SHA-256.
    pub async fn approval(&self, id: &str) -> Result<Approval, Error> {
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "approvals", id], &[]),
            Vec::new(),
        )
        .await
    }

    /// `POST /v1/approvals/{id}/approve` (`approvals:write`, app keys only): approves and
    /// sends the stored request once; returns the approval as it ended (`executed` or
    /// `failed`). Pass the `request.sha256` that was shown to refuse a different request
    /// (`approval_mismatch`).
    pub async fn approve(
        &self,
        id: &str,
        request_sha256: Option<&str>,
        note: Option<&str>,
    ) -> Result<Approval, Error> {
        self.decide(id, "approve", request_sha256, note).await
    }

    /// `POST /v1/approvals/{id}/deny` (`approvals:write`, app keys only): denies (final;
    /// nothing is sent).
    pub async fn deny(&self, id: &str, note: Option<&str>) -> Result<Approval, Error> {
        self.decide(id, "deny", None, note).await
    }

    async fn decide(
        &self,
        id: &str,
        verb: &str,
        request_sha256: Option<&str>,
        note: Option<&str>,
    ) -> Result<Approval, Error> {
        let body = serde_json::to_vec(&DecideRequest {
            request_sha256: request_sha256.map(str::to_owned),
            note: note.map(str::to_owned),
        })
        .map_err(|e| Error::InvalidInput(format!("decision: {e}")))?;
        self.call_json(
            Method::POST,
            self.endpoint(&["v1", "approvals", id, verb], &[]),
            body,
        )
        .await
    }

    /// What became of a held proxy call (`GET /v1/approvals/{id}/outcome`, `proxy:execute`),
    /// waiting up to `timeout` for a decision: the provider's response to the approved
    /// request, or [`Error::ApprovalDenied`], [`Error::ApprovalExpired`],
    /// [`Error::ApprovalPending`] (still undecided at `timeout`), or another typed error
    /// when the approved request could not be sent.
    pub async fn approval_outcome(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<ProxyResponse, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // The host waits at most a minute per request; ask again until the deadline.
            let wait = left.as_secs().min(60);
            let response = self
                .send_signed(
                    Method::GET,
                    self.endpoint(
                        &["v1", "approvals", id, "outcome"],
                        &[("wait", wait.to_string())],
                    ),
                    Vec::new(),
                )
                .await?;
            match upstream(response).await {
                Err(Error::ApprovalPending { .. }) if wait > 0 && !left.is_zero() => {}
                answer => return answer,
            }
        }
    }

    /// `POST /v1/policy/rules` (`policies:write`, app keys only): adds a policy rule; the
    /// answer carries the Cedar policy it compiles to.
    pub async fn create_policy_rule(&self, rule: &RuleRequest) -> Result<PolicyRule, Error> {
        let body = serde_json::to_vec(rule)
            .map_err(|e| Error::InvalidInput(format!("policy rule: {e}")))?;
        self.call_json(
            Method::POST,
            self.endpoint(&["v1", "policy", "rules"], &[]),
            body,
        )
        .await
    }

    /// `GET /v1/policy/rules` (`policies:read`): the app's policy rules, by name.
    pub async fn policy_rules(&self) -> Result<Vec<PolicyRule>, Error> {
        let page: PolicyRulePage = self
            .call_json(
                Method::GET,
                self.endpoint(&["v1", "policy", "rules"], &[]),
                Vec::new(),
            )
            .await?;
        Ok(page.items)
    }

    /// `GET /v1/policy/rules/{id}` (`policies:read`): one rule, by id or name.
    pub async fn policy_rule(&self, id_or_name: &str) -> Result<PolicyRule, Error> {
        self.call_json(
            Method::GET,
            self.endpoint(&["v1", "policy", "rules", id_or_name], &[]),
            Vec::new(),
        )
        .await
    }

    /// `PUT /v1/policy/rules/{id}` (`policies:write`): replaces a rule, keeping its id.
    pub async fn update_policy_rule(
        &self,
        id_or_name: &str,
        rule: &RuleRequest,
    ) -> Result<PolicyRule, Error> {
        let body = serde_json::to_vec(rule)
            .map_err(|e| Error::InvalidInput(format!("policy rule: {e}")))?;
        self.call_json(
            Method::PUT,
            self.endpoint(&["v1", "policy", "rules", id_or_name], &[]),
            body,
        )
        .await
    }

    /// `DELETE /v1/policy/rules/{id}` (`policies:write`): deletes a rule.
    pub async fn delete_policy_rule(&self, id_or_name: &str) -> Result<PolicyRule, Error> {
        self.call_json(
            Method::DELETE,
            self.endpoint(&["v1", "policy", "rules", id_or_name], &[]),
            Vec::new(),
        )
        .await
    }

    /// `GET /v1/policy/schema` (`policies:read`): the Cedar schema policies are written
    /// against, in Cedar's schema syntax.
    pub async fn policy_schema(&self) -> Result<String, Error> {
        let response = self
            .send_signed(
                Method::GET,
                self.endpoint(&["v1", "policy", "schema"], &[]),
                Vec::new(),
            )
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(read_host_error(status, response).await);
        }
        response.text().await.map_err(Error::Transport)
    }

    /// `GET /v1/audit` (`audit:read`): audit rows, oldest first; set the filters on the
    /// returned query, then [`AuditQuery::list`]. An agent key sees only the rows where it
    /// acted.
    pub fn audit(&self) -> AuditQuery {
        AuditQuery::new(self.clone())
    }

    /// The client that sends retrieve-mode requests to providers.
    pub(crate) fn upstream_client(&self) -> &reqwest::Client {
        &self.upstream
    }

    /// The host URL of `segments` (each percent-encoded as one path segment) with `query`.
    pub(crate) fn endpoint(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.inner.base.clone();
        // `new` refused URLs that cannot be a base, so the `Err` arm cannot happen.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (k, v.as_str())));
        }
        url
    }

    /// `tessera-constraints`, `tessera-caller` and `tessera-agent`, when set.
    fn attribution_headers(&self) -> Result<Vec<(&'static str, String)>, Error> {
        let mut headers = Vec::with_capacity(3);
        if let Some(scopes) = &self.constraints {
            headers.push((CONSTRAINTS_HEADER, Scope::join(scopes)));
        }
        if let Some(caller) = &self.caller {
            let printable = caller.bytes().all(|b| (0x20..0x7f).contains(&b));
            if caller.is_empty()
                || caller.len() > MAX_CALLER_LEN
                || !printable
                || caller.trim() != &**caller
            {
                return Err(Error::InvalidInput(
                    "caller must be 1 to 128 printable ASCII characters, without surrounding \
                     spaces"
                        .into(),
                ));
            }
            headers.push((CALLER_HEADER, caller.to_string()));
        }
        if let Some(agent) = &self.agent {
            if agent.is_empty() || !agent.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::InvalidInput(
                    "the agent id must be printable ASCII without spaces".into(),
                ));
            }
            headers.push((AGENT_HEADER, agent.to_string()));
        }
        Ok(headers)
    }

    /// Signs and sends one request to the host. `body` is JSON, or empty for none.
    pub(crate) async fn send_signed(
        &self,
        method: Method,
        url: Url,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, Error> {
        let attribution = self.attribution_headers()?;
        let covered: Vec<(&str, &str)> = SIGNED_ATTRIBUTION_HEADERS
            .iter()
            .filter_map(|name| {
                attribution
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(n, v)| (*n, v.as_str()))
            })
            .collect();
        let signed = self
            .inner
            .signer
            .sign(method.as_str(), url.as_str(), &body, &covered)
            .map_err(|e| Error::InvalidInput(format!("cannot sign the request: {e}")))?;
        let mut request = self
            .host
            .request(method, url)
            .header(CONTENT_DIGEST_HEADER, signed.content_digest)
            .header(SIGNATURE_INPUT_HEADER, signed.signature_input)
            .header(SIGNATURE_HEADER, signed.signature);
        for (name, value) in attribution {
            request = request.header(name, value);
        }
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        request.send().await.map_err(Error::Transport)
    }

    /// Sends a signed request and reads a JSON answer, or the host's error.
    pub(crate) async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Vec<u8>,
    ) -> Result<T, Error> {
        let response = self.send_signed(method, url, body).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(read_host_error(status, response).await);
        }
        let bytes = response.bytes().await.map_err(Error::Transport)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::decode("the host's JSON answer", &e))
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("host_url", &self.inner.base.as_str())
            .field("key_id", &self.key_id())
            .field("signing_key", &"[redacted]")
            .field("caller", &self.caller)
            .field("constraints", &self.constraints)
            .finish_non_exhaustive()
    }
}

/// The typed error for a non-success answer of the host.
pub(crate) async fn read_host_error(status: StatusCode, response: reqwest::Response) -> Error {
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match response.bytes().await {
        Ok(body) => match Error::from_host_answer(status, &body) {
            Error::RateLimited { rule, detail, .. } => Error::RateLimited {
                rule,
                retry_after_secs: retry_after,
                detail,
            },
            other => other,
        },
        Err(e) => Error::Transport(e),
    }
}

/// Follows a redirect only while it stays on the origin of the first request, so auth
/// material set for one host (a custom `x-api-key`, say) is never sent to another.
fn same_origin_redirects() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if !same_origin {
            attempt.stop()
        } else if attempt.previous().len() > MAX_UPSTREAM_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "tsr_app_5e1f0a7c3b9d2468_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    #[test]
    fn endpoints_keep_a_path_prefix_and_encode_segments_and_queries() {
        for base in ["http://127.0.0.1:8080", "http://127.0.0.1:8080/"] {
            let app = App::new(KEY, base).unwrap();
            assert_eq!(
                app.endpoint(&["v1", "whoami"], &[]).as_str(),
                "http://127.0.0.1:8080/v1/whoami"
            );
        }
        let app = App::new(KEY, "https://Tessera.Example.com:443/base/").unwrap();
        assert_eq!(
            app.endpoint(&["v1", "grants", "a/b c"], &[]).as_str(),
            "https://tessera.example.com/base/v1/grants/a%2Fb%20c"
        );
        assert_eq!(
            app.endpoint(
                &["v1", "grants"],
                &[
                    ("provider", "stripe".into()),
                    ("principal", "user:https://idp:a b".into()),
                    ("limit", "20".into()),
                ]
            )
            .as_str(),
            "https://tessera.example.com/base/v1/grants?provider=stripe&principal=user%3Ahttps%3A%2F%2Fidp%3Aa+b&limit=20"
        );
    }

    #[test]
    fn bad_keys_and_host_urls_are_refused() {
        assert!(matches!(
            App::new("tsr_app_nope", "http://h"),
            Err(Error::InvalidKey(_))
        ));
        for bad in [
            "127.0.0.1:8080",
            "ftp://h/",
            "http://h/?x=1",
            "http://u:p@h/",
            "mailto:a@b",
        ] {
            assert!(
                matches!(App::new(KEY, bad), Err(Error::InvalidInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn constraints_only_ever_narrow() {
        let app = App::new(KEY, "http://h").unwrap();
        assert_eq!(app.constraints(), None);
        let a = app.with_constraints(&[
            Scope::ProxyExecute,
            Scope::TokensRetrieve,
            Scope::ProxyExecute,
        ]);
        assert_eq!(
            a.constraints(),
            Some(&[Scope::TokensRetrieve, Scope::ProxyExecute][..])
        );
        let b = a.with_constraints(&[Scope::ProxyExecute, Scope::AuditRead]);
        assert_eq!(b.constraints(), Some(&[Scope::ProxyExecute][..]));
        let none = b.with_constraints(&[Scope::AuditRead]);
        assert_eq!(none.constraints(), Some(&[][..]));
        // The original is untouched.
        assert_eq!(app.constraints(), None);
        let headers = none.attribution_headers().unwrap();
        assert_eq!(headers, vec![(CONSTRAINTS_HEADER, String::new())]);
    }

    #[test]
    fn attribution_headers_carry_constraints_then_caller_and_refuse_odd_callers() {
        let app = App::new(KEY, "http://h")
            .unwrap()
            .caller("email-bot")
            .with_constraints(&[Scope::GrantsRead, Scope::TokensRetrieve]);
        assert_eq!(
            app.attribution_headers().unwrap(),
            vec![
                (CONSTRAINTS_HEADER, "tokens:retrieve grants:read".to_owned()),
                (CALLER_HEADER, "email-bot".to_owned()),
            ]
        );
        for bad in ["", " padded", "line\nbreak", "bøt", &"x".repeat(129)] {
            let app = App::new(KEY, "http://h").unwrap().caller(bad);
            assert!(
                matches!(app.attribution_headers(), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_shows_the_key_id_but_never_the_key() {
        let app = App::new(KEY, "http://h").unwrap().caller("bot");
        let debug = format!("{app:?}");
        assert!(debug.contains("5e1f0a7c3b9d2468"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(!debug.contains("AAECAwQF"), "{debug}");
        assert!(!debug.contains("c2dbb784"), "{debug}");
    }
}
