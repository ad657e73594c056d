//! Agents as clients see them: `GET`/`POST /v1/agents`, `GET /v1/agents/{id}`,
//! `POST /v1/agents/{id}/disable|enable`, and `tessera agent … --json`.
//!
//! An agent is an operator-provisioned workload identity of one app, with its own API keys
//! (`tsr_agent_…`), grants and audit trail. A disabled agent's keys are refused like revoked
//! keys until it is enabled again.

use serde::{Deserialize, Serialize};

/// One agent of the caller's app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    /// The agent id (a UUID): what agent keys, agent principals (`agent:ID`) and audit rows
    /// (`actor_kind: agent`) name.
    pub id: String,
    /// Its name, unique within the app: 1 to 64 characters of `a-z A-Z 0-9 . _ -`.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was disabled (RFC 3339); absent while it is enabled. Its keys are refused
    /// (`401 unknown_key`) while it is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
}

impl Agent {
    /// Whether the agent is disabled.
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

/// A page of agents (`GET /v1/agents`), ordered by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentPage {
    /// The agents of this page, by name.
    pub items: Vec<Agent>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /v1/agents`: create an agent of the caller's app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    /// The new agent's name, unique within the app: 1 to 64 characters of
    /// `a-z A-Z 0-9 . _ -`.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enabled_agent_has_no_disabled_at_on_the_wire() {
        let agent = Agent {
            id: "0190aa00-0000-7000-8000-000000000000".into(),
            name: "bot".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            disabled_at: None,
        };
        let json = serde_json::to_value(&agent).unwrap();
        assert!(json.get("disabled_at").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<Agent>(json).unwrap(), agent);
        assert!(!agent.is_disabled());
    }

    #[test]
    fn a_create_request_refuses_unknown_fields() {
        let ok: CreateAgentRequest = serde_json::from_str(r#"{"name":"bot"}"#).unwrap();
        assert_eq!(ok.name, "bot");
        assert!(serde_json::from_str::<CreateAgentRequest>(r#"{"name":"bot","x":1}"#).is_err());
    }
}
