//! Human-in-the-loop approvals: a proxied call a require-approval rule matched is held,
//! shown to a person, and sent once if approved.
//!
//! Holding ([`Calls::hold`]): the exact request the host would sign (method, URL, the
//! headers it forwards, body) is serialised once; those bytes are sealed by the vault
//! (associated data: approval id, app, `approval-request`) and their SHA-256 is stored
//! beside them. The row and its `approval.request` audit row are written in one transaction.
//!
//! Deciding ([`Calls::decide`]): a compare-and-swap from `pending` with the deadline still
//! ahead, in the same transaction as the `approval.decide` audit row, so of two racing
//! decisions one wins and the other is told `approval_decided`. The winner of an approval
//! then opens the stored bytes, checks their hash (a changed byte fails the AEAD tag or the
//! hash: `approval_mismatch`, nothing is sent), re-checks the grant (revoked, expired, no
//! longer delegated: the approval ends `failed`) and sends exactly those bytes through the
//! proxy's own path. The provider's answer is stored sealed (`approval-response`) for the
//! app to collect ([`Calls::outcome`]). An approval leaves `approved` once, so it is never
//! sent twice; policy rules are not evaluated again (they were when it was asked for).
//!
//! Must never: send a request other than the stored bytes, send one twice, let an agent
//! key decide (an agent must not approve its own request), or show another app's approval.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tessera_proto::approvals::{
    Approval, ApprovalPage, ApprovalStatus, DecideRequest, HeldRequest,
};
use tessera_proto::calls::{CallNote, ProxyRequest};

use super::{
    CallContext, CallError, Calls, ProxyResponse, Trail, decode_body, entry_of, forwarded_headers,
    from_egress,
};
use crate::audit::{self, Action, Actor, AuditEntry, Outcome};
use crate::grants::{Change, GrantError, Owner};
use crate::oauth::refresh::Reason;
use crate::plugin::types::HttpRequest;
use crate::store::approvals::{
    self as repo, ApprovalRow, Decision, Filter, Finish, REQUEST_KIND, RESPONSE_KIND,
};
use crate::store::{AgentId, AppId, StoreError, Timestamp};
use crate::vault::Aad;

/// The longest one outcome request waits for a decision.
pub const MAX_WAIT: Duration = Duration::from_mins(1);
/// How often a waiting outcome request looks again.
const POLL: Duration = Duration::from_millis(250);
/// The most approvals one listing returns.
pub const MAX_PAGE: u32 = 500;
/// The longest note a decision may carry, in characters.
const MAX_NOTE: usize = 2000;

/// The exact request an approval holds. Its JSON bytes are what is sealed and hashed.
#[derive(Serialize, Deserialize)]
struct Stored {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body_base64: String,
}

/// The provider's answer to an approved request, as sealed.
#[derive(Serialize, Deserialize)]
struct StoredResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body_base64: String,
}

/// Which approvals a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    /// Only this status.
    pub status: Option<ApprovalStatus>,
    /// Only this grant's.
    pub grant_id: Option<String>,
    /// Only those of grants with this principal (`user:ISSUER:SUB`, …).
    pub principal: Option<String>,
    /// At most this many (default and cap [`MAX_PAGE`]).
    pub limit: Option<u32>,
}

fn aad<'a>(id: &'a str, app: &'a str, kind: &'a str) -> Aad<'a> {
    Aad {
        record_id: id,
        app_id: app,
        kind,
    }
}

fn internal(e: StoreError) -> CallError {
    CallError::Grant(GrantError::Store(e))
}

fn rfc3339(millis: i64) -> String {
    Timestamp::from_unix_millis(millis).to_rfc3339()
}

fn status_of(row: &ApprovalRow) -> Result<ApprovalStatus, CallError> {
    row.status.parse().map_err(|detail| {
        internal(StoreError::Corrupt {
            table: "approvals",
            detail,
        })
    })
}

