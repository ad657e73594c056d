//! The audit log on both backends: group commit, fail-closed writes, several writers on one
//! database, tamper detection by `verify`, and listing.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::store::audit::{AuditRow, rows_after};
use crate::store::testing::TestDb;
use crate::store::{Store, StoreError, both_backends, on_conn};

both_backends! {
    recorded_rows_round_trip_and_verify => recorded_rows_round_trip_and_verify;
    edited_row_is_reported_at_its_seq => edited_row_is_reported_at_its_seq;
    rehashed_row_breaks_the_next_link => rehashed_row_breaks_the_next_link;
    deleted_middle_row_is_reported => deleted_middle_row_is_reported;
    deleted_tail_is_caught_by_the_recorded_head => deleted_tail_is_caught_by_the_recorded_head;
    swapped_rows_are_reported => swapped_rows_are_reported;
    concurrent_records_are_group_committed_into_one_chain =>
        concurrent_records_are_group_committed_into_one_chain;
    two_writers_on_one_database_keep_one_linear_chain =>
        two_writers_on_one_database_keep_one_linear_chain;
    failed_writes_are_refused_and_leave_nothing_behind =>
        failed_writes_are_refused_and_leave_nothing_behind;
    shutdown_flushes_what_was_queued_and_refuses_new_entries =>
        shutdown_flushes_what_was_queued_and_refuses_new_entries;
    append_in_a_callers_transaction_is_atomic_with_it =>
        append_in_a_callers_transaction_is_atomic_with_it;
    list_filters_scope_and_page => list_filters_scope_and_page;
}

const T0: i64 = 1_767_225_600_000;

fn entry(n: i64) -> AuditEntry {
    AuditEntry {
        at: Timestamp::from_unix_millis(T0 + n),
        reason: Some(format!("call {n}")),
        provider: Some("github".into()),
        ..AuditEntry::new(
            Action::ProxyExecute,
            Actor::new(ActorKind::AppKey, "0123456789abcdef"),
            Outcome::Ok,
        )
    }
}

async fn exec(store: &Store, sql: &str) -> Result<u64, StoreError> {
    on_conn!(store, |conn| {
        let done = sqlx::query(sql).execute(&mut *conn).await?;
        Ok(done.rows_affected())
    })
}

async fn all_rows(store: &Store) -> Result<Vec<AuditRow>, StoreError> {
    rows_after(store, 0, 100_000).await
}

/// A log with `n` committed rows.
async fn log_with(store: &Store, n: i64) -> anyhow::Result<AuditLog> {
    let log = AuditLog::start(store.clone());
    for i in 1..=n {
        let r = log.record(entry(i)).await?;
        assert_eq!(r.seq, i);
    }
    Ok(log)
}

async fn problem(store: &Store) -> anyhow::Result<ChainProblem> {
    let report = verify(store).await?;
    assert!(!report.ok, "{report:?}");
    report
        .problem
        .ok_or_else(|| anyhow::anyhow!("no problem reported"))
}

