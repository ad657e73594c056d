use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tessera_proto::signing::{
    ApiKey, KeyKind, Message, OPTIONAL_COVERED_HEADERS, RequestToSign, SignatureParams,
    content_digest, sign_request, signature_base,
};

use super::*;
use crate::auth::MemoryNonceStore;

const NOW: i64 = 1_767_225_600;
const URI: &str = "https://tessera.example.com/v1/proxy?grant_id=g1";
const BODY: &[u8] = br#"{"method":"GET","url":"https://api.github.com/user/repos"}"#;
const NONCE: &str = "q3Zk9P_x-7LmN2bVc8RtYw";

fn app_key() -> ApiKey {
    ApiKey::new(
        KeyKind::App,
        KeyId::parse("5e1f0a7c3b9d2468").unwrap(),
        std::array::from_fn(|i| u8::try_from(i).unwrap()),
    )
}

fn other_key() -> ApiKey {
    ApiKey::new(
        KeyKind::Agent,
        KeyId::parse("a0b1c2d3e4f50617").unwrap(),
        [7; 32],
    )
}

/// Resolves key ids to signing keys; the principal is the key id as a string.
struct Keys(HashMap<KeyId, SigningKey>);

impl Keys {
    fn of(keys: &[&ApiKey]) -> Self {
        Self(
            keys.iter()
                .map(|k| (k.key_id().clone(), k.signing_key()))
                .collect(),
        )
    }
}

impl KeyResolver for Keys {
    type Principal = String;
    async fn resolve(&self, key_id: &KeyId) -> Result<Option<ResolvedKey<String>>, StoreError> {
        Ok(self.0.get(key_id).map(|k| ResolvedKey {
            signing_key: k.clone(),
            principal: key_id.to_string(),
        }))
    }
}

struct Broken;

