//! End-to-end tests of the `tessera` binary as a user runs it: real components built from
//! `providers/`, a real host process, real HTTP on 127.0.0.1.
//!
//! This is the crate's one integration-test binary (link time): add tests here, in modules.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;
use tessera_host::store::testing::TestDb;
use tessera_host::store::{BackendKind, DatabaseConfig};

const BUILTINS: &[&str] = &["aws", "github", "google", "oauth2", "stripe"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `tessera` binary of this build profile, built by `cargo xtask test` before the tests.
fn tessera_bin() -> Result<PathBuf> {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let bin = root().join("target").join(profile).join("tessera");
    ensure!(
        bin.is_file(),
        "{} is missing: run `cargo xtask test` (it builds the components and the host first)",
        bin.display()
    );
    Ok(bin)
}

fn component(dir: &str, name: &str) -> Result<PathBuf> {
    let path = root().join("target").join(dir).join(format!("{name}.wasm"));
    ensure!(
        path.is_file(),
        "{} is missing: build components first: cargo xtask components",
        path.display()
    );
    Ok(path)
}

fn tessera(data_dir: &Path, args: &[&str]) -> Result<Output> {
    let out = Command::new(tessera_bin()?)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("TESSERA_CONFIG")
        .env_remove("TESSERA_PROVIDERS_DIR")
        .output()?;
    Ok(out)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &Output) -> Result<Value> {
    ensure!(out.status.success(), "tessera failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).with_context(|| format!("not JSON: {}", stdout(out)))
}

mod provider_cli {
    use super::*;

    #[test]
    fn list_json_names_every_builtin_with_its_kind_and_version() -> Result<()> {
        let data = tempfile::tempdir()?;
        let list = json_of(&tessera(data.path(), &["provider", "list", "--json"])?)?;
        let items = list.as_array().context("an array")?;
        for id in BUILTINS {
            let item = items
                .iter()
                .find(|i| i["id"] == *id)
                .with_context(|| format!("{id} missing from {list}"))?;
            for key in ["display_name", "auth_kind", "version"] {
                ensure!(
                    item[key].as_str().is_some_and(|v| !v.is_empty()),
                    "{id}: no {key} in {item}"
                );
            }
        }
        let kind = |id: &str| {
            items
                .iter()
                .find(|i| i["id"] == id)
                .map(|i| i["auth_kind"].clone())
        };
        assert_eq!(kind("github"), Some("oauth2".into()));
        assert_eq!(kind("google"), Some("oauth2".into()));
        assert_eq!(kind("stripe"), Some("managed-secret".into()));
        assert_eq!(kind("aws"), Some("managed-secret".into()));
        Ok(())
    }

    #[test]
    fn inspect_shows_that_builtins_import_nothing() -> Result<()> {
        let data = tempfile::tempdir()?;
        for id in BUILTINS {
            let v = json_of(&tessera(
                data.path(),
                &["provider", "inspect", id, "--json"],
            )?)?;
            assert_eq!(v["id"], *id);
            assert_eq!(
                v["imports"],
                Value::Array(vec![]),
                "{id} imports something: {v}"
            );
            assert_eq!(v["contract_version"], "0.1.0");
            ensure!(v["sha256"].as_str().is_some_and(|h| h.len() == 64), "{v}");
        }
        let human = tessera(data.path(), &["provider", "inspect", "google"])?;
        ensure!(human.status.success(), "{}", stderr(&human));
        let text = stdout(&human);
        ensure!(text.contains("imports           none"), "{text}");
        ensure!(text.contains("pkce              S256"), "{text}");
        Ok(())
    }

    #[test]
    fn inspect_lists_the_wasi_imports_of_a_third_party_component() -> Result<()> {
        let data = tempfile::tempdir()?;
        let file = component("test-components", "hostile")?;
        let v = json_of(&tessera(
            data.path(),
            &["provider", "inspect", &file.to_string_lossy(), "--json"],
        )?)?;
        let imports = v["imports"].as_array().context("imports array")?;
        ensure!(
            imports
                .iter()
                .any(|i| i.as_str().is_some_and(|s| s.starts_with("wasi:"))),
            "expected WASI imports, got {v}"
        );
        Ok(())
    }

    #[test]
    fn inspect_of_an_unknown_provider_names_the_known_ones() -> Result<()> {
        let data = tempfile::tempdir()?;
        let out = tessera(data.path(), &["provider", "inspect", "nope"])?;
        assert!(!out.status.success());
        let err = stderr(&out);
        ensure!(
            err.contains("no provider `nope`") && err.contains("github"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn check_passes_for_every_builtin() -> Result<()> {
        let data = tempfile::tempdir()?;
        for id in BUILTINS {
            let file = component("providers", id)?;
            let out = tessera(data.path(), &["provider", "check", &file.to_string_lossy()])?;
            let text = stdout(&out);
            ensure!(
                out.status.success(),
                "{id} failed conformance:\n{text}{}",
                stderr(&out)
            );
            ensure!(text.contains(" 0 failed"), "{text}");
            ensure!(!text.contains("FAIL"), "{text}");
        }
        Ok(())
    }

    #[test]
    fn check_fails_with_a_table_for_a_sloppy_component() -> Result<()> {
        let data = tempfile::tempdir()?;
        let file = component("test-components", "sloppy")?;
        let out = tessera(
            data.path(),
            &["provider", "check", &file.to_string_lossy(), "--json"],
        )?;
        assert!(
            !out.status.success(),
            "a sloppy component must fail the suite"
        );
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let cases = v[0]["cases"].as_array().context("cases")?;
        let failed: Vec<&str> = cases
            .iter()
            .filter(|c| c["outcome"] == "fail")
            .filter_map(|c| c["name"].as_str())
            .collect();
        // The sloppy component ignores `state`, skips PKCE and signs for any host.
        for expected in [
            "callback: state mismatch is refused",
            "sign: nothing injected for an undeclared host",
            "sign: look-alike host is not allowed",
        ] {
            ensure!(
                failed.contains(&expected),
                "`{expected}` should fail; failed: {failed:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn check_refuses_an_unsupported_contract_version_and_lists_supported_ones() -> Result<()> {
        let data = tempfile::tempdir()?;
        let file = component("test-components", "future_contract")?;
        let out = tessera(data.path(), &["provider", "check", &file.to_string_lossy()])?;
        assert!(!out.status.success());
        let err = stderr(&out);
        ensure!(err.contains("9.0.0") && err.contains("0.1.x"), "{err}");
        Ok(())
    }

    #[test]
    fn new_scaffolds_providers_that_build_and_pass_check_unchanged() -> Result<()> {
        let work = tempfile::tempdir()?;
        for (name, kind) in [("acme-oauth", "oauth2"), ("acme-key", "api-key")] {
            let dir = work.path().join(name);
            let out = tessera(
                work.path(),
                &[
                    "provider",
                    "new",
                    name,
                    "--kind",
                    kind,
                    "--dir",
                    &dir.to_string_lossy(),
                ],
            )?;
            ensure!(out.status.success(), "new failed: {}", stderr(&out));
            let wasm = work.path().join(format!("{name}.wasm"));
            let built = Command::new(env!("CARGO"))
                .current_dir(root())
                .args(["xtask", "component", "--manifest-path"])
                .arg(dir.join("Cargo.toml"))
                .arg("--out")
                .arg(&wasm)
                .output()?;
            ensure!(
                built.status.success(),
                "scaffold did not build: {}",
                stderr(&built)
            );
            let out = tessera(work.path(), &["provider", "check", &wasm.to_string_lossy()])?;
            ensure!(
                out.status.success(),
                "scaffold {kind} fails check:\n{}{}",
                stdout(&out),
                stderr(&out)
            );
        }
        let again = tessera(
            work.path(),
            &[
                "provider",
                "new",
                "acme-key",
                "--dir",
                &work.path().join("acme-key").to_string_lossy(),
            ],
        )?;
        ensure!(
            !again.status.success(),
            "scaffolding over an existing crate must be refused"
        );
        let bad = tessera(work.path(), &["provider", "new", "Bad Name"])?;
        ensure!(
            !bad.status.success() && stderr(&bad).contains("lower-case"),
            "{}",
            stderr(&bad)
        );
        Ok(())
    }
}

/// Runs `tessera --data-dir DIR ARGS…` with `envs` set and the master key and database URL
/// taken from `envs` only.
fn tessera_env(data_dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(tessera_bin()?);
    cmd.arg("--data-dir").arg(data_dir).args(args);
    cmd.env_remove("TESSERA_MASTER_KEY")
        .env_remove("TESSERA_DATABASE_URL")
        .env_remove("TESSERA_CONFIG")
        .env_remove("TESSERA_PROVIDERS_DIR");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Ok(cmd.output()?)
}

/// `tessera init`, then `tessera app create billing`; returns the app as JSON.
fn init_with_app(dir: &Path, env: &[(&str, &str)]) -> Result<Value> {
    json_of(&tessera_env(dir, env, &["init", "--json"])?)?;
    json_of(&tessera_env(
        dir,
        env,
        &["app", "create", "billing", "--json"],
    )?)
}

/// Runs the same scenario on SQLite and on a fresh PostgreSQL database.
fn on_both_backends(scenario: impl Fn(&Path, &[(&str, &str)]) -> Result<()>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for backend in [BackendKind::Sqlite, BackendKind::Postgres] {
        let db = rt
            .block_on(TestDb::new(backend))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let data = tempfile::tempdir()?;
        let dir = data.path().join("data");
        match db.config() {
            DatabaseConfig::Postgres { url } => scenario(&dir, &[("TESSERA_DATABASE_URL", url)]),
            DatabaseConfig::Sqlite { .. } => scenario(&dir, &[]),
        }
        .with_context(|| format!("on {backend:?}"))?;
        drop(db);
    }
    Ok(())
}

/// Managed secrets, grants, retrieve and proxy through the SDK (tests/cli/calls.rs).
#[path = "cli/calls.rs"]
mod calls;

/// The `oidc-provider` test peer (tests/peers/oidc-server.mjs), its login pages driven over HTTP.
#[path = "cli/oidc_peer.rs"]
mod oidc_peer;

/// OAuth connect end to end: consent page, the peer's login, callback, the grant in use
/// (tests/cli/oauth_connect.rs).
#[path = "cli/oauth_connect.rs"]
mod oauth_connect;

/// OAuth refresh end to end: expiry, a provider 401, a dead refresh token, three instances
/// (tests/cli/oauth_refresh.rs).
#[path = "cli/oauth_refresh.rs"]
mod oauth_refresh;

/// An app's identity provider and the user-token verifier (tests/cli/idp.rs).
#[path = "cli/idp.rs"]
mod idp;

/// `tessera provider configure|config|unconfigure` (tests/cli/provider_config.rs).
#[path = "cli/provider_config.rs"]
mod provider_config;

/// `tessera agent …` and the agents API: agent keys, disabled agents, an agent's own audit
/// trail (tests/cli/agents.rs).
#[path = "cli/agents.rs"]
mod agents;

/// Grant resolution without a grant id: user tokens, groups, the provider from the URL's
/// host, account labels, and the refusals (tests/cli/resolution.rs).
#[path = "cli/resolution.rs"]
mod resolution;

/// Delegations of grants to agents: the isolation matrix, delegations made and ended every
/// way, the CLI (tests/cli/delegations.rs).
#[path = "cli/delegations.rs"]
mod delegations;

/// `tessera policy rules …`: one rule of each kind through its life, bad input refused with
/// the reason, every change audited (tests/cli/policy_cli.rs).
#[path = "cli/policy_cli.rs"]
mod policy_cli;

/// Policy rules decided on real calls: the documented examples, audit, trusted proxies
/// (tests/cli/policy.rs).
#[path = "cli/policy.rs"]
mod policy;

/// Human-in-the-loop approvals on real calls: held, shown, approved once or denied, the
/// SDK waiting, altered bytes refused, expiry (tests/cli/approvals.rs).
#[path = "cli/approvals.rs"]
mod approvals;

/// Webhooks: signed events for grants and approvals, retried, verifiable with the SDK
/// (tests/cli/webhooks.rs).
#[path = "cli/webhooks.rs"]
mod webhooks;

/// The wallet's sign-in and API: a user's own grants, revoked from the browser side
/// (tests/cli/wallet.rs).
#[path = "cli/wallet.rs"]
mod wallet;

mod init {
    use super::*;

    fn init(data_dir: &Path, envs: &[(&str, &str)]) -> Result<Output> {
        tessera_env(data_dir, envs, &["init", "--json"])
    }

    #[test]
    fn init_creates_an_owner_only_key_file_and_a_first_data_key_and_is_idempotent() -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        on_both_backends(|dir, env| {
            let first = json_of(&init(dir, env)?)?;
            assert_eq!(first["initialised_now"], true);
            assert_eq!(first["master_key_created"], true);
            assert_eq!(first["data_key_versions"], serde_json::json!([1]));
            let key = dir.join("master.key");
            assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(dir)?.permissions().mode() & 0o777, 0o700);
            let again = json_of(&init(dir, env)?)?;
            assert_eq!(again["initialised_now"], false);
            assert_eq!(again["master_key_created"], false);
            assert_eq!(
                again["master_key_fingerprint"],
                first["master_key_fingerprint"]
            );
            assert_eq!(again["data_key_versions"], serde_json::json!([1]));
            Ok(())
        })
    }

    #[test]
    fn init_refuses_a_master_key_the_database_was_not_set_up_with() -> Result<()> {
        on_both_backends(|dir, env| {
            json_of(&init(dir, env)?)?;
            let other = "ab".repeat(32);
            let mut with_key = env.to_vec();
            with_key.push(("TESSERA_MASTER_KEY", &other));
            let out = init(dir, &with_key)?;
            ensure!(!out.status.success(), "a foreign master key was accepted");
            let err = stderr(&out);
            ensure!(err.contains("another master key"), "{err}");
            ensure!(!err.contains(&other), "the error echoes the key: {err}");
            Ok(())
        })
    }

    #[test]
    fn a_world_readable_key_file_is_refused() -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let data = tempfile::tempdir()?;
        let dir = data.path().join("data");
        json_of(&init(&dir, &[])?)?;
        std::fs::set_permissions(
            dir.join("master.key"),
            std::fs::Permissions::from_mode(0o644),
        )?;
        let out = init(&dir, &[])?;
        ensure!(!out.status.success());
        ensure!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
        Ok(())
    }
}

mod serve {
    use super::*;

    pub(super) struct Host {
        pub(super) child: Child,
        pub(super) addr: String,
    }

    impl Drop for Host {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Sets up `data_dir` (`tessera init`) and starts `tessera serve` on it.
    fn start(data_dir: &Path, providers_dir: &Path) -> Result<Host> {
        let init = tessera_env(data_dir, &[], &["init"])?;
        ensure!(init.status.success(), "{}", stderr(&init));
        start_with(data_dir, Some(providers_dir), &[])
    }

    /// Starts `tessera serve` on a set-up `data_dir` with `envs` (the master key and
    /// database URL come from `envs` only) and reads the address it prints.
    pub(super) fn start_with(
        data_dir: &Path,
        providers_dir: Option<&Path>,
        envs: &[(&str, &str)],
    ) -> Result<Host> {
        start_on(data_dir, providers_dir, envs, "127.0.0.1:0")
    }

    /// [`start_with`] on the address `listen` (for a peer that must know the host's origin
    /// before it starts).
    pub(super) fn start_listening(
        data_dir: &Path,
        envs: &[(&str, &str)],
        listen: &str,
    ) -> Result<Host> {
        start_on(data_dir, None, envs, listen)
    }

    fn start_on(
        data_dir: &Path,
        providers_dir: Option<&Path>,
        envs: &[(&str, &str)],
        listen: &str,
    ) -> Result<Host> {
        let mut cmd = Command::new(tessera_bin()?);
        cmd.arg("--data-dir").arg(data_dir);
        if let Some(dir) = providers_dir {
            cmd.arg("--providers-dir").arg(dir);
        }
        cmd.args(["serve", "--listen", listen])
            .env("TESSERA_LOG", "warn")
            .env_remove("TESSERA_MASTER_KEY")
            .env_remove("TESSERA_DATABASE_URL")
            .env_remove("TESSERA_CONFIG")
            .env_remove("TESSERA_PROVIDERS_DIR")
            .env_remove("TESSERA_PUBLIC_URL")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let out = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("no address in {line:?}"))?
            .to_string();
        Ok(Host { child, addr })
    }

    fn get(addr: &str, path: &str) -> Result<(u16, Value)> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw)?;
        let status = raw.split_whitespace().nth(1).context("status")?.parse()?;
        let body = raw.split("\r\n\r\n").nth(1).context("body")?;
        // The body may be chunked; the JSON object is between the first `{` and last `}`.
        let json = &body[body.find('{').context("json")?..=body.rfind('}').context("json")?];
        Ok((status, serde_json::from_str(json)?))
    }

    fn providers(addr: &str) -> Result<Vec<String>> {
        let (status, v) = get(addr, "/readyz")?;
        ensure!(status == 200, "readyz {status}");
        Ok(v["providers"]
            .as_array()
            .context("providers")?
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect())
    }

    fn wait_for(addr: &str, what: &str, pred: impl Fn(&[String]) -> bool) -> Result<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = providers(addr)?;
            if pred(&list) {
                return Ok(list);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}; providers: {list:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn serve_answers_health_and_picks_up_a_component_dropped_in_while_running() -> Result<()> {
        let data = tempfile::tempdir()?;
        let dir = tempfile::tempdir()?;
        let host = start(data.path(), dir.path())?;
        let (status, health) = get(&host.addr, "/healthz")?;
        assert_eq!(status, 200);
        assert_eq!(health["status"], "ok");
        let list = providers(&host.addr)?;
        for id in BUILTINS {
            ensure!(list.iter().any(|p| p == id), "{id} not served: {list:?}");
        }
        ensure!(!list.iter().any(|p| p == "sloppy"), "{list:?}");

        // An operator drops a new component in while the host runs.
        std::fs::copy(
            component("test-components", "sloppy")?,
            dir.path().join("sloppy.wasm"),
        )?;
        wait_for(&host.addr, "the dropped-in component", |l| {
            l.iter().any(|p| p == "sloppy")
        })?;

        // A broken replacement never replaces the working one.
        std::fs::write(dir.path().join("sloppy.wasm"), b"\0asm broken")?;
        std::thread::sleep(Duration::from_millis(2500));
        let list = providers(&host.addr)?;
        ensure!(
            list.iter().any(|p| p == "sloppy"),
            "a broken file replaced a working provider: {list:?}"
        );
        Ok(())
    }

    #[test]
    fn serves_an_openapi_3_1_document_of_exactly_the_routes_it_serves() -> Result<()> {
        let data = tempfile::tempdir()?;
        let dir = tempfile::tempdir()?;
        let host = start(data.path(), dir.path())?;
        let (status, doc) = get(&host.addr, "/openapi.json")?;
        assert_eq!(status, 200);
        let version = doc["openapi"].as_str().context("no `openapi` field")?;
        ensure!(version.starts_with("3.1"), "openapi {version}");

        // The status of an unsigned, empty-bodied request.
        let status_of = |method: &str, path: &str| -> Result<u16> {
            let mut stream = TcpStream::connect(&host.addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                stream,
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                host.addr
            )?;
            let mut raw = String::new();
            stream.read_to_string(&mut raw)?;
            Ok(raw.split_whitespace().nth(1).context("status")?.parse()?)
        };
        let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().context("paths")? {
            // `{id}` and the like: any value reaches the route (unsigned, it is refused first).
            let target: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            for method in methods {
                let status = status_of(method, &target)?;
                if item.get(method.to_lowercase()).is_some() {
                    documented.push((method.to_owned(), path.clone()));
                    // A documented operation reaches its handler: never the fallbacks.
                    ensure!(status != 404 && status != 405, "{method} {path}: {status}");
                } else {
                    ensure!(
                        status == 405,
                        "{method} {path} is served but not documented"
                    );
                }
            }
        }
        documented.sort();
        // OpenAPI has no catch-all parameter: axum's `{*path}` is `{path}` there.
        let mut listed: Vec<(String, String)> = tessera_host::api::ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), p.replace("{*", "{")))
            .collect();
        listed.sort();
        assert_eq!(documented, listed);
        Ok(())
    }
}

