//! The set of providers the host serves: built-ins plus an operator directory of `*.wasm`.
//!
//! Owns the id → plugin map and the background watcher that picks up added, replaced or
//! removed files in the provider directory. It must never let a broken or unsupported
//! replacement displace a working provider, never let a directory component take a built-in's
//! id unless the operator allowed it, and never block lookups on a load in progress.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::{Plugin, PluginError, Runtime, Source};

/// Where providers come from and how the directory is watched.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The operator's provider directory (`*.wasm`), if any.
    pub dir: Option<PathBuf>,
    /// Whether a directory component may replace a built-in with the same id.
    pub allow_override_builtins: bool,
    /// How often [`Registry::watch`] polls the directory; `None` disables watching.
    pub poll_interval: Option<Duration>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            dir: None,
            allow_override_builtins: false,
            poll_interval: Some(Duration::from_secs(2)),
        }
    }
}

/// What the initial load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Wall time of loading every component (in parallel).
    pub elapsed: Duration,
    /// Providers loaded.
    pub loaded: usize,
    /// Of those, how many came from the precompiled cache.
    pub from_cache: usize,
    /// Directory components that failed to load, with the error message.
    pub failed: Vec<(PathBuf, String)>,
}

/// One parallel load: its source, the bytes' SHA-256, and the outcome.
type LoadResult = (Source, [u8; 32], Result<Arc<Plugin>, PluginError>);

type Snapshot = Arc<BTreeMap<String, Arc<Plugin>>>;

/// The providers being served. Lookups take a read lock and clone an `Arc`.
pub struct Registry {
    shared: Arc<Shared>,
    report: LoadReport,
}

/// The running directory watcher; dropping it stops the thread.
#[must_use = "the watcher stops when this guard is dropped"]
pub struct Watcher {
    running: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            // Dropping the sender wakes the thread at once.
            drop(stop);
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.ids())
            .finish_non_exhaustive()
    }
}

/// File identity as cheap to check as possible: changes of either trigger a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileSig {
    modified: Option<SystemTime>,
    len: u64,
}

struct DirEntry {
    sig: FileSig,
    sha256: [u8; 32],
    /// The working plugin for this file, if any version of it ever loaded.
    plugin: Option<Arc<Plugin>>,
}

struct Shared {
    runtime: Runtime,
    config: RegistryConfig,
    builtins: BTreeMap<String, Arc<Plugin>>,
    dir: Mutex<BTreeMap<PathBuf, DirEntry>>,
    current: RwLock<Snapshot>,
}

impl Registry {
    /// Loads the built-ins (`(name, bytes)`; a failure is an error) and the directory's
    /// components (a failure is logged and reported), all in parallel, then starts the
    /// watcher if configured.
    pub fn new(
        runtime: Runtime,
        builtins: Vec<(String, Vec<u8>)>,
        config: RegistryConfig,
    ) -> Result<Self, PluginError> {
        let started = Instant::now();
        let files = match &config.dir {
            Some(dir) => list_wasm(dir)?,
            None => Vec::new(),
        };
        let mut jobs: Vec<(Source, Vec<u8>)> = builtins
            .into_iter()
            .map(|(name, bytes)| (Source::BuiltIn(name), bytes))
            .collect();
        let mut failed = Vec::new();
        let mut sigs = HashMap::new();
        for path in files {
            match read_file(&path) {
                Ok((sig, bytes)) => {
                    sigs.insert(path.clone(), sig);
                    jobs.push((Source::File(path), bytes));
                }
                Err(e) => failed.push((path, e.to_string())),
            }
        }
        let results = load_parallel(&runtime, jobs);
        let mut builtin_map = BTreeMap::new();
        let mut dir_map = BTreeMap::new();
        for (source, sha256, result) in results {
            match (source, result) {
                (Source::File(path), result) => {
                    let Some(&sig) = sigs.get(&path) else {
                        continue;
                    };
                    let plugin = match result {
                        Ok(plugin) => Some(plugin),
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "provider component not loaded");
                            failed.push((path.clone(), e.to_string()));
                            None
                        }
                    };
                    dir_map.insert(
                        path,
                        DirEntry {
                            sig,
                            sha256,
                            plugin,
                        },
                    );
                }
                (_, Ok(plugin)) => {
                    builtin_map.insert(plugin.id().to_owned(), plugin);
                }
                (_, Err(e)) => return Err(e),
            }
        }
        let shared = Arc::new(Shared {
            runtime,
            config,
            builtins: builtin_map,
            dir: Mutex::new(dir_map),
            current: RwLock::new(Arc::new(BTreeMap::new())),
        });
        shared.publish();
        let snapshot = shared.snapshot();
        let report = LoadReport {
            elapsed: started.elapsed(),
            loaded: snapshot.len(),
            from_cache: snapshot
                .values()
                .filter(|p| p.origin() == super::LoadOrigin::Cache)
                .count(),
            failed,
        };
        tracing::info!(
            providers = report.loaded,
            from_cache = report.from_cache,
            failed = report.failed.len(),
            elapsed_ms = report.elapsed.as_millis(),
            "provider registry loaded"
        );
        Ok(Self { shared, report })
    }

    /// Starts polling the provider directory every `poll_interval`: added, replaced and
    /// removed `*.wasm` files take effect without a restart. Inert without a directory or
    /// interval. The thread stops when the returned guard is dropped.
    pub fn watch(&self) -> Result<Watcher, PluginError> {
        let running = match (&self.shared.config.dir, self.shared.config.poll_interval) {
            (Some(_), Some(interval)) => Some(start_watcher(Arc::clone(&self.shared), interval)?),
            _ => None,
        };
        Ok(Watcher { running })
    }

    /// The provider with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Plugin>> {
        self.shared.snapshot().get(id).cloned()
    }

    /// Every provider, ordered by id.
    pub fn list(&self) -> Vec<Arc<Plugin>> {
        self.shared.snapshot().values().cloned().collect()
    }

    /// The provider catalogue, ordered by id, as clients see it.
    pub fn catalogue(&self) -> Vec<tessera_proto::providers::ProviderSummary> {
        self.shared
            .snapshot()
            .values()
            .map(|p| p.summary())
            .collect()
    }

    /// Every provider id, in order.
    pub fn ids(&self) -> Vec<String> {
        self.shared.snapshot().keys().cloned().collect()
    }

    /// What the initial load did.
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// Rescans the directory now (the watcher does this every poll interval).
    pub fn rescan(&self) {
        self.shared.rescan();
    }
}

