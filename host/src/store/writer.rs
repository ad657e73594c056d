//! The SQLite request-path writer: one thread with its own connection to the database file,
//! running the writes every call makes (nonce batches, audit batches, the nonce purge) one
//! after the other.
//!
//! Why it exists: SQLite has one writer at a time. Through the sqlx pool, a write transaction
//! is a sequence of statements, each sent to a connection's worker thread and answered back,
//! and the write lock is held across all of those hand-offs; another connection that wants to
//! write meanwhile sleeps in SQLite's busy handler (1, 2, 5, 10 … ms). Under load that
//! serialised the host at a few thousand calls per second with tens of milliseconds of tail
//! latency. Here a whole transaction is one hand-off: the job runs start to commit on this
//! thread, statement after statement in microseconds, and the request-path writers never
//! compete with each other for the lock. When the writer is idle, a request does not even
//! hand off: it takes the writer's connection and runs the batch on its own thread
//! ([`Lane::run`]); the connection's mutex keeps one transaction at a time either way.
//!
//! PostgreSQL has no such thread: its writes stay on the pool, where concurrent
//! transactions do not exclude each other. Other SQLite writes (creating apps, grants, …)
//! also stay on the pool; they are rare, and SQLite's busy timeout orders them with this
//! thread's transactions.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, mpsc};

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
    /// The writer's connection: the thread holds it while it runs a job, and a lane whose
    /// first input finds it free drains on the caller's thread instead (see [`Lane::run`]).
    conn: Arc<Mutex<Connection>>,
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
        Ok(Self { jobs, conn })
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
/// the two thread wake-ups of a hand-off to a pool connection and back.
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
type LaneWork<I, O> = dyn Fn(&mut Connection, Vec<I>) -> Result<Vec<O>, String> + Send + Sync;

type Waiting<I, O> = (I, oneshot::Sender<Result<O, String>>);

/// Natural batching on the writer thread: inputs of one kind wait in the lane, and the
/// thread takes all of them (up to a maximum) at once and runs them as one batch. Only the
/// input that finds the lane empty queues a job for the thread; the others join it. So a
/// request hands its input straight to the thread (no task in between), and while the
/// thread is busy the next batch forms by itself. When the input that finds the lane empty
/// also finds the writer's connection free, its caller runs the batch itself.
pub(crate) struct Lane<I, O> {
    name: &'static str,
    max: usize,
    writer: Arc<SqliteWriter>,
    waiting: Mutex<VecDeque<Waiting<I, O>>>,
    work: Box<LaneWork<I, O>>,
}

impl<I: Send + 'static, O: Send + 'static> Lane<I, O> {
    /// A lane called `name` (for errors) on `writer`, running `work` on up to `max` inputs
    /// at a time.
    pub(crate) fn new(
        name: &'static str,
        max: usize,
        writer: Arc<SqliteWriter>,
        work: impl Fn(&mut Connection, Vec<I>) -> Result<Vec<O>, String> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            max: max.max(1),
            writer,
            waiting: Mutex::new(VecDeque::new()),
            work: Box::new(work),
        })
    }

    /// Runs `input` in the next batch; returns its output, or why its batch failed.
    pub(crate) async fn run(self: &Arc<Self>, input: I) -> Result<O, String> {
        let (reply, answer) = oneshot::channel();
        let first = {
            let mut waiting = self.lock();
            waiting.push_back((input, reply));
            waiting.len() == 1
        };
        if first {
            // A writer connection that no job is using is taken on this thread: one
            // transaction of microseconds costs less than waking the writer thread and being
            // woken by it. A busy one gets a drain job as usual (jobs already queued for the
            // thread, of other lanes, run after this batch).
            match self.writer.try_take() {
                Some(mut conn) => guarded(&mut conn, |conn| self.drain(conn)),
                None => self.schedule(),
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(format!("the {} batch stopped before answering", self.name)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting<I, O>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one drain of this lane on the thread.
    fn schedule(self: &Arc<Self>) {
        let lane = Arc::clone(self);
        if self
            .writer
            .submit(Box::new(move |conn| lane.drain(conn)))
            .is_err()
        {
            for (_, reply) in self.lock().drain(..) {
                let _ = reply.send(Err("the SQLite writer has stopped".to_owned()));
            }
        }
    }

    /// With the writer's connection: takes what waits (up to the maximum, queuing another
    /// drain for the rest) and answers each.
    fn drain(self: &Arc<Self>, conn: &mut Connection) {
        let (batch, more): (Vec<Waiting<I, O>>, bool) = {
            let mut waiting = self.lock();
            let n = waiting.len().min(self.max);
            (waiting.drain(..n).collect(), !waiting.is_empty())
        };
        // Inputs that arrive from now on find the lane non-empty and queue nothing, so the
        // rest needs a drain of its own.
        if more {
            self.schedule();
        }
        if batch.is_empty() {
            return;
        }
        let (inputs, replies): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
        crate::batch::answer(self.name, replies, (self.work)(conn, inputs));
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
            move |_conn, inputs: Vec<u32>| {
                seen.lock().unwrap().push(inputs.len());
                // Long enough that the other inputs wait behind this batch.
                std::thread::sleep(std::time::Duration::from_millis(5));
                Ok(inputs.into_iter().map(|i| i * 2).collect())
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
        let failing = Lane::new("failing", 4, Arc::clone(writer), |_conn, _: Vec<u8>| {
            Err::<Vec<u8>, _>("database gone".to_owned())
        });
        assert_eq!(failing.run(1).await, Err("database gone".to_owned()));
        Ok(())
    }
}
