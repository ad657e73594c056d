//! Loading components and calling into them.
//!
//! Owns [`Runtime`] (engine, linkers, cache, limits) and [`Plugin`] (one loaded provider). Every
//! call gets a fresh store and a fresh instance from the component's `InstancePre`, a memory
//! cap, an epoch deadline and, for the async variants, an outer timeout. This module must never
//! reuse an instance across calls (no state may leak between tenants), never log or format
//! call arguments or results (they carry credentials), and never let a guest failure become a
//! host panic.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, PoolConcurrencyLimitError, Store, Trap};

use super::PluginError;
use super::bindings::{ProviderComponent, ProviderComponentPre};
use super::cache::{ArtifactCache, Lookup};
use super::contract::{self, ContractVersion};
use super::engine::{self, AllocatorKind, EpochTicker, PoolConfig, PoolingMode};
use super::output::OutputSize;
use super::sandbox::{PureState, StoreState, WasiState};
use super::types::{
    AuthKind, Classification, Context, Credential, HttpRequest, HttpResponse, Input, ProviderError,
    ProviderInfo, Step,
};
use tessera_proto::providers::{self as wire, ProviderSummary};

/// Runs one contract call on a fresh instance of either store type. The body is expanded
/// once per store type, because the generated `call_*` methods are generic over the store.
macro_rules! with_instance {
    ($instance:expr, $shared:expr, $provider:expr, $call:expr, |$b:ident, $store:ident| $body:expr) => {
        match $instance {
            Instance::Pure(pre) => {
                let data = PureState::new($shared.limits.memory_limit);
                run($shared, $provider, $call, pre, data, |$b, $store| $body)
            }
            Instance::Wasi(pre) => {
                let data =
                    WasiState::new($shared.limits.memory_limit, $shared.limits.stdio_capacity);
                run($shared, $provider, $call, pre, data, |$b, $store| $body)
            }
        }
    };
}

/// Settings of the plugin runtime. [`Default`] gives production values.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Guest CPU time allowed per call; enforced by epoch interruption.
    pub deadline: Duration,
    /// Outer wall-clock bound of the `*_async` calls; slightly above `deadline`.
    pub timeout: Duration,
    /// Period of the epoch ticker: the deadline's granularity.
    pub epoch_tick: Duration,
    /// Linear memory a guest may use per call, in bytes.
    pub memory_limit: usize,
    /// Largest value (request, step, info) accepted back from a guest, in bytes.
    pub max_output: usize,
    /// Largest component file accepted, in bytes.
    pub max_component_size: usize,
    /// Bytes of guest stdout and of stderr kept per call (WASI components only).
    pub stdio_capacity: usize,
    /// Guest stack size, in bytes.
    pub max_wasm_stack: usize,
    /// Directory of authenticated precompiled components; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Whether to try the pooling allocator.
    pub pooling: PoolingMode,
    /// Pooling allocator limits.
    pub pool: PoolConfig,
    /// Told the provider, the function and the duration of every `*_async` call (metrics).
    pub observer: Option<CallObserver>,
}

/// What a [`CallObserver`] calls: `(provider, function, elapsed, succeeded)`.
pub type ObserveFn = dyn Fn(&str, &'static str, Duration, bool) + Send + Sync;

/// Receives `(provider, function, elapsed, succeeded)` after every asynchronous plugin call.
#[derive(Clone)]
pub struct CallObserver(pub Arc<ObserveFn>);

impl fmt::Debug for CallObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallObserver")
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(1),
            timeout: Duration::from_millis(1_250),
            epoch_tick: Duration::from_millis(5),
            memory_limit: 64 << 20,
            max_output: 4 << 20,
            max_component_size: 32 << 20,
            stdio_capacity: 16 << 10,
            max_wasm_stack: 512 << 10,
            cache_dir: None,
            pooling: PoolingMode::Probe,
            pool: PoolConfig::default(),
            observer: None,
        }
    }
}

/// Where a component's bytes came from; used in messages and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Shipped with the host, under this name.
    BuiltIn(String),
    /// A file in the operator's provider directory.
    File(PathBuf),
    /// Bytes handed in by a caller (tests, `tessera provider check`), under this label.
    Bytes(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BuiltIn(name) => write!(f, "built-in {name}"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Bytes(label) => f.write_str(label),
        }
    }
}

/// How a loaded component's machine code was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOrigin {
    /// Compiled from the WebAssembly bytes by this load.
    Compiled,
    /// Deserialized from an authenticated artifact in the cache.
    Cache,
}

