//! The `provider_configs` table: how an app talks to one OAuth provider — its client id, its
//! client secret (sealed), the scopes, redirect URI and parameters it connects with. One row
//! per (app, provider).
//!
//! This module stores opaque sealed bytes; sealing and opening belong to the caller
//! (`crate::oauth::config`), through the vault, with associated data bound to the config id,
//! its app and the kind [`SEALED_KIND`]. Because the config id is part of that associated
//! data, an upsert keeps the row's id: [`upsert`] refuses to write over a row of the same app
//! and provider that has another id (the caller sealed for the wrong record) instead of
//! leaving a secret that can never be opened. Re-encryption under a new data key
//! (`store::reseal`) swaps `client_secret` on its old bytes; a NULL secret (a public
//! client) is never a candidate.
//!
//! Must never: hold or log a plaintext client secret, or return another app's configuration
//! (every lookup takes the app id).

use std::fmt;

use uuid::Uuid;

use super::{AppId, Db, StoreError, Timestamp, on_conn};

/// The associated-data kind client secrets are sealed with.
pub const SEALED_KIND: &str = "oauth-client-secret";

const TABLE: &str = "provider_configs";

const COLUMNS: &str = "id, app_id, provider, client_id, client_secret, client_secret_version, \
                       scopes, redirect_uri, extra_params, connection_params, created_at, \
                       updated_at";

/// A sealed client secret and the data key version that sealed it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// `TV1` sealed bytes.
    pub bytes: Vec<u8>,
    /// The data key version that sealed them.
    pub key_version: u32,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field(
                "bytes",
                &format_args!("[{} sealed bytes]", self.bytes.len()),
            )
            .field("key_version", &self.key_version)
            .finish()
    }
}

/// One app's stored configuration for one OAuth provider. `Debug` shows the sealed secret's
/// length only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfigRecord {
    /// Its id (the associated data's record id).
    pub id: Uuid,
    /// The app that owns it.
    pub app_id: AppId,
    /// The provider id.
    pub provider: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The sealed client secret; `None` for a public client.
    pub client_secret: Option<SealedSecret>,
    /// Provider scopes to request; empty means the provider's defaults.
    pub scopes: Vec<String>,
    /// The registered redirect URI; `None` means the host's own callback.
    pub redirect_uri: Option<String>,
    /// Extra authorization-request parameters, in order.
    pub extra_params: Vec<(String, String)>,
    /// App-wide connection parameter values, in order.
    pub connection_params: Vec<(String, String)>,
    /// When it was first stored.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

type Row = (
    String,
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<i64>,
    String,
    Option<String>,
    String,
    String,
    i64,
    i64,
);

fn from_row(row: Row) -> Result<ProviderConfigRecord, StoreError> {
    let (
        id,
        app_id,
        provider,
        client_id,
        secret,
        version,
        scopes,
        redirect_uri,
        extra,
        params,
        created,
        updated,
    ) = row;
    let corrupt = |detail: String| StoreError::Corrupt {
        table: TABLE,
        detail,
    };
    let client_secret = match (secret, version) {
        (None, None) => None,
        (Some(bytes), Some(v)) => Some(SealedSecret {
            bytes,
            key_version: u32::try_from(v)
                .map_err(|_| corrupt(format!("config {id} has key version {v}")))?,
        }),
        _ => {
            return Err(corrupt(format!(
                "config {id} has a client secret without its key version, or the reverse"
            )));
        }
    };
    let scopes = serde_json::from_str(&scopes)
        .map_err(|_| corrupt(format!("config {id} has malformed scopes")))?;
    let extra_params = serde_json::from_str(&extra)
        .map_err(|_| corrupt(format!("config {id} has malformed extra_params")))?;
    let connection_params = serde_json::from_str(&params)
        .map_err(|_| corrupt(format!("config {id} has malformed connection_params")))?;
    Ok(ProviderConfigRecord {
        id: id
            .parse()
            .map_err(|_| corrupt(format!("config id {id:?} is not a UUID")))?,
        app_id: AppId::from_column(TABLE, &app_id)?,
        provider,
        client_id,
        client_secret,
        scopes,
        redirect_uri,
        extra_params,
        connection_params,
        created_at: Timestamp::from_unix_millis(created),
        updated_at: Timestamp::from_unix_millis(updated),
    })
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

/// Stores `c` as app `c.app_id`'s configuration for `c.provider`: inserts it, or replaces
/// every field of the existing row except `created_at`. Returns the row as stored, or
/// `None` when the app already has a configuration for the provider under another id (the
/// caller sealed the secret for a record that is not the stored one: read it again and
/// retry). Inside a transaction that read the row, this cannot happen.
pub async fn upsert(
    db: impl Into<Db<'_>>,
    c: &ProviderConfigRecord,
) -> Result<Option<ProviderConfigRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<Row> = sqlx::query_as(&format!(
            "INSERT INTO provider_configs ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (app_id, provider) DO UPDATE SET \
             client_id = excluded.client_id, client_secret = excluded.client_secret, \
             client_secret_version = excluded.client_secret_version, \
             scopes = excluded.scopes, redirect_uri = excluded.redirect_uri, \
             extra_params = excluded.extra_params, \
             connection_params = excluded.connection_params, \
             updated_at = excluded.updated_at \
             WHERE provider_configs.id = excluded.id \
             RETURNING {COLUMNS}"
        ))
        .bind(c.id.to_string())
        .bind(c.app_id.to_string())
        .bind(&c.provider)
        .bind(&c.client_id)
        .bind(c.client_secret.as_ref().map(|s| s.bytes.as_slice()))
        .bind(c.client_secret.as_ref().map(|s| i64::from(s.key_version)))
        .bind(json(&c.scopes))
        .bind(c.redirect_uri.as_deref())
        .bind(json(&c.extra_params))
        .bind(json(&c.connection_params))
        .bind(c.created_at.unix_millis())
        .bind(c.updated_at.unix_millis())
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::conflict_on_unique(|| {
            format!("provider config {}", c.id)
        }))?;
        row.map(from_row).transpose()
    })
}

