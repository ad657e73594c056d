//! The SQLite request-path writer: one thread with its own connection to the database file,
//! running the writes every call makes one after the other: group commits (the nonce and
//! audit batches waiting in its lanes, in one transaction) and the nonce purge.
//!
//! Why it exists: SQLite has one writer at a time. Through the sqlx pool, a write transaction
//! is a sequence of statements, each sent to a connection's worker thread and answered back,
//! and the write lock is held across all of those hand-offs; another connection that wants to
//! write meanwhile sleeps in SQLite's busy handler (1, 2, 5, 10 … ms). Under load that
//! serialised the host at a few thousand calls per second with tens of milliseconds of tail
//! latency. Here a whole transaction is one hand-off: the job runs start to commit on this
//! thread, statement after statement in microseconds, and the request-path writers never
//! compete with each other for the lock. When the writer is idle, a request does not even
//! hand off: it takes the writer's connection and runs the group commit on its own thread
//! ([`SqliteWriter::wake`]); the connection's mutex keeps one transaction at a time either
//! way.
//!
//! PostgreSQL has no such thread: its writes stay on the pool, where concurrent
//! transactions do not exclude each other. Other SQLite writes (creating apps, grants, …)
//! also stay on the pool; they are rare, and SQLite's busy timeout orders them with this
//! thread's transactions.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak, mpsc};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::StoreError;
use super::dialect::sqlite::BUSY_TIMEOUT;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Prepared statements the thread keeps (a few per table it writes).
const STATEMENT_CACHE: usize = 32;

/// A handle on the writer thread; the thread ends when the last handle is dropped.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    jobs: mpsc::Sender<Job>,
    /// The writer's connection: the thread holds it while it runs a job, and an input that
    /// schedules a group commit and finds it free runs the commit on its caller's thread
    /// instead (see [`SqliteWriter::wake`]).
    conn: Arc<Mutex<Connection>>,
    /// The lanes whose inputs share a transaction (see [`commit_group`]).
    group: Arc<Group>,
    /// The latest grant epoch (migration 0014) a nonce batch read: see
    /// [`SqliteWriter::observe_grant_epoch`].
    grant_epoch: std::sync::atomic::AtomicI64,
}

impl SqliteWriter {
    /// Opens a connection to the (already created and migrated) database at `path` with the
    /// pool's settings and starts the thread.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The file is already in WAL mode (a property of the database); these two are
        // per-connection and must match the pool's (`dialect::sqlite::connect`).
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let conn = Arc::new(Mutex::new(conn));
        let (jobs, queue) = mpsc::channel::<Job>();
        let shared = Arc::clone(&conn);
        std::thread::Builder::new()
            .name("tessera-sqlite-writer".to_owned())
            .spawn(move || {
                for job in queue {
                    guarded(
                        &mut shared.lock().unwrap_or_else(PoisonError::into_inner),
                        job,
                    );
                }
            })
            .map_err(|e| StoreError::writer(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self {
            jobs,
            conn,
            group: Arc::default(),
            grant_epoch: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// Runs `work` on the writer thread and returns what it returned. `work` must not block
    /// on anything but the database: every request-path write waits behind it. A panic in
    /// `work` is reported as an error; the thread goes on.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Box::new(move |conn| {
            let _ = reply.send(work(conn));
        }))
        .map_err(|()| StoreError::writer("the SQLite writer has stopped"))?;
        answer.await.map_err(|_| {
            StoreError::writer("a write on the SQLite writer panicked or was abandoned")
        })
    }

    fn submit(&self, job: Job) -> Result<(), ()> {
        self.jobs.send(job).map_err(|_| ())
    }

    /// Records that a transaction read grant epoch `epoch` (the nonce lane does, in every
    /// batch, before answering): what [`SqliteWriter::grant_epoch`] returns never goes back.
    pub(crate) fn observe_grant_epoch(&self, epoch: i64) {
        self.grant_epoch.fetch_max(epoch, Ordering::SeqCst);
    }

    /// The latest grant epoch a transaction on this writer read (`0` before the first):
    /// read after a nonce batch answered, at least the epoch that batch saw.
    pub(crate) fn grant_epoch(&self) -> i64 {
        self.grant_epoch.load(Ordering::SeqCst)
    }

    /// The connection, if neither the thread nor another caller is using it.
    fn try_take(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        match self.conn.try_lock() {
            Ok(conn) => Some(conn),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// Runs `job` on `conn`; a panic is caught and the transaction it may have left open (which
/// would hold the write lock) rolled back. The job's waiters see their reply dropped.
fn guarded(conn: &mut Connection, job: impl FnOnce(&mut Connection)) {
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn)));
    if done.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// Connections for reads on the request path that run on the caller's thread: a read by
