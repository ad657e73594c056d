//! Response classification: what an upstream answer means for the host (refresh and retry,
//! missing scope, back off, upstream failure).
//!
//! [`standard`] covers RFC 6750 Bearer APIs and common rate-limit headers; providers override
//! `classify` for their own signals and reuse the pieces ([`retry_after`],
//! [`bearer_insufficient_scope`], [`parse_http_date`]).

use crate::http::{header, header_values};
use crate::{Classification, HttpResponse};

/// The standard classifier.
///
/// - 401 → `unauthorized`;
/// - 403 with `WWW-Authenticate: Bearer error="insufficient_scope"` → `insufficient-scope`
///   listing the challenge's `scope=` values;
/// - 429, or 403 with `Retry-After` or `X-RateLimit-Remaining: 0` → `rate-limited`, with the
///   `Retry-After` delay (seconds or an HTTP date, relative to `now`) where given;
/// - 5xx → `server-error`; everything else (2xx, 3xx, other 4xx) → `ok`.
pub fn standard(response: &HttpResponse, now: u64) -> Classification {
    let headers = &response.headers;
    match response.status {
        401 => Classification::Unauthorized,
        403 => {
            if let Some(scopes) = bearer_insufficient_scope(headers) {
                Classification::InsufficientScope(scopes)
            } else if header(headers, "retry-after").is_some() || rate_limit_exhausted(headers) {
                Classification::RateLimited(retry_after(headers, now))
            } else {
                Classification::Ok
            }
        }
        429 => Classification::RateLimited(retry_after(headers, now)),
        500..=599 => Classification::ServerError,
        _ => Classification::Ok,
    }
}

/// Whether `X-RateLimit-Remaining` says no requests are left.
pub fn rate_limit_exhausted(headers: &[(String, String)]) -> bool {
    header(headers, "x-ratelimit-remaining").is_some_and(|v| v.trim() == "0")
}

/// The `Retry-After` delay in seconds: delta-seconds as is, an HTTP date minus `now`
/// (0 when already past). `None` when absent or unparseable.
pub fn retry_after(headers: &[(String, String)], now: u64) -> Option<u64> {
    let value = header(headers, "retry-after")?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    parse_http_date(value).map(|at| at.saturating_sub(now))
}

/// If a `WWW-Authenticate` Bearer challenge says `error="insufficient_scope"`, the scopes
/// its `scope` parameter lists (possibly none).
pub fn bearer_insufficient_scope(headers: &[(String, String)]) -> Option<Vec<String>> {
    header_values(headers, "www-authenticate").find_map(|value| {
        let params = bearer_params(value)?;
        let error = params
            .iter()
            .find(|(k, _)| k == "error")
            .map(|(_, v)| v.as_str());
        if error != Some("insufficient_scope") {
            return None;
        }
        let scopes = params
            .iter()
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Some(scopes)
    })
}

/// The auth-params of the `Bearer` challenge in one `WWW-Authenticate` value (RFC 7235:
/// `key=token` or `key="quoted \" string"`, comma separated), keys lower-cased.
fn bearer_params(value: &str) -> Option<Vec<(String, String)>> {
    let start = value.to_ascii_lowercase().find("bearer")?;
    let mut chars = value.get(start + "bearer".len()..)?.chars().peekable();
    let mut params = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            // A new challenge scheme starts: the Bearer challenge is over.
            break;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            val.push(escaped);
                        }
                    }
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        params.push((key.to_ascii_lowercase(), val));
    }
    Some(params)
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) into seconds
/// since the Unix epoch. Other (obsolete) date forms give `None`.
pub fn parse_http_date(value: &str) -> Option<u64> {
    let (_weekday, rest) = value.trim().split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u32 = parse_digits(parts.next()?, 2)?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u32 = parse_digits(parts.next()?, 4)?;
    let mut time = parts.next()?.split(':');
    let hour: u32 = parse_digits(time.next()?, 2)?;
    let minute: u32 = parse_digits(time.next()?, 2)?;
    let second: u32 = parse_digits(time.next()?, 2)?;
    if parts.next()? != "GMT" || parts.next().is_some() || time.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year < 1970 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    u64::try_from(seconds).ok()
}

fn parse_digits(s: &str, len: usize) -> Option<u32> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date and time of `epoch` seconds: (year, month, day, hour, minute, second).
pub fn civil_from_epoch(epoch: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = i64::try_from(epoch / 86_400).unwrap_or(i64::MAX / 2);
    let secs = epoch % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Every component is in range by construction; the fallbacks are unreachable.
    let small = |v: i64| u32::try_from(v).unwrap_or(0);
    let secs = u32::try_from(secs).unwrap_or(0);
    (
        year,
        small(month),
        small(day),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status,
            headers: crate::http::owned_pairs(headers),
            body: Vec::new(),
        }
    }

    #[test]
    fn imf_fixdate_parses_and_rejects_other_shapes() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_http_date("Sun, 6 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
        assert_eq!(parse_http_date(""), None);
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(civil_from_epoch(1_440_938_160), (2015, 8, 30, 12, 36, 0));
        assert_eq!(civil_from_epoch(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    }

    #[test]
    fn standard_statuses() {
        assert_eq!(standard(&resp(200, &[]), 0), Classification::Ok);
        assert_eq!(standard(&resp(302, &[]), 0), Classification::Ok);
        assert_eq!(standard(&resp(404, &[]), 0), Classification::Ok);
        assert_eq!(standard(&resp(403, &[]), 0), Classification::Ok);
        assert_eq!(standard(&resp(401, &[]), 0), Classification::Unauthorized);
        assert_eq!(standard(&resp(503, &[]), 0), Classification::ServerError);
        assert_eq!(
            standard(&resp(429, &[]), 0),
            Classification::RateLimited(None)
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = 784_111_777;
        assert_eq!(
            standard(&resp(429, &[("Retry-After", "120")]), now),
            Classification::RateLimited(Some(120))
        );
        assert_eq!(
            standard(
                &resp(429, &[("retry-after", "Sun, 06 Nov 1994 08:50:37 GMT")]),
                now
            ),
            Classification::RateLimited(Some(60))
        );
        assert_eq!(
            standard(
                &resp(429, &[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]),
                now
            ),
            Classification::RateLimited(Some(0))
        );
        assert_eq!(
            standard(&resp(403, &[("Retry-After", "5")]), now),
            Classification::RateLimited(Some(5))
        );
        assert_eq!(
            standard(&resp(403, &[("X-RateLimit-Remaining", "0")]), now),
            Classification::RateLimited(None)
        );
        assert_eq!(
            standard(&resp(429, &[("Retry-After", "soon")]), now),
            Classification::RateLimited(None)
        );
    }

    #[test]
    fn bearer_insufficient_scope_lists_scopes() {
        let r = resp(
            403,
            &[(
                "WWW-Authenticate",
                r#"Bearer realm="example", error="insufficient_scope", error_description="need \"more\"", scope="read write""#,
            )],
        );
        assert_eq!(
            standard(&r, 0),
            Classification::InsufficientScope(vec!["read".into(), "write".into()])
        );
        let r = resp(403, &[("www-authenticate", "Bearer error=invalid_token")]);
        assert_eq!(standard(&r, 0), Classification::Ok);
        let r = resp(
            403,
            &[("www-authenticate", "Bearer error=\"insufficient_scope")],
        );
        assert_eq!(standard(&r, 0), Classification::InsufficientScope(vec![]));
    }
}
