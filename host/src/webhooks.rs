//! Webhooks: each app may name one endpoint; the host sends it signed events about approvals
//! (requested, approved, denied, expired, executed, failed) and grants (created, revoked,
//! needs re-authorization, scope mismatch), and retries with backoff until the endpoint
//! answers `2xx` or [`MAX_ATTEMPTS`] have failed.
//!
//! Events come from the audit log, not from hooks in the code that makes the changes: the
//! dispatcher ([`Webhooks::run`]) scans audit rows after a cursor and turns each row worth
//! telling into a delivery whose id is the row's id. Every change is audited before it is
//! answered, so an event cannot be lost by a crash between the change and its event, and
//! a row scanned twice (two instances) adds nothing. Payloads are built from audit rows,
//! which hold nothing secret. The signature is Stripe's scheme
//! ([`tessera_proto::webhooks`]): `t=…,v1=HMAC-SHA256(secret, "t.body")`.
//!
//! Must never: send a secret in an event, follow a redirect, or send one attempt twice
//! (an attempt is claimed by compare-and-swap before it is sent).

use std::time::Duration;

use base64::Engine as _;
use rand::RngCore as _;
use serde_json::json;
use tessera_proto::webhooks::{
    self as wire, Delivery, DeliveryPage, EVENT_ID_HEADER, EVENT_TYPE_HEADER, Event,
    SIGNATURE_HEADER, WebhookRequest, WebhookView,
};

use crate::audit::{Action, AuditEntry, AuditError, Outcome};
use crate::grants::Change;
use crate::keys::LiveRing;
use crate::store::audit::{AuditRow, rows_after};
use crate::store::webhooks::{self as repo, Attempt, DeliveryRow, SEALED_KIND, WebhookRow};
use crate::store::{AppId, Store, StoreError, Timestamp};
use crate::vault::{Aad, VaultError};

/// Attempts before a delivery is given up (`failed`).
pub const MAX_ATTEMPTS: i64 = 9;
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed attempt keeps other instances off it.
const LEASE: Duration = Duration::from_mins(1);
/// How often the dispatcher looks for work.
const TICK: Duration = Duration::from_millis(500);
/// Audit rows scanned per tick.
const SCAN_BATCH: i64 = 500;

/// Why a webhook operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A malformed request (URL, event type).
    #[error("{0}")]
    Invalid(String),
    /// The app has no endpoint.
    #[error("this app has no webhook endpoint (PUT /v1/webhook, tessera webhook set)")]
    NotConfigured,
    /// The change could not be audited, so it was not made.
    #[error("the change was not made: its audit row could not be written")]
    AuditUnavailable(#[source] AuditError),
    /// The secret could not be sealed or opened.
    #[error("the webhook secret could not be sealed or opened")]
    Vault(#[from] VaultError),
    /// The database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
}

impl WebhookError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::NotConfigured => "webhook_not_configured",
            Self::AuditUnavailable(_) => "audit_unavailable",
            Self::Vault(_) | Self::Store(_) => "internal_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 400,
            Self::NotConfigured => 404,
            Self::AuditUnavailable(_) => 503,
            Self::Vault(_) | Self::Store(_) => 500,
        }
    }
}

/// The webhook service and dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    store: Store,
    keys: LiveRing,
    client: reqwest::Client,
    retry_base: Duration,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

fn aad(app: &str) -> Aad<'_> {
    Aad {
        record_id: app,
        app_id: app,
        kind: SEALED_KIND,
    }
}

/// Checks an endpoint URL: `https`, or `http` to a loopback address; no credentials or
/// fragment.
fn check_url(text: &str) -> Result<String, WebhookError> {
    let bad = |why: &str| WebhookError::Invalid(format!("webhook url {text:?}: {why}"));
    if text.len() > 2048 {
        return Err(bad("longer than 2048 characters"));
    }
    let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(bad("no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(bad("must be https (http only to a loopback address)")),
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(bad("must not carry credentials or a fragment"));
    }
    Ok(url.to_string())
}

/// The event type an audit row makes, if any.
fn event_type(row: &AuditRow, detail: &serde_json::Value) -> Option<&'static str> {
    let error = detail.get("error").and_then(|e| e.as_str());
    match row.action.as_str() {
        "approval.request" => Some("approval.requested"),
        "approval.decide" => match detail.get("decision").and_then(|d| d.as_str()) {
            Some("approved") => Some("approval.approved"),
            Some("denied") => Some("approval.denied"),
            Some("expired") => Some("approval.expired"),
            _ => None,
        },
        "proxy.execute" | "tokens.retrieve" if error == Some("scope_reauth_required") => {
            Some("grant.scope_mismatch")
        }
        "proxy.execute" if detail.get("approval_id").is_some() => Some(if row.outcome == "ok" {
            "approval.executed"
        } else {
            "approval.failed"
        }),
        "grant.create" => Some("grant.created"),
        "grant.revoke" => Some("grant.revoked"),
        "grant.reauth_required" => Some("grant.reauth_required"),
        _ => None,
    }
}