/// Counters of the runtime's lifetime, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Components compiled with Cranelift.
    pub compiled: u64,
    /// Components deserialized from the cache.
    pub from_cache: u64,
    /// Cache artifacts refused (bad tag, corrupt) and deleted.
    pub rejected_artifacts: u64,
}

#[derive(Debug, Clone, Copy)]
struct CallLimits {
    deadline: Duration,
    timeout: Duration,
    deadline_ticks: u64,
    memory_limit: usize,
    max_output: usize,
    stdio_capacity: usize,
}

struct Shared {
    engine: Engine,
    allocator: AllocatorKind,
    cache: Option<ArtifactCache>,
    limits: CallLimits,
    max_component_size: usize,
    pure_linker: Linker<PureState>,
    wasi_linker: Linker<WasiState>,
    compiled: AtomicU64,
    from_cache: AtomicU64,
    rejected: AtomicU64,
    config: RuntimeConfig,
    // Last field: dropped after everything that might still be running guest code.
    _ticker: EpochTicker,
}

/// The plugin runtime: one engine, its epoch ticker, linkers and cache. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("allocator", &self.shared.allocator)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine (probing the pooling allocator), starts the epoch ticker and opens
    /// the cache directory if one is configured.
    pub fn new(config: RuntimeConfig) -> Result<Self, PluginError> {
        let (engine, allocator) = engine::build(&config)?;
        let tick = config.epoch_tick.max(Duration::from_millis(1));
        let deadline_ticks = u64::try_from(config.deadline.as_nanos().div_ceil(tick.as_nanos()))
            .unwrap_or(u64::MAX)
            .max(1);
        let cache = config
            .cache_dir
            .as_deref()
            .map(|dir| ArtifactCache::open(dir, &engine))
            .transpose()?;
        let pure_linker = Linker::new(&engine);
        let mut wasi_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut wasi_linker)
            .map_err(|e| PluginError::Engine(format!("cannot link WASI: {e}")))?;
        let ticker = EpochTicker::start(engine.clone(), tick)?;
        tracing::debug!(?allocator, "plugin runtime ready");
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                allocator,
                cache,
                limits: CallLimits {
                    deadline: config.deadline,
                    timeout: config.timeout,
                    deadline_ticks,
                    memory_limit: config.memory_limit,
                    max_output: config.max_output,
                    stdio_capacity: config.stdio_capacity,
                },
                max_component_size: config.max_component_size,
                pure_linker,
                wasi_linker,
                compiled: AtomicU64::new(0),
                from_cache: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                config,
                _ticker: ticker,
            }),
        })
    }

    /// The configuration the runtime was created with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    /// Which instance allocator the engine ended up with.
    pub fn allocator(&self) -> AllocatorKind {
        self.shared.allocator
    }

    /// Lifetime counters (compilations, cache hits, rejected artifacts).
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            compiled: self.shared.compiled.load(Ordering::Relaxed),
            from_cache: self.shared.from_cache.load(Ordering::Relaxed),
            rejected_artifacts: self.shared.rejected.load(Ordering::Relaxed),
        }
    }

    /// Loads a component: checks its contract version (before compiling), compiles it or
    /// takes it from the cache, links it, and calls `info()` once under the call limits.
    pub fn load(&self, bytes: &[u8], source: Source) -> Result<Arc<Plugin>, PluginError> {
        let label = source.to_string();
        if bytes.len() > self.shared.max_component_size {
            return Err(PluginError::Invalid {
                component: label,
                reason: format!(
                    "it is {} bytes, more than the {}-byte limit",
                    bytes.len(),
                    self.shared.max_component_size
                ),
            });
        }
        let manifest = contract::inspect(bytes, &label)?;
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        let (component, origin) = self.component(bytes, &sha256, &label)?;
        let shared = &self.shared;
        let link_err = |e: wasmtime::Error| PluginError::Invalid {
            component: label.clone(),
            reason: format!("it cannot be linked (imports beyond WASI 0.2, or wrong exports): {e}"),
        };
        // Components that import nothing get an empty linker and a store with no WASI state.
        let instance = if manifest.imports.is_empty() {
            let pre = shared
                .pure_linker
                .instantiate_pre(&component)
                .map_err(link_err)?;
            Instance::Pure(ProviderComponentPre::new(pre).map_err(link_err)?)
        } else {
            let pre = shared
                .wasi_linker
                .instantiate_pre(&component)
                .map_err(link_err)?;
            Instance::Wasi(ProviderComponentPre::new(pre).map_err(link_err)?)
        };
        let info = with_instance!(&instance, shared, &label, "info", |b, store| {
            b.tessera_provider_provider().call_info(store)
        })?;
        validate_id(&info.id).map_err(|reason| PluginError::Invalid {
            component: label.clone(),
            reason,
        })?;
        tracing::info!(
            provider = %info.id, source = %label, contract = %manifest.contract, ?origin,
            imports = manifest.imports.len(), "provider component loaded"
        );
        Ok(Arc::new(Plugin {
            info,
            contract: manifest.contract,
            imports: manifest.imports,
            sha256,
            origin,
            source,
            instance,
            shared: Arc::clone(&self.shared),
        }))
    }

    fn component(
        &self,
        bytes: &[u8],
        sha256: &[u8; 32],
        label: &str,
    ) -> Result<(Component, LoadOrigin), PluginError> {
        let shared = &self.shared;
        if let Some(cache) = &shared.cache {
            match cache.load(&shared.engine, sha256) {
                Lookup::Hit(component) => {
                    shared.from_cache.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, LoadOrigin::Cache));
                }
                Lookup::Rejected => {
                    shared.rejected.fetch_add(1, Ordering::Relaxed);
                }
                Lookup::Miss => {}
            }
        }
        let component =
            Component::new(&shared.engine, bytes).map_err(|e| PluginError::Compile {
                component: label.to_owned(),
                detail: e.to_string(),
            })?;
        shared.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &shared.cache {
            cache.store(sha256, &component);
        }
        Ok((component, LoadOrigin::Compiled))
    }
}