/// The wire form of a stored approval (with the request, when it was opened).
fn to_wire(row: &ApprovalRow, request: Option<HeldRequest>) -> Result<Approval, CallError> {
    Ok(Approval {
        id: row.id.clone(),
        status: status_of(row)?,
        grant_id: row.grant_id.clone(),
        provider: row.provider.clone(),
        app_name: None,
        principal: row.principal.clone(),
        agent_id: row.agent_id.clone(),
        key_id: row.key_id.clone(),
        caller: row.caller.clone(),
        reason: row.reason.clone(),
        context: serde_json::from_str(&row.context).unwrap_or_default(),
        rule: row.rule.clone(),
        method: row.method.clone(),
        url: row.url.clone(),
        request,
        request_sha256: row.request_sha256.clone(),
        created_at: rfc3339(row.created_at),
        expires_at: rfc3339(row.expires_at),
        decided_at: row.decided_at.map(rfc3339),
        decided_by: row.decided_by.clone(),
        decided_via: row.decided_via.clone(),
        note: row.note.clone(),
        executed_at: row.executed_at.map(rfc3339),
        response_status: row.response_status.and_then(|s| u16::try_from(s).ok()),
        error_code: row.error_code.clone(),
    })
}

/// What a person is shown of a stored request: secret header and query values redacted,
/// the body as it is.
fn shown(stored: &Stored, sha256: &str) -> HeldRequest {
    let body = STANDARD.decode(&stored.body_base64).unwrap_or_default();
    HeldRequest {
        method: stored.method.clone(),
        url: audit::redact_url(&stored.url),
        headers: audit::redact_headers(&stored.headers),
        body_text: if body.is_empty() {
            None
        } else {
            String::from_utf8(body.clone()).ok()
        },
        body_bytes: body.len() as u64,
        body_base64: (!body.is_empty()).then(|| stored.body_base64.clone()),
        sha256: sha256.to_owned(),
    }
}

/// The audit row of a decision (or an expiry) on `row`.
fn decision_entry(row: &ApprovalRow, change: &Change, d: &Decision<'_>) -> AuditEntry {
    AuditEntry {
        at: d.at,
        app_id: row.app_id.parse().ok(),
        key_id: change.key_id.clone(),
        caller: change.caller.clone(),
        request_id: change.request_id.clone(),
        reason: change.reason.clone(),
        provider: Some(row.provider.clone()),
        grant_id: Some(row.grant_id.clone()),
        principal: Some(row.principal.clone()),
        detail: change.annotate(json!({
            "via": d.via,
            "approval_id": row.id,
            "decision": d.to,
            "rule": row.rule,
            "request_sha256": row.request_sha256,
            "note": d.note,
            "agent_id": row.agent_id,
        })),
        ..AuditEntry::new(
            Action::ApprovalDecide,
            change.origin.actor.clone(),
            if d.to == "approved" {
                Outcome::Ok
            } else {
                Outcome::Denied
            },
        )
    }
}

/// The change the host itself makes when an approval's deadline passes.
fn expiry() -> Change {
    Change {
        origin: crate::audit::Origin {
            actor: Actor::host("expiry"),
            via: crate::audit::Via::Api,
        },
        ..Change::refresh()
    }
}

