//! The two call modes: **retrieve** (the host signs the request the SDK described and hands
//! back the auth material; the SDK sends it) and **proxy** (the host signs and sends it, and
//! relays the provider's answer, streamed).
//!
//! Every call: resolve the grant (the caller's app only; an agent only its own grants) →
//! check the URL against the provider's declared hosts → the component's `sign` → (proxy)
//! send through [`Egress`], checking the signed URL again → write the audit row → answer.
//! The audit row is written before the answer leaves: if it cannot be written, the call
//! fails with `audit_unavailable` and the auth material or the provider's response is
//! withheld (fail closed).
//!
//! Must never: hand out auth material for a host outside the allow-list, put a header value
//! that may be secret into an audit row or a log line (headers are redacted first), or
//! forward hop-by-hop headers.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::Stream;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tessera_proto::calls::{
    CallNote, GrantCandidate, GrantSelector, ProxyRequest, RetrieveRequest, RetrieveResponse, codes,
};

use crate::audit::{self, Action, Actor, ActorKind, AuditEntry, AuditError, AuditLog, Outcome};
use crate::egress::{self, EgressError, OpenResponse};
use crate::grants::{GrantError, Grants, Owner, Resolved, provider_error_text, unix_seconds};
use crate::identity::{IdentityError, Verifier};
use crate::oauth::refresh::{Reason, Refresher};
use crate::plugin::PluginError;
use crate::plugin::types::{Classification, HttpRequest, ProviderError};
use crate::policy::{self, CallAction, Facts, Policies, Verdict};
use crate::store::grants::GrantRecord;
use crate::store::{AgentId, Timestamp};
use tessera_proto::grants::GrantKind;

/// The largest request body a proxied call may carry, in bytes (after base64 decoding).
pub const MAX_PROXY_BODY: usize = 768 * 1024;

mod approvals;
mod resolve;

pub use approvals::{ApprovalFilter, MAX_WAIT};

/// Who makes a call, as the audit log records it.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The caller's app (and agent).
    pub owner: Owner,
    /// The API key that signed the request.
    pub key_id: String,
    /// The caller name the SDK declared (attribution only).
    pub caller: Option<String>,
    /// The host's id for this request.
    pub request_id: String,
    /// Whether an app key acts as `owner.agent_id` (audited as the agent's call with the app
    /// key named in `impersonated_by`).
    pub impersonating: bool,
    /// The calling client's address (policy rules may restrict it).
    pub client_ip: std::net::IpAddr,
    /// The grant epoch this request's nonce transaction saw (SQLite; `0`: none, and then
    /// the grant is read again): see `Grants::find_usable_at`.
    pub grant_epoch: i64,
}

/// What a call asks for, as both modes describe it.
struct Ask<'a> {
    action: CallAction,
    selector: &'a GrantSelector,
    method: &'a str,
    url: &'a str,
    headers: &'a [(String, String)],
    note: &'a CallNote,
}

impl CallContext {
    fn actor(&self) -> Actor {
        match self.owner.agent_id {
            Some(agent) => Actor::new(ActorKind::Agent, agent.to_string()),
            None => Actor::new(ActorKind::AppKey, self.key_id.clone()),
        }
    }

    fn agent(&self) -> Option<AgentId> {
        self.owner.agent_id
    }
}

