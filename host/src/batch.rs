//! Natural batching of database work on the request path. Requests that need the same kind
//! of statement at the same moment hand their input to one task, which runs one statement
//! for all of them and answers each. Nothing waits on a timer: while one batch is in the
//! database the next requests queue, and they form the next batch. One statement instead of
//! one per request is what makes SQLite (one writer, one thread hop per statement) and
//! PostgreSQL (one round trip and, for writes, one commit per statement) keep up under load.
//!
//! A [`Batcher`] starts its task on first use, on the caller's runtime, and starts another
//! if that runtime has gone (a test that outlived it); the task stops when the batcher is
//! dropped. A batcher made with [`Batcher::on_sqlite_writer`] has no task: its work runs in
//! the SQLite writer's group commits, which take the inputs straight from the requests
//! ([`crate::store::Lane`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::store::{Lane, SqliteWriter};

/// Requests waiting for the task before senders wait too.
const QUEUE: usize = 4096;

/// What a batch answers: one result per input, in order, or why none could be had.
pub type BatchResult<O> = Result<Vec<O>, String>;

type Work<I, O> =
    Arc<dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = BatchResult<O>> + Send>> + Send + Sync>;

type Job<I, O> = (I, oneshot::Sender<Result<O, String>>);

/// Runs `work` over batches of at most `max` inputs.
pub struct Batcher<I, O> {
    name: &'static str,
    max: usize,
    inner: Inner<I, O>,
}

enum Inner<I, O> {
    /// A task on the runtime batches and runs the async work.
    Task {
        work: Work<I, O>,
        sender: Mutex<Option<mpsc::Sender<Job<I, O>>>>,
    },
    /// The SQLite writer thread batches and runs the blocking work.
    Lane(Arc<Lane<I, O>>),
    /// No batching: the caller runs the blocking work on a batch of its own input.
    Inline(Arc<InlineWork<I, O>>),
}

type InlineWork<I, O> = dyn Fn(Vec<I>) -> BatchResult<O> + Send + Sync;

impl<I, O> std::fmt::Debug for Batcher<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("name", &self.name)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// A batcher called `name` (for logs) running `work` on up to `max` inputs at a time.
    /// `work` must answer exactly one output per input, in order.
    pub fn new<F, Fut>(name: &'static str, max: usize, work: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = BatchResult<O>> + Send + 'static,
    {
        Self {
            name,
            max: max.max(1),
            inner: Inner::Task {
                work: Arc::new(move |inputs| Box::pin(work(inputs))),
                sender: Mutex::new(None),
            },
        }
    }

    /// A batcher whose `work` runs in the group commits of the SQLite writer `writer`, on its
    /// connection, inside the group's transaction (see [`crate::store::Lane`]).
    pub(crate) fn on_sqlite_writer(
        name: &'static str,
        max: usize,
        writer: &Arc<SqliteWriter>,
        work: impl Fn(&rusqlite::Connection, &[I]) -> BatchResult<O> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            max: max.max(1),
            inner: Inner::Lane(Lane::new(name, max, Arc::clone(writer), work)),
        }
    }

    /// On a batcher made with [`Batcher::on_sqlite_writer`]: `settled` is told, after each
    /// batch's commit or failure, its size and whether it was committed. Elsewhere a no-op.
    pub(crate) fn on_settled(&self, settled: crate::store::Settled) {
        if let Inner::Lane(lane) = &self.inner {
            lane.on_settled(settled);
        }
    }

    /// A "batcher" that runs `work` at once on the caller's thread with a batch of one: for
    /// work that costs less than handing it to a task, such as a read by primary key from a
    /// local SQLite file.
    pub(crate) fn inline(
        name: &'static str,
        work: impl Fn(Vec<I>) -> BatchResult<O> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            max: 1,
            inner: Inner::Inline(Arc::new(work)),
        }
    }

    /// Runs `input` in the next batch; returns its output, or why its batch failed.
    pub async fn run(&self, input: I) -> Result<O, String> {
        let (work, slot) = match &self.inner {
            Inner::Lane(lane) => return lane.run(input).await,
            Inner::Inline(work) => {
                return work(vec![input])?
                    .pop()
                    .ok_or_else(|| format!("the {} batch answered nothing", self.name));
            }
            Inner::Task { work, sender } => (work, sender),
        };
        let sender = self.sender(work, slot);
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError((input, _))) = sender.send((input, reply)).await {
            // The task's runtime is gone: start over with a batch of one.
            Self::forget(slot, &sender);
            let mut outputs = work(vec![input]).await?;
            return outputs
                .pop()
                .ok_or_else(|| format!("the {} batch answered nothing", self.name));
        }
        answer.await.unwrap_or_else(|_| {
            Self::forget(slot, &sender);
            Err(format!("the {} batch stopped before answering", self.name))
        })
    }

    /// The task's sender in `slot`, starting the task if needed.
    fn sender(
        &self,
        work: &Work<I, O>,
        slot: &Mutex<Option<mpsc::Sender<Job<I, O>>>>,
    ) -> mpsc::Sender<Job<I, O>> {
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(drive(self.name, self.max, Arc::clone(work), receiver));
        *slot = Some(sender.clone());
        sender
    }

    fn forget(slot: &Mutex<Option<mpsc::Sender<Job<I, O>>>>, stale: &mpsc::Sender<Job<I, O>>) {
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|s| s.same_channel(stale)) {
            *slot = None;
        }
    }
}

