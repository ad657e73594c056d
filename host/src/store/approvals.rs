//! The `approvals` table: proxied requests held for a person's decision.
//!
//! The request and the provider's response arrive sealed by the vault (associated data:
//! approval id, app, [`REQUEST_KIND`] / [`RESPONSE_KIND`]); this module stores opaque bytes.
//! Every lookup takes the app id, so another app's approval is never found. Every status
//! change is a compare-and-swap on the status (and, for a decision, on the deadline), so of
//! two racing decisions exactly one changes the row, and an approval leaves `approved` once.

use super::{AppId, Db, StoreError, Timestamp, on_conn};

/// The associated-data kind the stored request is sealed with.
pub const REQUEST_KIND: &str = "approval-request";
/// The associated-data kind the stored provider response is sealed with.
pub const RESPONSE_KIND: &str = "approval-response";

const COLUMNS: &str = "id, app_id, grant_id, provider, principal, agent_id, key_id, caller, \
                       reason, context, rule, method, url, request_sha256, request, status, \
                       created_at, expires_at, decided_at, decided_by, decided_via, note, \
                       executed_at, response_status, response, error_code";

/// One stored approval, column for column (ids as text, times as Unix milliseconds, the
/// context map as JSON text).
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApprovalRow {
    /// Its id (a UUID v7).
    pub id: String,
    /// The app of the call.
    pub app_id: String,
    /// The grant the request uses.
    pub grant_id: String,
    /// The grant's provider.
    pub provider: String,
    /// The grant's principal, as text.
    pub principal: String,
    /// The agent that asked.
    pub agent_id: Option<String>,
    /// The API key that asked.
    pub key_id: String,
    /// The SDK-declared caller.
    pub caller: Option<String>,
    /// The call's reason.
    pub reason: Option<String>,
    /// The call's context map, JSON.
    pub context: String,
    /// The rule that held it (name).
    pub rule: String,
    /// The method.
    pub method: String,
    /// The URL, secret query values redacted.
    pub url: String,
    /// SHA-256 (hex) of the sealed request's plaintext.
    pub request_sha256: String,
    /// The sealed request.
    pub request: Vec<u8>,
    /// `pending`, `approved`, `executed`, `failed`, `denied` or `expired`.
    pub status: String,
    /// When it was asked for.
    pub created_at: i64,
    /// The decision deadline.
    pub expires_at: i64,
    /// When it was decided or expired.
    pub decided_at: Option<i64>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// Where.
    pub decided_via: Option<String>,
    /// The decider's note.
    pub note: Option<String>,
    /// When the request was sent.
    pub executed_at: Option<i64>,
    /// The provider's status.
    pub response_status: Option<i64>,
    /// The sealed provider response.
    pub response: Option<Vec<u8>>,
    /// Why sending failed.
    pub error_code: Option<String>,
}

impl std::fmt::Debug for ApprovalRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalRow")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("grant_id", &self.grant_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A decision on a pending approval.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// `approved` or `denied` (or `expired`, by the host).
    pub to: &'a str,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub by: &'a str,
    /// Where.
    pub via: &'a str,
    /// A note.
    pub note: Option<&'a str>,
}

/// What [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// Only this status.
    pub status: Option<&'a str>,
    /// Only this grant's.
    pub grant_id: Option<&'a str>,
    /// Only this agent's.
    pub agent_id: Option<&'a str>,
    /// Only approvals of grants with this principal.
    pub principal: Option<&'a str>,
}

/// Stores a new approval.
pub async fn insert(db: impl Into<Db<'_>>, r: &ApprovalRow) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(&format!(
            "INSERT INTO approvals ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)"
        ))
        .bind(&r.id)
        .bind(&r.app_id)
        .bind(&r.grant_id)
        .bind(&r.provider)
        .bind(&r.principal)
        .bind(&r.agent_id)
        .bind(&r.key_id)
        .bind(&r.caller)
        .bind(&r.reason)
        .bind(&r.context)
        .bind(&r.rule)
        .bind(&r.method)
        .bind(&r.url)
        .bind(&r.request_sha256)
        .bind(&r.request)
        .bind(&r.status)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.decided_at)
        .bind(&r.decided_by)
        .bind(&r.decided_via)
        .bind(&r.note)
        .bind(r.executed_at)
        .bind(r.response_status)
        .bind(&r.response)
        .bind(&r.error_code)
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
}

