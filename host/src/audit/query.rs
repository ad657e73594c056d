//! Reading the log: filters for `GET /v1/audit` and the CLI, and the conversion of stored
//! rows into the wire type [`AuditEvent`].

use std::collections::BTreeMap;

use tessera_proto::audit::{AuditEvent, AuditPage};

use super::{Actor, AuditError};
use crate::store::audit::{self as rows, AuditQuery, AuditRow};
use crate::store::{AppId, Store, Timestamp};

/// Rows per page when the filter names no limit.
pub const DEFAULT_LIMIT: u32 = 100;

/// The most rows one page returns.
pub const MAX_LIMIT: u32 = 1000;

/// Which rows to list. Every `Some` narrows the result. An API caller's filter always has
/// `app_id` set to the caller's own app: an app sees only its own rows; an agent key's
/// filter also has `actor` set to that agent: an agent sees only what it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only rows of this app.
    pub app_id: Option<AppId>,
    /// Only rows where this actor acted (kind and id both match).
    pub actor: Option<Actor>,
    /// Only rows about this grant.
    pub grant_id: Option<String>,
    /// Only rows about this provider.
    pub provider: Option<String>,
    /// Only this action (`proxy.execute`, …).
    pub action: Option<String>,
    /// Only this outcome (`ok`, `denied`, `error`, `pending`).
    pub outcome: Option<String>,
    /// Only rows at or after this time.
    pub since: Option<Timestamp>,
    /// Only rows strictly before this time.
    pub until: Option<Timestamp>,
    /// Only rows after this `seq` (the paging cursor).
    pub after: Option<i64>,
    /// Only rows before this `seq`.
    pub before: Option<i64>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// At most this many rows: [`DEFAULT_LIMIT`] when `None`, at most [`MAX_LIMIT`], at
    /// least 1.
    pub limit: Option<u32>,
}

impl AuditFilter {
    /// The effective page size.
    pub fn effective_limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }

    fn query(&self) -> AuditQuery {
        AuditQuery {
            app_id: self.app_id.map(|a| a.to_string()),
            actor_kind: self.actor.as_ref().map(|a| a.kind.as_str().to_owned()),
            actor_id: self.actor.as_ref().map(|a| a.id.clone()),
            grant_id: self.grant_id.clone(),
            provider: self.provider.clone(),
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            since: self.since,
            until: self.until,
            after: self.after,
            before: self.before,
            newest_first: self.newest_first,
            limit: i64::from(self.effective_limit()),
        }
    }
}

/// The rows `filter` selects, in `seq` order (oldest first unless
/// [`AuditFilter::newest_first`]), at most [`AuditFilter::effective_limit`] of them.
pub async fn list(store: &Store, filter: &AuditFilter) -> Result<Vec<AuditEvent>, AuditError> {
    rows::select(store, &filter.query())
        .await?
        .iter()
        .map(event_of)
        .collect()
}

/// One page for `GET /v1/audit`: oldest first after `filter.after`, with the cursor of the
/// next page when this one is full. `newest_first` is ignored.
pub async fn page(store: &Store, filter: &AuditFilter) -> Result<AuditPage, AuditError> {
    let filter = AuditFilter {
        newest_first: false,
        ..filter.clone()
    };
    let items = list(store, &filter).await?;
    let full = items.len() >= filter.effective_limit() as usize;
    let next_after = if full {
        items.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(AuditPage { items, next_after })
}

/// The wire form of a stored row. `context` and `detail` must be the JSON this module
/// writes; anything else is [`AuditError::Corrupt`].
pub fn event_of(row: &AuditRow) -> Result<AuditEvent, AuditError> {
    let corrupt = |detail: String| AuditError::Corrupt {
        seq: row.seq,
        detail,
    };
    let context: BTreeMap<String, String> = match &row.context {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| corrupt(format!("context is not a JSON object of strings: {e}")))?,
        None => BTreeMap::new(),
    };
    let detail = match &row.detail {
        Some(text) => {
            serde_json::from_str(text).map_err(|e| corrupt(format!("detail is not JSON: {e}")))?
        }
        None => serde_json::Value::Null,
    };
    let principal = match (&row.principal_kind, &row.principal_value) {
        (Some(kind), Some(value)) if value.is_empty() => Some(kind.clone()),
        (Some(kind), Some(value)) => Some(format!("{kind}:{value}")),
        (Some(kind), None) => Some(kind.clone()),
        (None, _) => None,
    };
    Ok(AuditEvent {
        seq: row.seq,
        id: row.id.clone(),
        at: Timestamp::from_unix_millis(row.at).to_rfc3339(),
        app_id: row.app_id.clone(),
        actor_kind: row.actor_kind.clone(),
        actor_id: row.actor_id.clone(),
        key_id: row.key_id.clone(),
        caller: row.caller.clone(),
        action: row.action.clone(),
        provider: row.provider.clone(),
        grant_id: row.grant_id.clone(),
        principal,
        outcome: row.outcome.clone(),
        reason: row.reason.clone(),
        context,
        request_id: row.request_id.clone(),
        detail,
        prev_hash: hex::encode(&row.prev_hash),
        hash: hex::encode(&row.hash),
    })
}

