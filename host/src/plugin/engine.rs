//! The one wasmtime [`Engine`] and its epoch clock.
//!
//! This module owns engine settings (component model, epoch interruption, pooling allocator
//! limits, copy-on-write memory images) and the ticker thread that advances the epoch. It must
//! never run guest code, and it must never grant a guest anything: capabilities are decided in
//! `sandbox`.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::{PluginError, RuntimeConfig};

/// How the engine allocates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorKind {
    /// Pre-reserved pool of instance slots: fastest instantiation.
    Pooling,
    /// Memory mapped per instance: used where the pool's address space cannot be reserved.
    OnDemand,
}

/// Whether to try the pooling allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolingMode {
    /// Try the pool; fall back to on-demand allocation if it cannot be reserved.
    #[default]
    Probe,
    /// Never use the pool.
    Off,
}

/// Limits of the pooling allocator. Every slot reserves address space up front (about 4 GiB
/// plus guard per memory, so that bounds checks can be elided), which is why the engine probes.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Component instances alive at once (= concurrent calls plus load-time `info` calls).
    pub instances: u32,
    /// Core instances per component (a `wasm32-wasip2` guest has a few shim instances).
    pub core_instances_per_component: u32,
    /// Tables per component.
    pub tables_per_component: u32,
    /// Bytes of each linear-memory slot kept mapped after an instance is freed, so the next
    /// instance reuses warm pages instead of faulting fresh ones in.
    pub memory_keep_resident: usize,
    /// Bytes of each table slot kept mapped after an instance is freed.
    pub table_keep_resident: usize,
    /// Reset only the pages a guest dirtied (Linux `PAGEMAP_SCAN`, kernel 6.7+; ignored
    /// where unsupported) instead of the whole kept-resident prefix.
    pub pagemap_scan: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            instances: 256,
            core_instances_per_component: 16,
            tables_per_component: 8,
            memory_keep_resident: 4 << 20,
            table_keep_resident: 64 << 10,
            pagemap_scan: true,
        }
    }
}

/// Builds the engine: pooling if configured and the probe succeeds, otherwise on-demand.
pub(crate) fn build(config: &RuntimeConfig) -> Result<(Engine, AllocatorKind), PluginError> {
    if config.pooling == PoolingMode::Probe {
        let mut pooled = base_config(config);
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(config)));
        // Creating the engine reserves the whole pool; that is the probe. It fails where
        // address space is short (ulimit -v, 32-bit, some containers).
        match Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, AllocatorKind::Pooling)),
            Err(err) => tracing::warn!(
                error = %err,
                "pooling allocator unavailable; falling back to on-demand instance allocation"
            ),
        }
    }
    let engine =
        Engine::new(&base_config(config)).map_err(|e| PluginError::Engine(e.to_string()))?;
    Ok((engine, AllocatorKind::OnDemand))
}

fn base_config(config: &RuntimeConfig) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack)
        .memory_init_cow(true)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(16));
    c
}

fn pool_config(config: &RuntimeConfig) -> PoolingAllocationConfig {
    let p = &config.pool;
    let mut pool = PoolingAllocationConfig::default();
    let cores = p.instances.saturating_mul(p.core_instances_per_component);
    pool.total_component_instances(p.instances)
        .total_core_instances(cores)
        .total_memories(p.instances)
        .total_tables(p.instances.saturating_mul(p.tables_per_component))
        .max_core_instances_per_component(p.core_instances_per_component)
        .max_memories_per_component(1)
        .max_tables_per_component(p.tables_per_component)
        .max_memory_size(config.memory_limit)
        .linear_memory_keep_resident(p.memory_keep_resident)
        .table_keep_resident(p.table_keep_resident)
        .pagemap_scan(if p.pagemap_scan {
            Enabled::Auto
        } else {
            Enabled::No
        });
    pool
}

/// Advances the engine's epoch every `tick` until dropped.
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> Result<Self, PluginError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tessera-epoch".to_owned())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
