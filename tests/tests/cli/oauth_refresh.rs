//! OAuth refresh end to end against `oidc-provider`, which rotates the refresh token on
//! every use and revokes the whole grant when a rotated token is used again, so a refresh
//! race would show up as `invalid_grant` and a revoked grant. The host refreshes before use
//! when the access token is within the skew of its expiry (set here so a token becomes
//! "expiring" five seconds after it is issued), after a provider `401` (once, then retries),
//! and marks a grant whose refresh token is dead `reauth_required`.

use std::time::Duration;

use serde_json::json;
use tessera_proto::grants::GrantStatus;
use tessera_sdk::{App, Error, Method};

use super::oauth_connect::{
    CLIENT_ID, CLIENT_SECRET, all_scopes_key, browser, configure, location, session_request,
};
use super::oidc_peer::{OidcPeer, authorize};
use super::serve::{Host, start_with};
use super::*;

/// Access tokens live 30 s at the peer; the host refreshes them when fewer than 25 s remain.
const ACCESS_TOKEN_TTL: u64 = 30;
const SKEW: &str = "25";
/// How long to wait for an issued token to become "expiring".
const UNTIL_EXPIRING: Duration = Duration::from_secs(6);

/// Connects `ada` the headless way (`App::connect`): the link goes to a task that plays the
/// person in the browser (consent page, the peer's login and consent, back to the
/// callback) while `connect` polls the session; the grant id.
async fn connect(app: &App, redirect_uri: &str) -> Result<String> {
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let redirect_uri = redirect_uri.to_owned();
    let person = tokio::spawn(async move {
        let link = rx.await?;
        let browser = browser()?;
        let go = browser
            .post(&link)
            .form(&[("decision", "allow")])
            .send()
            .await?;
        ensure!(go.status() == 303, "continue: {}", go.status());
        let callback = authorize(&location(&go)?, "ada", &redirect_uri).await?;
        let back = browser.get(&callback).send().await?;
        ensure!(back.status() == 200, "callback: {}", back.status());
        Ok(())
    });
    let grant = app
        .connect(
            &session_request(None),
            |link| {
                let _ = tx.send(link.to_owned());
            },
            Duration::from_millis(100),
            Duration::from_secs(30),
        )
        .await;
    person.await??;
    Ok(grant?)
}

/// `GET {issuer}/me` through the host (proxy mode): the status and the `sub` claim.
async fn me(app: &App, issuer: &str, grant: &str) -> Result<(u16, String), Error> {
    let r = app
        .proxy_request(Method::GET, format!("{issuer}/me"))
        .grant_id(grant)
        .reason("refresh test")
        .send()
        .await?;
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    Ok((status, body["sub"].as_str().unwrap_or_default().to_owned()))
}

/// The access token the host hands out for `grant` now (retrieve mode).
async fn access_token(app: &App, issuer: &str, grant: &str) -> Result<String> {
    let authorized = app
        .request(Method::GET, format!("{issuer}/me"))
        .grant_id(grant)
        .authorize()
        .await?;
    let bearer = authorized
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone())
        .context("no Authorization header")?;
    Ok(bearer
        .strip_prefix("Bearer ")
        .context("not a Bearer header")?
        .to_owned())
}

/// Asks the peer to end an access token, or the whole grant behind it, out of band.
async fn revoke_at_peer(issuer: &str, token: &str, what: &str) -> Result<()> {
    let url = reqwest::Url::parse_with_params(
        &format!("{issuer}/__revoke"),
        [("token", token), ("what", what)],
    )?;
    let r = reqwest::Client::new().post(url).send().await?;
    ensure!(r.status() == 204, "revoke at peer: {}", r.status());
    Ok(())
}

