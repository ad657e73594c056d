//! The live ring and rotation on both backends, against real sealed rows: a "CLI" ring that
//! rotates, and "server" rings loaded before the rotation that must keep working.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::apps::{Apps, KeyOwner};
use crate::auth::KeyResolver as _;
use crate::store::provider_configs::{self, ProviderConfigRecord, SealedSecret};
use crate::store::testing::TestDb;
use crate::store::{AppId, api_keys, apps, both_backends, credentials, on_conn};
use crate::vault::{KeyRing, MasterKey};

both_backends! {
    rotate_reseals_every_value_with_the_new_version_and_keeps_its_plaintext =>
        rotate_reseals_every_value_with_the_new_version_and_keeps_its_plaintext;
    a_ring_loaded_before_the_rotation_opens_values_resealed_with_the_new_version =>
        a_ring_loaded_before_the_rotation_opens_values_resealed_with_the_new_version;
    a_running_key_resolver_verifies_an_api_key_resealed_with_the_new_version =>
        a_running_key_resolver_verifies_an_api_key_resealed_with_the_new_version;
    an_interrupted_rotation_is_finished_by_resume_without_another_version =>
        an_interrupted_rotation_is_finished_by_resume_without_another_version;
    a_value_that_does_not_open_is_reported_and_the_rest_is_resealed =>
        a_value_that_does_not_open_is_reported_and_the_rest_is_resealed;
    status_counts_values_per_version_and_column => status_counts_values_per_version_and_column;
    background_reseal_moves_values_to_a_version_another_instance_added =>
        background_reseal_moves_values_to_a_version_another_instance_added;
    a_missing_version_reloads_the_keys_at_most_once_per_second =>
        a_missing_version_reloads_the_keys_at_most_once_per_second;
}

/// A database with data key 1 stored, app `billing`, and the ring of the instance that
/// rotates.
pub(super) struct Fixture {
    pub(super) master: Arc<MasterKey>,
    pub(super) keys: LiveRing,
    pub(super) app: AppId,
}

impl Fixture {
    pub(super) async fn new(db: &TestDb) -> anyhow::Result<Self> {
        let master = Arc::new(MasterKey::generate());
        let keys = super::test_ring_with(db.store(), master.clone()).await?;
        let app = apps::create(db.store(), "billing", Timestamp::now()).await?;
        Ok(Self {
            keys,
            master,
            app: app.id,
        })
    }

    /// The ring another host instance would have loaded: the stored versions up to `max`.
    pub(super) async fn ring_knowing(&self, max: u32) -> anyhow::Result<LiveRing> {
        let wrapped: Vec<WrappedDataKey> = data_keys::list(self.keys.store())
            .await?
            .into_iter()
            .filter_map(|r| {
                u32::try_from(r.version)
                    .ok()
                    .filter(|v| *v <= max)
                    .map(|version| WrappedDataKey {
                        version,
                        wrapped: r.wrapped,
                    })
            })
            .collect();
        let ring = KeyRing::new(&self.master, &wrapped)?;
        Ok(LiveRing::new(
            self.keys.store().clone(),
            self.master.clone(),
            Arc::new(ring),
        ))
    }

    /// A ring loaded from the data keys stored now (version 1 only, before any rotation).
    pub(super) async fn stale_ring(&self) -> anyhow::Result<LiveRing> {
        self.ring_knowing(1).await
    }

