//! The catalog of Tessera scopes: what an API key may do on the host (as opposed to
//! provider scopes, which a grant holds at the provider). Shared by the host, which stores
//! and checks them, and by the SDKs, which attenuate themselves to a subset.
//!
//! Pure data: no policy lives here. Which endpoint needs which scope is the host's business.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One Tessera scope. The wire form is `resource:action` (see [`Scope::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Scope {
    /// Retrieve-mode calls: get the auth material for a request the SDK sends itself.
    #[serde(rename = "tokens:retrieve")]
    TokensRetrieve,
    /// Proxy-mode calls: the host sends the request to the provider.
    #[serde(rename = "proxy:execute")]
    ProxyExecute,
    /// List and read grants.
    #[serde(rename = "grants:read")]
    GrantsRead,
    /// Create, change and revoke grants.
    #[serde(rename = "grants:write")]
    GrantsWrite,
    /// List and read agents.
    #[serde(rename = "agents:read")]
    AgentsRead,
    /// Create, change and disable agents.
    #[serde(rename = "agents:write")]
    AgentsWrite,
    /// Start connect flows (consent URLs, headless connect).
    #[serde(rename = "connect:create")]
    ConnectCreate,
    /// Configure the app's OAuth clients for providers (client id and secret, scopes,
    /// redirect URI). Administrative: a key that only makes calls should not hold it.
    #[serde(rename = "providers:write")]
    ProvidersWrite,
    /// List and read approvals.
    #[serde(rename = "approvals:read")]
    ApprovalsRead,
    /// Decide approvals.
    #[serde(rename = "approvals:write")]
    ApprovalsWrite,
    /// Read the audit log.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// List and read the app's policy rules and the policy schema.
    #[serde(rename = "policies:read")]
    PoliciesRead,
    /// Create, change and delete the app's policy rules. Administrative.
    #[serde(rename = "policies:write")]
    PoliciesWrite,
    /// Configure the app's webhook endpoint and read its deliveries. Administrative.
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
}

impl Scope {
    /// Every scope, in catalog order (the order listings and error messages use).
    pub const ALL: [Scope; 14] = [
        Scope::TokensRetrieve,
        Scope::ProxyExecute,
        Scope::GrantsRead,
        Scope::GrantsWrite,
        Scope::AgentsRead,
        Scope::AgentsWrite,
        Scope::ConnectCreate,
        Scope::ProvidersWrite,
        Scope::ApprovalsRead,
        Scope::ApprovalsWrite,
        Scope::AuditRead,
        Scope::PoliciesRead,
        Scope::PoliciesWrite,
        Scope::WebhooksWrite,
    ];

    /// The wire name, e.g. `tokens:retrieve`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TokensRetrieve => "tokens:retrieve",
            Scope::ProxyExecute => "proxy:execute",
            Scope::GrantsRead => "grants:read",
            Scope::GrantsWrite => "grants:write",
            Scope::AgentsRead => "agents:read",
            Scope::AgentsWrite => "agents:write",
            Scope::ConnectCreate => "connect:create",
            Scope::ProvidersWrite => "providers:write",
            Scope::ApprovalsRead => "approvals:read",
            Scope::ApprovalsWrite => "approvals:write",
            Scope::AuditRead => "audit:read",
            Scope::PoliciesRead => "policies:read",
            Scope::PoliciesWrite => "policies:write",
            Scope::WebhooksWrite => "webhooks:write",
        }
    }

    /// Parses a comma- or whitespace-separated list (`"grants:read, proxy:execute"`), as
    /// a command line or a config file gives it. The result is sorted in catalog order
    /// without duplicates; empty items are ignored. The first unknown name is an error.
    pub fn parse_list(list: &str) -> Result<Vec<Scope>, UnknownScope> {
        let mut scopes = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Scope>, _>>()?;
        scopes.sort_unstable();
        scopes.dedup();
        Ok(scopes)
    }

    /// `scopes` as one space-separated string (the stored form), in the given order.
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not in the catalog. The message lists every valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {name:?}; valid scopes are: {}", valid_list())]
pub struct UnknownScope {
    /// The name that was given.
    pub name: String,
}

fn valid_list() -> String {
    Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_round_trips_through_its_name_and_serde() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{}\"", scope.as_str()));
            assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), scope);
        }
    }

    #[test]
    fn catalog_order_is_the_sort_order() {
        let mut sorted = Scope::ALL;
        sorted.sort_unstable();
        assert_eq!(sorted, Scope::ALL);
    }

    #[test]
    fn unknown_scope_is_refused_listing_the_valid_ones() {
        let err = "tokens:steal".parse::<Scope>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"tokens:steal\""), "{msg}");
        for scope in Scope::ALL {
            assert!(msg.contains(scope.as_str()), "{msg}");
        }
        // Case matters: names are exact.
        assert!("Tokens:Retrieve".parse::<Scope>().is_err());
    }

    #[test]
    fn list_is_split_on_commas_and_spaces_sorted_and_deduplicated() {
        assert_eq!(
            Scope::parse_list(" proxy:execute,tokens:retrieve  proxy:execute,, ").unwrap(),
            vec![Scope::TokensRetrieve, Scope::ProxyExecute]
        );
        assert_eq!(Scope::parse_list("").unwrap(), vec![]);
        assert_eq!(
            Scope::parse_list("grants:read,nope").unwrap_err().name,
            "nope"
        );
        assert_eq!(
            Scope::join(&[Scope::GrantsRead, Scope::AuditRead]),
            "grants:read audit:read"
        );
    }
}
