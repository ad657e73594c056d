//! The provider conformance suite (`tessera provider check FILE.wasm`).
//!
//! Data-driven: `cases.toml` lists the cases, each naming a check this module knows how to
//! run and the outcome it expects. The runner drives a loaded component through its contract
//! with synthetic inputs only: it never performs network I/O and never holds a real secret.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;

use crate::plugin::Plugin;
use crate::plugin::types::{
    AuthKind, Classification, Context, Credential, HttpRequest, HttpResponse, Input, ProviderError,
    ProviderInfo, Step,
};

const CASES: &str = include_str!("cases.toml");

/// Fixed inputs the runner hands to components.
const CLIENT_ID: &str = "conformance-client";
const CLIENT_SECRET: &str = "conformance-client-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:8080/v1/connect/callback";
const STATE: &str = "conformance-state-7f3a";
const ACCESS: &str = "conformance-access-token-1";
const REFRESH: &str = "conformance-refresh-token-1";
const OLD_REFRESH: &str = "conformance-refresh-token-0";
/// 2023-11-14T22:13:20Z: a fixed clock keeps results reproducible.
const NOW: u64 = 1_700_000_000;

/// Outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The component behaved as expected.
    Pass,
    /// It did not; the text says how.
    Fail(String),
    /// The case does not apply to this kind of provider.
    NotApplicable,
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name from `cases.toml`.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
}

/// The suite's result for one component.
#[derive(Debug, Clone)]
pub struct Report {
    /// The provider id the component declares.
    pub provider: String,
    /// One row per case, in file order.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// Number of failed cases.
    pub fn failures(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
            .count()
    }

    /// Number of passed cases.
    pub fn passes(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Pass)
            .count()
    }

    /// A pass/fail table for a terminal.
    pub fn table(&self) -> String {
        let width = self
            .results
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(10);
        let mut out = format!("conformance of provider `{}`\n", self.provider);
        for r in &self.results {
            let (mark, detail) = match &r.outcome {
                Outcome::Pass => ("PASS", String::new()),
                Outcome::Fail(why) => ("FAIL", format!("  {why}")),
                Outcome::NotApplicable => ("n/a ", String::new()),
            };
            let _ = writeln!(out, "  {mark}  {:<width$}{detail}", r.name);
        }
        let applicable = self
            .results
            .iter()
            .filter(|r| r.outcome != Outcome::NotApplicable)
            .count();
        let _ = writeln!(
            out,
            "{} passed, {} failed ({} of {} cases apply)",
            self.passes(),
            self.failures(),
            applicable,
            self.results.len()
        );
        out
    }
}

/// Why the suite itself could not run.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The bundled case file is broken (a bug in this build).
    #[error("the conformance case file is invalid: {0}")]
    Cases(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    check: String,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    params: Vec<(String, String)>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    expect: Option<String>,
    status: Option<u16>,
    content_type: Option<String>,
    body: Option<String>,
    expires_in: Option<u64>,
    retry_after: Option<u64>,
    host: Option<String>,
    now: Option<u64>,
}

/// Runs every case against `plugin`.
pub fn run(plugin: &Plugin) -> Result<Report, ConformanceError> {
    let file: CaseFile =
        toml::from_str(CASES).map_err(|e| ConformanceError::Cases(e.to_string()))?;
    let info = plugin.info().clone();
    let kind = kind_name(info.auth_kind);
    let runner = Runner {
        plugin,
        info: &info,
    };
    let results = file
        .case
        .iter()
        .map(|case| {
            let kind_applies = case.kinds.is_empty() || case.kinds.iter().any(|k| k == kind);
            let refresh_applies = !case.check.starts_with("refresh") || info.supports_refresh;
            let outcome = if kind_applies && refresh_applies {
                runner
                    .run(case)
                    .map_or_else(Outcome::Fail, |()| Outcome::Pass)
            } else {
                Outcome::NotApplicable
            };
            CaseResult {
                name: case.name.clone(),
                outcome,
            }
        })
        .collect();
    Ok(Report {
        provider: info.id.clone(),
        results,
    })
}

fn kind_name(kind: AuthKind) -> &'static str {
    match kind {
        AuthKind::Oauth2 => "oauth2",
        AuthKind::Oauth1 => "oauth1",
        AuthKind::ManagedSecret => "managed-secret",
    }
}