async fn recorded_rows_round_trip_and_verify(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    let log = AuditLog::start(s.clone());
    let app = AppId::new();
    let full = AuditEntry {
        app_id: Some(app),
        key_id: Some("0123456789abcdef".into()),
        caller: Some("email-bot".into()),
        grant_id: Some("0199a1b2-0000-7000-8000-000000000001".into()),
        principal: Some("user:https://idp.example.com:alice".into()),
        outcome: Outcome::Denied,
        context: [("run".into(), "42".into()), ("tool".into(), "gh".into())].into(),
        request_id: Some("req-1".into()),
        detail: serde_json::json!({
            "mode": "proxy", "method": "GET", "host": "api.github.com",
            "path": "/user/repos?access_token=gho_secret&page=2", "status": 403,
            "latency_ms": 12,
            "request_headers": [["authorization", "Bearer gho_secret"]],
            "headers": {"Authorization": "Bearer gho_secret", "Accept": "*/*"},
        }),
        ..entry(1)
    };
    let first = log.record(full.clone()).await?;
    let second = log
        .record(AuditEntry {
            principal: Some("system".into()),
            ..entry(2)
        })
        .await?;
    assert_eq!((first.seq, second.seq), (1, 2));
    let events = list(s, &AuditFilter::default()).await?;
    assert_eq!(events.len(), 2);
    let e = &events[0];
    assert_eq!(e.seq, 1);
    assert_eq!(e.id, first.id);
    assert_eq!(e.hash, hex::encode(first.hash));
    assert_eq!(e.prev_hash, hex::encode(GENESIS_HASH));
    assert_eq!(events[1].prev_hash, e.hash);
    assert_eq!(e.at, "2026-01-01T00:00:00.001Z");
    assert_eq!(e.app_id, Some(app.to_string()));
    assert_eq!(
        (e.actor_kind.as_str(), e.actor_id.as_str()),
        ("app_key", "0123456789abcdef")
    );
    assert_eq!(e.action, "proxy.execute");
    assert_eq!(e.outcome, "denied");
    assert_eq!(e.caller.as_deref(), Some("email-bot"));
    assert_eq!(
        e.principal.as_deref(),
        Some("user:https://idp.example.com:alice")
    );
    assert_eq!(events[1].principal.as_deref(), Some("system"));
    assert_eq!(e.context, full.context);
    assert_eq!(e.reason.as_deref(), Some("call 1"));
    assert_eq!(e.request_id.as_deref(), Some("req-1"));
    assert_eq!(e.detail["status"], 403);
    assert_eq!(
        e.detail["path"],
        "/user/repos?access_token=[redacted]&page=2"
    );
    assert_eq!(e.detail["headers"]["Authorization"], REDACTED);
    assert_eq!(e.detail["headers"]["Accept"], "*/*");
    // The secret is nowhere in the stored row.
    let stored = format!("{:?}", all_rows(s).await?);
    assert!(!stored.contains("gho_secret"), "{stored}");
    let report = verify(s).await?;
    assert!(report.ok && report.problem.is_none(), "{report:?}");
    assert_eq!(report.rows, 2);
    assert_eq!(
        report.last,
        Some(Head {
            seq: 2,
            hash: hex::encode(second.hash)
        })
    );
    assert_eq!(report.recorded_head, report.last);
    log.shutdown().await;
    Ok(())
}

async fn edited_row_is_reported_at_its_seq(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    log_with(s, 5).await?;
    assert!(verify(s).await?.ok);
    assert_eq!(
        exec(
            s,
            "UPDATE audit SET reason = 'nothing to see' WHERE seq = 3"
        )
        .await?,
        1
    );
    let p = problem(s).await?;
    assert_eq!((p.seq, p.kind), (3, ProblemKind::HashMismatch), "{p:?}");
    let report = verify(s).await?;
    assert_eq!(report.rows, 2, "rows before the bad one");
    Ok(())
}

async fn rehashed_row_breaks_the_next_link(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    log_with(s, 5).await?;
    // A careful forger edits row 3 and recomputes its hash: row 4 no longer links to it.
    let mut row = all_rows(s).await?.remove(2);
    row.outcome = "error".into();
    let hash = row_hash(&row).to_vec();
    on_conn!(s, |conn| {
        sqlx::query("UPDATE audit SET outcome = 'error', hash = $1 WHERE seq = 3")
            .bind(&hash)
            .execute(&mut *conn)
            .await?;
        Ok::<(), StoreError>(())
    })?;
    let p = problem(s).await?;
    assert_eq!((p.seq, p.kind), (4, ProblemKind::BrokenLink), "{p:?}");
    Ok(())
}

async fn deleted_middle_row_is_reported(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    log_with(s, 5).await?;
    assert_eq!(exec(s, "DELETE FROM audit WHERE seq = 3").await?, 1);
    let p = problem(s).await?;
    assert_eq!((p.seq, p.kind), (3, ProblemKind::MissingRow), "{p:?}");
    // The first row too.
    let db2 = TestDb::new(s.backend()).await?;
    log_with(db2.store(), 2).await?;
    exec(db2.store(), "DELETE FROM audit WHERE seq = 1").await?;
    let p = problem(db2.store()).await?;
    assert_eq!((p.seq, p.kind), (1, ProblemKind::MissingRow), "{p:?}");
    Ok(())
}

async fn deleted_tail_is_caught_by_the_recorded_head(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    log_with(s, 5).await?;
    // The chain alone cannot see this: rows 1..=3 are a valid chain.
    assert_eq!(exec(s, "DELETE FROM audit WHERE seq >= 4").await?, 2);
    let p = problem(s).await?;
    assert_eq!((p.seq, p.kind), (4, ProblemKind::Truncated), "{p:?}");
    assert!(p.detail.contains("rows 4..=5"), "{}", p.detail);
    // The next append links to the recorded head, so the damage stays visible as a gap
    // instead of a fresh valid chain starting over it.
    let log = AuditLog::start(s.clone());
    assert_eq!(log.record(entry(9)).await?.seq, 6);
    let p = problem(s).await?;
    assert_eq!((p.seq, p.kind), (4, ProblemKind::MissingRow), "{p:?}");
    log.shutdown().await;

    // Deleting the head as well is still noticed while any row is left.
    let db2 = TestDb::new(s.backend()).await?;
    let s2 = db2.store();
    log_with(s2, 3).await?;
    exec(s2, "DELETE FROM audit WHERE seq = 3").await?;
    exec(s2, "DELETE FROM meta WHERE key = 'audit.head'").await?;
    let p = problem(s2).await?;
    assert_eq!((p.seq, p.kind), (3, ProblemKind::HeadMissing), "{p:?}");
    Ok(())
}

