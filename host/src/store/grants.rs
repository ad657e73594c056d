//! The `grants` table: a principal of an app may call one provider with one credential.
//!
//! Every function takes the app id and filters on it: a grant of another app is simply not
//! found, which is how the API answers `404` rather than `403` across apps (isolation).
//! Revoked grants stay as history (`revoked_at` set); at most one live grant exists per app,
//! provider, principal and upstream account (a partial unique index).

use tessera_proto::grants::{GrantKind, GrantStatus, Principal};

use super::credentials::{self, CredentialRecord};
use super::{AppId, CredentialId, Db, GrantId, StoreError, Timestamp, on_conn};

const TABLE: &str = "grants";

const COLUMNS: &str = "id, app_id, provider, principal_kind, principal_value, credential_id, \
                       kind, account_label, scopes, status, created_at, updated_at, \
                       last_used_at, revoked_at, valid_until";

/// One stored grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    /// Its id.
    pub id: GrantId,
    /// The app that owns it.
    pub app_id: AppId,
    /// The provider it reaches.
    pub provider: String,
    /// Whom it belongs to.
    pub principal: Principal,
    /// The credential it uses.
    pub credential_id: CredentialId,
    /// OAuth or managed secret.
    pub kind: GrantKind,
    /// Which upstream account.
    pub account_label: String,
    /// Provider scopes held.
    pub scopes: Vec<String>,
    /// Where it stands.
    pub status: GrantStatus,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it was last used in a call.
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// When it stops working by itself (its TTL), if ever.
    pub valid_until: Option<Timestamp>,
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
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn from_row(row: Row) -> Result<GrantRecord, StoreError> {
    let (
        id,
        app_id,
        provider,
        principal_kind,
        principal_value,
        credential_id,
        kind,
        account_label,
        scopes,
        status,
        created,
        updated,
        used,
        revoked,
        valid_until,
    ) = row;
    let corrupt = |detail: String| StoreError::Corrupt {
        table: TABLE,
        detail,
    };
    let principal = Principal::from_parts(&principal_kind, &principal_value)
        .map_err(|_| corrupt(format!("grant {id} has a malformed principal")))?;
    let kind = match kind.as_str() {
        "oauth" => GrantKind::Oauth,
        "managed_secret" => GrantKind::ManagedSecret,
        other => return Err(corrupt(format!("grant {id} has kind {other:?}"))),
    };
    let status = parse_status(&status)
        .ok_or_else(|| corrupt(format!("grant {id} has status {status:?}")))?;
    Ok(GrantRecord {
        id: GrantId::from_column(TABLE, &id)?,
        app_id: AppId::from_column(TABLE, &app_id)?,
        provider,
        principal,
        credential_id: CredentialId::from_column(TABLE, &credential_id)?,
        kind,
        account_label,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        status,
        created_at: Timestamp::from_unix_millis(created),
        updated_at: Timestamp::from_unix_millis(updated),
        last_used_at: used.map(Timestamp::from_unix_millis),
        revoked_at: revoked.map(Timestamp::from_unix_millis),
        valid_until: valid_until.map(Timestamp::from_unix_millis),
    })
}

/// Parses a stored or requested status name.
pub fn parse_status(s: &str) -> Option<GrantStatus> {
    match s {
        "active" => Some(GrantStatus::Active),
        "reauth_required" => Some(GrantStatus::ReauthRequired),
        "revoked" => Some(GrantStatus::Revoked),
        _ => None,
    }
}

/// Parses a grant kind name.
pub fn parse_kind(s: &str) -> Option<GrantKind> {
    match s {
        "oauth" => Some(GrantKind::Oauth),
        "managed_secret" => Some(GrantKind::ManagedSecret),
        _ => None,
    }
}

/// Stores a new grant. A live grant of the same app, provider, principal and account is a
/// [`StoreError::Conflict`].
pub async fn insert(db: impl Into<Db<'_>>, g: &GrantRecord) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(&format!(
            "INSERT INTO grants ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(g.id.to_string())
        .bind(g.app_id.to_string())
        .bind(&g.provider)
        .bind(g.principal.kind())
        .bind(g.principal.value())
        .bind(g.credential_id.to_string())
        .bind(g.kind.as_str())
        .bind(&g.account_label)
        .bind(g.scopes.join(" "))
        .bind(g.status.as_str())
        .bind(g.created_at.unix_millis())
        .bind(g.updated_at.unix_millis())
        .bind(g.last_used_at.map(Timestamp::unix_millis))
        .bind(g.revoked_at.map(Timestamp::unix_millis))
        .bind(g.valid_until.map(Timestamp::unix_millis))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::conflict_on_unique(|| {
            format!(
                "a live {} grant for {} with account {:?}",
                g.provider, g.principal, g.account_label
            )
        }))?;
        Ok(())
    })
}

