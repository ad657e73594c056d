//! The `oidc-provider` test peer: a certified OpenID Provider (npm `oidc-provider` 9.x, run by
//! `tests/peers/oidc-server.mjs`) that tests start as a child process on 127.0.0.1, and a
//! driver for its development login and consent pages, so a test can authorize like a person
//! would without a browser.
//!
//! The peer is strict where it matters for Tessera: PKCE (S256) required, exact redirect URIs,
//! single-use codes, refresh-token rotation on every use, and a reused refresh token revokes
//! the whole grant. Its `GET /__stats` counts what its token endpoint was asked.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Url;
use reqwest::redirect::Policy;

use super::*;

/// How long the peer may take to print its issuer line (Node start plus key generation).
const START_TIMEOUT: Duration = Duration::from_mins(1);
/// How many redirects and form posts an authorization may take before it is called a loop.
const MAX_HOPS: usize = 20;
/// How much of the peer's stderr is kept for error messages.
const STDERR_CAP: usize = 64 * 1024;

/// A running peer; the process is killed when this is dropped.
pub(super) struct OidcPeer {
    child: Child,
    issuer: String,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl OidcPeer {
    /// Starts `node tests/peers/oidc-server.mjs CONFIG` and waits for its issuer line. The
    /// config's shape is documented at the top of the script (clients, scopes, token TTLs).
    ///
    /// A peer that prints nothing within [`START_TIMEOUT`] is killed and started once more:
    /// on a loaded 2-core machine a Node start has, rarely, printed nothing for minutes while
    /// the next one started at once. Both attempts' failures are reported.
    pub(super) fn start(config: &Value) -> Result<Self> {
        match Self::start_once(config) {
            Ok(peer) => Ok(peer),
            Err(first) => Self::start_once(config)
                .with_context(|| format!("a second start, after the first failed: {first:#}")),
        }
    }

    fn start_once(config: &Value) -> Result<Self> {
        let peers = root().join("tests/peers");
        ensure!(
            peers.join("node_modules/oidc-provider").is_dir(),
            "the npm package oidc-provider is not installed in {}: run `cargo xtask test`, or `npm ci` there",
            peers.display()
        );
        let mut child = Command::new("node")
            .arg(peers.join("oidc-server.mjs"))
            .arg(config.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context(
                "could not start `node` for the OpenID provider peer (is Node.js 20+ installed?)",
            )?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut buf) = sink.lock()
                        && buf.len() < STDERR_CAP
                    {
                        buf.extend_from_slice(&chunk[..n]);
                    }
                }
            });
        }
        let stdout = child.stdout.take().context("the peer's stdout is piped")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining, so the peer can never block on a full pipe.
            for _ in lines {}
        });
        let mut peer = Self {
            child,
            issuer: String::new(),
            stderr,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(e))) => bail!("reading the peer's stdout: {e}{}", peer.stderr_text()),
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = peer.child.wait().ok();
                bail!(
                    "the OpenID provider peer exited ({status:?}) before printing its issuer{}",
                    peer.stderr_text()
                )
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "the OpenID provider peer printed no issuer line within {START_TIMEOUT:?}{}",
                peer.stderr_text()
            ),
        };
        let parsed: Value = serde_json::from_str(&line).with_context(|| {
            format!(
                "the peer's first line is not JSON: {line:?}{}",
                peer.stderr_text()
            )
        })?;
        parsed["issuer"]
            .as_str()
            .filter(|i| i.starts_with("http://127.0.0.1:"))
            .with_context(|| format!("the peer's first line names no loopback issuer: {line}"))?
            .clone_into(&mut peer.issuer);
        Ok(peer)
    }

    /// The issuer, `http://127.0.0.1:PORT`.
    pub(super) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The peer's counters (`GET /__stats`): `token_requests` by grant type, `token_errors`
    /// by error code, `invalid_grant`, `revoked_grants`, `revocation_requests`,
    /// `introspection_requests`.
    pub(super) async fn stats(&self) -> Result<Value> {
        let response = reqwest::get(format!("{}/__stats", self.issuer)).await?;
        ensure!(
            response.status().is_success(),
            "GET /__stats answered {}",
            response.status()
        );
        Ok(response.json().await?)
    }

    /// What the peer wrote to stderr so far, as a suffix for error messages.
    fn stderr_text(&self) -> String {
        let text = self
            .stderr
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if text.trim().is_empty() {
            String::new()
        } else {
            format!("\n--- peer stderr ---\n{text}")
        }
    }
}

