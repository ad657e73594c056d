//! The SDK against two in-process servers on 127.0.0.1: a stand-in Tessera host that
//! verifies every request signature with `tessera_proto::signing` (as the real verifier
//! does) and answers the `/v1` routes, and a stand-in provider ("upstream") that checks the
//! auth material retrieve mode must bring it.
//!
//! The real host is exercised end to end by the workspace's `tests` crate.

// A stand-in server that cannot do its job should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt as _;
use tessera_proto::calls::{
    CALLER_HEADER, CONSTRAINTS_HEADER, ProxyRequest, RetrieveRequest, RetrieveResponse,
    UPSTREAM_HEADER,
};
use tessera_proto::grants::RevokeRequest;
use tessera_proto::signing::{self, ApiKey, Message, SigningKey};
use tessera_sdk::{
    App, AuditPage, Error, Grant, GrantKind, GrantStatus, ManagedSecretRequest,
    ManagedSecretResponse, Method, Principal, ProviderSummary, Scope, Whoami,
};

const KEY: &str = "tsr_app_5e1f0a7c3b9d2468_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
/// Same key id, another secret: signs validly-shaped requests the host must refuse.
const WRONG_KEY: &str = "tsr_app_5e1f0a7c3b9d2468_4OHi4-Tl5ufo6err7O3u7_Dx8vP09fb3-Pn6-_z9_v8";
const UPSTREAM_TOKEN: &str = "Bearer tok-from-host";

// ---------------------------------------------------------------------------------------
// The stand-in host.

/// One request the host accepted.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    caller: Option<String>,
    constraints: Option<String>,
    components: Vec<String>,
    body: Bytes,
}

struct Host {
    origin: String,
    key: SigningKey,
    nonces: Mutex<HashSet<String>>,
    seen: Mutex<Vec<Seen>>,
}

impl Host {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen().pop().expect("the host saw no request")
    }
}

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Verifies the request as `docs/SIGNING.md` §4 says, accepting the two attribution headers
/// as extra covered components after the mandatory three. Returns the covered components.
fn verify(
    host: &Host,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<String>, &'static str> {
    let field = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(input), Some(sig)) = (field("signature-input"), field("signature")) else {
        return Err("signature_missing");
    };
    let params = signing::parse_signature_input(input, "tsr")
        .ok()
        .flatten()
        .ok_or("signature_malformed")?;
    let signature = signing::parse_signature(sig, "tsr")
        .ok()
        .flatten()
        .ok_or("signature_malformed")?;
    // The mandatory three, then each attribution header exactly when it is sent.
    let components = params.components().to_vec();
    let mut expected: Vec<String> = signing::COVERED_COMPONENTS.map(str::to_owned).to_vec();
    expected.extend(
        signing::OPTIONAL_COVERED_HEADERS
            .iter()
            .filter(|name| headers.contains_key(**name))
            .map(|name| (*name).to_owned()),
    );
    if components != expected {
        return Err("signature_components_invalid");
    }
    let Some(signing::ParamValue::Integer(created)) = params.param("created") else {
        return Err("signature_malformed");
    };
    if (unix_now() - created).abs() > signing::MAX_SKEW_SECONDS {
        return Err("signature_expired");
    }
    let digest = field("content-digest")
        .and_then(|d| signing::parse_content_digest_sha256(d).ok().flatten())
        .ok_or("digest_missing")?;
    if digest != signing::sha256(body) {
        return Err("digest_mismatch");
    }
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    let target_uri = format!("{}{path_and_query}", host.origin);
    let base = signing::signature_base(
        &Message {
            method,
            target_uri: &target_uri,
            headers: &pairs,
        },
        &params,
    )
    .map_err(|_| "signature_invalid")?;
    if signature != host.key.sign(base.as_bytes()) {
        return Err("signature_invalid");
    }
    let Some(signing::ParamValue::String(nonce)) = params.param("nonce") else {
        return Err("signature_malformed");
    };
    if !host.nonces.lock().unwrap().insert(nonce.clone()) {
        return Err("nonce_replayed");
    }
    Ok(components)
}

