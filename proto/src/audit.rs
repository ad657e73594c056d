//! Audit rows on the wire: what `GET /v1/audit` returns and `tessera audit export --format
//! jsonl` writes, one object per row. Never carries a secret: secret header values are
//! replaced by `[redacted]` before a row is written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Position in the hash chain (1, 2, …), gap-free.
    pub seq: i64,
    /// Unique id of the row.
    pub id: String,
    /// When it happened (RFC 3339, milliseconds).
    pub at: String,
    /// The app concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Who acted: `app_key`, `agent`, `user`, `operator` or `host`.
    pub actor_kind: String,
    /// The acting key id, user, or operator name.
    pub actor_id: String,
    /// The API key that signed the request, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The caller name the SDK declared (`App::caller`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// What happened: `tokens.retrieve`, `proxy.execute`, `grant.create`, `grant.rotate`,
    /// `grant.revoke`, `key.create`, `key.revoke`, …
    pub action: String,
    /// The provider concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The grant concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The grant's principal (text form, see `grants::Principal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `ok`, `denied` or `error`.
    pub outcome: String,
    /// The caller's stated reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The caller's context attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, String>,
    /// The host's request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Action-specific facts: mode, method, host, path, status, latency, the error code, for
    /// revocations where from (`cli`, `api`, `wallet`), for proxy calls the redacted wire
    /// metadata.
    #[serde(default)]
    pub detail: serde_json::Value,
    /// hex(SHA-256) of the previous row (all zeros for the first).
    pub prev_hash: String,
    /// hex(SHA-256) over this row's canonical form and `prev_hash`.
    pub hash: String,
}

/// A page of audit rows (`GET /v1/audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// Rows, oldest first within the page.
    pub items: Vec<AuditEvent>,
    /// Pass as `after` to continue; absent when there is nothing more now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}
