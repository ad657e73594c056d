//! The servers around the host: the hyper "hello" ceiling, the Stripe stand-in upstream (both
//! run as child processes of this binary, so each has its own runtime like the host), nginx
//! as the proxy baseline, and what is read about a server process (address, CPU, RSS).

use std::convert::Infallible;
use std::io::{BufRead as _, BufReader};
use std::net::{TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Worker threads of every server runtime of this binary: the host's tokio runtime has one per
/// core, and the machine has 2.
pub const SERVER_THREADS: usize = 2;

/// What the stand-in answers for the account lookup the Stripe provider makes when a secret is
/// stored.
const ACCOUNT_JSON: &str =
    r#"{"id":"acct_1Bench","email":"billing@acme.example","business_profile":{"name":"Acme Inc"}}"#;
/// What the stand-in answers for every other authorised request.
const CUSTOMERS_JSON: &str = r#"{"object":"list","data":[{"id":"cus_1","email":"a@b.example"}]}"#;
const UNAUTHORISED_JSON: &str =
    r#"{"error":{"type":"invalid_request_error","code":"api_key_invalid"}}"#;

/// Serves `GET/POST * → 200 "hello"` on 127.0.0.1 (the request body is read and ignored);
/// prints `listening on http://ADDR` and runs until killed.
pub fn serve_hello() -> Result<()> {
    serve(|req| async move {
        let _ = req.into_body().collect().await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    })
}

/// Serves a stand-in for `api.stripe.com`: `Host: api.stripe.com` and `Authorization: Bearer
/// <key>` are required (else 401), `/v1/account` answers an account, anything else a small
/// customer list. Prints `listening on http://ADDR` and runs until killed.
pub fn serve_upstream(key: &str) -> Result<()> {
    let expected: &'static str = Box::leak(format!("Bearer {key}").into_boxed_str());
    serve(move |req| async move {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let ok = header("host") == "api.stripe.com" && header("authorization") == expected;
        let account = req.uri().path() == "/v1/account";
        let _ = req.into_body().collect().await;
        let (status, body) = match (ok, account) {
            (false, _) => (StatusCode::UNAUTHORIZED, UNAUTHORISED_JSON),
            (true, true) => (StatusCode::OK, ACCOUNT_JSON),
            (true, false) => (StatusCode::OK, CUSTOMERS_JSON),
        };
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        Ok::<_, Infallible>(response)
    })
}

fn serve<F, Fut>(handler: F) -> Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_THREADS)
        .enable_all()
        .build()?
        .block_on(accept_loop(handler))
}

async fn accept_loop<F, Fut>(handler: F) -> Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handler))
                .await;
        });
    }
}

/// A server child process; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub name: &'static str,
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Server {
    /// Starts `cmd` and reads the address from the first line it prints (`… http://ADDR …`);
    /// the rest of its standard output is drained in the background.
    pub fn spawn_printing_addr(name: &'static str, mut cmd: Command) -> Result<Self> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {}", cmd.get_program().display()))?;
        let out = child.stdout.take().context("no stdout")?;
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(|a| a.trim_end_matches('/').to_owned());
        let Some(addr) = addr else {
            let _ = child.kill();
            bail!("{name} printed no address: {line:?}");
        };
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Ok(Self { name, child, addr })
    }

    /// A server that listens on a known address once it accepts connections.
    pub fn spawn_on(name: &'static str, mut cmd: Command, addr: String) -> Result<Self> {
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start {}", cmd.get_program().display()))?;
        let mut server = Self { name, child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(&server.addr).is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("{name} exited at start ({status})");
            }
            if Instant::now() > deadline {
                bail!("{name} did not listen on {} within 10 s", server.addr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process and its descendants (nginx's workers).
    pub fn pids(&self) -> Vec<u32> {
        with_descendants(self.pid())
    }

    /// Stops the server: SIGTERM (the host drains and flushes its audit rows; nginx's master
    /// stops its workers), SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop within 10 s of SIGTERM: killed", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free port on 127.0.0.1 (bound and released: for nginx, which takes the port in its
/// configuration).
pub fn free_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Finds nginx, installing Debian's package when it is missing and this runs as root.
pub fn ensure_nginx() -> Result<PathBuf> {
    let find = || {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    };
    if let Some(bin) = find() {
        return Ok(bin);
    }
    if !is_root() {
        bail!(
            "nginx is needed for the proxy baseline and is not installed: install Debian's \
             package (apt-get install nginx-light, or nginx) or run as root so the bench can"
        );
    }
    println!("==> installing nginx (Debian package) for the proxy baseline");
    // Debian's postinst would start the system nginx on port 80: policy-rc.d forbids it
    // (only written, and removed afterwards, when the machine has none).
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let wrote_policy = if policy.exists() {
        false
    } else {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n")?;
        let _ = Command::new("chmod").arg("755").arg(policy).status();
        true
    };
    let installed = apt_install_nginx();
    if wrote_policy {
        let _ = std::fs::remove_file(policy);
    }
    installed?;
    find().context("nginx was installed but is not on PATH nor in /usr/sbin")
}

fn apt_install_nginx() -> Result<()> {
    let update = Command::new("apt-get").args(["update", "-qq"]).status()?;
    if !update.success() {
        bail!("apt-get update failed ({update})");
    }
    for package in ["nginx-light", "nginx"] {
        let status = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if status.success() {
            return Ok(());
        }
    }
    bail!("apt-get could install neither nginx-light nor nginx")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Writes an nginx configuration under `dir` that listens on `port` and passes every request
/// to `upstream` (kept-alive HTTP/1.1 connections, like the host's pooled client) with
/// `Host: api.stripe.com` and a static `Authorization: Bearer <key>`; returns the command that
/// runs it in the foreground.
pub fn nginx_command(
    nginx: &Path,
    dir: &Path,
    port: u16,
    upstream: &str,
    key: &str,
) -> Result<Command> {
    std::fs::create_dir_all(dir.join("tmp"))?;
    let d = dir.display();
    let conf = format!(
        r#"# Generated by `cargo xtask bench`: the proxy baseline.
worker_processes {SERVER_THREADS};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_requests 1000000;
    upstream stripe {{
        server {upstream};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://stripe;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host api.stripe.com;
            proxy_set_header Authorization "Bearer {key}";
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"]);
    Ok(cmd)
}

/// `pid` and every process below it.
fn with_descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).and_then(|v| v.parse().ok())) {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// The fields of `/proc/<pid>/stat` after the command name: state is index 0, ppid 1, utime
/// 11, stime 12.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU time (user + system) used so far by these processes, in clock ticks.
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| stat_fields(*p))
        .map(|f| {
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        })
        .sum()
}

/// Context switches (voluntary and not) of every thread of these processes so far. Threads
/// that exited are not counted, so read it around runs that keep their threads.
pub fn context_switches(pids: &[u32]) -> u64 {
    let mut total = 0;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            total += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    total
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux when unknown).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// `VmRSS` and `VmHWM` (peak) of a process, KiB.
pub fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Ok((
        field("VmRSS:").context("no VmRSS")?,
        field("VmHWM:").context("no VmHWM")?,
    ))
}
