//! Data-key rotation: store a new data key version, then re-encrypt every value sealed with
//! an older one, while hosts keep serving.
//!
//! Order matters: the new key is stored before anything is sealed with it (a crash leaves at
//! worst an unused version), then each sealed column is walked in id order, in batches. A
//! batch is opened and re-sealed outside any transaction, then swapped in by one short
//! transaction of compare-and-swap updates, so the database write lock (SQLite) is held for
//! the updates only, and a row another writer changed meanwhile is left as that writer left
//! it.
//!
//! Why the job loops: a host that has not yet learnt the new version keeps sealing with the
//! previous one (its ring seals with the highest version it knows), and a lost
//! compare-and-swap may mean exactly such a write. So [`rotate`] makes passes until no value
//! with an older version remains (or [`RotateOptions::max_passes`] is reached, reported as
//! `remaining`); whatever a stale host writes after that is picked up by the next run of
//! `tessera keys rotate --resume`, by the next rotation, or by [`reseal_in_background`] in
//! every `tessera serve`, which reloads the data keys before each of its passes.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use super::{KeysError, LiveRing};
use crate::store::reseal::{self, SEALED_COLUMNS, SealedColumn, SealedRow};
use crate::vault::{Aad, Sealed};

/// What `tessera keys rotate` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateOptions {
    /// Store a new data key version first. `false` (`--resume`) finishes re-encrypting with
    /// the current version without adding one.
    pub new_version: bool,
    /// Rows re-sealed per transaction.
    pub batch: u32,
    /// Passes over the sealed columns at most (at least one is made).
    pub max_passes: u32,
}

impl Default for RotateOptions {
    fn default() -> Self {
        Self {
            new_version: true,
            batch: 500,
            max_passes: 10,
        }
    }
}

/// How far a rotation is: values re-sealed so far, of how many were found to need it (the
/// total grows if values with an old version keep appearing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Values re-sealed so far.
    pub done: u64,
    /// Values known to need it.
    pub total: u64,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotateReport {
    /// The data key version values were re-sealed with (the current one).
    pub version: u32,
    /// Whether this run added that version (`false` with `--resume`).
    pub new_version: bool,
    /// Values re-sealed, over every column.
    pub resealed: u64,
    /// Values still sealed with an older version (excluding `unreadable` ones).
    pub remaining: u64,
    /// Per sealed column.
    pub columns: Vec<ColumnReport>,
    /// Values that could not be opened, and so keep their old version.
    pub unreadable: Vec<Unreadable>,
}

impl RotateReport {
    /// Whether every value now uses [`Self::version`].
    pub fn complete(&self) -> bool {
        self.remaining == 0 && self.unreadable.is_empty()
    }
}

/// One sealed column's part of a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnReport {
    /// `table.column`.
    pub column: String,
    /// Values re-sealed.
    pub resealed: u64,
    /// Values another writer changed while they were being re-sealed (its write stands; a
    /// later pass re-seals it if it still uses an older version).
    pub raced: u64,
    /// Values still sealed with an older version (excluding unreadable ones).
    pub remaining: u64,
}

/// A value that did not open: tampered with, moved from another row, or sealed with a key
/// that is not stored. Names the row, never its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// `table.column`.
    pub column: String,
    /// The row id.
    pub id: String,
    /// Why (a vault error message, which never holds key material or plaintext).
    pub error: String,
}

/// Settings of the re-encryption a serving host runs in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Background {
    /// Pause between passes (each pass starts by reloading the data keys).
    pub interval: Duration,
    /// Rows per transaction: small, so requests never wait long behind it.
    pub batch: u32,
    /// Pause between batches, so it never competes with requests for long.
    pub pause: Duration,
}

impl Default for Background {
    fn default() -> Self {
        Self {
            interval: Duration::from_mins(1),
            batch: 50,
            pause: Duration::from_millis(250),
        }
    }
}