impl NonceStore for Broken {
    async fn check_and_remember(
        &self,
        _: &KeyId,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<NonceOutcome, StoreError> {
        Err(StoreError::new("database is down", None))
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

/// Headers of a request signed by the Tessera signer.
fn signed(
    key: &ApiKey,
    method: &str,
    uri: &str,
    body: &[u8],
    created: i64,
    nonce: &str,
) -> HeaderMap {
    let s = sign_request(
        &key.signing_key(),
        key.key_id(),
        &RequestToSign {
            method,
            target_uri: uri,
            body,
            created,
            nonce,
        },
    )
    .unwrap();
    headers(&[
        ("content-digest", &s.content_digest),
        ("signature-input", &s.signature_input),
        ("signature", &s.signature),
    ])
}

/// Headers of a request signed with arbitrary (non-profile) params over `body`.
fn signed_with(key: &ApiKey, params: &SignatureParams, method: &str, body: &[u8]) -> HeaderMap {
    let digest = content_digest(body);
    let fields = [("content-digest", digest.as_str())];
    let base = signature_base(
        &Message {
            method,
            target_uri: URI,
            headers: &fields,
        },
        params,
    )
    .unwrap();
    let sig = STANDARD.encode(key.signing_key().sign(base.as_bytes()));
    headers(&[
        ("content-digest", &digest),
        ("signature-input", &format!("tsr={}", params.serialize())),
        ("signature", &format!("tsr=:{sig}:")),
    ])
}

async fn check(
    h: &HeaderMap,
    method: &str,
    body: &[u8],
    now: i64,
    nonces: &MemoryNonceStore,
) -> Result<Verified<String>, AuthError> {
    let req = SignedRequest {
        method,
        target_uri: URI,
        headers: h,
        body,
    };
    verify(&req, &Keys::of(&[&app_key(), &other_key()]), nonces, now).await
}

async fn code(h: &HeaderMap, method: &str, body: &[u8], now: i64) -> &'static str {
    match check(h, method, body, now, &MemoryNonceStore::new()).await {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn profile_params(components: &[&str], params: Vec<(&str, ParamValue)>) -> SignatureParams {
    SignatureParams::new(
        components.iter().map(|c| (*c).to_owned()).collect(),
        params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    )
}

/// Covered components, parameters, expected error code.
type Case<'a> = (&'a [&'a str], Vec<(&'a str, ParamValue)>, &'a str);

fn s(v: &str) -> ParamValue {
    ParamValue::String(v.to_owned())
}

fn standard_params() -> Vec<(&'static str, ParamValue)> {
    vec![
        ("created", ParamValue::Integer(NOW)),
        ("nonce", s(NONCE)),
        ("keyid", s("5e1f0a7c3b9d2468")),
        ("alg", s("hmac-sha256")),
    ]
}

#[tokio::test]
async fn valid_signature_is_accepted_and_names_the_signer() {
    let h = signed(&app_key(), "POST", URI, BODY, NOW, NONCE);
    let v = check(&h, "POST", BODY, NOW, &MemoryNonceStore::new())
        .await
        .unwrap();
    assert_eq!(v.principal, "5e1f0a7c3b9d2468");
    assert_eq!(v.key_id.as_str(), "5e1f0a7c3b9d2468");
    assert_eq!(v.created, NOW);
}

#[tokio::test]
async fn skew_window_is_300_seconds_inclusive_in_both_directions() {
    for (created, expected) in [
        (NOW - 300, "ok"),
        (NOW + 300, "ok"),
        (NOW - 301, "signature_expired"),
        (NOW + 301, "signature_expired"),
        (0, "signature_expired"),
        (-999_999_999_999_999, "signature_expired"),
        (999_999_999_999_999, "signature_expired"),
    ] {
        let h = signed(&app_key(), "POST", URI, BODY, created, NONCE);
        assert_eq!(
            code(&h, "POST", BODY, NOW).await,
            expected,
            "created = now {:+}",
            created.saturating_sub(NOW)
        );
    }
}

#[tokio::test]
async fn replayed_signature_is_rejected() {
    let nonces = MemoryNonceStore::new();
    let h = signed(&app_key(), "POST", URI, BODY, NOW, NONCE);
    assert!(check(&h, "POST", BODY, NOW, &nonces).await.is_ok());
    let again = check(&h, "POST", BODY, NOW + 300, &nonces)
        .await
        .unwrap_err();
    assert_eq!(again.code(), "nonce_replayed");
    // The same nonce re-signed (new created) is still a replay inside the window.
    let h2 = signed(&app_key(), "GET", URI, b"", NOW + 10, NONCE);
    assert_eq!(
        check(&h2, "GET", b"", NOW + 10, &nonces)
            .await
            .unwrap_err()
            .code(),
        "nonce_replayed"
    );
    // Nonces are per key: another key may use the same string.
    let h3 = signed(&other_key(), "POST", URI, BODY, NOW, NONCE);
    assert!(check(&h3, "POST", BODY, NOW, &nonces).await.is_ok());
}

#[tokio::test]
async fn nonce_is_remembered_until_created_plus_300_then_forgotten() {
    let store = MemoryNonceStore::new();
    let id = app_key().key_id().clone();
    let expires = NOW + MAX_SKEW_SECONDS;
    assert_eq!(
        store
            .check_and_remember(&id, NONCE, expires, NOW)
            .await
            .unwrap(),
        NonceOutcome::Fresh
    );
    assert_eq!(
        store
            .check_and_remember(&id, NONCE, expires, expires)
            .await
            .unwrap(),
        NonceOutcome::Replayed
    );
    assert_eq!(
        store
            .check_and_remember(&id, NONCE, expires + 400, expires + 1)
            .await
            .unwrap(),
        NonceOutcome::Fresh
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn invalid_signature_does_not_burn_the_nonce() {
    let nonces = MemoryNonceStore::new();
    let forged = signed(&other_key(), "POST", URI, BODY, NOW, NONCE);
    let mut forged_as_app = signed(&app_key(), "POST", URI, BODY, NOW, NONCE);
    forged_as_app.insert("signature", forged.get("signature").unwrap().clone());
    assert_eq!(
        check(&forged_as_app, "POST", BODY, NOW, &nonces)
            .await
            .unwrap_err()
            .code(),
        "signature_invalid"
    );
    assert!(nonces.is_empty());
    let genuine = signed(&app_key(), "POST", URI, BODY, NOW, NONCE);
    assert!(check(&genuine, "POST", BODY, NOW, &nonces).await.is_ok());
}

#[tokio::test]
async fn tampered_requests_are_rejected() {
    let h = signed(&app_key(), "POST", URI, BODY, NOW, NONCE);
    // Body changed, digest left alone.
    assert_eq!(code(&h, "POST", b"{}", NOW).await, "digest_mismatch");
    // Body and digest changed consistently: the signature covers the digest.
    let mut h2 = h.clone();
    h2.insert(
        "content-digest",
        HeaderValue::from_str(&content_digest(b"{}")).unwrap(),
    );
    assert_eq!(code(&h2, "POST", b"{}", NOW).await, "signature_invalid");
    // Method changed.
    assert_eq!(code(&h, "PUT", BODY, NOW).await, "signature_invalid");
    // Target URI changed.
    let req = SignedRequest {
        method: "POST",
        target_uri: "https://tessera.example.com/v1/proxy?grant_id=g2",
        headers: &h,
        body: BODY,
    };
    let err = verify(
        &req,
        &Keys::of(&[&app_key()]),
        &MemoryNonceStore::new(),
        NOW,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "signature_invalid");
    // Signature-Input changed (created moved by one second, still inside the window).
    let mut h3 = h.clone();
    let input = h
        .get("signature-input")
        .unwrap()
        .to_str()
        .unwrap()
        .replace(&NOW.to_string(), &(NOW + 1).to_string());
    h3.insert("signature-input", HeaderValue::from_str(&input).unwrap());
    assert_eq!(code(&h3, "POST", BODY, NOW).await, "signature_invalid");
}

#[tokio::test]
async fn wrong_key_and_unknown_key_are_rejected() {
    // Signed with another key's secret but claiming the app key id.
    let impostor = ApiKey::new(KeyKind::App, app_key().key_id().clone(), [9; 32]);
    let h = signed(&impostor, "POST", URI, BODY, NOW, NONCE);
    assert_eq!(code(&h, "POST", BODY, NOW).await, "signature_invalid");
    let stranger = ApiKey::new(
        KeyKind::App,
        KeyId::parse("ffffffffffffffff").unwrap(),
        [1; 32],
    );
    let h = signed(&stranger, "POST", URI, BODY, NOW, NONCE);
    assert_eq!(code(&h, "POST", BODY, NOW).await, "unknown_key");
}

#[tokio::test]
async fn signatures_of_the_wrong_length_are_rejected() {
    let good = signed(&app_key(), "POST", URI, BODY, NOW, NONCE);
    let sig = good.get("signature").unwrap().to_str().unwrap();
    let bytes = STANDARD
        .decode(sig.trim_start_matches("tsr=:").trim_end_matches(':'))
        .unwrap();
    for variant in [
        &bytes[..31],
        &[bytes.as_slice(), &[0]].concat()[..],
        &[][..],
    ] {
        let mut h = good.clone();
        h.insert(
            "signature",
            HeaderValue::from_str(&format!("tsr=:{}:", STANDARD.encode(variant))).unwrap(),
        );
        assert_eq!(
            code(&h, "POST", BODY, NOW).await,
            "signature_invalid",
            "length {}",
            variant.len()
        );
    }
}

#[tokio::test]
async fn missing_or_malformed_fields_are_rejected_with_their_codes() {
    let good = signed(&app_key(), "POST", URI, BODY, NOW, NONCE);
    let without = |name: &str| {
        let mut h = good.clone();
        h.remove(name);
        h
    };
    assert_eq!(
        code(&without("signature"), "POST", BODY, NOW).await,
        "signature_missing"
    );
    assert_eq!(
        code(&without("signature-input"), "POST", BODY, NOW).await,
        "signature_missing"
    );
    assert_eq!(
        code(&without("content-digest"), "POST", BODY, NOW).await,
        "digest_missing"
    );
    let mut other_label = good.clone();
    let input = good
        .get("signature-input")
        .unwrap()
        .to_str()
        .unwrap()
        .replacen("tsr=", "sig1=", 1);
    other_label.insert("signature-input", HeaderValue::from_str(&input).unwrap());
    assert_eq!(
        code(&other_label, "POST", BODY, NOW).await,
        "signature_missing"
    );
    let mut garbage = good.clone();
    garbage.insert(
        "signature-input",
        HeaderValue::from_static("tsr=(\"@method\""),
    );
    assert_eq!(
        code(&garbage, "POST", BODY, NOW).await,
        "signature_malformed"
    );
    let mut sha512_only = good.clone();
    sha512_only.insert("content-digest", HeaderValue::from_static("sha-512=:AAAA:"));
    assert_eq!(
        code(&sha512_only, "POST", BODY, NOW).await,
        "digest_missing"
    );
    // A second `tsr` member in a repeated field is refused, not resolved.
    let mut doubled = good.clone();
    doubled.append("signature", good.get("signature").unwrap().clone());
    assert_eq!(
        code(&doubled, "POST", BODY, NOW).await,
        "signature_malformed"
    );
}

/// Headers of a request whose signature also covers `extra` (name, value) fields, sent
/// with them.
fn signed_covering(key: &ApiKey, extra: &[(&str, &str)]) -> HeaderMap {
    let digest = content_digest(BODY);
    let mut fields = vec![("content-digest", digest.as_str())];
    fields.extend_from_slice(extra);
    let mut components = vec!["@method", "@target-uri", "content-digest"];
    components.extend(extra.iter().map(|(n, _)| *n));
    let params = profile_params(&components, standard_params());
    let base = signature_base(
        &Message {
            method: "POST",
            target_uri: URI,
            headers: &fields,
        },
        &params,
    )
    .unwrap();
    let sig = STANDARD.encode(key.signing_key().sign(base.as_bytes()));
    let input = format!("tsr={}", params.serialize());
    let signature = format!("tsr=:{sig}:");
    let mut all = vec![
        ("content-digest", digest.as_str()),
        ("signature-input", input.as_str()),
        ("signature", signature.as_str()),
    ];
    all.extend_from_slice(extra);
    headers(&all)
}

/// Each optional header (constraints, caller, the agent an app key acts as) counts only when
/// the signature covers it: added on the way, stripped on the way, or changed on the way,
/// the request is refused.
#[tokio::test]
async fn optional_headers_are_accepted_only_as_signed() {
    let key = app_key();
    for name in OPTIONAL_COVERED_HEADERS {
        let covered = signed_covering(&key, &[(name, "value-1")]);
        assert_eq!(code(&covered, "POST", BODY, NOW).await, "ok", "{name}");

        let mut added = signed_covering(&key, &[]);
        added.insert(name, HeaderValue::from_static("value-1"));
        assert_eq!(
            code(&added, "POST", BODY, NOW).await,
            "signature_components_invalid",
            "{name} added"
        );

        let mut stripped = covered.clone();
        stripped.remove(name);
        assert_eq!(
            code(&stripped, "POST", BODY, NOW).await,
            "signature_components_invalid",
            "{name} stripped"
        );

        let mut changed = covered.clone();
        changed.insert(name, HeaderValue::from_static("value-2"));
        assert_eq!(
            code(&changed, "POST", BODY, NOW).await,
            "signature_invalid",
            "{name} changed"
        );
    }
}

#[tokio::test]
async fn signatures_outside_the_profile_are_rejected() {
    let key = app_key();
    let three = ["@method", "@target-uri", "content-digest"];
    let cases: Vec<Case> = vec![
        (
            &three[..2],
            standard_params(),
            "signature_components_invalid",
        ),
        (
            &["@method", "@target-uri", "content-digest", "@authority"],
            standard_params(),
            "signature_components_invalid",
        ),
        (
            &["@method", "@target-uri", "@target-uri"],
            standard_params(),
            "signature_components_invalid",
        ),
        (
            &three,
            [
                standard_params(),
                vec![("expires", ParamValue::Integer(NOW + 60))],
            ]
            .concat(),
            "signature_malformed",
        ),
        (
            &three,
            standard_params()[1..].to_vec(),
            "signature_malformed",
        ),
        (
            &three,
            vec![
                ("created", s("1")),
                ("nonce", s(NONCE)),
                ("keyid", s("5e1f0a7c3b9d2468")),
                ("alg", s("hmac-sha256")),
            ],
            "signature_malformed",
        ),
        (
            &three,
            vec![
                ("created", ParamValue::Integer(NOW)),
                ("nonce", s("short")),
                ("keyid", s("5e1f0a7c3b9d2468")),
                ("alg", s("hmac-sha256")),
            ],
            "signature_malformed",
        ),
        (
            &three,
            vec![
                ("created", ParamValue::Integer(NOW)),
                ("nonce", s(NONCE)),
                ("keyid", s("5E1F0A7C3B9D2468")),
                ("alg", s("hmac-sha256")),
            ],
            "signature_malformed",
        ),
        (
            &three,
            vec![
                ("created", ParamValue::Integer(NOW)),
                ("nonce", s(NONCE)),
                ("keyid", s("5e1f0a7c3b9d2468")),
                ("alg", s("hmac-sha512")),
            ],
            "signature_algorithm_unsupported",
        ),
    ];
    for (components, params, expected) in cases {
        let params = profile_params(components, params);
        let h = signed_with(&key, &params, "POST", BODY);
        assert_eq!(
            code(&h, "POST", BODY, NOW).await,
            expected,
            "{}",
            params.serialize()
        );
    }
}

#[tokio::test]
async fn order_of_components_and_parameters_as_sent_is_what_is_signed() {
    let mut params = standard_params();
    params.reverse();
    let params = profile_params(&["content-digest", "@method", "@target-uri"], params);
    let h = signed_with(&app_key(), &params, "POST", BODY);
    assert_eq!(code(&h, "POST", BODY, NOW).await, "ok");
}

#[tokio::test]
async fn store_failure_fails_closed_with_503() {
    let h = signed(&app_key(), "POST", URI, BODY, NOW, NONCE);
    let req = SignedRequest {
        method: "POST",
        target_uri: URI,
        headers: &h,
        body: BODY,
    };
    let err = verify(&req, &Keys::of(&[&app_key()]), &Broken, NOW)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "auth_unavailable");
    assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn errors_never_contain_key_material_or_signatures() {
    let key = app_key();
    let h = signed(&key, "POST", URI, BODY, NOW, NONCE);
    let sig = h
        .get("signature")
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches("tsr=:")
        .trim_end_matches(':')
        .to_owned();
    let secret = key.expose()[27..].to_owned();
    let mut errors = Vec::new();
    for (method, body, now) in [
        ("PUT", BODY, NOW),
        ("POST", &b"x"[..], NOW),
        ("POST", BODY, NOW + 999),
    ] {
        errors.push(
            check(&h, method, body, now, &MemoryNonceStore::new())
                .await
                .unwrap_err(),
        );
    }
    for e in errors {
        let text = format!("{e} {e:?}");
        assert_eq!(e.status(), axum::http::StatusCode::UNAUTHORIZED);
        assert!(
            !text.contains(&sig) && !text.contains(&secret) && !text.contains("@signature-params"),
            "{text}"
        );
    }
}

#[test]
fn target_uri_uses_the_configured_origin_and_the_raw_path_and_query() {
    let uri: Uri = "/v1/grants?provider=git%20hub".parse().unwrap();
    assert_eq!(
        target_uri("https://t.example/", &uri),
        "https://t.example/v1/grants?provider=git%20hub"
    );
}

/// Runs the independent Python signer (`tests/signing/signer.py`, written from
/// `docs/SIGNING.md` alone) and verifies what it produces; a tampered copy must fail.
#[tokio::test]
async fn python_signer_written_from_signing_md_is_accepted() {
    let key = other_key();
    let body = "caf\u{e9} \u{2615}\n{\"a\": [1, 2]}";
    let uri = "https://tessera.example.com/v1/tokens/retrieve?grant_id=7c1d&x=%2Fy";
    let api_key = key.expose();
    let created = (NOW - 299).to_string();
    let args = [
        "--api-key",
        &api_key,
        "--method",
        "PATCH",
        "--url",
        uri,
        "--body",
        body,
        "--created",
        &created,
        "--nonce",
        "py-signer_nonce-0001",
    ];
    let output = run_signer(&args.map(std::ffi::OsStr::new));
    assert!(
        output.status.success(),
        "signer.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut h = HeaderMap::new();
    for line in stdout.lines() {
        let (name, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("unexpected signer output line {line:?}"));
        h.append(
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    assert_eq!(
        h.len(),
        3,
        "expected Content-Digest, Signature-Input and Signature, got {stdout}"
    );
    // Byte-for-byte what the Rust signer produces for the same inputs.
    assert_eq!(
        h,
        signed(
            &key,
            "PATCH",
            uri,
            body.as_bytes(),
            NOW - 299,
            "py-signer_nonce-0001"
        )
    );

    let nonces = MemoryNonceStore::new();
    let req = SignedRequest {
        method: "PATCH",
        target_uri: uri,
        headers: &h,
        body: body.as_bytes(),
    };
    let keys = Keys::of(&[&key]);
    let verified = verify(&req, &keys, &nonces, NOW).await.unwrap();
    assert_eq!(verified.key_id, *key.key_id());

    let tampered_body = body.replace('1', "7");
    let tampered = SignedRequest {
        body: tampered_body.as_bytes(),
        ..req
    };
    assert_eq!(
        verify(&tampered, &keys, &MemoryNonceStore::new(), NOW)
            .await
            .unwrap_err()
            .code(),
        "digest_mismatch"
    );
    let tampered = SignedRequest {
        target_uri: "https://tessera.example.com/v1/tokens/retrieve?grant_id=7c1e&x=%2Fy",
        ..req
    };
    assert_eq!(
        verify(&tampered, &keys, &MemoryNonceStore::new(), NOW)
            .await
            .unwrap_err()
            .code(),
        "signature_invalid"
    );
    assert_eq!(
        verify(&req, &keys, &nonces, NOW).await.unwrap_err().code(),
        "nonce_replayed"
    );
}

/// Runs `python3 tests/signing/signer.py ARGS`; fails (never skips) without python3.
fn run_signer(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/signing/signer.py");
    Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("python3 is required for this test and could not be run: {e}"))
}

/// The independent signer reproduces every worked example of the document it was written
/// from (the Rust side is checked against the same examples in `tessera_proto::signing`).
#[test]
fn python_signer_reproduces_the_signing_md_worked_examples() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/SIGNING.md");
    let check = run_signer(&["--check-examples".as_ref(), doc.as_os_str()]);
    assert!(
        check.status.success(),
        "signer.py disagrees with SIGNING.md's worked examples: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