fn problem(status: StatusCode, code: &str, missing: Option<&[Scope]>) -> Response {
    let mut body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": format!("stand-in host says {code}"),
        "code": code,
    });
    if let Some(missing) = missing {
        body["missing_scopes"] = serde_json::to_value(missing).unwrap();
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn json(value: &impl serde::Serialize) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(value).unwrap(),
    )
        .into_response()
}

fn grant(id: &str) -> Grant {
    Grant {
        id: id.to_owned(),
        provider: "stripe".into(),
        kind: GrantKind::ManagedSecret,
        principal: Principal::System,
        account_label: "acct_1".into(),
        scopes: vec![],
        missing_scopes: vec![],
        status: GrantStatus::Active,
        metadata: BTreeMap::default(),
        expires_at: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: None,
        revoked_at: None,
        valid_until: None,
    }
}

async fn host_handler(State(host): State<Arc<Host>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap();
    let method = parts.method.as_str().to_owned();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let components = match verify(&host, &method, &path_and_query, &parts.headers, &body) {
        Ok(components) => components,
        Err(code) => return problem(StatusCode::UNAUTHORIZED, code, None),
    };
    let header_text = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let constraints = header_text(CONSTRAINTS_HEADER);
    host.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path_and_query: path_and_query.clone(),
        caller: header_text(CALLER_HEADER),
        constraints: constraints.clone(),
        components,
        body: body.clone(),
    });
    // The key holds every scope; the constraints header narrows it.
    let effective: Vec<Scope> = match &constraints {
        Some(list) => Scope::parse_list(list).unwrap(),
        None => Scope::ALL.to_vec(),
    };
    let require = |scope: Scope| -> Result<(), Box<Response>> {
        if effective.contains(&scope) {
            Ok(())
        } else {
            Err(Box::new(problem(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                Some(&[scope]),
            )))
        }
    };
    let path = parts.uri.path();
    let result = match (method.as_str(), path) {
        ("GET", "/v1/whoami") => Ok(json(&Whoami {
            app_id: "app-1".into(),
            key_id: "5e1f0a7c3b9d2468".into(),
            kind: "app".into(),
            agent_id: None,
            scopes: effective.clone(),
        })),
        ("GET", "/v1/providers") => Ok(json(&vec![ProviderSummary {
            id: "stripe".into(),
            display_name: "Stripe".into(),
            auth_kind: tessera_proto::providers::AuthKind::ManagedSecret,
            version: "0.1.0".into(),
            contract_version: "0.1.0".into(),
            categories: vec![],
            source: "builtin".into(),
        }])),
        ("POST", "/v1/retrieve") => require(Scope::TokensRetrieve).map(|()| retrieve(&body)),
        ("POST", "/v1/proxy") => require(Scope::ProxyExecute).map(|()| proxy(&body)),
        ("POST", "/v1/managed-secrets") => require(Scope::GrantsWrite).map(|()| {
            let req: ManagedSecretRequest = serde_json::from_slice(&body).unwrap();
            let mut g = grant("g-new");
            g.provider = req.provider;
            json(&ManagedSecretResponse {
                grant: g,
                rotated: false,
            })
        }),
        ("GET", "/v1/grants") => require(Scope::GrantsRead).map(|()| {
            json(&tessera_sdk::GrantPage {
                items: vec![grant("g-1")],
                next_cursor: Some("next-page".into()),
            })
        }),
        ("GET", "/v1/grants/missing") => {
            Ok(problem(StatusCode::NOT_FOUND, "grant_not_found", None))
        }
        ("GET", p) if p.starts_with("/v1/grants/") => {
            require(Scope::GrantsRead).map(|()| json(&grant(p.trim_start_matches("/v1/grants/"))))
        }
        ("DELETE", p) if p.starts_with("/v1/grants/") => require(Scope::GrantsWrite).map(|()| {
            let _: RevokeRequest = serde_json::from_slice(&body).unwrap();
            StatusCode::NO_CONTENT.into_response()
        }),
        ("GET", "/v1/audit") => require(Scope::AuditRead).map(|()| {
            json(&AuditPage {
                items: vec![],
                next_after: Some(8),
            })
        }),
        _ => Ok(problem(StatusCode::NOT_FOUND, "not_found", None)),
    };
    result.unwrap_or_else(|refusal| *refusal)
}