/// The grant `id` of app `app_id`, revoked or not. With `lock`, the row is locked until the
/// transaction ends (PostgreSQL; SQLite's write transaction already excludes writers).
pub async fn get(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: GrantId,
    lock: bool,
) -> Result<Option<GrantRecord>, StoreError> {
    on_conn!(db, |conn, dialect| {
        let suffix = if lock { dialect.for_update } else { "" };
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM grants WHERE id = $1 AND app_id = $2{suffix}"
        ))
        .bind(id.to_string())
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(from_row).transpose()
    })
}

/// The `SELECT … FROM` of the joined reads: every grant column, then every credential
/// column, each qualified by its table's alias.
static JOINED_SELECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| joined_select(""));

/// [`JOINED_SELECT`] with the grant epoch (SQLite, migration 0014) as one more column, at
/// [`EPOCH_COLUMN`]: read by the same statement, so in the same snapshot.
static EPOCH_JOINED_SELECT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| joined_select(", (SELECT epoch FROM grant_epoch WHERE id = 1)"));

/// Where [`EPOCH_JOINED_SELECT`] has the epoch: after every grant and credential column.
static EPOCH_COLUMN: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    COLUMNS.split(',').count() + credentials::COLUMNS.split(',').count()
});

fn joined_select(extra: &str) -> String {
    let qualified = |alias: &str, columns: &str| {
        columns
            .split(',')
            .map(|c| format!("{alias}.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "SELECT {}, {}{extra} FROM grants g \
         LEFT JOIN credentials c ON c.id = g.credential_id AND c.app_id = g.app_id",
        qualified("g", COLUMNS),
        qualified("c", credentials::COLUMNS),
    )
}

/// Decodes a row of [`JOINED_SELECT`] (of either sqlx backend, with `sqlx::Row` in scope, or
/// of rusqlite, with `store::TryGet` in scope).
macro_rules! decode_joined {
    ($row:expr) => {{
        let row = $row;
        let grant: Row = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
            row.try_get(6)?,
            row.try_get(7)?,
            row.try_get(8)?,
            row.try_get(9)?,
            row.try_get(10)?,
            row.try_get(11)?,
            row.try_get(12)?,
            row.try_get(13)?,
            row.try_get(14)?,
        );
        let credential_id: Option<String> = row.try_get(15)?;
        let credential = match credential_id {
            None => None,
            Some(credential_id) => Some(credentials::from_row((
                credential_id,
                row.try_get(16)?,
                row.try_get(17)?,
                row.try_get(18)?,
                row.try_get(19)?,
                row.try_get(20)?,
                row.try_get(21)?,
                row.try_get(22)?,
                row.try_get(23)?,
                row.try_get(24)?,
            ))?),
        };
        (from_row(grant)?, credential)
    }};
}

/// Grant `id` of app `app_id` and the credential it uses (`None` if that row is gone), in
/// one read: what every call needs before signing.
pub async fn get_with_credential(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: GrantId,
) -> Result<Option<(GrantRecord, Option<CredentialRecord>)>, StoreError> {
    use sqlx::Row as _;
    on_conn!(db, |conn| {
        let row = sqlx::query(&format!(
            "{} WHERE g.id = $1 AND g.app_id = $2",
            *JOINED_SELECT
        ))
        .bind(id.to_string())
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => Ok(Some(decode_joined!(&row))),
            None => Ok(None),
        }
    })
}

/// [`get_with_credential`] for several grants of any apps in one read, for the request
/// path's read batcher. Returns the grants found, in no particular order: the caller matches
/// them to the apps that asked, so that a grant never answers another app's request.
pub async fn get_many_with_credential(
    db: impl Into<Db<'_>>,
    ids: &[GrantId],
) -> Result<Vec<(GrantRecord, Option<CredentialRecord>)>, StoreError> {
    use sqlx::Row as _;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = joined_select_of(&JOINED_SELECT, ids.len());
    on_conn!(db, |conn| {
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id.to_string());
        }
        let rows = query.fetch_all(&mut *conn).await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            found.push(decode_joined!(row));
        }
        Ok(found)
    })
}

/// What [`get_many_with_credential_on_sqlite`] read: the grants found, and the grant epoch
/// of the snapshot they were read in (`None` when none was found).
pub(crate) type ReadWithEpoch = (Vec<(GrantRecord, Option<CredentialRecord>)>, Option<i64>);