fn counter(stats: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = stats;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

/// A set-up data directory with the `oauth2` provider configured for a fresh peer, and
/// `instances` hosts serving it.
struct Rig {
    hosts: Vec<Host>,
    peer: OidcPeer,
    key: String,
    dir: PathBuf,
    envs: Vec<(String, String)>,
}

impl Rig {
    fn new(dir: &Path, env: &[(&str, &str)], instances: usize) -> Result<Self> {
        Self::with_timeout(dir, env, instances, None)
    }

    /// [`Rig::new`] with the hosts' egress timeout set (`tessera.toml` in the data dir).
    fn with_timeout(
        dir: &Path,
        env: &[(&str, &str)],
        instances: usize,
        egress_timeout_ms: Option<u64>,
    ) -> Result<Self> {
        init_with_app(dir, env)?;
        if let Some(ms) = egress_timeout_ms {
            std::fs::write(
                dir.join("tessera.toml"),
                format!("[egress]\ntimeout_ms = {ms}\n"),
            )?;
        }
        let key = all_scopes_key(dir, env, "billing")?;
        let mut envs = env.to_vec();
        envs.push(("TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK", "true"));
        envs.push(("TESSERA_REFRESH_SKEW_SECS", SKEW));
        let mut hosts = Vec::new();
        for _ in 0..instances {
            hosts.push(start_with(dir, None, &envs)?);
        }
        let redirect_uri = format!("http://{}/connect/callback", hosts[0].addr);
        let peer = OidcPeer::start(&json!({
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [redirect_uri],
            }],
            "access_token_ttl": ACCESS_TOKEN_TTL,
        }))?;
        configure(dir, env, peer.issuer())?;
        Ok(Self {
            hosts,
            peer,
            key,
            dir: dir.to_owned(),
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
    }

    fn app(&self, i: usize) -> Result<App> {
        Ok(App::new(
            &self.key,
            &format!("http://{}", self.hosts[i].addr),
        )?)
    }

    /// Kills host `i` with SIGKILL (no shutdown, no flush) and starts a new one on the same
    /// data; the new host's app client.
    fn kill_and_restart(&mut self, i: usize) -> Result<App> {
        self.hosts[i].child.kill()?;
        self.hosts[i].child.wait()?;
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.hosts[i] = start_with(&self.dir, None, &envs)?;
        self.app(i)
    }

    fn redirect_uri(&self) -> String {
        format!("http://{}/connect/callback", self.hosts[0].addr)
    }
}

/// Many concurrent calls on an expiring token cost exactly one refresh; a provider `401`
/// costs one refresh and one retry; a dead refresh token makes the grant
/// `reauth_required` (typed in the SDK) until the user connects again, which revives the
/// same grant.
#[test]
#[allow(clippy::too_many_lines)]
fn expiring_refused_and_dead_tokens_on_one_host() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let rig = Rig::new(dir, env, 1)?;
        let app = rig.app(0)?;
        let issuer = rig.peer.issuer().to_owned();
        rt.block_on(async {
            let grant = connect(&app, &rig.redirect_uri()).await?;
            ensure!(me(&app, &issuer, &grant).await? == (200, "ada".into()));
            let stats = rig.peer.stats().await?;
            ensure!(
                counter(&stats, &["token_requests", "refresh_token"]) == 0,
                "{stats}"
            );

            // Expiring: 40 calls at once, one refresh.
            tokio::time::sleep(UNTIL_EXPIRING).await;
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..40 {
                let (app, issuer, grant) = (app.clone(), issuer.clone(), grant.clone());
                calls.spawn(async move { me(&app, &issuer, &grant).await });
            }
            while let Some(r) = calls.join_next().await {
                ensure!(r?? == (200, "ada".into()));
            }
            let stats = rig.peer.stats().await?;
            ensure!(
                counter(&stats, &["token_requests", "refresh_token"]) == 1
                    && counter(&stats, &["invalid_grant"]) == 0
                    && counter(&stats, &["revoked_grants"]) == 0,
                "one refresh for 40 concurrent calls: {stats}"
            );

            // Refused: the server ends the access token; the host refreshes once and retries.
            let token = access_token(&app, &issuer, &grant).await?;
            revoke_at_peer(&issuer, &token, "access_token").await?;
            ensure!(me(&app, &issuer, &grant).await? == (200, "ada".into()));
            let stats = rig.peer.stats().await?;
            ensure!(
                counter(&stats, &["token_requests", "refresh_token"]) == 2
                    && counter(&stats, &["invalid_grant"]) == 0,
                "one refresh after a 401: {stats}"
            );
            ensure!(
                access_token(&app, &issuer, &grant).await? != token,
                "the refused token is still handed out"
            );

            // Dead: the user ended the whole grant at the server.
            let token = access_token(&app, &issuer, &grant).await?;
            revoke_at_peer(&issuer, &token, "grant").await?;
            match me(&app, &issuer, &grant).await {
                Err(Error::GrantReauthRequired { .. }) => {}
                other => bail!("a dead grant: {other:?}"),
            }
            let g = app.grant(&grant).await?;
            ensure!(g.status == GrantStatus::ReauthRequired, "{g:?}");
            let before = rig.peer.stats().await?;
            match me(&app, &issuer, &grant).await {
                Err(Error::GrantReauthRequired { .. }) => {}
                other => bail!("a reauth_required grant: {other:?}"),
            }
            let after = rig.peer.stats().await?;
            ensure!(
                counter(&after, &["token_requests", "refresh_token"])
                    == counter(&before, &["token_requests", "refresh_token"]),
                "a reauth_required grant must not reach the token endpoint: {after}"
            );

            // Reconnecting revives the same grant.
            let again = connect(&app, &rig.redirect_uri()).await?;
            ensure!(again == grant, "a reconnect made a new grant");
            ensure!(app.grant(&grant).await?.status == GrantStatus::Active);
            ensure!(me(&app, &issuer, &grant).await? == (200, "ada".into()));

            // Audit: the refreshes and the re-authorization are recorded.
            let rotations = app
                .audit()
                .grant_id(&grant)
                .action("grant.rotate")
                .limit(100)
                .list()
                .await?;
            // Two refreshes and the reconnect.
            ensure!(rotations.items.len() == 3, "{:?}", rotations.items);
            let reauth = app
                .audit()
                .grant_id(&grant)
                .action("grant.reauth_required")
                .list()
                .await?;
            ensure!(reauth.items.len() == 1, "{:?}", reauth.items);
            Ok(())
        })
    })
}