/// Parses an RFC 3339 time (`2026-01-31T12:00:00Z`, `…T12:00:00.250+02:00`; `t`, `z` and a
/// space separator accepted) or a bare date (`2026-01-31`, midnight UTC). Sub-millisecond
/// digits are dropped.
pub fn parse_rfc3339(text: &str) -> Result<Timestamp, AuditError> {
    parse_time(text.trim()).ok_or_else(|| {
        AuditError::InvalidFilter(format!(
            "{text:?} is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z) or a date \
             (2026-01-31)"
        ))
    })
}

fn digits(s: &[u8], range: std::ops::Range<usize>) -> Option<i64> {
    let part = s.get(range)?;
    if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    part.iter().try_fold(0i64, |n, d| {
        n.checked_mul(10)?.checked_add(i64::from(d - b'0'))
    })
}

fn parse_time(text: &str) -> Option<Timestamp> {
    let s = text.as_bytes();
    let year = digits(s, 0..4)?;
    let month = digits(s, 5..7)?;
    let day = digits(s, 8..10)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if s.len() == 10 {
        return Some(Timestamp::from_unix_millis(days * 86_400_000));
    }
    if !matches!(s.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let hour = digits(s, 11..13)?;
    let minute = digits(s, 14..16)?;
    let second = digits(s, 17..19)?;
    if s.get(13) != Some(&b':') || s.get(16) != Some(&b':') {
        return None;
    }
    // 60 is a leap second; it reads as the next second's start.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if s.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while s.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return None;
        }
        let kept = (end - start).min(3);
        millis = digits(s, start..start + kept)? * 10i64.pow(3 - u32::try_from(kept).ok()?);
        i = end;
    }
    let offset_minutes = match s.get(i)? {
        b'Z' | b'z' if s.len() == i + 1 => 0,
        sign @ (b'+' | b'-') if s.len() == i + 6 && s.get(i + 3) == Some(&b':') => {
            let h = digits(s, i + 1..i + 3)?;
            let m = digits(s, i + 4..i + 6)?;
            if h > 23 || m > 59 {
                return None;
            }
            let total = h * 60 + m;
            if *sign == b'-' { -total } else { total }
        }
        _ => return None,
    };
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(Timestamp::from_unix_millis(seconds * 1000 + millis))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`; the inverse of the store's `civil_from_days`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_to_unix_millis() {
        for (text, millis) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-01-01T00:00:00.000Z", 1_767_225_600_000),
            ("2026-01-01", 1_767_225_600_000),
            ("2000-02-29T11:59:59.999Z", 951_825_599_999),
            ("2000-02-29t11:59:59.9991234z", 951_825_599_999),
            ("2026-01-01 02:00:00+02:00", 1_767_225_600_000),
            ("2025-12-31T19:30:00.5-04:30", 1_767_225_600_500),
            ("1969-12-31T23:59:59.999Z", -1),
        ] {
            let t = parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(t.unix_millis(), millis, "{text}");
        }
    }

    #[test]
    fn round_trips_with_the_store_formatter() {
        for millis in [
            0,
            1,
            951_825_599_999,
            1_767_225_600_123,
            -86_400_001,
            4_102_444_800_000,
        ] {
            let t = Timestamp::from_unix_millis(millis);
            assert_eq!(parse_rfc3339(&t.to_rfc3339()).ok(), Some(t));
        }
    }

    #[test]
    fn malformed_times_are_refused_with_an_example() {
        for text in [
            "",
            "yesterday",
            "2026-1-01",
            "2026-02-30",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0200",
            "2026-01-01T00:00:00Zjunk",
            "+2026-01-01",
        ] {
            let err = parse_rfc3339(text).unwrap_err();
            assert!(err.to_string().contains("2026-01-31T12:00:00Z"), "{err}");
        }
    }

    #[test]
    fn limit_defaults_to_100_and_is_capped_at_1000() {
        let f = AuditFilter::default();
        assert_eq!(f.effective_limit(), 100);
        let f = AuditFilter {
            limit: Some(5000),
            ..AuditFilter::default()
        };
        assert_eq!(f.effective_limit(), 1000);
        let f = AuditFilter {
            limit: Some(0),
            ..AuditFilter::default()
        };
        assert_eq!(f.effective_limit(), 1);
    }
}