mod api {
    //! The signed SDK API end to end: keys made with the CLI, requests signed by the
    //! independent Python signer (`tests/signing/signer.py`, written from `docs/SIGNING.md`),
    //! sent over raw HTTP/1.1 to a real `tessera serve`.
    //!
    //! No route needs a Tessera scope yet, so `insufficient_scope` is covered by the unit
    //! tests of `host/src/api` only.

    use super::*;

    /// A response as read off the socket.
    pub(super) struct Reply {
        pub(super) status: u16,
        content_type: String,
        pub(super) body: Value,
    }

    /// Sends `GET path` with `headers` (`Name: value` lines) over a fresh connection.
    pub(super) fn get(addr: &str, path: &str, headers: &[String]) -> Result<Reply> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for h in headers {
            request.push_str(h);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw)?;
        let (head, body) = raw.split_once("\r\n\r\n").context("no header end")?;
        let status = head.split_whitespace().nth(1).context("status")?.parse()?;
        let content_type = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        // The body may be chunked; the JSON is between the first `{`/`[` and the last `}`/`]`.
        let start = body.find(['{', '[']).context("no JSON in body")?;
        let end = body.rfind(['}', ']']).context("no JSON in body")?;
        Ok(Reply {
            status,
            content_type,
            body: serde_json::from_str(&body[start..=end])?,
        })
    }

    /// The signature headers for an empty-bodied `method url`, from the Python signer.
    pub(super) fn sign(key: &str, method: &str, url: &str) -> Result<Vec<String>> {
        let out = Command::new("python3")
            .arg(root().join("tests/signing/signer.py"))
            .args([
                "--api-key",
                key,
                "--method",
                method,
                "--url",
                url,
                "--body",
                "",
            ])
            .output()?;
        ensure!(out.status.success(), "signer: {}", stderr(&out));
        let headers: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        ensure!(headers.len() == 3, "signer printed {headers:?}");
        Ok(headers)
    }

    fn ensure_problem(reply: &Reply, status: u16, code: &str) -> Result<()> {
        ensure!(
            reply.status == status && reply.body["code"] == code,
            "expected {status} {code}, got {} {}",
            reply.status,
            reply.body
        );
        ensure!(
            reply.content_type == "application/problem+json",
            "content type {:?}",
            reply.content_type
        );
        ensure!(reply.body["status"] == status, "{}", reply.body);
        Ok(())
    }

    #[test]
    fn signed_requests_are_served_and_replayed_tampered_or_unsigned_ones_refused() -> Result<()> {
        on_both_backends(|dir, env| {
            let app = init_with_app(dir, env)?;
            let created = json_of(&tessera_env(
                dir,
                env,
                &[
                    "key",
                    "create",
                    "--app",
                    "billing",
                    "--scopes",
                    "proxy:execute",
                    "--json",
                ],
            )?)?;
            let key = created["key"].as_str().context("key")?;
            let host = serve::start_with(dir, None, env)?;
            let addr = host.addr.as_str();
            let whoami_url = format!("http://{addr}/v1/whoami");

            // (a) a signed request is served, and says who signed it.
            let signed = sign(key, "GET", &whoami_url)?;
            let ok = get(addr, "/v1/whoami", &signed)?;
            ensure!(ok.status == 200, "{} {}", ok.status, ok.body);
            ensure!(ok.body["app_id"] == app["id"], "{} vs {app}", ok.body);
            ensure!(ok.body["key_id"] == created["key_id"], "{}", ok.body);
            ensure!(ok.body["kind"] == "app", "{}", ok.body);
            ensure!(
                ok.body["scopes"] == serde_json::json!(["proxy:execute"]),
                "{}",
                ok.body
            );
            let keys = json_of(&tessera_env(
                dir,
                env,
                &["key", "list", "--app", "billing", "--json"],
            )?)?;
            ensure!(
                keys[0]["last_used_at"].is_string(),
                "use not recorded: {keys}"
            );

            // (b) the very same headers again are a replay.
            ensure_problem(&get(addr, "/v1/whoami", &signed)?, 401, "nonce_replayed")?;

            // (c) a signature for one path does not authorise another.
            let for_whoami = sign(key, "GET", &whoami_url)?;
            ensure_problem(
                &get(addr, "/v1/providers", &for_whoami)?,
                401,
                "signature_invalid",
            )?;

            // (d) no signature at all.
            ensure_problem(&get(addr, "/v1/whoami", &[])?, 401, "signature_missing")?;

            // The catalogue, with a fresh signature; health stays open; unknown paths are 404.
            let url = format!("http://{addr}/v1/providers");
            let list = get(addr, "/v1/providers", &sign(key, "GET", &url)?)?;
            ensure!(list.status == 200, "{} {}", list.status, list.body);
            let ids: Vec<&str> = list
                .body
                .as_array()
                .context("array")?
                .iter()
                .filter_map(|p| p["id"].as_str())
                .collect();
            for id in BUILTINS {
                ensure!(ids.contains(id), "{id} missing from {ids:?}");
            }
            ensure!(get(addr, "/healthz", &[])?.status == 200);
            ensure_problem(&get(addr, "/v1/nope", &[])?, 404, "not_found")?;
            Ok(())
        })
    }

    #[test]
    fn serve_on_a_directory_that_is_not_set_up_says_to_run_init() -> Result<()> {
        let data = tempfile::tempdir()?;
        let out = tessera_env(
            &data.path().join("data"),
            &[],
            &["serve", "--listen", "127.0.0.1:0"],
        )?;
        ensure!(!out.status.success(), "{}", stdout(&out));
        ensure!(
            stderr(&out).contains("run `tessera init`"),
            "{}",
            stderr(&out)
        );
        Ok(())
    }
}

