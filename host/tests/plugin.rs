//! The host crate's one integration-test binary (link time: add tests here, not new files).
//!
//! Plugin runtime tests run real components on real wasmtime. Components come from
//! `target/test-components/` (hostile corpus) and `target/providers/` (built-ins); a missing
//! file fails the test with "build components first: cargo xtask components".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tessera_host::plugin::types::{Credential, HttpRequest, HttpResponse};
use tessera_host::plugin::{
    AllocatorKind, LoadOrigin, Plugin, PluginError, PoolConfig, Registry, RegistryConfig, Runtime,
    RuntimeConfig, Source,
};

const DEADLINE: Duration = Duration::from_millis(300);

fn target_file(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "build components first: cargo xtask components ({}: {e})",
            path.display()
        )
    })
}

fn hostile_bytes() -> Vec<u8> {
    target_file("test-components/hostile.wasm")
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        deadline: DEADLINE,
        timeout: DEADLINE + Duration::from_millis(200),
        ..RuntimeConfig::default()
    }
}

/// One runtime and two independent loads of the hostile component, shared by the sandbox
/// tests (compiling once keeps the suite fast).
fn hostile() -> &'static (Runtime, Arc<Plugin>, Arc<Plugin>) {
    static SHARED: OnceLock<(Runtime, Arc<Plugin>, Arc<Plugin>)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = Runtime::new(config()).unwrap();
        let bytes = hostile_bytes();
        let a = runtime
            .load(&bytes, Source::Bytes("hostile-a".into()))
            .unwrap();
        let b = runtime
            .load(&bytes, Source::Bytes("hostile-b".into()))
            .unwrap();
        (runtime, a, b)
    })
}

fn request(path: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url: format!("https://hostile.test{path}"),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

fn credential(name: &str, value: &str) -> Credential {
    Credential {
        secrets: vec![(name.into(), value.into())],
        metadata: Vec::new(),
        scopes: Vec::new(),
        expires_at: None,
    }
}

fn sign(plugin: &Plugin, path: &str) -> Result<HttpRequest, PluginError> {
    plugin
        .sign(
            &request(path),
            &credential("access_token", "tok-123"),
            1_700_000_000,
        )
        .map(|r| r.unwrap())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> &'a str {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map_or_else(|| panic!("no {name} header"), |(_, v)| v.as_str())
}

fn all_output(req: &HttpRequest) -> String {
    req.headers
        .iter()
        .flat_map(|(k, v)| [k.as_str(), ": ", v.as_str(), "\n"])
        .collect()
}

fn assert_ok_call_works(plugin: &Plugin) {
    let signed = sign(plugin, "/ok").unwrap();
    assert_eq!(header(&signed, "authorization"), "Bearer tok-123");
}

// ---------------------------------------------------------------- hostile behaviours

#[test]
fn endless_loop_is_stopped_at_its_deadline_and_names_the_provider() {
    let (_, plugin, _) = hostile();
    let started = Instant::now();
    let err = sign(plugin, "/loop").unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, PluginError::DeadlineExceeded { .. }), "{err}");
    assert!(err.to_string().contains("`hostile`"), "{err}");
    // The error kind proves the epoch deadline stopped it (not the wall-clock timeout or a
    // trap); how soon after the deadline it stops is measured by `cargo xtask bench`
    // (`plugin_call`), not asserted here, where a loaded machine would make it flaky.
    assert!(
        elapsed >= DEADLINE.saturating_sub(Duration::from_millis(10)),
        "stopped early, after {elapsed:?}"
    );
    assert_ok_call_works(plugin);
}

