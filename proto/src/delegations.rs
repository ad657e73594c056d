//! Delegations as clients see them: `POST`/`GET /v1/delegations`,
//! `GET`/`DELETE /v1/delegations/{id}`, and `tessera delegation … --json`.
//!
//! A delegation lets one agent use one grant of its app that it does not own — a user's
//! grant the user delegated on a connect page that named the agent, or any grant an operator
//! mapped to the agent. Revoking it removes the agent's access and leaves the grant alone;
//! revoking the grant ends all of its delegations.

use serde::{Deserialize, Serialize};

/// One delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delegation {
    /// Its id (a UUID).
    pub id: String,
    /// The grant the agent may use.
    pub grant_id: String,
    /// The agent.
    pub agent_id: String,
    /// `consent` (the grant's user consented on a connect page naming the agent) or
    /// `operator` (an operator mapped the grant to the agent).
    pub origin: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it stops working by itself (RFC 3339); absent: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When it was revoked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Who revoked it: `operator`, `agent`, `user`, or `grant` (the grant was revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// A page of delegations (`GET /v1/delegations`), newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DelegationPage {
    /// The delegations of this page.
    pub items: Vec<Delegation>,
}

/// `POST /v1/delegations`: let an agent use an existing grant of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateDelegationRequest {
    /// The grant.
    pub grant_id: String,
    /// The agent, by id or by name.
    pub agent: String,
    /// How long the delegation lasts, in seconds (at most a year); absent: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}