/// Three host instances sharing one PostgreSQL database: concurrent calls on an expiring
/// token, spread over the instances, still cost exactly one refresh per expiry.
#[test]
fn three_instances_refresh_once_per_expiry() -> Result<()> {
    on_postgres(|dir, env| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let rig = Rig::new(dir, env, 3)?;
        let apps = (0..3).map(|i| rig.app(i)).collect::<Result<Vec<_>>>()?;
        let issuer = rig.peer.issuer().to_owned();
        rt.block_on(async {
            let grant = connect(&apps[0], &rig.redirect_uri()).await?;
            for round in 1..=2u64 {
                tokio::time::sleep(UNTIL_EXPIRING).await;
                let mut calls = tokio::task::JoinSet::new();
                for i in 0..60 {
                    let (app, issuer, grant) = (apps[i % 3].clone(), issuer.clone(), grant.clone());
                    calls.spawn(async move { me(&app, &issuer, &grant).await });
                }
                while let Some(r) = calls.join_next().await {
                    ensure!(r?? == (200, "ada".into()));
                }
                let stats = rig.peer.stats().await?;
                ensure!(
                    counter(&stats, &["token_requests", "refresh_token"]) == round
                        && counter(&stats, &["invalid_grant"]) == 0
                        && counter(&stats, &["revoked_grants"]) == 0,
                    "round {round}: one refresh for 60 calls over 3 instances: {stats}"
                );
            }
            Ok(())
        })
    })
}

/// Runs `scenario` on a fresh PostgreSQL database (the one backend several host instances
/// can share).
fn on_postgres(scenario: impl FnOnce(&Path, &[(&str, &str)]) -> Result<()>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let db = rt
        .block_on(TestDb::new(BackendKind::Postgres))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let DatabaseConfig::Postgres { url } = db.config() else {
        bail!("not PostgreSQL");
    };
    let data = tempfile::tempdir()?;
    scenario(
        &data.path().join("data"),
        &[("TESSERA_DATABASE_URL", url.as_str())],
    )
}

/// Asks the peer to fail its next token request (`kind`: `500`, `malformed`, `hang`).
async fn fault_at_peer(issuer: &str, kind: &str) -> Result<()> {
    fault_at_peer_for(issuer, kind, 4_000).await
}