/// primary key takes microseconds under WAL (readers never wait for the writer), less than
/// the two thread wake-ups of a hand-off to a pool connection and back. Neither they nor the
/// writer map the file (the pool does): the audit log grows the file at every checkpoint,
/// and remapping it on every connection cost more CPU per call than the reads it saves
/// (BENCHMARKS.md).
#[derive(Debug)]
pub(crate) struct SqliteReaders {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// Idle reader connections kept for reuse (one per thread that reads at once is enough).
const KEPT_READERS: usize = 4;

impl SqliteReaders {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on an idle connection (opening one if there is none), on this thread.
    pub(crate) fn read<R>(
        &self,
        read: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = if let Some(conn) = conn {
            conn
        } else {
            let conn = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "query_only", true)?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            conn
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < KEPT_READERS {
            idle.push(conn);
        }
        result
    }
}

/// `row.try_get(i)` on a rusqlite row, as on an sqlx row, so a row decoder written for sqlx
/// (a macro such as `store::grants`' `decode_joined!`) also decodes rusqlite rows.
pub(crate) trait TryGet {
    fn try_get<T: rusqlite::types::FromSql>(&self, idx: usize) -> rusqlite::Result<T>;
}

impl TryGet for rusqlite::Row<'_> {
    fn try_get<T: rusqlite::types::FromSql>(&self, idx: usize) -> rusqlite::Result<T> {
        self.get(idx)
    }
}

/// The work of a [`Lane`]: one output per input, in order, or why the whole batch failed.
/// It runs inside the group's transaction and must neither begin nor end one; it may run
/// again on the same inputs when another lane's batch failed (see [`commit_group`]).
type LaneWork<I, O> = dyn Fn(&Connection, &[I]) -> Result<Vec<O>, String> + Send + Sync;

type Waiting<I, O> = (I, oneshot::Sender<Result<O, String>>);

/// What a lane took for the group's transaction: its batch, and how to run and answer it.
trait Taken: Send {
    /// Runs the batch inside the open transaction and keeps its outputs; `false` when its
    /// work failed (the transaction must then be rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers every input: with its output if the batch ran and `committed` is `Ok`,
    /// else with the batch's own error or the commit's.
    fn answer(self: Box<Self>, committed: Result<(), String>);
    /// Answers every input with `why`, without running the batch.
    fn refuse(self: Box<Self>, why: String);
    /// How many inputs the batch holds.
    fn len(&self) -> usize;
}

/// A lane as the group sees it: something that may hold waiting inputs.
trait Member: Send + Sync {
    /// Takes up to the lane's maximum of waiting inputs; `None` when none wait. Sets `more`
    /// when inputs are left behind.
    fn take(&self, more: &mut bool) -> Option<Box<dyn Taken>>;
}

/// The lanes of one writer and whether a group commit is due.
#[derive(Default)]
struct Group {
    /// A group commit is queued for the thread or about to run on a caller's thread, and
    /// has not yet started taking inputs. Whoever turns it on schedules that commit.
    scheduled: AtomicBool,
    members: Mutex<Vec<Weak<dyn Member>>>,
    /// Inputs the last group commit took.
    last_size: AtomicUsize,
}

/// A group commit that took at least this many inputs means the writer is busy...
const BUSY_GROUP: usize = 4;