mod apps_and_keys {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use tessera_proto::scopes::Scope;
    use tessera_proto::signing::{ApiKey, KeyKind};

    fn failure(out: &Output) -> Result<String> {
        ensure!(
            !out.status.success(),
            "expected a failure, got: {}",
            stdout(out)
        );
        Ok(stderr(out))
    }

    #[test]
    fn created_key_parses_and_is_never_listed() -> Result<()> {
        on_both_backends(|dir, env| {
            init_with_app(dir, env)?;
            let apps = json_of(&tessera_env(dir, env, &["app", "list", "--json"])?)?;
            ensure!(apps[0]["name"] == "billing", "{apps}");

            let created = json_of(&tessera_env(
                dir,
                env,
                &[
                    "key",
                    "create",
                    "--app",
                    "billing",
                    "--scopes",
                    "proxy:execute,tokens:retrieve",
                    "--json",
                ],
            )?)?;
            let text = created["key"].as_str().context("key")?;
            let key = ApiKey::parse(text)?;
            ensure!(key.kind() == KeyKind::App && text.starts_with("tsr_app_"));
            ensure!(created["key_id"] == key.key_id().as_str(), "{created}");
            ensure!(created["app"] == "billing", "{created}");
            ensure!(
                created["scopes"] == serde_json::json!(["tokens:retrieve", "proxy:execute"]),
                "{created}"
            );
            ensure!(created["fingerprint"] == key.fingerprint().as_str());

            // The human form says the key is shown once, and shows it on a line of its own.
            let human = tessera_env(
                dir,
                env,
                &[
                    "key",
                    "create",
                    "--app",
                    "billing",
                    "--agent",
                    "mailbot",
                    "--scopes",
                    "proxy:execute",
                ],
            )?;
            ensure!(human.status.success(), "{}", stderr(&human));
            let shown = stdout(&human);
            ensure!(shown.contains("shown ONCE"), "{shown}");
            let agent_key = shown
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("tsr_agent_"))
                .context("no key line")?;
            ensure!(ApiKey::parse(agent_key)?.kind() == KeyKind::Agent);

            for args in [
                &["key", "list", "--app", "billing", "--json"][..],
                &["key", "list", "--app", "billing"][..],
            ] {
                let out = tessera_env(dir, env, args)?;
                ensure!(out.status.success(), "{}", stderr(&out));
                let listed = stdout(&out);
                for secret in [text, agent_key] {
                    ensure!(!listed.contains(secret), "key list shows a key: {listed}");
                    let tail = &secret[secret.len() - 43..];
                    ensure!(!listed.contains(tail), "key list shows a secret: {listed}");
                }
            }
            let listed = json_of(&tessera_env(
                dir,
                env,
                &["key", "list", "--app", "billing", "--json"],
            )?)?;
            let listed = listed.as_array().context("array")?;
            ensure!(listed.len() == 2, "{listed:?}");
            ensure!(listed[1]["agent"] == "mailbot" && listed[1]["kind"] == "agent");

            let revoked = json_of(&tessera_env(
                dir,
                env,
                &["key", "revoke", key.key_id().as_str(), "--json"],
            )?)?;
            ensure!(revoked["revoked_at"].is_string(), "{revoked}");
            ensure!(revoked["already_revoked"] == false, "{revoked}");
            let again = json_of(&tessera_env(
                dir,
                env,
                &["key", "revoke", key.key_id().as_str(), "--json"],
            )?)?;
            ensure!(again["already_revoked"] == true, "{again}");
            Ok(())
        })
    }

    #[test]
    fn duplicate_app_unknown_app_and_unknown_scope_are_clear_errors() -> Result<()> {
        on_both_backends(|dir, env| {
            init_with_app(dir, env)?;
            let err = failure(&tessera_env(dir, env, &["app", "create", "billing"])?)?;
            ensure!(err.contains("app \"billing\" already exists"), "{err}");

            let err = failure(&tessera_env(
                dir,
                env,
                &["key", "create", "--app", "ghost", "--scopes", "audit:read"],
            )?)?;
            ensure!(err.contains("\"ghost\""), "{err}");
            let err = failure(&tessera_env(dir, env, &["key", "list", "--app", "ghost"])?)?;
            ensure!(err.contains("\"ghost\""), "{err}");

            let err = failure(&tessera_env(
                dir,
                env,
                &[
                    "key",
                    "create",
                    "--app",
                    "billing",
                    "--scopes",
                    "audit:read,tokens:steal",
                ],
            )?)?;
            ensure!(err.contains("\"tokens:steal\""), "{err}");
            for scope in Scope::ALL {
                ensure!(err.contains(scope.as_str()), "{err} does not list {scope}");
            }
            let err = failure(&tessera_env(
                dir,
                env,
                &["key", "revoke", "0123456789abcdef"],
            )?)?;
            ensure!(err.contains("0123456789abcdef"), "{err}");
            Ok(())
        })
    }

    #[test]
    fn commands_before_init_say_to_run_init() -> Result<()> {
        on_both_backends(|dir, env| {
            let err = failure(&tessera_env(dir, env, &["app", "list"])?)?;
            ensure!(err.contains("tessera init"), "{err}");
            Ok(())
        })
    }

    /// Every form in which the key, or something that would let one sign as it, could
    /// leak: the key string, its base64url secret, the secret bytes (raw and hex), and the
    /// derived signing key (raw and hex).
    fn canaries(text: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let key = ApiKey::parse(text)?;
        let secret_b64 = &text[text.len() - 43..];
        let secret = URL_SAFE_NO_PAD.decode(secret_b64)?;
        let signing = key.signing_key().as_bytes().to_vec();
        Ok(vec![
            ("key string".into(), text.as_bytes().to_vec()),
            ("base64url secret".into(), secret_b64.as_bytes().to_vec()),
            ("secret bytes".into(), secret.clone()),
            ("secret hex".into(), hex::encode(&secret).into_bytes()),
            ("signing key bytes".into(), signing.clone()),
            ("signing key hex".into(), hex::encode(&signing).into_bytes()),
        ])
    }

    pub(super) fn hits(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }

    /// Every column of every row of every table, as text (bytea as `\x…` hex).
    pub(super) fn postgres_dump(url: &str) -> Result<Vec<u8>> {
        use sqlx::Connection as _;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public' ORDER BY 1",
            )
            .fetch_all(&mut conn)
            .await?;
            ensure!(tables.iter().any(|t| t == "api_keys"), "{tables:?}");
            let mut dump = Vec::new();
            for table in tables {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                        .fetch_all(&mut conn)
                        .await?;
                if table == "api_keys" {
                    ensure!(rows.len() == 2, "api_keys has {} rows", rows.len());
                }
                for row in rows {
                    dump.extend_from_slice(row.as_bytes());
                    dump.push(b'\n');
                }
            }
            // The sealed column as raw bytes too, not only as hex text.
            let sealed: Vec<Vec<u8>> = sqlx::query_scalar("SELECT verifier FROM api_keys")
                .fetch_all(&mut conn)
                .await?;
            for bytes in sealed {
                dump.extend_from_slice(&bytes);
            }
            conn.close().await?;
            Ok(dump)
        })
    }

    /// All bytes of every file in the data directory (database, WAL, shared memory).
    pub(super) fn files_under(dir: &Path) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_file() {
                all.extend(std::fs::read(&path)?);
            }
        }
        Ok(all)
    }

    #[test]
    fn created_key_appears_nowhere_in_the_database() -> Result<()> {
        on_both_backends(|dir, env| {
            init_with_app(dir, env)?;
            let mut keys = Vec::new();
            for extra in [&[][..], &["--agent", "bot"][..]] {
                let mut args = vec![
                    "key",
                    "create",
                    "--app",
                    "billing",
                    "--scopes",
                    "proxy:execute",
                    "--json",
                ];
                args.extend_from_slice(extra);
                let created = json_of(&tessera_env(dir, env, &args)?)?;
                keys.push(created["key"].as_str().context("key")?.to_owned());
            }
            let url = env
                .iter()
                .find(|(k, _)| *k == "TESSERA_DATABASE_URL")
                .map(|(_, v)| *v);
            let sqlite_file = dir.join("tessera.db");
            let haystack = if let Some(url) = url {
                postgres_dump(url)?
            } else {
                ensure!(sqlite_file.is_file(), "no SQLite file");
                files_under(dir)?
            };
            ensure!(haystack.len() > 1000, "suspiciously small dump");
            // The check can see what it looks for: the stored key id and fingerprint are there.
            let key = ApiKey::parse(&keys[0])?;
            ensure!(hits(&haystack, key.key_id().as_str().as_bytes()) > 0);
            ensure!(hits(&haystack, key.fingerprint().as_bytes()) > 0);
            for text in &keys {
                for (what, needle) in canaries(text)? {
                    let n = hits(&haystack, &needle);
                    ensure!(n == 0, "{what} found {n} times in the database");
                }
            }
            Ok(())
        })
    }
}