async fn swapped_rows_are_reported(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    log_with(s, 4).await?;
    for sql in [
        "UPDATE audit SET seq = 100 WHERE seq = 2",
        "UPDATE audit SET seq = 2 WHERE seq = 3",
        "UPDATE audit SET seq = 3 WHERE seq = 100",
    ] {
        assert_eq!(exec(s, sql).await?, 1, "{sql}");
    }
    let p = problem(s).await?;
    assert_eq!(p.seq, 2, "{p:?}");
    Ok(())
}

async fn concurrent_records_are_group_committed_into_one_chain(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    let log = AuditLog::start(s.clone());
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.record(entry(i)).await })
        })
        .collect();
    let mut seqs = BTreeSet::new();
    for t in tasks {
        seqs.insert(t.await??.seq);
    }
    assert_eq!(seqs, (1..=500).collect::<BTreeSet<i64>>());
    let stats = log.stats();
    assert_eq!(stats.rows, 500);
    assert!(stats.largest_batch > 1, "no batching happened: {stats:?}");
    assert!(stats.batches < 500, "{stats:?}");
    assert_eq!(log.queue_depth(), 0);
    let report = verify(s).await?;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows, 500);
    log.shutdown().await;
    Ok(())
}

async fn two_writers_on_one_database_keep_one_linear_chain(db: &TestDb) -> anyhow::Result<()> {
    let one = AuditLog::start(db.store().clone());
    let other_store = db.open_another().await?;
    let two = AuditLog::start(other_store.clone());
    let mut tasks = Vec::new();
    for i in 0..300 {
        let log = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move { log.record(entry(i)).await }));
    }
    let mut seqs = BTreeSet::new();
    for t in tasks {
        seqs.insert(t.await??.seq);
    }
    assert_eq!(seqs, (1..=300).collect::<BTreeSet<i64>>());
    assert!(one.stats().rows > 0 && two.stats().rows > 0);
    let report = verify(db.store()).await?;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows, 300);
    one.shutdown().await;
    two.shutdown().await;
    other_store.close().await;
    Ok(())
}

async fn failed_writes_are_refused_and_leave_nothing_behind(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    let log = log_with(s, 2).await?;
    testing::break_audit_writes(s).await?;
    let err = log.record(entry(3)).await.unwrap_err();
    assert!(matches!(err, AuditError::Unavailable { .. }), "{err:?}");
    // A whole batch fails together.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.record(entry(10 + i)).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await?.is_err());
    }
    assert_eq!(all_rows(s).await?.len(), 2, "a refused entry was stored");
    assert!(log.stats().failed_batches >= 2);
    assert_eq!(log.queue_depth(), 0);
    testing::repair_audit_writes(s).await?;
    assert_eq!(log.record(entry(4)).await?.seq, 3);
    let report = verify(s).await?;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows, 3);
    log.shutdown().await;
    Ok(())
}

