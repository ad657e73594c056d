//! Agent routes: `GET`/`POST /v1/agents`, `GET /v1/agents/{id}`,
//! `POST /v1/agents/{id}/disable` and `POST /v1/agents/{id}/enable`. Thin: scope check,
//! parse, one service call. An app key manages every agent of its app; an agent key sees
//! only itself and changes nothing (`403 app_key_required`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use tessera_proto::agents::{Agent, AgentPage, CreateAgentRequest};
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;

use super::grants::{change_of, json_body, owner_of, request_id};
use super::openapi::{
    AuthUnavailable, BodyTooLarge, ScopeMissing, SignatureRejected, SignedHeaders,
};
use super::{ApiError, ApiState, Caller};

/// Query of `GET /v1/agents`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Page size: default 100, clamped to 1–500.
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /v1/agents`: the app's agents by name, paged with `limit` (1–500, default 100) and
/// `cursor` (the previous page's `next_cursor`). An agent key sees only itself.
///
/// Scope: `agents:read`. Errors: `invalid_request` (a bad query or cursor), the signature
/// codes.
#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "agents",
    params(SignedHeaders, ListQuery),
    security(("tessera_signature" = ["agents:read"])),
    responses(
        (status = 200, description = "A page of the app's agents, by name (for an agent key: itself).", body = AgentPage),
        (status = 400, description = "`invalid_request` (a bad query parameter or cursor, a malformed Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: the agents could not be read (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn list_agents(
    State(api): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    caller: Caller,
) -> Result<Json<AgentPage>, ApiError> {
    caller.require(&[Scope::AgentsRead])?;
    // Checked after authentication, so an unsigned request learns nothing from its query.
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    Ok(Json(
        api.agents
            .list(owner_of(&caller), q.cursor.as_deref(), q.limit)
            .await?,
    ))
}

/// `POST /v1/agents`: creates an agent of the app (`{"name": "…"}`); `201` with the agent.
/// Its keys are made by the operator (`tessera key create --app APP --agent NAME`).
///
/// Scope: `agents:write`, with an app key. Errors: `invalid_request` (malformed JSON, a name
/// that breaks the rules), `app_key_required` (an agent key), `agent_conflict` (the app
/// already has an agent of this name), `audit_unavailable` (nothing was created), the
/// signature codes.
#[utoipa::path(
    post,
    path = "/v1/agents",
    tag = "agents",
    params(SignedHeaders),
    request_body(content = CreateAgentRequest, content_type = "application/json"),
    security(("tessera_signature" = ["agents:write"])),
    responses(
        (status = 201, description = "The agent was created.", body = Agent),
        (status = 400, description = "`invalid_request` (malformed JSON, a name that is not 1 to 64 characters of a-z A-Z 0-9 . _ -, a malformed Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`: an agent key cannot manage agents.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`agent_conflict`: the app already has an agent of this name.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: a store failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the audit row could not be written, so nothing was created).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn create_agent(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    caller.require(&[Scope::AgentsWrite])?;
    let request: CreateAgentRequest = json_body(&caller)?;
    let change = change_of(&caller, &request_id(), None);
    let agent = api
        .agents
        .create(owner_of(&caller), &change, &request.name)
        .await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

/// `GET /v1/agents/{id}`: one agent of the app; for an agent key, only itself.
///
/// Scope: `agents:read`. Errors: `agent_not_found` (also for another app's agent, and for
/// an agent key asking about another agent), the signature codes.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    tag = "agents",
    params(SignedHeaders, ("id" = String, Path, description = "The agent id.")),
    security(("tessera_signature" = ["agents:read"])),
    responses(
        (status = 200, description = "The agent.", body = Agent),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`agent_not_found` (also for another app's agent, or another agent than the signing agent key's).", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: the agent could not be read (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn get_agent(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Agent>, ApiError> {
    caller.require(&[Scope::AgentsRead])?;
    Ok(Json(api.agents.get(owner_of(&caller), &id).await?))
}

/// `POST /v1/agents/{id}/disable`: disables the agent. From the next request on, on every
/// host instance, each of its keys is refused like a revoked key (`401 unknown_key`); its
/// keys, grants and audit rows stay. Disabling a disabled agent answers its current state.
///
/// Scope: `agents:write`, with an app key. Errors: `agent_not_found`, `app_key_required`,
/// `audit_unavailable` (nothing changed), the signature codes.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/disable",
    tag = "agents",
    params(SignedHeaders, ("id" = String, Path, description = "The agent id.")),
    security(("tessera_signature" = ["agents:write"])),
    responses(
        (status = 200, description = "The agent, now disabled (or disabled before).", body = Agent),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`: an agent key cannot manage agents.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`agent_not_found` (also for another app's agent).", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: a store failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the audit row could not be written, so nothing changed).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn disable_agent(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Agent>, ApiError> {
    caller.require(&[Scope::AgentsWrite])?;
    let change = change_of(&caller, &request_id(), None);
    let toggled = api
        .agents
        .set_disabled(owner_of(&caller), &change, &id, true)
        .await?;
    Ok(Json(toggled.agent))
}

/// `POST /v1/agents/{id}/enable`: enables a disabled agent; its keys (those not revoked)
/// work again. Enabling an enabled agent answers its current state.
///
/// Scope: `agents:write`, with an app key. Errors: `agent_not_found`, `app_key_required`,
/// `audit_unavailable` (nothing changed), the signature codes.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/enable",
    tag = "agents",
    params(SignedHeaders, ("id" = String, Path, description = "The agent id.")),
    security(("tessera_signature" = ["agents:write"])),
    responses(
        (status = 200, description = "The agent, now enabled (or enabled before).", body = Agent),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`: an agent key cannot manage agents.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`agent_not_found` (also for another app's agent).", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: a store failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the audit row could not be written, so nothing changed).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn enable_agent(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Agent>, ApiError> {
    caller.require(&[Scope::AgentsWrite])?;
    let change = change_of(&caller, &request_id(), None);
    let toggled = api
        .agents
        .set_disabled(owner_of(&caller), &change, &id, false)
        .await?;
    Ok(Json(toggled.agent))
}