mod keys_cli {
    //! `tessera keys rotate` and `tessera keys status` end to end, including a rotation
    //! while `tessera serve` runs on the same database.

    use super::*;

    fn create_key(dir: &Path, env: &[(&str, &str)]) -> Result<Value> {
        json_of(&tessera_env(
            dir,
            env,
            &[
                "key",
                "create",
                "--app",
                "billing",
                "--scopes",
                "audit:read",
                "--json",
            ],
        )?)
    }

    /// Signs `GET /v1/whoami` with `key` and sends it to the host at `addr`.
    fn whoami(addr: &str, key: &str) -> Result<api::Reply> {
        let url = format!("http://{addr}/v1/whoami");
        api::get(addr, "/v1/whoami", &api::sign(key, "GET", &url)?)
    }

    #[test]
    fn rotate_reseals_every_value_and_resume_adds_no_version() -> Result<()> {
        on_both_backends(|dir, env| {
            init_with_app(dir, env)?;
            create_key(dir, env)?;
            create_key(dir, env)?;

            let out = tessera_env(dir, env, &["keys", "rotate", "--batch", "1", "--json"])?;
            let report = json_of(&out)?;
            ensure!(report["version"] == 2, "{report}");
            ensure!(report["new_version"] == true, "{report}");
            ensure!(report["resealed"] == 2, "{report}");
            ensure!(report["remaining"] == 0, "{report}");
            ensure!(report["unreadable"] == serde_json::json!([]), "{report}");
            let columns = report["columns"].as_array().context("columns")?;
            let verifier = columns
                .iter()
                .find(|c| c["column"] == "api_keys.verifier")
                .context("no api_keys.verifier in the report")?;
            ensure!(verifier["resealed"] == 2, "{report}");
            ensure!(
                stderr(&out).contains("resealed 2/2"),
                "no progress on stderr: {}",
                stderr(&out)
            );

            let status = json_of(&tessera_env(dir, env, &["keys", "status", "--json"])?)?;
            ensure!(status["current_version"] == 2, "{status}");
            ensure!(status["pending"] == 0, "{status}");
            let versions = status["versions"].as_array().context("versions")?;
            ensure!(versions.len() == 2, "{status}");
            ensure!(versions[0]["sealed"]["api_keys.verifier"] == 0, "{status}");
            ensure!(versions[1]["sealed"]["api_keys.verifier"] == 2, "{status}");
            ensure!(versions[1]["current"] == true, "{status}");

            // Resuming a finished rotation adds no version and re-seals nothing.
            let resumed = json_of(&tessera_env(
                dir,
                env,
                &["keys", "rotate", "--resume", "--json"],
            )?)?;
            ensure!(resumed["version"] == 2, "{resumed}");
            ensure!(resumed["new_version"] == false, "{resumed}");
            ensure!(resumed["resealed"] == 0, "{resumed}");

            // The human forms.
            let human = tessera_env(dir, env, &["keys", "status"])?;
            ensure!(human.status.success(), "{}", stderr(&human));
            ensure!(
                stdout(&human).contains("current data key version: 2"),
                "{}",
                stdout(&human)
            );
            let rotated = tessera_env(dir, env, &["keys", "rotate"])?;
            ensure!(rotated.status.success(), "{}", stderr(&rotated));
            ensure!(
                stdout(&rotated).contains("every sealed value now uses data key version 3"),
                "{}",
                stdout(&rotated)
            );
            Ok(())
        })
    }