impl Shared {
    fn snapshot(&self) -> Snapshot {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Rebuilds the id map from built-ins and working directory plugins, and swaps it in.
    fn publish(&self) {
        let mut map = self.builtins.clone();
        let dir = self.dir.lock().unwrap_or_else(PoisonError::into_inner);
        let mut from_dir: HashMap<&str, &Path> = HashMap::new();
        for (path, entry) in dir.iter() {
            let Some(plugin) = &entry.plugin else {
                continue;
            };
            let id = plugin.id();
            if let Some(first) = from_dir.get(id) {
                tracing::warn!(provider = id, path = %path.display(), first = %first.display(),
                    "two directory components claim the same provider id; keeping the first");
                continue;
            }
            if self.builtins.contains_key(id) && !self.config.allow_override_builtins {
                tracing::warn!(provider = id, path = %path.display(),
                    "directory component has a built-in's id and overriding built-ins is not allowed; ignoring it");
                continue;
            }
            from_dir.insert(id, path);
            map.insert(id.to_owned(), Arc::clone(plugin));
        }
        drop(dir);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
    }

    fn rescan(&self) {
        let Some(dir_path) = &self.config.dir else {
            return;
        };
        let files = match list_wasm(dir_path) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "cannot scan the provider directory");
                return;
            }
        };
        let mut changed = false;
        // Loads happen without holding the lock, so lookups and publishing never wait on them.
        let known: HashMap<PathBuf, (FileSig, [u8; 32])> = {
            let mut dir = self.dir.lock().unwrap_or_else(PoisonError::into_inner);
            let before = dir.len();
            dir.retain(|path, _| files.contains(path));
            if dir.len() != before {
                tracing::info!("provider component(s) removed from the directory");
                changed = true;
            }
            dir.iter()
                .map(|(p, e)| (p.clone(), (e.sig, e.sha256)))
                .collect()
        };
        for path in files {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let sig = FileSig {
                modified: meta.modified().ok(),
                len: meta.len(),
            };
            if known.get(&path).is_some_and(|(old, _)| *old == sig) {
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read provider component");
                    continue;
                }
            };
            let sha256: [u8; 32] = Sha256::digest(&bytes).into();
            let mut dir = self.dir.lock().unwrap_or_else(PoisonError::into_inner);
            if known.get(&path).is_some_and(|(_, old)| *old == sha256) {
                // Touched but identical: remember the new signature, keep the plugin.
                if let Some(entry) = dir.get_mut(&path) {
                    entry.sig = sig;
                }
                continue;
            }
            drop(dir);
            let result = self.runtime.load(&bytes, Source::File(path.clone()));
            dir = self.dir.lock().unwrap_or_else(PoisonError::into_inner);
            match result {
                Ok(plugin) => {
                    tracing::info!(provider = plugin.id(), path = %path.display(), "provider component (re)loaded");
                    dir.insert(
                        path,
                        DirEntry {
                            sig,
                            sha256,
                            plugin: Some(plugin),
                        },
                    );
                    changed = true;
                }
                Err(e) => {
                    let previous = dir.get(&path).and_then(|entry| entry.plugin.clone());
                    if previous.is_some() {
                        tracing::error!(path = %path.display(), error = %e,
                            "replacement provider component failed to load; still serving the previous version");
                    } else {
                        tracing::error!(path = %path.display(), error = %e, "provider component not loaded");
                    }
                    // Remember the broken bytes so they are not retried every poll.
                    dir.insert(
                        path,
                        DirEntry {
                            sig,
                            sha256,
                            plugin: previous,
                        },
                    );
                }
            }
        }
        if changed {
            self.publish();
        }
    }
}

fn start_watcher(
    shared: Arc<Shared>,
    interval: Duration,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>), PluginError> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("tessera-provider-watch".to_owned())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                shared.rescan();
            }
        })
        .map_err(|e| PluginError::Io {
            path: "provider directory watcher".to_owned(),
            source: e,
        })?;
    Ok((stop, thread))
}

fn list_wasm(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let io = |source| PluginError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_file(path: &Path) -> Result<(FileSig, Vec<u8>), PluginError> {
    let io = |source| PluginError::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let bytes = std::fs::read(path).map_err(io)?;
    Ok((
        FileSig {
            modified: meta.modified().ok(),
            len: meta.len(),
        },
        bytes,
    ))
}

/// Loads every job on up to `available_parallelism` threads (Cranelift also parallelises
/// within one compilation).
fn load_parallel(runtime: &Runtime, jobs: Vec<(Source, Vec<u8>)>) -> Vec<LoadResult> {
    let workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .min(jobs.len().max(1));
    let queue = Mutex::new(jobs.into_iter());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let job = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
                    let Some((source, bytes)) = job else { break };
                    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
                    let result = runtime.load(&bytes, source.clone());
                    results
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((source, sha256, result));
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(PoisonError::into_inner)
}