/// Why a call failed; each variant has a stable code ([`CallError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The grant could not be used.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The URL is outside the provider's hosts.
    #[error("{host} is not among the hosts {provider} may reach")]
    HostNotAllowed {
        /// The provider.
        provider: String,
        /// The host.
        host: String,
    },
    /// The provider could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// The provider's response exceeded the cap.
    #[error("{0}")]
    TooLarge(String),
    /// The component failed.
    #[error("the {provider} component failed: {source}")]
    Component {
        /// The provider.
        provider: String,
        /// What failed.
        source: PluginError,
    },
    /// The component refused to sign.
    #[error("{provider} refused the request: {reason}")]
    Rejected {
        /// The provider.
        provider: String,
        /// Its reason.
        reason: String,
        /// Whether the provider says the grant needs reconnecting.
        reauth: bool,
    },
    /// The provider refused the call for a missing scope.
    #[error(
        "{provider} refused the call for a scope this grant does not hold ({}); the user must connect again to grant it",
        if .missing.is_empty() { "not named".to_owned() } else { .missing.join(" ") }
    )]
    ScopeReauthRequired {
        /// The provider.
        provider: String,
        /// The missing scopes, where the provider named them.
        missing: Vec<String>,
    },
    /// The audit row could not be written: the call is refused.
    #[error("the audit log is unavailable, so the call was refused")]
    AuditUnavailable(#[source] AuditError),
    /// The call's `user_token` was refused.
    #[error(transparent)]
    UserToken(IdentityError),
    /// The call has a `user_token` but the app has no identity provider.
    #[error(
        "this app has no identity provider configured, so a user_token cannot be verified (tessera idp configure)"
    )]
    IdpNotConfigured,
    /// Several grants fit a call that named none.
    #[error(
        "{}{} grants fit this call; name one with grant_id or account",
        if *.more { "more than " } else { "" },
        .candidates.len()
    )]
    AmbiguousGrant {
        /// The grants it could mean (the first [`resolve::MAX_CANDIDATES`]).
        candidates: Vec<GrantCandidate>,
        /// Whether more than those fit.
        more: bool,
    },
    /// No grant fits a call that named none.
    #[error("{0}")]
    NoGrant(String),
    /// A policy rule refused the call.
    #[error("{why}")]
    PolicyDenied {
        /// The deciding rule's name.
        rule: String,
        /// Why, for people.
        why: String,
    },
    /// A rate-limit rule refused the call: too many in its window.
    #[error("{why}")]
    RateLimited {
        /// The rule's name.
        rule: String,
        /// Why, for people.
        why: String,
        /// Seconds until the window ends.
        retry_after: u64,
    },
    /// The app's policy rules could not be read: the call is refused (fail closed).
    #[error("the app's policy rules could not be read, so the call was refused")]
    PolicyUnavailable,
    /// A retrieve call on a grant that a require-approval rule covers.
    #[error(
        "policy rule {rule:?} makes calls with this grant wait for a person's approval, so the grant is used only in proxy mode (there is no setting that changes this)"
    )]
    HitlRequiresProxy {
        /// The rule's name.
        rule: String,
    },
    /// A require-approval rule matched a proxy call (internal: [`Calls::proxy`] turns it
    /// into [`CallError::ApprovalPending`] once the request is stored).
    #[error("policy rule {rule_name:?} holds this call for a person's approval")]
    Held {
        /// The rule's name.
        rule_name: String,
        /// How long a person has to decide, in seconds.
        ttl_secs: u32,
    },
    /// The proxied call waits for a person (`202`).
    #[error(
        "policy rule {rule:?} holds this call for a person's approval (approval {approval_id}, until {expires_at}); poll GET /v1/approvals/{approval_id}/outcome"
    )]
    ApprovalPending {
        /// The approval.
        approval_id: String,
        /// Its deadline (RFC 3339).
        expires_at: String,
        /// The rule's name.
        rule: String,
    },
    /// No approval with this id is visible to the caller.
    #[error("no approval {id} is visible to this key")]
    ApprovalNotFound {
        /// The id asked for.
        id: String,
    },
    /// The approval was decided (or expired) already.
    #[error("approval {id} is {status} already; a decision is final")]
    ApprovalDecided {
        /// The approval.
        id: String,
        /// Its status.
        status: String,
    },
    /// The approval was denied.
    #[error("approval {id} was denied{}", .note.as_ref().map(|n| format!(": {n}")).unwrap_or_default())]
    ApprovalDenied {
        /// The approval.
        id: String,
        /// The decider's note.
        note: Option<String>,
    },
    /// Nobody decided in time.
    #[error("approval {id} expired before anyone decided it")]
    ApprovalExpired {
        /// The approval.
        id: String,
    },
    /// The decision's hash is not the stored request's, or the stored request no longer
    /// opens or matches its hash: nothing was sent.
    #[error("{0}")]
    ApprovalMismatch(String),
    /// The approved request could not be sent.
    #[error("approval {id} was approved but its request failed ({code}): {detail}")]
    ApprovalFailed {
        /// The approval.
        id: String,
        /// The call error code.
        code: String,
        /// Why.
        detail: String,
    },
    /// Only an app key (or the operator, or the grant's user) may decide approvals.
    #[error(
        "approvals are decided by an operator, an app key or the grant's user, never by an agent key"
    )]
    AppKeyRequired,
}

