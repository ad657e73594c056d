//! GitHub connect flow, signing, classification and revocation.

use super::*;
use tessera_provider_sdk::http::{form_decode, header};
use tessera_provider_sdk::testkit::*;
use tessera_provider_sdk::{AuthKind, Input, Provider, ProviderError, UpstreamError};

type P = OAuth2Adapter<GitHub>;

fn q<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pair(pairs, k)
}

fn token_request() -> tessera_provider_sdk::Outgoing {
    let r = expect_redirect(P::begin_connect(context()));
    expect_send(P::resume(
        context(),
        r.state,
        callback(&[("code", "gh-code"), ("state", "st-123")]),
    ))
}

#[test]
fn info_is_complete() {
    let info = P::info();
    assert_eq!(info.id, "github");
    assert_eq!(info.auth_kind, AuthKind::Oauth2);
    assert!(info.pkce && info.supports_refresh && info.supports_revoke);
    assert!(info.scopes.iter().any(|s| s.name == "repo"));
    assert!(info.allowed_hosts.contains(&"api.github.com".to_owned()));
    assert!(info.logo_url.is_some() && info.docs_url.is_some());
    assert!(info.secret_fields.is_empty());
}

#[test]
fn redirect_goes_to_github_with_pkce() {
    let mut ctx = context();
    ctx.scopes = vec!["repo".into(), "read:org".into()];
    let r = expect_redirect(P::begin_connect(ctx));
    assert!(
        r.url
            .starts_with("https://github.com/login/oauth/authorize?")
    );
    let query = query(&r.url);
    assert_eq!(q(&query, "client_id"), Some("client-1"));
    assert_eq!(
        q(&query, "redirect_uri"),
        Some("https://tessera.example/oauth/callback")
    );
    assert_eq!(q(&query, "scope"), Some("repo read:org"));
    assert_eq!(q(&query, "state"), Some("st-123"));
    assert_eq!(q(&query, "code_challenge_method"), Some("S256"));
    assert!(q(&query, "code_challenge").is_some());
}

#[test]
fn token_request_posts_the_secret_and_asks_for_json() {
    let out = token_request();
    assert_eq!(out.request.method, "POST");
    assert_eq!(
        out.request.url,
        "https://github.com/login/oauth/access_token"
    );
    assert_eq!(
        header(&out.request.headers, "accept"),
        Some("application/json")
    );
    let form = form_decode(&out.request.body);
    assert_eq!(q(&form, "code"), Some("gh-code"));
    assert_eq!(q(&form, "client_id"), Some("client-1"));
    assert_eq!(q(&form, "client_secret"), Some("s3cret"));
    assert!(q(&form, "code_verifier").is_some());
}

#[test]
fn http_200_error_from_the_token_endpoint_is_an_upstream_error() {
    let out = token_request();
    let e = expect_fail(P::resume(
        context(),
        out.state,
        json_input(
            200,
            r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired.","error_uri":"https://docs.github.com"}"#,
        ),
    ));
    assert_eq!(
        e,
        ProviderError::Upstream(UpstreamError {
            status: 200,
            code: "bad_verification_code".into(),
            description: "The code passed is incorrect or expired.".into(),
        })
    );
}