impl Calls {
    /// Stores the proxied `request` a require-approval rule held, with its audit row, and
    /// returns `approval_pending` naming the approval (or why it could not be stored).
    pub(super) async fn hold(
        &self,
        cx: &CallContext,
        request: &ProxyRequest,
        mut trail: Trail,
        rule: String,
        ttl_secs: u32,
    ) -> CallError {
        let body = match decode_body(request.body_base64.as_deref(), super::MAX_PROXY_BODY) {
            Ok(body) => body,
            Err(e) => return self.fail(cx, trail, e).await,
        };
        let stored = Stored {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: forwarded_headers(&request.headers),
            body_base64: STANDARD.encode(&body),
        };
        let plain = match serde_json::to_vec(&stored) {
            Ok(plain) => plain,
            Err(e) => {
                return self
                    .fail(cx, trail, CallError::Invalid(e.to_string()))
                    .await;
            }
        };
        let sha = hex::encode(Sha256::digest(&plain));
        let id = uuid::Uuid::now_v7().to_string();
        let app = cx.owner.app_id.to_string();
        let sealed = match self
            .grants
            .keys()
            .seal(&aad(&id, &app, REQUEST_KIND), &plain)
        {
            Ok(sealed) => sealed,
            Err(e) => return self.fail(cx, trail, GrantError::Vault(e).into()).await,
        };
        let now = Timestamp::now();
        let expires_at = now.plus(Duration::from_secs(u64::from(ttl_secs)));
        let row = ApprovalRow {
            id: id.clone(),
            app_id: app,
            grant_id: trail.grant_id.clone().unwrap_or_default(),
            provider: trail.provider.clone().unwrap_or_default(),
            principal: trail.principal.clone().unwrap_or_default(),
            agent_id: cx.agent().map(|a| a.to_string()),
            key_id: cx.key_id.clone(),
            caller: cx.caller.clone(),
            reason: trail.note.reason.clone(),
            context: serde_json::to_string(&trail.note.context).unwrap_or_else(|_| "{}".into()),
            rule: rule.clone(),
            method: request.method.clone(),
            url: audit::redact_url(&request.url),
            request_sha256: sha.clone(),
            request: sealed.to_bytes(),
            status: ApprovalStatus::Pending.as_str().to_owned(),
            created_at: now.unix_millis(),
            expires_at: expires_at.unix_millis(),
            decided_at: None,
            decided_by: None,
            decided_via: None,
            note: None,
            executed_at: None,
            response_status: None,
            response: None,
            error_code: None,
        };
        trail.action = Action::ApprovalRequest;
        let entry = entry_of(
            cx,
            trail,
            Outcome::Pending,
            json!({ "approval_id": id, "rule": rule, "request_sha256": sha,
                    "expires_at": expires_at.to_rfc3339(), "body_bytes": body.len() }),
        );
        let stored = async {
            let mut tx = self.grants.store().begin().await.map_err(internal)?;
            repo::insert(&mut tx, &row).await.map_err(internal)?;
            audit::append(&mut tx, &[entry])
                .await
                .map_err(CallError::AuditUnavailable)?;
            tx.commit().await.map_err(internal)
        };
        match stored.await {
            Ok(()) => CallError::ApprovalPending {
                approval_id: id,
                expires_at: expires_at.to_rfc3339(),
                rule,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot store an approval; call refused");
                e
            }
        }
    }