    /// Stores a credential holding `secret`, sealed with the current version; returns its id.
    pub(super) async fn credential(&self, secret: &[u8]) -> anyhow::Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let app = self.app.to_string();
        let sealed = self
            .keys
            .seal(&aad(&id, &app, credentials::SEALED_KIND), secret)?;
        let store = self.keys.store();
        on_conn!(store, |conn| {
            sqlx::query(
                "INSERT INTO credentials (id, app_id, provider, sealed, key_version, revision, \
                 created_at, updated_at) VALUES ($1, $2, 'github', $3, $4, 1, 0, 0)",
            )
            .bind(&id)
            .bind(&app)
            .bind(sealed.to_bytes())
            .bind(i64::from(sealed.key_version()))
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?;
            Ok::<_, anyhow::Error>(())
        })?;
        Ok(id)
    }

    /// Stores a bare `api_keys` row whose verifier seals `secret`; returns its key id.
    async fn api_key(&self, n: u8, secret: &[u8]) -> anyhow::Result<String> {
        let id = format!("{n:016x}");
        let app = self.app.to_string();
        let sealed = self
            .keys
            .seal(&aad(&id, &app, api_keys::SEALED_KIND), secret)?;
        let store = self.keys.store();
        on_conn!(store, |conn| {
            sqlx::query(
                "INSERT INTO api_keys (id, app_id, kind, scopes, verifier, created_at) \
                 VALUES ($1, $2, 'app', 'audit:read', $3, 0)",
            )
            .bind(&id)
            .bind(&app)
            .bind(sealed.to_bytes())
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?;
            Ok::<_, anyhow::Error>(())
        })?;
        Ok(id)
    }

    /// Stores the app's OAuth client for `provider`, its client secret (if any) sealed with
    /// the current version.
    async fn client_secret(&self, provider: &str, secret: Option<&[u8]>) -> anyhow::Result<()> {
        let id = uuid::Uuid::now_v7();
        let (id_text, app) = (id.to_string(), self.app.to_string());
        let client_secret = match secret {
            Some(secret) => {
                let sealed = self
                    .keys
                    .seal(&aad(&id_text, &app, provider_configs::SEALED_KIND), secret)?;
                Some(SealedSecret {
                    bytes: sealed.to_bytes(),
                    key_version: sealed.key_version(),
                })
            }
            None => None,
        };
        let record = ProviderConfigRecord {
            id,
            app_id: self.app,
            provider: provider.into(),
            client_id: "client".into(),
            client_secret,
            scopes: Vec::new(),
            redirect_uri: None,
            extra_params: Vec::new(),
            connection_params: Vec::new(),
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        };
        provider_configs::upsert(self.keys.store(), &record).await?;
        Ok(())
    }

    /// The opened client secret of the app's `provider` client and the version that sealed
    /// it (checked against its `client_secret_version` column).
    async fn open_client_secret(&self, provider: &str) -> anyhow::Result<(Vec<u8>, u32)> {
        let record = provider_configs::get(self.keys.store(), self.app, provider, false)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no {provider} config"))?;
        let sealed = record
            .client_secret
            .ok_or_else(|| anyhow::anyhow!("no client secret"))?;
        let header = Sealed::from_bytes(&sealed.bytes)?.key_version();
        anyhow::ensure!(header == sealed.key_version, "header and column disagree");
        let (id, app) = (record.id.to_string(), self.app.to_string());
        let aad = aad(&id, &app, provider_configs::SEALED_KIND);
        let plain = self.keys.open_bytes(&aad, &sealed.bytes).await?;
        Ok((plain.expose().to_vec(), header))
    }

    /// The sealed bytes and revision of credential `id`.
    async fn credential_row(&self, id: &str) -> anyhow::Result<(Vec<u8>, i64)> {
        let store = self.keys.store();
        on_conn!(store, |conn| {
            let row: (Vec<u8>, i64) =
                sqlx::query_as("SELECT sealed, revision FROM credentials WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(StoreError::from)?;
            Ok::<_, anyhow::Error>(row)
        })
    }

    /// What a credential refresh on the host owning `ring` does: seal a new secret with
    /// its current version, compare and swap on the revision, bump it.
    pub(super) async fn refresh(
        &self,
        ring: &LiveRing,
        id: &str,
        secret: &[u8],
    ) -> anyhow::Result<()> {
        let (_, revision) = self.credential_row(id).await?;
        let app = self.app.to_string();
        let sealed = ring.seal(&aad(id, &app, credentials::SEALED_KIND), secret)?;
        let store = self.keys.store();
        let updated = on_conn!(store, |conn| {
            let done = sqlx::query(
                "UPDATE credentials SET sealed = $1, key_version = $2, revision = revision + 1 \
                 WHERE id = $3 AND revision = $4",
            )
            .bind(sealed.to_bytes())
            .bind(i64::from(sealed.key_version()))
            .bind(id)
            .bind(revision)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?;
            Ok::<_, anyhow::Error>(done.rows_affected())
        })?;
        anyhow::ensure!(updated == 1, "the refresh lost its compare-and-swap");
        Ok(())
    }

    /// Opens credential `id` with `ring`.
    async fn open_credential_with(&self, ring: &LiveRing, id: &str) -> anyhow::Result<Vec<u8>> {
        let (sealed, _) = self.credential_row(id).await?;
        let app = self.app.to_string();
        let aad = aad(id, &app, credentials::SEALED_KIND);
        Ok(ring.open_bytes(&aad, &sealed).await?.expose().to_vec())
    }

    /// Opens credential `id` with the rotating ring.
    pub(super) async fn open_credential(&self, id: &str) -> anyhow::Result<Vec<u8>> {
        self.open_credential_with(&self.keys, id).await
    }

    /// Opens API key `id`'s verifier with `ring`.
    async fn open_api_key(&self, ring: &LiveRing, id: &str) -> anyhow::Result<Vec<u8>> {
        let store = self.keys.store();
        let sealed = on_conn!(store, |conn| {
            let (sealed,): (Vec<u8>,) =
                sqlx::query_as("SELECT verifier FROM api_keys WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(StoreError::from)?;
            Ok::<_, anyhow::Error>(sealed)
        })?;
        let app = self.app.to_string();
        let aad = aad(id, &app, api_keys::SEALED_KIND);
        Ok(ring.open_bytes(&aad, &sealed).await?.expose().to_vec())
    }
}

/// The data key version credential `id` is sealed with, checked against its `key_version`
/// column.
pub(super) async fn credential_version(fx: &Fixture, id: &str) -> anyhow::Result<u32> {
    let (sealed, _) = fx.credential_row(id).await?;
    let header = Sealed::from_bytes(&sealed)?.key_version();
    let store = fx.keys.store();
    let column = on_conn!(store, |conn| {
        let (v,): (i64,) = sqlx::query_as("SELECT key_version FROM credentials WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::from)?;
        Ok::<_, anyhow::Error>(v)
    })?;
    anyhow::ensure!(
        i64::from(header) == column,
        "credential {id}: header says version {header}, key_version says {column}"
    );
    Ok(header)
}

fn aad<'a>(id: &'a str, app: &'a str, kind: &'a str) -> Aad<'a> {
    Aad {
        record_id: id,
        app_id: app,
        kind,
    }
}