    #[test]
    fn a_running_host_keeps_verifying_a_key_resealed_by_a_rotation() -> Result<()> {
        on_both_backends(|dir, env| {
            init_with_app(dir, env)?;
            let created = create_key(dir, env)?;
            let key = created["key"].as_str().context("key")?;
            let host = serve::start_with(dir, None, env)?;
            let addr = host.addr.as_str();
            let before = whoami(addr, key)?;
            ensure!(before.status == 200, "{} {}", before.status, before.body);

            // Rotated while the host serves: the key's sealed signing key now names data key
            // version 2, which the host did not load at start.
            let report = json_of(&tessera_env(dir, env, &["keys", "rotate", "--json"])?)?;
            ensure!(
                report["version"] == 2 && report["resealed"] == 1,
                "{report}"
            );

            let after = whoami(addr, key)?;
            ensure!(after.status == 200, "{} {}", after.status, after.body);
            ensure!(after.body["key_id"] == created["key_id"], "{}", after.body);

            // A key created after the rotation (sealed with version 2) verifies too.
            let fresh = create_key(dir, env)?;
            let reply = whoami(addr, fresh["key"].as_str().context("key")?)?;
            ensure!(reply.status == 200, "{} {}", reply.status, reply.body);
            Ok(())
        })
    }
}

