//! The hash chain: the canonical encoding of a row (documented in the module above), turning
//! entries into chained rows, and appending them under the appenders' lock.

use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::{AuditEntry, AuditError, Recorded, redact_detail};
use crate::store::audit::{self as rows, AuditRow};
use crate::store::{StoreError, Timestamp, Tx, meta};

/// Length of a chain hash (SHA-256).
pub const HASH_LEN: usize = 32;

/// `prev_hash` of the first row.
pub const GENESIS_HASH: [u8; HASH_LEN] = [0; HASH_LEN];

/// `meta` key holding the chain head, `SEQ:HEX(HASH)`, updated with every append.
pub const HEAD_META_KEY: &str = "audit.head";

/// Domain separator at the start of every encoding: the format's name and version.
const DOMAIN: &[u8] = b"tessera.audit.v1\n";

const NULL: u8 = 0x00;
const TEXT: u8 = 0x01;
const INTEGER: u8 = 0x02;

fn text(out: &mut Vec<u8>, value: &str) {
    out.push(TEXT);
    out.extend_from_slice(&(value.len() as u64).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
}

fn opt_text(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => text(out, v),
        None => out.push(NULL),
    }
}

fn integer(out: &mut Vec<u8>, value: i64) {
    out.push(INTEGER);
    out.extend_from_slice(&value.to_be_bytes());
}

/// The canonical encoding of `row` (every column but `hash`, then `prev_hash`).
fn encode(row: &AuditRow) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(DOMAIN);
    integer(&mut out, row.seq);
    text(&mut out, &row.id);
    integer(&mut out, row.at);
    opt_text(&mut out, row.app_id.as_deref());
    text(&mut out, &row.actor_kind);
    text(&mut out, &row.actor_id);
    opt_text(&mut out, row.key_id.as_deref());
    opt_text(&mut out, row.caller.as_deref());
    text(&mut out, &row.action);
    opt_text(&mut out, row.provider.as_deref());
    opt_text(&mut out, row.grant_id.as_deref());
    opt_text(&mut out, row.principal_kind.as_deref());
    opt_text(&mut out, row.principal_value.as_deref());
    text(&mut out, &row.outcome);
    opt_text(&mut out, row.reason.as_deref());
    opt_text(&mut out, row.context.as_deref());
    opt_text(&mut out, row.request_id.as_deref());
    opt_text(&mut out, row.detail.as_deref());
    out.extend_from_slice(&row.prev_hash);
    out
}

/// The chain hash of `row` as stored: SHA-256 over its canonical encoding, which includes
/// `prev_hash` (its `hash` column is not an input).
pub fn row_hash(row: &AuditRow) -> [u8; HASH_LEN] {
    Sha256::digest(encode(row)).into()
}

/// PostgreSQL refuses NUL in text; every backend stores the same replacement, so the hash
/// a writer computes is the hash verification recomputes.
fn clean(value: &str) -> String {
    value.replace('\0', "\u{fffd}")
}

fn clean_opt(value: Option<&String>) -> Option<String> {
    value.map(|v| clean(v))
}

/// The row `entry` becomes at position `seq` after `prev_hash`: cleaned, redacted and
/// hashed.
fn build_row(entry: &AuditEntry, seq: i64, prev_hash: [u8; HASH_LEN]) -> AuditRow {
    let (principal_kind, principal_value) = match entry.principal.as_deref() {
        Some(p) => {
            let (kind, value) = p.split_once(':').unwrap_or((p, ""));
            (Some(clean(kind)), Some(clean(value)))
        }
        None => (None, None),
    };
    let context = (!entry.context.is_empty()).then(|| {
        let object: serde_json::Map<String, serde_json::Value> = entry
            .context
            .iter()
            .map(|(k, v)| (clean(k), serde_json::Value::String(clean(v))))
            .collect();
        serde_json::Value::Object(object).to_string()
    });
    let detail = match redact_detail(entry.detail.clone()) {
        serde_json::Value::Null => None,
        value => Some(value.to_string()),
    };
    let mut row = AuditRow {
        seq,
        id: Uuid::now_v7().to_string(),
        at: entry.at.unix_millis(),
        app_id: entry.app_id.map(|a| a.to_string()),
        actor_kind: entry.actor.kind.as_str().to_owned(),
        actor_id: clean(&entry.actor.id),
        key_id: clean_opt(entry.key_id.as_ref()),
        caller: clean_opt(entry.caller.as_ref()),
        action: entry.action.as_str().to_owned(),
        provider: clean_opt(entry.provider.as_ref()),
        grant_id: clean_opt(entry.grant_id.as_ref()),
        principal_kind,
        principal_value,
        outcome: entry.outcome.as_str().to_owned(),
        reason: clean_opt(entry.reason.as_ref()),
        context,
        request_id: clean_opt(entry.request_id.as_ref()),
        detail,
        prev_hash: prev_hash.to_vec(),
        hash: Vec::new(),
    };
    row.hash = row_hash(&row).to_vec();
    row
}

