//! The answer of `GET /v1/whoami`: who the host says signed a request. Lets an SDK check its
//! key and scopes before doing real work.

use serde::{Deserialize, Serialize};

use crate::scopes::Scope;

/// The verified signer of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Whoami {
    /// The app that owns the key.
    pub app_id: String,
    /// The key's public id.
    pub key_id: String,
    /// `app` or `agent`.
    pub kind: String,
    /// The agent, for an agent key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The key's Tessera scopes, in catalog order.
    pub scopes: Vec<Scope>,
}