/// The token endpoint failing (a 500, a body that is not JSON, no answer within the egress
/// timeout) fails the call with a clear code and leaves the credential as it was: the next
/// call refreshes with the same refresh token, which the server still accepts.
#[test]
fn token_endpoint_faults_fail_clearly_and_keep_the_credential() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let rig = Rig::with_timeout(dir, env, 1, Some(1_500))?;
        let app = rig.app(0)?;
        let issuer = rig.peer.issuer().to_owned();
        rt.block_on(async {
            let grant = connect(&app, &rig.redirect_uri()).await?;
            let token = access_token(&app, &issuer, &grant).await?;
            tokio::time::sleep(UNTIL_EXPIRING).await;
            for (kind, code) in [
                ("500", "refresh_failed"),
                ("malformed", "refresh_failed"),
                ("hang", "provider_unreachable"),
            ] {
                fault_at_peer(&issuer, kind).await?;
                match me(&app, &issuer, &grant).await {
                    Err(e) if e.code() == Some(code) => {
                        let detail = e.detail().unwrap_or_default().to_owned();
                        ensure!(!detail.contains(&token), "a token in an error: {detail}");
                    }
                    other => bail!("{kind}: expected {code}, got {other:?}"),
                }
                ensure!(
                    app.grant(&grant).await?.status == GrantStatus::Active,
                    "{kind}: a failed refresh must not end the grant"
                );
            }
            // The credential is unchanged: the same access token is still handed out, and
            // the next refresh, with the same refresh token, succeeds.
            ensure!(access_token(&app, &issuer, &grant).await? != String::new());
            ensure!(me(&app, &issuer, &grant).await? == (200, "ada".into()));
            let stats = rig.peer.stats().await?;
            ensure!(
                counter(&stats, &["faults_served"]) == 3
                    && counter(&stats, &["token_requests", "refresh_token"]) == 1
                    && counter(&stats, &["invalid_grant"]) == 0
                    && counter(&stats, &["revoked_grants"]) == 0,
                "{stats}"
            );
            ensure!(
                access_token(&app, &issuer, &grant).await? != token,
                "the refresh did not replace the token"
            );
            Ok(())
        })
    })
}

/// What one refresh storm did.
struct Storm {
    instances: usize,
    callers: usize,
    /// Rotations the host committed (the credential's revision moved this many times).
    rotations: u64,
    /// Refresh requests the token endpoint received.
    token_endpoint_calls: u64,
    invalid_grant: u64,
    revoked_grants: u64,
    failed_calls: u64,
    wall: Duration,
    one_roundtrip: Duration,
}

impl Storm {
    fn line(&self) -> String {
        format!(
            "refresh-storm instances={} callers={} rotations={} token_endpoint_calls={} invalid_grant={} revoked_grants={} wall_ms={} one_roundtrip_ms={:.1}",
            self.instances,
            self.callers,
            self.rotations,
            self.token_endpoint_calls,
            self.invalid_grant,
            self.revoked_grants,
            self.wall.as_millis(),
            self.one_roundtrip.as_secs_f64() * 1e3,
        )
    }

    fn check(&self) -> Result<()> {
        ensure!(
            self.rotations > 0
                && self.token_endpoint_calls == self.rotations
                && self.invalid_grant == 0
                && self.revoked_grants == 0
                && self.failed_calls == 0,
            "{}, failed_calls={}",
            self.line(),
            self.failed_calls
        );
        Ok(())
    }
}

/// The credential's revision (1 when stored, +1 per committed refresh).
async fn revision(dir: &Path, env: &[(&str, &str)]) -> Result<i64> {
    use sqlx::Connection as _;
    let sql = "SELECT revision FROM credentials WHERE provider = 'oauth2'";
    if let Some((_, url)) = env.iter().find(|(k, _)| *k == "TESSERA_DATABASE_URL") {
        let mut c = sqlx::PgConnection::connect(url).await?;
        return Ok(sqlx::query_scalar(sql).fetch_one(&mut c).await?);
    }
    let path = dir.join("tessera.db");
    let mut c =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", path.display())).await?;
    Ok(sqlx::query_scalar(sql).fetch_one(&mut c).await?)
}