impl Drop for OidcPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Authorizes at the peer as a person would: opens `authorization_url`, signs in on the login
/// page as `login` (which becomes the `sub`), accepts the consent page, and follows redirects
/// until one points at `redirect_uri`. Returns that callback URL (with `code`, `state` and
/// `iss`, or an `error`) without requesting it. Cookies are kept across the whole exchange.
pub(super) async fn authorize(
    authorization_url: &str,
    login: &str,
    redirect_uri: &str,
) -> Result<String> {
    let target = Url::parse(redirect_uri).context("the redirect URI does not parse")?;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()?;
    let mut url = Url::parse(authorization_url).context("the authorization URL does not parse")?;
    let mut form: Option<Vec<(&str, String)>> = None;
    for _ in 0..MAX_HOPS {
        let request = match form.take() {
            Some(fields) => client.post(url.clone()).form(&fields),
            None => client.get(url.clone()),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("requesting {}", url.path()))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .with_context(|| format!("{status} from {} without a Location", url.path()))?;
            let next = url
                .join(location)
                .with_context(|| format!("the Location {location:?} does not parse"))?;
            if same_endpoint(&next, &target) {
                return Ok(next.into());
            }
            url = next;
            continue;
        }
        let body = response.text().await.unwrap_or_default();
        ensure!(
            status.is_success(),
            "{} answered {status}: {}",
            url.path(),
            page_text(&body)
        );
        let page = InteractionPage::parse(&body).with_context(|| {
            format!(
                "{} is neither a login nor a consent page: {}",
                url.path(),
                page_text(&body)
            )
        })?;
        url = url
            .join(&page.action)
            .with_context(|| format!("the form action {:?} does not parse", page.action))?;
        form = Some(match page.prompt.as_str() {
            "login" => vec![
                ("prompt", "login".to_owned()),
                ("login", login.to_owned()),
                ("password", "any password".to_owned()),
            ],
            "consent" => vec![("prompt", "consent".to_owned())],
            other => bail!("the interaction page asks for an unknown prompt `{other}`"),
        });
    }
    bail!("no redirect to {redirect_uri} after {MAX_HOPS} steps")
}

/// Whether `url` is `endpoint` (same scheme, host, port and path; the query may differ).
fn same_endpoint(url: &Url, endpoint: &Url) -> bool {
    url.scheme() == endpoint.scheme()
        && url.host_str() == endpoint.host_str()
        && url.port_or_known_default() == endpoint.port_or_known_default()
        && url.path() == endpoint.path()
}

/// The form of oidc-provider's development login or consent page.
struct InteractionPage {
    action: String,
    prompt: String,
}

impl InteractionPage {
    fn parse(html: &str) -> Option<Self> {
        let form = &html[html.find("<form")?..];
        let action = attribute(&form[..form.find('>')?], "action")?;
        let prompt_input = form
            .match_indices("<input")
            .map(|(at, _)| &form[at..at + form[at..].find('>').unwrap_or(0)])
            .find(|input| attribute(input, "name").as_deref() == Some("prompt"))?;
        Some(Self {
            action,
            prompt: attribute(prompt_input, "value")?,
        })
    }
}

