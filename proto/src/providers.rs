//! The provider catalogue as clients see it (`tessera provider list --json`, and the
//! catalogue endpoints of the HTTP API).

use serde::{Deserialize, Serialize};

/// How end users or operators give Tessera access to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AuthKind {
    /// OAuth 2.0: the end user authorizes in the browser.
    Oauth2,
    /// OAuth 1.0a: the end user authorizes in the browser.
    Oauth1,
    /// The operator pastes a secret (API key, access key pair, ...).
    ManagedSecret,
}

impl AuthKind {
    /// The wire name (`oauth2`, `oauth1`, `managed-secret`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oauth2 => "oauth2",
            Self::Oauth1 => "oauth1",
            Self::ManagedSecret => "managed-secret",
        }
    }
}

/// One provider in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderSummary {
    /// Stable identifier, e.g. `github`.
    pub id: String,
    /// Name shown to people, e.g. `GitHub`.
    pub display_name: String,
    /// How access is given.
    pub auth_kind: AuthKind,
    /// The component's own version.
    pub version: String,
    /// The provider contract version the component implements (`0.1.0`).
    pub contract_version: String,
    /// Free-form categories.
    pub categories: Vec<String>,
    /// Where the component came from: `builtin` or a file path.
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_kind_wire_names_match_as_str() {
        for kind in [AuthKind::Oauth2, AuthKind::Oauth1, AuthKind::ManagedSecret] {
            let json = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn summary_round_trips() {
        let s = ProviderSummary {
            id: "github".into(),
            display_name: "GitHub".into(),
            auth_kind: AuthKind::Oauth2,
            version: "0.1.0".into(),
            contract_version: "0.1.0".into(),
            categories: vec!["developer-tools".into()],
            source: "builtin".into(),
        };
        let back: ProviderSummary =
            serde_json::from_str(&serde_json::to_string(&s).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, s);
    }
}
