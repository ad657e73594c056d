//! Connect sessions on the wire: `POST /v1/connect/sessions` starts one end user's way
//! through a provider's authorization and returns the link to send them to;
//! `GET /v1/connect/sessions/{id}` says how far it got (headless `connect()` polls it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::grants::Principal;

/// `POST /v1/connect/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConnectSessionRequest {
    /// The provider to connect, e.g. `github` (configured for the app with
    /// `tessera provider configure`).
    pub provider: String,
    /// Whose grant the connection becomes, e.g. `user:https://idp.example.com:alice`.
    pub principal: Principal,
    /// Narrows the scopes requested to these; each must be among the app's configured scopes
    /// for the provider. Absent: all configured scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_scopes: Option<Vec<String>>,
    /// Where the end user's browser goes when the flow ends, with `session_id` and `status`
    /// (and `error` on failure) added to its query. Absent: the host shows its own result
    /// page. `http` or `https`, absolute, no fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    /// Per-connection parameters the provider declares (Shopify `shop`, Microsoft
    /// `tenant`), added to the ones the operator configured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connection_params: BTreeMap<String, String>,
    /// An agent of the app (id or name) the user's grant will be delegated to: the consent
    /// page names it, and the user's consent creates the delegation. Needs a `user:`
    /// principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// How long that delegation lasts, in seconds (at most a year); absent: until revoked.
    /// Only with `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_ttl_secs: Option<u64>,
    /// A TTL for the grant the user creates, in seconds (at most two years): after it, calls
    /// with the grant fail with `grant_expired` until it is extended or the user connects
    /// again. Absent: no TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_ttl_secs: Option<u64>,
}

/// Where a connect session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConnectStatus {
    /// Created; the end user has not opened the link and agreed yet.
    Pending,
    /// The end user was sent to the provider to authorize.
    Authorizing,
    /// The provider sent the user back; the host is exchanging the code.
    Exchanging,
    /// Done: `grant_id` names the grant.
    Completed,
    /// Ended without a grant: `error` says why.
    Failed,
    /// The link or the authorization took too long.
    Expired,
}

impl ConnectStatus {
    /// Whether the session can no longer change.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Expired)
    }

    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorizing => "authorizing",
            Self::Exchanging => "exchanging",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

/// Why a connect session failed: a stable `code` and words for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectError {
    /// `access_denied` (the user or the provider refused), `provider_error` (the provider
    /// answered with an error), `invalid_callback` (state, issuer or code checks failed),
    /// `provider_unreachable`, `host_not_allowed`, `component_failed`, `not_configured` (the
    /// app's OAuth client was removed meanwhile), `grant_not_stored`, `audit_unavailable`
    /// (connected, but the audit row could not be written: the grant exists),
    /// `delegation_not_stored` (connected, the grant exists, but the delegation to the
    /// session's agent could not be stored), `internal_error`, `expired`.
    pub code: String,
    /// What happened, in words. Never holds a token or a secret.
    pub message: String,
}

/// A connect session, as `POST` and `GET` return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectSession {
    /// The session id (for `GET /v1/connect/sessions/{id}`).
    pub id: String,
    /// The provider.
    pub provider: String,
    /// Whose grant it becomes.
    pub principal: Principal,
    /// The provider scopes it asks for.
    pub scopes: Vec<String>,
    /// Where it is.
    pub status: ConnectStatus,
    /// The link to send the end user to: the host's consent page. Only in the answer to
    /// `POST` (the host keeps only its hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_url: Option<String>,
    /// The grant, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The agent the grant is delegated to on consent, if the session names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ConnectError>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it stops accepting the end user (RFC 3339).
    pub expires_at: String,
}
