//! Human-in-the-loop approvals as clients see them: `GET /v1/approvals`,
//! `GET /v1/approvals/{id}`, `POST /v1/approvals/{id}/approve|deny`,
//! `GET /v1/approvals/{id}/outcome`, and `tessera approval … --json`.
//!
//! A proxied call that a `require_approval` policy rule matches is not sent: the host stores
//! the exact request (sealed) with its SHA-256 and answers `202 approval_pending` with the
//! approval's id. A person (the grant's user in the wallet, or an operator) sees that exact
//! request and approves or denies it; on approval the host sends the stored bytes once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where an approval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a person.
    Pending,
    /// Approved and being sent (or the host stopped while sending it: it is never sent
    /// again).
    Approved,
    /// Approved and sent: `response_status` is the provider's answer.
    Executed,
    /// Approved, but sending failed (`error_code` says why): it is not sent again.
    Failed,
    /// Denied: final.
    Denied,
    /// Nobody decided in time: final.
    Expired,
}

impl ApprovalStatus {
    /// Every status.
    pub const ALL: [ApprovalStatus; 6] = [
        Self::Pending,
        Self::Approved,
        Self::Executed,
        Self::Failed,
        Self::Denied,
        Self::Expired,
    ];

    /// The text form (`pending`, `approved`, …), as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Executed => "executed",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }

    /// Whether nothing more can happen to it.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Approved)
    }
}

impl std::str::FromStr for ApprovalStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not an approval status (pending, approved, executed, failed, denied, expired)"
                )
            })
    }
}

/// The request an approval holds, exactly as it will be sent (before the provider's auth
/// is added), with header values that may be secret redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeldRequest {
    /// The HTTP method.
    pub method: String,
    /// The URL (query values that may be secret redacted).
    pub url: String,
    /// The headers, in order; values that may be secret are `[redacted]`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::calls::header_pairs))]
    pub headers: Vec<(String, String)>,
    /// The body, base64 (standard alphabet); absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The body as text, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    /// The body's size in bytes.
    pub body_bytes: u64,
    /// SHA-256 (lower-case hex) of the exact stored request: approving with this value
    /// binds the decision to what was shown.
    pub sha256: String,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    /// Its id (a UUID).
    pub id: String,
    /// Where it is.
    pub status: ApprovalStatus,
    /// The grant the request would use.
    pub grant_id: String,
    /// The grant's provider.
    pub provider: String,
    /// The app that asked, by name (the wallet's listings say it; the app's own API leaves it
    /// out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// The grant's principal (`user:ISSUER:SUB`, `group:NAME`, `agent:ID`, `system`).
    pub principal: String,
    /// The agent that asked, if an agent key (or an app key acting as the agent) did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The API key that asked.
    pub key_id: String,
    /// The caller name the SDK declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The developer's stated reason for the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The call's context map.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, String>,
    /// The policy rule that asked for approval.
    pub rule: String,
    /// The method, for lists (also in `request`).
    pub method: String,
    /// The URL with secret query values redacted, for lists (also in `request`).
    pub url: String,
    /// The stored request; present on `GET /v1/approvals/{id}` (lists leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeldRequest>,
    /// SHA-256 (lower-case hex) of the stored request.
    pub request_sha256: String,
    /// When it was asked for (RFC 3339).
    pub created_at: String,
    /// When it expires unless decided (RFC 3339).
    pub expires_at: String,
    /// When it was decided or expired (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// Who decided: `operator:LOGIN`, `app_key:KEY_ID`, `user:ISSUER:SUB`, or `host` for an
    /// expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Where it was decided: `cli`, `api`, `wallet`, or `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_via: Option<String>,
    /// The decider's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When the approved request was sent (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed_at: Option<String>,
    /// The provider's status for the sent request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<u16>,
    /// Why sending failed: a stable call error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// A page of approvals, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalPage {
    /// The approvals.
    pub items: Vec<Approval>,
}

/// `POST /v1/approvals/{id}/approve` and `…/deny`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// The `request.sha256` the decider was shown. When given, an approval whose stored
    /// request has another hash is refused (`approval_mismatch`) and nothing is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<String>,
    /// A note for the audit log and the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_finality_is_right() {
        for s in ApprovalStatus::ALL {
            assert_eq!(s.as_str().parse::<ApprovalStatus>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        assert!(!ApprovalStatus::Pending.is_final());
        assert!(!ApprovalStatus::Approved.is_final());
        assert!(ApprovalStatus::Denied.is_final());
        assert!("maybe".parse::<ApprovalStatus>().is_err());
    }
}