fn secret(n: usize) -> Vec<u8> {
    format!("{{\"access_token\":\"gho_{n:04}\"}}").into_bytes()
}

async fn rotate_reseals_every_value_with_the_new_version_and_keeps_its_plaintext(
    db: &TestDb,
) -> anyhow::Result<()> {
    let fx = Fixture::new(db).await?;
    let mut creds = Vec::new();
    for n in 0..7 {
        creds.push(fx.credential(&secret(n)).await?);
    }
    let key = fx.api_key(1, &[7; 32]).await?;
    fx.client_secret("github", Some(b"client-secret")).await?;
    fx.client_secret("google", None).await?; // a public client: nothing to re-seal
    let before = fx.credential_row(&creds[0]).await?;

    let mut seen = Vec::new();
    let options = RotateOptions {
        batch: 3,
        ..RotateOptions::default()
    };
    let report = rotate(&fx.keys, &options, |p| seen.push(p)).await?;

    assert_eq!(report.version, 2);
    assert!(report.new_version);
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.resealed, 9);
    let by_column: Vec<(&str, u64, u64)> = report
        .columns
        .iter()
        .map(|c| (c.column.as_str(), c.resealed, c.remaining))
        .collect();
    assert_eq!(
        by_column,
        [
            ("api_keys.verifier", 1, 0),
            ("credentials.sealed", 7, 0),
            ("provider_configs.client_secret", 1, 0),
            ("approvals.request", 0, 0),
            ("approvals.response", 0, 0),
            ("webhooks.secret", 0, 0)
        ]
    );
    // Batches of 3: 1 api key, then 3 + 3 + 1 credentials, then 1 client secret.
    let done: Vec<u64> = seen.iter().map(|p| p.done).collect();
    assert_eq!(done, [1, 4, 7, 8, 9]);
    assert!(seen.iter().all(|p| p.total == 9), "{seen:?}");
    assert_eq!(
        fx.open_client_secret("github").await?,
        (b"client-secret".to_vec(), 2)
    );

    for (n, id) in creds.iter().enumerate() {
        assert_eq!(credential_version(&fx, id).await?, 2);
        assert_eq!(fx.open_credential(id).await?, secret(n));
    }
    let after = fx.credential_row(&creds[0]).await?;
    assert_ne!(after.0, before.0);
    // The secret did not change, so neither does the revision writers compare on.
    assert_eq!(after.1, before.1);
    assert_eq!(fx.open_api_key(&fx.keys, &key).await?, [7; 32]);
    let stored: Vec<i64> = data_keys::list(fx.keys.store())
        .await?
        .iter()
        .map(|k| k.version)
        .collect();
    assert_eq!(stored, [1, 2]);
    Ok(())
}