/// [`get_many_with_credential`] on an SQLite reader connection (`store::SqliteReaders`),
/// on the caller's thread, with the grant epoch (migration 0014) read by the same
/// statement: what was read stays current for as long as the epoch stays the same.
pub(crate) fn get_many_with_credential_on_sqlite(
    conn: &rusqlite::Connection,
    ids: &[GrantId],
) -> Result<ReadWithEpoch, StoreError> {
    use super::TryGet as _;
    if ids.is_empty() {
        return Ok((Vec::new(), None));
    }
    let mut statement = conn.prepare_cached(&joined_select_of(&EPOCH_JOINED_SELECT, ids.len()))?;
    let mut rows = statement.query(rusqlite::params_from_iter(
        ids.iter().map(ToString::to_string),
    ))?;
    let mut found = Vec::new();
    let mut epoch = None;
    while let Some(row) = rows.next()? {
        epoch = Some(row.get(*EPOCH_COLUMN)?);
        found.push(decode_joined!(row));
    }
    Ok((found, epoch))
}

/// The grant epoch (migration 0014) on an SQLite connection: on the request path's writer,
/// inside the nonce batch's transaction.
pub(crate) fn epoch_on_sqlite(conn: &rusqlite::Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT epoch FROM grant_epoch WHERE id = 1")?
        .query_row([], |row| row.get(0))?)
}

/// `select` (one of the joined reads above) for `n` grant ids.
fn joined_select_of(select: &str, n: usize) -> String {
    let placeholders = (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{select} WHERE g.id IN ({placeholders})")
}

/// The live (not revoked) grant of this app, provider, principal and account, if any.
pub async fn find_live(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    provider: &str,
    principal: &Principal,
    account_label: &str,
) -> Result<Option<GrantRecord>, StoreError> {
    on_conn!(db, |conn, dialect| {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM grants WHERE app_id = $1 AND provider = $2 \
             AND principal_kind = $3 AND principal_value = $4 AND account_label = $5 \
             AND revoked_at IS NULL{}",
            dialect.for_update
        ))
        .bind(app_id.to_string())
        .bind(provider)
        .bind(principal.kind())
        .bind(principal.value())
        .bind(account_label)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(from_row).transpose()
    })
}

/// What [`list`] returns: filters are optional and combine with AND.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this provider.
    pub provider: Option<String>,
    /// Only this principal.
    pub principal: Option<Principal>,
    /// Only this status.
    pub status: Option<GrantStatus>,
    /// Only this kind.
    pub kind: Option<GrantKind>,
    /// Only grants with an id below this one (the previous page's last id).
    pub before: Option<GrantId>,
    /// Only grants this agent may reach at this instant: its own (principal `agent:ID`) and
    /// those with a live delegation to it.
    pub reachable_by: Option<(super::AgentId, Timestamp)>,
}

/// Up to `limit` grants of app `app_id` matching `filter`, newest first (ids are UUID v7,
/// so id order is creation order).
pub async fn list(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    filter: &Filter,
    limit: u32,
) -> Result<Vec<GrantRecord>, StoreError> {
    on_conn!(db, |conn| {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM grants WHERE app_id = $1 \
             AND ($2 IS NULL OR provider = $2) \
             AND ($3 IS NULL OR principal_kind = $3) \
             AND ($4 IS NULL OR principal_value = $4) \
             AND ($5 IS NULL OR status = $5) \
             AND ($6 IS NULL OR kind = $6) \
             AND ($7 IS NULL OR id < $7) \
             AND ($9 IS NULL OR (principal_kind = 'agent' AND principal_value = $9) \
                  OR EXISTS (SELECT 1 FROM delegations d WHERE d.grant_id = grants.id \
                  AND d.app_id = grants.app_id AND d.agent_id = $9 AND d.revoked_at IS NULL \
                  AND (d.expires_at IS NULL OR d.expires_at > $10))) \
             ORDER BY id DESC LIMIT $8"
        ))
        .bind(app_id.to_string())
        .bind(filter.provider.clone())
        .bind(filter.principal.as_ref().map(Principal::kind))
        .bind(filter.principal.as_ref().map(Principal::value))
        .bind(filter.status.map(GrantStatus::as_str))
        .bind(filter.kind.map(GrantKind::as_str))
        .bind(filter.before.map(|id| id.to_string()))
        .bind(i64::from(limit))
        .bind(filter.reachable_by.map(|(a, _)| a.to_string()))
        .bind(filter.reachable_by.map_or(0, |(_, now)| now.unix_millis()))
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(from_row).collect()
    })
}

