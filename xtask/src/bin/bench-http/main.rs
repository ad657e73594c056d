//! HTTP benchmarks of the host's two call modes, run by `cargo xtask bench` (built in release:
//! the load generator must not be the debug build).
//!
//! - **retrieve** (`POST /v1/retrieve` through the SDK's `authorize()`) against a minimal
//!   hyper "hello" server loaded with the same signed requests (signed, body and all, and
//!   ignored): the ceiling of this generator on this machine;
//! - **proxy** (the SDK's `proxy_request(..).send()`) against nginx `proxy_pass`ing to the
//!   same upstream with a static `Authorization` header, and against calling the upstream
//!   directly;
//! - **memory**: the host's RSS after 10 k and after N mixed calls.
//!
//! Every server (host, hello, upstream, nginx) is its own process with 2 worker threads; the
//! generator is this process, with 2 worker threads, on the same 2 cores.

mod load;
mod servers;
mod tessera;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, Subcommand};
use tessera_proto::calls::{CallNote, GrantSelector, RetrieveRequest};
use tessera_proto::signing::{
    self, ApiKey, CONTENT_DIGEST_HEADER, KeyId, RequestToSign, SIGNATURE_HEADER,
    SIGNATURE_INPUT_HEADER, SignedHeaders, SigningKey,
};
use tessera_sdk::{App, Method};

use load::{CallFn, Sample, as_f64, call_fn};
use servers::Server;

/// The Stripe key the stand-in accepts and the host holds as a managed secret.
const STRIPE_KEY: &str = "sk_test_BenchKeyQ7x2LmP9vR4tY8wZ3";
/// The provider request every call describes.
const STRIPE_URL: &str = "https://api.stripe.com/v1/customers";
/// Worker threads of the generator's runtime.
const GENERATOR_THREADS: usize = 2;
/// Closed-loop concurrency levels of the sweeps.
const LEVELS: [usize; 4] = [1, 8, 32, 64];
/// Workers of the open-loop (fixed-rate) runs: enough that a slow answer delays the calls
/// behind it only when the server itself queues them.
const OPEN_LOOP_WORKERS: usize = 64;
/// Concurrency of the memory run.
const MEMORY_CONCURRENCY: usize = 32;
/// The memory run's first RSS reading is taken after this many calls.
const MEMORY_CHECKPOINT: u64 = 10_000;

#[derive(Parser)]
#[command(about = "HTTP benchmarks of Tessera's retrieve and proxy call modes")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every benchmark and print the figures (Markdown).
    Run {
        /// The release `tessera` binary.
        #[arg(long)]
        tessera: PathBuf,
        /// Where data directories and the nginx configuration go (removed at the end).
        #[arg(long)]
        work_dir: PathBuf,
        /// Short runs, for a smoke test of the benchmark itself.
        #[arg(long)]
        quick: bool,
        /// Calls of the memory run (default 1,000,000; 20,000 with --quick).
        #[arg(long)]
        calls: Option<u64>,
        /// Also write the Markdown report here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Load one call mode at one concurrency, optionally under `perf record` of the host:
    /// for finding where the host's time goes, not for figures.
    Profile {
        /// The release `tessera` binary.
        #[arg(long)]
        tessera: PathBuf,
        /// Where the data directory goes (removed at the end).
        #[arg(long)]
        work_dir: PathBuf,
        /// `retrieve` or `proxy`.
        #[arg(long, default_value = "retrieve")]
        mode: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Open loop at this many calls per second (sent by up to `--concurrency` workers)
        /// instead of a closed loop: for tail latency at a given load.
        #[arg(long)]
        rate: Option<f64>,
        /// Record the host with `perf record -g` into this file.
        #[arg(long)]
        perf: Option<PathBuf>,
    },
    /// Serve the "hello" baseline (internal).
    ServeHello,
    /// Serve the Stripe stand-in upstream (internal).
    ServeUpstream {
        #[arg(long)]
        key: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::ServeHello => servers::serve_hello(),
        Cmd::Profile {
            tessera,
            work_dir,
            mode,
            concurrency,
            seconds,
            rate,
            perf,
        } => {
            let tessera = std::path::absolute(tessera)?;
            let work_dir = std::path::absolute(work_dir)?;
            std::fs::create_dir_all(&work_dir)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(GENERATOR_THREADS)
                .enable_all()
                .build()?;
            let result = rt.block_on(profile(
                &tessera,
                &work_dir,
                &mode,
                concurrency,
                Duration::from_secs(seconds),
                rate,
                perf.as_deref(),
            ));
            std::fs::remove_dir_all(&work_dir).ok();
            result
        }
        Cmd::ServeUpstream { key } => servers::serve_upstream(&key),
        Cmd::Run {
            tessera,
            work_dir,
            quick,
            calls,
            out,
        } => {
            // nginx resolves relative paths against its prefix: make every path absolute.
            let (tessera, work_dir) = (
                std::path::absolute(tessera)?,
                std::path::absolute(work_dir)?,
            );
            let opts = Opts {
                calls: calls.unwrap_or(if quick { 20_000 } else { 1_000_000 }),
                timing: if quick { Timing::QUICK } else { Timing::FULL },
                tessera,
                work_dir,
                quick,
            };
            ensure!(
                opts.calls > MEMORY_CHECKPOINT,
                "--http-calls must be more than {MEMORY_CHECKPOINT} (the first RSS reading)"
            );
            std::fs::create_dir_all(&opts.work_dir)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(GENERATOR_THREADS)
                .enable_all()
                .build()?;
            let result = rt.block_on(run(&opts));
            std::fs::remove_dir_all(&opts.work_dir).ok();
            let report = result?;
            println!("\n{report}");
            if let Some(path) = out {
                std::fs::write(&path, &report)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("(report written to {})", path.display());
            }
            Ok(())
        }
    }
}

