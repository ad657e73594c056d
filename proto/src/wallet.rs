//! The wallet's API (`/wallet/api/…`) as the wallet's browser code sees it. Authenticated by
//! the session cookie the wallet's sign-in sets; every call that changes something also
//! carries the session's CSRF token in `x-csrf-token`. A user sees only what is theirs: the
//! grants whose principal is them, the delegations of those grants, their activity, and the
//! approvals of calls made with them.

use serde::{Deserialize, Serialize};

use crate::grants::Grant;

/// The header every state-changing wallet request carries: the session's `csrf_token`.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "tessera_wallet";

/// `GET /wallet/api/session`: who is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletSession {
    /// The identity provider.
    pub issuer: String,
    /// The user at it.
    pub subject: String,
    /// Their email, when the identity provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Their name, when the identity provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The value to send in `x-csrf-token` with every request that changes something.
    pub csrf_token: String,
    /// When the session ends (RFC 3339).
    pub expires_at: String,
    /// The longest TTL the user may give a grant or delegation, in seconds.
    pub max_ttl_secs: u64,
}

/// An agent a grant is delegated to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletDelegation {
    /// The delegation's id.
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it ends by itself (RFC 3339); absent: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// One of the user's grants, with its app and delegations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletGrant {
    /// The app that holds it.
    pub app_id: String,
    /// The app's name.
    pub app_name: String,
    /// The provider's display name.
    pub provider_name: String,
    /// The grant.
    pub grant: Grant,
    /// Its scopes in words, where the provider declares them (scope → words).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub scope_labels: std::collections::BTreeMap<String, String>,
    /// The live delegations of it.
    pub delegations: Vec<WalletDelegation>,
}

/// `GET /wallet/api/grants`: the user's live grants, by app name, newest first within an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletGrantPage {
    /// The grants.
    pub items: Vec<WalletGrant>,
}

/// `POST /wallet/api/grants/{id}/reconnect`: where to send the browser to connect the grant's
/// account again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletReconnect {
    /// The connect page (the same consent page as the first connection).
    pub connect_url: String,
    /// The connect session.
    pub session_id: String,
}

/// `PUT /wallet/api/grants/{id}/ttl` and `PUT /wallet/api/delegations/{id}/ttl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WalletTtlRequest {
    /// Seconds from now, at most the session's `max_ttl_secs`.
    pub ttl_secs: u64,
}
