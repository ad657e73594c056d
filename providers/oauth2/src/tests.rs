//! The generic provider's state machine step by step (discovery, redirect, callback, code
//! exchange, userinfo), refresh, signing, classification and revocation.

use super::*;
use tessera_provider_sdk::http::{form_decode, header, owned_pairs};
use tessera_provider_sdk::testkit::*;
use tessera_provider_sdk::{AuthKind, Classification};

type P = GenericOAuth2;

const ISSUER: &str = "https://idp.example.com/realms/acme";
const AUTHORIZE: &str = "https://idp.example.com/realms/acme/protocol/openid-connect/auth";
const TOKEN: &str = "https://idp.example.com/realms/acme/protocol/openid-connect/token";
const REVOKE: &str = "https://idp.example.com/realms/acme/protocol/openid-connect/revoke";
const USERINFO: &str = "https://idp.example.com/realms/acme/protocol/openid-connect/userinfo";

fn q<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pair(pairs, k)
}

/// A context for a confidential client of the issuer above, signing for `api.example.com`.
fn ctx_with(params: &[(&str, &str)]) -> Context {
    let mut ctx = context();
    ctx.connection_params = owned_pairs(params);
    ctx
}

fn discovery_ctx() -> Context {
    ctx_with(&[("issuer", ISSUER), ("api_host", "api.example.com")])
}

fn explicit_ctx(token_auth: &str) -> Context {
    ctx_with(&[
        ("authorization_endpoint", AUTHORIZE),
        ("token_endpoint", TOKEN),
        ("api_host", "api.example.com"),
        ("token_auth", token_auth),
    ])
}

fn discovery_doc(extra: &str) -> String {
    format!(
        r#"{{"issuer":"{ISSUER}","authorization_endpoint":"{AUTHORIZE}","token_endpoint":"{TOKEN}","revocation_endpoint":"{REVOKE}","userinfo_endpoint":"{USERINFO}","code_challenge_methods_supported":["plain","S256"]{extra}}}"#
    )
}

/// An unsigned-looking JWT with the given claims (the provider never verifies it).
fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

/// Begin with discovery and answer it; returns the redirect.
fn discover(ctx: &Context, doc: &str) -> RedirectTo {
    let out = expect_send(P::begin_connect(ctx.clone()));
    expect_redirect(P::resume(ctx.clone(), out.state, json_input(200, doc)))
}

/// Discovery, redirect and a good callback; returns the token request.
fn to_token_request(ctx: &Context, doc: &str) -> Outgoing {
    let r = discover(ctx, doc);
    expect_send(P::resume(
        ctx.clone(),
        r.state,
        callback(&[("code", "c-1"), ("state", "st-123"), ("iss", ISSUER)]),
    ))
}

#[test]
fn info_declares_the_connection_params_and_templated_hosts() {
    let info = P::info();
    assert_eq!(
        (info.id.as_str(), info.display_name.as_str(), info.auth_kind),
        ("oauth2", "OAuth 2 / OpenID Connect", AuthKind::Oauth2)
    );
    assert!(info.pkce && info.supports_refresh && info.supports_revoke);
    let names: Vec<&str> = info
        .connection_params
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "revocation_endpoint",
            "userinfo_endpoint",
            "api_host",
            "token_auth"
        ]
    );
    let required: Vec<&str> = info
        .connection_params
        .iter()
        .filter(|f| !f.optional)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(required, ["api_host"]);
    assert_eq!(info.allowed_hosts[0], "{api_host}");
    assert!(info.allowed_hosts.contains(&"{issuer}".to_owned()));
    assert!(info.allowed_hosts.contains(&"{token_endpoint}".to_owned()));
    assert!(info.default_scopes.contains(&"openid".to_owned()));
}

#[test]
fn an_issuer_is_discovered_with_a_send_step_first() {
    let mut ctx = discovery_ctx();
    ctx.connection_params[0].1 = format!("{ISSUER}/");
    let out = expect_send(P::begin_connect(ctx));
    assert_eq!(out.request.method, "GET");
    assert_eq!(
        out.request.url,
        format!("{ISSUER}/.well-known/openid-configuration")
    );
    assert_eq!(
        header(&out.request.headers, "accept"),
        Some("application/json")
    );
    assert!(out.request.body.is_empty());
}