#[test]
fn unbounded_memory_growth_hits_the_memory_limit() {
    let (_, plugin, _) = hostile();
    let err = sign(plugin, "/grow").unwrap_err();
    assert!(
        matches!(err, PluginError::MemoryLimit { limit_bytes, .. } if limit_bytes == 64 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("`hostile`"), "{err}");
    assert_ok_call_works(plugin);
}

#[test]
fn deep_recursion_traps_with_a_stack_overflow() {
    let (_, plugin, _) = hostile();
    let err = sign(plugin, "/recurse").unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(
        err.to_string().contains("stack overflow") && err.to_string().contains("`hostile`"),
        "{err}"
    );
    assert_ok_call_works(plugin);
}

#[test]
fn huge_output_is_refused_after_lifting() {
    let (_, plugin, _) = hostile();
    let err = sign(plugin, "/huge").unwrap_err();
    assert!(
        matches!(err, PluginError::OutputTooLarge { size, .. } if size >= 16 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("`hostile`"), "{err}");
}

#[test]
fn panic_fails_only_its_call_and_a_fresh_call_on_the_same_plugin_works() {
    let (_, plugin, _) = hostile();
    let err = sign(plugin, "/panic").unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("provider `hostile` trapped in `sign`"),
        "{err}"
    );
    assert_ok_call_works(plugin);
}

#[test]
fn guest_cannot_read_host_files() {
    let (_, plugin, _) = hostile();
    let signed = sign(plugin, "/file").unwrap();
    assert!(
        header(&signed, "x-file").starts_with("err:"),
        "{}",
        header(&signed, "x-file")
    );
    assert!(
        header(&signed, "x-dir").starts_with("err:"),
        "{}",
        header(&signed, "x-dir")
    );
    assert!(!all_output(&signed).contains("root:"));
}

#[test]
fn guest_sees_no_environment_variables_or_arguments() {
    let (_, plugin, _) = hostile();
    let signed = sign(plugin, "/env").unwrap();
    for name in ["HOME", "PATH", "USER"] {
        assert!(header(&signed, &format!("x-env-{name}")).starts_with("err:"));
    }
    assert_eq!(header(&signed, "x-env-all"), "");
    assert_eq!(header(&signed, "x-args"), "");
    let out = all_output(&signed);
    for name in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(name) {
            assert!(
                value.is_empty() || !out.contains(&value),
                "host ${name} leaked into the guest"
            );
        }
    }
}

#[test]
fn guest_cannot_open_sockets_or_resolve_names() {
    let (_, plugin, _) = hostile();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let signed = sign(plugin, &format!("/socket?port={port}")).unwrap();
    for name in ["x-tcp", "x-udp", "x-dns"] {
        assert!(
            header(&signed, name).starts_with("err:"),
            "{name}: {}",
            header(&signed, name)
        );
    }
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the guest reached a host socket"
    );
}

#[test]
fn guest_clock_is_frozen_at_the_unix_epoch() {
    let (_, plugin, _) = hostile();
    let signed = sign(plugin, "/clock").unwrap();
    assert_eq!(header(&signed, "x-clock"), "ok:0.000000000");
    assert_eq!(header(&signed, "x-elapsed-nanos"), "0");
}