/// Marks grant `id` revoked at `now`; returns whether this call revoked it (`false`: it was
/// already revoked, or does not exist in this app).
pub async fn revoke(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: GrantId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE grants SET status = 'revoked', revoked_at = $1, updated_at = $1 \
             WHERE id = $2 AND app_id = $3 AND revoked_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(id.to_string())
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Records a rotation or reconnection: new account label and scopes, status back to active.
pub async fn update_connected(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: GrantId,
    account_label: &str,
    scopes: &[String],
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE grants SET account_label = $1, scopes = $2, status = 'active', updated_at = $3 \
             WHERE id = $4 AND app_id = $5 AND revoked_at IS NULL",
        )
        .bind(account_label)
        .bind(scopes.join(" "))
        .bind(now.unix_millis())
        .bind(id.to_string())
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::conflict_on_unique(|| {
            format!("another live grant with account {account_label:?}")
        }))?;
        Ok(done.rows_affected() == 1)
    })
}

/// Sets (or, with `None`, clears) live grant `id`'s hard expiry; returns whether it is live
/// in this app.
pub async fn set_valid_until(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: GrantId,
    valid_until: Option<Timestamp>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE grants SET valid_until = $1, updated_at = $2 \
             WHERE id = $3 AND app_id = $4 AND revoked_at IS NULL",
        )
        .bind(valid_until.map(Timestamp::unix_millis))
        .bind(now.unix_millis())
        .bind(id.to_string())
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Sets a live grant's status (e.g. `reauth_required`).
pub async fn set_status(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: GrantId,
    status: GrantStatus,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE grants SET status = $1, updated_at = $2 \
             WHERE id = $3 AND app_id = $4 AND revoked_at IS NULL",
        )
        .bind(status.as_str())
        .bind(now.unix_millis())
        .bind(id.to_string())
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Records that grant `id` was just used (informational; last writer wins).
pub async fn touch_last_used(
    db: impl Into<Db<'_>>,
    id: GrantId,
    now: Timestamp,
) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query("UPDATE grants SET last_used_at = $1 WHERE id = $2")
            .bind(now.unix_millis())
            .bind(id.to_string())
            .execute(&mut *conn)
            .await?;
        Ok(())
    })
}

/// What [`candidates`] looks for: the grants a call without a `grant_id` may mean.
#[derive(Clone, Debug, Default)]
pub struct Candidates<'a> {
    /// Any of these providers (none: any provider).
    pub providers: &'a [String],
    /// Any of these principals (`None`: any principal).
    pub principals: Option<&'a [Principal]>,
    /// Only grants with a live delegation to this agent at this instant.
    pub delegated_to: Option<(super::AgentId, Timestamp)>,
    /// Only grants with this account label, compared without regard to (ASCII) case.
    pub account: Option<&'a str>,
}

/// Up to `limit` live (not revoked) grants of app `app_id` matching `c`, oldest first.
pub async fn candidates(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    c: &Candidates<'_>,
    limit: u32,
) -> Result<Vec<GrantRecord>, StoreError> {
    use std::fmt::Write as _;
    let mut sql =
        format!("SELECT {COLUMNS} FROM grants g WHERE g.app_id = $1 AND g.revoked_at IS NULL");
    let mut n = 1;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if !c.providers.is_empty() {
        let list: Vec<String> = c.providers.iter().map(|_| next()).collect();
        let _ = write!(sql, " AND g.provider IN ({})", list.join(", "));
    }
    if let Some(principals) = c.principals {
        if principals.is_empty() {
            return Ok(Vec::new());
        }
        let each: Vec<String> = principals
            .iter()
            .map(|_| {
                let (k, v) = (next(), next());
                format!("(g.principal_kind = {k} AND g.principal_value = {v})")
            })
            .collect();
        let _ = write!(sql, " AND ({})", each.join(" OR "));
    }
    if c.account.is_some() {
        let _ = write!(sql, " AND lower(g.account_label) = lower({})", next());
    }
    if c.delegated_to.is_some() {
        let (agent, now) = (next(), next());
        let _ = write!(
            sql,
            " AND EXISTS (SELECT 1 FROM delegations d WHERE d.grant_id = g.id \
             AND d.app_id = g.app_id AND d.agent_id = {agent} AND d.revoked_at IS NULL \
             AND (d.expires_at IS NULL OR d.expires_at > {now}))"
        );
    }
    let _ = write!(sql, " ORDER BY g.id LIMIT {}", next());
    on_conn!(db, |conn| {
        let mut query = sqlx::query_as::<_, Row>(&sql).bind(app_id.to_string());
        for p in c.providers {
            query = query.bind(p.as_str());
        }
        for p in c.principals.unwrap_or_default() {
            query = query.bind(p.kind()).bind(p.value());
        }
        if let Some(account) = c.account {
            query = query.bind(account);
        }
        if let Some((agent, now)) = c.delegated_to {
            query = query.bind(agent.to_string()).bind(now.unix_millis());
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&mut *conn).await?;
        rows.into_iter().map(from_row).collect()
    })
}