/// The event an audit row makes.
fn event_of(row: &AuditRow, event_type: &str, detail: &serde_json::Value) -> Event {
    let principal = match (&row.principal_kind, &row.principal_value) {
        (Some(k), Some(v)) if !v.is_empty() => Some(format!("{k}:{v}")),
        (Some(k), _) => Some(k.clone()),
        _ => None,
    };
    Event {
        id: row.id.clone(),
        event_type: event_type.to_owned(),
        created_at: Timestamp::from_unix_millis(row.at).to_rfc3339(),
        app_id: row.app_id.clone().unwrap_or_default(),
        data: json!({
            "grant_id": row.grant_id,
            "provider": row.provider,
            "principal": principal,
            "actor": { "kind": row.actor_kind, "id": row.actor_id },
            "caller": row.caller,
            "reason": row.reason,
            "outcome": row.outcome,
            "detail": detail,
        }),
    }
}

/// The delay before attempt `n + 1` after `n` failed: `base`, then ×3 each time.
fn backoff(base: Duration, attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 12)).unwrap_or(0);
    base.saturating_mul(3u32.saturating_pow(exp))
}

impl Webhooks {
    /// The service over `store`, sealing with `keys`; a failed delivery is retried after
    /// `retry_base`, then three times longer each time.
    pub fn new(store: Store, keys: LiveRing, retry_base: Duration) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            store,
            keys,
            client,
            retry_base,
        }
    }

    /// Sets app `app_id`'s endpoint; a first configuration (or `rotate_secret`) makes a new
    /// secret, returned this once. Audited as `webhook.configure`.
    pub async fn configure(
        &self,
        app_id: AppId,
        request: &WebhookRequest,
        change: &Change,
    ) -> Result<WebhookView, WebhookError> {
        let url = check_url(&request.url)?;
        let events = wire::check_events(&request.events).map_err(WebhookError::Invalid)?;
        let app = app_id.to_string();
        let existing = repo::get(&self.store, app_id).await?;
        let now = Timestamp::now().unix_millis();
        let (secret, sealed) = match &existing {
            Some(row) if !request.rotate_secret => (None, row.secret.clone()),
            _ => {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                let secret = format!(
                    "whsec_{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
                );
                let sealed = self.keys.seal(&aad(&app), secret.as_bytes())?.to_bytes();
                (Some(secret), sealed)
            }
        };
        let row = WebhookRow {
            app_id: app.clone(),
            url,
            secret: sealed,
            events: serde_json::to_string(&events).unwrap_or_else(|_| "[]".into()),
            created_at: existing.as_ref().map_or(now, |r| r.created_at),
            updated_at: now,
        };
        let entry = Self::entry(
            Action::WebhookConfigure,
            app_id,
            change,
            &row,
            secret.is_some(),
        );
        let mut tx = self.store.begin().await?;
        repo::skip_history_if_first(&mut tx).await?;
        repo::upsert(&mut tx, &row).await?;
        crate::audit::append(&mut tx, &[entry])
            .await
            .map_err(WebhookError::AuditUnavailable)?;
        tx.commit().await?;
        let mut view = view_of(&row);
        view.secret = secret;
        Ok(view)
    }

    fn entry(
        action: Action,
        app_id: AppId,
        change: &Change,
        row: &WebhookRow,
        new_secret: bool,
    ) -> AuditEntry {
        AuditEntry {
            app_id: Some(app_id),
            key_id: change.key_id.clone(),
            caller: change.caller.clone(),
            request_id: change.request_id.clone(),
            reason: change.reason.clone(),
            detail: change.annotate(json!({
                "via": change.origin.via.as_str(),
                "url": row.url,
                "events": serde_json::from_str::<serde_json::Value>(&row.events).unwrap_or_default(),
                "new_secret": new_secret,
            })),
            ..AuditEntry::new(action, change.origin.actor.clone(), Outcome::Ok)
        }
    }

    /// App `app_id`'s endpoint (without its secret).
    pub async fn get(&self, app_id: AppId) -> Result<WebhookView, WebhookError> {
        let row = repo::get(&self.store, app_id)
            .await?
            .ok_or(WebhookError::NotConfigured)?;
        Ok(view_of(&row))
    }

    /// Removes app `app_id`'s endpoint; undelivered events are dropped. Audited as
    /// `webhook.remove`.
    pub async fn remove(&self, app_id: AppId, change: &Change) -> Result<(), WebhookError> {
        let row = repo::get(&self.store, app_id)
            .await?
            .ok_or(WebhookError::NotConfigured)?;
        let entry = Self::entry(Action::WebhookRemove, app_id, change, &row, false);
        let mut tx = self.store.begin().await?;
        repo::delete(&mut tx, app_id).await?;
        crate::audit::append(&mut tx, &[entry])
            .await
            .map_err(WebhookError::AuditUnavailable)?;
        tx.commit().await?;
        Ok(())
    }

    /// App `app_id`'s deliveries, newest first (at most 500), optionally of one status.
    pub async fn deliveries(
        &self,
        app_id: AppId,
        status: Option<&str>,
    ) -> Result<DeliveryPage, WebhookError> {
        if let Some(s) = status
            && !["pending", "delivered", "failed"].contains(&s)
        {
            return Err(WebhookError::Invalid(format!(
                "status {s:?} is not pending, delivered or failed"
            )));
        }
        let rows = repo::deliveries(&self.store, app_id, status, 500).await?;
        Ok(DeliveryPage {
            items: rows.iter().map(delivery_of).collect(),
        })
    }

    /// The dispatcher: turns new audit rows into deliveries and sends what is due, until the
    /// process ends.
    pub async fn run(self) {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = self.scan().await {
                tracing::warn!(error = %e, "cannot scan the audit log for webhook events");
            }
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %e, "cannot send webhook deliveries");
            }
        }
    }

    /// Makes deliveries of the audit rows after the cursor; returns how many. With no
    /// endpoint at all it reads nothing else and leaves the cursor alone (storing the first
    /// endpoint moves it to the present: [`repo::skip_history_if_first`]), so a host without
    /// webhooks neither reads its audit log twice nor writes every tick.
    pub async fn scan(&self) -> Result<usize, StoreError> {
        let hooks = repo::all(&self.store).await?;
        if hooks.is_empty() {
            return Ok(0);
        }
        let from = repo::cursor(&self.store).await?;
        let rows = rows_after(&self.store, from, SCAN_BATCH).await?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            return Ok(0);
        };
        let mut made = 0;
        for row in &rows {
            let Some(hook) = hooks
                .iter()
                .find(|h| Some(&h.app_id) == row.app_id.as_ref() && row.at >= h.created_at)
            else {
                continue;
            };
            let detail: serde_json::Value = row
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            let Some(kind) = event_type(row, &detail) else {
                continue;
            };
            let wanted: Vec<String> = serde_json::from_str(&hook.events).unwrap_or_default();
            if !wanted.is_empty() && !wanted.iter().any(|w| w == kind) {
                continue;
            }
            let event = event_of(row, kind, &detail);
            repo::enqueue(
                &self.store,
                &DeliveryRow {
                    id: row.id.clone(),
                    app_id: hook.app_id.clone(),
                    event_type: kind.to_owned(),
                    payload: serde_json::to_string(&event).unwrap_or_default(),
                    status: "pending".into(),
                    attempts: 0,
                    next_attempt_at: Timestamp::now().unix_millis(),
                    last_status: None,
                    last_error: None,
                    created_at: row.at,
                    delivered_at: None,
                },
            )
            .await?;
            made += 1;
        }
        // Another instance that scanned the same rows moved it already: nothing is lost,
        // its deliveries are the same ones.
        repo::advance(&self.store, from, last).await?;
        Ok(made)
    }

    /// Sends the deliveries that are due; returns how many attempts were made.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let now = Timestamp::now();
        let due = repo::due(&self.store, now, 50).await?;
        let mut sent = 0;
        for d in due {
            if !repo::claim(&self.store, &d, now.plus(LEASE)).await? {
                continue;
            }
            let attempts = d.attempts + 1;
            let result = self.attempt(&d).await;
            let now = Timestamp::now();
            let a = match &result {
                Ok(()) => Attempt {
                    status: "delivered",
                    next_attempt_at: now,
                    last_status: Some(200),
                    last_error: None,
                    delivered_at: Some(now),
                },
                Err((status, why)) => Attempt {
                    status: if attempts >= MAX_ATTEMPTS {
                        "failed"
                    } else {
                        "pending"
                    },
                    next_attempt_at: now.plus(backoff(self.retry_base, attempts)),
                    last_status: *status,
                    last_error: Some(why),
                    delivered_at: None,
                },
            };
            if let Err((_, why)) = &result {
                tracing::info!(event = %d.id, attempts, error = %why, "a webhook delivery failed");
            }
            repo::record(&self.store, &d.id, attempts, &a).await?;
            sent += 1;
        }
        Ok(sent)
    }

    /// One attempt: the event, signed now, to the app's current endpoint.
    async fn attempt(&self, d: &DeliveryRow) -> Result<(), (Option<u16>, String)> {
        let app: AppId = d
            .app_id
            .parse()
            .map_err(|_| (None, "a malformed app id".to_owned()))?;
        let hook = repo::get(&self.store, app)
            .await
            .map_err(|e| (None, format!("the database failed: {e}")))?
            .ok_or_else(|| (None, "the app has no endpoint any more".to_owned()))?;
        let secret = self
            .keys
            .open_bytes(&aad(&hook.app_id), &hook.secret)
            .await
            .map_err(|_| (None, "the endpoint secret does not open".to_owned()))?;
        let secret = std::str::from_utf8(secret.expose())
            .map_err(|_| (None, "the endpoint secret is not text".to_owned()))?;
        let now = u64::try_from(Timestamp::now().unix_millis() / 1000).unwrap_or(0);
        let signature = wire::sign(secret, now, d.payload.as_bytes());
        let response = self
            .client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, &d.id)
            .header(EVENT_TYPE_HEADER, &d.event_type)
            .body(d.payload.clone())
            .send()
            .await
            .map_err(|e| (None, format!("the endpoint could not be reached: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err((
                Some(status.as_u16()),
                format!("the endpoint answered {status}"),
            ))
        }
    }
}