/// A stored hash as an array, or why it is not one.
pub(super) fn hash_array(
    seq: i64,
    column: &str,
    bytes: &[u8],
) -> Result<[u8; HASH_LEN], AuditError> {
    <[u8; HASH_LEN]>::try_from(bytes).map_err(|_| AuditError::Corrupt {
        seq,
        detail: format!("{column} is {} bytes, not {HASH_LEN}", bytes.len()),
    })
}

/// Parses the recorded head `SEQ:HEX(HASH)`.
pub(super) fn parse_head(value: &str) -> Option<(i64, [u8; HASH_LEN])> {
    let (seq, hash) = value.split_once(':')?;
    let seq: i64 = seq.parse().ok()?;
    let hash = <[u8; HASH_LEN]>::try_from(hex::decode(hash).ok()?).ok()?;
    (seq > 0).then_some((seq, hash))
}

/// Appends `entries`, in order, to the chain inside `tx`: takes the appenders' lock, reads
/// the last `(seq, hash)` (or the recorded head, if the rows end before it), inserts the
/// chained rows and records the new head in `meta`. Nothing is visible until `tx` commits
/// and a rolled-back `tx` leaves no trace, so a service can make its own change and its
/// audit row one atomic write.
///
/// On SQLite, `tx` must come from [`crate::store::Store::begin`] (which takes the write
/// lock at once). Any error means nothing was recorded — a store failure is
/// [`AuditError::Unavailable`], a malformed last row [`AuditError::Corrupt`] — and the
/// caller must then roll `tx` back (drop it), not commit it.
pub async fn append(tx: &mut Tx, entries: &[AuditEntry]) -> Result<Vec<Recorded>, AuditError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    append_rows(tx, entries).await.map_err(|e| match e {
        AuditError::Store(cause) => AuditError::Unavailable {
            reason: cause.to_string(),
        },
        other => other,
    })
}

async fn append_rows(tx: &mut Tx, entries: &[AuditEntry]) -> Result<Vec<Recorded>, AuditError> {
    rows::lock_appenders(tx).await?;
    let last = rows::last(&mut *tx).await?;
    let head = meta::get(&mut *tx, HEAD_META_KEY).await?;
    let batch = chain(entries, last, head.as_deref())?;
    rows::insert(tx, &batch.rows).await?;
    meta::set(&mut *tx, HEAD_META_KEY, &batch.head, Timestamp::now()).await?;
    Ok(batch.recorded)
}

/// [`append`] on SQLite's request-path writer (`conn` is its connection), inside the write
/// transaction its group commit has open (which is the appenders' lock). On error nothing of
/// it is kept: the group commit then rolls the whole transaction back.
pub fn append_in_sqlite_tx(
    conn: &rusqlite::Connection,
    entries: &[AuditEntry],
) -> Result<Vec<Recorded>, AuditError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let unavailable = |cause: StoreError| AuditError::Unavailable {
        reason: cause.to_string(),
    };
    let last = rows::last_on_sqlite(conn).map_err(unavailable)?;
    let head = meta::get_on_sqlite(conn, HEAD_META_KEY).map_err(unavailable)?;
    let batch = chain(entries, last, head.as_deref())?;
    rows::insert_on_sqlite(conn, &batch.rows).map_err(unavailable)?;
    meta::set_on_sqlite(conn, HEAD_META_KEY, &batch.head, Timestamp::now()).map_err(unavailable)?;
    Ok(batch.recorded)
}

/// Entries turned into the rows that continue a chain, and what follows from them.
struct Batch {
    rows: Vec<AuditRow>,
    recorded: Vec<Recorded>,
    /// The new head, as stored under [`HEAD_META_KEY`].
    head: String,
}

