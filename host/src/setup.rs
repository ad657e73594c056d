//! First-run set-up of a data directory (`tessera init`): the master key, the database with
//! its migrations, and the first data key. Idempotent: running it again on a set-up directory
//! checks that the master key still matches the database and changes nothing.
//!
//! Also [`open`]: how every other command loads a set-up directory (store + live key ring,
//! which keeps the master key to learn data key versions added later), with the same
//! master-key checks, and "run `tessera init`" when there is nothing to open.
//!
//! This module never prints or logs key material; it reports only fingerprints and paths.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::keys::LiveRing;
use crate::store::{self, DatabaseConfig, Store, StoreError, Timestamp, data_keys, meta};
use crate::vault::{KeyFileStatus, KeyRing, MasterKey, VaultError, WrappedDataKey};

/// The `meta` key under which the master key's fingerprint is recorded.
const FINGERPRINT_KEY: &str = "master_key_fingerprint";

/// Why set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The data directory could not be created or secured.
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The master key could not be read or created.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The database could not be opened or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data directory or database has not been set up.
    #[error("{target} is not set up: run `tessera init` first")]
    NotInitialised {
        /// What was looked at (the SQLite file, or the PostgreSQL database, password hidden).
        target: String,
    },
    /// The master key is not the one this database was set up with.
    #[error(
        "this database was set up with another master key (fingerprint {recorded}); the key in use \
         has fingerprint {in_use}. Start Tessera with the original key ({source_hint}); a \
         different key cannot decrypt anything stored here"
    )]
    WrongMasterKey {
        /// Fingerprint recorded in the database.
        recorded: String,
        /// Fingerprint of the key in use.
        in_use: String,
        /// Where the key in use came from.
        source_hint: String,
    },
}

/// Where the master key comes from.
#[derive(Debug)]
pub enum KeySource<'a> {
    /// The `TESSERA_MASTER_KEY` value.
    Env(&'a str),
    /// The key file (created 0600 by [`init`] if missing; [`open`] never creates it).
    File(PathBuf),
}

/// What set-up did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SetupReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// Where the master key came from: the key file path or `TESSERA_MASTER_KEY`.
    pub master_key: String,
    /// Whether this run created the key file.
    pub master_key_created: bool,
    /// The master key's fingerprint (not secret).
    pub master_key_fingerprint: String,
    /// Data key versions now stored.
    pub data_key_versions: Vec<u32>,
    /// Whether this run set the directory up (false: it already was).
    pub initialised_now: bool,
}

/// The default key file of a data directory.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key")
}

/// Sets up (or checks) a data directory.
pub async fn init(
    data_dir: &Path,
    database: &DatabaseConfig,
    key: KeySource<'_>,
) -> Result<SetupReport, SetupError> {
    prepare_dir(data_dir)?;
    let (master, master_key, created) = match key {
        KeySource::Env(value) => (
            MasterKey::from_env_value(value)?,
            crate::vault::MASTER_KEY_ENV.to_owned(),
            false,
        ),
        KeySource::File(path) => {
            let (master, status) = MasterKey::load_or_create_file(&path)?;
            (
                master,
                path.display().to_string(),
                status == KeyFileStatus::Created,
            )
        }
    };
    let store = Store::open(database).await?;
    let fingerprint = master.fingerprint();
    let now = Timestamp::now();
    let first = meta::insert_if_absent(&store, FINGERPRINT_KEY, &fingerprint, now).await?;
    if !first {
        let recorded = meta::get(&store, FINGERPRINT_KEY)
            .await?
            .unwrap_or_default();
        if recorded != fingerprint {
            return Err(SetupError::WrongMasterKey {
                recorded,
                in_use: fingerprint,
                source_hint: master_key,
            });
        }
    }
    let mut stored = wrapped_keys(&store).await?;
    if stored.is_empty() {
        let (_, wrapped) = KeyRing::generate(&master)?;
        let record = data_keys::DataKeyRecord {
            version: i64::from(wrapped.version),
            wrapped: wrapped.wrapped.clone(),
            wrapped_by: fingerprint.clone(),
            created_at: now,
        };
        match data_keys::insert(&store, &record).await {
            // Another instance set up the first key at the same moment: use theirs.
            Ok(()) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        stored = wrapped_keys(&store).await?;
    }
    // Unwrapping every stored key proves the master key really opens this database.
    let ring = KeyRing::new(&master, &stored)?;
    let data_key_versions = ring.versions().collect();
    store.close().await;
    Ok(SetupReport {
        data_dir: data_dir.to_path_buf(),
        database: match database.backend() {
            store::BackendKind::Sqlite => "sqlite".into(),
            store::BackendKind::Postgres => "postgres".into(),
        },
        master_key,
        master_key_created: created,
        master_key_fingerprint: fingerprint,
        data_key_versions,
        initialised_now: first,
    })
}

/// Opens a data directory that `tessera init` set up: loads the master key (never creating
/// one), opens and migrates the database, checks the master key's fingerprint against the
/// one recorded, and unwraps the data keys into a [`KeyRing`], returned as a [`LiveRing`]
/// that keeps the master key, so that a running host can unwrap data key versions stored
/// after it started (`tessera keys rotate`). Nothing set up yet (no SQLite file, no recorded
/// fingerprint, no data key) is [`SetupError::NotInitialised`].
pub async fn open(
    database: &DatabaseConfig,
    key: KeySource<'_>,
) -> Result<(Store, LiveRing), SetupError> {
    let not_initialised = || SetupError::NotInitialised {
        target: database.to_string(),
    };
    // Checked first, so that a missing set-up says so instead of creating an empty database.
    if let DatabaseConfig::Sqlite { path } = database
        && !path.is_file()
    {
        return Err(not_initialised());
    }
    let (master, source_hint) = match key {
        KeySource::Env(value) => (
            MasterKey::from_env_value(value)?,
            crate::vault::MASTER_KEY_ENV.to_owned(),
        ),
        KeySource::File(path) => (MasterKey::load(None, &path)?, path.display().to_string()),
    };
    let store = Store::open(database).await?;
    let recorded = meta::get(&store, FINGERPRINT_KEY)
        .await?
        .ok_or_else(not_initialised)?;
    let in_use = master.fingerprint();
    if recorded != in_use {
        return Err(SetupError::WrongMasterKey {
            recorded,
            in_use,
            source_hint,
        });
    }
    let stored = wrapped_keys(&store).await?;
    if stored.is_empty() {
        return Err(not_initialised());
    }
    let ring = KeyRing::new(&master, &stored)?;
    let keys = LiveRing::new(store.clone(), Arc::new(master), Arc::new(ring));
    Ok((store, keys))
}

async fn wrapped_keys(store: &Store) -> Result<Vec<WrappedDataKey>, StoreError> {
    Ok(data_keys::list(store)
        .await?
        .into_iter()
        .filter_map(|r| {
            u32::try_from(r.version).ok().map(|version| WrappedDataKey {
                version,
                wrapped: r.wrapped,
            })
        })
        .collect())
}

/// Creates the data directory, readable by its owner only.
fn prepare_dir(dir: &Path) -> Result<(), SetupError> {
    let err = |source| SetupError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}