impl CallError {
    /// The stable code of a grant error.
    pub fn grant_code(g: &GrantError) -> &'static str {
        match g {
            GrantError::NotFound { .. } => codes::GRANT_NOT_FOUND,
            GrantError::Revoked { .. } => codes::GRANT_REVOKED,
            GrantError::ReauthRequired { .. } => codes::GRANT_REAUTH_REQUIRED,
            GrantError::Expired { .. } => codes::GRANT_EXPIRED,
            GrantError::ProviderNotFound { .. } => codes::PROVIDER_NOT_FOUND,
            GrantError::Invalid(_) => codes::INVALID_REQUEST,
            GrantError::Rejected { .. } => codes::PROVIDER_REJECTED,
            GrantError::Component { .. } => codes::COMPONENT_FAILED,
            GrantError::RefreshFailed { .. } => codes::REFRESH_FAILED,
            GrantError::Egress(e) => egress_code(e),
            GrantError::Conflict(_) => "grant_conflict",
            GrantError::AuditUnavailable(_) => codes::AUDIT_UNAVAILABLE,
            GrantError::Vault(_) | GrantError::Store(_) => "internal_error",
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Grant(g) => Self::grant_code(g),
            CallError::Invalid(_) => codes::INVALID_REQUEST,
            CallError::HostNotAllowed { .. } => codes::HOST_NOT_ALLOWED,
            CallError::Unreachable(_) => codes::PROVIDER_UNREACHABLE,
            CallError::TooLarge(_) => codes::RESPONSE_TOO_LARGE,
            CallError::Component { .. } => codes::COMPONENT_FAILED,
            CallError::Rejected { reauth: true, .. } => codes::GRANT_REAUTH_REQUIRED,
            CallError::Rejected { .. } => codes::PROVIDER_REJECTED,
            CallError::ScopeReauthRequired { .. } => codes::SCOPE_REAUTH_REQUIRED,
            CallError::AuditUnavailable(_) => codes::AUDIT_UNAVAILABLE,
            CallError::UserToken(e) => e.code(),
            CallError::IdpNotConfigured => codes::IDP_NOT_CONFIGURED,
            CallError::AmbiguousGrant { .. } => codes::AMBIGUOUS_GRANT,
            CallError::NoGrant(_) => codes::GRANT_NOT_FOUND,
            CallError::PolicyDenied { .. } => codes::POLICY_DENIED,
            CallError::RateLimited { .. } => codes::RATE_LIMITED,
            CallError::PolicyUnavailable => codes::POLICY_UNAVAILABLE,
            CallError::HitlRequiresProxy { .. } => codes::HITL_GRANT_REQUIRES_PROXY,
            CallError::Held { .. } | CallError::ApprovalPending { .. } => codes::APPROVAL_PENDING,
            CallError::ApprovalNotFound { .. } => codes::APPROVAL_NOT_FOUND,
            CallError::ApprovalDecided { .. } => codes::APPROVAL_DECIDED,
            CallError::ApprovalDenied { .. } => codes::APPROVAL_DENIED,
            CallError::ApprovalExpired { .. } => codes::APPROVAL_EXPIRED,
            CallError::ApprovalMismatch(_) => codes::APPROVAL_MISMATCH,
            CallError::ApprovalFailed { .. } => "approval_failed",
            CallError::AppKeyRequired => "app_key_required",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        status_for_code(self.code())
    }
}

/// The HTTP status of a call or grant error code.
pub fn status_for_code(code: &str) -> u16 {
    match code {
        codes::APPROVAL_PENDING => 202,
        codes::GRANT_NOT_FOUND | codes::PROVIDER_NOT_FOUND | codes::APPROVAL_NOT_FOUND => 404,
        codes::GRANT_REVOKED | codes::GRANT_EXPIRED | codes::APPROVAL_EXPIRED => 410,
        codes::GRANT_REAUTH_REQUIRED
        | codes::AMBIGUOUS_GRANT
        | "grant_conflict"
        | codes::APPROVAL_DECIDED
        | codes::APPROVAL_MISMATCH => 409,
        codes::USER_TOKEN_INVALID | codes::USER_TOKEN_EXPIRED => 401,
        codes::SCOPE_REAUTH_REQUIRED
        | codes::POLICY_DENIED
        | codes::APPROVAL_DENIED
        | "app_key_required" => 403,
        codes::RATE_LIMITED => 429,
        codes::INVALID_REQUEST
        | codes::HOST_NOT_ALLOWED
        | codes::IDP_NOT_CONFIGURED
        | codes::HITL_GRANT_REQUIRES_PROXY => 400,
        codes::PROVIDER_REJECTED => 422,
        codes::PROVIDER_UNREACHABLE
        | codes::COMPONENT_FAILED
        | codes::RESPONSE_TOO_LARGE
        | codes::REFRESH_FAILED
        | "approval_failed" => 502,
        codes::AUDIT_UNAVAILABLE | codes::IDP_UNAVAILABLE | codes::POLICY_UNAVAILABLE => 503,
        _ => 500,
    }
}

