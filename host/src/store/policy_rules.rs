//! The `policy_rules` table: the restrictions an operator set for an app, each with the Cedar
//! policy it compiles to. Every lookup takes the app id (another app's rule is not found);
//! a second rule of the same name in one app is a [`StoreError::Conflict`].

use super::{AppId, Db, StoreError, Timestamp, on_conn};

const TABLE: &str = "policy_rules";

const COLUMNS: &str =
    "id, app_id, name, layer, target, kind, settings, cedar, created_at, updated_at";

/// One stored rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRecord {
    /// Its id (a UUID v7, as text).
    pub id: String,
    /// The app it restricts.
    pub app_id: AppId,
    /// Its name, unique in the app.
    pub name: String,
    /// `app`, `provider`, `grant` or `agent`.
    pub layer: String,
    /// The provider, grant or agent id (empty for `app`).
    pub target: String,
    /// The rule kind (`time_window`, `ip_allow`, …).
    pub kind: String,
    /// The kind's settings, as JSON text.
    pub settings: String,
    /// The Cedar policy.
    pub cedar: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
);

fn from_row(
    (id, app_id, name, layer, target, kind, settings, cedar, created, updated): Row,
) -> Result<RuleRecord, StoreError> {
    Ok(RuleRecord {
        id,
        app_id: AppId::from_column(TABLE, &app_id)?,
        name,
        layer,
        target,
        kind,
        settings,
        cedar,
        created_at: Timestamp::from_unix_millis(created),
        updated_at: Timestamp::from_unix_millis(updated),
    })
}

/// Stores a new rule; a name the app already uses is a conflict.
pub async fn insert(db: impl Into<Db<'_>>, r: &RuleRecord) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(&format!(
            "INSERT INTO policy_rules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&r.id)
        .bind(r.app_id.to_string())
        .bind(&r.name)
        .bind(&r.layer)
        .bind(&r.target)
        .bind(&r.kind)
        .bind(&r.settings)
        .bind(&r.cedar)
        .bind(r.created_at.unix_millis())
        .bind(r.updated_at.unix_millis())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::conflict_on_unique(|| {
            format!("policy rule {:?}", r.name)
        }))?;
        Ok(())
    })
}

/// Replaces everything but the id, app and creation time of rule `r.id`; returns whether it
/// existed. A name another rule of the app uses is a conflict.
pub async fn update(db: impl Into<Db<'_>>, r: &RuleRecord) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE policy_rules SET name = $1, layer = $2, target = $3, kind = $4, \
             settings = $5, cedar = $6, updated_at = $7 WHERE id = $8 AND app_id = $9",
        )
        .bind(&r.name)
        .bind(&r.layer)
        .bind(&r.target)
        .bind(&r.kind)
        .bind(&r.settings)
        .bind(&r.cedar)
        .bind(r.updated_at.unix_millis())
        .bind(&r.id)
        .bind(r.app_id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::conflict_on_unique(|| {
            format!("policy rule {:?}", r.name)
        }))?;
        Ok(done.rows_affected() == 1)
    })
}

/// Rule `id` of app `app_id`.
pub async fn get(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: &str,
) -> Result<Option<RuleRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM policy_rules WHERE id = $1 AND app_id = $2"
        ))
        .bind(id)
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(from_row).transpose()
    })
}

/// The rule named `name` of app `app_id`.
pub async fn get_by_name(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    name: &str,
) -> Result<Option<RuleRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM policy_rules WHERE app_id = $1 AND name = $2"
        ))
        .bind(app_id.to_string())
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(from_row).transpose()
    })
}

/// Every rule of app `app_id`, by name.
pub async fn list(db: impl Into<Db<'_>>, app_id: AppId) -> Result<Vec<RuleRecord>, StoreError> {
    on_conn!(db, |conn| {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM policy_rules WHERE app_id = $1 ORDER BY name"
        ))
        .bind(app_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(from_row).collect()
    })
}

/// Counts one call under rule `rule_id` for `subject` in the window starting at
/// `window_start` (Unix milliseconds); returns the calls counted in that window so far, this
/// one included. One statement, so concurrent calls on any instance count exactly.
pub async fn count_call(
    db: impl Into<Db<'_>>,
    rule_id: &str,
    subject: &str,
    window_start: i64,
) -> Result<i64, StoreError> {
    on_conn!(db, |conn| {
        let (calls,): (i64,) = sqlx::query_as(
            "INSERT INTO rate_counters (rule_id, subject, window_start, calls) \
             VALUES ($1, $2, $3, 1) ON CONFLICT (rule_id, subject, window_start) \
             DO UPDATE SET calls = rate_counters.calls + 1 RETURNING calls",
        )
        .bind(rule_id)
        .bind(subject)
        .bind(window_start)
        .fetch_one(&mut *conn)
        .await?;
        Ok(calls)
    })
}

/// Deletes the counters of windows that started before `before` (Unix milliseconds).
pub async fn purge_counters(db: impl Into<Db<'_>>, before: i64) -> Result<u64, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query("DELETE FROM rate_counters WHERE window_start < $1")
            .bind(before)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected())
    })
}

/// Deletes rule `id` of app `app_id`; returns whether it existed.
pub async fn delete(db: impl Into<Db<'_>>, app_id: AppId, id: &str) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query("DELETE FROM policy_rules WHERE id = $1 AND app_id = $2")
            .bind(id)
            .bind(app_id.to_string())
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}
