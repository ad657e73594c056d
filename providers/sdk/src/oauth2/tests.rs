//! Tests of the generic OAuth 2 machine against a made-up provider.

use super::*;
use crate::http::form_decode;

struct Demo;

impl OAuth2Provider for Demo {
    const SPEC: OAuth2 = OAuth2 {
        id: "demo",
        display_name: "Demo",
        categories: &["testing"],
        authorize_url: "https://auth.example.com/authorize",
        token_url: "https://auth.example.com/token",
        revocation: Revocation::Rfc7009 {
            url: "https://auth.example.com/revoke",
            token: RevokeToken::RefreshElseAccess,
            client_auth: true,
        },
        default_scopes: &["read", "write"],
        scopes: &[("read", "Read things")],
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        allowed_hosts: &[
            "api.example.com",
            "*.files.example.com",
            "{tenant}.example.net",
        ],
        connection_params: &[Param {
            name: "tenant",
            label: "Tenant",
            description: "Your tenant name.",
            optional: true,
            example: Some("acme"),
        }],
        account: Some(AccountLookup {
            url: "https://api.example.com/me",
            headers: &[("Accept", "application/vnd.example+json")],
            label_pointers: &["/login", "/id"],
            metadata: &[("user_id", "/id")],
        }),
        api_headers: &[("User-Agent", "tessera")],
        ..OAuth2::BASE
    };
}

type P = OAuth2Adapter<Demo>;

struct Basic;
impl OAuth2Provider for Basic {
    const SPEC: OAuth2 = OAuth2 {
        id: "basic",
        client_auth: ClientAuth::ClientSecretBasic,
        pkce: false,
        authorize_url: "https://auth.example.com/authorize",
        token_url: "https://auth.example.com/token",
        ..OAuth2::BASE
    };
}

struct Public;
impl OAuth2Provider for Public {
    const SPEC: OAuth2 = OAuth2 {
        id: "public",
        client_auth: ClientAuth::None,
        authorize_url: "https://auth.example.com/authorize",
        token_url: "https://auth.example.com/token",
        token_format: TokenFormat {
            access_token: "/authed_user/access_token",
            account_label: Some("/team/name"),
            metadata: &[("team_id", "/team/id")],
            ..TokenFormat::STANDARD
        },
        ..OAuth2::BASE
    };
}

pub(crate) fn ctx() -> Context {
    Context {
        client_id: "client-1".into(),
        client_secret: Some("s3cret".into()),
        redirect_uri: "https://tessera.example/oauth/callback".into(),
        scopes: Vec::new(),
        connection_params: vec![("tenant".into(), "acme".into())],
        secret_fields: Vec::new(),
        extra_params: Vec::new(),
        state: "st-123".into(),
        entropy: vec![7; 32],
        now: 1_000,
    }
}

fn query_of(url: &str) -> Vec<(String, String)> {
    form_decode(url.split_once('?').unwrap().1.as_bytes())
}

fn q<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pair(pairs, k)
}

fn redirect<T: OAuth2Provider>(ctx: &Context) -> RedirectTo {
    match OAuth2Adapter::<T>::begin_connect(ctx.clone()) {
        Step::Redirect(r) => r,
        other => panic!("expected a redirect, got {other:?}"),
    }
}

fn send(step: Step) -> Outgoing {
    match step {
        Step::Send(o) => o,
        other => panic!("expected send, got {other:?}"),
    }
}

fn done(step: Step) -> Connected {
    match step {
        Step::Done(c) => c,
        other => panic!("expected done, got {other:?}"),
    }
}

fn fail(step: Step) -> ProviderError {
    match step {
        Step::Fail(e) => e,
        other => panic!("expected fail, got {other:?}"),
    }
}

fn callback(pairs: &[(&str, &str)]) -> Input {
    Input::Callback(crate::http::owned_pairs(pairs))
}

fn json_response(status: u16, body: &str) -> Input {
    Input::HttpResponse(HttpResponse {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    })
}

/// Runs the flow up to the token request.
fn to_token_request<T: OAuth2Provider>(ctx: &Context) -> Outgoing {
    let r = redirect::<T>(ctx);
    send(OAuth2Adapter::<T>::resume(
        ctx.clone(),
        r.state,
        callback(&[("code", "the-code"), ("state", "st-123")]),
    ))
}