/// ...and then the next group commit on the writer thread waits this long before taking
/// inputs. Under load most of a commit's cost is per commit, not per input (each commit
/// rewrites the last page of every B-tree it touches: the nonces, the audit table and its
/// indexes, the chain head), so fewer, larger commits leave more of the two cores to the
/// requests; the wait is short next to the queueing a busy host already has. An idle
/// writer never waits: a lone request's commit runs at once (BENCHMARKS.md).
const GROUP_WINDOW: std::time::Duration = std::time::Duration::from_micros(250);

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("scheduled", &self.scheduled.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Group {
    fn members(&self) -> Vec<Arc<dyn Member>> {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.retain(|m| m.strong_count() > 0);
        members.iter().filter_map(Weak::upgrade).collect()
    }
}

impl SqliteWriter {
    /// Makes sure a group commit will take the input just put into a lane: schedules one
    /// unless one is scheduled and has not started taking inputs. A connection that no job
    /// is using is taken on this thread: one transaction of microseconds costs less than
    /// waking the writer thread and being woken by it. A busy one gets a job as usual.
    fn wake(&self) {
        if self.group.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        match self.try_take() {
            Some(mut conn) => guarded(&mut conn, |conn| {
                commit_group(&self.group, &self.jobs, conn, false);
            }),
            None => schedule_group(&self.group, &self.jobs),
        }
    }
}

/// Queues a group commit on the thread (`group.scheduled` is already on).
fn schedule_group(group: &Arc<Group>, jobs: &mpsc::Sender<Job>) {
    let (g, j) = (Arc::clone(group), jobs.clone());
    let job: Job = Box::new(move |conn| commit_group(&g, &j, conn, true));
    if jobs.send(job).is_err() {
        // The thread has stopped: whatever waits is refused.
        group.scheduled.store(false, Ordering::SeqCst);
        for member in group.members() {
            let mut more = false;
            while let Some(taken) = member.take(&mut more) {
                drop(taken);
            }
        }
    }
}

/// Group commit: takes what waits in every lane and runs it all in one transaction; one
/// commit then answers everyone. If the commit fails, every input is refused. A lane whose
/// work fails is refused alone: the transaction is rolled back and the other lanes' batches
/// run again in a new one. (Savepoints would isolate it without the rerun, but SQLite keeps
/// a copy of every page a savepoint's statements change, on the request path of every call,
/// to pay for a failure that almost never happens.)
fn commit_group(
    group: &Arc<Group>,
    jobs: &mpsc::Sender<Job>,
    conn: &mut Connection,
    on_thread: bool,
) {
    if on_thread && group.last_size.load(Ordering::Relaxed) >= BUSY_GROUP {
        // Busy: let the requests in flight catch up with this commit (see [`GROUP_WINDOW`]).
        std::thread::sleep(GROUP_WINDOW);
    }
    // From here on a new input schedules another commit.
    group.scheduled.store(false, Ordering::SeqCst);
    let mut more = false;
    let taken: Vec<Box<dyn Taken>> = group
        .members()
        .iter()
        .filter_map(|m| m.take(&mut more))
        .collect();
    group
        .last_size
        .store(taken.iter().map(|t| t.len()).sum(), Ordering::Relaxed);
    if more && !group.scheduled.swap(true, Ordering::SeqCst) {
        // Queued now, it runs after this commit and takes the rest.
        schedule_group(group, jobs);
    }
    if taken.is_empty() {
        return;
    }
    let mut batches = taken;
    loop {
        if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
            let why = format!("cannot begin a write transaction: {e}");
            for batch in batches {
                batch.refuse(why.clone());
            }
            return;
        }
        let (ran, failed): (Vec<_>, Vec<_>) = batches
            .into_iter()
            .map(|mut batch| (batch.run(conn), batch))
            .partition(|(ok, _)| *ok);
        if failed.is_empty() {
            let committed = control(conn, "COMMIT").map_err(|e| format!("the commit failed: {e}"));
            if committed.is_err() {
                let _ = control(conn, "ROLLBACK");
            }
            for (_, batch) in ran {
                batch.answer(committed.clone());
            }
            return;
        }
        // A failed batch may have written part of its work: nothing of this transaction is
        // kept. The failed ones get their own error; the others run again without them
        // (their work is repeatable: it sees the database as it was before).
        let _ = control(conn, "ROLLBACK");
        for (_, batch) in failed {
            batch.answer(Ok(()));
        }
        if ran.is_empty() {
            return;
        }
        batches = ran.into_iter().map(|(_, batch)| batch).collect();
    }
}

/// Runs a transaction-control statement through the statement cache: `execute_batch` would
/// parse it again on every group commit, two or three times per call under load.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Natural batching on the writer thread: inputs of one kind wait in the lane, and a group
/// commit takes all of them (up to a maximum), with whatever waits in the writer's other
/// lanes, and runs them in one transaction. An input that finds no group commit scheduled
/// schedules one; the others join it. So a request hands its input straight to the writer
/// (no task in between), and while a transaction runs the next group forms by itself.
pub(crate) struct Lane<I, O> {
    name: &'static str,
    max: usize,
    writer: Arc<SqliteWriter>,
    waiting: Mutex<VecDeque<Waiting<I, O>>>,
    work: Arc<LaneWork<I, O>>,
    settled: OnceLock<Settled>,
}

