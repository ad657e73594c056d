//! Webhooks as clients see them: the app's endpoint (`PUT`/`GET`/`DELETE /v1/webhook`), its
//! deliveries (`GET /v1/webhook/deliveries`), the events the host sends, and the signature
//! every delivery carries — with [`verify`], which an app's receiver calls.
//!
//! # Signature
//!
//! Each delivery is a `POST` of one JSON [`Event`] with the header
//! `tessera-signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, where the HMAC key is the
//! endpoint's secret (the whole `whsec_…` string, as UTF-8 bytes) and the message is
//! `<t>.<body>` (the decimal timestamp, a full stop, the exact body bytes). A receiver
//! recomputes it, compares in constant time, and refuses a timestamp further than its
//! tolerance from its clock (the host's retries are signed afresh, so a retry is never
//! stale). Several `v1=` values may appear (while a secret is being replaced); one match is
//! enough.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "tessera-signature";
/// The header carrying the event id (also in the body): receivers deduplicate on it.
pub const EVENT_ID_HEADER: &str = "tessera-event-id";
/// The header carrying the event type (also in the body).
pub const EVENT_TYPE_HEADER: &str = "tessera-event-type";
/// The tolerance receivers should allow between the signature's timestamp and their clock.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Every event type, in the order docs list them.
pub const EVENT_TYPES: [&str; 10] = [
    "approval.requested",
    "approval.approved",
    "approval.denied",
    "approval.expired",
    "approval.executed",
    "approval.failed",
    "grant.created",
    "grant.revoked",
    "grant.reauth_required",
    "grant.scope_mismatch",
];

/// One event, as a delivery's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Its id (the id of the audit row it comes from): the same on every retry.
    pub id: String,
    /// One of [`EVENT_TYPES`].
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened (RFC 3339).
    pub created_at: String,
    /// The app.
    pub app_id: String,
    /// What happened: `grant_id`, `provider`, `principal`, `actor` (`kind`, `id`),
    /// `caller`, `reason`, and the audit row's facts in `detail` (for an approval:
    /// `approval_id`, `rule`, `decision`, `note`; for a revocation: `via`, who).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

/// `PUT /v1/webhook`: where the app's events go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// The endpoint: an `https` URL (`http` only for a loopback address).
    pub url: String,
    /// The event types to send; empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Replace the signing secret (the new one is in the answer, once). A first
    /// configuration always gets one.
    #[serde(default)]
    pub rotate_secret: bool,
}

/// The app's webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookView {
    /// The endpoint.
    pub url: String,
    /// The event types sent; empty: all.
    pub events: Vec<String>,
    /// The signing secret (`whsec_…`): only in the answer that created it. Keep it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// When it was first configured (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// One delivery of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    /// The event id.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// `pending` (retrying), `delivered` or `failed` (gave up).
    pub status: String,
    /// How many times it was sent.
    pub attempts: u32,
    /// The endpoint's last HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it is tried next (RFC 3339), while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// When the event happened (RFC 3339).
    pub created_at: String,
    /// When it was delivered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

/// `GET /v1/webhook/deliveries`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryPage {
    /// The deliveries.
    pub items: Vec<Delivery>,
}

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The header is missing or not `t=…,v1=…`.
    #[error("the tessera-signature header is missing or malformed")]
    Malformed,
    /// The timestamp is outside the tolerance.
    #[error("the signature's timestamp is {skew} s from this clock, more than {tolerance} s")]
    Stale {
        /// The difference, in seconds.
        skew: u64,
        /// The tolerance.
        tolerance: u64,
    },
    /// No `v1` value matches.
    #[error("the signature does not match the body")]
    Mismatch,
    /// The body is not an event.
    #[error("the body is not a Tessera event: {0}")]
    Body(String),
}

fn mac(secret: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `tessera-signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", crate::signing::hex_lower(&tag))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks a delivery: the `tessera-signature` `header` against `body` and `secret`, with
/// the timestamp within `tolerance_secs` of `now` (Unix seconds); returns the event.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    tolerance_secs: u64,
    now: u64,
) -> Result<Event, WebhookError> {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => tags.push(unhex(v).ok_or(WebhookError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::Malformed)?;
    if tags.is_empty() {
        return Err(WebhookError::Malformed);
    }
    let skew = now.abs_diff(timestamp);
    if skew > tolerance_secs {
        return Err(WebhookError::Stale {
            skew,
            tolerance: tolerance_secs,
        });
    }
    let matched = tags
        .iter()
        .any(|tag| mac(secret, timestamp, body).verify_slice(tag).is_ok());
    if !matched {
        return Err(WebhookError::Mismatch);
    }
    serde_json::from_slice(body).map_err(|e| WebhookError::Body(e.to_string()))
}

/// The event types a list names, checked: every name must be one of [`EVENT_TYPES`].
pub fn check_events(events: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let e = e.trim();
        if !EVENT_TYPES.contains(&e) {
            return Err(format!(
                "unknown event type {e:?}; the types are {}",
                EVENT_TYPES.join(", ")
            ));
        }
        if !out.iter().any(|o| o == e) {
            out.push(e.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";
    const BODY: &[u8] = br#"{"id":"e1","type":"grant.created","created_at":"2026-01-01T00:00:00.000Z","app_id":"a","data":{}}"#;

    #[test]
    fn a_signed_body_verifies_and_any_change_is_refused() {
        let header = sign(SECRET, 1000, BODY);
        let event = verify(SECRET, &header, BODY, 300, 1100).unwrap();
        assert_eq!(event.event_type, "grant.created");
        let mut changed = BODY.to_vec();
        changed[7] = b'2';
        assert_eq!(
            verify(SECRET, &header, &changed, 300, 1100),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            verify("whsec_other", &header, BODY, 300, 1100),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &header, BODY, 300, 1301),
            Err(WebhookError::Stale {
                skew: 301,
                tolerance: 300
            })
        );
        assert_eq!(
            verify(SECRET, "v1=00", BODY, 300, 1000),
            Err(WebhookError::Malformed)
        );
        let rotated = format!("{},v1={}", header, "ab".repeat(32));
        assert!(verify(SECRET, &rotated, BODY, 300, 1000).is_ok());
    }

    /// The same value Python's `hmac` module computes for this key and `1000.` + body.
    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        assert_eq!(
            sign(SECRET, 1000, BODY),
            "t=1000,v1=4e6f52297bfe56bfd550bcc3820838dba8a58f51e532da7e9e0e39f37baccb4e"
        );
    }

    #[test]
    fn event_lists_are_checked() {
        assert_eq!(
            check_events(&["grant.revoked".into(), "grant.revoked".into()]),
            Ok(vec!["grant.revoked".to_owned()])
        );
        assert!(check_events(&["grant.exploded".into()]).is_err());
    }
}