#[test]
fn discovery_leads_to_a_pkce_s256_redirect_with_state_scopes_and_extra_params() {
    let mut ctx = discovery_ctx();
    ctx.scopes = vec!["openid".into(), "email".into(), "offline_access".into()];
    ctx.extra_params = owned_pairs(&[("login_hint", "ada"), ("state", "forged")]);
    // RFC 7636 appendix B: these octets give verifier dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk.
    ctx.entropy = vec![
        116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37,
        77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
    ];
    let r = discover(&ctx, &discovery_doc(""));
    assert!(r.url.starts_with(&format!("{AUTHORIZE}?")), "{}", r.url);
    let query = query(&r.url);
    assert_eq!(q(&query, "response_type"), Some("code"));
    assert_eq!(q(&query, "client_id"), Some("client-1"));
    assert_eq!(
        q(&query, "redirect_uri"),
        Some("https://tessera.example/oauth/callback")
    );
    assert_eq!(q(&query, "scope"), Some("openid email offline_access"));
    assert_eq!(
        query.iter().filter(|(k, _)| k == "state").count(),
        1,
        "the operator cannot override state"
    );
    assert_eq!(q(&query, "state"), Some("st-123"));
    assert_eq!(
        q(&query, "code_challenge"),
        Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    );
    assert_eq!(q(&query, "code_challenge_method"), Some("S256"));
    assert_eq!(q(&query, "prompt"), Some("consent"));
    assert_eq!(q(&query, "login_hint"), Some("ada"));

    let out = expect_send(P::resume(
        ctx,
        r.state,
        callback(&[("code", "c-1"), ("state", "st-123"), ("iss", ISSUER)]),
    ));
    let form = form_decode(&out.request.body);
    assert_eq!(
        q(&form, "code_verifier"),
        Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    );
}

#[test]
fn an_operator_prompt_replaces_the_consent_prompt() {
    let mut ctx = discovery_ctx();
    ctx.extra_params = owned_pairs(&[("prompt", "login consent")]);
    let query = query(&discover(&ctx, &discovery_doc("")).url);
    let prompts: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "prompt")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(prompts, ["login consent"]);
}