#[test]
fn ok_calls_on_another_plugin_keep_succeeding_while_hostile_calls_run() {
    let (_, hostile_plugin, other) = hostile();
    let attackers: Vec<_> = ["/loop", "/grow", "/recurse", "/panic", "/huge", "/loop"]
        .into_iter()
        .map(|path| {
            let plugin = Arc::clone(hostile_plugin);
            std::thread::spawn(move || sign(&plugin, path).is_err())
        })
        .collect();
    for _ in 0..50 {
        assert_ok_call_works(other);
    }
    for attacker in attackers {
        assert!(
            attacker.join().expect("no host panic"),
            "a hostile call succeeded"
        );
    }
    assert_ok_call_works(hostile_plugin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_apply_the_outer_timeout() {
    // The epoch deadline (2 s) is longer than the outer timeout (200 ms): the caller gets
    // `Timeout` without waiting for the guest to be stopped.
    let runtime = Runtime::new(RuntimeConfig {
        deadline: Duration::from_secs(2),
        timeout: Duration::from_millis(200),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let plugin = runtime
        .load(&hostile_bytes(), Source::Bytes("hostile".into()))
        .unwrap();
    let started = Instant::now();
    let err = plugin
        .sign_async(request("/loop"), credential("access_token", "t"), 0)
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let signed = plugin
        .sign_async(request("/ok"), credential("access_token", "t"), 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(header(&signed, "authorization"), "Bearer t");
}

#[test]
fn component_whose_info_never_returns_fails_to_load_at_the_deadline() {
    let runtime = Runtime::new(config()).unwrap();
    let err = runtime
        .load(
            &target_file("test-components/hang_info.wasm"),
            Source::Bytes("hang_info".into()),
        )
        .unwrap_err();
    assert!(
        matches!(err, PluginError::DeadlineExceeded { call: "info", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("hang_info"), "{err}");
}

#[test]
fn hostile_component_imports_are_listed() {
    let (_, plugin, _) = hostile();
    assert!(
        plugin.imports().iter().any(|i| i.starts_with("wasi:")),
        "{:?}",
        plugin.imports()
    );
    let listed = tessera_host::plugin::component_imports(&hostile_bytes(), "hostile").unwrap();
    assert_eq!(listed, plugin.imports());
}

// ---------------------------------------------------------------- contract version

#[test]
fn future_contract_is_refused_before_compilation_listing_supported_versions() {
    let runtime = Runtime::new(config()).unwrap();
    let err = runtime
        .load(
            &target_file("test-components/future_contract.wasm"),
            Source::Bytes("future.wasm".into()),
        )
        .unwrap_err();
    let PluginError::UnsupportedContract { found, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(found, "9.0.0");
    let message = err.to_string();
    assert!(
        message.contains("supported: 0.1.x") && message.contains("future.wasm"),
        "{message}"
    );
    assert_eq!(
        runtime.stats().compiled,
        0,
        "the refused component was compiled"
    );
}

#[test]
fn tampered_contract_section_is_refused_before_compilation() {
    let mut bytes = hostile_bytes();
    let name = b"tessera:contract-version";
    let at = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("section present")
        + name.len();
    assert_eq!(&bytes[at..at + 5], b"0.1.0");
    bytes[at..at + 5].copy_from_slice(b"0.7.0");
    let runtime = Runtime::new(config()).unwrap();
    let err = runtime
        .load(&bytes, Source::Bytes("tampered".into()))
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::UnsupportedContract { found, .. } if found == "0.7.0"),
        "{err}"
    );
    assert!(err.to_string().contains("0.1.x"), "{err}");
    assert_eq!(runtime.stats().compiled, 0);
}

// ---------------------------------------------------------------- cache and allocator

fn artifacts(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

fn cached_runtime(dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_owned()),
        ..config()
    })
    .unwrap()
}

#[test]
fn second_load_of_the_same_bytes_comes_from_the_cache() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bytes = hostile_bytes();
    let first = cached_runtime(dir.path())
        .load(&bytes, Source::Bytes("h".into()))
        .unwrap();
    assert_eq!(first.origin(), LoadOrigin::Compiled);
    let key_mode = std::fs::metadata(dir.path().join("artifact.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    let runtime = cached_runtime(dir.path());
    let second = runtime.load(&bytes, Source::Bytes("h".into())).unwrap();
    assert_eq!(second.origin(), LoadOrigin::Cache);
    assert_eq!(
        (runtime.stats().compiled, runtime.stats().from_cache),
        (0, 1)
    );
    assert_ok_call_works(&second);
}

#[test]
fn tampered_artifact_is_deleted_and_recompiled_never_deserialized() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = hostile_bytes();
    cached_runtime(dir.path())
        .load(&bytes, Source::Bytes("h".into()))
        .unwrap();
    let [artifact] = artifacts(dir.path()).try_into().unwrap();
    let mut content = std::fs::read(&artifact).unwrap();
    let middle = content.len() / 2;
    content[middle] ^= 0x01;
    std::fs::write(&artifact, &content).unwrap();

    let runtime = cached_runtime(dir.path());
    let plugin = runtime.load(&bytes, Source::Bytes("h".into())).unwrap();
    assert_eq!(plugin.origin(), LoadOrigin::Compiled);
    assert_eq!(runtime.stats().rejected_artifacts, 1);
    assert_ok_call_works(&plugin);
    // The recompiled artifact replaced the tampered one and authenticates again.
    assert_eq!(
        cached_runtime(dir.path())
            .load(&bytes, Source::Bytes("h".into()))
            .unwrap()
            .origin(),
        LoadOrigin::Cache
    );

    // An artifact written with another key (another host) is refused too.
    std::fs::write(dir.path().join("artifact.key"), [7u8; 32]).unwrap();
    let runtime = cached_runtime(dir.path());
    assert_eq!(
        runtime
            .load(&bytes, Source::Bytes("h".into()))
            .unwrap()
            .origin(),
        LoadOrigin::Compiled
    );
    assert_eq!(runtime.stats().rejected_artifacts, 1);
}

#[test]
fn pooling_allocator_is_used_by_default() {
    assert_eq!(
        Runtime::new(config()).unwrap().allocator(),
        AllocatorKind::Pooling
    );
}

#[test]
fn pooling_probe_falls_back_to_on_demand_when_the_pool_cannot_be_reserved() {
    // 50 million 4 GiB slots: far more address space than any machine has.
    let runtime = Runtime::new(RuntimeConfig {
        pool: PoolConfig {
            instances: 50_000_000,
            ..PoolConfig::default()
        },
        ..config()
    })
    .unwrap();
    assert_eq!(runtime.allocator(), AllocatorKind::OnDemand);
    let plugin = runtime
        .load(&hostile_bytes(), Source::Bytes("h".into()))
        .unwrap();
    assert_ok_call_works(&plugin);
    assert!(matches!(
        sign(&plugin, "/grow").unwrap_err(),
        PluginError::MemoryLimit { .. }
    ));
}

// ---------------------------------------------------------------- registry

/// The hostile component plus a custom section: same provider, different bytes.
fn hostile_variant(tag: &str) -> Vec<u8> {
    let mut bytes = hostile_bytes();
    let name = b"tessera-test-variant";
    let payload_len = 1 + name.len() + tag.len();
    bytes.push(0);
    bytes.push(u8::try_from(payload_len).unwrap());
    bytes.push(u8::try_from(name.len()).unwrap());
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn registry(
    dir: &Path,
    builtins: Vec<(String, Vec<u8>)>,
    allow_override_builtins: bool,
) -> Registry {
    let runtime = Runtime::new(config()).unwrap();
    let config = RegistryConfig {
        dir: Some(dir.to_owned()),
        allow_override_builtins,
        poll_interval: Some(Duration::from_millis(30)),
    };
    Registry::new(runtime, builtins, config).unwrap()
}

#[test]
fn registry_picks_up_added_and_replaced_components_and_keeps_the_old_one_on_a_broken_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path(), Vec::new(), false);
    let _watcher = registry.watch().unwrap();
    assert!(registry.list().is_empty());
    let file = dir.path().join("hostile.wasm");

    let v1 = hostile_variant("v1");
    std::fs::write(&file, &v1).unwrap();
    wait_until("the added component", || registry.get("hostile").is_some());
    let sha_v1 = *registry.get("hostile").unwrap().sha256();

    // A broken replacement (a future contract, then garbage) never displaces the working one.
    std::fs::write(&file, target_file("test-components/future_contract.wasm")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&file, b"\0asm garbage").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let still = registry.get("hostile").unwrap();
    assert_eq!(*still.sha256(), sha_v1);
    assert_ok_call_works(&still);

    let v2 = hostile_variant("v2-longer");
    std::fs::write(&file, &v2).unwrap();
    wait_until("the replacement", || {
        registry
            .get("hostile")
            .is_some_and(|p| *p.sha256() != sha_v1)
    });
    assert_ok_call_works(&registry.get("hostile").unwrap());

    std::fs::remove_file(&file).unwrap();
    wait_until("the removal", || registry.get("hostile").is_none());
}

#[test]
fn directory_component_overrides_a_builtin_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.wasm"), hostile_variant("operator")).unwrap();
    let builtins = || vec![("hostile".to_owned(), hostile_bytes())];

    let refused = registry(dir.path(), builtins(), false);
    assert_eq!(
        refused.get("hostile").unwrap().source(),
        &Source::BuiltIn("hostile".into())
    );

    let allowed = registry(dir.path(), builtins(), true);
    assert_eq!(
        allowed.get("hostile").unwrap().source(),
        &Source::File(dir.path().join("mine.wasm"))
    );
}

#[test]
fn registry_loads_the_rest_when_one_component_hangs_in_info() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hang.wasm"),
        target_file("test-components/hang_info.wasm"),
    )
    .unwrap();
    std::fs::write(dir.path().join("hostile.wasm"), hostile_bytes()).unwrap();
    let registry = registry(dir.path(), Vec::new(), false);
    assert_eq!(registry.ids(), vec!["hostile".to_owned()]);
    let report = registry.load_report();
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].0.ends_with("hang.wasm") && report.failed[0].1.contains("deadline"));
}