/// Rotates: reloads the stored data keys, adds a version unless `options.new_version` is
/// false, then re-seals every value sealed with an older version, in batches of
/// `options.batch` rows per transaction, calling `progress` after each batch. Safe to run
/// while hosts serve the same database, and against another rotation (compare-and-swap);
/// safe to interrupt and resume with `new_version: false`.
pub async fn rotate(
    keys: &LiveRing,
    options: &RotateOptions,
    mut progress: impl FnMut(Progress),
) -> Result<RotateReport, KeysError> {
    keys.reload().await?;
    let version = if options.new_version {
        keys.add_version().await?
    } else {
        keys.ring().current_version()
    };
    let mut job = Job::new(keys, version, options.batch.max(1), None);
    let mut remaining = job.remaining().await?;
    let mut total: u64 = remaining.iter().sum();
    let mut done = 0;
    for _ in 0..options.max_passes.max(1) {
        if remaining.iter().all(|&n| n == 0) {
            break;
        }
        job.pass(&mut |n| {
            done += n;
            total = total.max(done);
            progress(Progress { done, total });
        })
        .await?;
        remaining = job.remaining().await?;
    }
    let columns: Vec<ColumnReport> = SEALED_COLUMNS
        .iter()
        .zip(&job.tallies)
        .zip(&remaining)
        .map(|((col, tally), &remaining)| ColumnReport {
            column: col.name(),
            resealed: tally.resealed,
            raced: tally.raced,
            remaining,
        })
        .collect();
    Ok(RotateReport {
        version,
        new_version: options.new_version,
        resealed: columns.iter().map(|c| c.resealed).sum(),
        remaining: remaining.iter().sum(),
        columns,
        unreadable: job.unreadable,
    })
}

/// Re-seals values with older versions forever, slowly: every `settings.interval`, reloads
/// the data keys (so this host also starts sealing with a version added elsewhere), then
/// makes one pass in batches of `settings.batch` with `settings.pause` between them.
/// Failures are logged and retried at the next pass. Spawn it; abort it to stop.
pub async fn reseal_in_background(keys: LiveRing, settings: Background) {
    let mut job = Job::new(&keys, 0, settings.batch.max(1), Some(settings.pause));
    loop {
        tokio::time::sleep(settings.interval).await;
        if let Err(error) = keys.reload().await {
            tracing::warn!(%error, "background re-encryption cannot reload the data keys");
            continue;
        }
        job.version = keys.ring().current_version();
        let known_unreadable = job.unreadable.len();
        let mut resealed = 0;
        if let Err(error) = job.pass(&mut |n| resealed += n).await {
            tracing::warn!(%error, "background re-encryption failed; retrying at the next pass");
        }
        if resealed > 0 {
            tracing::info!(
                resealed,
                version = job.version,
                "re-encrypted values sealed with older data keys"
            );
        }
        for u in job.unreadable.iter().skip(known_unreadable) {
            tracing::warn!(column = %u.column, id = %u.id, error = %u.error,
                "a sealed value cannot be opened; it keeps its old data key");
        }
    }
}

/// Counts per column, in [`SEALED_COLUMNS`] order.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    resealed: u64,
    raced: u64,
}

/// The state of a re-encryption: the target version, what was done per column, and the
/// values that did not open (skipped from then on, so a pass always ends).
struct Job<'a> {
    keys: &'a LiveRing,
    /// Values sealed with a version below this one are re-sealed.
    version: u32,
    batch: u32,
    pause: Option<Duration>,
    tallies: Vec<Tally>,
    unreadable: Vec<Unreadable>,
    skip: Vec<HashSet<String>>,
}

impl<'a> Job<'a> {
    fn new(keys: &'a LiveRing, version: u32, batch: u32, pause: Option<Duration>) -> Self {
        Self {
            keys,
            version,
            batch,
            pause,
            tallies: vec![Tally::default(); SEALED_COLUMNS.len()],
            unreadable: Vec::new(),
            skip: vec![HashSet::new(); SEALED_COLUMNS.len()],
        }
    }

    /// Values per column still below the target version, not counting unreadable ones.
    async fn remaining(&self) -> Result<Vec<u64>, KeysError> {
        let mut out = Vec::with_capacity(SEALED_COLUMNS.len());
        for (col, skip) in SEALED_COLUMNS.iter().zip(&self.skip) {
            let below = reseal::count_below(self.keys.store(), col, self.version).await?;
            out.push(below.saturating_sub(skip.len() as u64));
        }
        Ok(out)
    }

    /// One walk over every sealed column; `resealed` hears how many values each batch
    /// re-sealed.
    async fn pass(&mut self, resealed: &mut impl FnMut(u64)) -> Result<(), KeysError> {
        for (index, col) in SEALED_COLUMNS.iter().enumerate() {
            let mut after = String::new();
            loop {
                let rows =
                    reseal::candidates(self.keys.store(), col, self.version, &after, self.batch)
                        .await?;
                let Some(last) = rows.last() else { break };
                after.clone_from(&last.id);
                let full = rows.len() >= self.batch as usize;
                let n = self.reseal_batch(index, col, rows).await?;
                resealed(n);
                if !full {
                    break;
                }
                if let Some(pause) = self.pause {
                    tokio::time::sleep(pause).await;
                }
            }
        }
        Ok(())
    }

