//! [`AuditLog`]: group commit. Entries wait for the writer, which takes whatever is queued
//! (up to [`AuditOptions::max_batch`]), appends the batch in one transaction, and only then
//! answers each submitter. If the transaction fails, every entry of the batch gets
//! [`AuditError::Unavailable`] and none of them is stored.
//!
//! The writer is, on PostgreSQL, one task per log receiving entries over a bounded channel;
//! on SQLite, a lane of the store's writer (`store::writer`), whose group commits take the
//! entries straight from the submitters, with the other lanes' inputs (the nonces of new
//! requests), into one transaction.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot, watch};

use super::chain::{append, append_in_sqlite_tx};
use super::{AuditEntry, AuditError, Recorded};
use crate::batch::Batcher;
use crate::store::Store;

/// Tuning of an [`AuditLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Entries that may wait for the writer before [`AuditLog::record`] itself waits.
    pub queue_capacity: usize,
    /// The most entries one transaction appends.
    pub max_batch: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 4096,
            max_batch: 256,
        }
    }
}

/// Counters of the writer, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Transactions committed.
    pub batches: u64,
    /// Rows committed.
    pub rows: u64,
    /// Transactions that failed (their entries were refused).
    pub failed_batches: u64,
    /// The largest batch committed so far.
    pub largest_batch: u64,
}

struct Submission {
    entry: AuditEntry,
    reply: oneshot::Sender<Result<Recorded, AuditError>>,
}

#[derive(Default)]
struct Counters {
    depth: AtomicUsize,
    batches: AtomicU64,
    rows: AtomicU64,
    failed_batches: AtomicU64,
    largest_batch: AtomicU64,
}

struct Shared {
    sink: Sink,
    counters: Arc<Counters>,
}

enum Sink {
    /// A writer task (PostgreSQL).
    Task {
        /// `None` once shut down: no new entries.
        sender: Mutex<Option<mpsc::Sender<Submission>>>,
        /// Becomes `true` when the writer task has finished.
        done: watch::Receiver<bool>,
    },
    /// A lane of the SQLite writer thread.
    Lane {
        lane: Batcher<AuditEntry, Recorded>,
        /// `false` once shut down: no new entries.
        open: AtomicBool,
    },
}

/// The audit log of a host: cheap to clone, all clones feed the same writer task.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("queue_depth", &self.queue_depth())
            .finish_non_exhaustive()
    }
}

