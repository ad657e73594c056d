//! Stripe key validation, connect flow, signing and classification.

use super::*;
use tessera_provider_sdk::http::header;
use tessera_provider_sdk::testkit::*;

const KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";

fn connect(key: &str) -> Step {
    Stripe::begin_connect(secret_context(&[("secret_key", key)]))
}

#[test]
fn info_declares_one_secret_field() {
    let info = Stripe::info();
    assert_eq!(info.auth_kind, AuthKind::ManagedSecret);
    assert_eq!(info.secret_fields.len(), 1);
    assert!(info.secret_fields[0].secret && !info.secret_fields[0].optional);
    assert!(!info.supports_refresh && !info.supports_revoke && !info.pkce);
    assert!(info.logo_url.is_some() && info.docs_url.is_some());
}

#[test]
fn malformed_keys_are_rejected_without_echoing_them() {
    for bad in [
        "",
        "pk_test_abc",
        "sk_test_",
        "sk_prod_abc",
        "sk_test_abc def",
        "whsec_abc",
        "sk_live_abc/../x",
    ] {
        match expect_fail(connect(bad)) {
            ProviderError::InvalidInput(msg) => {
                assert!(msg.contains("secret_key"));
                if bad.len() > "sk_test_".len() {
                    assert!(!msg.contains(bad), "the message echoes the value");
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        expect_fail(Stripe::begin_connect(secret_context(&[]))),
        ProviderError::InvalidInput(_)
    ));
}

#[test]
fn valid_key_is_checked_against_the_account_endpoint() {
    let out = expect_send(connect(KEY));
    assert_eq!(out.request.method, "GET");
    assert_eq!(out.request.url, "https://api.stripe.com/v1/account");
    assert_eq!(
        header(&out.request.headers, "authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let done = expect_done(Stripe::resume(
        context(),
        out.state,
        json_input(
            200,
            r#"{"id":"acct_1","email":"ops@acme.test","business_profile":{"name":"Acme Inc"},"settings":{"dashboard":{"display_name":"Acme"}}}"#,
        ),
    ));
    assert_eq!(done.account_label, "Acme Inc");
    assert_eq!(pair(&done.credential.secrets, "secret_key"), Some(KEY));
    assert_eq!(
        pair(&done.credential.metadata, "account_id"),
        Some("acct_1")
    );
    assert_eq!(pair(&done.credential.metadata, "mode"), Some("test"));
    assert_eq!(done.credential.expires_at, None);
}

#[test]
fn label_falls_back_to_display_name_email_then_id() {
    for (body, label) in [
        (
            r#"{"id":"acct_1","email":"a@b.c","business_profile":{"name":null},"settings":{"dashboard":{"display_name":"Dash"}}}"#,
            "Dash",
        ),
        (r#"{"id":"acct_1","email":"a@b.c"}"#, "a@b.c"),
        (r#"{"id":"acct_1"}"#, "acct_1"),
    ] {
        let out = expect_send(connect(KEY));
        assert_eq!(
            expect_done(Stripe::resume(context(), out.state, json_input(200, body))).account_label,
            label
        );
    }
}

#[test]
fn rejected_key_is_invalid_input() {
    let out = expect_send(connect("sk_live_abc123"));
    let e = expect_fail(Stripe::resume(
        context(),
        out.state,
        json_input(
            401,
            r#"{"error":{"message":"Invalid API Key provided: sk_live_****c123","type":"invalid_request_error"}}"#,
        ),
    ));
    assert_eq!(
        e,
        ProviderError::InvalidInput("Stripe rejected the key in secret_key".into())
    );
}

#[test]
fn restricted_key_without_account_permission_still_connects() {
    let out = expect_send(connect("rk_live_abc123"));
    let done = expect_done(Stripe::resume(
        context(),
        out.state,
        json_input(403, r#"{"error":{"type":"invalid_request_error"}}"#),
    ));
    assert_eq!(done.account_label, "Stripe restricted key (live mode)");
}

#[test]
fn other_failures_are_upstream_errors_without_stripe_messages() {
    let out = expect_send(connect(KEY));
    match expect_fail(Stripe::resume(
        context(),
        out.state,
        json_input(
            500,
            r#"{"error":{"type":"api_error","message":"key sk_test_x"}}"#,
        ),
    )) {
        ProviderError::Upstream(e) => {
            assert_eq!((e.status, e.code.as_str()), (500, "api_error"));
            assert!(!e.description.contains("sk_"));
        }
        other => panic!("{other:?}"),
    }
    let out = expect_send(connect(KEY));
    assert!(matches!(
        expect_fail(Stripe::resume(
            context(),
            out.state,
            json_input(200, "not json")
        )),
        ProviderError::MalformedResponse(_)
    ));
    assert!(matches!(
        expect_fail(Stripe::resume(
            context(),
            b"{}".to_vec(),
            json_input(200, "{}")
        )),
        ProviderError::InvalidInput(_)
    ));
}

#[test]
fn sign_only_for_stripe_hosts() {
    let cred = credential(&[("secret_key", KEY)], &[]);
    for url in [
        "https://api.stripe.com/v1/charges",
        "https://files.stripe.com/v1/files/file_1/contents",
    ] {
        let signed = Stripe::sign(request("GET", url), cred.clone(), 0).unwrap();
        assert_eq!(
            header(&signed.headers, "authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
    for url in [
        "https://connect.stripe.com/oauth/token",
        "https://api.stripe.com.evil.test/",
        "http://api.stripe.com/",
    ] {
        assert!(matches!(
            Stripe::sign(request("GET", url), cred.clone(), 0),
            Err(ProviderError::HostNotAllowed(_))
        ));
    }
}

#[test]
fn classify_stripe_statuses() {
    let c = |status| Stripe::classify(response(status, &[], "{}"), 0);
    assert_eq!(c(200), Classification::Ok);
    assert_eq!(
        c(402),
        Classification::Ok,
        "a declined card is the caller's business"
    );
    assert_eq!(c(401), Classification::Unauthorized);
    assert_eq!(c(403), Classification::InsufficientScope(Vec::new()));
    assert_eq!(c(429), Classification::RateLimited(None));
    assert_eq!(c(500), Classification::ServerError);
}