    /// Opens and re-seals `rows` of `col`, then swaps them in with one transaction of
    /// compare-and-swap updates. Returns how many were swapped.
    async fn reseal_batch(
        &mut self,
        index: usize,
        col: &SealedColumn,
        rows: Vec<SealedRow>,
    ) -> Result<u64, KeysError> {
        let mut swaps: Vec<(SealedRow, Sealed)> = Vec::with_capacity(rows.len());
        for row in rows {
            if self.skip[index].contains(&row.id) {
                continue;
            }
            let aad = Aad {
                record_id: &row.id,
                app_id: &row.app_id,
                kind: col.kind,
            };
            let resealed = match self.keys.open_bytes(&aad, &row.sealed).await {
                Ok(plaintext) => self.keys.seal(&aad, plaintext.expose())?,
                Err(error) => {
                    self.unreadable.push(Unreadable {
                        column: col.name(),
                        id: row.id.clone(),
                        error: error.to_string(),
                    });
                    self.skip[index].insert(row.id);
                    continue;
                }
            };
            swaps.push((row, resealed));
        }
        if swaps.is_empty() {
            return Ok(0);
        }
        let mut tx = self.keys.store().begin().await?;
        let mut swapped = 0;
        for (row, resealed) in &swaps {
            let bytes = resealed.to_bytes();
            if reseal::swap(&mut tx, col, row, &bytes, resealed.key_version()).await? {
                swapped += 1;
            }
        }
        tx.commit().await?;
        let tally = &mut self.tallies[index];
        tally.resealed += swapped;
        tally.raced += swaps.len() as u64 - swapped;
        Ok(swapped)
    }
}

/// Re-seals the first `batch` credentials below `version` and stops: a rotation interrupted
/// after one batch.
#[cfg(test)]
pub(super) async fn reseal_first_batch(
    keys: &LiveRing,
    version: u32,
    batch: u32,
) -> Result<u64, KeysError> {
    let index = credentials_index();
    let col = &SEALED_COLUMNS[index];
    let rows = reseal::candidates(keys.store(), col, version, "", batch).await?;
    Job::new(keys, version, batch, None)
        .reseal_batch(index, col, rows)
        .await
}

#[cfg(test)]
fn credentials_index() -> usize {
    SEALED_COLUMNS
        .iter()
        .position(|c| c.table == "credentials")
        .unwrap_or_else(|| unreachable!("credentials are sealed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::{Fixture, credential_version};
    use crate::store::both_backends;
    use crate::store::testing::TestDb;

    both_backends! {
        a_value_changed_during_its_reseal_keeps_the_writers_value =>
            a_value_changed_during_its_reseal_keeps_the_writers_value;
    }

    async fn a_value_changed_during_its_reseal_keeps_the_writers_value(
        db: &TestDb,
    ) -> anyhow::Result<()> {
        let fx = Fixture::new(db).await?;
        let id = fx.credential(b"refresh-token-1").await?;
        let version = fx.keys.add_version().await?;
        let index = credentials_index();
        let creds = &SEALED_COLUMNS[index];

        let mut job = Job::new(&fx.keys, version, 10, None);
        let rows = reseal::candidates(fx.keys.store(), creds, version, "", 10).await?;
        assert_eq!(rows.len(), 1);
        // A refresh by a host that has not learnt the new version writes between the read
        // and the swap.
        let stale = fx.stale_ring().await?;
        fx.refresh(&stale, &id, b"refresh-token-2").await?;

        assert_eq!(job.reseal_batch(index, creds, rows).await?, 0);
        assert_eq!(job.tallies[index].raced, 1);
        assert_eq!(fx.open_credential(&id).await?, b"refresh-token-2");
        assert_eq!(credential_version(&fx, &id).await?, version - 1);

        // The next pass re-seals the refreshed value, not the one read before.
        job.pass(&mut |_| {}).await?;
        assert_eq!(job.tallies[index].resealed, 1);
        assert_eq!(credential_version(&fx, &id).await?, version);
        assert_eq!(fx.open_credential(&id).await?, b"refresh-token-2");
        Ok(())
    }
}
