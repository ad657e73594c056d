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

    /// The time as RFC 3339 in UTC with millisecond precision (`2026-01-01T00:00:00.000Z`),
    /// for people and JSON output.
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1000);
        let millis = self.0.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
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

/// Year, month, day of the proleptic Gregorian calendar for a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Defines a UUID newtype id: fresh ids are UUID v7 (time-ordered, so inserts stay local in
/// the primary-key index), stored as UUID text.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh id (UUID v7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            pub(crate) fn from_column(table: &'static str, text: &str) -> Result<Self, StoreError> {
                text.parse().map_err(|_| StoreError::Corrupt {
                    table,
                    detail: format!(concat!($what, " id {:?} is not a UUID"), text),
                })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

uuid_id!(
    /// Identifies an app.
    AppId,
    "app"
);

uuid_id!(
    /// Identifies an agent (an operator-provisioned workload identity of one app).
    AgentId,
    "agent"
);

uuid_id!(
    /// Identifies a grant: a principal of an app may call one provider with one credential.
    /// Stable across secret rotation and token refresh.
    GrantId,
    "grant"
);

uuid_id!(
    /// Identifies a stored credential (the sealed secret material behind grants).
    CredentialId,
    "credential"
);

uuid_id!(
    /// Identifies a delegation (one agent may use one grant it does not own).
    DelegationId,
    "delegation"
);

uuid_id!(
    /// Identifies a connect session (one end user's way through a provider's authorization).
    SessionId,
    "connect session"
);

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn rfc3339_formats_known_instants() {
        for (millis, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_767_225_600_000, "2026-01-01T00:00:00.000Z"),
            (951_825_599_999, "2000-02-29T11:59:59.999Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(Timestamp::from_unix_millis(millis).to_rfc3339(), text);
        }
    }
}