type CheckResult = Result<(), String>;

struct Runner<'a> {
    plugin: &'a Plugin,
    info: &'a ProviderInfo,
}

impl Runner<'_> {
    fn run(&self, case: &Case) -> CheckResult {
        match case.check.as_str() {
            "info" => check_info(self.info),
            "authorize" => self.authorize(),
            "callback" => self.callback(case),
            "token-request" => self.token_request(),
            "token-response" => self.token_response(case),
            "refresh-request" => self.refresh_request(),
            "refresh-response" => self.refresh_response(case),
            "secret-connect" => self.secret_connect(),
            "secret-missing-field" => self.secret_missing_field(case),
            "secret-rejected" => self.secret_rejected(case),
            "sign" => self.sign(case),
            "classify" => self.classify(case),
            other => Err(format!("unknown check `{other}` in the case file")),
        }
    }

    fn context(&self) -> Context {
        let params = self
            .info
            .connection_params
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    example_value(f.name.as_str(), f.example.as_deref()),
                )
            })
            .collect();
        let secrets = self
            .info
            .secret_fields
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    example_value(f.name.as_str(), f.example.as_deref()),
                )
            })
            .collect();
        Context {
            client_id: CLIENT_ID.into(),
            client_secret: Some(CLIENT_SECRET.into()),
            redirect_uri: REDIRECT_URI.into(),
            scopes: self.info.default_scopes.clone(),
            connection_params: params,
            secret_fields: secrets,
            extra_params: Vec::new(),
            state: STATE.into(),
            entropy: (0u8..32).collect(),
            now: NOW,
        }
    }

    fn call<T>(what: &str, r: Result<T, crate::plugin::PluginError>) -> Result<T, String> {
        r.map_err(|e| format!("{what} failed in the sandbox: {e}"))
    }

    /// Starts the OAuth flow and returns the redirect URL and the state blob.
    fn begin(&self) -> Result<(String, Vec<u8>), String> {
        match Self::call("begin-connect", self.plugin.begin_connect(&self.context()))? {
            Step::Redirect(r) => Ok((r.url, r.state)),
            other => Err(format!(
                "begin-connect should redirect, got {}",
                step_name(&other)
            )),
        }
    }

    fn authorize(&self) -> CheckResult {
        let (url, _) = self.begin()?;
        let url =
            url::Url::parse(&url).map_err(|e| format!("authorize URL does not parse: {e}"))?;
        let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        expect_param(&q, "response_type", "code")?;
        expect_param(&q, "client_id", CLIENT_ID)?;
        expect_param(&q, "redirect_uri", REDIRECT_URI)?;
        expect_param(&q, "state", STATE)?;
        if !self.info.default_scopes.is_empty() {
            let scope = q.get("scope").ok_or("authorize URL has no scope")?;
            for s in &self.info.default_scopes {
                if !scope
                    .split(self.info.scope_separator.as_str())
                    .any(|x| x == s)
                {
                    return Err(format!("scope `{scope}` lacks the requested `{s}`"));
                }
            }
        }
        if self.info.pkce {
            expect_param(&q, "code_challenge_method", "S256")?;
            let challenge = q
                .get("code_challenge")
                .ok_or("PKCE declared but no code_challenge")?;
            if challenge.len() != 43 {
                return Err(format!(
                    "code_challenge `{challenge}` is not a base64url SHA-256"
                ));
            }
        } else if q.contains_key("code_challenge") {
            return Err("code_challenge sent but info() does not declare PKCE".into());
        }
        if url.scheme() != "https" {
            return Err(format!(
                "authorize endpoint must be https, got {}",
                url.scheme()
            ));
        }
        Ok(())
    }

    fn resume(&self, state: &[u8], input: &Input) -> Result<Step, String> {
        Self::call("resume", self.plugin.resume(&self.context(), state, input))
    }

    fn callback(&self, case: &Case) -> CheckResult {
        let (_, state) = self.begin()?;
        let params = case
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.replace("{state}", STATE)))
            .collect();
        let step = self.resume(&state, &Input::Callback(params))?;
        expect_step(&step, case.expect.as_deref().unwrap_or("send"))
    }

    /// Runs authorize and callback; returns the token request and the state to resume with.
    fn exchange(&self) -> Result<(HttpRequest, Vec<u8>, String), String> {
        let (url, state) = self.begin()?;
        let url =
            url::Url::parse(&url).map_err(|e| format!("authorize URL does not parse: {e}"))?;
        let challenge = url
            .query_pairs()
            .find(|(k, _)| k == "code_challenge")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let params = vec![
            ("code".into(), "conformance-code".into()),
            ("state".into(), STATE.into()),
        ];
        match self.resume(&state, &Input::Callback(params))? {
            Step::Send(o) => Ok((o.request, o.state, challenge)),
            other => Err(format!(
                "a good callback should lead to a token request, got {}",
                step_name(&other)
            )),
        }
    }

    fn token_request(&self) -> CheckResult {
        let (req, _, challenge) = self.exchange()?;
        let form = check_token_request(&req, "authorization_code")?;
        expect_param(&form, "code", "conformance-code")?;
        expect_param(&form, "redirect_uri", REDIRECT_URI)?;
        if self.info.pkce {
            let verifier = form
                .get("code_verifier")
                .ok_or("PKCE declared but no code_verifier")?;
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if computed != challenge {
                return Err("code_verifier does not hash to the code_challenge (S256)".into());
            }
        }
        Ok(())
    }

    fn token_response(&self, case: &Case) -> CheckResult {
        let (_, state, _) = self.exchange()?;
        self.finish(&state, case)
    }

    fn refresh_credential(&self) -> Credential {
        Credential {
            secrets: vec![
                ("access_token".into(), "old-access".into()),
                ("refresh_token".into(), OLD_REFRESH.into()),
            ],
            metadata: Vec::new(),
            scopes: self.info.default_scopes.clone(),
            expires_at: Some(NOW - 10),
        }
    }

    fn refresh(&self) -> Result<(HttpRequest, Vec<u8>), String> {
        match Self::call(
            "refresh",
            self.plugin
                .refresh(&self.context(), &self.refresh_credential()),
        )? {
            Step::Send(o) => Ok((o.request, o.state)),
            other => Err(format!(
                "refresh should send a token request, got {}",
                step_name(&other)
            )),
        }
    }

    fn refresh_request(&self) -> CheckResult {
        let (req, _) = self.refresh()?;
        let form = check_token_request(&req, "refresh_token")?;
        expect_param(&form, "refresh_token", OLD_REFRESH)
    }

    fn refresh_response(&self, case: &Case) -> CheckResult {
        let (_, state) = self.refresh()?;
        self.finish(&state, case)
    }

    /// Feeds a token endpoint response and follows any account look-up to the end.
    fn finish(&self, state: &[u8], case: &Case) -> CheckResult {
        let scopes = self.info.default_scopes.join(" ");
        let body = case
            .body
            .as_deref()
            .unwrap_or_default()
            .replace("{access}", ACCESS)
            .replace("{refresh}", REFRESH)
            .replace("{scopes}", &scopes);
        let token_response = response(
            case.status.unwrap_or(200),
            case.content_type.as_deref(),
            &body,
            &case.headers,
        );
        let mut step = self.resume(state, &Input::HttpResponse(token_response))?;
        let expect = case.expect.as_deref().unwrap_or("credential");
        if expect != "credential" {
            return expect_step(&step, expect);
        }
        // Follow post-connect look-ups (account label, tenant discovery); each must carry the
        // new access token and go to a declared host.
        for _ in 0..4 {
            match step {
                Step::Send(o) => {
                    let auth = header(&o.request.headers, "authorization").unwrap_or_default();
                    if !auth.contains(ACCESS) {
                        return Err(format!(
                            "look-up request to {} does not carry the new access token",
                            o.request.url
                        ));
                    }
                    let account = r#"{"login":"conformance","email":"conformance@example.com","name":"Conformance","id":"acct_1","sub":"1"}"#;
                    step = self.resume(
                        &o.state,
                        &Input::HttpResponse(response(200, Some("application/json"), account, &[])),
                    )?;
                }
                Step::Done(done) => {
                    let c = &done.credential;
                    let token = c
                        .secrets
                        .iter()
                        .find(|(k, _)| k == "access_token")
                        .map(|(_, v)| v.as_str());
                    if token != Some(ACCESS) {
                        return Err("done credential lacks the new access_token".into());
                    }
                    let want = case.expires_in.map(|s| NOW + s);
                    if c.expires_at != want {
                        return Err(format!(
                            "expires_at is {:?}, expected {want:?}",
                            c.expires_at
                        ));
                    }
                    if body.contains(REFRESH)
                        && !c
                            .secrets
                            .iter()
                            .any(|(k, v)| k == "refresh_token" && v == REFRESH)
                    {
                        return Err("done credential lacks the new refresh_token".into());
                    }
                    return Ok(());
                }
                other => return Err(format!("expected a credential, got {}", step_name(&other))),
            }
        }
        Err("more than four look-up requests after the token response".into())
    }

    fn secret_connect(&self) -> CheckResult {
        let step = Self::call("begin-connect", self.plugin.begin_connect(&self.context()))?;
        match step {
            Step::Send(o) => {
                if !host_allowed_by(self.info, &o.request.url) {
                    return Err(format!(
                        "validation request goes to {}, outside allowed-hosts",
                        o.request.url
                    ));
                }
                Ok(())
            }
            Step::Done(_) => Ok(()),
            other => Err(format!(
                "expected send (validation) or done, got {}",
                step_name(&other)
            )),
        }
    }

    fn secret_missing_field(&self, case: &Case) -> CheckResult {
        let Some(required) = self.info.secret_fields.iter().find(|f| !f.optional) else {
            return Err(
                "a managed-secret provider must declare at least one required field".into(),
            );
        };
        let mut ctx = self.context();
        ctx.secret_fields.retain(|(k, _)| *k != required.name);
        let step = Self::call("begin-connect", self.plugin.begin_connect(&ctx))?;
        expect_step(&step, case.expect.as_deref().unwrap_or("fail:any"))
    }

    fn secret_rejected(&self, case: &Case) -> CheckResult {
        let step = Self::call("begin-connect", self.plugin.begin_connect(&self.context()))?;
        let Step::Send(o) = step else { return Ok(()) };
        let resp = response(
            case.status.unwrap_or(401),
            case.content_type.as_deref(),
            case.body.as_deref().unwrap_or_default(),
            &case.headers,
        );
        let step = self.resume(&o.state, &Input::HttpResponse(resp))?;
        expect_step(&step, case.expect.as_deref().unwrap_or("fail:any"))
    }

    fn sign_credential(&self) -> Credential {
        let mut secrets = vec![("access_token".to_string(), ACCESS.to_string())];
        let mut metadata = Vec::new();
        // Components differ in where they keep non-secret fields (key ids, regions): offer
        // every field among the secrets, and the non-secret ones as metadata too.
        for f in &self.info.secret_fields {
            let v = example_value(&f.name, f.example.as_deref());
            if !f.secret {
                metadata.push((f.name.clone(), v.clone()));
            }
            secrets.push((f.name.clone(), v));
        }
        for f in &self.info.connection_params {
            metadata.push((f.name.clone(), example_value(&f.name, f.example.as_deref())));
        }
        Credential {
            secrets,
            metadata,
            scopes: self.info.default_scopes.clone(),
            expires_at: None,
        }
    }

    fn sign(&self, case: &Case) -> CheckResult {
        let credential = self.sign_credential();
        let allowed = self
            .info
            .allowed_hosts
            .first()
            .map(|h| concrete_host(h, &credential.metadata))
            .ok_or("info() declares no allowed hosts")?;
        let url = match case.host.as_deref() {
            Some("allowed") => format!("https://{allowed}/conformance?x=1"),
            Some("lookalike") => {
                format!("https://{allowed}.tessera-conformance.invalid/conformance")
            }
            Some(other) => other.to_string(),
            None => return Err("sign case without host".into()),
        };
        let request = HttpRequest {
            method: "GET".into(),
            url,
            headers: vec![("accept".into(), "application/json".into())],
            body: Vec::new(),
        };
        let result = Self::call("sign", self.plugin.sign(&request, &credential, NOW))?;
        match (case.expect.as_deref(), result) {
            (Some("signed"), Ok(signed)) => {
                if signed.headers == request.headers && signed.url == request.url {
                    Err("sign returned the request unchanged".into())
                } else {
                    Ok(())
                }
            }
            (Some("host-not-allowed"), Err(ProviderError::HostNotAllowed(_))) => Ok(()),
            (Some("host-not-allowed"), Ok(signed)) => {
                Err(format!("signed a request to {}", signed.url))
            }
            (want, Err(e)) => Err(format!("expected {want:?}, got error {}", error_name(&e))),
            (want, Ok(_)) => Err(format!("expected {want:?}, got a signed request")),
        }
    }

    fn classify(&self, case: &Case) -> CheckResult {
        let resp = response(
            case.status.unwrap_or(200),
            case.content_type.as_deref(),
            case.body.as_deref().unwrap_or_default(),
            &case.headers,
        );
        let got = Self::call(
            "classify",
            self.plugin.classify(&resp, case.now.unwrap_or(NOW)),
        )?;
        let ok = match (case.expect.as_deref().unwrap_or("ok"), &got) {
            ("ok", Classification::Ok)
            | ("unauthorized", Classification::Unauthorized)
            | ("insufficient-scope", Classification::InsufficientScope(_))
            | ("server-error", Classification::ServerError) => true,
            ("rate-limited", Classification::RateLimited(after)) => {
                case.retry_after.is_none() || *after == case.retry_after
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected {}, got {got:?}",
                case.expect.as_deref().unwrap_or("ok")
            ))
        }
    }
}