    /// Approval `id` of the caller's app (an agent key: only its own), past its deadline
    /// marked expired first.
    async fn approval_row(&self, owner: Owner, id: &str) -> Result<ApprovalRow, CallError> {
        let not_found = || CallError::ApprovalNotFound { id: id.to_owned() };
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(not_found());
        }
        let row = repo::get(self.grants.store(), owner.app_id, id)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        if let Some(agent) = owner.agent_id
            && row.agent_id.as_deref() != Some(agent.to_string().as_str())
        {
            return Err(not_found());
        }
        if row.status == "pending" && row.expires_at <= Timestamp::now().unix_millis() {
            self.expire(owner.app_id, &row).await?;
            return repo::get(self.grants.store(), owner.app_id, id)
                .await
                .map_err(internal)?
                .ok_or_else(not_found);
        }
        Ok(row)
    }

    /// Marks `row` expired (if it still is pending past its deadline) with its audit row.
    async fn expire(&self, app_id: AppId, row: &ApprovalRow) -> Result<(), CallError> {
        let now = Timestamp::now();
        let change = expiry();
        let d = Decision {
            to: "expired",
            at: now,
            by: "host",
            via: "host",
            note: None,
        };
        let mut tx = self.grants.store().begin().await.map_err(internal)?;
        if repo::expire(&mut tx, app_id, &row.id, now)
            .await
            .map_err(internal)?
        {
            audit::append(&mut tx, &[decision_entry(row, &change, &d)])
                .await
                .map_err(CallError::AuditUnavailable)?;
            tx.commit().await.map_err(internal)?;
        }
        Ok(())
    }

    /// Marks every pending approval past its deadline expired (each with its audit row);
    /// returns how many. The host runs this every few seconds.
    pub async fn expire_overdue(&self) -> Result<usize, CallError> {
        let due = repo::overdue(self.grants.store(), Timestamp::now(), 200)
            .await
            .map_err(internal)?;
        let mut n = 0;
        for (app, id) in due {
            let Ok(app_id) = app.parse::<AppId>() else {
                continue;
            };
            if let Some(row) = repo::get(self.grants.store(), app_id, &id)
                .await
                .map_err(internal)?
            {
                self.expire(app_id, &row).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The caller's approvals, newest first (an agent key: only its own).
    pub async fn approvals(
        &self,
        owner: Owner,
        filter: &ApprovalFilter,
    ) -> Result<ApprovalPage, CallError> {
        let agent = owner.agent_id.map(|a| a.to_string());
        let rows = repo::list(
            self.grants.store(),
            owner.app_id,
            &Filter {
                status: filter.status.map(ApprovalStatus::as_str),
                grant_id: filter.grant_id.as_deref(),
                agent_id: agent.as_deref(),
                principal: filter.principal.as_deref(),
            },
            filter.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE),
        )
        .await
        .map_err(internal)?;
        let now = Timestamp::now().unix_millis();
        let mut items = Vec::with_capacity(rows.len());
        for mut row in rows {
            // Shown as it is now; the sweep (or the next read of it) records the expiry.
            if row.status == "pending" && row.expires_at <= now {
                "expired".clone_into(&mut row.status);
            }
            items.push(to_wire(&row, None)?);
        }
        Ok(ApprovalPage { items })
    }

    /// Approval `id` with the exact request it holds (secret header and query values
    /// redacted).
    pub async fn approval(&self, owner: Owner, id: &str) -> Result<Approval, CallError> {
        let row = self.approval_row(owner, id).await?;
        let stored = self.open_request(&row).await?;
        to_wire(&row, Some(shown(&stored, &row.request_sha256)))
    }

    /// The stored request of `row`, opened and checked against its hash.
    async fn open_request(&self, row: &ApprovalRow) -> Result<Stored, CallError> {
        let altered = || {
            CallError::ApprovalMismatch(format!(
                "the stored request of approval {} does not match what was held (it was altered); it cannot be sent",
                row.id
            ))
        };
        let plain = self
            .grants
            .keys()
            .open_bytes(&aad(&row.id, &row.app_id, REQUEST_KIND), &row.request)
            .await
            .map_err(|_| altered())?;
        if hex::encode(Sha256::digest(plain.expose())) != row.request_sha256 {
            return Err(altered());
        }
        serde_json::from_slice(plain.expose()).map_err(|_| altered())
    }

    /// Approves (`approve`) or denies approval `id` of app `app_id` for `change`'s actor.
    /// An approval sends the stored request at once and returns the approval as it ended
    /// (`executed`, or `failed` with the call's error code).
    pub async fn decide(
        &self,
        app_id: AppId,
        id: &str,
        approve: bool,
        request: &DecideRequest,
        change: &Change,
    ) -> Result<Approval, CallError> {
        let row = self.approval_row(Owner::app(app_id), id).await?;
        check_decision(&row, approve, request)?;
        let by = format!(
            "{}:{}",
            change.origin.actor.kind.as_str(),
            change.origin.actor.id
        );
        let d = Decision {
            to: if approve { "approved" } else { "denied" },
            at: Timestamp::now(),
            by: &by,
            via: change.origin.via.as_str(),
            note: request.note.as_deref(),
        };
        let mut tx = self.grants.store().begin().await.map_err(internal)?;
        if !repo::decide(&mut tx, app_id, id, &d)
            .await
            .map_err(internal)?
        {
            drop(tx);
            // Someone else decided first, or the deadline passed meanwhile.
            let now = self.approval_row(Owner::app(app_id), id).await?;
            return Err(already(&now));
        }
        audit::append(&mut tx, &[decision_entry(&row, change, &d)])
            .await
            .map_err(CallError::AuditUnavailable)?;
        tx.commit().await.map_err(internal)?;
        if approve {
            self.execute(&row, &by).await?;
        }
        let row = self.approval_row(Owner::app(app_id), id).await?;
        to_wire(&row, None)
    }

    /// Sends the stored request of the approval `row` (just approved by `by`) once, and
    /// records how it ended.
    async fn execute(&self, row: &ApprovalRow, by: &str) -> Result<(), CallError> {
        let app_id: AppId = row
            .app_id
            .parse()
            .map_err(|_| CallError::ApprovalNotFound { id: row.id.clone() })?;
        let agent_id = row
            .agent_id
            .as_deref()
            .and_then(|a| a.parse::<AgentId>().ok());
        let cx = CallContext {
            owner: Owner { app_id, agent_id },
            key_id: row.key_id.clone(),
            caller: row.caller.clone(),
            request_id: uuid::Uuid::now_v7().to_string(),
            impersonating: false,
            client_ip: std::net::IpAddr::from([0, 0, 0, 0]),
            // Sent later, maybe from another request: the grant is read again.
            grant_epoch: 0,
        };
        let note = CallNote {
            reason: row.reason.clone(),
            context: serde_json::from_str(&row.context).unwrap_or_default(),
        };
        let mut trail = Trail::new(
            Action::ProxyExecute,
            Some(&row.grant_id),
            &note,
            &row.method,
            &row.url,
        );
        trail.detail.insert("approval_id".into(), json!(row.id));
        trail.detail.insert("approved_by".into(), json!(by));
        let sent = match self.open_request(row).await {
            Ok(stored) => self.send_stored(&cx, stored, &mut trail).await,
            Err(e) => Err(e),
        };
        let now = Timestamp::now();
        match sent {
            Ok((status, headers, body, wire)) => {
                let answer = StoredResponse {
                    status,
                    headers,
                    body_base64: STANDARD.encode(&body),
                };
                let plain =
                    serde_json::to_vec(&answer).map_err(|e| CallError::Invalid(e.to_string()))?;
                let sealed = self
                    .grants
                    .keys()
                    .seal(&aad(&row.id, &row.app_id, RESPONSE_KIND), &plain)
                    .map_err(|e| CallError::Grant(GrantError::Vault(e)))?
                    .to_bytes();
                let f = Finish {
                    to: "executed",
                    at: now,
                    response_status: Some(status),
                    response: Some(&sealed),
                    error_code: None,
                };
                repo::finish(self.grants.store(), app_id, &row.id, &f)
                    .await
                    .map_err(internal)?;
                if let Err(e) = self.write(&cx, trail, Outcome::Ok, wire).await {
                    tracing::error!(error = %e, approval = %row.id, "an approved request was sent but its audit row could not be written");
                }
                Ok(())
            }
            Err(e) => {
                let code = e.code();
                let f = Finish {
                    to: "failed",
                    at: now,
                    response_status: None,
                    response: None,
                    error_code: Some(code),
                };
                repo::finish(self.grants.store(), app_id, &row.id, &f)
                    .await
                    .map_err(internal)?;
                let e = self.fail(&cx, trail, e).await;
                match e {
                    // Nothing was sent because the bytes were altered: say so to the approver.
                    CallError::ApprovalMismatch(_) => Err(e),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Sends a stored request with the grant as it is now: still visible to the caller
    /// (a revoked delegation ends the agent's access), live, refreshed where needed.
    async fn send_stored(
        &self,
        cx: &CallContext,
        stored: Stored,
        trail: &mut Trail,
    ) -> Result<(u16, Vec<(String, String)>, Vec<u8>, serde_json::Value), CallError> {
        let grant_id = trail.grant_id.clone().unwrap_or_default();
        let found = self.grants.find_usable(cx.owner, &grant_id).await?;
        trail.found(&found.grant);
        let resolved = self.grants.open_found(found).await?;
        let resolved = self
            .refresher
            .ensure_fresh(resolved, Reason::Expiring)
            .await?;
        self.grants
            .egress()
            .check_url(
                &stored.url,
                &resolved.plugin.info().allowed_hosts,
                &resolved.params,
            )
            .map_err(|e| from_egress(&resolved.grant.provider, e))?;
        let body = STANDARD
            .decode(&stored.body_base64)
            .map_err(|_| CallError::Invalid("the stored body is not base64".into()))?;
        let described = HttpRequest {
            method: stored.method,
            url: stored.url,
            headers: stored.headers,
            body,
        };
        let (response, wire) = self.send(resolved, described, trail).await?;
        let provider = response.provider.clone();
        let mut body = Vec::new();
        let mut stream = response.body;
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.map_err(|e| from_egress(&provider, e))?);
        }
        Ok((response.status, response.headers, body, wire))
    }

    /// The outcome of approval `id` for the app (or agent) that asked, waiting up to `wait`
    /// (at most [`MAX_WAIT`]) while it is undecided: the provider's response to the sent
    /// request, or `approval_pending`, `approval_denied`, `approval_expired`,
    /// `approval_failed`.
    pub async fn outcome(
        &self,
        owner: Owner,
        id: &str,
        wait: Duration,
    ) -> Result<ProxyResponse, CallError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            let row = self.approval_row(owner, id).await?;
            match status_of(&row)? {
                ApprovalStatus::Pending | ApprovalStatus::Approved => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(CallError::ApprovalPending {
                            approval_id: row.id.clone(),
                            expires_at: rfc3339(row.expires_at),
                            rule: row.rule.clone(),
                        });
                    }
                    tokio::time::sleep(POLL).await;
                }
                ApprovalStatus::Executed => return self.stored_response(&row).await,
                ApprovalStatus::Failed => {
                    let code = row.error_code.clone().unwrap_or_default();
                    return Err(CallError::ApprovalFailed {
                        id: row.id.clone(),
                        detail: format!(
                            "the host could not send it ({code}); see the audit log for the call"
                        ),
                        code,
                    });
                }
                ApprovalStatus::Denied => {
                    return Err(CallError::ApprovalDenied {
                        id: row.id.clone(),
                        note: row.note.clone(),
                    });
                }
                ApprovalStatus::Expired => {
                    return Err(CallError::ApprovalExpired { id: row.id.clone() });
                }
            }
        }
    }

    async fn stored_response(&self, row: &ApprovalRow) -> Result<ProxyResponse, CallError> {
        let sealed = row.response.as_deref().unwrap_or_default();
        let plain = self
            .grants
            .keys()
            .open_bytes(&aad(&row.id, &row.app_id, RESPONSE_KIND), sealed)
            .await
            .map_err(|e| CallError::Grant(GrantError::Vault(e)))?;
        let answer: StoredResponse = serde_json::from_slice(plain.expose())
            .map_err(|e| CallError::Invalid(format!("the stored response does not parse: {e}")))?;
        let body = bytes::Bytes::from(STANDARD.decode(&answer.body_base64).unwrap_or_default());
        Ok(ProxyResponse {
            provider: row.provider.clone(),
            status: answer.status,
            headers: answer.headers,
            body: Box::pin(futures_util::stream::once(async move { Ok(body) })),
        })
    }
}