/// The task: until the batcher is dropped, run what is queued as one batch and answer each.
async fn drive<I, O>(
    name: &'static str,
    max: usize,
    work: Work<I, O>,
    mut receiver: mpsc::Receiver<Job<I, O>>,
) {
    let mut batch = Vec::with_capacity(max);
    while receiver.recv_many(&mut batch, max).await > 0 {
        let (inputs, replies): (Vec<I>, Vec<_>) = batch.drain(..).unzip();
        answer(name, replies, work(inputs).await);
    }
}

/// Answers each request of a batch: its own output when `result` holds one per request, else
/// the batch's error (logged once).
pub(crate) fn answer<O>(
    name: &'static str,
    replies: Vec<oneshot::Sender<Result<O, String>>>,
    result: BatchResult<O>,
) {
    let n = replies.len();
    let reason = match result {
        Ok(outputs) if outputs.len() == n => {
            for (reply, output) in replies.into_iter().zip(outputs) {
                let _ = reply.send(Ok(output));
            }
            return;
        }
        Ok(outputs) => {
            let reason = format!("the {name} batch answered {} of {n}", outputs.len());
            tracing::error!(batch = name, "{reason}");
            reason
        }
        Err(reason) => {
            tracing::error!(batch = name, error = %reason, size = n, "batch failed; its requests are refused");
            reason
        }
    };
    for reply in replies {
        let _ = reply.send(Err(reason.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_inputs_share_batches_and_each_gets_its_own_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let batcher = Arc::new(Batcher::new("double", 16, move |inputs: Vec<u32>| {
            seen.lock().unwrap().push(inputs.len());
            async move {
                // Long enough that the other requests queue behind this batch.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(inputs.into_iter().map(|i| i * 2).collect())
            }
        }));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100_u32 {
            let batcher = Arc::clone(&batcher);
            tasks.spawn(async move { (i, batcher.run(i).await) });
        }
        while let Some(done) = tasks.join_next().await {
            let (i, answer) = done.unwrap();
            assert_eq!(answer, Ok(i * 2));
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&n| n <= 16), "{sizes:?}");
        assert!(sizes.len() < 100, "no batch held more than one: {sizes:?}");
    }

    #[tokio::test]
    async fn a_failed_or_short_batch_refuses_every_request_in_it() {
        let failing = Batcher::new("failing", 8, |_: Vec<u8>| async {
            Err::<Vec<u8>, _>("database gone".to_owned())
        });
        assert_eq!(failing.run(1).await, Err("database gone".to_owned()));
        let short = Batcher::new("short", 8, |_: Vec<u8>| async { Ok(Vec::<u8>::new()) });
        assert!(short.run(1).await.unwrap_err().contains("answered 0 of 1"));
    }

    #[test]
    fn a_batcher_outliving_its_runtime_starts_again_on_the_next() {
        let batcher = Batcher::new("again", 8, |inputs: Vec<u8>| async move { Ok(inputs) });
        for round in 0..3_u8 {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            assert_eq!(runtime.block_on(batcher.run(round)), Ok(round));
        }
    }
}
