//! Google connect flow (offline access, granular consent), refresh, signing, classify, revoke.

use super::*;
use tessera_provider_sdk::http::{form_decode, header, pair};
use tessera_provider_sdk::testkit::*;
use tessera_provider_sdk::{AuthKind, Provider, ProviderError};

type P = OAuth2Adapter<Google>;

const DRIVE: &str = "https://www.googleapis.com/auth/drive.readonly";
const GMAIL: &str = "https://www.googleapis.com/auth/gmail.readonly";

fn q<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pair(pairs, k)
}

#[test]
fn info_is_complete() {
    let info = P::info();
    assert_eq!(
        (info.id.as_str(), info.auth_kind),
        ("google", AuthKind::Oauth2)
    );
    assert_eq!(
        info.default_scopes,
        vec![
            "openid".to_owned(),
            "email".to_owned(),
            "profile".to_owned()
        ]
    );
    assert!(info.pkce && info.supports_refresh && info.supports_revoke);
    assert!(info.scopes.iter().any(|s| s.name == GMAIL));
    assert_eq!(info.allowed_hosts, vec!["*.googleapis.com".to_owned()]);
}

#[test]
fn redirect_asks_for_offline_access_and_incremental_consent() {
    let r = expect_redirect(P::begin_connect(context()));
    assert!(
        r.url
            .starts_with("https://accounts.google.com/o/oauth2/v2/auth?")
    );
    let query = query(&r.url);
    assert_eq!(q(&query, "scope"), Some("openid email profile"));
    assert_eq!(q(&query, "access_type"), Some("offline"));
    assert_eq!(q(&query, "prompt"), Some("consent"));
    assert_eq!(q(&query, "include_granted_scopes"), Some("true"));
    assert_eq!(q(&query, "code_challenge_method"), Some("S256"));
    assert_eq!(q(&query, "response_type"), Some("code"));
}

fn connect_with(scopes: &[&str], token_body: &str) -> tessera_provider_sdk::Connected {
    let mut ctx = context();
    ctx.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    let r = expect_redirect(P::begin_connect(ctx.clone()));
    let out = expect_send(P::resume(
        ctx.clone(),
        r.state,
        callback(&[("state", "st-123"), ("code", "4/0Ab")]),
    ));
    assert_eq!(out.request.url, "https://oauth2.googleapis.com/token");
    let form = form_decode(&out.request.body);
    assert_eq!(q(&form, "grant_type"), Some("authorization_code"));
    assert!(q(&form, "code_verifier").is_some());
    assert_eq!(q(&form, "client_secret"), Some("s3cret"));
    let lookup = expect_send(P::resume(
        ctx.clone(),
        out.state,
        json_input(200, token_body),
    ));
    assert_eq!(
        lookup.request.url,
        "https://openidconnect.googleapis.com/v1/userinfo"
    );
    assert_eq!(
        header(&lookup.request.headers, "authorization"),
        Some("Bearer ya29.a")
    );
    expect_done(P::resume(
        ctx,
        lookup.state,
        json_input(
            200,
            r#"{"sub":"1107","email":"ada@example.com","name":"Ada"}"#,
        ),
    ))
}

#[test]
fn granted_scopes_are_recorded_when_the_user_unticks_some() {
    let done = connect_with(
        &["openid", "email", DRIVE, GMAIL],
        &format!(
            r#"{{"access_token":"ya29.a","expires_in":3599,"refresh_token":"1//0g","scope":"openid https://www.googleapis.com/auth/userinfo.email {DRIVE}","token_type":"Bearer","id_token":"x.y.z"}}"#
        ),
    );
    assert_eq!(done.account_label, "ada@example.com");
    let c = done.credential;
    assert_eq!(
        c.scopes,
        vec![
            "openid".to_owned(),
            "https://www.googleapis.com/auth/userinfo.email".to_owned(),
            DRIVE.to_owned()
        ]
    );
    assert!(!c.scopes.contains(&GMAIL.to_owned()));
    assert_eq!(c.expires_at, Some(1_000 + 3_599));
    assert_eq!(pair(&c.secrets, "refresh_token"), Some("1//0g"));
    assert_eq!(pair(&c.metadata, "sub"), Some("1107"));
}