#[test]
fn a_discovery_document_for_another_issuer_is_refused() {
    for other in [
        "https://evil.example/realms/acme",
        "https://idp.example.com/realms/acme/",
        "https://IDP.example.com/realms/acme",
    ] {
        let out = expect_send(P::begin_connect(discovery_ctx()));
        let doc = discovery_doc("").replacen(
            &format!(r#""issuer":"{ISSUER}""#),
            &format!(r#""issuer":"{other}""#),
            1,
        );
        let e = expect_fail(P::resume(discovery_ctx(), out.state, json_input(200, &doc)));
        assert!(
            matches!(&e, ProviderError::InvalidInput(m) if m.contains(other)),
            "{other}: {e:?}"
        );
    }
}

#[test]
fn discovery_failures_are_typed() {
    let fail = |input: Input| {
        let out = expect_send(P::begin_connect(discovery_ctx()));
        expect_fail(P::resume(discovery_ctx(), out.state, input))
    };
    assert!(matches!(
        fail(json_input(404, "{}")),
        ProviderError::Upstream(UpstreamError { status: 404, .. })
    ));
    assert!(matches!(
        fail(json_input(200, "<html>")),
        ProviderError::MalformedResponse(_)
    ));
    let no_token = format!(r#"{{"issuer":"{ISSUER}","authorization_endpoint":"{AUTHORIZE}"}}"#);
    assert!(matches!(
        fail(json_input(200, &no_token)),
        ProviderError::MalformedResponse(_)
    ));
    let plain_only = discovery_doc("").replace(r#"["plain","S256"]"#, r#"["plain"]"#);
    assert!(matches!(
        fail(json_input(200, &plain_only)),
        ProviderError::Unsupported(_)
    ));
    let insecure = discovery_doc("").replace(
        &format!(r#""token_endpoint":"{TOKEN}""#),
        r#""token_endpoint":"http://idp.example.com/token""#,
    );
    assert!(matches!(
        fail(json_input(200, &insecure)),
        ProviderError::MalformedResponse(_)
    ));
}

#[test]
fn a_discovered_token_endpoint_must_be_on_the_issuers_host_unless_configured() {
    let elsewhere = discovery_doc("").replace(
        &format!(r#""token_endpoint":"{TOKEN}""#),
        r#""token_endpoint":"https://tokens.example.net/token""#,
    );
    let out = expect_send(P::begin_connect(discovery_ctx()));
    let e = expect_fail(P::resume(
        discovery_ctx(),
        out.state,
        json_input(200, &elsewhere),
    ));
    assert!(matches!(&e, ProviderError::InvalidInput(m) if m.contains("token_endpoint")));

    let mut ctx = discovery_ctx();
    ctx.connection_params.push((
        "token_endpoint".into(),
        "https://tokens.example.net/token".into(),
    ));
    let out = to_token_request(&ctx, &elsewhere);
    assert_eq!(out.request.url, "https://tokens.example.net/token");
}

#[test]
fn explicit_endpoints_skip_discovery() {
    let r = expect_redirect(P::begin_connect(explicit_ctx("client_secret_basic")));
    assert!(r.url.starts_with(&format!("{AUTHORIZE}?")));
    let out = expect_send(P::resume(
        explicit_ctx("client_secret_basic"),
        r.state,
        callback(&[("code", "c-1"), ("state", "st-123")]),
    ));
    assert_eq!(out.request.url, TOKEN);
}

#[test]
fn configuration_mistakes_are_refused_before_anything_is_sent() {
    let refused = |params: &[(&str, &str)]| {
        matches!(
            P::begin_connect(ctx_with(params)),
            Step::Fail(ProviderError::InvalidInput(_))
        )
    };
    assert!(refused(&[("api_host", "api.example.com")]));
    assert!(refused(&[("issuer", ISSUER)]));
    assert!(refused(&[
        ("issuer", "http://idp.example.com"),
        ("api_host", "api.example.com")
    ]));
    assert!(refused(&[
        ("issuer", "https://idp.example.com/?tenant=a"),
        ("api_host", "api.example.com")
    ]));
    assert!(refused(&[
        ("issuer", ISSUER),
        ("api_host", "https://api.example.com/v1")
    ]));
    assert!(refused(&[
        ("issuer", ISSUER),
        ("api_host", "api.example.com"),
        ("token_auth", "private_key_jwt")
    ]));
    assert!(refused(&[
        ("authorization_endpoint", AUTHORIZE),
        ("api_host", "api.example.com")
    ]));
    let mut no_secret = discovery_ctx();
    no_secret.client_secret = None;
    assert!(matches!(
        P::begin_connect(no_secret),
        Step::Fail(ProviderError::InvalidInput(_))
    ));
    let mut public = discovery_ctx();
    public.client_secret = None;
    public
        .connection_params
        .push(("token_auth".into(), "none".into()));
    expect_send(P::begin_connect(public));
}

#[test]
fn a_loopback_issuer_may_use_plain_http() {
    for issuer in ["http://127.0.0.1:39001", "http://localhost:39001/tenant"] {
        let ctx = ctx_with(&[("issuer", issuer), ("api_host", "127.0.0.1:39002")]);
        let out = expect_send(P::begin_connect(ctx));
        assert_eq!(
            out.request.url,
            format!("{issuer}/.well-known/openid-configuration")
        );
    }
}

#[test]
fn a_mismatched_iss_is_refused_before_the_code_or_error_is_used() {
    for params in [
        &[
            ("code", "c-1"),
            ("state", "st-123"),
            ("iss", "https://evil.example"),
        ][..],
        &[
            ("error", "access_denied"),
            ("state", "st-123"),
            ("iss", "https://evil.example"),
        ][..],
    ] {
        let r = discover(&discovery_ctx(), &discovery_doc(""));
        let e = expect_fail(P::resume(discovery_ctx(), r.state, callback(params)));
        assert!(
            matches!(&e, ProviderError::InvalidInput(m) if m.contains("iss")),
            "{e:?}"
        );
    }
}

#[test]
fn iss_is_required_only_when_the_server_advertises_it() {
    let advertised = discovery_doc(r#","authorization_response_iss_parameter_supported":true"#);
    let r = discover(&discovery_ctx(), &advertised);
    let e = expect_fail(P::resume(
        discovery_ctx(),
        r.state,
        callback(&[("code", "c-1"), ("state", "st-123")]),
    ));
    assert!(matches!(&e, ProviderError::InvalidInput(m) if m.contains("iss")));

    let r = discover(&discovery_ctx(), &advertised);
    expect_send(P::resume(
        discovery_ctx(),
        r.state,
        callback(&[("code", "c-1"), ("state", "st-123"), ("iss", ISSUER)]),
    ));

    let r = discover(&discovery_ctx(), &discovery_doc(""));
    expect_send(P::resume(
        discovery_ctx(),
        r.state,
        callback(&[("code", "c-1"), ("state", "st-123")]),
    ));
}

#[test]
fn callback_errors_are_typed() {
    let resume = |params: &[(&str, &str)]| {
        let r = discover(&discovery_ctx(), &discovery_doc(""));
        expect_fail(P::resume(discovery_ctx(), r.state, callback(params)))
    };
    assert_eq!(
        resume(&[
            ("error", "access_denied"),
            ("error_description", "End-User aborted interaction"),
            ("state", "st-123"),
            ("iss", ISSUER),
        ]),
        ProviderError::AccessDenied("End-User aborted interaction".into())
    );
    assert_eq!(
        resume(&[
            ("error", "invalid_scope"),
            ("error_description", "unknown scope"),
            ("state", "st-123"),
        ]),
        ProviderError::Upstream(UpstreamError {
            status: 0,
            code: "invalid_scope".into(),
            description: "unknown scope".into(),
        })
    );
    assert!(matches!(
        resume(&[("code", "c-1"), ("state", "st-999")]),
        ProviderError::InvalidInput(m) if m.contains("state")
    ));
    assert!(matches!(
        resume(&[("state", "st-123")]),
        ProviderError::InvalidInput(m) if m.contains("code")
    ));
}

#[test]
fn the_code_is_exchanged_with_the_configured_client_authentication() {
    let basic = to_token_request(&discovery_ctx(), &discovery_doc(""));
    assert_eq!(
        (basic.request.method.as_str(), basic.request.url.as_str()),
        ("POST", TOKEN)
    );
    assert_eq!(
        header(&basic.request.headers, "authorization"),
        Some(http::basic_auth_oauth("client-1", "s3cret").as_str())
    );
    assert_eq!(
        header(&basic.request.headers, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = form_decode(&basic.request.body);
    assert_eq!(q(&form, "grant_type"), Some("authorization_code"));
    assert_eq!(q(&form, "code"), Some("c-1"));
    assert_eq!(
        q(&form, "redirect_uri"),
        Some("https://tessera.example/oauth/callback")
    );
    assert!(q(&form, "code_verifier").is_some_and(|v| v.len() == 43));
    assert_eq!(q(&form, "client_secret"), None);
    assert_eq!(q(&form, "client_id"), None);

    let mut ctx = discovery_ctx();
    ctx.connection_params
        .push(("token_auth".into(), "client_secret_post".into()));
    let post = to_token_request(&ctx, &discovery_doc(""));
    let form = form_decode(&post.request.body);
    assert_eq!(header(&post.request.headers, "authorization"), None);
    assert_eq!(
        (q(&form, "client_id"), q(&form, "client_secret")),
        (Some("client-1"), Some("s3cret"))
    );

    let mut ctx = discovery_ctx();
    ctx.client_secret = None;
    ctx.connection_params
        .push(("token_auth".into(), "none".into()));
    let public = to_token_request(&ctx, &discovery_doc(""));
    let form = form_decode(&public.request.body);
    assert_eq!(header(&public.request.headers, "authorization"), None);
    assert_eq!(
        (q(&form, "client_id"), q(&form, "client_secret")),
        (Some("client-1"), None)
    );
}

#[test]
fn a_token_response_with_an_id_token_connects_without_a_userinfo_call() {
    let out = to_token_request(&discovery_ctx(), &discovery_doc(""));
    let id_token = jwt(&format!(
        r#"{{"iss":"{ISSUER}","sub":"u-1107","aud":"client-1","email":"ada@example.com","preferred_username":"ada"}}"#
    ));
    let body = format!(
        r#"{{"access_token":"at-1","token_type":"Bearer","expires_in":300,"refresh_token":"rt-1","scope":"openid email","id_token":"{id_token}"}}"#
    );
    let done = expect_done(P::resume(
        discovery_ctx(),
        out.state,
        json_input(200, &body),
    ));
    assert_eq!(done.account_label, "ada@example.com");
    let c = done.credential;
    assert_eq!(pair(&c.secrets, "access_token"), Some("at-1"));
    assert_eq!(pair(&c.secrets, "refresh_token"), Some("rt-1"));
    assert_eq!(c.expires_at, Some(1_000 + 300));
    assert_eq!(c.scopes, vec!["openid".to_owned(), "email".to_owned()]);
    for (name, value) in [
        ("issuer", ISSUER),
        ("token_endpoint", TOKEN),
        ("revocation_endpoint", REVOKE),
        ("userinfo_endpoint", USERINFO),
        ("api_host", "api.example.com"),
        ("token_auth", "client_secret_basic"),
        ("sub", "u-1107"),
    ] {
        assert_eq!(pair(&c.metadata, name), Some(value), "{name}");
    }
    assert!(
        !c.metadata
            .iter()
            .any(|(_, v)| v.contains("at-1") || v.contains("rt-1")),
        "no secret in metadata"
    );
}

#[test]
fn the_label_falls_back_from_email_to_preferred_username_to_sub() {
    for (claims, label) in [
        (r#"{"sub":"u-1","preferred_username":"ada"}"#, "ada"),
        (r#"{"sub":"u-1"}"#, "u-1"),
    ] {
        let out = to_token_request(&discovery_ctx(), &discovery_doc(""));
        let body = format!(
            r#"{{"access_token":"at-1","token_type":"Bearer","id_token":"{}"}}"#,
            jwt(claims)
        );
        let done = expect_done(P::resume(
            discovery_ctx(),
            out.state,
            json_input(200, &body),
        ));
        assert_eq!(done.account_label, label);
    }
}

#[test]
fn without_an_id_token_the_userinfo_endpoint_names_the_account() {
    let mut ctx = discovery_ctx();
    ctx.scopes = vec!["profile".into(), "api.read".into()];
    let out = to_token_request(&ctx, &discovery_doc(""));
    let lookup = expect_send(P::resume(
        ctx.clone(),
        out.state,
        json_input(
            200,
            r#"{"access_token":"at-1","token_type":"Bearer","expires_in":60}"#,
        ),
    ));
    assert_eq!(
        (lookup.request.method.as_str(), lookup.request.url.as_str()),
        ("GET", USERINFO)
    );
    assert_eq!(
        header(&lookup.request.headers, "authorization"),
        Some("Bearer at-1")
    );
    let done = expect_done(P::resume(
        ctx,
        lookup.state,
        json_input(200, r#"{"sub":"u-7","preferred_username":"grace"}"#),
    ));
    assert_eq!(done.account_label, "grace");
    assert_eq!(pair(&done.credential.metadata, "sub"), Some("u-7"));
    assert_eq!(
        done.credential.scopes,
        vec!["profile".to_owned(), "api.read".to_owned()],
        "no scope in the response: the requested ones"
    );
    assert_eq!(pair(&done.credential.secrets, "refresh_token"), None);

    let out = to_token_request(&discovery_ctx(), &discovery_doc(""));
    let lookup = expect_send(P::resume(
        discovery_ctx(),
        out.state,
        json_input(200, r#"{"access_token":"at-1","token_type":"Bearer"}"#),
    ));
    let done = expect_done(P::resume(
        discovery_ctx(),
        lookup.state,
        json_input(403, r#"{"error":"insufficient_scope"}"#),
    ));
    assert_eq!(done.account_label, "", "the label is best effort");
}

#[test]
fn a_userinfo_endpoint_on_another_host_is_not_used_while_connecting() {
    let doc = discovery_doc("").replace(USERINFO, "https://profile.example.net/me");
    let out = to_token_request(&discovery_ctx(), &doc);
    let done = expect_done(P::resume(
        discovery_ctx(),
        out.state,
        json_input(200, r#"{"access_token":"at-1","token_type":"Bearer"}"#),
    ));
    assert_eq!(done.account_label, "");
    assert_eq!(pair(&done.credential.metadata, "userinfo_endpoint"), None);
}

#[test]
fn token_endpoint_errors_are_typed() {
    let fail = |status, body: &str| {
        let out = to_token_request(&discovery_ctx(), &discovery_doc(""));
        expect_fail(P::resume(
            discovery_ctx(),
            out.state,
            json_input(status, body),
        ))
    };
    assert_eq!(
        fail(
            401,
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#
        ),
        ProviderError::Upstream(UpstreamError {
            status: 401,
            code: "invalid_client".into(),
            description: "client authentication failed".into(),
        })
    );
    assert!(matches!(
        fail(
            400,
            r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#
        ),
        ProviderError::ReauthorizeRequired(_)
    ));
    assert!(matches!(
        fail(200, r#"{"token_type":"Bearer"}"#),
        ProviderError::MalformedResponse(_)
    ));
    assert!(matches!(
        fail(502, "<html>Bad gateway</html>"),
        ProviderError::Upstream(UpstreamError { status: 502, .. })
    ));
}

fn connected_credential() -> Credential {
    let out = to_token_request(&discovery_ctx(), &discovery_doc(""));
    let body = format!(
        r#"{{"access_token":"at-1","token_type":"Bearer","expires_in":300,"refresh_token":"rt-1","scope":"openid email","id_token":"{}"}}"#,
        jwt(r#"{"sub":"u-1","email":"ada@example.com"}"#)
    );
    expect_done(P::resume(
        discovery_ctx(),
        out.state,
        json_input(200, &body),
    ))
    .credential
}

/// A refresh needs no connection parameters: the credential's metadata names the endpoint.
fn bare_ctx() -> Context {
    ctx_with(&[])
}

#[test]
fn refresh_posts_the_refresh_token_to_the_stored_token_endpoint() {
    let out = expect_send(P::refresh(bare_ctx(), connected_credential()));
    assert_eq!(
        (out.request.method.as_str(), out.request.url.as_str()),
        ("POST", TOKEN)
    );
    assert_eq!(
        header(&out.request.headers, "authorization"),
        Some(http::basic_auth_oauth("client-1", "s3cret").as_str())
    );
    let form = form_decode(&out.request.body);
    assert_eq!(
        (q(&form, "grant_type"), q(&form, "refresh_token")),
        (Some("refresh_token"), Some("rt-1"))
    );
}

#[test]
fn refresh_takes_a_rotated_token_and_keeps_the_old_one_otherwise() {
    let credential = connected_credential();
    let out = expect_send(P::refresh(bare_ctx(), credential.clone()));
    let rotated = expect_done(P::resume(
        bare_ctx(),
        out.state,
        json_input(
            200,
            r#"{"access_token":"at-2","token_type":"Bearer","expires_in":300,"refresh_token":"rt-2"}"#,
        ),
    ))
    .credential;
    assert_eq!(pair(&rotated.secrets, "access_token"), Some("at-2"));
    assert_eq!(pair(&rotated.secrets, "refresh_token"), Some("rt-2"));

    let out = expect_send(P::refresh(bare_ctx(), credential.clone()));
    let kept = expect_done(P::resume(
        bare_ctx(),
        out.state,
        json_input(200, r#"{"access_token":"at-3","expires_in":120}"#),
    ))
    .credential;
    assert_eq!(pair(&kept.secrets, "access_token"), Some("at-3"));
    assert_eq!(pair(&kept.secrets, "refresh_token"), Some("rt-1"));
    assert_eq!(kept.expires_at, Some(1_000 + 120));
    assert_eq!(kept.scopes, credential.scopes, "scopes carried over");
    assert_eq!(kept.metadata, credential.metadata, "metadata carried over");
}

#[test]
fn a_dead_refresh_token_requires_reauthorization() {
    let out = expect_send(P::refresh(bare_ctx(), connected_credential()));
    let e = expect_fail(P::resume(
        bare_ctx(),
        out.state,
        json_input(
            400,
            r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
        ),
    ));
    assert_eq!(
        e,
        ProviderError::ReauthorizeRequired("grant request is invalid".into())
    );
    let e = expect_fail(P::refresh(
        bare_ctx(),
        credential(&[("access_token", "at-1")], &[("token_endpoint", TOKEN)]),
    ));
    assert!(matches!(e, ProviderError::ReauthorizeRequired(_)));
}

#[test]
fn sign_attaches_the_bearer_token_for_the_api_host_only() {
    let cred = connected_credential();
    let signed = P::sign(
        request("GET", "https://api.example.com/v1/things"),
        cred.clone(),
        0,
    )
    .unwrap();
    assert_eq!(
        header(&signed.headers, "authorization"),
        Some("Bearer at-1")
    );
    for url in [
        "https://idp.example.com/realms/acme/protocol/openid-connect/userinfo",
        "https://api.example.com.evil.test/",
        "https://api.example.com:8443/",
        "http://api.example.com/",
    ] {
        assert!(
            matches!(
                P::sign(request("GET", url), cred.clone(), 0),
                Err(ProviderError::HostNotAllowed(_))
            ),
            "{url}"
        );
    }
    let loopback = credential(
        &[("access_token", "at-1")],
        &[("api_host", "127.0.0.1:39002")],
    );
    let signed = P::sign(
        request("GET", "https://127.0.0.1:39002/v1/things"),
        loopback.clone(),
        0,
    )
    .unwrap();
    assert_eq!(
        header(&signed.headers, "authorization"),
        Some("Bearer at-1")
    );
    assert!(P::sign(request("GET", "https://127.0.0.1/v1/things"), loopback, 0).is_err());
}

#[test]
fn classify_asks_for_a_refresh_on_401_and_names_missing_scopes_on_403() {
    assert_eq!(
        P::classify(
            response(
                401,
                &[("WWW-Authenticate", r#"Bearer error="invalid_token""#)],
                ""
            ),
            0
        ),
        Classification::Unauthorized
    );
    assert_eq!(
        P::classify(
            response(
                403,
                &[(
                    "WWW-Authenticate",
                    r#"Bearer realm="api", error="insufficient_scope", scope="api.write""#
                )],
                ""
            ),
            0
        ),
        Classification::InsufficientScope(vec!["api.write".into()])
    );
    assert_eq!(P::classify(response(403, &[], "{}"), 0), Classification::Ok);
}

#[test]
fn revoke_posts_the_refresh_token_per_rfc_7009() {
    let req = P::revoke(bare_ctx(), connected_credential()).unwrap();
    assert_eq!((req.method.as_str(), req.url.as_str()), ("POST", REVOKE));
    assert_eq!(
        header(&req.headers, "authorization"),
        Some(http::basic_auth_oauth("client-1", "s3cret").as_str())
    );
    assert_eq!(
        header(&req.headers, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = form_decode(&req.body);
    assert_eq!(
        (q(&form, "token"), q(&form, "token_type_hint")),
        (Some("rt-1"), Some("refresh_token"))
    );

    let access_only = credential(
        &[("access_token", "at-1")],
        &[
            ("revocation_endpoint", REVOKE),
            ("token_auth", "client_secret_post"),
        ],
    );
    let req = P::revoke(bare_ctx(), access_only).unwrap();
    let form = form_decode(&req.body);
    assert_eq!(
        (q(&form, "token"), q(&form, "token_type_hint")),
        (Some("at-1"), Some("access_token"))
    );
    assert_eq!(q(&form, "client_secret"), Some("s3cret"));

    let unknown = credential(
        &[("access_token", "at-1"), ("refresh_token", "rt-1")],
        &[("token_endpoint", TOKEN)],
    );
    assert_eq!(P::revoke(bare_ctx(), unknown), None);
}

#[test]
fn a_state_from_another_step_is_refused() {
    let r = discover(&discovery_ctx(), &discovery_doc(""));
    let e = expect_fail(P::resume(
        discovery_ctx(),
        r.state,
        json_input(200, r#"{"access_token":"at-1"}"#),
    ));
    assert!(matches!(e, ProviderError::InvalidInput(_)));
    let e = expect_fail(P::resume(
        discovery_ctx(),
        b"not json".to_vec(),
        callback(&[]),
    ));
    assert!(matches!(e, ProviderError::InvalidInput(_)));
}