/// Why a decision on `row` cannot be taken before trying: it is not pending, the note is
/// too long, or (approving) the hash shown is not the stored request's.
fn check_decision(
    row: &ApprovalRow,
    approve: bool,
    request: &DecideRequest,
) -> Result<(), CallError> {
    if row.status != "pending" {
        return Err(already(row));
    }
    if let Some(note) = &request.note
        && (note.chars().count() > MAX_NOTE || note.chars().any(|c| c.is_control() && c != '\n'))
    {
        return Err(CallError::Invalid(format!(
            "a note is at most {MAX_NOTE} characters, without control characters"
        )));
    }
    if approve
        && let Some(given) = &request.request_sha256
        && !given.eq_ignore_ascii_case(&row.request_sha256)
    {
        return Err(CallError::ApprovalMismatch(format!(
            "the request shown (sha256 {given}) is not the request approval {} holds (sha256 {}); nothing was sent",
            row.id, row.request_sha256
        )));
    }
    Ok(())
}

/// The error for a decision on an approval that is no longer pending.
fn already(row: &ApprovalRow) -> CallError {
    if row.status == "expired" {
        CallError::ApprovalExpired { id: row.id.clone() }
    } else {
        CallError::ApprovalDecided {
            id: row.id.clone(),
            status: row.status.clone(),
        }
    }
}