/// Takes the depth back down unless the entry reached the writer (which then does it).
struct DepthGuard<'a> {
    counters: &'a Counters,
    armed: bool,
}

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.counters.depth.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl AuditLog {
    /// Starts the writer task on the current Tokio runtime with default options.
    pub fn start(store: Store) -> Self {
        Self::start_with(store, AuditOptions::default())
    }

    /// Starts the writer (on SQLite a lane of the store's writer thread, else a task on the
    /// current Tokio runtime).
    pub fn start_with(store: Store, options: AuditOptions) -> Self {
        let counters = Arc::new(Counters::default());
        let max_batch = options.max_batch.max(1);
        if let Some(writer) = store.sqlite_writer() {
            // The lane logs a failure and refuses every entry of the batch.
            let lane = Batcher::on_sqlite_writer("audit", max_batch, writer, |conn, entries| {
                append_in_sqlite_tx(conn, entries).map_err(|e| e.to_string())
            });
            let c = Arc::clone(&counters);
            lane.on_settled(Arc::new(move |n, committed| {
                if committed {
                    c.committed(n);
                } else {
                    c.failed_batches.fetch_add(1, Ordering::Relaxed);
                }
            }));
            return Self {
                shared: Arc::new(Shared {
                    sink: Sink::Lane {
                        lane,
                        open: AtomicBool::new(true),
                    },
                    counters,
                }),
            };
        }
        let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let (done_tx, done_rx) = watch::channel(false);
        tokio::spawn(run(store, receiver, max_batch, counters.clone(), done_tx));
        Self {
            shared: Arc::new(Shared {
                sink: Sink::Task {
                    sender: Mutex::new(Some(sender)),
                    done: done_rx,
                },
                counters,
            }),
        }
    }

    /// Records `entry` and returns once its row is committed. `Err` means the row was not
    /// written and the caller must refuse the call it describes.
    pub async fn record(&self, entry: AuditEntry) -> Result<Recorded, AuditError> {
        let counters = &*self.shared.counters;
        counters.depth.fetch_add(1, Ordering::SeqCst);
        let mut guard = DepthGuard {
            counters,
            armed: true,
        };
        match &self.shared.sink {
            Sink::Lane { lane, open } => {
                // Counted before the check, so a shutdown that finds no entry in flight
                // cannot miss this one.
                if !open.load(Ordering::SeqCst) {
                    return Err(shut_down());
                }
                lane.run(entry)
                    .await
                    .map_err(|reason| AuditError::Unavailable { reason })
            }
            Sink::Task { sender, .. } => {
                let sender = sender
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
                    .ok_or_else(shut_down)?;
                let (reply, answer) = oneshot::channel();
                sender
                    .send(Submission { entry, reply })
                    .await
                    .map_err(|_| AuditError::Unavailable {
                        reason: "the audit writer has stopped".to_owned(),
                    })?;
                // The writer task takes the depth down once it answers.
                guard.armed = false;
                drop(sender);
                answer.await.map_err(|_| AuditError::Unavailable {
                    reason: "the audit writer stopped before committing".to_owned(),
                })?
            }
        }
    }

    /// Entries submitted and not yet answered (waiting or being committed).
    pub fn queue_depth(&self) -> usize {
        self.shared.counters.depth.load(Ordering::Relaxed)
    }

    /// The writer's counters.
    pub fn stats(&self) -> AuditStats {
        let c = &self.shared.counters;
        AuditStats {
            batches: c.batches.load(Ordering::Relaxed),
            rows: c.rows.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting entries ([`AuditLog::record`] then fails), commits everything
    /// already submitted, and returns when the writer has finished. Safe to call more than
    /// once and from several clones.
    pub async fn shutdown(&self) {
        match &self.shared.sink {
            Sink::Lane { open, .. } => {
                open.store(false, Ordering::SeqCst);
                // The entries in flight are committed by the writer thread whether or not
                // anyone waits; waiting keeps "returns when flushed" true.
                while self.shared.counters.depth.load(Ordering::SeqCst) > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            Sink::Task { sender, done } => {
                drop(sender.lock().unwrap_or_else(PoisonError::into_inner).take());
                let mut done = done.clone();
                // An error means the writer is gone, which is what we wait for.
                let _ = done.wait_for(|finished| *finished).await;
            }
        }
    }
}

fn shut_down() -> AuditError {
    AuditError::Unavailable {
        reason: "the audit log is shut down".to_owned(),
    }
}

impl Counters {
    /// Counts a committed batch of `n` rows.
    fn committed(&self, n: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(n as u64, Ordering::Relaxed);
        self.largest_batch.fetch_max(n as u64, Ordering::Relaxed);
    }
}

/// The writer task: until every sender is gone and the queue is empty, append what is
/// queued as one transaction and answer its submitters.
async fn run(
    store: Store,
    mut receiver: mpsc::Receiver<Submission>,
    max_batch: usize,
    counters: Arc<Counters>,
    done: watch::Sender<bool>,
) {
    let mut batch: Vec<Submission> = Vec::with_capacity(max_batch);
    loop {
        if receiver.recv_many(&mut batch, max_batch).await == 0 {
            break;
        }
        if batch.len() < max_batch {
            // Submitters woken together by the same event are often a moment behind the
            // first: give them one scheduling turn to join this transaction.
            tokio::task::yield_now().await;
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
        }
        let n = batch.len();
        let (entries, replies): (Vec<AuditEntry>, Vec<_>) =
            batch.drain(..).map(|s| (s.entry, s.reply)).unzip();
        match commit(&store, &entries).await {
            Ok(recorded) => {
                counters.committed(n);
                for (reply, r) in replies.into_iter().zip(recorded) {
                    // A submitter that stopped waiting still has its row committed.
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, rows = n, "audit batch not committed; its calls are refused");
                let reason = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(AuditError::Unavailable {
                        reason: reason.clone(),
                    }));
                }
            }
        }
        counters.depth.fetch_sub(n, Ordering::Relaxed);
    }
    let _ = done.send(true);
}

async fn commit(store: &Store, entries: &[AuditEntry]) -> Result<Vec<Recorded>, AuditError> {
    let mut tx = store.begin().await?;
    let recorded = append(&mut tx, entries).await?;
    tx.commit().await?;
    Ok(recorded)
}
