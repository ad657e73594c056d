//! The `audit` table: the append-only, hash-chained audit log, row by row.
//!
//! Rows are stored and read back exactly as written ([`AuditRow`] holds the raw column
//! values, ids as text, JSON as text), because the chain hash covers the stored bytes and
//! `tessera audit verify` must recompute it from what is really in the database. Computing
//! the hashes, choosing `seq` and keeping the chain head are the `audit` module's business;
//! this module only runs the SQL, including the lock that serialises appenders.
//!
//! Must never: update or delete a row (there is no such function), or hold a secret (the
//! `audit` module redacts before it builds a row).

use std::fmt::Write as _;

use super::{Db, StoreError, Timestamp, Tx, on_conn};

/// One stored audit row, column for column.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    /// Position in the chain, from 1, gap-free.
    pub seq: i64,
    /// Unique row id (UUID text).
    pub id: String,
    /// When it happened, unix milliseconds.
    pub at: i64,
    /// The app concerned.
    pub app_id: Option<String>,
    /// `app_key`, `agent`, `user`, `operator` or `host`.
    pub actor_kind: String,
    /// Who within that kind.
    pub actor_id: String,
    /// The API key that signed the request.
    pub key_id: Option<String>,
    /// The SDK-declared caller name.
    pub caller: Option<String>,
    /// What happened (`proxy.execute`, …).
    pub action: String,
    /// The provider concerned.
    pub provider: Option<String>,
    /// The grant concerned.
    pub grant_id: Option<String>,
    /// The grant principal's kind.
    pub principal_kind: Option<String>,
    /// The grant principal's value within its kind.
    pub principal_value: Option<String>,
    /// `ok`, `denied`, `error` or `pending`.
    pub outcome: String,
    /// The caller's stated reason.
    pub reason: Option<String>,
    /// JSON object of the caller's context strings.
    pub context: Option<String>,
    /// The host's request id.
    pub request_id: Option<String>,
    /// JSON of the action-specific facts.
    pub detail: Option<String>,
    /// Hash of the previous row (32 zero bytes for the first).
    pub prev_hash: Vec<u8>,
    /// This row's chain hash.
    pub hash: Vec<u8>,
}

const COLUMNS: &str = "seq, id, at, app_id, actor_kind, actor_id, key_id, caller, action, \
                       provider, grant_id, principal_kind, principal_value, outcome, reason, \
                       context, request_id, detail, prev_hash, hash";

/// Columns per row in an insert.
const COLUMN_COUNT: usize = 20;

/// Rows per `INSERT` statement: 200 × 20 binds stays well under both backends' limits
/// (SQLite 32 766, PostgreSQL 65 535).
const ROWS_PER_INSERT: usize = 200;

/// Inside `tx`, makes every other audit appender wait until `tx` ends (see
/// [`super::dialect::Dialect::audit_append_lock`]). Call it before reading the head.
pub async fn lock_appenders(tx: &mut Tx) -> Result<(), StoreError> {
    on_conn!(tx, |conn, dialect| {
        if let Some(lock) = dialect.audit_append_lock {
            sqlx::query(lock).execute(&mut *conn).await?;
        }
        Ok(())
    })
}

/// The last row's `(seq, hash)`, if there is any row.
pub async fn last(db: impl Into<Db<'_>>) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?;
        Ok(row)
    })
}

/// [`last`] on the SQLite request-path writer's connection (inside its transaction).
pub fn last_on_sqlite(conn: &rusqlite::Connection) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    use rusqlite::OptionalExtension as _;
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

/// [`insert`] on the SQLite request-path writer's connection (inside its transaction): one
/// prepared single-row statement run per row, which on the writer's own thread costs less
/// than building a statement per batch.
pub fn insert_on_sqlite(conn: &rusqlite::Connection, rows: &[AuditRow]) -> Result<(), StoreError> {
    let mut sql = format!("INSERT INTO audit ({COLUMNS}) VALUES (");
    for c in 0..COLUMN_COUNT {
        if c > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "${}", c + 1);
    }
    sql.push(')');
    let mut statement = conn.prepare_cached(&sql)?;
    for r in rows {
        statement
            .execute(rusqlite::params![
                r.seq,
                r.id,
                r.at,
                r.app_id,
                r.actor_kind,
                r.actor_id,
                r.key_id,
                r.caller,
                r.action,
                r.provider,
                r.grant_id,
                r.principal_kind,
                r.principal_value,
                r.outcome,
                r.reason,
                r.context,
                r.request_id,
                r.detail,
                r.prev_hash,
                r.hash,
            ])
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict {
                    what: "an audit row with this seq or id".to_owned(),
                },
                _ => e.into(),
            })?;
    }
    Ok(())
}

