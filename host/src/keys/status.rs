//! `tessera keys status`: the stored data key versions and how many sealed values each one
//! still protects, per sealed column.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{KeysError, LiveRing};
use crate::store::reseal::{self, SEALED_COLUMNS};
use crate::store::{Timestamp, data_keys};

/// The data keys and what they seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeysStatus {
    /// The version new values are sealed with (the highest stored).
    pub current_version: u32,
    /// Every stored version, ascending, plus any version named by a stored value but not
    /// stored itself (`created_at` is then `None`; such values cannot be opened).
    pub versions: Vec<VersionStatus>,
    /// Values sealed with an older version than the current one: what
    /// `tessera keys rotate --resume` would re-encrypt.
    pub pending: u64,
}

/// One data key version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionStatus {
    /// The version.
    pub version: u32,
    /// When it was created (RFC 3339); `None` if no such data key is stored.
    pub created_at: Option<String>,
    /// Whether it is the current version.
    pub current: bool,
    /// Values it seals, by `table.column` (every sealed column is listed).
    pub sealed: BTreeMap<String, u64>,
    /// Values it seals, over every column.
    pub total: u64,
}

/// Reads the status. Reloads the ring first, so a version added since start-up counts as
/// current.
pub async fn status(keys: &LiveRing) -> Result<KeysStatus, KeysError> {
    keys.reload().await?;
    let current_version = keys.ring().current_version();
    let empty: BTreeMap<String, u64> = SEALED_COLUMNS.iter().map(|c| (c.name(), 0)).collect();
    let entry = |version: u32, created_at: Option<Timestamp>| VersionStatus {
        version,
        created_at: created_at.map(Timestamp::to_rfc3339),
        current: version == current_version,
        sealed: empty.clone(),
        total: 0,
    };
    let mut versions: BTreeMap<u32, VersionStatus> = BTreeMap::new();
    for record in data_keys::list(keys.store()).await? {
        if let Ok(version) = u32::try_from(record.version) {
            versions.insert(version, entry(version, Some(record.created_at)));
        }
    }
    for col in SEALED_COLUMNS {
        for (version, count) in reseal::count_by_version(keys.store(), col).await? {
            let status = versions
                .entry(version)
                .or_insert_with(|| entry(version, None));
            *status.sealed.entry(col.name()).or_insert(0) += count;
            status.total += count;
        }
    }
    let pending = versions
        .values()
        .filter(|v| v.version < current_version)
        .map(|v| v.total)
        .sum();
    Ok(KeysStatus {
        current_version,
        versions: versions.into_values().collect(),
        pending,
    })
}