/// Told, after each batch's commit (or failure), how many inputs it held and whether they
/// were committed.
pub(crate) type Settled = Arc<dyn Fn(usize, bool) + Send + Sync>;

impl<I: Send + 'static, O: Send + 'static> Lane<I, O> {
    /// A lane called `name` (for errors and its savepoint) on `writer`, running `work` on up
    /// to `max` inputs at a time inside the group's transaction.
    pub(crate) fn new(
        name: &'static str,
        max: usize,
        writer: Arc<SqliteWriter>,
        work: impl Fn(&Connection, &[I]) -> Result<Vec<O>, String> + Send + Sync + 'static,
    ) -> Arc<Self> {
        let lane = Arc::new(Self {
            name,
            max: max.max(1),
            writer,
            waiting: Mutex::new(VecDeque::new()),
            work: Arc::new(work),
            settled: OnceLock::new(),
        });
        let member: Arc<dyn Member> = lane.clone();
        lane.writer
            .group
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&member));
        lane
    }

    /// Runs `input` in the next group commit; returns its output, or why its batch failed.
    pub(crate) async fn run(self: &Arc<Self>, input: I) -> Result<O, String> {
        let (reply, answer) = oneshot::channel();
        self.lock().push_back((input, reply));
        self.writer.wake();
        answer
            .await
            .unwrap_or_else(|_| Err(format!("the {} batch stopped before answering", self.name)))
    }

    /// Has `settled` told of every batch's outcome from now on (the first call wins).
    pub(crate) fn on_settled(&self, settled: Settled) {
        let _ = self.settled.set(settled);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting<I, O>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<I: Send + 'static, O: Send + 'static> Member for Lane<I, O> {
    fn take(&self, more: &mut bool) -> Option<Box<dyn Taken>> {
        let mut waiting = self.lock();
        let n = waiting.len().min(self.max);
        if n == 0 {
            return None;
        }
        let (inputs, replies) = waiting.drain(..n).unzip();
        *more |= !waiting.is_empty();
        Some(Box::new(Batch {
            name: self.name,
            work: Arc::clone(&self.work),
            inputs,
            replies,
            outputs: None,
            settled: self.settled.get().cloned(),
        }))
    }
}

/// A lane's batch, taken for one group commit. Dropped unanswered, its inputs see their
/// batch stop before answering.
struct Batch<I, O> {
    name: &'static str,
    work: Arc<LaneWork<I, O>>,
    inputs: Vec<I>,
    replies: Vec<oneshot::Sender<Result<O, String>>>,
    outputs: Option<Result<Vec<O>, String>>,
    settled: Option<Settled>,
}

impl<I: Send + 'static, O: Send + 'static> Taken for Batch<I, O> {
    fn run(&mut self, conn: &Connection) -> bool {
        let outputs = (self.work)(conn, &self.inputs);
        let ok = outputs.is_ok();
        self.outputs = Some(outputs);
        ok
    }

    fn answer(self: Box<Self>, committed: Result<(), String>) {
        let n = self.inputs.len();
        let result = match self.outputs {
            Some(outputs) => outputs.and_then(|out| committed.map(|()| out)),
            None => Err(format!("the {} batch did not run", self.name)),
        };
        if let Some(settled) = &self.settled {
            settled(n, result.is_ok());
        }
        crate::batch::answer(self.name, self.replies, result);
    }

    fn refuse(self: Box<Self>, why: String) {
        if let Some(settled) = &self.settled {
            settled(self.inputs.len(), false);
        }
        crate::batch::answer(self.name, self.replies, Err(why));
    }

    fn len(&self) -> usize {
        self.inputs.len()
    }
}

impl<I, O> std::fmt::Debug for Lane<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("name", &self.name)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;
    use crate::store::{BackendKind, on_conn};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_on_the_thread_are_seen_by_the_pool_and_a_panic_leaves_it_usable()
    -> anyhow::Result<()> {
        let db = TestDb::new(BackendKind::Sqlite).await?;
        let writer = db
            .store()
            .sqlite_writer()
            .expect("an SQLite store has a writer");
        let panicked = writer
            .run(|conn| {
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                panic!("a job that dies inside its transaction");
            })
            .await;
        assert!(panicked.unwrap_err().to_string().contains("panicked"));
        lane_batches_what_waits_and_answers_each_in_order(writer).await?;
        let inserted = writer
            .run(|conn| {
                conn.execute(
                    "INSERT INTO meta (key, value, updated_at) VALUES ($1, $2, $3)",
                    rusqlite::params!["writer.test", "seen", 1_i64],
                )
            })
            .await??;
        assert_eq!(inserted, 1);
        let value: Option<String> = crate::store::meta::get(db.store(), "writer.test").await?;
        assert_eq!(value.as_deref(), Some("seen"));
        // The pool can still take the write lock: the panicked transaction was rolled back.
        let mut tx = db.store().begin().await?;
        on_conn!(&mut tx, |conn| {
            sqlx::query("DELETE FROM meta WHERE key = 'writer.test'")
                .execute(&mut *conn)
                .await?;
            Ok::<(), StoreError>(())
        })?;
        tx.commit().await?;
        Ok(())
    }

    async fn lane_batches_what_waits_and_answers_each_in_order(
        writer: &Arc<SqliteWriter>,
    ) -> anyhow::Result<()> {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let lane = Lane::new(
            "double",
            16,
            Arc::clone(writer),
            move |_conn, inputs: &[u32]| {
                seen.lock().unwrap().push(inputs.len());
                // Long enough that the other inputs wait behind this batch.
                std::thread::sleep(std::time::Duration::from_millis(5));
                Ok(inputs.iter().map(|i| i * 2).collect())
            },
        );
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100_u32 {
            let lane = Arc::clone(&lane);
            tasks.spawn(async move { (i, lane.run(i).await) });
        }
        while let Some(done) = tasks.join_next().await {
            let (i, answer) = done?;
            assert_eq!(answer, Ok(i * 2));
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&n| n <= 16), "{sizes:?}");
        assert!(sizes.len() < 100, "no batch held more than one: {sizes:?}");
        let failing = Lane::new("failing", 4, Arc::clone(writer), |_conn, _: &[u8]| {
            Err::<Vec<u8>, _>("database gone".to_owned())
        });
        assert_eq!(failing.run(1).await, Err("database gone".to_owned()));
        Ok(())
    }

    /// Inputs of two lanes waiting at once share one transaction; a lane whose work fails is
    /// refused alone, and the other's writes are committed (in a second transaction).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lanes_share_a_commit_and_a_failing_lane_is_rolled_back_alone() -> anyhow::Result<()> {
        let db = TestDb::new(BackendKind::Sqlite).await?;
        let writer = db.store().sqlite_writer().expect("a writer").clone();
        let write = |conn: &Connection, key: &str| {
            conn.execute(
                "INSERT INTO meta (key, value, updated_at) VALUES ($1, 'x', 1)",
                [key],
            )
            .map_err(|e| e.to_string())
        };
        let transactions = Arc::new(Mutex::new(Vec::new()));
        let (seen_ok, seen_bad) = (Arc::clone(&transactions), Arc::clone(&transactions));
        let ok = Lane::new(
            "ok",
            8,
            Arc::clone(&writer),
            move |conn, keys: &[String]| {
                seen_ok.lock().unwrap().push(!conn.is_autocommit());
                keys.iter().map(|k| write(conn, k)).collect()
            },
        );
        let bad = Lane::new(
            "bad",
            8,
            Arc::clone(&writer),
            move |conn, keys: &[String]| {
                seen_bad.lock().unwrap().push(!conn.is_autocommit());
                for k in keys {
                    write(conn, k)?;
                }
                Err::<Vec<usize>, _>("refused after writing".to_owned())
            },
        );
        // The writer is busy, so both inputs wait for the same group commit.
        let (started, busy) = oneshot::channel();
        let hold = {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move {
                writer
                    .run(move |_| {
                        let _ = started.send(());
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    })
                    .await
            })
        };
        busy.await?;
        let (a, b) = tokio::join!(ok.run("lane.ok".to_owned()), bad.run("lane.bad".to_owned()));
        hold.await??;
        assert_eq!(a, Ok(1));
        assert_eq!(b, Err("refused after writing".to_owned()));
        // Both ran in the shared transaction; after its rollback, the good lane ran again.
        assert_eq!(*transactions.lock().unwrap(), [true, true, true]);
        assert!(
            crate::store::meta::get(db.store(), "lane.ok")
                .await?
                .is_some()
        );
        assert!(
            crate::store::meta::get(db.store(), "lane.bad")
                .await?
                .is_none()
        );
        Ok(())
    }
}
