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