/// Inserts `rows` as they are (several rows per statement). A `seq` or `id` already present
/// is a [`StoreError::Conflict`].
pub async fn insert(tx: &mut Tx, rows: &[AuditRow]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("INSERT INTO audit ({COLUMNS}) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..COLUMN_COUNT {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push('$');
                sql.push_str(&(i * COLUMN_COUNT + c + 1).to_string());
            }
            sql.push(')');
        }
        on_conn!(&mut *tx, |conn| {
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(r.seq)
                    .bind(&r.id)
                    .bind(r.at)
                    .bind(&r.app_id)
                    .bind(&r.actor_kind)
                    .bind(&r.actor_id)
                    .bind(&r.key_id)
                    .bind(&r.caller)
                    .bind(&r.action)
                    .bind(&r.provider)
                    .bind(&r.grant_id)
                    .bind(&r.principal_kind)
                    .bind(&r.principal_value)
                    .bind(&r.outcome)
                    .bind(&r.reason)
                    .bind(&r.context)
                    .bind(&r.request_id)
                    .bind(&r.detail)
                    .bind(&r.prev_hash)
                    .bind(&r.hash);
            }
            query
                .execute(&mut *conn)
                .await
                .map_err(StoreError::conflict_on_unique(|| {
                    "an audit row with this seq or id".to_owned()
                }))?;
            Ok::<(), StoreError>(())
        })?;
    }
    Ok(())
}

/// Up to `limit` rows with `seq > after`, in chain order, whatever they contain: what
/// verification walks.
pub async fn rows_after(
    db: impl Into<Db<'_>>,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    on_conn!(db, |conn| {
        let rows: Vec<AuditRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows)
    })
}

/// Which rows [`select`] returns. Every `Some` narrows; `None` does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only rows of this app (UUID text).
    pub app_id: Option<String>,
    /// Only rows whose actor is of this kind (`agent`, `app_key`, …).
    pub actor_kind: Option<String>,
    /// Only rows whose actor has this id.
    pub actor_id: Option<String>,
    /// Only rows about this grant.
    pub grant_id: Option<String>,
    /// Only rows about this provider.
    pub provider: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only rows at or after this time.
    pub since: Option<Timestamp>,
    /// Only rows strictly before this time.
    pub until: Option<Timestamp>,
    /// Only rows with a larger `seq`.
    pub after: Option<i64>,
    /// Only rows with a smaller `seq`.
    pub before: Option<i64>,
    /// Newest first (else oldest first).
    pub newest_first: bool,
    /// At most this many rows.
    pub limit: i64,
}

enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// The rows `query` selects, in `seq` order (ascending unless `newest_first`).
pub async fn select(
    db: impl Into<Db<'_>>,
    query: &AuditQuery,
) -> Result<Vec<AuditRow>, StoreError> {
    // Only the filters given become conditions: one plain SQL text per combination, so the
    // planner sees simple equalities and can use the (app_id, at) and (grant_id, at) indexes.
    let mut conditions: Vec<(&str, Bind<'_>)> = Vec::new();
    let texts = [
        ("app_id =", &query.app_id),
        ("actor_kind =", &query.actor_kind),
        ("actor_id =", &query.actor_id),
        ("grant_id =", &query.grant_id),
        ("provider =", &query.provider),
        ("action =", &query.action),
        ("outcome =", &query.outcome),
    ];
    for (condition, value) in texts {
        if let Some(v) = value {
            conditions.push((condition, Bind::Text(v)));
        }
    }
    let ints = [
        ("at >=", query.since.map(Timestamp::unix_millis)),
        ("at <", query.until.map(Timestamp::unix_millis)),
        ("seq >", query.after),
        ("seq <", query.before),
    ];
    for (condition, value) in ints {
        if let Some(v) = value {
            conditions.push((condition, Bind::Int(v)));
        }
    }
    let mut sql = format!("SELECT {COLUMNS} FROM audit WHERE 1 = 1");
    for (n, (condition, _)) in conditions.iter().enumerate() {
        let _ = write!(sql, " AND {condition} ${}", n + 1);
    }
    let order = if query.newest_first { "DESC" } else { "ASC" };
    let _ = write!(sql, " ORDER BY seq {order} LIMIT ${}", conditions.len() + 1);
    on_conn!(db, |conn| {
        let mut q = sqlx::query_as::<_, AuditRow>(&sql);
        for (_, b) in &conditions {
            q = match b {
                Bind::Text(t) => q.bind(*t),
                Bind::Int(i) => q.bind(*i),
            };
        }
        let rows = q.bind(query.limit).fetch_all(&mut *conn).await?;
        Ok(rows)
    })
}

/// Runs the backend's statements that make every insert into `audit` fail (`on`) or undo
/// that (`!on`). Test fault injection only.
pub async fn set_insert_fault(db: impl Into<Db<'_>>, on: bool) -> Result<(), StoreError> {
    on_conn!(db, |conn, dialect| {
        let statements = if on {
            dialect.audit_fault_on
        } else {
            dialect.audit_fault_off
        };
        for statement in statements {
            sqlx::raw_sql(statement).execute(&mut *conn).await?;
        }
        Ok(())
    })
}