struct Opts {
    tessera: PathBuf,
    work_dir: PathBuf,
    quick: bool,
    calls: u64,
    timing: Timing,
}

#[derive(Clone, Copy)]
struct Timing {
    sweep_warmup: Duration,
    sweep_measure: Duration,
    open_warmup: Duration,
    open_measure: Duration,
    signing_iterations: u32,
}

impl Timing {
    const FULL: Self = Self {
        sweep_warmup: Duration::from_secs(1),
        sweep_measure: Duration::from_secs(5),
        open_warmup: Duration::from_secs(1),
        open_measure: Duration::from_secs(10),
        signing_iterations: 100_000,
    };
    const QUICK: Self = Self {
        sweep_warmup: Duration::from_millis(300),
        sweep_measure: Duration::from_millis(1500),
        open_warmup: Duration::from_millis(300),
        open_measure: Duration::from_secs(3),
        signing_iterations: 10_000,
    };
}

/// One measured run and the CPU each process spent on it.
struct Row {
    target: &'static str,
    concurrency: usize,
    sample: Sample,
    /// CPU µs per call of the server under test (none for a direct call).
    server_cpu: Option<f64>,
    /// Context switches per call of the server under test's threads.
    server_switches: Option<f64>,
    /// CPU µs per call of the upstream stand-in (proxy runs).
    upstream_cpu: Option<f64>,
    /// CPU µs per call of the generator (this process).
    client_cpu: f64,
}

/// CPU accounting around a run: the processes to watch.
struct Watch<'a> {
    server: Option<&'a Server>,
    upstream: Option<&'a Server>,
    clk: u64,
}

impl Watch<'_> {
    async fn run(
        &self,
        target: &'static str,
        concurrency: usize,
        work: impl Future<Output = Sample>,
    ) -> Row {
        let server_pids = self.server.map(Server::pids).unwrap_or_default();
        let upstream_pids = self.upstream.map(Server::pids).unwrap_or_default();
        let me = [std::process::id()];
        let switches_before = servers::context_switches(&server_pids);
        let before = (
            servers::cpu_ticks(&server_pids),
            servers::cpu_ticks(&upstream_pids),
            servers::cpu_ticks(&me),
        );
        let sample = work.await;
        let switches = servers::context_switches(&server_pids) - switches_before;
        let after = (
            servers::cpu_ticks(&server_pids),
            servers::cpu_ticks(&upstream_pids),
            servers::cpu_ticks(&me),
        );
        let per_call =
            |ticks: u64| as_f64(ticks) * 1e6 / as_f64(self.clk) / as_f64(sample.total.max(1));
        let row = Row {
            target,
            concurrency,
            server_cpu: self.server.map(|_| per_call(after.0 - before.0)),
            server_switches: self
                .server
                .map(|_| as_f64(switches) / as_f64(sample.total.max(1))),
            upstream_cpu: self.upstream.map(|_| per_call(after.1 - before.1)),
            client_cpu: per_call(after.2 - before.2),
            sample,
        };
        print_row(&row);
        row
    }
}