/// The value of `name="…"` in one HTML tag, with the escapes oidc-provider's templates use
/// decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = start + tag[start..].find('"')?;
    Some(
        tag[start..end]
            .replace("&#39;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// A page's text in one line, shortened, for error messages.
fn page_text(body: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    text.chars().take(400).collect()
}

/// The claims of a JWT, decoded without verifying its signature (the test only reads them).
fn jwt_claims(jwt: &str) -> Result<Value> {
    let payload = jwt.split('.').nth(1).context("not a JWT")?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?)
}

/// A token-endpoint request authenticated with `client_secret_basic`.
async fn token_request(
    http: &reqwest::Client,
    endpoint: &str,
    client: (&str, &str),
    form: &[(&str, &str)],
) -> Result<(u16, Value)> {
    let basic = STANDARD.encode(format!("{}:{}", client.0, client.1));
    let response = http
        .post(endpoint)
        .header("Authorization", format!("Basic {basic}"))
        .form(form)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// A `refresh_token` grant at `endpoint` for the test's client.
async fn refresh(http: &reqwest::Client, endpoint: &str, token: &str) -> Result<(u16, Value)> {
    let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
    token_request(http, endpoint, CLIENT, &form).await
}

pub(super) const CLIENT: (&str, &str) = ("tessera-e2e", "e2e-client-secret-9f2c");
pub(super) const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/callback";

/// Discovery, an authorization request with PKCE S256 and `offline_access`, login and
/// consent as `ada`, and the code exchange. Returns the token endpoint and its answer.
pub(super) async fn connect(peer: &OidcPeer, http: &reqwest::Client) -> Result<(String, Value)> {
    connect_as(peer, http, "ada", "openid offline_access email").await
}

/// [`connect`] as `login` (the `sub` of the tokens), asking for `scope` (`profile` puts the
/// peer's `groups` claim in the ID token).
pub(super) async fn connect_as(
    peer: &OidcPeer,
    http: &reqwest::Client,
    login: &str,
    scope: &str,
) -> Result<(String, Value)> {
    // RFC 7636 appendix B: the server must check this pair with S256.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const STATE: &str = "st-5d1e0c";

    let discovery: Value = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            peer.issuer()
        ))
        .send()
        .await?
        .json()
        .await?;
    ensure!(discovery["issuer"] == peer.issuer(), "{discovery}");
    let token_endpoint = discovery["token_endpoint"]
        .as_str()
        .context("token_endpoint")?
        .to_owned();
    let url = Url::parse_with_params(
        discovery["authorization_endpoint"]
            .as_str()
            .context("authorization_endpoint")?,
        [
            ("response_type", "code"),
            ("client_id", CLIENT.0),
            ("redirect_uri", REDIRECT_URI),
            ("scope", scope),
            ("state", STATE),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            // oidc-provider grants offline_access (a refresh token) only with consent.
            ("prompt", "consent"),
        ],
    )?;

    let callback = Url::parse(&authorize(url.as_str(), login, REDIRECT_URI).await?)?;
    let param = |name: &str| {
        callback
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    ensure!(param("error").is_none(), "authorization failed: {callback}");
    ensure!(param("state").as_deref() == Some(STATE), "{callback}");
    ensure!(param("iss").as_deref() == Some(peer.issuer()), "{callback}");
    let code = param("code").context("the callback carries no code")?;

    let (status, tokens) = token_request(
        http,
        &token_endpoint,
        CLIENT,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ],
    )
    .await?;
    ensure!(status == 200, "code exchange answered {status}: {tokens}");
    Ok((token_endpoint, tokens))
}

#[test]
fn a_confidential_client_authorizes_through_the_login_pages_and_refresh_tokens_rotate() -> Result<()>
{
    let peer = OidcPeer::start(&serde_json::json!({
        "clients": [{
            "client_id": CLIENT.0,
            "client_secret": CLIENT.1,
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
        }],
        "access_token_ttl": 30,
    }))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let http = reqwest::Client::new();
        let (token_endpoint, tokens) = connect(&peer, &http).await?;
        let access_1 = tokens["access_token"].as_str().context("access_token")?;
        let refresh_1 = tokens["refresh_token"]
            .as_str()
            .context("no refresh token although offline_access was consented")?;
        ensure!(
            tokens["expires_in"].as_u64().is_some_and(|s| s <= 30),
            "{tokens}"
        );
        let id_token = jwt_claims(tokens["id_token"].as_str().context("id_token")?)?;
        ensure!(
            id_token["sub"] == "ada" && id_token["iss"] == peer.issuer(),
            "{id_token}"
        );
        ensure!(id_token["email"] == "ada@example.test", "{id_token}");

        let refresh_at_peer = |token| refresh(&http, &token_endpoint, token);
        let (status, refreshed) = refresh_at_peer(refresh_1).await?;
        ensure!(status == 200, "refresh answered {status}: {refreshed}");
        let refresh_2 = refreshed["refresh_token"]
            .as_str()
            .context("the refresh was not rotated")?;
        ensure!(refresh_2 != refresh_1, "the refresh token did not change");
        ensure!(
            refreshed["access_token"]
                .as_str()
                .is_some_and(|a| a != access_1),
            "{refreshed}"
        );
        let counts = peer.stats().await?;
        ensure!(
            counts["token_requests"]["authorization_code"] == 1
                && counts["token_requests"]["refresh_token"] == 1
                && counts["invalid_grant"] == 0
                && counts["revoked_grants"] == 0,
            "{counts}"
        );

        // The rotated-out token is dead, and reusing it ends the whole grant.
        let (status, reused) = refresh_at_peer(refresh_1).await?;
        ensure!(
            status == 400 && reused["error"] == "invalid_grant",
            "{status}: {reused}"
        );
        let (status, newest) = refresh_at_peer(refresh_2).await?;
        ensure!(
            status == 400 && newest["error"] == "invalid_grant",
            "the newest token should die with the grant: {status}: {newest}"
        );
        let counts = peer.stats().await?;
        ensure!(
            counts["token_requests"]["authorization_code"] == 1
                && counts["token_requests"]["refresh_token"] == 3
                && counts["invalid_grant"] == 2
                && counts["token_errors"]["invalid_grant"] == 2
                && counts["revoked_grants"] == 1,
            "{counts}"
        );
        Ok(())
    })
}