async fn a_ring_loaded_before_the_rotation_opens_values_resealed_with_the_new_version(
    db: &TestDb,
) -> anyhow::Result<()> {
    let fx = Fixture::new(db).await?;
    let id = fx.credential(b"token").await?;
    let key = fx.api_key(1, &[9; 32]).await?;
    let server = fx.stale_ring().await?;

    rotate(&fx.keys, &RotateOptions::default(), |_| {}).await?;

    assert!(!server.ring().holds(2));
    assert_eq!(server.ring().current_version(), 1);
    // Opening a value sealed with version 2 makes the running ring learn it ...
    assert_eq!(fx.open_credential_with(&server, &id).await?, b"token");
    assert!(server.ring().holds(2));
    assert_eq!(fx.open_api_key(&server, &key).await?, [9; 32]);
    // ... and from then on it seals new values with it too.
    let app = fx.app.to_string();
    let sealed = server.seal(&aad("x", &app, credentials::SEALED_KIND), b"new")?;
    assert_eq!(sealed.key_version(), 2);
    Ok(())
}

async fn a_running_key_resolver_verifies_an_api_key_resealed_with_the_new_version(
    db: &TestDb,
) -> anyhow::Result<()> {
    let fx = Fixture::new(db).await?;
    let server_keys = fx.stale_ring().await?;
    let server = Apps::new(db.store().clone(), server_keys.clone());
    let created = server
        .create_key(
            "billing",
            KeyOwner::App,
            &[tessera_proto::scopes::Scope::AuditRead],
        )
        .await?;
    let resolver = server.key_resolver();

    let report = rotate(&fx.keys, &RotateOptions::default(), |_| {}).await?;
    assert_eq!(report.columns[0].resealed, 1, "{report:?}");
    assert!(!server_keys.ring().holds(2));

    let found = resolver
        .resolve(created.key.key_id())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the key is no longer found"))?;
    assert_eq!(
        found.signing_key.as_bytes(),
        created.key.signing_key().as_bytes()
    );
    assert!(server_keys.ring().holds(2));
    Ok(())
}

async fn an_interrupted_rotation_is_finished_by_resume_without_another_version(
    db: &TestDb,
) -> anyhow::Result<()> {
    let fx = Fixture::new(db).await?;
    let mut creds = Vec::new();
    for n in 0..5 {
        creds.push(fx.credential(&secret(n)).await?);
    }
    // Interrupted after storing version 2 and re-sealing one batch of 2.
    let version = fx.keys.add_version().await?;
    assert_eq!(rotate::reseal_first_batch(&fx.keys, version, 2).await?, 2);
    let status_mid = status(&fx.keys).await?;
    assert_eq!(status_mid.current_version, 2);
    assert_eq!(status_mid.pending, 3);

    let resume = RotateOptions {
        new_version: false,
        ..RotateOptions::default()
    };
    let report = rotate(&fx.keys, &resume, |_| {}).await?;
    assert_eq!(report.version, 2);
    assert!(!report.new_version);
    assert_eq!(report.resealed, 3);
    assert!(report.complete());
    for (n, id) in creds.iter().enumerate() {
        assert_eq!(credential_version(&fx, id).await?, 2);
        assert_eq!(fx.open_credential(id).await?, secret(n));
    }
    assert_eq!(data_keys::list(fx.keys.store()).await?.len(), 2);

    // Resuming a finished rotation changes nothing.
    let again = rotate(&fx.keys, &resume, |_| {}).await?;
    assert_eq!((again.version, again.resealed), (2, 0));
    assert_eq!(status(&fx.keys).await?.pending, 0);
    Ok(())
}