fn check_info(info: &ProviderInfo) -> CheckResult {
    let mut problems = Vec::new();
    if info.id.is_empty()
        || !info
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        problems.push(format!("id `{}` must be lower-case [a-z0-9-]", info.id));
    }
    if info.display_name.trim().is_empty() {
        problems.push("display-name is empty".into());
    }
    if info.version.split('.').count() != 3
        || !info
            .version
            .split('.')
            .all(|p| p.chars().next().is_some_and(|c| c.is_ascii_digit()))
    {
        problems.push(format!(
            "version `{}` is not MAJOR.MINOR.PATCH",
            info.version
        ));
    }
    if info.allowed_hosts.is_empty() {
        problems.push("allowed-hosts is empty: the component could not call anything".into());
    }
    for h in &info.allowed_hosts {
        let bare = h.strip_prefix("*.").unwrap_or(h);
        // A template (`{api_host}`) is a host name only once filled in.
        let templated = bare.contains('{');
        if bare.is_empty()
            || bare.contains('/')
            || bare.contains(':')
            || bare.contains('*')
            || (!templated && !bare.contains('.'))
        {
            problems.push(format!(
                "allowed host `{h}` must be a host name, optionally `*.` prefixed"
            ));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for f in info.secret_fields.iter().chain(&info.connection_params) {
        if !names.insert(f.name.as_str()) {
            problems.push(format!("field `{}` is declared twice", f.name));
        }
        if f.name.is_empty()
            || !f
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            problems.push(format!("field name `{}` must be snake_case", f.name));
        }
        if f.label.trim().is_empty() {
            problems.push(format!("field `{}` has no label", f.name));
        }
    }
    match info.auth_kind {
        AuthKind::Oauth2 | AuthKind::Oauth1 => {
            if info.scope_separator.is_empty() && info.auth_kind == AuthKind::Oauth2 {
                problems.push("scope-separator is empty".into());
            }
        }
        AuthKind::ManagedSecret => {
            if !info.secret_fields.iter().any(|f| f.secret) {
                problems.push(
                    "a managed-secret provider must declare at least one secret field".into(),
                );
            }
        }
    }
    for s in &info.scopes {
        if s.label.trim().is_empty() {
            problems.push(format!("scope `{}` has no label", s.name));
        }
    }
    for url in info.logo_url.iter().chain(&info.docs_url) {
        if !url.starts_with("https://") {
            problems.push(format!("`{url}` must be an https URL"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Checks the common shape of a token-endpoint request and returns its form.
fn check_token_request(
    req: &HttpRequest,
    grant_type: &str,
) -> Result<BTreeMap<String, String>, String> {
    if req.method != "POST" {
        return Err(format!("token request must be POST, got {}", req.method));
    }
    if !req.url.starts_with("https://") {
        return Err(format!("token endpoint must be https, got {}", req.url));
    }
    let ct = header(&req.headers, "content-type").unwrap_or_default();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(format!(
            "token request content-type must be form-urlencoded, got `{ct}`"
        ));
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    expect_param(&form, "grant_type", grant_type)?;
    let basic = header(&req.headers, "authorization").filter(|v| v.starts_with("Basic "));
    let in_body = form.contains_key("client_secret");
    match (basic, in_body) {
        (Some(_), true) => {
            return Err(
                "client secret sent both in Basic auth and in the body (RFC 6749 §2.3)".into(),
            );
        }
        (Some(b), false) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b.trim_start_matches("Basic ").trim())
                .map_err(|_| "Basic credentials are not base64")?;
            let text = String::from_utf8_lossy(&decoded);
            if text != format!("{CLIENT_ID}:{CLIENT_SECRET}") {
                return Err("Basic credentials are not client_id:client_secret".into());
            }
        }
        (None, true) => {
            expect_param(&form, "client_id", CLIENT_ID)?;
            expect_param(&form, "client_secret", CLIENT_SECRET)?;
        }
        (None, false) => expect_param(&form, "client_id", CLIENT_ID)?,
    }
    Ok(form)
}

fn expect_param(q: &BTreeMap<String, String>, name: &str, want: &str) -> CheckResult {
    match q.get(name) {
        Some(v) if v == want => Ok(()),
        Some(v) => Err(format!("`{name}` is `{v}`, expected `{want}`")),
        None => Err(format!("`{name}` is missing")),
    }
}

fn expect_step(step: &Step, expect: &str) -> CheckResult {
    let ok = match (expect, step) {
        ("send", Step::Send(_)) | ("fail:any", Step::Fail(_)) => true,
        (want, Step::Fail(e)) => want.strip_prefix("fail:") == Some(error_name(e)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let got = match step {
            Step::Fail(e) => format!("fail({})", error_name(e)),
            other => step_name(other).to_string(),
        };
        Err(format!("expected {expect}, got {got}"))
    }
}

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Send(_) => "send",
        Step::Redirect(_) => "redirect",
        Step::Done(_) => "done",
        Step::Fail(_) => "fail",
    }
}

fn error_name(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::ReauthorizeRequired(_) => "reauthorize-required",
        ProviderError::AccessDenied(_) => "access-denied",
        ProviderError::InvalidInput(_) => "invalid-input",
        ProviderError::HostNotAllowed(_) => "host-not-allowed",
        ProviderError::Upstream(_) => "upstream",
        ProviderError::MalformedResponse(_) => "malformed-response",
        ProviderError::Unsupported(_) => "unsupported",
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn response(
    status: u16,
    content_type: Option<&str>,
    body: &str,
    headers: &[(String, String)],
) -> HttpResponse {
    let mut all = headers.to_vec();
    if let Some(ct) = content_type {
        all.push(("content-type".into(), ct.into()));
    }
    HttpResponse {
        status,
        headers: all,
        body: body.as_bytes().to_vec(),
    }
}

/// A plausible value for a field, used where the component gives no example.
fn example_value(name: &str, example: Option<&str>) -> String {
    example.map_or_else(|| format!("conformance-{name}"), str::to_string)
}

/// Turns an allow-list entry into a concrete host name.
fn concrete_host(entry: &str, metadata: &[(String, String)]) -> String {
    let mut host = entry.replacen("*.", "conformance.", 1);
    for (k, v) in metadata {
        host = host.replace(&format!("{{{k}}}"), v);
    }
    host
}

fn host_allowed_by(info: &ProviderInfo, url: &str) -> bool {
    let Some(host) = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    else {
        return false;
    };
    info.allowed_hosts.iter().any(|entry| {
        if entry.contains('{') {
            // Templated over a parameter: compare the fixed suffix.
            entry
                .rsplit_once('}')
                .is_some_and(|(_, suffix)| host.ends_with(suffix))
        } else if let Some(suffix) = entry.strip_prefix("*.") {
            host.ends_with(&format!(".{suffix}"))
        } else {
            host == *entry
        }
    })
}