/// The rotations a storm aims for: `TESSERA_STORM_ROTATIONS`, else `default`.
fn storm_rotations(default: u64) -> u64 {
    std::env::var("TESSERA_STORM_ROTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `callers` tasks call retrieve in a loop, spread over `instances` hosts, on a credential
/// that is always due for refresh (the skew is the token's whole lifetime), until the
/// server has rotated the refresh token `rotations` times. Every rotation must cost exactly
/// one token-endpoint call, and no refresh token may ever be used twice.
fn storm(
    dir: &Path,
    env: &[(&str, &str)],
    instances: usize,
    callers: usize,
    rotations: u64,
) -> Result<Storm> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    init_with_app(dir, env)?;
    let key = all_scopes_key(dir, env, "billing")?;
    let mut envs = env.to_vec();
    envs.push(("TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK", "true"));
    // Always due: the skew is as long as the token lives.
    envs.push(("TESSERA_REFRESH_SKEW_SECS", "600"));
    let hosts = (0..instances)
        .map(|_| start_with(dir, None, &envs))
        .collect::<Result<Vec<_>>>()?;
    let redirect_uri = format!("http://{}/connect/callback", hosts[0].addr);
    let peer = OidcPeer::start(&json!({
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [redirect_uri],
        }],
        "access_token_ttl": 600,
    }))?;
    configure(dir, env, peer.issuer())?;
    let apps = hosts
        .iter()
        .map(|h| App::new(&key, &format!("http://{}", h.addr)))
        .collect::<Result<Vec<_>, _>>()?;
    let issuer = peer.issuer().to_owned();
    rt.block_on(async {
        let grant = connect(&apps[0], &redirect_uri).await?;
        // One call that refreshes, alone: the round trip the storm is compared with.
        let started = std::time::Instant::now();
        access_token(&apps[0], &issuer, &grant).await?;
        let one_roundtrip = started.elapsed();
        let base_calls = counter(&peer.stats().await?, &["token_requests", "refresh_token"]);
        let base_revision = revision(dir, env).await?;

        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let started = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..callers {
            let (app, issuer, grant) = (apps[i % instances].clone(), issuer.clone(), grant.clone());
            let (done, failed) = (done.clone(), failed.clone());
            tasks.spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if access_token(&app, &issuer, &grant).await.is_err() {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let calls = counter(&peer.stats().await?, &["token_requests", "refresh_token"]);
            if calls - base_calls >= rotations {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_mins(10),
                "only {} rotations after 10 minutes",
                calls - base_calls
            );
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        while let Some(r) = tasks.join_next().await {
            r?;
        }
        let wall = started.elapsed();
        let stats = peer.stats().await?;
        let rotated = revision(dir, env).await? - base_revision;
        Ok(Storm {
            instances,
            callers,
            rotations: u64::try_from(rotated).unwrap_or(0),
            token_endpoint_calls: counter(&stats, &["token_requests", "refresh_token"])
                - base_calls,
            invalid_grant: counter(&stats, &["invalid_grant"]),
            revoked_grants: counter(&stats, &["revoked_grants"]),
            failed_calls: failed.load(std::sync::atomic::Ordering::Relaxed),
            wall,
            one_roundtrip,
        })
    })
}

/// The refresh storm on one host, on both backends: 100 callers, every call due for refresh.
#[test]
fn refresh_storm_on_one_instance() -> Result<()> {
    on_both_backends(|dir, env| {
        let report = storm(dir, env, 1, 100, storm_rotations(100))?;
        println!("{}", report.line());
        report.check()
    })
}

/// The refresh storm on three hosts sharing one PostgreSQL database. `cargo xtask bench
/// refresh-storm` runs it with `TESSERA_STORM_ROTATIONS=1000` and reports its line.
#[test]
fn refresh_storm_on_three_instances() -> Result<()> {
    on_postgres(|dir, env| {
        let report = storm(dir, env, 3, 100, storm_rotations(100))?;
        println!("{}", report.line());
        report.check()
    })
}

/// A stand-in for a provider API that needs the `calendar` scope: it checks the bearer
/// token with the authorization server's introspection endpoint (as a resource server
/// would) and answers RFC 6750 `insufficient_scope` when the token lacks the scope.
async fn start_calendar_api(issuer: String) -> Result<String> {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    async fn events(
        axum::extract::State(issuer): axum::extract::State<String>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let introspected: serde_json::Value = match reqwest::Client::new()
            .post(format!("{issuer}/token/introspection"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", token.as_str())])
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        };
        if introspected["active"] != true {
            return (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer error=\"invalid_token\"")],
            )
                .into_response();
        }
        let scopes = introspected["scope"].as_str().unwrap_or_default();
        if !scopes.split(' ').any(|s| s == "calendar") {
            return (
                StatusCode::FORBIDDEN,
                [(
                    "www-authenticate",
                    "Bearer error=\"insufficient_scope\", scope=\"calendar\"",
                )],
            )
                .into_response();
        }
        axum::Json(json!({"events": [{"title": "standup"}]})).into_response()
    }

    let app = axum::Router::new()
        .route("/events", axum::routing::get(events))
        .with_state(issuer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr.to_string())
}