/// The code of an egress failure.
pub fn egress_code(e: &EgressError) -> &'static str {
    match e {
        EgressError::HostNotAllowed { .. } => codes::HOST_NOT_ALLOWED,
        EgressError::InvalidRequest(_) => codes::INVALID_REQUEST,
        EgressError::Unreachable { .. } => codes::PROVIDER_UNREACHABLE,
        EgressError::TooLarge { .. } => codes::RESPONSE_TOO_LARGE,
    }
}

fn from_egress(provider: &str, e: EgressError) -> CallError {
    match e {
        EgressError::HostNotAllowed { host } => CallError::HostNotAllowed {
            provider: provider.to_owned(),
            host,
        },
        EgressError::InvalidRequest(m) => CallError::Invalid(m),
        e @ EgressError::Unreachable { .. } => CallError::Unreachable(e.to_string()),
        e @ EgressError::TooLarge { .. } => CallError::TooLarge(e.to_string()),
    }
}

/// A proxied response: the provider's status and headers, and its body as a stream.
pub struct ProxyResponse {
    /// The provider id.
    pub provider: String,
    /// The provider's status.
    pub status: u16,
    /// The provider's headers (hop-by-hop removed).
    pub headers: Vec<(String, String)>,
    /// The body, streamed; an item error means the stream was cut (size cap, connection).
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, EgressError>> + Send>>,
}

impl std::fmt::Debug for ProxyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyResponse")
            .field("provider", &self.provider)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The call service.
#[derive(Clone, Debug)]
pub struct Calls {
    grants: Grants,
    audit: AuditLog,
    refresher: Refresher,
    verifier: Verifier,
    policies: Policies,
}

/// What one call's audit row says about the request (filled as the call proceeds).
struct Trail {
    started: Instant,
    action: Action,
    provider: Option<String>,
    grant_id: Option<String>,
    principal: Option<String>,
    detail: serde_json::Map<String, serde_json::Value>,
    note: CallNote,
}

impl Trail {
    fn new(
        action: Action,
        grant_id: Option<&String>,
        note: &CallNote,
        method: &str,
        url: &str,
    ) -> Self {
        let mut detail = serde_json::Map::new();
        detail.insert(
            "mode".into(),
            json!(match action {
                Action::ProxyExecute => "proxy",
                _ => "retrieve",
            }),
        );
        detail.insert("method".into(), json!(method));
        if let Ok(u) = url::Url::parse(url) {
            detail.insert("host".into(), json!(u.host_str().unwrap_or_default()));
            detail.insert("path".into(), json!(u.path()));
        }
        Self {
            started: Instant::now(),
            action,
            provider: None,
            grant_id: grant_id.cloned(),
            principal: None,
            detail,
            note: note.clone(),
        }
    }

    fn picked(&mut self, p: &resolve::Picked) {
        self.grant_id = Some(p.grant_id.clone());
        if let Some(user) = &p.user {
            self.detail.insert(
                "user".into(),
                json!(format!("{}:{}", user.issuer, user.subject)),
            );
        }
    }

    fn found(&mut self, g: &GrantRecord) {
        self.provider = Some(g.provider.clone());
        self.principal = Some(g.principal.to_string());
    }
}

impl Calls {
    /// A call service over the grant service and the audit log.
    pub fn new(grants: Grants, audit: AuditLog) -> Self {
        let timeout = grants.egress().timeout();
        let refresher = Refresher::new(grants.clone(), grants.configs().clone(), timeout);
        let verifier = Verifier::new(grants.egress().clone());
        let policies = Policies::new(grants.store().clone());
        Self {
            grants,
            audit,
            refresher,
            verifier,
            policies,
        }
    }

    /// The app's policy rules (shared with the API, so a change made through it takes effect
    /// on this instance at once).
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The same service, verifying user tokens with `verifier` (its key cache and refetch
    /// interval).
    #[must_use]
    pub fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = verifier;
        self
    }

    /// The same service, refreshing OAuth tokens that expire within `skew`.
    #[must_use]
    pub fn with_refresh_skew(mut self, skew: std::time::Duration) -> Self {
        self.refresher = self.refresher.with_skew(skew);
        self
    }

    /// The token refresher.
    pub fn refresher(&self) -> &Refresher {
        &self.refresher
    }