mod audit_cli {
    use std::sync::mpsc;

    use super::*;
    use tessera_host::audit::testing::{break_audit_writes, repair_audit_writes};
    use tessera_host::store::Store;
    use tessera_proto::audit::AuditEvent;
    use tessera_proto::signing::ApiKey;

    fn database_url<'a>(env: &[(&'a str, &'a str)]) -> Option<&'a str> {
        env.iter()
            .find(|(k, _)| *k == "TESSERA_DATABASE_URL")
            .map(|(_, v)| *v)
    }

    /// Runs `f` on a store opened on the scenario's database (the CLI's, not a copy).
    fn with_store(
        dir: &Path,
        env: &[(&str, &str)],
        f: impl AsyncFnOnce(&Store) -> Result<()>,
    ) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let config = DatabaseConfig::from_url_or_data_dir(database_url(env), dir)?;
            let store = Store::open(&config).await?;
            let result = f(&store).await;
            store.close().await;
            result
        })
    }

    /// Runs one SQL statement on the scenario's database, as someone tampering with it.
    fn tamper(dir: &Path, env: &[(&str, &str)], statement: &str) -> Result<u64> {
        use sqlx::{ConnectOptions as _, Connection as _};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let n = if let Some(url) = database_url(env) {
                let mut conn = sqlx::PgConnection::connect(url).await?;
                let n = sqlx::query(statement)
                    .execute(&mut conn)
                    .await?
                    .rows_affected();
                conn.close().await?;
                n
            } else {
                let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.join("tessera.db"))
                    .connect()
                    .await?;
                let n = sqlx::query(statement)
                    .execute(&mut conn)
                    .await?
                    .rows_affected();
                conn.close().await?;
                n
            };
            Ok(n)
        })
    }

    fn create_key(dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> Result<Value> {
        let mut args = vec!["key", "create", "--app", "billing", "--json"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--scopes") {
            args.extend_from_slice(&["--scopes", "proxy:execute"]);
        }
        json_of(&tessera_env(dir, env, &args)?)
    }

    /// Standard output as JSON lines.
    fn json_lines(out: &Output) -> Result<Vec<Value>> {
        ensure!(out.status.success(), "tessera failed: {}", stderr(out));
        stdout(out)
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect()
    }

    fn verify_json(dir: &Path, env: &[(&str, &str)]) -> Result<(bool, Value)> {
        let out = tessera_env(dir, env, &["audit", "verify", "--json"])?;
        let report: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("not JSON: {} {}", stdout(&out), stderr(&out)))?;
        ensure!(
            out.status.success() == (report["ok"] == true),
            "exit code disagrees with the report: {report}"
        );
        Ok((out.status.success(), report))
    }

    /// `audit export` (to a file and to standard output, filtered) writes exactly the
    /// rows `tail --json` showed, as the wire type.
    fn exports_match_the_tail(dir: &Path, env: &[(&str, &str)], rows: &[Value]) -> Result<()> {
        // Export to a file: the same rows, as the wire type.
        let file = dir.with_extension("jsonl");
        let file_arg = file.to_str().context("path")?;
        let out = tessera_env(
            dir,
            env,
            &["audit", "export", "--format", "jsonl", "--output", file_arg],
        )?;
        ensure!(out.status.success(), "{}", stderr(&out));
        ensure!(
            stdout(&out).contains(&format!("exported {} audit rows", rows.len())),
            "{}",
            stdout(&out)
        );
        let exported: Vec<AuditEvent> = std::fs::read_to_string(&file)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        ensure!(exported.len() == rows.len());
        ensure!(serde_json::to_value(&exported)? == Value::Array(rows.to_vec()));

        // Export to standard output, filtered; the count goes to standard error.
        let out = tessera_env(dir, env, &["audit", "export", "--app", "billing"])?;
        ensure!(json_lines(&out)?.len() == rows.len());
        ensure!(
            stderr(&out).contains(&format!("exported {} audit rows", rows.len())),
            "{}",
            stderr(&out)
        );
        for (args, expected) in [
            (&["--app", "00000000-0000-7000-8000-000000000000"][..], 0),
            (&["--since", "2999-01-01"][..], 0),
            (&["--until", "2000-01-01T00:00:00Z"][..], 0),
            (&["--since", "2000-01-01T00:00:00+01:00"][..], rows.len()),
        ] {
            let mut full = vec!["audit", "export"];
            full.extend_from_slice(args);
            let n = json_lines(&tessera_env(dir, env, &full)?)?.len();
            ensure!(n == expected, "{args:?}: {n} rows");
        }
        let out = tessera_env(dir, env, &["audit", "export", "--since", "yesterday"])?;
        ensure!(!out.status.success());
        ensure!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));
        Ok(())
    }

    #[test]
    fn key_changes_are_audited_tailed_exported_and_verified() -> Result<()> {
        on_both_backends(|dir, env| {
            let app = init_with_app(dir, env)?;
            let app_id = app["id"].as_str().context("app id")?;
            let first = create_key(dir, env, &[])?;
            let second = create_key(
                dir,
                env,
                &["--agent", "bot", "--scopes", "tokens:retrieve,audit:read"],
            )?;
            let first_id = first["key_id"].as_str().context("key_id")?;
            json_of(&tessera_env(
                dir,
                env,
                &["key", "revoke", first_id, "--json"],
            )?)?;
            // Revoking again changes nothing and records nothing.
            json_of(&tessera_env(
                dir,
                env,
                &["key", "revoke", first_id, "--json"],
            )?)?;

            let tail = tessera_env(dir, env, &["audit", "tail", "--json"])?;
            let rows = json_lines(&tail)?;
            let actions: Vec<_> = rows.iter().map(|r| r["action"].clone()).collect();
            // The agent named by the second key is created with it, and audited.
            ensure!(
                actions == ["key.create", "agent.create", "key.create", "key.revoke"],
                "{actions:?}"
            );
            for (i, row) in rows.iter().enumerate() {
                ensure!(row["seq"] == i + 1, "{row}");
                ensure!(row["actor_kind"] == "operator", "{row}");
                ensure!(row["detail"]["via"] == "cli", "{row}");
                ensure!(row["app_id"] == app_id, "{row}");
                ensure!(row["outcome"] == "ok", "{row}");
            }
            ensure!(rows[0]["prev_hash"] == "0".repeat(64), "{}", rows[0]);
            ensure!(rows[1]["prev_hash"] == rows[0]["hash"]);
            ensure!(rows[2]["prev_hash"] == rows[1]["hash"]);
            ensure!(rows[3]["prev_hash"] == rows[2]["hash"]);
            ensure!(rows[0]["detail"]["key_id"] == first["key_id"]);
            ensure!(rows[1]["detail"]["name"] == "bot", "{}", rows[1]);
            ensure!(rows[2]["detail"]["agent"] == "bot", "{}", rows[2]);
            ensure!(rows[3]["detail"]["key_id"] == first["key_id"]);
            // No key material in the log.
            let all = stdout(&tail);
            for created in [&first, &second] {
                let text = created["key"].as_str().context("key")?;
                ApiKey::parse(text)?;
                ensure!(
                    !all.contains(&text[text.len() - 43..]),
                    "a key secret is in the log"
                );
            }

            let last = json_lines(&tessera_env(
                dir,
                env,
                &["audit", "tail", "-n", "1", "--json"],
            )?)?;
            ensure!(last.len() == 1 && last[0]["seq"] == 4, "{last:?}");
            let human = tessera_env(dir, env, &["audit", "tail"])?;
            ensure!(human.status.success(), "{}", stderr(&human));
            let text = stdout(&human);
            ensure!(text.lines().count() == 4, "{text}");
            ensure!(
                text.contains("key.revoke") && text.contains("app=billing"),
                "{text}"
            );

            exports_match_the_tail(dir, env, &rows)?;

            let (ok, report) = verify_json(dir, env)?;
            ensure!(ok && report["rows"] == 4, "{report}");
            ensure!(report["last"]["seq"] == 4 && report["first_bad_seq"].is_null());
            let human = tessera_env(dir, env, &["audit", "verify"])?;
            ensure!(human.status.success(), "{}", stderr(&human));
            ensure!(
                stdout(&human).contains("audit log OK: 4 rows"),
                "{}",
                stdout(&human)
            );
            Ok(())
        })
    }

    #[test]
    fn verify_names_the_first_bad_row_and_exits_non_zero() -> Result<()> {
        on_both_backends(|dir, env| {
            init_with_app(dir, env)?;
            for _ in 0..4 {
                create_key(dir, env, &[])?;
            }
            ensure!(verify_json(dir, env)?.0);
            for (statement, seq, kind) in [
                ("DELETE FROM audit WHERE seq = 4", 4, "truncated"),
                ("DELETE FROM audit WHERE seq = 2", 2, "missing_row"),
                (
                    "UPDATE audit SET reason = 'routine' WHERE seq = 1",
                    1,
                    "hash_mismatch",
                ),
            ] {
                ensure!(tamper(dir, env, statement)? == 1, "{statement}");
                let (ok, report) = verify_json(dir, env)?;
                ensure!(!ok, "{statement}: {report}");
                ensure!(report["first_bad_seq"] == seq, "{statement}: {report}");
                ensure!(report["problem"]["kind"] == kind, "{statement}: {report}");
                let human = tessera_env(dir, env, &["audit", "verify"])?;
                ensure!(!human.status.success());
                ensure!(
                    stdout(&human).contains(&format!("first bad seq {seq}")),
                    "{}",
                    stdout(&human)
                );
            }
            Ok(())
        })
    }

    #[test]
    fn key_create_is_refused_when_its_audit_row_cannot_be_written() -> Result<()> {
        on_both_backends(|dir, env| {
            init_with_app(dir, env)?;
            with_store(dir, env, async |store| Ok(break_audit_writes(store).await?))?;
            let out = tessera_env(
                dir,
                env,
                &[
                    "key",
                    "create",
                    "--app",
                    "billing",
                    "--scopes",
                    "proxy:execute",
                ],
            )?;
            ensure!(
                !out.status.success(),
                "created without audit: {}",
                stdout(&out)
            );
            ensure!(
                stderr(&out).contains("audit log could not record"),
                "{}",
                stderr(&out)
            );
            ensure!(
                !stdout(&out).contains("tsr_"),
                "a key was shown: {}",
                stdout(&out)
            );
            let keys = json_of(&tessera_env(
                dir,
                env,
                &["key", "list", "--app", "billing", "--json"],
            )?)?;
            ensure!(keys == serde_json::json!([]), "a key was stored: {keys}");

            with_store(
                dir,
                env,
                async |store| Ok(repair_audit_writes(store).await?),
            )?;
            create_key(dir, env, &[])?;
            let (ok, report) = verify_json(dir, env)?;
            ensure!(ok && report["rows"] == 1, "{report}");
            Ok(())
        })
    }

    #[test]
    fn tail_follow_prints_new_rows_until_interrupted() -> Result<()> {
        on_both_backends(|dir, env| {
            init_with_app(dir, env)?;
            create_key(dir, env, &[])?;
            let mut cmd = Command::new(tessera_bin()?);
            cmd.arg("--data-dir")
                .arg(dir)
                .args([
                    "audit",
                    "tail",
                    "--follow",
                    "--json",
                    "--interval-ms",
                    "100",
                ])
                .env_remove("TESSERA_MASTER_KEY")
                .env_remove("TESSERA_DATABASE_URL")
                .env_remove("TESSERA_CONFIG")
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn()?;
            let out = child.stdout.take().context("stdout")?;
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let next = |what: &str| -> Result<Value> {
                let line = rx
                    .recv_timeout(Duration::from_secs(20))
                    .with_context(|| format!("no line for {what}"))?;
                Ok(serde_json::from_str(&line)?)
            };
            let result = (|| {
                let first = next("the existing row")?;
                ensure!(first["seq"] == 1, "{first}");
                let created =
                    create_key(dir, env, &["--agent", "follower", "--scopes", "audit:read"])?;
                // A new agent first (`agent.create`), then its key.
                let agent = next("the new agent's row")?;
                ensure!(
                    agent["seq"] == 2
                        && agent["action"] == "agent.create"
                        && agent["detail"]["name"] == "follower",
                    "{agent}"
                );
                let second = next("the new key's row")?;
                ensure!(
                    second["seq"] == 3 && second["action"] == "key.create",
                    "{second}"
                );
                ensure!(second["detail"]["key_id"] == created["key_id"], "{second}");
                ensure!(
                    child.try_wait()?.is_none(),
                    "tail --follow exited on its own"
                );
                Ok(())
            })();
            child.kill()?;
            child.wait()?;
            result
        })
    }
}