/// A provider `403 insufficient_scope` is `scope_reauth_required`; when the operator adds
/// the scope to the app's configuration, the grant reports it missing (scope mismatch)
/// until the user connects again, which grants it and keeps the grant id.
#[test]
fn missing_scopes_are_reported_and_a_reconnect_grants_them() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        init_with_app(dir, env)?;
        let key = all_scopes_key(dir, env, "billing")?;
        let mut envs = env.to_vec();
        envs.push(("TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK", "true"));
        let host = start_with(dir, None, &envs)?;
        let redirect_uri = format!("http://{}/connect/callback", host.addr);
        let peer = OidcPeer::start(&json!({
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [redirect_uri],
            }],
            "scopes": ["calendar"],
            "access_token_ttl": 600,
        }))?;
        let issuer = peer.issuer().to_owned();
        let api = rt.block_on(start_calendar_api(issuer.clone()))?;
        let basic = "openid,offline_access,email";
        super::oauth_connect::configure_with(dir, env, &issuer, &api, basic)?;
        let app = App::new(&key, &format!("http://{}", host.addr))?;
        let events = format!("http://{api}/events");
        rt.block_on(async {
            let grant = connect(&app, &redirect_uri).await?;
            ensure!(app.grant(&grant).await?.missing_scopes.is_empty());
            let refused = app
                .proxy_request(Method::GET, &events)
                .grant_id(&grant)
                .send()
                .await;
            match refused {
                Err(Error::ScopeReauthRequired { detail }) => {
                    ensure!(detail.contains("calendar"), "{detail}");
                }
                other => bail!("a missing scope: {other:?}"),
            }
            Ok(())
        })?;

        // The operator adds the scope: the grant reports the mismatch.
        let wider = "openid,offline_access,email,calendar";
        super::oauth_connect::configure_with(dir, env, &issuer, &api, wider)?;
        rt.block_on(async {
            let grants = app.grants().list().await?;
            let g = grants.items.first().context("the grant")?;
            ensure!(g.missing_scopes == ["calendar"], "{g:?}");
            // The user connects again: the same grant, now with the scope.
            let again = connect(&app, &redirect_uri).await?;
            ensure!(again == g.id, "a reconnect made a new grant");
            let g = app.grant(&again).await?;
            ensure!(
                g.missing_scopes.is_empty() && g.scopes.contains(&"calendar".to_owned()),
                "{g:?}"
            );
            let ok = app
                .proxy_request(Method::GET, &events)
                .grant_id(&again)
                .send()
                .await?;
            ensure!(ok.status() == 200, "with the scope: {}", ok.status());
            Ok(())
        })
    })
}