    /// The grant service.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    async fn write(
        &self,
        cx: &CallContext,
        trail: Trail,
        outcome: Outcome,
        extra: serde_json::Value,
    ) -> Result<(), AuditError> {
        self.audit
            .record(entry_of(cx, trail, outcome, extra))
            .await
            .map(|_| ())
    }

    /// Records a failed call (best effort: the caller gets the original error either way)
    /// and returns the error.
    async fn fail(&self, cx: &CallContext, trail: Trail, e: CallError) -> CallError {
        let outcome = match e.code() {
            codes::GRANT_NOT_FOUND
            | codes::GRANT_REVOKED
            | codes::GRANT_REAUTH_REQUIRED
            | codes::GRANT_EXPIRED
            | codes::HOST_NOT_ALLOWED
            | codes::AMBIGUOUS_GRANT
            | codes::USER_TOKEN_INVALID
            | codes::USER_TOKEN_EXPIRED
            | codes::IDP_NOT_CONFIGURED
            | codes::POLICY_DENIED
            | codes::RATE_LIMITED
            | codes::HITL_GRANT_REQUIRES_PROXY => Outcome::Denied,
            _ => Outcome::Error,
        };
        let extra = json!({ "error": e.code() });
        if let Err(audit_error) = self.write(cx, trail, outcome, extra).await {
            tracing::error!(error = %audit_error, "cannot record a failed call in the audit log");
        }
        e
    }

    /// Retrieve mode: signs the described request and returns what to change on it.
    pub async fn retrieve(
        &self,
        cx: &CallContext,
        request: RetrieveRequest,
    ) -> Result<RetrieveResponse, CallError> {
        let mut trail = Trail::new(
            Action::TokensRetrieve,
            request.grant.grant_id.as_ref(),
            &request.note,
            &request.method,
            &request.url,
        );
        match self.retrieve_inner(cx, &request, &mut trail).await {
            Ok(response) => {
                let extra = json!({ "set_headers": response.set_headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>() });
                self.write(cx, trail, Outcome::Ok, extra)
                    .await
                    .map_err(CallError::AuditUnavailable)?;
                Ok(response)
            }
            Err(e) => Err(self.fail(cx, trail, e).await),
        }
    }

    async fn retrieve_inner(
        &self,
        cx: &CallContext,
        request: &RetrieveRequest,
        trail: &mut Trail,
    ) -> Result<RetrieveResponse, CallError> {
        let body = decode_body(request.body_base64.as_deref(), MAX_PROXY_BODY)?;
        let digest = hex::encode(Sha256::digest(&body));
        if let Some(given) = &request.body_sha256 {
            if request.body_base64.is_some() && !given.eq_ignore_ascii_case(&digest) {
                return Err(CallError::Invalid(
                    "body_sha256 does not match the SHA-256 of body_base64".into(),
                ));
            }
            trail
                .detail
                .insert("body_sha256".into(), json!(given.to_ascii_lowercase()));
        }
        let (method, resolved) = self
            .admit(
                cx,
                Ask {
                    action: CallAction::Retrieve,
                    selector: &request.grant,
                    method: &request.method,
                    url: &request.url,
                    headers: &request.headers,
                    note: &request.note,
                },
                trail,
            )
            .await?;
        let provider = resolved.grant.provider.clone();
        let info = resolved.plugin.info();
        let described = HttpRequest {
            method: method.clone(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body,
        };
        let signed = self.sign(&resolved, described.clone()).await?;
        self.grants
            .egress()
            .check_url(&signed.url, &info.allowed_hosts, &resolved.params)
            .map_err(|e| from_egress(&provider, e))?;
        let set_headers = changed_headers(&described.headers, &signed.headers);
        self.grants.touch(resolved.grant.id).await;
        Ok(RetrieveResponse {
            grant_id: resolved.grant.id.to_string(),
            provider,
            url: signed.url,
            set_headers,
            expires_at: resolved.expires_at.map(Timestamp::to_rfc3339),
            request_id: cx.request_id.clone(),
        })
    }

    /// What both modes check before signing: the method and headers are well-formed, the
    /// grant is named, visible to the caller and usable, and the URL is inside the provider's
    /// hosts. Returns the method and the resolved grant.
    async fn admit(
        &self,
        cx: &CallContext,
        ask: Ask<'_>,
        trail: &mut Trail,
    ) -> Result<(String, Resolved), CallError> {
        let method = check_method(ask.method)?;
        check_headers(ask.headers)?;
        let picked = self.pick(cx, ask.selector, ask.url).await?;
        trail.picked(&picked);
        let found = self
            .grants
            .find_usable_at(cx.owner, &picked.grant_id, cx.grant_epoch)
            .await?;
        trail.found(&found.grant);
        if let Some(user) = &picked.user
            && !resolve::belongs_to(&found.grant.principal, user)
        {
            return Err(GrantError::NotFound {
                id: picked.grant_id.clone(),
            }
            .into());
        }
        if let Some(provider) = &ask.selector.provider
            && *provider != found.grant.provider
        {
            return Err(CallError::Invalid(format!(
                "grant {} is a {} grant, not {provider}",
                picked.grant_id, found.grant.provider
            )));
        }
        self.police(cx, &ask, &picked, &found.grant, &method, trail)
            .await?;
        let resolved = self.grants.open_found(found).await?;
        let resolved = self
            .refresher
            .ensure_fresh(resolved, Reason::Expiring)
            .await?;
        self.grants
            .egress()
            .check_url(
                ask.url,
                &resolved.plugin.info().allowed_hosts,
                &resolved.params,
            )
            .map_err(|e| from_egress(&resolved.grant.provider, e))?;
        Ok((method, resolved))
    }

    /// Puts the call to the app's policy rules (before any credential is opened); records
    /// the decision in the audit trail either way.
    async fn police(
        &self,
        cx: &CallContext,
        ask: &Ask<'_>,
        picked: &resolve::Picked,
        grant: &GrantRecord,
        method: &str,
        trail: &mut Trail,
    ) -> Result<(), CallError> {
        let groups: &[String] = picked.user.as_ref().map_or(&[], |u| u.groups.as_slice());
        let actor = match (cx.owner.agent_id, &picked.user) {
            (Some(agent), _) => policy::Actor::Agent(agent),
            (None, Some(user)) => policy::Actor::User {
                issuer: user.issuer.clone(),
                subject: user.subject.clone(),
            },
            (None, None) => policy::Actor::System(cx.owner.app_id),
        };
        let facts = Facts {
            action: ask.action,
            actor,
            agent: cx.owner.agent_id,
            groups,
            grant,
            method,
            url: ask.url,
            client_ip: cx.client_ip,
            caller: cx.caller.as_deref(),
            reason: ask.note.reason.as_deref(),
            tags: &ask.note.context,
            now: Timestamp::now(),
        };
        let verdict = self
            .policies
            .decide(cx.owner.app_id, &facts)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the app's policy rules could not be read; call refused");
                CallError::PolicyUnavailable
            })?;
        match verdict {
            Verdict::Allow { rules } => {
                trail.detail.insert(
                    "policy".into(),
                    json!({ "decision": "allow", "rules": rules }),
                );
                Ok(())
            }
            Verdict::Hold {
                rules,
                rule_id,
                rule_name,
                ttl_secs,
            } => {
                trail.detail.insert(
                    "policy".into(),
                    json!({ "decision": "hold", "rules": rules, "rule_id": rule_id, "rule": rule_name }),
                );
                Err(match ask.action {
                    CallAction::Retrieve => CallError::HitlRequiresProxy { rule: rule_name },
                    CallAction::Proxy => CallError::Held {
                        rule_name,
                        ttl_secs,
                    },
                })
            }
            Verdict::Deny {
                rule_id,
                rule_name,
                why,
                retry_after,
            } => {
                trail.detail.insert(
                    "policy".into(),
                    json!({ "decision": "deny", "rule_id": rule_id, "rule": rule_name }),
                );
                Err(match retry_after {
                    Some(retry_after) => CallError::RateLimited {
                        rule: rule_name,
                        why,
                        retry_after,
                    },
                    None => CallError::PolicyDenied {
                        rule: rule_name,
                        why,
                    },
                })
            }
        }
    }

    async fn sign(
        &self,
        resolved: &Resolved,
        request: HttpRequest,
    ) -> Result<HttpRequest, CallError> {
        let provider = resolved.grant.provider.clone();
        match resolved
            .plugin
            .sign_async(request, resolved.credential.clone(), unix_seconds())
            .await
        {
            Ok(Ok(signed)) => Ok(signed),
            Ok(Err(ProviderError::HostNotAllowed(host))) => {
                Err(CallError::HostNotAllowed { provider, host })
            }
            Ok(Err(e)) => Err(CallError::Rejected {
                reauth: matches!(e, ProviderError::ReauthorizeRequired(_)),
                reason: provider_error_text(&e),
                provider,
            }),
            Err(source) => Err(CallError::Component { provider, source }),
        }
    }

    /// Proxy mode: signs and sends the request, and returns the provider's response.
    pub async fn proxy(
        &self,
        cx: &CallContext,
        request: ProxyRequest,
    ) -> Result<ProxyResponse, CallError> {
        let mut trail = Trail::new(
            Action::ProxyExecute,
            request.grant.grant_id.as_ref(),
            &request.note,
            &request.method,
            &request.url,
        );
        match self.proxy_inner(cx, &request, &mut trail).await {
            Ok((response, wire)) => {
                self.write(cx, trail, Outcome::Ok, wire)
                    .await
                    .map_err(CallError::AuditUnavailable)?;
                Ok(response)
            }
            Err(CallError::Held {
                rule_name,
                ttl_secs,
            }) => Err(self.hold(cx, &request, trail, rule_name, ttl_secs).await),
            Err(e) => Err(self.fail(cx, trail, e).await),
        }
    }

    /// The provider answered `401` to `resolved`'s credential. If the component classifies it
    /// as a credential problem, refreshes once and sends the (buffered, so replayable)
    /// request again with the new credential; returns the response to relay and, after a
    /// retry, the request as signed the second time. A dead refresh token is
    /// `grant_reauth_required`; any other refresh failure relays the first answer.
    async fn retry_after_refresh(
        &self,
        resolved: &Resolved,
        open: OpenResponse,
        described: HttpRequest,
    ) -> Result<(OpenResponse, Option<HttpRequest>), CallError> {
        let provider = resolved.grant.provider.clone();
        let info = resolved.plugin.info();
        let first = open
            .into_response()
            .await
            .map_err(|e| from_egress(&provider, e))?;
        let unauthorized = matches!(
            resolved
                .plugin
                .classify_async(first.clone(), unix_seconds())
                .await,
            Ok(Classification::Unauthorized)
        );
        if !unauthorized {
            return Ok((OpenResponse::buffered(first), None));
        }
        let seen = resolved.revision;
        let fresh = match self
            .refresher
            .ensure_fresh(self.grants.reload(resolved).await?, Reason::Refused)
            .await
        {
            Ok(fresh) if fresh.revision != seen => fresh,
            Ok(_) => return Ok((OpenResponse::buffered(first), None)),
            Err(e @ GrantError::ReauthRequired { .. }) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(grant = %resolved.grant.id, error = %e, "refresh after a 401 failed");
                return Ok((OpenResponse::buffered(first), None));
            }
        };
        let signed = self.sign(&fresh, described).await?;
        let again = self
            .grants
            .egress()
            .open(&signed, &info.allowed_hosts, &fresh.params)
            .await
            .map_err(|e| from_egress(&provider, e))?;
        Ok((again, Some(signed)))
    }

    async fn proxy_inner(
        &self,
        cx: &CallContext,
        request: &ProxyRequest,
        trail: &mut Trail,
    ) -> Result<(ProxyResponse, serde_json::Value), CallError> {
        let body = decode_body(request.body_base64.as_deref(), MAX_PROXY_BODY)?;
        let (method, resolved) = self
            .admit(
                cx,
                Ask {
                    action: CallAction::Proxy,
                    selector: &request.grant,
                    method: &request.method,
                    url: &request.url,
                    headers: &request.headers,
                    note: &request.note,
                },
                trail,
            )
            .await?;
        let described = HttpRequest {
            method,
            url: request.url.clone(),
            headers: forwarded_headers(&request.headers),
            body,
        };
        self.send(resolved, described, trail).await
    }

    /// Signs `described` with the resolved grant, sends it (refreshing once after a `401`
    /// where the provider allows), and returns the provider's answer and the audit row's
    /// wire metadata.
    async fn send(
        &self,
        resolved: Resolved,
        described: HttpRequest,
        trail: &mut Trail,
    ) -> Result<(ProxyResponse, serde_json::Value), CallError> {
        let provider = resolved.grant.provider.clone();
        let info = resolved.plugin.info().clone();
        let body_len = described.body.len();
        let mut signed = self.sign(&resolved, described.clone()).await?;
        self.grants.touch(resolved.grant.id).await;
        let mut open = self
            .grants
            .egress()
            .open(&signed, &info.allowed_hosts, &resolved.params)
            .await
            .map_err(|e| from_egress(&provider, e))?;
        let mut retried = false;
        if open.status == 401 && Refresher::refreshable(&resolved) {
            let (again, signed_again) =
                self.retry_after_refresh(&resolved, open, described).await?;
            open = again;
            if let Some(s) = signed_again {
                signed = s;
                retried = true;
            }
        }
        if open.status == 403 && resolved.grant.kind == GrantKind::Oauth {
            let answer = open
                .into_response()
                .await
                .map_err(|e| from_egress(&provider, e))?;
            if let Ok(Classification::InsufficientScope(missing)) = resolved
                .plugin
                .classify_async(answer.clone(), unix_seconds())
                .await
            {
                trail
                    .detail
                    .insert("upstream_status".into(), answer.status.into());
                return Err(CallError::ScopeReauthRequired { provider, missing });
            }
            open = OpenResponse::buffered(answer);
        }
        let wire = json!({
            "status": open.status,
            "request": {
                "url": audit::redact_url(&signed.url),
                "headers": audit::redact_headers(&signed.headers),
                "body_bytes": body_len,
            },
            "response": {
                "headers": audit::redact_headers(&open.headers),
            },
            "retried_after_refresh": retried,
        });
        let status = open.status;
        let headers = open.headers.clone();
        Ok((
            ProxyResponse {
                provider,
                status,
                headers,
                body: Box::pin(open.into_stream()),
            },
            wire,
        ))
    }
}

