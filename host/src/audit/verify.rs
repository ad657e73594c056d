//! `tessera audit verify`: walks the whole chain and reports the first row that is wrong or
//! missing.

use serde::Serialize;

use super::AuditError;
use super::chain::{GENESIS_HASH, HEAD_META_KEY, hash_array, parse_head, row_hash};
use crate::store::audit as rows;
use crate::store::{Store, meta};

/// Rows read per query while walking the chain.
const PAGE: i64 = 1000;

/// A chain position: a `seq` and the hash of that row (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    /// The row.
    pub seq: i64,
    /// Its hash, lower-case hex.
    pub hash: String,
}

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The row's contents do not hash to its stored hash: it was edited (or renumbered).
    HashMismatch,
    /// The row's `prev_hash` is not the previous row's hash: the row before it was replaced
    /// or re-hashed, or rows were swapped.
    BrokenLink,
    /// A `seq` is missing: a row was deleted.
    MissingRow,
    /// The rows end before the recorded head: the tail was deleted.
    Truncated,
    /// The row at the recorded head's `seq` has another hash.
    HeadMismatch,
    /// Rows exist but no head is recorded (the `meta` entry was deleted).
    HeadMissing,
    /// A stored hash or the recorded head is malformed.
    Corrupt,
}

impl ProblemKind {
    /// The JSON name (`hash_mismatch`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::HashMismatch => "hash_mismatch",
            ProblemKind::BrokenLink => "broken_link",
            ProblemKind::MissingRow => "missing_row",
            ProblemKind::Truncated => "truncated",
            ProblemKind::HeadMismatch => "head_mismatch",
            ProblemKind::HeadMissing => "head_missing",
            ProblemKind::Corrupt => "corrupt",
        }
    }
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainProblem {
    /// The first `seq` that is wrong or missing.
    pub seq: i64,
    /// What is wrong.
    pub kind: ProblemKind,
    /// For people.
    pub detail: String,
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Whether the chain is intact.
    pub ok: bool,
    /// The first `seq` that is wrong or missing (the problem's `seq`).
    pub first_bad_seq: Option<i64>,
    /// Rows checked before the first problem (all of them when `ok`).
    pub rows: u64,
    /// The last row checked.
    pub last: Option<Head>,
    /// The head recorded in `meta` by the last append, when verification started.
    pub recorded_head: Option<Head>,
    /// The first problem, if any.
    pub problem: Option<ChainProblem>,
}

impl VerifyReport {
    fn failed(mut self, seq: i64, kind: ProblemKind, detail: String) -> Self {
        self.ok = false;
        self.first_bad_seq = Some(seq);
        self.problem = Some(ChainProblem { seq, kind, detail });
        self
    }
}

/// Recomputes every row's hash, checks every link and that `seq` runs 1, 2, … without a
/// gap, and compares the end of the chain with the head recorded in `meta` (which catches
/// a deleted tail). Stops at the first problem. Safe while hosts append: rows added after
/// the recorded head was read are checked as chain links only.
pub async fn verify(store: &Store) -> Result<VerifyReport, AuditError> {
    let recorded_raw = meta::get(store, HEAD_META_KEY).await?;
    let recorded = recorded_raw
        .as_deref()
        .and_then(parse_head)
        .map(|(seq, hash)| Head {
            seq,
            hash: hex::encode(hash),
        });
    let mut report = VerifyReport {
        ok: true,
        first_bad_seq: None,
        rows: 0,
        last: None,
        recorded_head: recorded.clone(),
        problem: None,
    };
    if let (Some(raw), None) = (&recorded_raw, &recorded) {
        return Ok(report.failed(
            0,
            ProblemKind::Corrupt,
            format!("the recorded head {raw:?} is not SEQ:HEX"),
        ));
    }
    let mut expected = 1i64;
    let mut prev = GENESIS_HASH;
    let mut hash_at_head: Option<String> = None;
    loop {
        let page = rows::rows_after(store, expected - 1, PAGE).await?;
        let full = i64::try_from(page.len()).is_ok_and(|n| n >= PAGE);
        for row in &page {
            let seq = row.seq;
            if seq != expected {
                return Ok(report.failed(
                    expected,
                    ProblemKind::MissingRow,
                    format!("row {expected} is missing (the next row is {seq})"),
                ));
            }
            let (stored_prev, stored_hash) = match (
                hash_array(seq, "prev_hash", &row.prev_hash),
                hash_array(seq, "hash", &row.hash),
            ) {
                (Ok(p), Ok(h)) => (p, h),
                (Err(e), _) | (_, Err(e)) => {
                    return Ok(report.failed(seq, ProblemKind::Corrupt, e.to_string()));
                }
            };
            if stored_prev != prev {
                return Ok(report.failed(
                    seq,
                    ProblemKind::BrokenLink,
                    format!(
                        "row {seq} does not link to row {}: a row before it was replaced, \
                         re-hashed or moved",
                        seq - 1
                    ),
                ));
            }
            if row_hash(row) != stored_hash {
                return Ok(report.failed(
                    seq,
                    ProblemKind::HashMismatch,
                    format!("row {seq} does not match its hash: it was edited"),
                ));
            }
            let hash = hex::encode(stored_hash);
            if recorded.as_ref().is_some_and(|h| h.seq == seq) {
                hash_at_head = Some(hash.clone());
            }
            report.rows += 1;
            report.last = Some(Head { seq, hash });
            prev = stored_hash;
            expected += 1;
        }
        if !full {
            break;
        }
    }
    Ok(check_head(report, expected - 1, hash_at_head.as_deref()))
}

/// The end of a chain that verified up to row `last_seq` against the head recorded in
/// `meta` (`hash_at_head`: the hash of the row at the head's `seq`, if that row was seen).
fn check_head(report: VerifyReport, last_seq: i64, hash_at_head: Option<&str>) -> VerifyReport {
    let Some(head) = report.recorded_head.clone() else {
        if last_seq == 0 {
            return report;
        }
        return report.failed(
            last_seq + 1,
            ProblemKind::HeadMissing,
            "rows exist but no chain head is recorded: the log may have been truncated and \
             the head deleted"
                .to_owned(),
        );
    };
    if last_seq < head.seq {
        let detail = format!(
            "the log ends at row {last_seq} but row {} was written: rows {}..={} are missing",
            head.seq,
            last_seq + 1,
            head.seq
        );
        return report.failed(last_seq + 1, ProblemKind::Truncated, detail);
    }
    if hash_at_head != Some(head.hash.as_str()) {
        let detail = format!(
            "row {} is not the row that was written there (its hash differs from the \
             recorded head)",
            head.seq
        );
        return report.failed(head.seq, ProblemKind::HeadMismatch, detail);
    }
    report
}
