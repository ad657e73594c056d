//! The provider catalogue as clients see it (`tessera provider list --json`, and the
//! catalogue endpoints of the HTTP API), and an app's OAuth client configuration for a
//! provider (`PUT`/`GET`/`DELETE /v1/providers/{id}/config`, `tessera provider configure`).

use std::collections::BTreeMap;
use std::fmt;

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

/// `PUT /v1/providers/{id}/config`: an app's OAuth client for one provider. It replaces the
/// whole stored configuration, except the client secret: an absent `client_secret` keeps
/// the stored one unless `clear_client_secret` is set.
///
/// `Debug` shows whether a client secret is given, never its value.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProviderConfigRequest {
    /// The provider id. Over HTTP it may be left empty (the path names the provider); when
    /// given it must equal the path's id.
    #[serde(default)]
    pub provider: String,
    /// The OAuth client id the provider issued to the app.
    pub client_id: String,
    /// The OAuth client secret, for a confidential client. Stored sealed; never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Delete the stored client secret (a public client). Refused together with
    /// `client_secret`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub clear_client_secret: bool,
    /// Provider scopes to request; empty means the provider's default scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The redirect URI registered with the provider (absolute `https`/`http`, no
    /// fragment); absent means the host's own callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// Extra authorization-request parameters (`prompt`, `access_type`, …). Parameters the
    /// connect flow sets itself (`client_id`, `state`, `scope`, …) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_params: BTreeMap<String, String>,
    /// Values of the provider's declared connection parameters that hold for every
    /// connection of this app (the generic `oauth2` provider's `issuer`, a tenant, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connection_params: BTreeMap<String, String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

impl fmt::Debug for ProviderConfigRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfigRequest")
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("clear_client_secret", &self.clear_client_secret)
            .field("scopes", &self.scopes)
            .field("redirect_uri", &self.redirect_uri)
            .field("extra_params", &self.extra_params)
            .field("connection_params", &self.connection_params)
            .finish()
    }
}

/// An app's stored OAuth client for one provider, as the API and `--json` show it: the
/// client secret is never shown, only whether one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderConfigView {
    /// The provider id.
    pub provider: String,
    /// The OAuth client id.
    pub client_id: String,
    /// Whether a client secret is stored (a confidential client).
    pub client_secret_set: bool,
    /// Provider scopes requested; empty means the provider's default scopes.
    pub scopes: Vec<String>,
    /// The registered redirect URI; absent means the host's own callback.
    pub redirect_uri: Option<String>,
    /// Extra authorization-request parameters.
    pub extra_params: BTreeMap<String, String>,
    /// App-wide connection parameter values.
    pub connection_params: BTreeMap<String, String>,
    /// When it was first configured (RFC 3339).
    pub created_at: String,
    /// When it was last changed (RFC 3339).
    pub updated_at: String,
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
    fn config_request_debug_never_shows_the_client_secret() {
        let request = ProviderConfigRequest {
            provider: "github".into(),
            client_id: "Iv1.abc".into(),
            client_secret: Some("hunter2-client-secret".into()),
            ..ProviderConfigRequest::default()
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("[redacted]") && shown.contains("Iv1.abc"),
            "{shown}"
        );
    }

    #[test]
    fn config_request_needs_only_a_client_id_and_refuses_unknown_fields() {
        let minimal: ProviderConfigRequest =
            serde_json::from_str(r#"{"client_id": "abc"}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(minimal.client_id, "abc");
        assert!(minimal.provider.is_empty() && !minimal.clear_client_secret);
        assert!(minimal.scopes.is_empty() && minimal.extra_params.is_empty());
        let typo = serde_json::from_str::<ProviderConfigRequest>(
            r#"{"client_id": "abc", "client_secret_": "x"}"#,
        );
        assert!(typo.is_err());
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