/// Approval `id` of app `app_id`.
pub async fn get(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: &str,
) -> Result<Option<ApprovalRow>, StoreError> {
    on_conn!(db, |conn| {
        Ok(sqlx::query_as::<_, ApprovalRow>(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE id = $1 AND app_id = $2"
        ))
        .bind(id)
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?)
    })
}

/// The app's approvals matching `filter`, newest first, at most `limit`.
pub async fn list(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    filter: &Filter<'_>,
    limit: u32,
) -> Result<Vec<ApprovalRow>, StoreError> {
    on_conn!(db, |conn| {
        Ok(sqlx::query_as::<_, ApprovalRow>(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE app_id = $1 \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR grant_id = $3) \
             AND ($4 IS NULL OR agent_id = $4) AND ($5 IS NULL OR principal = $5) \
             ORDER BY created_at DESC, id DESC LIMIT $6"
        ))
        .bind(app_id.to_string())
        .bind(filter.status)
        .bind(filter.grant_id)
        .bind(filter.agent_id)
        .bind(filter.principal)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?)
    })
}

/// Decides a pending approval whose deadline is after `d.at`; returns whether this call
/// changed it (`false`: it was decided, expired or gone).
pub async fn decide(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: &str,
    d: &Decision<'_>,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE approvals SET status = $1, decided_at = $2, decided_by = $3, \
             decided_via = $4, note = $5 \
             WHERE id = $6 AND app_id = $7 AND status = 'pending' AND expires_at > $2",
        )
        .bind(d.to)
        .bind(d.at.unix_millis())
        .bind(d.by)
        .bind(d.via)
        .bind(d.note)
        .bind(id)
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Marks a pending approval whose deadline has passed at `now` as expired; returns whether
/// this call changed it.
pub async fn expire(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE approvals SET status = 'expired', decided_at = expires_at, \
             decided_by = 'host', decided_via = 'host' \
             WHERE id = $1 AND app_id = $2 AND status = 'pending' AND expires_at <= $3",
        )
        .bind(id)
        .bind(app_id.to_string())
        .bind(now.unix_millis())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Pending approvals whose deadline passed before `now`, as (app id, id), oldest first.
pub async fn overdue(
    db: impl Into<Db<'_>>,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<(String, String)>, StoreError> {
    on_conn!(db, |conn| {
        Ok(sqlx::query_as(
            "SELECT app_id, id FROM approvals WHERE status = 'pending' AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2",
        )
        .bind(now.unix_millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?)
    })
}

/// How an approved request ended.
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    /// `executed` or `failed`.
    pub to: &'a str,
    /// When.
    pub at: Timestamp,
    /// The provider's status, when it answered.
    pub response_status: Option<u16>,
    /// The sealed response.
    pub response: Option<&'a [u8]>,
    /// The error code, when sending failed.
    pub error_code: Option<&'a str>,
}

