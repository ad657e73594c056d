//! The error body of the Tessera HTTP API: an RFC 9457 problem document
//! (`application/problem+json`) with a stable machine `code`. The host serialises it and the
//! SDKs deserialise it, so both read the same fields.
//!
//! Clients branch on `code` (and `status`), never on `title` or `detail`, which are for people
//! and may be reworded. A problem never carries key material, signatures or tokens.

use serde::{Deserialize, Serialize};

use crate::scopes::Scope;

/// The media type of a problem document (RFC 9457 §3).
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The `type` of every Tessera problem: no semantics beyond the HTTP status, so the
/// machine-readable distinction is `code` (RFC 9457 §4.2.1).
pub const ABOUT_BLANK: &str = "about:blank";

/// One RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// The problem type URI (`about:blank`).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary for people: the HTTP reason phrase for `about:blank`.
    pub title: String,
    /// The HTTP status code, repeated in the body.
    pub status: u16,
    /// What went wrong in this occurrence, for people.
    pub detail: String,
    /// The stable machine code (`signature_missing`, `insufficient_scope`, …).
    pub code: String,
    /// For `insufficient_scope`: the Tessera scopes the key lacks for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_scopes: Option<Vec<Scope>>,
    /// For `ambiguous_grant`: the grants the call could have meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<crate::calls::GrantCandidate>>,
    /// For `policy_denied`: the name of the policy rule that refused the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For `approval_pending` and the other approval codes: the approval's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_scopes_is_omitted_unless_set_and_round_trips() {
        let mut p = Problem {
            problem_type: ABOUT_BLANK.into(),
            title: "Unauthorized".into(),
            status: 401,
            detail: "the request is not signed".into(),
            code: "signature_missing".into(),
            missing_scopes: None,
            candidates: None,
            rule: None,
            approval_id: None,
        };
        let json = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(json["type"], "about:blank");
        assert!(json.get("missing_scopes").is_none(), "{json}");

        p.missing_scopes = Some(vec![Scope::GrantsRead]);
        let json = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(json["missing_scopes"], serde_json::json!(["grants:read"]));
        let back: Problem = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, p);
    }
}