/// The audit row of a call: the trail, the outcome and the action-specific `extra` facts.
fn entry_of(
    cx: &CallContext,
    trail: Trail,
    outcome: Outcome,
    extra: serde_json::Value,
) -> AuditEntry {
    let mut detail = trail.detail;
    let latency_ms = trail.started.elapsed().as_secs_f64() * 1000.0;
    detail.insert("latency_ms".into(), json!(latency_ms));
    if let Some(agent) = cx.agent() {
        detail.insert("agent_id".into(), json!(agent.to_string()));
        if cx.impersonating {
            detail.insert("impersonated_by".into(), json!(cx.key_id));
        }
    }
    if let serde_json::Value::Object(extra) = extra {
        detail.extend(extra);
    }
    AuditEntry {
        at: Timestamp::now(),
        app_id: Some(cx.owner.app_id),
        actor: cx.actor(),
        key_id: Some(cx.key_id.clone()),
        caller: cx.caller.clone(),
        action: trail.action,
        provider: trail.provider,
        grant_id: trail.grant_id,
        principal: trail.principal,
        outcome,
        reason: trail.note.reason,
        context: trail.note.context,
        request_id: Some(cx.request_id.clone()),
        detail: serde_json::Value::Object(detail),
    }
}

/// The headers of a proxied request that are sent on: all but the hop-by-hop ones.
fn forwarded_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| !egress::is_hop_by_hop(n))
        .cloned()
        .collect()
}