#[test]
fn refresh_keeps_the_unrotated_refresh_token() {
    let done = connect_with(
        &[],
        r#"{"access_token":"ya29.a","expires_in":3599,"refresh_token":"1//0g","scope":"openid email","token_type":"Bearer"}"#,
    );
    let out = expect_send(P::refresh(context(), done.credential));
    assert_eq!(out.request.url, "https://oauth2.googleapis.com/token");
    let form = form_decode(&out.request.body);
    assert_eq!(
        (q(&form, "grant_type"), q(&form, "refresh_token")),
        (Some("refresh_token"), Some("1//0g"))
    );
    let c = expect_done(P::resume(
        context(),
        out.state,
        json_input(200, r#"{"access_token":"ya29.b","expires_in":3599,"scope":"openid email","token_type":"Bearer"}"#),
    ))
    .credential;
    assert_eq!(pair(&c.secrets, "access_token"), Some("ya29.b"));
    assert_eq!(pair(&c.secrets, "refresh_token"), Some("1//0g"));
}

#[test]
fn revoked_grant_requires_reauthorization() {
    let out = expect_send(P::refresh(
        context(),
        credential(&[("access_token", "a"), ("refresh_token", "1//0g")], &[]),
    ));
    let e = expect_fail(P::resume(
        context(),
        out.state,
        json_input(
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        ),
    ));
    assert!(matches!(e, ProviderError::ReauthorizeRequired(_)));
}

#[test]
fn sign_covers_googleapis_subdomains_only() {
    let cred = credential(&[("access_token", "ya29.a")], &[]);
    for url in [
        "https://www.googleapis.com/drive/v3/files",
        "https://gmail.googleapis.com/gmail/v1/users/me/messages",
    ] {
        let signed = P::sign(request("GET", url), cred.clone(), 0).unwrap();
        assert_eq!(
            header(&signed.headers, "authorization"),
            Some("Bearer ya29.a")
        );
    }
    for url in [
        "https://googleapis.com/",
        "https://accounts.google.com/",
        "https://googleapis.com.evil.test/",
    ] {
        assert!(
            matches!(
                P::sign(request("GET", url), cred.clone(), 0),
                Err(ProviderError::HostNotAllowed(_))
            ),
            "{url}"
        );
    }
}

#[test]
fn classify_google_errors() {
    let legacy = response(
        403,
        &[],
        r#"{"error":{"code":403,"message":"Insufficient Permission","errors":[{"reason":"insufficientPermissions"}]}}"#,
    );
    assert_eq!(
        P::classify(legacy, 0),
        Classification::InsufficientScope(vec![])
    );
    let modern = response(
        403,
        &[(
            "WWW-Authenticate",
            r#"Bearer realm="https://accounts.google.com/", error="insufficient_scope", scope="https://www.googleapis.com/auth/gmail.readonly""#,
        )],
        r#"{"error":{"code":403,"status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}}"#,
    );
    assert_eq!(
        P::classify(modern, 0),
        Classification::InsufficientScope(vec![GMAIL.to_owned()])
    );
    let limited = response(
        403,
        &[],
        r#"{"error":{"errors":[{"reason":"userRateLimitExceeded"}]}}"#,
    );
    assert_eq!(P::classify(limited, 0), Classification::RateLimited(None));
    let forbidden = response(403, &[], r#"{"error":{"errors":[{"reason":"forbidden"}]}}"#);
    assert_eq!(P::classify(forbidden, 0), Classification::Ok);
    assert_eq!(
        P::classify(response(401, &[], "{}"), 0),
        Classification::Unauthorized
    );
    assert_eq!(
        P::classify(response(429, &[("Retry-After", "7")], "{}"), 0),
        Classification::RateLimited(Some(7))
    );
    assert_eq!(
        P::classify(response(503, &[], "{}"), 0),
        Classification::ServerError
    );
}

#[test]
fn revoke_posts_the_refresh_token() {
    let req = P::revoke(
        context(),
        credential(
            &[("access_token", "ya29.a"), ("refresh_token", "1//0g")],
            &[],
        ),
    )
    .unwrap();
    assert_eq!(
        (req.method.as_str(), req.url.as_str()),
        ("POST", "https://oauth2.googleapis.com/revoke")
    );
    let form = form_decode(&req.body);
    assert_eq!(q(&form, "token"), Some("1//0g"));
    assert_eq!(q(&form, "client_secret"), None);
}