fn print_row(row: &Row) {
    let s = &row.sample;
    let mut line = format!(
        "  {:<18} c={:<3} {:>8.0} req/s  p50 {:>9}  p99 {:>9}  p99.9 {:>9}",
        row.target,
        row.concurrency,
        s.rate(),
        fmt_dur(s.pct(50.0)),
        fmt_dur(s.pct(99.0)),
        fmt_dur(s.pct(99.9)),
    );
    if let Some(rate) = s.target_rate {
        let _ = write!(line, "  (asked {rate:.0}/s)");
    }
    let _ = write!(line, "  CPU µs/call: client {:.0}", row.client_cpu);
    if let Some(c) = row.server_cpu {
        let _ = write!(line, ", server {c:.0}");
    }
    if let Some(c) = row.server_switches {
        let _ = write!(line, " ({c:.0} context switches)");
    }
    if let Some(c) = row.upstream_cpu {
        let _ = write!(line, ", upstream {c:.0}");
    }
    if s.errors > 0 {
        let _ = write!(
            line,
            "  ERRORS {} (first: {})",
            s.errors,
            s.first_error.as_deref().unwrap_or("?")
        );
    }
    println!("{line}");
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us >= 1_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

fn step(message: &str) {
    println!("==> {message}");
}

/// The signer the baseline clients use: what the SDK does per request, on the same key.
#[derive(Clone)]
struct Signer {
    key: SigningKey,
    key_id: KeyId,
}

impl Signer {
    fn new(api_key: &str) -> Result<Self> {
        let key = ApiKey::parse(api_key).map_err(|e| anyhow::anyhow!("API key: {e}"))?;
        Ok(Self {
            key: key.signing_key(),
            key_id: key.key_id().clone(),
        })
    }

    /// Signs now with a fresh nonce, as the SDK does.
    fn sign(&self, method: &str, uri: &str, body: &[u8]) -> Result<SignedHeaders> {
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        signing::sign_request(
            &self.key,
            &self.key_id,
            &RequestToSign {
                method,
                target_uri: uri,
                body,
                created,
                nonce: &nonce,
            },
        )
        .map_err(|e| anyhow::anyhow!("signing: {e}"))
    }
}

/// The JSON body the SDK sends for one retrieve call (same struct, same fields).
fn retrieve_body(grant_id: &str) -> Result<Vec<u8>> {
    /// `hex(SHA-256(""))`: the SDK sends the empty body's hash for a GET.
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    Ok(serde_json::to_vec(&RetrieveRequest {
        grant: GrantSelector {
            grant_id: Some(grant_id.to_owned()),
            ..GrantSelector::default()
        },
        method: "GET".into(),
        url: STRIPE_URL.into(),
        headers: Vec::new(),
        body_sha256: Some(EMPTY_SHA256.into()),
        body_base64: None,
        note: CallNote {
            reason: Some("bench".into()),
            context: std::collections::BTreeMap::new(),
        },
    })?)
}

/// The client's own cost per request: (signing only, JSON body + signing), measured on one
/// thread before any load.
fn signing_cost(api_key: &str, iterations: u32) -> Result<(Duration, Duration)> {
    let signer = Signer::new(api_key)?;
    let uri = "http://127.0.0.1:8080/v1/retrieve";
    let body = retrieve_body("0190aa00-0000-7000-8000-000000000000")?;
    let t = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(signer.sign("POST", uri, std::hint::black_box(&body))?);
    }
    let sign_only = t.elapsed() / iterations;
    let t = Instant::now();
    for _ in 0..iterations {
        let body = retrieve_body(std::hint::black_box("0190aa00-0000-7000-8000-000000000000"))?;
        std::hint::black_box(signer.sign("POST", uri, &body)?);
    }
    Ok((sign_only, t.elapsed() / iterations))
}

/// The HTTP client of the baselines: configured as the SDK's host client.
fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()?)
}

fn retrieve_call(app: &App, grant: &Arc<str>) -> CallFn {
    let (app, grant) = (app.clone(), grant.clone());
    call_fn(move |_| {
        let (app, grant) = (app.clone(), grant.clone());
        async move {
            let authorized = app
                .request(Method::GET, STRIPE_URL)
                .grant_id(&*grant)
                .reason("bench")
                .authorize()
                .await?;
            ensure!(authorized.provider == "stripe", "{authorized:?}");
            Ok(())
        }
    })
}

fn proxy_call(app: &App, grant: &Arc<str>) -> CallFn {
    let (app, grant) = (app.clone(), grant.clone());
    call_fn(move |_| {
        let (app, grant) = (app.clone(), grant.clone());
        async move {
            let response = app
                .proxy_request(Method::GET, STRIPE_URL)
                .grant_id(&*grant)
                .reason("bench")
                .send()
                .await?;
            ensure!(
                response.status() == 200,
                "proxy answered {}",
                response.status()
            );
            let body = response.bytes().await?;
            ensure!(body.starts_with(b"{\"object\""), "unexpected body");
            Ok(())
        }
    })
}

