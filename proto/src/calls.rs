//! The two call modes on the wire: `POST /v1/retrieve` (the SDK sends the request itself with
//! auth material the host computed) and `POST /v1/proxy` (the host sends it), plus the
//! headers an SDK and the host exchange around them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Request header an SDK sets to narrow its key's Tessera scopes for one request
/// (`with_constraints`): space- or comma-separated scope names. The host uses the
/// intersection with the key's scopes; it can only narrow. Covered by the request signature
/// whenever it is sent (`docs/SIGNING.md` §2), so nobody on the way can strip it.
pub const CONSTRAINTS_HEADER: &str = "tessera-constraints";

/// Request header naming the caller for attribution (`App::caller("email-bot")`). It is
/// recorded in the audit log; it is not an access boundary.
pub const CALLER_HEADER: &str = "tessera-caller";

/// Request header with which an app key acts as one of its agents (impersonation): the
/// agent's id. The request is then held to exactly what that agent may do, and audited as
/// the agent's with the app key named as the one acting. Covered by the request signature
/// whenever it is sent; an agent key may not send it.
pub const AGENT_HEADER: &str = "tessera-agent";

/// Response header the host sets on a proxied response that came from the provider, so an
/// SDK can tell a provider's `404` from the host's own. Its value is the provider id.
pub const UPSTREAM_HEADER: &str = "tessera-upstream";

/// Response header carrying the host's id for the call, also in the audit row.
pub const REQUEST_ID_HEADER: &str = "tessera-request-id";

/// Which grant a call uses: by id, or found by the host from who is asking (the end user's
/// `user_token`, the agent key, or the app itself), the provider (named, or inferred from the
/// URL's host) and the upstream `account`. `docs/ARCHITECTURE.md` (Decisions, "Grant
/// resolution") gives the order in which the host looks.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantSelector {
    /// The grant, by id. Wins over everything else; with a `user_token`, the grant must also
    /// be that user's (or one of their groups').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The end user's JWT from the app's identity provider: the call is made on their behalf,
    /// with their grant (or their group's). Verified against the app's identity provider
    /// configuration; never stored or logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_token: Option<String>,
    /// The provider id, when not inferred from the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Picks among several grants of one provider by their account label (the login, email
    /// or workspace the grant covers); compared without regard to case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl std::fmt::Debug for GrantSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantSelector")
            .field("grant_id", &self.grant_id)
            .field(
                "user_token",
                &self.user_token.as_ref().map(|_| "[redacted]"),
            )
            .field("provider", &self.provider)
            .field("account", &self.account)
            .finish()
    }
}

/// One grant a call could have meant, listed in an `ambiguous_grant` problem so the caller
/// can name one (`grant_id`, or `account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantCandidate {
    /// Its id.
    pub grant_id: String,
    /// Its provider.
    pub provider: String,
    /// Its account label (may be empty when the provider names none).
    pub account: String,
    /// Its principal, in text form (`user:…`, `group:…`, `system`, `agent:…`).
    pub principal: String,
}

/// What a caller says about why it makes a call, kept in the audit row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallNote {
    /// Free text: why this call is made ("sync invoices for customer 42").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Free-form string attributes (ticket id, run id, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, String>,
}

/// `POST /v1/retrieve`: the request the SDK is about to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetrieveRequest {
    /// Which grant.
    #[serde(flatten)]
    pub grant: GrantSelector,
    /// HTTP method, upper case.
    pub method: String,
    /// The full `https` URL, with any query.
    pub url: String,
    /// The headers the SDK will send, in order (names as given).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = header_pairs))]
    pub headers: Vec<(String, String)>,
    /// `hex(SHA-256(body))` of the body the SDK will send (the empty body's when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// The body itself, base64, for providers whose signature covers it (AWS `SigV4`). When
    /// given, it must hash to `body_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Reason and context for the audit log.
    #[serde(flatten)]
    pub note: CallNote,
}

/// The answer of `POST /v1/retrieve`: what to change on the described request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetrieveResponse {
    /// The grant used.
    pub grant_id: String,
    /// The provider.
    pub provider: String,
    /// The URL to send to: the described one, with any query parameters the provider adds.
    pub url: String,
    /// Headers to set, replacing any of the same name (case-insensitive).
    #[cfg_attr(feature = "openapi", schema(schema_with = header_pairs))]
    pub set_headers: Vec<(String, String)>,
    /// When the material stops working (RFC 3339), if the credential expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The host's id for this call (also in the audit log).
    pub request_id: String,
}

/// `POST /v1/proxy`: the request the host should send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProxyRequest {
    /// Which grant.
    #[serde(flatten)]
    pub grant: GrantSelector,
    /// HTTP method, upper case.
    pub method: String,
    /// The full `https` URL, with any query.
    pub url: String,
    /// Headers to send (the host adds the provider's auth and drops hop-by-hop ones).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = header_pairs))]
    pub headers: Vec<(String, String)>,
    /// The body, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Reason and context for the audit log.
    #[serde(flatten)]
    pub note: CallNote,
}