fn check_method(method: &str) -> Result<String, CallError> {
    let ok =
        !method.is_empty() && method.len() <= 16 && method.bytes().all(|b| b.is_ascii_uppercase());
    if ok {
        Ok(method.to_owned())
    } else {
        Err(CallError::Invalid(format!(
            "method {method:?} is not an upper-case HTTP method"
        )))
    }
}

fn check_headers(headers: &[(String, String)]) -> Result<(), CallError> {
    for (name, value) in headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(CallError::Invalid(format!(
                "header name {name:?} is not valid"
            )));
        }
        if reqwest::header::HeaderValue::from_str(value).is_err() {
            return Err(CallError::Invalid(format!(
                "the value of header {name} is not valid"
            )));
        }
    }
    Ok(())
}

fn decode_body(b64: Option<&str>, limit: usize) -> Result<Vec<u8>, CallError> {
    let Some(b64) = b64 else {
        return Ok(Vec::new());
    };
    if b64.len() / 4 * 3 > limit + 3 {
        return Err(CallError::Invalid(format!(
            "the body is larger than {limit} bytes"
        )));
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| CallError::Invalid("body_base64 is not valid base64".into()))?;
    if body.len() > limit {
        return Err(CallError::Invalid(format!(
            "the body is larger than {limit} bytes"
        )));
    }
    Ok(body)
}

