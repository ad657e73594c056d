//! An app's identity provider as clients see it: `GET`/`PUT`/`DELETE /v1/idp` and
//! `tessera idp … --json`. The host verifies end users' tokens (`user_token`) against it.

use serde::{Deserialize, Serialize};

/// `PUT /v1/idp`: trust this identity provider for the app's end users (replacing any
/// earlier one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IdpConfigRequest {
    /// The exact `iss` of the users' tokens (`https://idp.example.com/realms/acme`).
    pub issuer: String,
    /// Where its keys are (a JWKS URL); absent: the `jwks_uri` of the issuer's discovery
    /// document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Accepted `aud` values: a token must name at least one.
    pub audiences: Vec<String>,
    /// The claim that lists a user's groups (`groups`), if the provider sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    /// Accepted signature algorithms (`RS256`, `ES256`, …; asymmetric only); empty: all of
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Clock leeway on `exp` and `nbf`, in seconds (at most 300). Default 60.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_leeway() -> u64 {
    60
}

/// The app's identity provider as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdpConfigView {
    /// The exact `iss` of the users' tokens.
    pub issuer: String,
    /// Where its keys are; absent: from its discovery document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// The claim listing a user's groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    /// Accepted algorithms; empty: every asymmetric one.
    pub algorithms: Vec<String>,
    /// Clock leeway, in seconds.
    pub leeway_secs: u64,
    /// When it was first configured (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}