#[test]
fn oauth_app_token_without_expiry_then_login_label() {
    let out = token_request();
    let lookup = expect_send(P::resume(
        context(),
        out.state,
        json_input(
            200,
            r#"{"access_token":"gho_abc","token_type":"bearer","scope":"repo,read:org"}"#,
        ),
    ));
    assert_eq!(lookup.request.url, "https://api.github.com/user");
    let h = &lookup.request.headers;
    assert_eq!(header(h, "authorization"), Some("Bearer gho_abc"));
    assert_eq!(header(h, "accept"), Some("application/vnd.github+json"));
    assert_eq!(header(h, "x-github-api-version"), Some("2022-11-28"));
    assert_eq!(header(h, "user-agent"), Some("tessera"));
    let done = expect_done(P::resume(
        context(),
        lookup.state,
        json_input(200, r#"{"login":"octocat","id":1}"#),
    ));
    assert_eq!(done.account_label, "octocat");
    assert_eq!(done.credential.expires_at, None);
    assert_eq!(
        done.credential.scopes,
        vec!["repo".to_owned(), "read:org".to_owned()]
    );
    assert_eq!(pair(&done.credential.metadata, "user_id"), Some("1"));
}

#[test]
fn github_app_user_token_expires_and_refreshes() {
    let out = token_request();
    let lookup = expect_send(P::resume(
        context(),
        out.state,
        json_input(
            200,
            r#"{"access_token":"ghu_1","expires_in":28800,"refresh_token":"ghr_1","refresh_token_expires_in":15811200,"scope":"","token_type":"bearer"}"#,
        ),
    ));
    let done = expect_done(P::resume(
        context(),
        lookup.state,
        json_input(200, r#"{"login":"octocat"}"#),
    ));
    assert_eq!(done.credential.expires_at, Some(1_000 + 28_800));
    let out = expect_send(P::refresh(context(), done.credential));
    let form = form_decode(&out.request.body);
    assert_eq!(q(&form, "grant_type"), Some("refresh_token"));
    assert_eq!(q(&form, "refresh_token"), Some("ghr_1"));
    let e = expect_fail(P::resume(
        context(),
        out.state,
        json_input(200, r#"{"error":"bad_refresh_token"}"#),
    ));
    assert!(matches!(e, ProviderError::ReauthorizeRequired(_)));
}

#[test]
fn oauth_app_token_cannot_refresh() {
    let e = expect_fail(P::refresh(
        context(),
        credential(&[("access_token", "gho_abc")], &[]),
    ));
    assert!(matches!(e, ProviderError::ReauthorizeRequired(_)));
}

#[test]
fn sign_only_for_github_api_hosts() {
    let cred = credential(&[("access_token", "gho_abc")], &[]);
    for url in [
        "https://api.github.com/user/repos",
        "https://uploads.github.com/repos/o/r/releases/1/assets",
    ] {
        let signed = P::sign(request("GET", url), cred.clone(), 0).unwrap();
        assert_eq!(
            header(&signed.headers, "authorization"),
            Some("Bearer gho_abc")
        );
        assert_eq!(header(&signed.headers, "user-agent"), Some("tessera"));
    }
    for url in [
        "https://api.github.com.evil.example/",
        "https://gist.github.com/",
        "http://api.github.com/",
    ] {
        assert!(matches!(
            P::sign(request("GET", url), cred.clone(), 0),
            Err(ProviderError::HostNotAllowed(_))
        ));
    }
}

fn resp(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
    response(status, headers, "{}")
}

#[test]
fn classify_rate_limits() {
    let now = 1_700_000_000;
    let primary = resp(
        403,
        &[
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1700000060"),
        ],
    );
    assert_eq!(
        P::classify(primary, now),
        Classification::RateLimited(Some(60))
    );
    let secondary = resp(
        403,
        &[("Retry-After", "30"), ("X-RateLimit-Remaining", "12")],
    );
    assert_eq!(
        P::classify(secondary, now),
        Classification::RateLimited(Some(30))
    );
    assert_eq!(
        P::classify(resp(429, &[]), now),
        Classification::RateLimited(None)
    );
}

#[test]
fn classify_missing_scope_from_github_headers() {
    let r = resp(
        404,
        &[
            ("X-Accepted-OAuth-Scopes", "repo"),
            ("X-OAuth-Scopes", "read:user, gist"),
        ],
    );
    assert_eq!(
        P::classify(r, 0),
        Classification::InsufficientScope(vec!["repo".into()])
    );
    let r = resp(
        403,
        &[
            ("X-Accepted-OAuth-Scopes", "admin:org, read:org"),
            ("X-OAuth-Scopes", ""),
        ],
    );
    assert_eq!(
        P::classify(r, 0),
        Classification::InsufficientScope(vec!["admin:org".into(), "read:org".into()])
    );
    let implied = resp(
        404,
        &[
            ("X-Accepted-OAuth-Scopes", "public_repo"),
            ("X-OAuth-Scopes", "repo"),
        ],
    );
    assert_eq!(P::classify(implied, 0), Classification::Ok);
    let held = resp(
        403,
        &[
            ("X-Accepted-OAuth-Scopes", "repo"),
            ("X-OAuth-Scopes", "repo, gist"),
        ],
    );
    assert_eq!(P::classify(held, 0), Classification::Ok);
}

#[test]
fn classify_standard_cases() {
    assert_eq!(
        P::classify(resp(200, &[("X-OAuth-Scopes", "repo")]), 0),
        Classification::Ok
    );
    assert_eq!(P::classify(resp(401, &[]), 0), Classification::Unauthorized);
    assert_eq!(P::classify(resp(502, &[]), 0), Classification::ServerError);
}

#[test]
fn revoke_deletes_the_grant_with_basic_auth() {
    let req = P::revoke(context(), credential(&[("access_token", "gho_abc")], &[])).unwrap();
    assert_eq!(req.method, "DELETE");
    assert_eq!(
        req.url,
        "https://api.github.com/applications/client-1/grant"
    );
    assert_eq!(
        header(&req.headers, "authorization"),
        Some(http::basic_auth("client-1", "s3cret").as_str())
    );
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body, serde_json::json!({"access_token": "gho_abc"}));
    let mut public = context();
    public.client_secret = None;
    assert!(P::revoke(public, credential(&[("access_token", "x")], &[])).is_none());
    let mut odd = context();
    odd.client_id = "../x".into();
    assert!(P::revoke(odd, credential(&[("access_token", "x")], &[])).is_none());
}

#[test]
fn callback_denied_by_the_user() {
    let r = expect_redirect(P::begin_connect(context()));
    let e = expect_fail(P::resume(
        context(),
        r.state,
        Input::Callback(http::owned_pairs(&[
            ("error", "access_denied"),
            ("state", "st-123"),
        ])),
    ));
    assert!(matches!(e, ProviderError::AccessDenied(_)));
}