/// Chains `entries` after the stored rows, whose last is `last`, and the recorded `head`.
fn chain(
    entries: &[AuditEntry],
    last: Option<(i64, Vec<u8>)>,
    head: Option<&str>,
) -> Result<Batch, AuditError> {
    let last = match last {
        Some((seq, hash)) => Some((seq, hash_array(seq, "hash", &hash)?)),
        None => None,
    };
    let head = head.and_then(parse_head);
    // Continue from the recorded head when the rows end before it (or disagree with it):
    // the tail was cut or replaced, and linking to the head keeps that visible to `verify`
    // as a gap or broken link, instead of quietly starting a valid chain over the damage.
    let (mut seq, mut prev) = match (last, head) {
        (last, Some(head)) if head.0 >= last.map_or(0, |l| l.0) => {
            if last != Some(head) {
                tracing::warn!(
                    head_seq = head.0,
                    last_seq = last.map_or(0, |l| l.0),
                    "the audit log does not end at its recorded head; appending after the \
                     head (run `tessera audit verify`)"
                );
            }
            head
        }
        (Some(last), _) => last,
        (None, _) => (0, GENESIS_HASH),
    };
    let mut rows = Vec::with_capacity(entries.len());
    let mut recorded = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let row = build_row(entry, seq, prev);
        prev = hash_array(seq, "hash", &row.hash)?;
        recorded.push(Recorded {
            seq,
            id: row.id.clone(),
            hash: prev,
        });
        rows.push(row);
    }
    Ok(Batch {
        rows,
        recorded,
        head: format!("{seq}:{}", hex::encode(prev)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, Actor, ActorKind, Outcome};

    fn row() -> AuditRow {
        let entry = AuditEntry {
            at: Timestamp::from_unix_millis(1_767_225_600_000),
            reason: Some("sync".into()),
            principal: Some("user:https://idp.example.com:alice".into()),
            context: [("tool".to_owned(), "gh".to_owned())].into(),
            detail: serde_json::json!({"method": "GET", "status": 200}),
            ..AuditEntry::new(
                Action::ProxyExecute,
                Actor::new(ActorKind::AppKey, "0123456789abcdef"),
                Outcome::Ok,
            )
        };
        build_row(&entry, 1, GENESIS_HASH)
    }

    #[test]
    fn encoding_is_tagged_and_length_prefixed() {
        let r = row();
        let e = encode(&r);
        assert!(e.starts_with(b"tessera.audit.v1\n"));
        let after_domain = &e[DOMAIN.len()..];
        assert_eq!(after_domain[0], INTEGER);
        assert_eq!(&after_domain[1..9], &1i64.to_be_bytes());
        assert_eq!(after_domain[9], TEXT);
        assert_eq!(&after_domain[10..18], &36u64.to_be_bytes());
        assert!(e.ends_with(&GENESIS_HASH));
    }

    #[test]
    fn the_stored_hash_is_sha256_of_the_encoding() {
        let r = row();
        let expected: [u8; 32] = Sha256::digest(encode(&r)).into();
        assert_eq!(r.hash, expected.to_vec());
        assert_eq!(row_hash(&r).to_vec(), r.hash);
    }

    type Edit = Box<dyn Fn(&mut AuditRow)>;

    #[test]
    fn every_field_and_the_link_change_the_hash() {
        let base = row();
        let h = row_hash(&base);
        let edits: Vec<Edit> = vec![
            Box::new(|r| r.seq = 2),
            Box::new(|r| r.id.push('x')),
            Box::new(|r| r.at += 1),
            Box::new(|r| r.app_id = Some(String::new())),
            Box::new(|r| r.actor_kind = "agent".into()),
            Box::new(|r| r.actor_id.push('0')),
            Box::new(|r| r.key_id = Some("k".into())),
            Box::new(|r| r.caller = Some("bot".into())),
            Box::new(|r| r.action = "tokens.retrieve".into()),
            Box::new(|r| r.provider = Some("github".into())),
            Box::new(|r| r.grant_id = Some("g".into())),
            Box::new(|r| r.principal_kind = None),
            Box::new(|r| r.principal_value = Some("x".into())),
            Box::new(|r| r.outcome = "denied".into()),
            Box::new(|r| r.reason = None),
            Box::new(|r| r.context = Some("{}".into())),
            Box::new(|r| r.request_id = Some("r".into())),
            Box::new(|r| r.detail = None),
            Box::new(|r| r.prev_hash[31] = 1),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut r = base.clone();
            edit(&mut r);
            assert_ne!(row_hash(&r), h, "edit {i} did not change the hash");
        }
    }

    #[test]
    fn moving_bytes_between_adjacent_fields_changes_the_hash() {
        // Without length prefixes, ("ab", "c") and ("a", "bc") would encode alike.
        let mut a = row();
        a.caller = Some("ab".into());
        a.provider = Some("c".into());
        let mut b = row();
        b.caller = Some("a".into());
        b.provider = Some("bc".into());
        assert_ne!(row_hash(&a), row_hash(&b));
        // An absent value and an empty one differ too.
        let mut c = row();
        c.caller = None;
        let mut d = row();
        d.caller = Some(String::new());
        assert_ne!(row_hash(&c), row_hash(&d));
    }

    #[test]
    fn principal_is_split_at_the_first_colon_and_context_is_sorted_json() {
        let r = row();
        assert_eq!(r.principal_kind.as_deref(), Some("user"));
        assert_eq!(
            r.principal_value.as_deref(),
            Some("https://idp.example.com:alice")
        );
        let mut entry = AuditEntry::new(Action::GrantRevoke, Actor::operator("ops"), Outcome::Ok);
        entry.principal = Some("system".into());
        entry.context = [("z".into(), "1".into()), ("a".into(), "2\0".into())].into();
        let r = build_row(&entry, 7, GENESIS_HASH);
        assert_eq!(r.principal_kind.as_deref(), Some("system"));
        assert_eq!(r.principal_value.as_deref(), Some(""));
        assert_eq!(r.context.as_deref(), Some(r#"{"a":"2�","z":"1"}"#));
        assert_eq!(r.detail, None);
    }
}