/// `POST /v1/retrieve`: adds a query parameter and sets `Authorization`, as a provider
/// with query and header auth would.
fn retrieve(body: &[u8]) -> Response {
    let req: RetrieveRequest = serde_json::from_slice(body).unwrap();
    let described_body = req
        .body_base64
        .as_deref()
        .map(|b| STANDARD.decode(b).unwrap())
        .unwrap_or_default();
    if req.body_sha256.as_deref() != Some(hex::encode(signing::sha256(&described_body)).as_str()) {
        return problem(StatusCode::BAD_REQUEST, "invalid_request", None);
    }
    match req.grant.grant_id.as_deref() {
        Some("revoked") => return problem(StatusCode::FORBIDDEN, "grant_revoked", None),
        None => return problem(StatusCode::NOT_FOUND, "grant_not_found", None),
        Some(_) => {}
    }
    let sep = if req.url.contains('?') { '&' } else { '?' };
    json(&RetrieveResponse {
        grant_id: req.grant.grant_id.unwrap_or_default(),
        provider: "example".into(),
        url: format!("{}{sep}access_key=k-123", req.url),
        set_headers: vec![("Authorization".into(), UPSTREAM_TOKEN.into())],
        expires_at: Some("2030-01-01T00:00:00Z".into()),
        request_id: "req-retrieve".into(),
    })
}

/// `POST /v1/proxy`: answers as the provider would, or as the host refusing.
fn proxy(body: &[u8]) -> Response {
    let req: ProxyRequest = serde_json::from_slice(body).unwrap();
    match req.grant.grant_id.as_deref() {
        Some("gone") => return problem(StatusCode::NOT_FOUND, "grant_not_found", None),
        Some("stale") => return problem(StatusCode::UNAUTHORIZED, "grant_reauth_required", None),
        Some("provider-404") => {
            return (
                StatusCode::NOT_FOUND,
                [(UPSTREAM_HEADER, "example")],
                "no such customer",
            )
                .into_response();
        }
        _ => {}
    }
    let sent = req
        .body_base64
        .map(|b| String::from_utf8(STANDARD.decode(b).unwrap()).unwrap())
        .unwrap_or_default();
    let accept = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let chunks = vec![
        Ok::<_, std::io::Error>(format!("upstream saw {} {} ", req.method, req.url)),
        Ok(format!("accept={accept} ")),
        Ok(format!("body={sent}")),
    ];
    (
        StatusCode::CREATED,
        [
            (UPSTREAM_HEADER, "example"),
            ("tessera-request-id", "req-proxy"),
            ("x-provider-header", "kept"),
        ],
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// The stand-in provider.

async fn upstream_handler(headers: HeaderMap, request: Request) -> Response {
    let uri = request.uri().clone();
    let method = request.method().clone();
    let body = to_bytes(request.into_body(), 1 << 20).await.unwrap();
    let path = uri.path();
    if path == "/redirect-away" {
        // Another origin (same server, other host name): auth must not follow.
        let port = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.rsplit_once(':'))
            .map(|(_, p)| p.to_owned())
            .unwrap();
        return (
            StatusCode::FOUND,
            [(header::LOCATION, format!("http://localhost:{port}/echo"))],
        )
            .into_response();
    }
    if path == "/redirect-same" {
        return (StatusCode::FOUND, [(header::LOCATION, "/echo?moved=1")]).into_response();
    }
    let authorizations: Vec<&str> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    if authorizations != [UPSTREAM_TOKEN] {
        return (StatusCode::UNAUTHORIZED, format!("{authorizations:?}")).into_response();
    }
    json(&serde_json::json!({
        "method": method.as_str(),
        "path_and_query": uri.path_and_query().map(PathAndQuery::as_str),
        "x_app": headers.get("x-app").map(|v| v.to_str().unwrap()),
        "content_type": headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap()),
        "body": String::from_utf8(body.to_vec()).unwrap(),
    }))
}

// ---------------------------------------------------------------------------------------
// Harness.

struct Servers {
    host: Arc<Host>,
    upstream: String,
}