// ---------------------------------------------------------------- built-in providers

fn builtin(id: &str) -> Arc<Plugin> {
    let runtime = Runtime::new(config()).unwrap();
    runtime
        .load(
            &target_file(&format!("providers/{id}.wasm")),
            Source::BuiltIn(id.into()),
        )
        .unwrap()
}

#[test]
fn builtin_github_round_trips_info_imports_nothing_and_signs_with_bearer() {
    let plugin = builtin("github");
    assert_eq!(plugin.info().id, "github");
    assert!(plugin.imports().is_empty(), "{:?}", plugin.imports());
    let request = HttpRequest {
        url: "https://api.github.com/user".into(),
        ..request("/")
    };
    let signed = plugin
        .sign(&request, &credential("access_token", "gho_x"), 0)
        .unwrap()
        .unwrap();
    assert_eq!(header(&signed, "authorization"), "Bearer gho_x");
}

#[test]
fn builtin_stripe_round_trips_info_imports_nothing_and_signs_with_bearer() {
    let plugin = builtin("stripe");
    assert_eq!(plugin.info().id, "stripe");
    assert!(plugin.imports().is_empty(), "{:?}", plugin.imports());
    let request = HttpRequest {
        url: "https://api.stripe.com/v1/charges".into(),
        ..request("/")
    };
    let signed = plugin
        .sign(&request, &credential("secret_key", "sk_test_x"), 0)
        .unwrap()
        .unwrap();
    assert_eq!(header(&signed, "authorization"), "Bearer sk_test_x");
}

// ---------------------------------------------------------------- guest output and the log

/// Collects every log line written while `f` runs on this thread, at debug level.
fn captured_log(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn guest_output_of_calls_without_secrets_reaches_the_host_log() {
    let (_, plugin, _) = hostile();
    let log = captured_log(|| {
        let response = HttpResponse {
            status: 418,
            headers: Vec::new(),
            body: Vec::new(),
        };
        plugin.classify(&response, 0).unwrap();
    });
    assert!(log.contains("hostile classify saw status 418"), "{log}");
    assert!(
        log.contains("hostile"),
        "the line names the provider: {log}"
    );
}

#[test]
fn a_component_printing_its_credential_never_gets_it_into_the_host_log() {
    let (_, plugin, _) = hostile();
    let secret = "tsr-canary-7d1f0c9e";
    let log = captured_log(|| {
        let signed = plugin
            .sign(
                &request("/print"),
                &credential("access_token", secret),
                1_700_000_000,
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            header(&signed, "x-printed"),
            "yes",
            "the component did run its leak attempt"
        );
    });
    assert!(!log.contains(secret), "secret reached the log: {log}");
    assert!(
        log.contains("component output withheld"),
        "the withheld output is still accounted for: {log}"
    );
}