fn validate_id(id: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err("its info().id is not 1-64 characters of [a-z0-9-]".to_owned())
    }
}

enum Instance {
    Pure(ProviderComponentPre<PureState>),
    Wasi(ProviderComponentPre<WasiState>),
}

/// One call: fresh store with limits and deadline, fresh instance, the call, the output cap.
fn run<T: StoreState, R: OutputSize>(
    shared: &Shared,
    provider: &str,
    call: &'static str,
    pre: &ProviderComponentPre<T>,
    data: T,
    f: impl FnOnce(&ProviderComponent, &mut Store<T>) -> wasmtime::Result<R>,
) -> Result<R, PluginError> {
    let limits = &shared.limits;
    let mut store = Store::new(&shared.engine, data);
    store.limiter(|state| state.limiter_mut());
    store.set_epoch_deadline(limits.deadline_ticks);
    store.epoch_deadline_trap();
    let result = match pre.instantiate(&mut store) {
        Ok(bindings) => f(&bindings, &mut store).map_err(|e| (e, false)),
        Err(e) => Err((e, true)),
    };
    let memory_limit_hit = store.data().limiter_ref().memory_limit_hit();
    store.into_data().finish(provider, call);
    let provider = provider.to_owned();
    match result {
        Ok(value) => {
            let size = value.output_size();
            if size > limits.max_output {
                return Err(PluginError::OutputTooLarge {
                    provider,
                    call,
                    size,
                    limit: limits.max_output,
                });
            }
            Ok(value)
        }
        Err(_) if memory_limit_hit => Err(PluginError::MemoryLimit {
            provider,
            call,
            limit_bytes: limits.memory_limit,
        }),
        Err((err, instantiating)) => Err(match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::DeadlineExceeded {
                provider,
                call,
                deadline: limits.deadline,
            },
            Some(Trap::StackOverflow) => PluginError::Trap {
                provider,
                call,
                detail: "stack overflow (too deep recursion)".to_owned(),
            },
            Some(trap) => PluginError::Trap {
                provider,
                call,
                detail: trap.to_string(),
            },
            None if instantiating || err.downcast_ref::<PoolConcurrencyLimitError>().is_some() => {
                PluginError::Instantiate {
                    provider,
                    call,
                    detail: err.to_string(),
                }
            }
            // Not a trap: e.g. invalid UTF-8 or out-of-bounds pointers while lifting results.
            None => PluginError::Trap {
                provider,
                call,
                detail: err.to_string(),
            },
        }),
    }
}

