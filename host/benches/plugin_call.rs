//! Cost of one plugin call: fresh store + instantiate + `sign` on a built-in component (GitHub,
//! Bearer injection), next to the same Bearer injection done natively in Rust.
//!
//! Besides criterion's means it prints p50/p99 over 10,000 calls measured with `Instant`, per
//! allocator setting, and a breakdown by phase (store, instantiate, call). Needs
//! `target/providers/github.wasm` (`cargo xtask components`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tessera_host::plugin::types::{Credential, HttpRequest};
use tessera_host::plugin::{Plugin, PoolConfig, PoolingMode, Runtime, RuntimeConfig, Source};

const CALLS: usize = 10_000;

fn github_bytes() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/providers/github.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "build components first: cargo xtask components ({}: {e})",
            path.display()
        )
    })
}

fn load(config: RuntimeConfig) -> (Runtime, Arc<Plugin>) {
    let runtime = Runtime::new(config).unwrap();
    let plugin = runtime
        .load(&github_bytes(), Source::BuiltIn("github".into()))
        .unwrap();
    (runtime, plugin)
}

fn request() -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url: "https://api.github.com/user/repos?per_page=100".into(),
        headers: vec![("accept".into(), "application/vnd.github+json".into())],
        body: Vec::new(),
    }
}

fn credential() -> Credential {
    Credential {
        secrets: vec![(
            "access_token".into(),
            "gho_0123456789abcdefghijklmnopqrstuvwxyz".into(),
        )],
        metadata: Vec::new(),
        scopes: vec!["repo".into()],
        expires_at: None,
    }
}

/// What the component does, written natively: the baseline.
fn native_sign(request: &HttpRequest, credential: &Credential) -> HttpRequest {
    let token = credential
        .secrets
        .iter()
        .find(|(k, _)| k == "access_token")
        .map_or("", |(_, v)| v);
    let mut signed = request.clone();
    signed
        .headers
        .push(("authorization".into(), format!("Bearer {token}")));
    signed
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort_unstable();
    format!(
        "p50 {:>7.2?}  p99 {:>7.2?}  max {:>7.2?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    )
}

fn percentiles(label: &str, config: RuntimeConfig) {
    let (runtime, plugin) = load(config);
    let (request, credential) = (request(), credential());
    for _ in 0..1_000 {
        plugin.sign(&request, &credential, 0).unwrap().unwrap();
    }
    let samples = (0..CALLS)
        .map(|_| {
            let started = Instant::now();
            black_box(
                plugin
                    .sign(black_box(&request), black_box(&credential), 0)
                    .unwrap()
                    .unwrap(),
            );
            started.elapsed()
        })
        .collect();
    println!(
        "{label:<50} [{:?}] {}",
        runtime.allocator(),
        summary(samples)
    );
}

fn phases(config: RuntimeConfig) {
    let (_runtime, plugin) = load(config);
    let (request, credential) = (request(), credential());
    let mut by_phase = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..CALLS + 1_000 {
        let times = plugin.sign_phase_times(&request, &credential).unwrap();
        if i >= 1_000 {
            for (phase, t) in by_phase.iter_mut().zip(times) {
                phase.push(t);
            }
        }
    }
    for (name, samples) in ["store", "instantiate", "sign call"].iter().zip(by_phase) {
        println!("  phase {name:<44} {}", summary(samples));
    }
}

/// How long after its epoch deadline an endless loop is stopped (the hostile test component's
/// `/loop`), as a ratio of the deadline. Needs `target/test-components/hostile.wasm`.
fn deadline_overshoot() {
    const DEADLINE: Duration = Duration::from_millis(100);
    const RUNS: usize = 20;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-components/hostile.wasm");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "build components first: cargo xtask components ({}: {e})",
            path.display()
        )
    });
    let runtime = Runtime::new(RuntimeConfig {
        deadline: DEADLINE,
        timeout: DEADLINE * 10,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let plugin = runtime
        .load(&bytes, Source::Bytes("hostile".into()))
        .unwrap();
    let request = HttpRequest {
        method: "GET".into(),
        url: "https://hostile.test/loop".into(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let credential = Credential {
        secrets: vec![("token".into(), "tok-123".into())],
        metadata: Vec::new(),
        scopes: Vec::new(),
        expires_at: None,
    };
    let mut samples: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let result = plugin.sign(&request, &credential, 0);
            assert!(result.is_err(), "the loop must not return");
            started.elapsed()
        })
        .collect();
    samples.sort();
    let ratio = |d: Duration| d.as_secs_f64() / DEADLINE.as_secs_f64();
    println!(
        "endless loop, {RUNS} runs, deadline {DEADLINE:?}: stopped after p50 {:?} ({:.2}x the deadline), max {:?} ({:.2}x)",
        percentile(&samples, 0.5),
        ratio(percentile(&samples, 0.5)),
        samples[RUNS - 1],
        ratio(samples[RUNS - 1]),
    );
}

fn report() {
    let pool = |memory_keep_resident, pagemap_scan| RuntimeConfig {
        pool: PoolConfig {
            memory_keep_resident,
            pagemap_scan,
            ..PoolConfig::default()
        },
        ..RuntimeConfig::default()
    };
    println!("\nplugin call, {CALLS} calls each (fresh store + instantiate + sign):");
    percentiles(
        "pooling, 4 MiB resident, pagemap scan (default)",
        pool(4 << 20, true),
    );
    percentiles(
        "pooling, 4 MiB resident, no pagemap scan",
        pool(4 << 20, false),
    );
    percentiles(
        "pooling, 1 MiB resident, no pagemap scan",
        pool(1 << 20, false),
    );
    percentiles("pooling, nothing resident", pool(0, false));
    percentiles(
        "on-demand allocation",
        RuntimeConfig {
            pooling: PoolingMode::Off,
            ..RuntimeConfig::default()
        },
    );
    println!("phases with the default configuration:");
    phases(RuntimeConfig::default());
    deadline_overshoot();
    let (request, credential) = (request(), credential());
    let samples = (0..CALLS)
        .map(|_| {
            let started = Instant::now();
            black_box(native_sign(black_box(&request), black_box(&credential)));
            started.elapsed()
        })
        .collect();
    println!(
        "{:<50} {}\n",
        "native Rust Bearer injection",
        summary(samples)
    );
}

fn bench(c: &mut Criterion) {
    report();
    let (_runtime, plugin) = load(RuntimeConfig::default());
    let (request, credential) = (request(), credential());
    let mut group = c.benchmark_group("bearer_sign");
    group.bench_function("component: fresh store + instantiate + sign", |b| {
        b.iter(|| {
            plugin
                .sign(black_box(&request), black_box(&credential), 0)
                .unwrap()
                .unwrap()
        });
    });
    group.bench_function("native Rust", |b| {
        b.iter(|| native_sign(black_box(&request), black_box(&credential)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
