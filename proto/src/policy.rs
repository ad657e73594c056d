//! Policy rules as clients see them: `GET`/`POST /v1/policy/rules`,
//! `GET`/`PUT`/`DELETE /v1/policy/rules/{id}`, `GET /v1/policy/schema`, and
//! `tessera policy rules … --json`.
//!
//! A rule only ever restricts: every call must already pass the base checks (the caller owns
//! or is delegated the grant, holds the scope, the grant is valid), and then every rule that
//! applies to it must pass too. A rule applies to one layer: the whole app, one provider of
//! the app, one grant, or one agent. Each rule compiles to a Cedar `forbid` policy; custom
//! rules are Cedar `forbid` policies written by the operator against the published schema.

use serde::{Deserialize, Serialize};

/// What a rule says, by kind. The wire form is an object with `kind` and the kind's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleKind {
    /// Calls only on these days, between these times, in this IANA time zone; refused
    /// outside. `end` before `start` spans midnight.
    TimeWindow {
        /// Days of the week the window is open: `mon` … `sun`.
        days: Vec<String>,
        /// Opening time, `HH:MM` (24-hour).
        start: String,
        /// Closing time, `HH:MM` (exclusive).
        end: String,
        /// The IANA time zone the times are in, e.g. `Europe/Paris`.
        time_zone: String,
    },
    /// Calls only from these client addresses: IPv4 or IPv6 addresses or CIDR ranges.
    IpAllow {
        /// The allowed addresses and ranges.
        ranges: Vec<String>,
    },
    /// Calls only on behalf of an end user in one of these identity-provider groups (the
    /// call must carry a `user_token` whose groups claim names one).
    Groups {
        /// The groups, any of which lets the call through.
        any_of: Vec<String>,
    },
    /// Refuses provider requests with these HTTP methods (`DELETE`, `POST`, …).
    Methods {
        /// The refused methods, upper case.
        deny: Vec<String>,
    },
    /// At most `limit` calls per `window_secs` (a fixed window, at most a day), counted per
    /// grant (`per: "grant"`) or per agent (`per: "agent"`, calls an agent makes); the call
    /// over the limit is refused with `429 rate_limited` and `Retry-After`.
    RateLimit {
        /// Calls allowed per window.
        limit: u32,
        /// The window, in seconds (1 to 86400).
        window_secs: u32,
        /// `grant` or `agent`.
        per: String,
    },
    /// Proxied calls matching `methods` and `paths` wait for a person's approval
    /// (`202 approval_pending`); the approved request is sent once, exactly as stored.
    /// Retrieve calls on a grant this rule covers are refused
    /// (`400 hitl_grant_requires_proxy`) whatever they ask for: auth material handed out
    /// is not bound to one request.
    RequireApproval {
        /// The methods that need approval (`POST`, …); empty: every method.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        methods: Vec<String>,
        /// URL path patterns that need approval, `*` matching any characters
        /// (`/gmail/v1/users/*/messages/send`); empty: every path.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        paths: Vec<String>,
        /// How long a person has to decide, in seconds (5 to 604800); default 3600.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_secs: Option<u32>,
    },
    /// A custom Cedar policy: one `forbid` policy, validated against the schema of
    /// `GET /v1/policy/schema`.
    Cedar {
        /// The policy text.
        policy: String,
    },
}

impl RuleKind {
    /// The kind's name, as in `kind`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TimeWindow { .. } => "time_window",
            Self::IpAllow { .. } => "ip_allow",
            Self::Groups { .. } => "groups",
            Self::Methods { .. } => "methods",
            Self::RateLimit { .. } => "rate_limit",
            Self::RequireApproval { .. } => "require_approval",
            Self::Cedar { .. } => "cedar",
        }
    }
}

/// `POST /v1/policy/rules` and `PUT /v1/policy/rules/{id}`: a rule to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleRequest {
    /// Unique within the app: 1 to 64 characters of `a-z A-Z 0-9 . _ -`. Named in every
    /// `policy_denied` answer and audit row it decides.
    pub name: String,
    /// What the rule applies to: `app` (every call of the app), `provider:ID`, `grant:ID`
    /// or `agent:ID`.
    pub applies_to: String,
    /// What it says.
    #[serde(flatten)]
    pub rule: RuleKind,
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyRule {
    /// Its id (a UUID).
    pub id: String,
    /// Its name, unique within the app.
    pub name: String,
    /// What it applies to: `app`, `provider:ID`, `grant:ID` or `agent:ID`.
    pub applies_to: String,
    /// What it says.
    #[serde(flatten)]
    pub rule: RuleKind,
    /// The Cedar policy it compiles to (for a custom rule, the policy as given).
    pub cedar: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// `GET /v1/policy/rules`: the app's rules by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyRulePage {
    /// The rules, by name.
    pub items: Vec<PolicyRule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_request_is_flat_with_its_kind() {
        let json = serde_json::json!({
            "name": "office-hours",
            "applies_to": "provider:github",
            "kind": "time_window",
            "days": ["mon", "tue"],
            "start": "09:00",
            "end": "18:00",
            "time_zone": "Europe/Paris",
        });
        let r: RuleRequest = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(r.rule.name(), "time_window");
        assert_eq!(serde_json::to_value(&r).unwrap(), json);
        let bad = serde_json::json!({"name": "x", "applies_to": "app", "kind": "teleport"});
        assert!(serde_json::from_value::<RuleRequest>(bad).is_err());
    }
}