/// Polls the peer's counters until `path` reaches `n` (at most 10 s).
async fn wait_for_counter(peer: &OidcPeer, path: &[&str], n: u64) -> Result<()> {
    for _ in 0..400 {
        if counter(&peer.stats().await?, path) >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("the peer never counted {path:?} = {n}")
}

/// The host killed with SIGKILL mid-refresh. Killed before the server processed the token
/// request: after a restart, the dead host's lease lapses and the grant refreshes. Killed
/// after a committed refresh: the new tokens are there after a restart. Killed after the
/// server rotated the refresh token but before the host stored the answer: the loss is
/// detected on the next refresh (`invalid_grant`, the row unchanged) and reported as
/// `grant_reauth_required`, audited, never silent.
#[test]
#[allow(clippy::too_many_lines)]
fn a_host_killed_mid_refresh_loses_nothing_silently() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // A 1.5 s egress timeout makes the refresh lease 5 s.
        let mut rig = Rig::with_timeout(dir, env, 1, Some(1_500))?;
        let mut app = rig.app(0)?;
        let issuer = rig.peer.issuer().to_owned();
        let grant = rt.block_on(connect(&app, &rig.redirect_uri()))?;

        // 1. Killed while the token request hangs at the server, unprocessed.
        rt.block_on(async {
            tokio::time::sleep(UNTIL_EXPIRING).await;
            fault_at_peer_for(&issuer, "hang", 3_000).await?;
            let (a, i, g) = (app.clone(), issuer.clone(), grant.clone());
            let in_flight = tokio::spawn(async move { me(&a, &i, &g).await });
            wait_for_counter(&rig.peer, &["faults_served"], 1).await?;
            in_flight.abort();
            Ok::<(), anyhow::Error>(())
        })?;
        app = rig.kill_and_restart(0)?;
        rt.block_on(async {
            ensure!(me(&app, &issuer, &grant).await? == (200, "ada".into()));
            let stats = rig.peer.stats().await?;
            ensure!(
                counter(&stats, &["token_requests", "refresh_token"]) == 1
                    && counter(&stats, &["invalid_grant"]) == 0,
                "after a kill before the token request: {stats}"
            );
            Ok(())
        })?;

        // 2. Killed after a committed refresh: the new tokens survive.
        app = rig.kill_and_restart(0)?;
        rt.block_on(async {
            ensure!(me(&app, &issuer, &grant).await? == (200, "ada".into()));
            tokio::time::sleep(UNTIL_EXPIRING).await;
            ensure!(me(&app, &issuer, &grant).await? == (200, "ada".into()));
            let stats = rig.peer.stats().await?;
            ensure!(
                counter(&stats, &["token_requests", "refresh_token"]) == 2
                    && counter(&stats, &["invalid_grant"]) == 0,
                "after a kill after the commit: {stats}"
            );
            Ok(())
        })?;

        // 3. Killed after the server rotated the refresh token, before the answer arrived.
        rt.block_on(async {
            tokio::time::sleep(UNTIL_EXPIRING).await;
            fault_at_peer_for(&issuer, "slow", 1_000).await?;
            let (a, i, g) = (app.clone(), issuer.clone(), grant.clone());
            let in_flight = tokio::spawn(async move { me(&a, &i, &g).await });
            wait_for_counter(&rig.peer, &["token_requests", "refresh_token"], 3).await?;
            in_flight.abort();
            Ok::<(), anyhow::Error>(())
        })?;
        app = rig.kill_and_restart(0)?;
        rt.block_on(async {
            match me(&app, &issuer, &grant).await {
                Err(Error::GrantReauthRequired { .. }) => {}
                other => bail!("a lost rotation must be reported: {other:?}"),
            }
            let g = app.grant(&grant).await?;
            ensure!(g.status == GrantStatus::ReauthRequired, "{g:?}");
            let stats = rig.peer.stats().await?;
            ensure!(counter(&stats, &["invalid_grant"]) == 1, "{stats}");
            let audited = app
                .audit()
                .grant_id(&grant)
                .action("grant.reauth_required")
                .list()
                .await?;
            ensure!(audited.items.len() == 1, "{:?}", audited.items);
            Ok(())
        })
    })
}

/// [`fault_at_peer`] with the delay given.
async fn fault_at_peer_for(issuer: &str, kind: &str, ms: u64) -> Result<()> {
    let url = reqwest::Url::parse_with_params(
        &format!("{issuer}/__fault"),
        [("kind", kind), ("count", "1"), ("ms", &ms.to_string())],
    )?;
    let r = reqwest::Client::new().post(url).send().await?;
    ensure!(r.status() == 204, "fault at peer: {}", r.status());
    Ok(())
}