/// The hello baseline: the SDK's retrieve request (same JSON body, signed the same way, sent
/// with a client configured the same way), which the hello server reads and ignores.
fn hello_call(hello: &str, signer: &Signer, grant: &Arc<str>) -> Result<CallFn> {
    let client = client()?;
    let url: Arc<str> = format!("http://{hello}/v1/retrieve").into();
    let (signer, grant) = (signer.clone(), grant.clone());
    Ok(call_fn(move |_| {
        let (client, url, signer, grant) =
            (client.clone(), url.clone(), signer.clone(), grant.clone());
        async move {
            let body = retrieve_body(&grant)?;
            let headers = signer.sign("POST", &url, &body)?;
            let response = client
                .post(&*url)
                .header(CONTENT_DIGEST_HEADER, headers.content_digest)
                .header(SIGNATURE_INPUT_HEADER, headers.signature_input)
                .header(SIGNATURE_HEADER, headers.signature)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await?;
            ensure!(
                response.status() == 200,
                "hello answered {}",
                response.status()
            );
            ensure!(&response.bytes().await?[..] == b"hello", "unexpected body");
            Ok(())
        }
    }))
}

/// A plain `GET /v1/customers` to `addr`; `auth` adds what an app calling Stripe itself would
/// send (the direct baseline), without it nginx adds the key.
fn plain_call(addr: &str, auth: bool) -> Result<CallFn> {
    let client = client()?;
    let url: Arc<str> = format!("http://{addr}/v1/customers").into();
    let bearer: Arc<str> = format!("Bearer {STRIPE_KEY}").into();
    Ok(call_fn(move |_| {
        let (client, url, bearer) = (client.clone(), url.clone(), bearer.clone());
        async move {
            let mut request = client.get(&*url);
            if auth {
                request = request
                    .header(reqwest::header::HOST, "api.stripe.com")
                    .header(reqwest::header::AUTHORIZATION, &*bearer);
            }
            let response = request.send().await?;
            ensure!(response.status() == 200, "answered {}", response.status());
            let body = response.bytes().await?;
            ensure!(body.starts_with(b"{\"object\""), "unexpected body");
            Ok(())
        }
    }))
}

fn self_command(args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(args);
    Ok(cmd)
}

/// Everything measured, for the report.
struct Results {
    /// `/proc/loadavg` (1, 5, 15 min) at the start and at the end.
    load: (String, String),
    signing: (Duration, Duration),
    retrieve: Vec<Row>,
    retrieve_open: Vec<Row>,
    proxy: Vec<Row>,
    memory: Memory,
}

struct Memory {
    calls: u64,
    rss_checkpoint: u64,
    rss_end: u64,
    hwm_end: u64,
    rate: f64,
    errors: u64,
    data_dir_bytes: u64,
}

/// The servers and the client of the retrieve and proxy phases.
struct Rig {
    upstream: Server,
    host: Server,
    app: App,
    grant: Arc<str>,
    signer: Signer,
    clk: u64,
}

impl Rig {
    fn watch<'a>(&self, server: Option<&'a Server>, upstream: Option<&'a Server>) -> Watch<'a> {
        Watch {
            server,
            upstream,
            clk: self.clk,
        }
    }
}