fn view_of(row: &WebhookRow) -> WebhookView {
    WebhookView {
        url: row.url.clone(),
        events: serde_json::from_str(&row.events).unwrap_or_default(),
        secret: None,
        created_at: Timestamp::from_unix_millis(row.created_at).to_rfc3339(),
        updated_at: Timestamp::from_unix_millis(row.updated_at).to_rfc3339(),
    }
}

fn delivery_of(d: &DeliveryRow) -> Delivery {
    Delivery {
        event_id: d.id.clone(),
        event_type: d.event_type.clone(),
        status: d.status.clone(),
        attempts: u32::try_from(d.attempts).unwrap_or(u32::MAX),
        last_status: d.last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: d.last_error.clone(),
        next_attempt_at: (d.status == "pending")
            .then(|| Timestamp::from_unix_millis(d.next_attempt_at).to_rfc3339()),
        created_at: Timestamp::from_unix_millis(d.created_at).to_rfc3339(),
        delivered_at: d
            .delivered_at
            .map(|t| Timestamp::from_unix_millis(t).to_rfc3339()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;
    use crate::store::{Timestamp as At, apps, both_backends};

    both_backends! {
        without_an_endpoint_the_dispatcher_reads_and_writes_nothing =>
            without_an_endpoint_the_dispatcher_reads_and_writes_nothing;
    }

    /// No endpoint: a scan makes nothing and leaves the cursor where it was. The first
    /// endpoint moves the cursor to the end of the log, so its first scan reads only what
    /// came after it (its own `webhook.configure` row).
    async fn without_an_endpoint_the_dispatcher_reads_and_writes_nothing(
        db: &TestDb,
    ) -> anyhow::Result<()> {
        let store = db.store().clone();
        let keys = crate::keys::test_ring(&store).await?;
        let app = apps::create(&store, "billing", At::now()).await?.id;
        let audit = crate::audit::AuditLog::start(store.clone());
        for _ in 0..3 {
            audit
                .record(AuditEntry::new(
                    Action::TokensRetrieve,
                    crate::audit::Actor::new(crate::audit::ActorKind::Operator, "test"),
                    Outcome::Ok,
                ))
                .await?;
        }
        let hooks = Webhooks::new(store.clone(), keys, Duration::from_secs(10));
        assert_eq!(hooks.scan().await?, 0);
        assert_eq!(
            repo::cursor(&store).await?,
            0,
            "a scan without endpoints moved the cursor"
        );
        let request = WebhookRequest {
            url: "http://127.0.0.1:9/hook".into(),
            events: Vec::new(),
            rotate_secret: false,
        };
        hooks.configure(app, &request, &Change::cli()).await?;
        let cursor = repo::cursor(&store).await?;
        assert!(
            cursor >= 3,
            "the first endpoint left the cursor at {cursor}"
        );
        // Only the configure row is left to scan, and it makes no event.
        assert_eq!(hooks.scan().await?, 0);
        let last = rows_after(&store, 0, 1_000)
            .await?
            .last()
            .map_or(0, |r| r.seq);
        assert_eq!(repo::cursor(&store).await?, last);
        Ok(())
    }

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        assert!(check_url("https://hooks.example.com/tessera").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://[::1]/hook").is_ok());
        for bad in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#x",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    fn row(action: &str, outcome: &str) -> AuditRow {
        AuditRow {
            seq: 1,
            id: "e".into(),
            at: 0,
            app_id: Some("a".into()),
            actor_kind: "host".into(),
            actor_id: "refresh".into(),
            key_id: None,
            caller: None,
            action: action.into(),
            provider: Some("github".into()),
            grant_id: Some("g".into()),
            principal_kind: Some("user".into()),
            principal_value: Some("https://idp:ada".into()),
            outcome: outcome.into(),
            reason: None,
            context: None,
            request_id: None,
            detail: None,
            prev_hash: Vec::new(),
            hash: Vec::new(),
        }
    }

    #[test]
    fn audit_rows_make_the_documented_events_and_nothing_else() {
        let cases = [
            ("grant.create", "ok", json!({}), Some("grant.created")),
            (
                "grant.revoke",
                "ok",
                json!({"via": "wallet"}),
                Some("grant.revoked"),
            ),
            (
                "grant.reauth_required",
                "ok",
                json!({}),
                Some("grant.reauth_required"),
            ),
            (
                "proxy.execute",
                "error",
                json!({"error": "scope_reauth_required"}),
                Some("grant.scope_mismatch"),
            ),
            (
                "approval.request",
                "pending",
                json!({}),
                Some("approval.requested"),
            ),
            (
                "approval.decide",
                "ok",
                json!({"decision": "approved"}),
                Some("approval.approved"),
            ),
            (
                "approval.decide",
                "denied",
                json!({"decision": "expired"}),
                Some("approval.expired"),
            ),
            (
                "proxy.execute",
                "ok",
                json!({"approval_id": "x"}),
                Some("approval.executed"),
            ),
            (
                "proxy.execute",
                "error",
                json!({"approval_id": "x"}),
                Some("approval.failed"),
            ),
            ("proxy.execute", "ok", json!({}), None),
            ("tokens.retrieve", "ok", json!({}), None),
            ("key.create", "ok", json!({}), None),
        ];
        for (action, outcome, detail, want) in cases {
            let r = row(action, outcome);
            assert_eq!(event_type(&r, &detail), want, "{action} {detail}");
            if let Some(kind) = want {
                assert!(wire::EVENT_TYPES.contains(&kind), "{kind} is documented");
                let e = event_of(&r, kind, &detail);
                assert_eq!(e.data["principal"], "user:https://idp:ada");
            }
        }
    }

    #[test]
    fn retries_back_off_three_times_longer_each_time() {
        let base = Duration::from_secs(10);
        let delays: Vec<u64> = (1..=4).map(|n| backoff(base, n).as_secs()).collect();
        assert_eq!(delays, [10, 30, 90, 270]);
        assert!(backoff(base, 1000) >= backoff(base, 9));
    }
}
