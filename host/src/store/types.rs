//! Value types shared by the repository functions: newtype ids (stored as UUID text) and
//! timestamps (stored as unix milliseconds), the representations both backends share.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use super::StoreError;

/// A point in time, as milliseconds since the Unix epoch (UTC): the unit of every `*_at`
/// column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time. A clock before 1970 reads as the epoch.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// From milliseconds since the epoch.
    pub const fn from_unix_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// This time plus `d` (saturating).
    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }
}

/// Identifies an app. Stored as UUID text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppId(Uuid);

impl AppId {
    /// A fresh id (UUID v7: time-ordered, so inserts stay local in the primary key index).
    pub fn new() -> Self {
        AppId(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    pub(crate) fn from_column(table: &'static str, text: &str) -> Result<Self, StoreError> {
        text.parse().map_err(|_| StoreError::Corrupt {
            table,
            detail: format!("app id {text:?} is not a UUID"),
        })
    }
}

impl Default for AppId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AppId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(AppId)
    }
}

impl From<Uuid> for AppId {
    fn from(u: Uuid) -> Self {
        AppId(u)
    }
}