async fn a_value_that_does_not_open_is_reported_and_the_rest_is_resealed(
    db: &TestDb,
) -> anyhow::Result<()> {
    let fx = Fixture::new(db).await?;
    let good = fx.credential(b"good").await?;
    let moved = fx.credential(b"moved").await?;
    // Copy `good`'s ciphertext into `moved`'s row: its associated data no longer matches.
    let (bytes, _) = fx.credential_row(&good).await?;
    let store = fx.keys.store();
    on_conn!(store, |conn| {
        sqlx::query("UPDATE credentials SET sealed = $1 WHERE id = $2")
            .bind(&bytes)
            .bind(&moved)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?;
        Ok::<_, anyhow::Error>(())
    })?;

    let report = rotate(&fx.keys, &RotateOptions::default(), |_| {}).await?;
    assert!(!report.complete());
    assert_eq!(report.resealed, 1);
    assert_eq!(report.remaining, 0);
    assert_eq!(report.unreadable.len(), 1);
    assert_eq!(report.unreadable[0].id, moved);
    assert_eq!(report.unreadable[0].column, "credentials.sealed");
    assert!(!report.unreadable[0].error.contains("good"));
    assert_eq!(credential_version(&fx, &good).await?, 2);
    assert_eq!(credential_version(&fx, &moved).await?, 1);
    Ok(())
}

async fn status_counts_values_per_version_and_column(db: &TestDb) -> anyhow::Result<()> {
    let fx = Fixture::new(db).await?;
    fx.credential(b"a").await?;
    fx.credential(b"b").await?;
    fx.api_key(1, &[1; 32]).await?;
    fx.client_secret("github", Some(b"s")).await?;
    fx.client_secret("google", None).await?;
    fx.keys.add_version().await?;
    fx.credential(b"c").await?;

    let s = status(&fx.keys).await?;
    assert_eq!(s.current_version, 2);
    assert_eq!(s.pending, 4);
    let rows: Vec<(u32, bool, bool, Vec<u64>)> = s
        .versions
        .iter()
        .map(|v| {
            (
                v.version,
                v.current,
                v.created_at.is_some(),
                v.sealed.values().copied().collect(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, false, true, vec![1, 0, 0, 2, 1, 0]),
            (2, true, true, vec![0, 0, 0, 1, 0, 0])
        ]
    );
    assert_eq!(s.versions[0].total, 4);
    let json = serde_json::to_value(&s)?;
    assert_eq!(json["versions"][1]["sealed"]["credentials.sealed"], 1);
    Ok(())
}

async fn background_reseal_moves_values_to_a_version_another_instance_added(
    db: &TestDb,
) -> anyhow::Result<()> {
    let fx = Fixture::new(db).await?;
    let id = fx.credential(b"token").await?;
    let key = fx.api_key(1, &[3; 32]).await?;
    let server = fx.stale_ring().await?;
    let task = tokio::spawn(reseal_in_background(
        server.clone(),
        Background {
            interval: Duration::from_millis(20),
            batch: 1,
            pause: Duration::from_millis(1),
        },
    ));
    // Another instance stores version 2 and re-seals nothing.
    fx.keys.add_version().await?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while status(&fx.keys).await?.pending > 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the background task did not re-seal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    assert!(server.ring().holds(2));
    assert_eq!(credential_version(&fx, &id).await?, 2);
    assert_eq!(fx.open_credential(&id).await?, b"token");
    assert_eq!(fx.open_api_key(&fx.keys, &key).await?, [3; 32]);
    Ok(())
}

async fn a_missing_version_reloads_the_keys_at_most_once_per_second(
    db: &TestDb,
) -> anyhow::Result<()> {
    let fx = Fixture::new(db).await?;
    let server = fx.stale_ring().await?;
    // Version 2 exists in another instance's ring but is not stored yet.
    let next = fx.keys.ring().wrap_next_version(&fx.master)?;
    fx.keys.ring().insert(&fx.master, &next)?;
    let app = fx.app.to_string();
    let aad = aad("c1", &app, credentials::SEALED_KIND);
    let sealed = fx.keys.seal(&aad, b"token")?;
    assert_eq!(sealed.key_version(), 2);

    let missing = server.open(&aad, &sealed).await.unwrap_err();
    assert!(
        matches!(missing, VaultError::UnknownKeyVersion(2)),
        "{missing:?}"
    );
    data_keys::insert(
        fx.keys.store(),
        &data_keys::DataKeyRecord {
            version: 2,
            wrapped: next.wrapped.clone(),
            wrapped_by: fx.master.fingerprint(),
            created_at: Timestamp::now(),
        },
    )
    .await?;
    // Within the second: no second reload, so the stored key is not seen yet.
    assert!(matches!(
        server.open(&aad, &sealed).await,
        Err(VaultError::UnknownKeyVersion(2))
    ));
    tokio::time::sleep(RELOAD_INTERVAL + Duration::from_millis(100)).await;
    assert_eq!(server.open(&aad, &sealed).await?.expose(), b"token");
    Ok(())
}