#[test]
fn redirect_carries_the_standard_parameters_and_pkce() {
    let mut ctx = ctx();
    ctx.extra_params = vec![
        ("prompt".into(), "select_account".into()),
        ("redirect_uri".into(), "https://evil.example/".into()),
    ];
    let r = redirect::<Demo>(&ctx);
    assert!(r.url.starts_with("https://auth.example.com/authorize?"));
    let query = query_of(&r.url);
    assert_eq!(q(&query, "response_type"), Some("code"));
    assert_eq!(q(&query, "client_id"), Some("client-1"));
    assert_eq!(
        q(&query, "redirect_uri"),
        Some("https://tessera.example/oauth/callback")
    );
    assert_eq!(q(&query, "scope"), Some("read write"));
    assert_eq!(q(&query, "state"), Some("st-123"));
    assert_eq!(q(&query, "code_challenge_method"), Some("S256"));
    let verifier = pkce::verifier(&[7; 32]).unwrap();
    assert_eq!(
        q(&query, "code_challenge"),
        Some(pkce::challenge(&verifier).as_str())
    );
    assert_eq!(q(&query, "access_type"), Some("offline"));
    assert_eq!(
        q(&query, "prompt"),
        Some("select_account"),
        "operator params override spec params"
    );
    assert_eq!(query.iter().filter(|(k, _)| k == "redirect_uri").count(), 1);
    assert_eq!(query.iter().filter(|(k, _)| k == "prompt").count(), 1);
}

#[test]
fn configured_scopes_replace_the_defaults() {
    let mut ctx = ctx();
    ctx.scopes = vec!["a".into(), "b:c".into()];
    let query = query_of(&redirect::<Demo>(&ctx).url);
    assert_eq!(q(&query, "scope"), Some("a b:c"));
}

#[test]
fn begin_connect_without_client_id_or_entropy_fails_cleanly() {
    let mut c = ctx();
    c.client_id.clear();
    assert!(matches!(
        fail(P::begin_connect(c)),
        ProviderError::InvalidInput(_)
    ));
    let mut c = ctx();
    c.entropy = vec![1; 4];
    assert!(matches!(
        fail(P::begin_connect(c)),
        ProviderError::InvalidInput(_)
    ));
}

#[test]
fn callback_state_mismatch_is_invalid_input() {
    let r = redirect::<Demo>(&ctx());
    let e = fail(P::resume(
        ctx(),
        r.state.clone(),
        callback(&[("code", "c"), ("state", "other")]),
    ));
    assert!(matches!(e, ProviderError::InvalidInput(_)));
    let e = fail(P::resume(ctx(), r.state, callback(&[("code", "c")])));
    assert!(matches!(e, ProviderError::InvalidInput(_)));
}

#[test]
fn callback_errors_map_to_typed_errors() {
    let r = redirect::<Demo>(&ctx());
    let e = fail(P::resume(
        ctx(),
        r.state.clone(),
        callback(&[("error", "access_denied"), ("state", "st-123")]),
    ));
    assert!(matches!(e, ProviderError::AccessDenied(_)));
    let e = fail(P::resume(
        ctx(),
        r.state.clone(),
        callback(&[
            ("error", "server_error"),
            ("error_description", "boom"),
            ("state", "st-123"),
        ]),
    ));
    assert_eq!(
        e,
        ProviderError::Upstream(UpstreamError {
            status: 0,
            code: "server_error".into(),
            description: "boom".into()
        })
    );
    let e = fail(P::resume(ctx(), r.state, callback(&[("state", "st-123")])));
    assert!(matches!(e, ProviderError::InvalidInput(_)));
}

#[test]
fn garbage_state_and_wrong_inputs_do_not_panic() {
    assert!(matches!(
        fail(P::resume(ctx(), b"not json".to_vec(), callback(&[]))),
        ProviderError::InvalidInput(_)
    ));
    let r = redirect::<Demo>(&ctx());
    assert!(matches!(
        fail(P::resume(ctx(), r.state, json_response(200, "{}"))),
        ProviderError::InvalidInput(_)
    ));
}

