//! What a guest gets: per-call store state, the memory cap, and the deny-everything WASI
//! context.
//!
//! Owns the limits enforced inside a store and the WASI context given to components that
//! import WASI. It must never grant ambient authority: no preopened directory, no environment
//! variable, no argument, no socket, no name lookup and no real clock ever reaches a guest.
//! Built-in providers import nothing and get [`PureState`], which holds no WASI context at all.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

/// Wraps [`StoreLimits`] and remembers whether the memory cap was what stopped the guest, so
/// the error can say so instead of reporting a generic trap.
pub(crate) struct Limiter {
    limits: StoreLimits,
    memory_limit_hit: bool,
}

impl Limiter {
    pub(crate) fn new(memory_limit: usize) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_limit)
            .instances(64)
            .tables(64)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        Self {
            limits,
            memory_limit_hit: false,
        }
    }

    pub(crate) fn memory_limit_hit(&self) -> bool {
        self.memory_limit_hit
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let result = self.limits.memory_growing(current, desired, maximum);
        if result.is_err() {
            self.memory_limit_hit = true;
        }
        result
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_limit_hit = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Store state shared by both kinds of guest.
pub(crate) trait StoreState: Send + Sized + 'static {
    fn limiter_mut(&mut self) -> &mut Limiter;
    fn limiter_ref(&self) -> &Limiter;
    /// Called after every call, successful or not, with the provider id and the call's name
    /// for logging.
    fn finish(self, _provider: &str, _call: &str) {}
}

/// State of a store for a component that imports nothing: only the limiter.
pub(crate) struct PureState {
    limiter: Limiter,
}

impl PureState {
    pub(crate) fn new(memory_limit: usize) -> Self {
        Self {
            limiter: Limiter::new(memory_limit),
        }
    }
}

impl StoreState for PureState {
    fn limiter_mut(&mut self) -> &mut Limiter {
        &mut self.limiter
    }
    fn limiter_ref(&self) -> &Limiter {
        &self.limiter
    }
}

/// State of a store for a component that imports WASI: the limiter plus a WASI context that
/// denies everything.
///
/// Randomness is the one thing left as wasmtime provides it (a per-context seeded generator):
/// random bytes grant no authority and reveal nothing about the host. A deterministic source
/// would be equally acceptable; providers must use `context.entropy` anyway.
pub(crate) struct WasiState {
    limiter: Limiter,
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiState {
    pub(crate) fn new(memory_limit: usize, stdio_capacity: usize) -> Self {
        let stdout = MemoryOutputPipe::new(stdio_capacity);
        let stderr = MemoryOutputPipe::new(stdio_capacity);
        // The builder starts from: stdin closed, no env, no args, no preopens, sockets with
        // every address denied, name lookup denied. Everything below only narrows that.
        let ctx = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .allow_blocking_current_thread(true)
            .build();
        Self {
            limiter: Limiter::new(memory_limit),
            ctx,
            table: ResourceTable::new(),
            stdout,
            stderr,
        }
    }
}

impl WasiView for WasiState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl StoreState for WasiState {
    fn limiter_mut(&mut self) -> &mut Limiter {
        &mut self.limiter
    }
    fn limiter_ref(&self) -> &Limiter {
        &self.limiter
    }
    fn finish(self, provider: &str, call: &str) {
        // Guest output goes to the log, capped by the pipe capacity, never to our stdio. Only
        // calls whose inputs carry no secret (`info`, `classify`) have their output logged: a
        // component handed a credential could print it, or any transformation of it, which no
        // redaction could reliably catch. For the others only the size is logged.
        let carries_secrets = !matches!(call, "info" | "classify");
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            if carries_secrets {
                tracing::debug!(
                    provider,
                    call,
                    stream,
                    bytes = bytes.len(),
                    "component output withheld (the call carried secrets)"
                );
            } else {
                tracing::debug!(provider, call, stream, output = %String::from_utf8_lossy(&bytes), "component output");
            }
        }
    }
}

/// A clock stopped at the Unix epoch: components are pure and are handed `now` explicitly.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