/// App `app_id`'s configuration for `provider`, if it has one. Inside a transaction on
/// PostgreSQL the row is locked until commit (`lock`), so read-modify-write sequences
/// serialise.
pub async fn get(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    provider: &str,
    lock: bool,
) -> Result<Option<ProviderConfigRecord>, StoreError> {
    on_conn!(db, |conn, dialect| {
        let suffix = if lock { dialect.for_update } else { "" };
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM provider_configs WHERE app_id = $1 AND provider = $2{suffix}"
        ))
        .bind(app_id.to_string())
        .bind(provider)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(from_row).transpose()
    })
}

/// Every configuration of app `app_id`, ordered by provider id.
pub async fn list(
    db: impl Into<Db<'_>>,
    app_id: AppId,
) -> Result<Vec<ProviderConfigRecord>, StoreError> {
    on_conn!(db, |conn| {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM provider_configs WHERE app_id = $1 ORDER BY provider"
        ))
        .bind(app_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(from_row).collect()
    })
}

/// Deletes app `app_id`'s configuration for `provider`; returns whether there was one.
pub async fn delete(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    provider: &str,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query("DELETE FROM provider_configs WHERE app_id = $1 AND provider = $2")
            .bind(app_id.to_string())
            .bind(provider)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;
    use crate::store::{apps, both_backends, data_keys};

    both_backends! {
        upserted_config_is_read_back_by_app_and_provider =>
            upserted_config_is_read_back_by_app_and_provider;
        upsert_replaces_the_config_but_keeps_its_id_and_creation_time =>
            upsert_replaces_the_config_but_keeps_its_id_and_creation_time;
        upsert_under_another_id_writes_nothing => upsert_under_another_id_writes_nothing;
        configs_are_listed_per_app_and_deleted_per_app =>
            configs_are_listed_per_app_and_deleted_per_app;
        a_secret_without_a_stored_data_key_is_refused =>
            a_secret_without_a_stored_data_key_is_refused;
    }

    const T: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

    async fn setup(db: &TestDb) -> anyhow::Result<(AppId, AppId)> {
        data_keys::insert(
            db.store(),
            &data_keys::DataKeyRecord {
                version: 1,
                wrapped: vec![0; 60],
                wrapped_by: "fp".into(),
                created_at: T,
            },
        )
        .await?;
        let a = apps::create(db.store(), "billing", T).await?.id;
        let b = apps::create(db.store(), "other", T).await?.id;
        Ok((a, b))
    }

    fn config(app_id: AppId, provider: &str) -> ProviderConfigRecord {
        ProviderConfigRecord {
            id: Uuid::now_v7(),
            app_id,
            provider: provider.into(),
            client_id: "client-1".into(),
            client_secret: Some(SealedSecret {
                bytes: b"TV1\0\0\0\x01sealed".to_vec(),
                key_version: 1,
            }),
            scopes: vec!["repo".into(), "read:user".into()],
            redirect_uri: Some("https://app.example.com/callback".into()),
            extra_params: vec![
                ("prompt".into(), "consent".into()),
                ("a".into(), "b".into()),
            ],
            connection_params: vec![("issuer".into(), "https://idp.example.com".into())],
            created_at: T,
            updated_at: T,
        }
    }

    async fn upserted_config_is_read_back_by_app_and_provider(db: &TestDb) -> anyhow::Result<()> {
        let (a, b) = setup(db).await?;
        let c = config(a, "github");
        let stored = upsert(db.store(), &c).await?;
        assert_eq!(stored.as_ref(), Some(&c));
        assert_eq!(get(db.store(), a, "github", false).await?, Some(c.clone()));
        // Another app, another provider: nothing.
        assert_eq!(get(db.store(), b, "github", false).await?, None);
        assert_eq!(get(db.store(), a, "google", false).await?, None);
        // A public client: no secret, no version.
        let public = ProviderConfigRecord {
            client_secret: None,
            redirect_uri: None,
            extra_params: Vec::new(),
            ..config(a, "google")
        };
        upsert(db.store(), &public).await?;
        assert_eq!(get(db.store(), a, "google", false).await?, Some(public));
        Ok(())
    }

    async fn upsert_replaces_the_config_but_keeps_its_id_and_creation_time(
        db: &TestDb,
    ) -> anyhow::Result<()> {
        let (a, _) = setup(db).await?;
        let first = config(a, "github");
        upsert(db.store(), &first).await?;
        let later = Timestamp::from_unix_millis(T.unix_millis() + 5_000);
        let change = ProviderConfigRecord {
            client_id: "client-2".into(),
            client_secret: None,
            scopes: Vec::new(),
            redirect_uri: None,
            extra_params: Vec::new(),
            connection_params: Vec::new(),
            created_at: later,
            updated_at: later,
            ..first.clone()
        };
        let stored = upsert(db.store(), &change)
            .await?
            .ok_or_else(|| anyhow::anyhow!("not stored"))?;
        assert_eq!(stored.id, first.id);
        assert_eq!(stored.created_at, T, "created_at must be kept");
        assert_eq!(stored.updated_at, later);
        assert_eq!(stored.client_id, "client-2");
        assert_eq!(stored.client_secret, None);
        assert!(stored.scopes.is_empty() && stored.connection_params.is_empty());
        assert_eq!(get(db.store(), a, "github", false).await?, Some(stored));
        Ok(())
    }

    async fn upsert_under_another_id_writes_nothing(db: &TestDb) -> anyhow::Result<()> {
        let (a, _) = setup(db).await?;
        let first = config(a, "github");
        upsert(db.store(), &first).await?;
        let stranger = ProviderConfigRecord {
            client_id: "client-2".into(),
            ..config(a, "github")
        };
        assert_eq!(upsert(db.store(), &stranger).await?, None);
        assert_eq!(get(db.store(), a, "github", false).await?, Some(first));
        Ok(())
    }

    async fn configs_are_listed_per_app_and_deleted_per_app(db: &TestDb) -> anyhow::Result<()> {
        let (a, b) = setup(db).await?;
        for provider in ["oauth2", "github", "google"] {
            upsert(db.store(), &config(a, provider)).await?;
        }
        upsert(db.store(), &config(b, "github")).await?;
        let providers = |list: Vec<ProviderConfigRecord>| {
            list.into_iter().map(|c| c.provider).collect::<Vec<_>>()
        };
        assert_eq!(
            providers(list(db.store(), a).await?),
            ["github", "google", "oauth2"]
        );
        assert_eq!(providers(list(db.store(), b).await?), ["github"]);

        // App B cannot delete app A's config, and deleting twice finds nothing the second time.
        assert!(!delete(db.store(), b, "google").await?);
        assert!(delete(db.store(), a, "github").await?);
        assert!(!delete(db.store(), a, "github").await?);
        assert_eq!(providers(list(db.store(), a).await?), ["google", "oauth2"]);
        assert!(get(db.store(), b, "github", false).await?.is_some());
        Ok(())
    }

    async fn a_secret_without_a_stored_data_key_is_refused(db: &TestDb) -> anyhow::Result<()> {
        let (a, _) = setup(db).await?;
        let mut c = config(a, "github");
        c.client_secret = Some(SealedSecret {
            bytes: b"TV1\0\0\0\x09sealed".to_vec(),
            key_version: 9,
        });
        assert!(upsert(db.store(), &c).await.is_err());
        assert_eq!(get(db.store(), a, "github", false).await?, None);
        Ok(())
    }

    #[test]
    fn debug_shows_the_sealed_secret_as_a_length() {
        let c = config(AppId::new(), "github");
        let shown = format!("{c:?}");
        assert!(shown.contains("[13 sealed bytes]"), "{shown}");
        assert!(!shown.contains("115, 101, 97"), "{shown}"); // "sea" as bytes
    }
}