async fn shutdown_flushes_what_was_queued_and_refuses_new_entries(
    db: &TestDb,
) -> anyhow::Result<()> {
    let s = db.store();
    let log = AuditLog::start_with(
        s.clone(),
        AuditOptions {
            queue_capacity: 8,
            max_batch: 4,
        },
    );
    // Another appender holds the chain lock, so the writer cannot commit yet.
    let mut blocker = s.begin().await?;
    crate::store::audit::lock_appenders(&mut blocker).await?;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.record(entry(i)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(log.queue_depth(), 40, "every entry is waiting");
    let stopping = tokio::spawn({
        let log = log.clone();
        async move { log.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown returned before the queue was written"
    );
    let err = log.record(entry(99)).await.unwrap_err();
    assert!(err.to_string().contains("shut down"), "{err}");
    blocker.rollback().await?;
    stopping.await?;
    for t in tasks {
        t.await??;
    }
    assert_eq!(all_rows(s).await?.len(), 40);
    let stats = log.stats();
    assert!(stats.largest_batch <= 4 && stats.batches >= 10, "{stats:?}");
    assert_eq!(log.queue_depth(), 0);
    log.shutdown().await;
    assert!(verify(s).await?.ok);
    Ok(())
}

async fn append_in_a_callers_transaction_is_atomic_with_it(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    let mut tx = s.begin().await?;
    let r = append(&mut tx, &[entry(1), entry(2)]).await?;
    assert_eq!(r.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
    tx.rollback().await?;
    assert!(all_rows(s).await?.is_empty());
    assert!(verify(s).await?.ok, "nothing written, nothing recorded");
    let mut tx = s.begin().await?;
    append(&mut tx, &[entry(1)]).await?;
    tx.commit().await?;
    // The writer continues the same chain.
    let log = AuditLog::start(s.clone());
    assert_eq!(log.record(entry(2)).await?.seq, 2);
    assert!(verify(s).await?.ok);
    log.shutdown().await;
    Ok(())
}

async fn list_filters_scope_and_page(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    let log = AuditLog::start(s.clone());
    let (app_a, app_b) = (AppId::new(), AppId::new());
    for i in 0..10 {
        let event = AuditEntry {
            app_id: Some(if i % 2 == 0 { app_a } else { app_b }),
            grant_id: Some(format!("g{}", i % 3)),
            outcome: if i == 4 { Outcome::Error } else { Outcome::Ok },
            action: if i < 5 {
                Action::ProxyExecute
            } else {
                Action::TokensRetrieve
            },
            ..entry(i * 1000)
        };
        log.record(event).await?;
    }
    let seqs = |events: &[tessera_proto::audit::AuditEvent]| {
        events.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    let only_a = AuditFilter {
        app_id: Some(app_a),
        ..AuditFilter::default()
    };
    assert_eq!(seqs(&list(s, &only_a).await?), vec![1, 3, 5, 7, 9]);
    let filter = AuditFilter {
        action: Some("tokens.retrieve".into()),
        ..only_a.clone()
    };
    assert_eq!(seqs(&list(s, &filter).await?), vec![7, 9]);
    let filter = AuditFilter {
        outcome: Some("error".into()),
        ..only_a.clone()
    };
    assert_eq!(seqs(&list(s, &filter).await?), vec![5]);
    let filter = AuditFilter {
        grant_id: Some("g0".into()),
        ..AuditFilter::default()
    };
    assert_eq!(seqs(&list(s, &filter).await?), vec![1, 4, 7, 10]);
    let filter = AuditFilter {
        since: Some(Timestamp::from_unix_millis(T0 + 2000)),
        until: Some(Timestamp::from_unix_millis(T0 + 6000)),
        ..only_a.clone()
    };
    assert_eq!(seqs(&list(s, &filter).await?), vec![3, 5]);
    let filter = AuditFilter {
        provider: Some("gitlab".into()),
        ..AuditFilter::default()
    };
    assert!(list(s, &filter).await?.is_empty());
    let filter = AuditFilter {
        newest_first: true,
        limit: Some(3),
        ..AuditFilter::default()
    };
    assert_eq!(seqs(&list(s, &filter).await?), vec![10, 9, 8]);
    // Paging: full pages carry a cursor, the last one does not.
    let mut filter = AuditFilter {
        limit: Some(2),
        ..only_a.clone()
    };
    let mut pages = Vec::new();
    loop {
        let one = page(s, &filter).await?;
        pages.push(seqs(&one.items));
        match one.next_after {
            Some(after) => filter.after = Some(after),
            None => break,
        }
    }
    assert_eq!(pages, vec![vec![1, 3], vec![5, 7], vec![9]]);
    // An actor filter needs both kind and id to match (what an agent key's listing uses).
    log.record(AuditEntry {
        app_id: Some(app_a),
        ..AuditEntry::new(Action::ProxyExecute, Actor::agent("bot-1"), Outcome::Ok)
    })
    .await?;
    let by = |actor: Actor| AuditFilter {
        actor: Some(actor),
        ..only_a.clone()
    };
    assert_eq!(seqs(&list(s, &by(Actor::agent("bot-1"))).await?), vec![11]);
    assert_eq!(
        seqs(&list(s, &by(Actor::app_key("0123456789abcdef"))).await?),
        vec![1, 3, 5, 7, 9]
    );
    assert!(
        list(s, &by(Actor::agent("0123456789abcdef")))
            .await?
            .is_empty()
    );
    assert!(list(s, &by(Actor::app_key("bot-1"))).await?.is_empty());
    log.shutdown().await;
    Ok(())
}
