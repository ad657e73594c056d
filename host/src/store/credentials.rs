//! The `credentials` table: the sealed secret material behind grants (tokens and expiry, or a
//! managed secret's fields), plus its non-secret metadata.
//!
//! This module stores opaque sealed bytes; sealing and opening belong to the caller, through
//! the vault, with associated data bound to the credential id, its app and the kind
//! [`SEALED_KIND`]. Every change of the secret bumps `revision`, which writers compare and
//! swap on, so a concurrent refresh or rotation is never silently overwritten. Re-encryption
//! under a new data key (`store::reseal`) leaves `revision` alone (the secret is unchanged)
//! and swaps on it instead, so it never defeats a refresh that read the row before it.
//!
//! Must never: hold or log a plaintext secret, or return a credential of another app (every
//! lookup takes the app id).

use std::collections::BTreeMap;
use std::fmt;

use super::{AppId, CredentialId, Db, StoreError, Timestamp, on_conn};

/// The associated-data kind credentials are sealed with.
pub const SEALED_KIND: &str = "credential";

const TABLE: &str = "credentials";

pub(super) const COLUMNS: &str = "id, app_id, provider, sealed, key_version, metadata, expires_at, revision, created_at, updated_at";

/// One stored credential.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Its id.
    pub id: CredentialId,
    /// The app that owns it.
    pub app_id: AppId,
    /// The provider it is for.
    pub provider: String,
    /// The sealed secret material (empty once deleted by a revocation).
    pub sealed: Vec<u8>,
    /// The data key version that sealed it.
    pub key_version: u32,
    /// Non-secret facts (Stripe `mode`, AWS `region`, …).
    pub metadata: BTreeMap<String, String>,
    /// When the access token expires, if it does.
    pub expires_at: Option<Timestamp>,
    /// Bumped on every change of `sealed`.
    pub revision: i64,
    /// When it was stored.
    pub created_at: Timestamp,
    /// When `sealed` last changed.
    pub updated_at: Timestamp,
}

impl CredentialRecord {
    /// Whether its secret material was deleted (the grants using it were revoked).
    pub fn is_wiped(&self) -> bool {
        self.sealed.is_empty()
    }
}

impl fmt::Debug for CredentialRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialRecord")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("provider", &self.provider)
            .field(
                "sealed",
                &format_args!("[{} sealed bytes]", self.sealed.len()),
            )
            .field("key_version", &self.key_version)
            .field("metadata", &self.metadata)
            .field("expires_at", &self.expires_at)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

pub(super) type Row = (
    String,
    String,
    String,
    Vec<u8>,
    i64,
    String,
    Option<i64>,
    i64,
    i64,
    i64,
);

pub(super) fn from_row(row: Row) -> Result<CredentialRecord, StoreError> {
    let (id, app_id, provider, sealed, version, metadata, expires, revision, created, updated) =
        row;
    let corrupt = |detail: String| StoreError::Corrupt {
        table: TABLE,
        detail,
    };
    let key_version = u32::try_from(version)
        .map_err(|_| corrupt(format!("credential {id} has key version {version}")))?;
    let metadata = serde_json::from_str(&metadata)
        .map_err(|_| corrupt(format!("credential {id} has malformed metadata")))?;
    Ok(CredentialRecord {
        id: CredentialId::from_column(TABLE, &id)?,
        app_id: AppId::from_column(TABLE, &app_id)?,
        provider,
        sealed,
        key_version,
        metadata,
        expires_at: expires.map(Timestamp::from_unix_millis),
        revision,
        created_at: Timestamp::from_unix_millis(created),
        updated_at: Timestamp::from_unix_millis(updated),
    })
}

fn metadata_json(metadata: &BTreeMap<String, String>) -> String {
    serde_json::to_string(metadata).unwrap_or_else(|_| "{}".to_owned())
}

/// Stores a new credential.
pub async fn insert(db: impl Into<Db<'_>>, c: &CredentialRecord) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(&format!(
            "INSERT INTO credentials ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(c.id.to_string())
        .bind(c.app_id.to_string())
        .bind(&c.provider)
        .bind(&c.sealed)
        .bind(i64::from(c.key_version))
        .bind(metadata_json(&c.metadata))
        .bind(c.expires_at.map(Timestamp::unix_millis))
        .bind(c.revision)
        .bind(c.created_at.unix_millis())
        .bind(c.updated_at.unix_millis())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::conflict_on_unique(|| {
            format!("credential {}", c.id)
        }))?;
        Ok(())
    })
}

