//! The load generator: N workers on the tokio runtime calling one async closure, either in a
//! closed loop (each worker sends its next request when the previous one answered: finds peak
//! throughput) or on a fixed-rate schedule (open loop: latency is counted from the time a
//! request was due, so a slow answer that holds up the requests behind it is not hidden —
//! coordinated omission).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::task::JoinSet;

/// One call: the argument is the call's sequence number (the memory run alternates call modes
/// on it).
pub type CallFn =
    Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

/// Wraps an async closure as a [`CallFn`].
pub fn call_fn<F, Fut>(f: F) -> CallFn
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    Arc::new(move |i| Box::pin(f(i)))
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Sample {
    /// Calls that completed inside the measured window.
    pub measured: u64,
    /// Every call sent, warm-up included.
    pub total: u64,
    /// Calls that failed (transport error or unexpected answer).
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Length of the measured window.
    pub window: Duration,
    /// Latency of each measured call, nanoseconds, sorted.
    pub latencies: Vec<u64>,
    /// Open loop only: the rate asked for (calls per second).
    pub target_rate: Option<f64>,
}

impl Sample {
    /// Measured calls per second.
    pub fn rate(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            as_f64(self.measured) / secs
        } else {
            0.0
        }
    }

    /// The `p`-th percentile (0–100) latency.
    pub fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let last = self.latencies.len() - 1;
        // Nearest rank; the index is at most `last`, so the conversions cannot lose anything.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((p / 100.0) * last as f64).round() as usize;
        Duration::from_nanos(self.latencies[rank.min(last)])
    }

    fn merge(&mut self, w: Worker) {
        self.measured += w.measured;
        self.total += w.total;
        self.errors += w.errors;
        if self.first_error.is_none() {
            self.first_error = w.first_error;
        }
        self.latencies.extend(w.latencies);
    }

    fn finish(mut self) -> Self {
        self.latencies.sort_unstable();
        self
    }
}

#[derive(Default)]
struct Worker {
    measured: u64,
    total: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Vec<u64>,
}

impl Worker {
    fn failed(&mut self, e: &anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{e:#}"));
        }
    }
}

/// `u64` to `f64` for rates and means (exact below 2^53, far above any count here).
#[allow(clippy::cast_precision_loss)]
pub fn as_f64(n: u64) -> f64 {
    n as f64
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Closed loop: `concurrency` workers, each sending its next call as soon as the previous one
/// answered, for `warmup` then `measure`. Calls that complete inside the measured window are
/// counted and their latency recorded.
pub async fn closed_loop(
    call: &CallFn,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
) -> Sample {
    let start = Instant::now();
    let warm_end = start + warmup;
    let end = warm_end + measure;
    let step = concurrency as u64;
    let mut tasks = JoinSet::new();
    for w in 0..step {
        let call = call.clone();
        tasks.spawn(async move {
            let mut out = Worker::default();
            let mut i = w;
            while Instant::now() < end {
                let sent = Instant::now();
                let result = call(i).await;
                let done = Instant::now();
                i += step;
                out.total += 1;
                if let Err(e) = result {
                    out.failed(&e);
                    continue;
                }
                if done >= warm_end && done <= end {
                    out.measured += 1;
                    out.latencies.push(nanos(done - sent));
                }
            }
            out
        });
    }
    let mut sample = Sample {
        window: measure,
        ..Sample::default()
    };
    while let Some(worker) = tasks.join_next().await {
        if let Ok(worker) = worker {
            sample.merge(worker);
        }
    }
    sample.finish()
}

/// Open loop: calls are due at a fixed `rate` (per second) for `warmup` then `measure`, sent
/// by up to `workers` concurrent workers. A call's latency runs from the time it was due
/// whenever every worker was still busy then (the queueing a slow answer causes is counted,
/// as wrk2 does), and from the moment it was sent when a worker was waiting for it (the tokio
/// timer fires up to 1 ms late; that slack belongs to the generator, not the server).
pub async fn open_loop(
    call: &CallFn,
    rate: f64,
    workers: usize,
    warmup: Duration,
    measure: Duration,
) -> Sample {
    let interval = 1e9 / rate;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (n_warm, n_total) = (
        (warmup.as_secs_f64() * rate) as u64,
        ((warmup + measure).as_secs_f64() * rate) as u64,
    );
    let t0 = Instant::now() + Duration::from_millis(5);
    let next = Arc::new(AtomicU64::new(0));
    let last_done = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let call = call.clone();
        let next = next.clone();
        let last_done = last_done.clone();
        tasks.spawn(async move {
            let mut out = Worker::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n_total {
                    break;
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let due = t0 + Duration::from_nanos((as_f64(i) * interval) as u64);
                let start = if Instant::now() < due {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                } else {
                    due
                };
                let result = call(i).await;
                let done = Instant::now();
                out.total += 1;
                if let Err(e) = result {
                    out.failed(&e);
                    continue;
                }
                if i >= n_warm {
                    out.measured += 1;
                    out.latencies.push(nanos(done - start));
                    last_done.fetch_max(nanos(done - t0), Ordering::Relaxed);
                }
            }
            out
        });
    }
    let mut sample = Sample {
        target_rate: Some(rate),
        ..Sample::default()
    };
    while let Some(worker) = tasks.join_next().await {
        if let Ok(worker) = worker {
            sample.merge(worker);
        }
    }
    // The measured window runs from the first measured call's due time to the last answer,
    // so a server that falls behind shows a lower rate than the one asked for.
    let finished = Duration::from_nanos(last_done.load(Ordering::Relaxed));
    sample.window = finished
        .saturating_sub(warmup)
        .max(Duration::from_millis(1));
    sample.finish()
}

/// A fixed number of calls, sequence numbers `from..to`, in a closed loop of `concurrency`
/// workers; `progress(done, elapsed)` is called every `every` from a side task. Records no
/// latency (the memory run makes a million calls).
pub async fn count_run(
    call: &CallFn,
    concurrency: usize,
    from: u64,
    to: u64,
    every: Duration,
    progress: impl Fn(u64, Duration) + Send + 'static,
) -> Sample {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(from));
    let done = Arc::new(AtomicU64::new(0));
    let reporter = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                progress(done.load(Ordering::Relaxed), start.elapsed());
            }
        })
    };
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let call = call.clone();
        let next = next.clone();
        let done = done.clone();
        tasks.spawn(async move {
            let mut out = Worker::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    break;
                }
                let result = call(i).await;
                out.total += 1;
                done.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(()) => out.measured += 1,
                    Err(e) => out.failed(&e),
                }
            }
            out
        });
    }
    let mut sample = Sample::default();
    while let Some(worker) = tasks.join_next().await {
        if let Ok(worker) = worker {
            sample.merge(worker);
        }
    }
    reporter.abort();
    sample.window = start.elapsed();
    sample.finish()
}