/// Headers of `signed` that are new or differ from `described` (names compared
/// case-insensitively): the auth material.
fn changed_headers(
    described: &[(String, String)],
    signed: &[(String, String)],
) -> Vec<(String, String)> {
    let before: BTreeMap<String, &str> = described
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
        .collect();
    signed
        .iter()
        .filter(|(n, v)| before.get(&n.to_ascii_lowercase()) != Some(&v.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_or_changed_headers_are_auth_material() {
        let described = vec![
            ("Accept".to_owned(), "application/json".to_owned()),
            ("X-Amz-Date".to_owned(), "old".to_owned()),
        ];
        let signed = vec![
            ("accept".to_owned(), "application/json".to_owned()),
            ("x-amz-date".to_owned(), "new".to_owned()),
            ("authorization".to_owned(), "Bearer t".to_owned()),
        ];
        assert_eq!(
            changed_headers(&described, &signed),
            vec![
                ("x-amz-date".to_owned(), "new".to_owned()),
                ("authorization".to_owned(), "Bearer t".to_owned())
            ]
        );
    }

    #[test]
    fn methods_and_bodies_are_checked() {
        assert!(check_method("GET").is_ok());
        assert!(check_method("get").is_err());
        assert!(check_method("GE T").is_err());
        assert!(decode_body(Some("aGk="), 10).is_ok_and(|b| b == b"hi"));
        assert!(decode_body(Some("!!"), 10).is_err());
        assert!(decode_body(Some("aGVsbG8gd29ybGQ="), 5).is_err());
    }
}