/// Records how an approved request ended; returns whether the approval was `approved` (and
/// so is now finished by this call).
pub async fn finish(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: &str,
    f: &Finish<'_>,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE approvals SET status = $1, executed_at = $2, response_status = $3, \
             response = $4, error_code = $5 \
             WHERE id = $6 AND app_id = $7 AND status = 'approved'",
        )
        .bind(f.to)
        .bind(f.at.unix_millis())
        .bind(f.response_status.map(i64::from))
        .bind(f.response)
        .bind(f.error_code)
        .bind(id)
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::apps;
    use crate::store::testing::TestDb;

    const T: Timestamp = Timestamp::from_unix_millis(1_764_581_400_000);

    fn row(app: AppId, id: &str, expires_at: i64) -> ApprovalRow {
        ApprovalRow {
            id: id.into(),
            app_id: app.to_string(),
            grant_id: uuid::Uuid::now_v7().to_string(),
            provider: "gmail".into(),
            principal: "user:https://idp.example:alice".into(),
            agent_id: None,
            key_id: "0123456789abcdef".into(),
            caller: Some("mail-bot".into()),
            reason: None,
            context: "{}".into(),
            rule: "mail-send".into(),
            method: "POST".into(),
            url: "https://gmail.googleapis.com/send".into(),
            request_sha256: "00".repeat(32),
            request: b"TV1sealed".to_vec(),
            status: "pending".into(),
            created_at: T.unix_millis(),
            expires_at,
            decided_at: None,
            decided_by: None,
            decided_via: None,
            note: None,
            executed_at: None,
            response_status: None,
            response: None,
            error_code: None,
        }
    }

    fn decision(to: &str, at: Timestamp) -> Decision<'_> {
        Decision {
            to,
            at,
            by: "operator:ops",
            via: "cli",
            note: None,
        }
    }

    async fn racing_decisions_have_one_winner_and_finish_once(db: &TestDb) -> anyhow::Result<()> {
        let app = apps::create(db.store(), "billing", T).await?.id;
        let id = uuid::Uuid::now_v7().to_string();
        insert(db.store(), &row(app, &id, T.unix_millis() + 60_000)).await?;
        let mut racers = Vec::new();
        for i in 0..8 {
            let store = db.store().clone();
            let id = id.clone();
            racers.push(tokio::spawn(async move {
                let to = if i % 2 == 0 { "approved" } else { "denied" };
                decide(&store, app, &id, &decision(to, T)).await
            }));
        }
        let mut won = 0;
        for r in racers {
            won += usize::from(r.await??);
        }
        assert_eq!(won, 1, "exactly one decision changes a pending approval");
        let decided = get(db.store(), app, &id).await?.expect("stored");
        assert!(["approved", "denied"].contains(&decided.status.as_str()));
        assert!(!decide(db.store(), app, &id, &decision("denied", T)).await?);
        let f = Finish {
            to: "executed",
            at: T,
            response_status: Some(200),
            response: Some(b"TV1answer"),
            error_code: None,
        };
        let finished = finish(db.store(), app, &id, &f).await?;
        assert_eq!(finished, decided.status == "approved");
        assert!(
            !finish(db.store(), app, &id, &f).await?,
            "an approval is sent at most once"
        );
        Ok(())
    }

    async fn a_deadline_closes_decisions_and_expiry_is_only_after_it(
        db: &TestDb,
    ) -> anyhow::Result<()> {
        let app = apps::create(db.store(), "billing", T).await?.id;
        let other = apps::create(db.store(), "other", T).await?.id;
        let id = uuid::Uuid::now_v7().to_string();
        let deadline = T.unix_millis() + 1000;
        insert(db.store(), &row(app, &id, deadline)).await?;
        assert!(
            !decide(db.store(), other, &id, &decision("approved", T)).await?,
            "another app's key finds nothing"
        );
        assert!(get(db.store(), other, &id).await?.is_none());
        assert!(!expire(db.store(), app, &id, T).await?, "not due yet");
        assert!(overdue(db.store(), T, 10).await?.is_empty());
        let late = Timestamp::from_unix_millis(deadline);
        assert!(
            !decide(db.store(), app, &id, &decision("approved", late)).await?,
            "approving at the deadline fails"
        );
        assert_eq!(
            overdue(db.store(), late, 10).await?,
            vec![(app.to_string(), id.clone())]
        );
        assert!(expire(db.store(), app, &id, late).await?);
        assert!(!expire(db.store(), app, &id, late).await?);
        let expired = get(db.store(), app, &id).await?.expect("stored");
        assert_eq!(expired.status, "expired");
        assert_eq!(expired.decided_by.as_deref(), Some("host"));
        let listed = list(
            db.store(),
            app,
            &Filter {
                status: Some("expired"),
                ..Filter::default()
            },
            10,
        )
        .await?;
        assert_eq!(listed.len(), 1);
        Ok(())
    }

    crate::store::both_backends! {
        racing_decisions => racing_decisions_have_one_winner_and_finish_once;
        deadlines => a_deadline_closes_decisions_and_expiry_is_only_after_it;
    }
}