async fn run(opts: &Opts) -> Result<String> {
    let nginx = servers::ensure_nginx()?;
    let load_before = loadavg();
    println!("load average at start: {load_before}");

    step("upstream: a hyper stand-in for api.stripe.com");
    let upstream = Server::spawn_printing_addr(
        "upstream",
        self_command(&["serve-upstream", "--key", STRIPE_KEY])?,
    )?;

    step("tessera: init, app, key (SQLite, audit on), serve");
    let dir = opts.work_dir.join("host");
    let prepared = tessera::prepare(&opts.tessera, &dir)?;
    let host = tessera::start(&opts.tessera, &dir, &upstream.addr)?;
    let app = App::new(&prepared.api_key, &format!("http://{}", host.addr))?;
    let grant: Arc<str> = tessera::store_secret(&app, STRIPE_KEY).await?.into();
    let mut rig = Rig {
        signer: Signer::new(&prepared.api_key)?,
        upstream,
        host,
        app,
        grant,
        clk: servers::clock_ticks_per_second(),
    };

    step("client: signing cost per request (one thread, no I/O)");
    let signing = signing_cost(&prepared.api_key, opts.timing.signing_iterations)?;
    println!(
        "  sign only {:.2} µs; JSON body + sign {:.2} µs",
        us(signing.0),
        us(signing.1)
    );

    let (retrieve, retrieve_open) = retrieve_phase(opts, &rig).await?;
    let proxy = proxy_phase(opts, &rig, &nginx).await?;
    rig.host.stop();
    let memory = memory_run(opts, &rig.upstream).await?;
    drop(rig);

    let results = Results {
        load: (load_before, loadavg()),
        signing,
        retrieve,
        retrieve_open,
        proxy,
        memory,
    };
    for row in results
        .retrieve
        .iter()
        .chain(&results.retrieve_open)
        .chain(&results.proxy)
    {
        let s = &row.sample;
        if s.errors * 100 > s.total {
            bail!(
                "{} at c={}: {} of {} calls failed (first: {})",
                row.target,
                row.concurrency,
                s.errors,
                s.total,
                s.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(report(opts, &results))
}

/// The `profile` command: one closed-loop run of `mode` against a fresh host.
async fn profile(
    bin: &Path,
    work_dir: &Path,
    mode: &str,
    concurrency: usize,
    duration: Duration,
    rate: Option<f64>,
    perf: Option<&Path>,
) -> Result<()> {
    let upstream = Server::spawn_printing_addr(
        "upstream",
        self_command(&["serve-upstream", "--key", STRIPE_KEY])?,
    )?;
    let dir = work_dir.join("host");
    let prepared = tessera::prepare(bin, &dir)?;
    let host = tessera::start(bin, &dir, &upstream.addr)?;
    let app = App::new(&prepared.api_key, &format!("http://{}", host.addr))?;
    let grant: Arc<str> = tessera::store_secret(&app, STRIPE_KEY).await?.into();
    let call = match mode {
        "retrieve" => retrieve_call(&app, &grant),
        "proxy" => proxy_call(&app, &grant),
        other => bail!("--mode is retrieve or proxy, not {other:?}"),
    };
    // Warm up before recording.
    load::closed_loop(&call, concurrency, Duration::ZERO, Duration::from_secs(1)).await;
    let recorder = match perf {
        Some(out) => Some(
            Command::new("perf")
                .args(["record", "-F", "499", "-g", "-o"])
                .arg(out)
                .arg("-p")
                .arg(host.child.id().to_string())
                .arg("--")
                .arg("sleep")
                .arg(duration.as_secs().to_string())
                .spawn()
                .context("could not start perf")?,
        ),
        None => None,
    };
    let watch = Watch {
        server: Some(&host),
        upstream: None,
        clk: servers::clock_ticks_per_second(),
    };
    let work: std::pin::Pin<Box<dyn Future<Output = load::Sample> + '_>> = match rate {
        Some(rate) => Box::pin(load::open_loop(
            &call,
            rate,
            concurrency,
            Duration::ZERO,
            duration,
        )),
        None => Box::pin(load::closed_loop(
            &call,
            concurrency,
            Duration::ZERO,
            duration,
        )),
    };
    let row = watch
        .run(
            if mode == "proxy" {
                "tessera proxy"
            } else {
                "tessera retrieve"
            },
            concurrency,
            work,
        )
        .await;
    if let Some(mut recorder) = recorder {
        recorder.wait()?;
    }
    ensure!(
        row.sample.errors * 100 <= row.sample.total,
        "{} of {} calls failed (first: {})",
        row.sample.errors,
        row.sample.total,
        row.sample.first_error.as_deref().unwrap_or("?")
    );
    Ok(())
}

/// Closed-loop sweep of hello and tessera retrieve, then both at half of tessera's peak on a
/// fixed-rate schedule.
async fn retrieve_phase(opts: &Opts, rig: &Rig) -> Result<(Vec<Row>, Vec<Row>)> {
    let t = opts.timing;
    step("retrieve: closed-loop sweep, hello (signed, ignored) versus tessera");
    let mut hello = Server::spawn_printing_addr("hello", self_command(&["serve-hello"])?)?;
    let hello_fn = hello_call(&hello.addr, &rig.signer, &rig.grant)?;
    let retrieve_fn = retrieve_call(&rig.app, &rig.grant);
    let watch_hello = rig.watch(Some(&hello), None);
    let watch_host = rig.watch(Some(&rig.host), None);
    let mut sweep = Vec::new();
    for c in LEVELS {
        let work = load::closed_loop(&hello_fn, c, t.sweep_warmup, t.sweep_measure);
        sweep.push(watch_hello.run("hello", c, work).await);
        let work = load::closed_loop(&retrieve_fn, c, t.sweep_warmup, t.sweep_measure);
        sweep.push(watch_host.run("tessera retrieve", c, work).await);
    }
    let half = peak_rate(&sweep, "tessera retrieve") / 2.0;
    step(&format!(
        "retrieve: open loop at half of tessera's peak ({half:.0}/s), {OPEN_LOOP_WORKERS} workers"
    ));
    let mut open = Vec::new();
    for (name, f, w) in [
        ("tessera retrieve", &retrieve_fn, &watch_host),
        ("hello", &hello_fn, &watch_hello),
    ] {
        let work = load::open_loop(f, half, OPEN_LOOP_WORKERS, t.open_warmup, t.open_measure);
        open.push(w.run(name, OPEN_LOOP_WORKERS, work).await);
    }
    hello.stop();
    Ok((sweep, open))
}

/// Closed-loop sweep of a direct call to the upstream, nginx and tessera proxy.
async fn proxy_phase(opts: &Opts, rig: &Rig, nginx: &Path) -> Result<Vec<Row>> {
    let t = opts.timing;
    step("proxy: closed-loop sweep, direct versus nginx versus tessera");
    let port = servers::free_port()?;
    let cmd = servers::nginx_command(
        nginx,
        &opts.work_dir.join("nginx"),
        port,
        &rig.upstream.addr,
        STRIPE_KEY,
    )?;
    let mut nginx = Server::spawn_on("nginx", cmd, format!("127.0.0.1:{port}"))?;
    let direct_fn = plain_call(&rig.upstream.addr, true)?;
    let nginx_fn = plain_call(&nginx.addr, false)?;
    let proxy_fn = proxy_call(&rig.app, &rig.grant);
    let watch_direct = rig.watch(None, Some(&rig.upstream));
    let watch_nginx = rig.watch(Some(&nginx), Some(&rig.upstream));
    let watch_proxy = rig.watch(Some(&rig.host), Some(&rig.upstream));
    let mut rows = Vec::new();
    for c in LEVELS {
        for (name, f, w) in [
            ("direct", &direct_fn, &watch_direct),
            ("nginx", &nginx_fn, &watch_nginx),
            ("tessera proxy", &proxy_fn, &watch_proxy),
        ] {
            let work = load::closed_loop(f, c, t.sweep_warmup, t.sweep_measure);
            rows.push(w.run(name, c, work).await);
        }
    }
    nginx.stop();
    Ok(rows)
}

/// The memory run: a fresh host, mixed retrieve and proxy calls (alternating), RSS after
/// [`MEMORY_CHECKPOINT`] calls and after all of them.
async fn memory_run(opts: &Opts, upstream: &Server) -> Result<Memory> {
    step(&format!(
        "memory: fresh host, {} mixed calls (retrieve and proxy alternating), {MEMORY_CONCURRENCY} workers",
        opts.calls
    ));
    let dir = opts.work_dir.join("memory");
    let prepared = tessera::prepare(&opts.tessera, &dir)?;
    let mut host = tessera::start(&opts.tessera, &dir, &upstream.addr)?;
    let app = App::new(&prepared.api_key, &format!("http://{}", host.addr))?;
    let grant: Arc<str> = tessera::store_secret(&app, STRIPE_KEY).await?.into();
    let (retrieve, proxy) = (retrieve_call(&app, &grant), proxy_call(&app, &grant));
    let mixed: CallFn = Arc::new(move |i| if i % 2 == 0 { retrieve(i) } else { proxy(i) });
    let pid = host.pid();
    let every = if opts.quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(15)
    };
    let first = load::count_run(
        &mixed,
        MEMORY_CONCURRENCY,
        0,
        MEMORY_CHECKPOINT,
        every,
        |_, _| {},
    )
    .await;
    let (rss_checkpoint, _) = servers::rss_kib(pid)?;
    println!(
        "  after {MEMORY_CHECKPOINT} calls: RSS {:.1} MiB ({:.0} calls/s)",
        mib(rss_checkpoint),
        first.rate()
    );
    let total = opts.calls;
    let rest = load::count_run(
        &mixed,
        MEMORY_CONCURRENCY,
        MEMORY_CHECKPOINT,
        total,
        every,
        move |done, elapsed| {
            let rss = servers::rss_kib(pid).map_or(0, |r| r.0);
            let done = done + MEMORY_CHECKPOINT;
            println!(
                "  {done:>9} / {total} calls ({:.0}%), {:.0} calls/s, RSS {:.1} MiB",
                as_f64(done) * 100.0 / as_f64(total),
                as_f64(done - MEMORY_CHECKPOINT) / elapsed.as_secs_f64(),
                mib(rss)
            );
        },
    )
    .await;
    let (rss_end, hwm_end) = servers::rss_kib(pid)?;
    println!(
        "  after {total} calls: RSS {:.1} MiB (peak {:.1} MiB), ratio {:.2}",
        mib(rss_end),
        mib(hwm_end),
        as_f64(rss_end) / as_f64(rss_checkpoint)
    );
    let errors = first.errors + rest.errors;
    if errors * 100 > total {
        bail!(
            "memory run: {errors} of {total} calls failed (first: {})",
            first
                .first_error
                .or(rest.first_error)
                .unwrap_or_else(|| "?".into())
        );
    }
    host.stop();
    Ok(Memory {
        calls: total,
        rss_checkpoint,
        rss_end,
        hwm_end,
        rate: rest.rate(),
        errors,
        data_dir_bytes: dir_size(&dir),
    })
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows here.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn mib(kib: u64) -> f64 {
    as_f64(kib) / 1024.0
}

fn peak_rate(rows: &[Row], target: &str) -> f64 {
    rows.iter()
        .filter(|r| r.target == target)
        .map(|r| r.sample.rate())
        .fold(0.0, f64::max)
}

fn find<'a>(rows: &'a [Row], target: &str, c: usize) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.target == target && r.concurrency == c)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn cpu(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.0}"))
}