#[test]
fn token_request_with_client_secret_post_and_pkce() {
    let out = to_token_request::<Demo>(&ctx());
    let req = &out.request;
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, "https://auth.example.com/token");
    assert_eq!(
        http::header(&req.headers, "accept"),
        Some("application/json")
    );
    assert_eq!(
        http::header(&req.headers, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(http::header(&req.headers, "authorization"), None);
    let form = form_decode(&req.body);
    assert_eq!(q(&form, "grant_type"), Some("authorization_code"));
    assert_eq!(q(&form, "code"), Some("the-code"));
    assert_eq!(
        q(&form, "redirect_uri"),
        Some("https://tessera.example/oauth/callback")
    );
    assert_eq!(
        q(&form, "code_verifier"),
        Some(pkce::verifier(&[7; 32]).unwrap().as_str())
    );
    assert_eq!(q(&form, "client_id"), Some("client-1"));
    assert_eq!(q(&form, "client_secret"), Some("s3cret"));
}

#[test]
fn token_request_with_client_secret_basic() {
    let out = to_token_request::<Basic>(&ctx());
    let form = form_decode(&out.request.body);
    assert_eq!(q(&form, "client_secret"), None);
    assert_eq!(q(&form, "client_id"), None);
    assert_eq!(q(&form, "code_verifier"), None, "no PKCE declared");
    assert_eq!(
        http::header(&out.request.headers, "Authorization"),
        Some(http::basic_auth("client-1", "s3cret").as_str())
    );
}

#[test]
fn token_request_for_a_public_client() {
    let out = to_token_request::<Public>(&ctx());
    let form = form_decode(&out.request.body);
    assert_eq!(q(&form, "client_id"), Some("client-1"));
    assert_eq!(q(&form, "client_secret"), None);
    assert_eq!(http::header(&out.request.headers, "Authorization"), None);
}

#[test]
fn token_response_then_account_lookup_then_done() {
    let out = to_token_request::<Demo>(&ctx());
    let lookup = send(P::resume(
        ctx(),
        out.state,
        json_response(
            200,
            r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1","scope":"read"}"#,
        ),
    ));
    assert_eq!(lookup.request.method, "GET");
    assert_eq!(lookup.request.url, "https://api.example.com/me");
    assert_eq!(
        http::header(&lookup.request.headers, "authorization"),
        Some("Bearer at-1")
    );
    assert_eq!(
        http::header(&lookup.request.headers, "user-agent"),
        Some("tessera")
    );
    assert_eq!(
        http::header_values(&lookup.request.headers, "accept").collect::<Vec<_>>(),
        vec!["application/vnd.example+json"]
    );
    let connected = done(P::resume(
        ctx(),
        lookup.state,
        json_response(200, r#"{"login":"octo","id":42}"#),
    ));
    assert_eq!(connected.account_label, "octo");
    let c = connected.credential;
    assert_eq!(pair(&c.secrets, "access_token"), Some("at-1"));
    assert_eq!(pair(&c.secrets, "refresh_token"), Some("rt-1"));
    assert_eq!(c.expires_at, Some(4_600));
    assert_eq!(
        c.scopes,
        vec!["read".to_owned()],
        "granted scopes, not requested ones"
    );
    assert_eq!(pair(&c.metadata, "user_id"), Some("42"));
    assert_eq!(pair(&c.metadata, "tenant"), Some("acme"));
    assert_eq!(pair(&c.metadata, "token_type"), Some("Bearer"));
}

#[test]
fn failed_account_lookup_still_connects_without_a_label() {
    let out = to_token_request::<Demo>(&ctx());
    let lookup = send(P::resume(
        ctx(),
        out.state,
        json_response(200, r#"{"access_token":"at-1"}"#),
    ));
    let connected = done(P::resume(ctx(), lookup.state, json_response(401, "{}")));
    assert_eq!(connected.account_label, "");
    assert_eq!(
        connected.credential.expires_at, None,
        "no expires_in: no expiry"
    );
    assert_eq!(
        connected.credential.scopes,
        vec!["read".to_owned(), "write".to_owned()]
    );
}

#[test]
fn nested_and_form_encoded_token_responses() {
    let out = to_token_request::<Public>(&ctx());
    let connected = done(OAuth2Adapter::<Public>::resume(
        ctx(),
        out.state,
        json_response(
            200,
            r#"{"ok":true,"authed_user":{"access_token":"xoxp-1"},"team":{"id":"T1","name":"Acme"}}"#,
        ),
    ));
    assert_eq!(connected.account_label, "Acme");
    assert_eq!(
        pair(&connected.credential.secrets, "access_token"),
        Some("xoxp-1")
    );
    assert_eq!(pair(&connected.credential.metadata, "team_id"), Some("T1"));

    let out = to_token_request::<Basic>(&ctx());
    let connected = done(OAuth2Adapter::<Basic>::resume(
        ctx(),
        out.state,
        Input::HttpResponse(HttpResponse {
            status: 200,
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: b"access_token=at%2B1&scope=a%2Cb&token_type=bearer&expires_in=60".to_vec(),
        }),
    ));
    let c = connected.credential;
    assert_eq!(pair(&c.secrets, "access_token"), Some("at+1"));
    assert_eq!(c.scopes, vec!["a".to_owned(), "b".to_owned()]);
    assert_eq!(c.expires_at, Some(1_060));
}

#[test]
fn token_errors_in_any_status() {
    let cases: &[(u16, &str)] = &[
        (
            200,
            r#"{"error":"bad_verification_code","error_description":"The code is incorrect"}"#,
        ),
        (400, r#"{"error":"invalid_client"}"#),
    ];
    for (status, body) in cases {
        let out = to_token_request::<Demo>(&ctx());
        match fail(P::resume(ctx(), out.state, json_response(*status, body))) {
            ProviderError::Upstream(e) => assert_eq!(e.status, *status),
            other => panic!("{other:?}"),
        }
    }
    let out = to_token_request::<Demo>(&ctx());
    let e = fail(P::resume(
        ctx(),
        out.state,
        json_response(400, r#"{"error":"invalid_grant"}"#),
    ));
    assert!(matches!(e, ProviderError::ReauthorizeRequired(_)));
    let out = to_token_request::<Demo>(&ctx());
    let e = fail(P::resume(ctx(), out.state, json_response(200, "<html>")));
    assert!(matches!(e, ProviderError::MalformedResponse(_)));
    let out = to_token_request::<Demo>(&ctx());
    let e = fail(P::resume(
        ctx(),
        out.state,
        json_response(200, r#"{"token_type":"bearer"}"#),
    ));
    assert!(matches!(e, ProviderError::MalformedResponse(_)));
    let out = to_token_request::<Demo>(&ctx());
    let e = fail(P::resume(
        ctx(),
        out.state,
        json_response(200, r#"{"access_token":"a","expires_in":-5}"#),
    ));
    assert!(matches!(e, ProviderError::MalformedResponse(_)));
    let out = to_token_request::<Demo>(&ctx());
    let e = fail(P::resume(
        ctx(),
        out.state,
        json_response(502, "bad gateway"),
    ));
    assert!(matches!(
        e,
        ProviderError::Upstream(UpstreamError { status: 502, .. })
    ));
}

fn credential(secrets: &[(&str, &str)]) -> Credential {
    Credential {
        secrets: crate::http::owned_pairs(secrets),
        metadata: vec![("tenant".into(), "acme".into())],
        scopes: vec!["read".into(), "write".into()],
        expires_at: Some(10),
    }
}

#[test]
fn refresh_keeps_the_old_refresh_token_and_scopes_when_not_rotated() {
    let out = send(P::refresh(
        ctx(),
        credential(&[("access_token", "old"), ("refresh_token", "rt-1")]),
    ));
    let form = form_decode(&out.request.body);
    assert_eq!(q(&form, "grant_type"), Some("refresh_token"));
    assert_eq!(q(&form, "refresh_token"), Some("rt-1"));
    assert_eq!(q(&form, "client_secret"), Some("s3cret"));
    let c = done(P::resume(
        ctx(),
        out.state,
        json_response(200, r#"{"access_token":"new","expires_in":60}"#),
    ))
    .credential;
    assert_eq!(pair(&c.secrets, "access_token"), Some("new"));
    assert_eq!(pair(&c.secrets, "refresh_token"), Some("rt-1"));
    assert_eq!(c.scopes, vec!["read".to_owned(), "write".to_owned()]);
    assert_eq!(c.expires_at, Some(1_060));
    assert_eq!(pair(&c.metadata, "tenant"), Some("acme"));
}

#[test]
fn refresh_takes_a_rotated_refresh_token() {
    let out = send(P::refresh(
        ctx(),
        credential(&[("access_token", "old"), ("refresh_token", "rt-1")]),
    ));
    let c = done(P::resume(
        ctx(),
        out.state,
        json_response(200, r#"{"access_token":"new","refresh_token":"rt-2"}"#),
    ))
    .credential;
    assert_eq!(pair(&c.secrets, "refresh_token"), Some("rt-2"));
}

#[test]
fn refresh_without_refresh_token_or_with_dead_grant_requires_reauthorization() {
    assert!(matches!(
        fail(P::refresh(ctx(), credential(&[("access_token", "a")]))),
        ProviderError::ReauthorizeRequired(_)
    ));
    let out = send(P::refresh(ctx(), credential(&[("refresh_token", "rt-1")])));
    let e = fail(P::resume(
        ctx(),
        out.state,
        json_response(
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        ),
    ));
    assert_eq!(
        e,
        ProviderError::ReauthorizeRequired("Token has been expired or revoked.".into())
    );
}

fn get(url: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url: url.into(),
        headers: vec![("authorization".into(), "Bearer stale".into())],
        body: Vec::new(),
    }
}

#[test]
fn sign_injects_bearer_inside_the_allow_list_only() {
    let cred = credential(&[("access_token", "at-1")]);
    for url in [
        "https://api.example.com/x",
        "https://eu.files.example.com/f",
        "https://acme.example.net/",
    ] {
        let signed = P::sign(get(url), cred.clone(), 0).unwrap();
        assert_eq!(
            http::header_values(&signed.headers, "authorization").collect::<Vec<_>>(),
            vec!["Bearer at-1"]
        );
        assert_eq!(http::header(&signed.headers, "user-agent"), Some("tessera"));
    }
    for url in [
        "https://files.example.com/f",
        "https://other.example.net/",
        "https://evil.example/",
        "http://api.example.com/x",
        "https://api.example.com@evil.example/",
    ] {
        assert!(
            P::sign(get(url), cred.clone(), 0).is_err(),
            "{url} was signed"
        );
    }
    assert!(matches!(
        P::sign(get("https://api.example.com/"), credential(&[]), 0),
        Err(ProviderError::ReauthorizeRequired(_))
    ));
}

#[test]
fn revoke_is_rfc7009_with_client_auth() {
    let req = P::revoke(
        ctx(),
        credential(&[("access_token", "at"), ("refresh_token", "rt")]),
    )
    .unwrap();
    assert_eq!(
        (req.method.as_str(), req.url.as_str()),
        ("POST", "https://auth.example.com/revoke")
    );
    let form = form_decode(&req.body);
    assert_eq!(q(&form, "token"), Some("rt"));
    assert_eq!(q(&form, "token_type_hint"), Some("refresh_token"));
    assert_eq!(q(&form, "client_id"), Some("client-1"));
    let req = P::revoke(ctx(), credential(&[("access_token", "at")])).unwrap();
    assert_eq!(
        q(&form_decode(&req.body), "token_type_hint"),
        Some("access_token")
    );
    assert!(OAuth2Adapter::<Basic>::revoke(ctx(), credential(&[("access_token", "at")])).is_none());
}

#[test]
fn info_reflects_the_spec() {
    let info = P::info();
    assert_eq!(info.id, "demo");
    assert_eq!(info.auth_kind, AuthKind::Oauth2);
    assert!(info.pkce && info.supports_refresh && info.supports_revoke);
    assert_eq!(
        info.default_scopes,
        vec!["read".to_owned(), "write".to_owned()]
    );
    assert_eq!(info.connection_params.len(), 1);
    assert!(!OAuth2Adapter::<Basic>::info().supports_revoke);
}