async fn start() -> Servers {
    let host_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", host_listener.local_addr().unwrap());
    let host = Arc::new(Host {
        origin,
        key: ApiKey::parse(KEY).unwrap().signing_key(),
        nonces: Mutex::default(),
        seen: Mutex::default(),
    });
    let router = Router::new()
        .fallback(host_handler)
        .with_state(Arc::clone(&host));
    tokio::spawn(async move { axum::serve(host_listener, router).await.unwrap() });

    let upstream_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", upstream_listener.local_addr().unwrap());
    let router = Router::new().fallback(upstream_handler);
    tokio::spawn(async move { axum::serve(upstream_listener, router).await.unwrap() });
    Servers { host, upstream }
}

impl Servers {
    fn app(&self) -> App {
        App::new(KEY, &self.host.origin).unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn every_host_request_is_signed_and_carries_caller_and_constraints() {
    let s = start().await;
    let app = s.app().caller("email-bot");

    let who = app.whoami().await.unwrap();
    assert_eq!(who.key_id, "5e1f0a7c3b9d2468");
    assert_eq!(who.scopes, Scope::ALL.to_vec());
    let seen = s.host.last();
    assert_eq!(
        (seen.method.as_str(), seen.path_and_query.as_str()),
        ("GET", "/v1/whoami")
    );
    assert_eq!(seen.caller.as_deref(), Some("email-bot"));
    assert_eq!(seen.constraints, None);
    assert!(seen.body.is_empty());
    assert_eq!(
        seen.components,
        ["@method", "@target-uri", "content-digest", CALLER_HEADER]
    );

    let narrowed = app.with_constraints(&[Scope::TokensRetrieve, Scope::GrantsRead]);
    let who = narrowed.whoami().await.unwrap();
    assert_eq!(who.scopes, vec![Scope::TokensRetrieve, Scope::GrantsRead]);
    let seen = s.host.last();
    assert_eq!(
        seen.constraints.as_deref(),
        Some("tokens:retrieve grants:read")
    );
    assert_eq!(seen.caller.as_deref(), Some("email-bot"));
    // Both attribution headers are covered by the signature, after the mandatory three.
    assert_eq!(
        seen.components,
        [
            "@method",
            "@target-uri",
            "content-digest",
            CONSTRAINTS_HEADER,
            CALLER_HEADER
        ]
    );

    // An empty constraint list is sent (and signed) as an empty header: no scope at all.
    let nothing = app.with_constraints(&[]);
    assert_eq!(nothing.whoami().await.unwrap().scopes, vec![]);
    let seen = s.host.last();
    assert_eq!(seen.constraints.as_deref(), Some(""));
    assert_eq!(seen.components.len(), 5);

    let providers = app.providers().await.unwrap();
    assert_eq!(providers[0].id, "stripe");
    // Fresh nonce per request: the host would have answered nonce_replayed otherwise.
    assert_eq!(s.host.seen().len(), 4);
}

#[tokio::test]
async fn a_request_signed_with_the_wrong_secret_is_unauthorized() {
    let s = start().await;
    let app = App::new(WRONG_KEY, &s.host.origin).unwrap();
    let err = app.whoami().await.unwrap_err();
    let Error::Unauthorized { code, detail } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(code, "signature_invalid");
    assert!(detail.contains("signature_invalid"), "{detail}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("4OHi4"), "{text}");
}

#[tokio::test]
async fn retrieve_mode_applies_the_host_material_and_calls_the_provider_itself() {
    let s = start().await;
    let app = s.app().caller("billing");
    let url = format!("{}/v1/customers?limit=3", s.upstream);
    let resp = app
        .request(Method::POST, &url)
        .grant_id("g-1")
        .reason("sync invoices")
        .context("ticket", "42")
        .header("authorization", "Bearer stale-app-token")
        .header("x-app", "kept")
        .json(&serde_json::json!({"name": "Ada"}))
        .send()
        .await
        .unwrap();
    // The upstream's own response, untouched.
    assert_eq!(resp.status(), 200);
    let echoed: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(
        echoed["path_and_query"],
        "/v1/customers?limit=3&access_key=k-123"
    );
    assert_eq!(echoed["x_app"], "kept");
    assert_eq!(echoed["content_type"], "application/json");
    assert_eq!(echoed["body"], r#"{"name":"Ada"}"#);

    // What the host was told: the exact request, its body hash and the audit note.
    let seen = s.host.last();
    assert_eq!(seen.path_and_query, "/v1/retrieve");
    assert_eq!(seen.caller.as_deref(), Some("billing"));
    let described: RetrieveRequest = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(described.method, "POST");
    assert_eq!(described.url, url);
    assert_eq!(described.grant.grant_id.as_deref(), Some("g-1"));
    assert_eq!(described.note.reason.as_deref(), Some("sync invoices"));
    assert_eq!(
        described.note.context.get("ticket").map(String::as_str),
        Some("42")
    );
    assert_eq!(
        described.body_sha256.as_deref(),
        Some(hex::encode(signing::sha256(br#"{"name":"Ada"}"#)).as_str())
    );
    assert_eq!(
        described.headers,
        vec![
            (
                "authorization".to_owned(),
                "Bearer stale-app-token".to_owned()
            ),
            ("x-app".to_owned(), "kept".to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
        ]
    );
}

#[tokio::test]
async fn retrieve_mode_without_a_body_sends_the_empty_body_hash_and_no_body() {
    let s = start().await;
    let authorized = s
        .app()
        .request(Method::GET, format!("{}/v1/customers", s.upstream))
        .grant_id("g-1")
        .authorize()
        .await
        .unwrap();
    assert_eq!(authorized.provider, "example");
    assert_eq!(authorized.request_id, "req-retrieve");
    assert_eq!(authorized.url.query(), Some("access_key=k-123"));
    assert_eq!(
        authorized.headers,
        vec![("Authorization".to_owned(), UPSTREAM_TOKEN.to_owned())]
    );
    let debug = format!("{authorized:?}");
    assert!(
        !debug.contains("tok-from-host") && !debug.contains("k-123"),
        "{debug}"
    );
    let described: RetrieveRequest = serde_json::from_slice(&s.host.last().body).unwrap();
    assert_eq!(
        described.body_sha256.as_deref(),
        Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(described.body_base64, None);
}

#[tokio::test]
async fn retrieve_mode_maps_host_refusals_and_never_calls_the_provider() {
    let s = start().await;
    let err = s
        .app()
        .request(Method::GET, format!("{}/v1/customers", s.upstream))
        .grant_id("revoked")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::GrantRevoked { .. }), "{err:?}");

    let err = s
        .app()
        .with_constraints(&[Scope::ProxyExecute])
        .request(Method::GET, format!("{}/v1/customers", s.upstream))
        .grant_id("g-1")
        .send()
        .await
        .unwrap_err();
    let Error::InsufficientScope { missing, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(missing, &[Scope::TokensRetrieve]);
}

#[tokio::test]
async fn retrieve_mode_follows_redirects_only_within_the_provider_origin() {
    let s = start().await;
    let app = s.app();
    let same = app
        .request(Method::GET, format!("{}/redirect-same", s.upstream))
        .grant_id("g-1")
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    let echoed: serde_json::Value = same.json().await.unwrap();
    assert_eq!(echoed["path_and_query"], "/echo?moved=1");

    let away = app
        .request(Method::GET, format!("{}/redirect-away", s.upstream))
        .grant_id("g-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        away.status(),
        302,
        "a cross-origin redirect is returned, not followed"
    );
}

#[tokio::test]
async fn proxy_mode_returns_the_provider_status_headers_and_streamed_body() {
    let s = start().await;
    let resp = s
        .app()
        .proxy_request(Method::POST, "https://api.example.com/v1/items?x=1")
        .grant_id("g-1")
        .reason("create item")
        .header("accept", "application/json")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.provider(), "example");
    assert_eq!(resp.request_id(), Some("req-proxy"));
    assert_eq!(resp.headers()["x-provider-header"], "kept");
    let mut body = Vec::new();
    let mut stream = Box::pin(resp.bytes_stream());
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "upstream saw POST https://api.example.com/v1/items?x=1 accept=application/json body=hello"
    );
    let described: ProxyRequest = serde_json::from_slice(&s.host.last().body).unwrap();
    assert_eq!(described.note.reason.as_deref(), Some("create item"));
    assert_eq!(described.body_base64.as_deref(), Some("aGVsbG8="));
}

#[tokio::test]
async fn proxy_mode_tells_a_provider_error_from_a_host_refusal() {
    let s = start().await;
    let app = s.app();
    // The provider's 404 is an answer, not an error.
    let resp = app
        .proxy_request(Method::GET, "https://api.example.com/v1/customers/cus_x")
        .grant_id("provider-404")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "no such customer");

    // The host's own 404 (no tessera-upstream) is a typed error.
    let err = app
        .proxy_request(Method::GET, "https://api.example.com/v1/customers")
        .grant_id("gone")
        .send()
        .await
        .unwrap_err();
    let Error::GrantNotFound { detail } = &err else {
        panic!("{err:?}");
    };
    assert!(detail.contains("grant_not_found"), "{detail}");

    let err = app
        .proxy_request(Method::GET, "https://api.example.com/v1/customers")
        .grant_id("stale")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::GrantReauthRequired { .. }), "{err:?}");
}

#[tokio::test]
async fn grants_audit_and_managed_secrets_use_their_routes_and_filters() {
    let s = start().await;
    let app = s.app();

    let page = app
        .grants()
        .provider("stripe")
        .principal(&Principal::User {
            issuer: "https://idp.example.com".into(),
            subject: "alice".into(),
        })
        .status(GrantStatus::Active)
        .kind(GrantKind::Oauth)
        .limit(20)
        .cursor("c1")
        .list()
        .await
        .unwrap();
    assert_eq!(page.items[0].id, "g-1");
    assert_eq!(page.next_cursor.as_deref(), Some("next-page"));
    assert_eq!(
        s.host.last().path_and_query,
        "/v1/grants?provider=stripe&principal=user%3Ahttps%3A%2F%2Fidp.example.com%3Aalice\
         &status=active&kind=oauth&limit=20&cursor=c1"
    );

    assert_eq!(app.grant("g/7").await.unwrap().id, "g%2F7");
    assert_eq!(s.host.last().path_and_query, "/v1/grants/g%2F7");
    assert!(matches!(
        app.grant("missing").await.unwrap_err(),
        Error::GrantNotFound { .. }
    ));

    app.revoke_grant("g-1", Some("user left")).await.unwrap();
    let seen = s.host.last();
    assert_eq!(
        (seen.method.as_str(), seen.path_and_query.as_str()),
        ("DELETE", "/v1/grants/g-1")
    );
    let revoke: RevokeRequest = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(revoke.reason.as_deref(), Some("user left"));

    let audit = app
        .audit()
        .grant_id("g-1")
        .after(7)
        .limit(50)
        .list()
        .await
        .unwrap();
    assert_eq!(audit.next_after, Some(8));
    assert_eq!(
        s.host.last().path_and_query,
        "/v1/audit?grant_id=g-1&after=7&limit=50"
    );

    let err = app
        .with_constraints(&[Scope::TokensRetrieve])
        .audit()
        .list()
        .await
        .unwrap_err();
    let Error::InsufficientScope { missing, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(missing, &[Scope::AuditRead]);

    let stored = app
        .set_managed_secret(&ManagedSecretRequest {
            provider: "stripe".into(),
            principal: None,
            fields: [("api_key".to_owned(), "sk_test_123".to_owned())].into(),
            connection_params: BTreeMap::default(),
            grant_id: None,
        })
        .await
        .unwrap();
    assert_eq!(stored.grant.provider, "stripe");
    assert!(!stored.rotated);
    assert_eq!(s.host.last().path_and_query, "/v1/managed-secrets");
}

#[tokio::test]
async fn invalid_input_fails_before_anything_is_sent() {
    let s = start().await;
    let app = s.app();
    let err = app
        .request(Method::GET, "not a url")
        .grant_id("g-1")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let err = app
        .proxy_request(Method::GET, "https://api.example.com/")
        .header("x-key", "line\nbreak-secret")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert!(!err.to_string().contains("break-secret"), "{err}");
    let err = app
        .clone()
        .caller("bad\ncaller")
        .whoami()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert!(s.host.seen().is_empty());
}