/// "Host per call at c = 1 / 8 / …: CPU … µs, … context switches."
fn host_cost_line(out: &mut String, rows: &[Row], target: &str) {
    let rows: Vec<&Row> = LEVELS
        .iter()
        .filter_map(|c| find(rows, target, *c))
        .collect();
    let join =
        |f: &dyn Fn(&Row) -> String| rows.iter().map(|r| f(r)).collect::<Vec<_>>().join(" / ");
    let _ = writeln!(
        out,
        "\nHost ({target}) per call at c = {}: CPU {} µs, {} context switches.",
        join(&|r| r.concurrency.to_string()),
        join(&|r| cpu(r.server_cpu)),
        join(&|r| cpu(r.server_switches)),
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

/// The figures as Markdown, ready for BENCHMARKS.md.
#[allow(clippy::too_many_lines)]
fn report(opts: &Opts, res: &Results) -> String {
    let mut out = String::new();
    let timing = opts.timing;
    let _ = writeln!(
        out,
        "Run: {} (sweeps {:.1} s per point after {:.1} s warm-up; open loop {:.0} s; memory run {} calls).\n",
        if opts.quick { "`--quick`" } else { "full" },
        timing.sweep_measure.as_secs_f64(),
        timing.sweep_warmup.as_secs_f64(),
        timing.open_measure.as_secs_f64(),
        res.memory.calls
    );
    let _ = writeln!(
        out,
        "Load average (1/5/15 min) before the first request: {} (2 cores: well above 0 means \
         other work competed for the CPU); at the end: {} (includes the benchmark's own load).\n",
        res.load.0, res.load.1
    );
    let _ = writeln!(
        out,
        "Client signing cost (one thread, no I/O): {:.2} µs per request to sign (nonce, \
         Content-Digest, HMAC), {:.2} µs with building the JSON body.\n",
        us(res.signing.0),
        us(res.signing.1)
    );

    // Retrieve.
    let _ = writeln!(out, "#### Retrieve, closed loop\n");
    let _ = writeln!(
        out,
        "| concurrency | hello req/s | tessera req/s | tessera / hello | hello p50 / p99 | tessera p50 / p99 | CPU µs per call: host / client (hello: server / client) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for c in LEVELS {
        let (Some(h), Some(x)) = (
            find(&res.retrieve, "hello", c),
            find(&res.retrieve, "tessera retrieve", c),
        ) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {c} | {:.0} | {:.0} | {:.0}% | {} / {} | {} / {} | {} / {:.0} ({} / {:.0}) |",
            h.sample.rate(),
            x.sample.rate(),
            100.0 * x.sample.rate() / h.sample.rate(),
            fmt_dur(h.sample.pct(50.0)),
            fmt_dur(h.sample.pct(99.0)),
            fmt_dur(x.sample.pct(50.0)),
            fmt_dur(x.sample.pct(99.0)),
            cpu(x.server_cpu),
            x.client_cpu,
            cpu(h.server_cpu),
            h.client_cpu,
        );
    }
    host_cost_line(&mut out, &res.retrieve, "tessera retrieve");
    let hello_peak = peak_rate(&res.retrieve, "hello");
    let retrieve_peak = peak_rate(&res.retrieve, "tessera retrieve");
    let retrieve_ratio = retrieve_peak / hello_peak;
    let _ = writeln!(
        out,
        "\nPeak: tessera {retrieve_peak:.0} req/s, hello {hello_peak:.0} req/s: **{:.0}%**.\n",
        100.0 * retrieve_ratio
    );
    let _ = writeln!(
        out,
        "#### Retrieve, open loop at half of tessera's peak ({OPEN_LOOP_WORKERS} workers)\n"
    );
    let _ = writeln!(
        out,
        "| target | asked | achieved | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|"
    );
    for row in &res.retrieve_open {
        let s = &row.sample;
        let _ = writeln!(
            out,
            "| {} | {:.0}/s | {:.0}/s | {} | {} | {} | {} |",
            row.target,
            s.target_rate.unwrap_or(0.0),
            s.rate(),
            fmt_dur(s.pct(50.0)),
            fmt_dur(s.pct(99.0)),
            fmt_dur(s.pct(99.9)),
            fmt_dur(s.pct(100.0)),
        );
    }
    let retrieve_p99 = res
        .retrieve_open
        .iter()
        .find(|row| row.target == "tessera retrieve")
        .map_or(Duration::ZERO, |row| row.sample.pct(99.0));

    // Proxy.
    let _ = writeln!(out, "\n#### Proxy, closed loop\n");
    let _ = writeln!(
        out,
        "| concurrency | direct req/s | nginx req/s | tessera req/s | tessera / nginx | p50 direct / nginx / tessera | p99 direct / nginx / tessera | CPU µs per call: tessera host / upstream / client (nginx: nginx / upstream / client) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for c in LEVELS {
        let (Some(d), Some(n), Some(x)) = (
            find(&res.proxy, "direct", c),
            find(&res.proxy, "nginx", c),
            find(&res.proxy, "tessera proxy", c),
        ) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {c} | {:.0} | {:.0} | {:.0} | {:.0}% | {} / {} / {} | {} / {} / {} | {} / {} / {:.0} ({} / {} / {:.0}) |",
            d.sample.rate(),
            n.sample.rate(),
            x.sample.rate(),
            100.0 * x.sample.rate() / n.sample.rate(),
            fmt_dur(d.sample.pct(50.0)),
            fmt_dur(n.sample.pct(50.0)),
            fmt_dur(x.sample.pct(50.0)),
            fmt_dur(d.sample.pct(99.0)),
            fmt_dur(n.sample.pct(99.0)),
            fmt_dur(x.sample.pct(99.0)),
            cpu(x.server_cpu),
            cpu(x.upstream_cpu),
            x.client_cpu,
            cpu(n.server_cpu),
            cpu(n.upstream_cpu),
            n.client_cpu,
        );
    }
    host_cost_line(&mut out, &res.proxy, "tessera proxy");
    let nginx_peak = peak_rate(&res.proxy, "nginx");
    let proxy_peak = peak_rate(&res.proxy, "tessera proxy");
    let direct_peak = peak_rate(&res.proxy, "direct");
    let proxy_ratio = proxy_peak / nginx_peak;
    let _ = writeln!(
        out,
        "\nPeak: tessera {proxy_peak:.0} req/s, nginx {nginx_peak:.0} req/s: **{:.0}%** (direct {direct_peak:.0} req/s).\n",
        100.0 * proxy_ratio
    );
    let p50 =
        |target: &str, p: f64| find(&res.proxy, target, 1).map_or(0.0, |row| us(row.sample.pct(p)));
    let added = p50("tessera proxy", 50.0) - p50("direct", 50.0);
    let _ = writeln!(
        out,
        "Added latency over a direct call, one call at a time (c = 1): tessera p50 +{added:.0} µs \
         (p99 +{:.0} µs), nginx p50 +{:.0} µs (p99 +{:.0} µs). Tessera's figure includes the \
         client's signing and JSON body ({:.1} µs).\n",
        p50("tessera proxy", 99.0) - p50("direct", 99.0),
        p50("nginx", 50.0) - p50("direct", 50.0),
        p50("nginx", 99.0) - p50("direct", 99.0),
        us(res.signing.1),
    );

    // Memory.
    let mem = &res.memory;
    let mem_ratio = as_f64(mem.rss_end) / as_f64(mem.rss_checkpoint);
    let _ = writeln!(out, "#### Memory\n");
    let _ = writeln!(
        out,
        "Fresh host, retrieve and proxy alternating, {MEMORY_CONCURRENCY} workers: RSS {:.1} MiB \
         after {MEMORY_CHECKPOINT} calls, {:.1} MiB after {} calls (peak {:.1} MiB): **{:.2}×**. \
         {:.0} calls/s, {} errors; data directory {:.0} MiB at the end.\n",
        mib(mem.rss_checkpoint),
        mib(mem.rss_end),
        mem.calls,
        mib(mem.hwm_end),
        mem_ratio,
        mem.rate,
        mem.errors,
        as_f64(mem.data_dir_bytes) / 1_048_576.0,
    );

    // Goals.
    let _ = writeln!(out, "#### Goals\n");
    let _ = writeln!(out, "| goal | measured | |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| retrieve throughput ≥ 40% of hello | {:.0}% | {} |",
        100.0 * retrieve_ratio,
        verdict(retrieve_ratio >= 0.40)
    );
    let _ = writeln!(
        out,
        "| retrieve p99 ≤ 5 ms at half of peak | {} | {} |",
        fmt_dur(retrieve_p99),
        verdict(retrieve_p99 <= Duration::from_millis(5))
    );
    let _ = writeln!(
        out,
        "| proxy throughput ≥ 50% of nginx | {:.0}% | {} |",
        100.0 * proxy_ratio,
        verdict(proxy_ratio >= 0.50)
    );
    let _ = writeln!(
        out,
        "| proxy added p50 ≤ 150 µs over direct | {added:.0} µs | {} |",
        verdict(added <= 150.0)
    );
    let _ = writeln!(
        out,
        "| RSS after {} calls within 20% of after {MEMORY_CHECKPOINT} | {:.2}× | {} |",
        mem.calls,
        mem_ratio,
        verdict(mem_ratio <= 1.20)
    );
    out
}