/// A loaded provider component. Each call runs on a fresh instance; a failed call leaves the
/// plugin usable.
pub struct Plugin {
    info: ProviderInfo,
    contract: ContractVersion,
    imports: Vec<String>,
    sha256: [u8; 32],
    origin: LoadOrigin,
    source: Source,
    instance: Instance,
    shared: Arc<Shared>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.info.id)
            .field("contract", &self.contract)
            .field("source", &self.source)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl From<AuthKind> for wire::AuthKind {
    fn from(kind: AuthKind) -> Self {
        match kind {
            AuthKind::Oauth2 => Self::Oauth2,
            AuthKind::Oauth1 => Self::Oauth1,
            AuthKind::ManagedSecret => Self::ManagedSecret,
        }
    }
}

impl Plugin {
    /// The manifest `info()` returned at load time.
    pub fn info(&self) -> &ProviderInfo {
        &self.info
    }

    /// The provider id (`info().id`).
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The contract version the component exports.
    pub fn contract_version(&self) -> ContractVersion {
        self.contract
    }

    /// The component's top-level imports (empty for built-ins).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// SHA-256 of the component's bytes.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// Whether this load compiled the component or took it from the cache.
    pub fn origin(&self) -> LoadOrigin {
        self.origin
    }

    /// Where the component came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// This provider as the catalogue shows it to clients (CLI listing and HTTP API).
    pub fn summary(&self) -> ProviderSummary {
        let i = &self.info;
        ProviderSummary {
            id: i.id.clone(),
            display_name: i.display_name.clone(),
            auth_kind: i.auth_kind.into(),
            version: i.version.clone(),
            contract_version: self.contract.to_string(),
            categories: i.categories.clone(),
            source: self.source.to_string(),
        }
    }

    /// Starts a connect flow.
    pub fn begin_connect(&self, ctx: &Context) -> Result<Step, PluginError> {
        with_instance!(
            &self.instance,
            &self.shared,
            &self.info.id,
            "begin-connect",
            |b, store| { b.tessera_provider_provider().call_begin_connect(store, ctx) }
        )
    }

    /// Continues a connect or refresh flow.
    pub fn resume(&self, ctx: &Context, state: &[u8], input: &Input) -> Result<Step, PluginError> {
        with_instance!(
            &self.instance,
            &self.shared,
            &self.info.id,
            "resume",
            |b, store| {
                b.tessera_provider_provider()
                    .call_resume(store, ctx, state, input)
            }
        )
    }

    /// Starts renewing a credential.
    pub fn refresh(&self, ctx: &Context, credential: &Credential) -> Result<Step, PluginError> {
        with_instance!(
            &self.instance,
            &self.shared,
            &self.info.id,
            "refresh",
            |b, store| {
                b.tessera_provider_provider()
                    .call_refresh(store, ctx, credential)
            }
        )
    }

    /// Adds authentication to `request`. The outer `Result` is the sandbox's verdict, the
    /// inner one the provider's.
    pub fn sign(
        &self,
        request: &HttpRequest,
        credential: &Credential,
        now: u64,
    ) -> Result<Result<HttpRequest, ProviderError>, PluginError> {
        with_instance!(
            &self.instance,
            &self.shared,
            &self.info.id,
            "sign",
            |b, store| {
                b.tessera_provider_provider()
                    .call_sign(store, request, credential, now)
            }
        )
    }

    /// Says what a provider response means.
    pub fn classify(
        &self,
        response: &HttpResponse,
        now: u64,
    ) -> Result<Classification, PluginError> {
        with_instance!(
            &self.instance,
            &self.shared,
            &self.info.id,
            "classify",
            |b, store| {
                b.tessera_provider_provider()
                    .call_classify(store, response, now)
            }
        )
    }

    /// Describes the upstream revocation request, if the provider has one.
    pub fn revoke(
        &self,
        ctx: &Context,
        credential: &Credential,
    ) -> Result<Option<HttpRequest>, PluginError> {
        with_instance!(
            &self.instance,
            &self.shared,
            &self.info.id,
            "revoke",
            |b, store| {
                b.tessera_provider_provider()
                    .call_revoke(store, ctx, credential)
            }
        )
    }

