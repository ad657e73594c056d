//! The `webhooks`, `webhook_deliveries` and `webhook_cursor` tables: each app's endpoint
//! (its secret arrives sealed: associated data app id, app id, [`SEALED_KIND`]), the events
//! to send and how their delivery went, and how far the audit log has been scanned for
//! events. A delivery's id is its event's id, so inserting one twice adds nothing; claiming
//! and finishing an attempt are compare-and-swaps on the attempt count, so two host
//! instances never send the same attempt.

use super::{AppId, Db, StoreError, Timestamp, on_conn};

/// The associated-data kind the endpoint secret is sealed with.
pub const SEALED_KIND: &str = "webhook-secret";

/// An app's endpoint, column for column.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookRow {
    /// The app.
    pub app_id: String,
    /// The endpoint URL.
    pub url: String,
    /// The sealed secret.
    pub secret: Vec<u8>,
    /// The event types sent (JSON list; empty: all).
    pub events: String,
    /// When it was first configured.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

impl std::fmt::Debug for WebhookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRow")
            .field("app_id", &self.app_id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// One delivery, column for column.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRow {
    /// The event id (an audit row id).
    pub id: String,
    /// The app.
    pub app_id: String,
    /// The event type.
    pub event_type: String,
    /// The event, JSON.
    pub payload: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made (or claimed).
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: i64,
    /// The endpoint's last status.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: i64,
    /// When it was delivered.
    pub delivered_at: Option<i64>,
}

const DELIVERY_COLUMNS: &str = "id, app_id, event_type, payload, status, attempts, \
                                next_attempt_at, last_status, last_error, created_at, delivered_at";

/// Stores (or replaces) app `w.app_id`'s endpoint; `created_at` stays as first stored.
pub async fn upsert(db: impl Into<Db<'_>>, w: &WebhookRow) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "INSERT INTO webhooks (app_id, url, secret, events, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app_id) DO UPDATE SET \
             url = excluded.url, secret = excluded.secret, events = excluded.events, \
             updated_at = excluded.updated_at",
        )
        .bind(&w.app_id)
        .bind(&w.url)
        .bind(&w.secret)
        .bind(&w.events)
        .bind(w.created_at)
        .bind(w.updated_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
}

/// App `app_id`'s endpoint.
pub async fn get(db: impl Into<Db<'_>>, app_id: AppId) -> Result<Option<WebhookRow>, StoreError> {
    on_conn!(db, |conn| {
        Ok(sqlx::query_as::<_, WebhookRow>(
            "SELECT app_id, url, secret, events, created_at, updated_at FROM webhooks \
             WHERE app_id = $1",
        )
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?)
    })
}

/// Every app's endpoint (few: one per app).
pub async fn all(db: impl Into<Db<'_>>) -> Result<Vec<WebhookRow>, StoreError> {
    on_conn!(db, |conn| {
        Ok(sqlx::query_as::<_, WebhookRow>(
            "SELECT app_id, url, secret, events, created_at, updated_at FROM webhooks",
        )
        .fetch_all(&mut *conn)
        .await?)
    })
}

/// Removes app `app_id`'s endpoint and its pending deliveries; returns whether it had one.
pub async fn delete(db: impl Into<Db<'_>>, app_id: AppId) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        sqlx::query("DELETE FROM webhook_deliveries WHERE app_id = $1 AND status = 'pending'")
            .bind(app_id.to_string())
            .execute(&mut *conn)
            .await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE app_id = $1")
            .bind(app_id.to_string())
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// When no app has an endpoint yet, moves the cursor to the end of the audit log: the
/// dispatcher does not scan while there is no endpoint, and nothing before an endpoint's
/// creation becomes an event, so the first endpoint starts from the present instead of
/// scanning the whole history. Call it in the transaction that stores the endpoint, before
/// storing it.
pub async fn skip_history_if_first(db: impl Into<Db<'_>>) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "UPDATE webhook_cursor SET seq = (SELECT COALESCE(MAX(seq), 0) FROM audit) \
             WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM webhooks)",
        )
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
}

/// The last audit `seq` scanned for events.
pub async fn cursor(db: impl Into<Db<'_>>) -> Result<i64, StoreError> {
    on_conn!(db, |conn| {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM webhook_cursor WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?;
        Ok(seq.unwrap_or(0))
    })
}

/// Moves the cursor from `from` to `to`; returns whether it was still at `from`.
pub async fn advance(db: impl Into<Db<'_>>, from: i64, to: i64) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query("UPDATE webhook_cursor SET seq = $1 WHERE id = 1 AND seq = $2")
            .bind(to)
            .bind(from)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Adds a pending delivery due now; an event already added is left alone.
pub async fn enqueue(db: impl Into<Db<'_>>, d: &DeliveryRow) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(&format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&d.id)
        .bind(&d.app_id)
        .bind(&d.event_type)
        .bind(&d.payload)
        .bind(&d.status)
        .bind(d.attempts)
        .bind(d.next_attempt_at)
        .bind(d.last_status)
        .bind(&d.last_error)
        .bind(d.created_at)
        .bind(d.delivered_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
}

/// Pending deliveries due at `now`, oldest first.
pub async fn due(
    db: impl Into<Db<'_>>,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<DeliveryRow>, StoreError> {
    on_conn!(db, |conn| {
        Ok(sqlx::query_as::<_, DeliveryRow>(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2"
        ))
        .bind(now.unix_millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?)
    })
}

/// Claims the next attempt of delivery `d`: counts it and pushes the deadline to `lease`
/// (so no other instance sends it meanwhile); returns whether this call claimed it.
pub async fn claim(
    db: impl Into<Db<'_>>,
    d: &DeliveryRow,
    lease: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE id = $2 AND status = 'pending' AND attempts = $3",
        )
        .bind(lease.unix_millis())
        .bind(&d.id)
        .bind(d.attempts)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// `pending` (retry at `next_attempt_at`), `delivered` or `failed`.
    pub status: &'a str,
    /// When to try again.
    pub next_attempt_at: Timestamp,
    /// The endpoint's status, when it answered.
    pub last_status: Option<u16>,
    /// Why it failed.
    pub last_error: Option<&'a str>,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
}

/// Records attempt number `attempts` (as claimed) of delivery `id`.
pub async fn record(
    db: impl Into<Db<'_>>,
    id: &str,
    attempts: i64,
    a: &Attempt<'_>,
) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, next_attempt_at = $2, last_status = $3, \
             last_error = $4, delivered_at = $5 WHERE id = $6 AND attempts = $7",
        )
        .bind(a.status)
        .bind(a.next_attempt_at.unix_millis())
        .bind(a.last_status.map(i64::from))
        .bind(a.last_error)
        .bind(a.delivered_at.map(Timestamp::unix_millis))
        .bind(id)
        .bind(attempts)
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
}

/// App `app_id`'s deliveries, newest first, optionally of one status.
pub async fn deliveries(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    status: Option<&str>,
    limit: u32,
) -> Result<Vec<DeliveryRow>, StoreError> {
    on_conn!(db, |conn| {
        Ok(sqlx::query_as::<_, DeliveryRow>(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE app_id = $1 \
             AND ($2 IS NULL OR status = $2) ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(app_id.to_string())
        .bind(status)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?)
    })
}