/// The credential `id` of app `app_id`, if it exists. Inside a transaction on PostgreSQL the
/// row is locked until commit (`lock`), so read-modify-write sequences serialise.
pub async fn get(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: CredentialId,
    lock: bool,
) -> Result<Option<CredentialRecord>, StoreError> {
    on_conn!(db, |conn, dialect| {
        let suffix = if lock { dialect.for_update } else { "" };
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM credentials WHERE id = $1 AND app_id = $2{suffix}"
        ))
        .bind(id.to_string())
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(from_row).transpose()
    })
}

/// Replaces the sealed value (and metadata and expiry) if the stored revision is still
/// `expected_revision`; returns whether it was replaced. The revision is bumped.
pub async fn replace(
    db: impl Into<Db<'_>>,
    c: &CredentialRecord,
    expected_revision: i64,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE credentials SET sealed = $1, key_version = $2, metadata = $3, expires_at = $4, \
             revision = revision + 1, updated_at = $5 \
             WHERE id = $6 AND app_id = $7 AND revision = $8",
        )
        .bind(&c.sealed)
        .bind(i64::from(c.key_version))
        .bind(metadata_json(&c.metadata))
        .bind(c.expires_at.map(Timestamp::unix_millis))
        .bind(now.unix_millis())
        .bind(c.id.to_string())
        .bind(c.app_id.to_string())
        .bind(expected_revision)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Takes the refresh lease of credential `id` for `owner` until `until`, if it is free or
/// expired at `now` and the secret material still exists. Returns whether it was taken.
/// Host instances sharing a database refresh a credential one at a time through it.
pub async fn take_refresh_lease(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: CredentialId,
    owner: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE credentials SET refresh_lease_owner = $1, refresh_lease_until = $2 \
             WHERE id = $3 AND app_id = $4 AND length(sealed) > 0 \
             AND (refresh_lease_until IS NULL OR refresh_lease_until <= $5)",
        )
        .bind(owner)
        .bind(until.unix_millis())
        .bind(id.to_string())
        .bind(app_id.to_string())
        .bind(now.unix_millis())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Frees the refresh lease of credential `id` if `owner` still holds it.
pub async fn release_refresh_lease(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: CredentialId,
    owner: &str,
) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "UPDATE credentials SET refresh_lease_owner = NULL, refresh_lease_until = NULL \
             WHERE id = $1 AND app_id = $2 AND refresh_lease_owner = $3",
        )
        .bind(id.to_string())
        .bind(app_id.to_string())
        .bind(owner)
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
}

/// Stores a refreshed credential if its revision is still `expected_revision` (nobody else
/// stored one since it was read), bumping the revision and freeing `owner`'s refresh lease
/// in the same statement. Returns whether it was stored.
pub async fn commit_refresh(
    db: impl Into<Db<'_>>,
    c: &CredentialRecord,
    expected_revision: i64,
    owner: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE credentials SET sealed = $1, key_version = $2, metadata = $3, expires_at = $4, \
             revision = revision + 1, updated_at = $5, \
             refresh_lease_until = CASE WHEN refresh_lease_owner = $6 THEN NULL ELSE refresh_lease_until END, \
             refresh_lease_owner = CASE WHEN refresh_lease_owner = $6 THEN NULL ELSE refresh_lease_owner END \
             WHERE id = $7 AND app_id = $8 AND revision = $9 AND length(sealed) > 0",
        )
        .bind(&c.sealed)
        .bind(i64::from(c.key_version))
        .bind(metadata_json(&c.metadata))
        .bind(c.expires_at.map(Timestamp::unix_millis))
        .bind(now.unix_millis())
        .bind(owner)
        .bind(c.id.to_string())
        .bind(c.app_id.to_string())
        .bind(expected_revision)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// The revision of credential `id` and whether its refresh lease is held at `now`: what a
/// caller waiting for another instance's refresh polls. `None` if there is no such
/// credential.
pub async fn refresh_state(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: CredentialId,
    now: Timestamp,
) -> Result<Option<(i64, bool)>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT revision, refresh_lease_until FROM credentials WHERE id = $1 AND app_id = $2",
        )
        .bind(id.to_string())
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(|(rev, until)| (rev, until.is_some_and(|u| u > now.unix_millis()))))
    })
}

/// Deletes the secret material of credential `id` (empties `sealed`, clears the expiry and
/// bumps the revision) unless a live grant still uses it. Returns whether it was wiped.
pub async fn wipe_if_unused(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: CredentialId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE credentials SET sealed = $1, expires_at = NULL, revision = revision + 1, \
             updated_at = $2 \
             WHERE id = $3 AND app_id = $4 AND NOT EXISTS \
             (SELECT 1 FROM grants WHERE grants.credential_id = credentials.id \
              AND grants.revoked_at IS NULL)",
        )
        .bind(Vec::<u8>::new())
        .bind(now.unix_millis())
        .bind(id.to_string())
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}