    /// Times the phases of one `sign` call (store creation, instantiation, the call itself)
    /// for the `plugin_call` bench. Not part of the API.
    #[doc(hidden)]
    pub fn sign_phase_times(
        &self,
        request: &HttpRequest,
        credential: &Credential,
    ) -> Result<[Duration; 3], PluginError> {
        let Instance::Pure(pre) = &self.instance else {
            return Err(PluginError::Internal {
                provider: self.info.id.clone(),
                call: "sign",
                detail: "phase timing is only implemented for components without imports".into(),
            });
        };
        let fail = |e: wasmtime::Error| PluginError::Trap {
            provider: self.info.id.clone(),
            call: "sign",
            detail: e.to_string(),
        };
        let limits = &self.shared.limits;
        let t0 = std::time::Instant::now();
        let mut store = Store::new(&self.shared.engine, PureState::new(limits.memory_limit));
        store.limiter(|state| state.limiter_mut());
        store.set_epoch_deadline(limits.deadline_ticks);
        store.epoch_deadline_trap();
        let t1 = std::time::Instant::now();
        let bindings = pre.instantiate(&mut store).map_err(fail)?;
        let t2 = std::time::Instant::now();
        let signed = bindings
            .tessera_provider_provider()
            .call_sign(&mut store, request, credential, 0)
            .map_err(fail)?;
        let t3 = std::time::Instant::now();
        drop((signed, store));
        Ok([t1 - t0, t2 - t1, t3 - t2])
    }

    /// Runs a sync call on the blocking pool under the outer timeout. The epoch deadline is
    /// what stops the guest; the timeout only stops the caller from waiting longer.
    async fn run_async<R, F>(self: &Arc<Self>, call: &'static str, f: F) -> Result<R, PluginError>
    where
        R: Send + 'static,
        F: FnOnce(&Plugin) -> Result<R, PluginError> + Send + 'static,
    {
        let this = Arc::clone(self);
        let started = std::time::Instant::now();
        let task = tokio::task::spawn_blocking(move || f(&this));
        let timeout = self.shared.limits.timeout;
        let result = match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(PluginError::Internal {
                provider: self.info.id.clone(),
                call,
                detail: format!("the call's task failed: {join}"),
            }),
            Err(_) => Err(PluginError::Timeout {
                provider: self.info.id.clone(),
                call,
                timeout,
            }),
        };
        if let Some(observer) = &self.shared.config.observer {
            (observer.0)(&self.info.id, call, started.elapsed(), result.is_ok());
        }
        result
    }

    /// [`Plugin::begin_connect`] on the blocking pool, under the outer timeout.
    pub async fn begin_connect_async(self: &Arc<Self>, ctx: Context) -> Result<Step, PluginError> {
        self.run_async("begin-connect", move |p| p.begin_connect(&ctx))
            .await
    }

    /// [`Plugin::resume`] on the blocking pool, under the outer timeout.
    pub async fn resume_async(
        self: &Arc<Self>,
        ctx: Context,
        state: Vec<u8>,
        input: Input,
    ) -> Result<Step, PluginError> {
        self.run_async("resume", move |p| p.resume(&ctx, &state, &input))
            .await
    }

    /// [`Plugin::refresh`] on the blocking pool, under the outer timeout.
    pub async fn refresh_async(
        self: &Arc<Self>,
        ctx: Context,
        credential: Credential,
    ) -> Result<Step, PluginError> {
        self.run_async("refresh", move |p| p.refresh(&ctx, &credential))
            .await
    }

    /// [`Plugin::sign`], the call on every request's path. A built-in component's `sign`
    /// runs right here on the caller's thread: it takes microseconds, and moving it to the
    /// blocking pool and back costs more than the call. Any other component's runs on the
    /// blocking pool under the outer timeout, so that one that spins until its deadline
    /// cannot hold up the server's async workers meanwhile.
    pub async fn sign_async(
        self: &Arc<Self>,
        request: HttpRequest,
        credential: Credential,
        now: u64,
    ) -> Result<Result<HttpRequest, ProviderError>, PluginError> {
        if matches!(self.source, Source::BuiltIn(_)) {
            let started = std::time::Instant::now();
            let result = self.sign(&request, &credential, now);
            if let Some(observer) = &self.shared.config.observer {
                (observer.0)(&self.info.id, "sign", started.elapsed(), result.is_ok());
            }
            return result;
        }
        self.run_async("sign", move |p| p.sign(&request, &credential, now))
            .await
    }

    /// [`Plugin::classify`] on the blocking pool, under the outer timeout.
    pub async fn classify_async(
        self: &Arc<Self>,
        response: HttpResponse,
        now: u64,
    ) -> Result<Classification, PluginError> {
        self.run_async("classify", move |p| p.classify(&response, now))
            .await
    }

    /// [`Plugin::revoke`] on the blocking pool, under the outer timeout.
    pub async fn revoke_async(
        self: &Arc<Self>,
        ctx: Context,
        credential: Credential,
    ) -> Result<Option<HttpRequest>, PluginError> {
        self.run_async("revoke", move |p| p.revoke(&ctx, &credential))
            .await
    }
}