/// The schema of a header list on the wire: an array of `[name, value]` pairs, each exactly
/// two strings (`Vec<(String, String)>` serialises as arrays, not objects, so that order and
/// repeated names survive).
#[cfg(feature = "openapi")]
pub fn header_pairs() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, Type};
    let text = |what: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(what))
    };
    let pair = ArrayBuilder::new()
        .prefix_items([text("Header name"), text("Header value")])
        .items(ArrayItems::False)
        .min_items(Some(2))
        .max_items(Some(2));
    ArrayBuilder::new()
        .items(pair)
        .examples([serde_json::json!([["content-type", "application/json"]])])
        .build()
}

/// Every stable `code` a host problem document may carry for a call, so that SDKs can map
/// them to typed errors. Signature codes are listed in `docs/SIGNING.md`.
pub mod codes {
    /// No grant with this id is visible to the caller.
    pub const GRANT_NOT_FOUND: &str = "grant_not_found";
    /// The grant was revoked.
    pub const GRANT_REVOKED: &str = "grant_revoked";
    /// The grant needs the user to connect again.
    pub const GRANT_REAUTH_REQUIRED: &str = "grant_reauth_required";
    /// The grant's TTL ran out (`410`): connect again, or extend it.
    pub const GRANT_EXPIRED: &str = "grant_expired";
    /// Several grants fit the call; the problem lists them (`candidates`) with their account
    /// labels: name one with `grant_id` or `account`.
    pub const AMBIGUOUS_GRANT: &str = "ambiguous_grant";
    /// The call's `user_token` is not a valid token of the app's identity provider (bad
    /// signature, wrong issuer or audience, unknown key, refused algorithm, malformed).
    pub const USER_TOKEN_INVALID: &str = "user_token_invalid";
    /// The call's `user_token` has expired.
    pub const USER_TOKEN_EXPIRED: &str = "user_token_expired";
    /// The call has a `user_token` but the app has no identity provider configured.
    pub const IDP_NOT_CONFIGURED: &str = "idp_not_configured";
    /// The app's identity provider's keys could not be fetched; retrying later may help.
    pub const IDP_UNAVAILABLE: &str = "idp_unavailable";
    /// The URL's host is outside the provider's declared hosts.
    pub const HOST_NOT_ALLOWED: &str = "host_not_allowed";
    /// The provider could not be reached (connection, TLS, timeout).
    pub const PROVIDER_UNREACHABLE: &str = "provider_unreachable";
    /// The provider's component failed (trap, timeout, malformed output).
    pub const COMPONENT_FAILED: &str = "component_failed";
    /// The provider's component refused the request or the input.
    pub const PROVIDER_REJECTED: &str = "provider_rejected";
    /// The provider is not loaded on this host.
    pub const PROVIDER_NOT_FOUND: &str = "provider_not_found";
    /// The app has no OAuth client configured for this provider (also for another app's).
    pub const PROVIDER_CONFIG_NOT_FOUND: &str = "provider_config_not_found";
    /// The request is malformed (bad URL, method, header, base64, digest).
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The provider's response exceeded the host's size limit.
    pub const RESPONSE_TOO_LARGE: &str = "response_too_large";
    /// The credential could not be refreshed (the token endpoint failed, timed out or
    /// answered something unreadable); the stored credential is unchanged. Retrying later
    /// may help; a dead refresh token is `grant_reauth_required` instead.
    pub const REFRESH_FAILED: &str = "refresh_failed";
    /// The provider refused the call because the grant lacks a scope (an RFC 6750
    /// `insufficient_scope` answer): the user must connect again granting it. The problem's
    /// detail names the missing scopes where the provider said.
    pub const SCOPE_REAUTH_REQUIRED: &str = "scope_reauth_required";
    /// The audit row could not be written, so the call was refused.
    pub const AUDIT_UNAVAILABLE: &str = "audit_unavailable";
    /// The key lacks Tessera scopes.
    pub const INSUFFICIENT_SCOPE: &str = "insufficient_scope";
    /// One of the app's policy rules refused the call; the problem's `rule` names it.
    pub const POLICY_DENIED: &str = "policy_denied";
    /// A rate-limit policy rule refused the call (`429`, with `Retry-After`); the problem's
    /// `rule` names it.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The app's policy rules could not be read, so the call was refused (fail closed).
    pub const POLICY_UNAVAILABLE: &str = "policy_unavailable";
    /// A retrieve call on a grant that requires approval (`400`): such grants are used only
    /// in proxy mode, where the host sends the approved bytes itself. No setting changes this.
    pub const HITL_GRANT_REQUIRES_PROXY: &str = "hitl_grant_requires_proxy";
    /// The proxied call waits for a person (`202`): the problem's `approval_id` names the
    /// approval; poll `GET /v1/approvals/{id}/outcome` (the SDK's `wait_for_approval`).
    pub const APPROVAL_PENDING: &str = "approval_pending";
    /// The approval was denied (`403`, final).
    pub const APPROVAL_DENIED: &str = "approval_denied";
    /// Nobody decided the approval in time (`410`, final).
    pub const APPROVAL_EXPIRED: &str = "approval_expired";
    /// No approval with this id is visible to the caller (`404`).
    pub const APPROVAL_NOT_FOUND: &str = "approval_not_found";
    /// The approval was already decided, so this decision was not taken (`409`).
    pub const APPROVAL_DECIDED: &str = "approval_decided";
    /// The decision named a request hash other than the stored request's, or the stored
    /// request no longer matches its hash (`409`): nothing was sent.
    pub const APPROVAL_MISMATCH: &str = "approval_mismatch";
}
