//! The verifier against a JWKS served on 127.0.0.1, with tokens signed by test keys, and the
//! classic attacks: `alg: none`, HMAC signed with the public key, wrong issuer or audience,
//! expiry, a key that is not published, key rotation, a tampered payload.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;
use crate::config::EgressConfig;

const RSA1: &[u8] = include_bytes!("testdata/rsa1.pem");
const RSA2: &[u8] = include_bytes!("testdata/rsa2.pem");
const RSA1_PUBLIC: &[u8] = include_bytes!("testdata/rsa1.pub.pem");
const JWKS1: &str = include_str!("testdata/jwks1.json");
const JWKS2: &str = include_str!("testdata/jwks2.json");

#[derive(Clone, Default)]
struct Idp {
    rotated: Arc<std::sync::atomic::AtomicBool>,
    fetches: Arc<AtomicUsize>,
    issuer: Arc<Mutex<String>>,
}

async fn jwks(State(idp): State<Idp>) -> String {
    idp.fetches.fetch_add(1, Ordering::SeqCst);
    if idp.rotated.load(Ordering::SeqCst) {
        JWKS2.to_owned()
    } else {
        JWKS1.to_owned()
    }
}

async fn discovery(State(idp): State<Idp>) -> axum::Json<Value> {
    let issuer = lock(&idp.issuer).clone();
    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")}))
}

/// Serves `/keys` and the discovery document; the issuer, `http://127.0.0.1:PORT`.
async fn serve(idp: Idp) -> String {
    let app = Router::new()
        .route("/keys", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .with_state(idp.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    *lock(&idp.issuer) = issuer.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    issuer
}

fn verifier() -> Verifier {
    let egress = Egress::new(&EgressConfig {
        allow_http_loopback: true,
        ..EgressConfig::default()
    })
    .unwrap();
    Verifier::new(egress)
}

fn config(issuer: &str) -> IdpConfig {
    IdpConfig {
        issuer: issuer.to_owned(),
        jwks_url: Some(format!("{issuer}/keys")),
        audiences: vec!["tessera-app".into()],
        groups_claim: Some("groups".into()),
        algorithms: Vec::new(),
        leeway_secs: 30,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer,
        "sub": "ada",
        "aud": "tessera-app",
        "exp": now() + 300,
        "iat": now(),
        "groups": ["finance", "staff"],
    })
}

fn sign(alg: Algorithm, kid: &str, pem: &[u8], claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    };
    encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn a_valid_token_names_the_user_and_their_groups() {
    let idp = Idp::default();
    let issuer = serve(idp.clone()).await;
    let v = verifier();
    let token = sign(Algorithm::RS256, "k1", RSA1, &claims(&issuer));
    let who = v.verify(&config(&issuer), &token).await.unwrap();
    assert_eq!(who.issuer, issuer);
    assert_eq!(who.subject, "ada");
    assert_eq!(who.groups, ["finance", "staff"]);
    // Cached: a second token costs no fetch.
    v.verify(&config(&issuer), &token).await.unwrap();
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 1);
    // Through discovery when no JWKS URL is configured.
    let mut discovered = config(&issuer);
    discovered.jwks_url = None;
    assert_eq!(
        verifier()
            .verify(&discovered, &token)
            .await
            .unwrap()
            .subject,
        "ada"
    );
}

#[tokio::test]
async fn the_classic_attacks_are_refused() {
    let issuer = serve(Idp::default()).await;
    let v = verifier();
    let cfg = config(&issuer);
    let good = claims(&issuer);

    // alg: none, no signature.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good).unwrap());
    for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
        assert!(
            matches!(
                v.verify(&cfg, &token).await,
                Err(IdentityError::AlgorithmNotAllowed(_) | IdentityError::Malformed(_))
            ),
            "alg none"
        );
    }
    // HS256 "signed" with the identity provider's public key as the HMAC secret.
    let forged = sign(Algorithm::HS256, "k1", RSA1_PUBLIC, &good);
    assert!(matches!(
        v.verify(&cfg, &forged).await,
        Err(IdentityError::AlgorithmNotAllowed(_))
    ));
    // Wrong issuer, wrong audience.
    let mut other = good.clone();
    other["iss"] = json!("https://evil.example.com");
    assert_eq!(
        v.verify(&cfg, &sign(Algorithm::RS256, "k1", RSA1, &other))
            .await,
        Err(IdentityError::WrongIssuer)
    );
    let mut other = good.clone();
    other["aud"] = json!("another-app");
    assert_eq!(
        v.verify(&cfg, &sign(Algorithm::RS256, "k1", RSA1, &other))
            .await,
        Err(IdentityError::WrongAudience)
    );
    // Expired beyond the leeway; not valid yet.
    let mut old = good.clone();
    old["exp"] = json!(now() - 120);
    assert_eq!(
        v.verify(&cfg, &sign(Algorithm::RS256, "k1", RSA1, &old))
            .await,
        Err(IdentityError::Expired)
    );
    let mut early = good.clone();
    early["nbf"] = json!(now() + 600);
    assert_eq!(
        v.verify(&cfg, &sign(Algorithm::RS256, "k1", RSA1, &early))
            .await,
        Err(IdentityError::NotYetValid)
    );
    // Signed by another key under a published kid; a tampered payload.
    assert_eq!(
        v.verify(&cfg, &sign(Algorithm::RS256, "k1", RSA2, &good))
            .await,
        Err(IdentityError::BadSignature)
    );
    let token = sign(Algorithm::RS256, "k1", RSA1, &good);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut tampered = good.clone();
    tampered["sub"] = json!("mallory");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered).unwrap());
    assert_eq!(
        v.verify(&cfg, &parts.join(".")).await,
        Err(IdentityError::BadSignature)
    );
    // The key says RS256; a PS256 token under it is refused.
    assert_eq!(
        v.verify(&cfg, &sign(Algorithm::PS256, "k1", RSA1, &good))
            .await,
        Err(IdentityError::KeyMismatch)
    );
    // The operator may narrow the algorithms.
    let mut narrow = cfg.clone();
    narrow.algorithms = vec![Algorithm::ES256];
    assert!(matches!(
        v.verify(&narrow, &token).await,
        Err(IdentityError::AlgorithmNotAllowed(_))
    ));
    // No subject: malformed.
    let mut anonymous = good.clone();
    anonymous.as_object_mut().unwrap().remove("sub");
    assert!(matches!(
        v.verify(&cfg, &sign(Algorithm::RS256, "k1", RSA1, &anonymous))
            .await,
        Err(IdentityError::Malformed(_))
    ));
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval_and_rotation_works() {
    let idp = Idp::default();
    let issuer = serve(idp.clone()).await;
    let cfg = config(&issuer);
    let k1 = sign(Algorithm::RS256, "k1", RSA1, &claims(&issuer));
    let k2 = sign(Algorithm::RS256, "k2", RSA2, &claims(&issuer));

    // Rate-limited: an unknown kid right after a fetch does not fetch again.
    let v = verifier();
    v.verify(&cfg, &k1).await.unwrap();
    for _ in 0..5 {
        assert_eq!(v.verify(&cfg, &k2).await, Err(IdentityError::UnknownKey));
    }
    assert_eq!(
        idp.fetches.load(Ordering::SeqCst),
        1,
        "forged kids must not hammer the IdP"
    );

    // Rotation: the identity provider publishes k2; a token under k2 makes the verifier fetch again.
    let v = verifier().with_refetch_interval(Duration::ZERO);
    v.verify(&cfg, &k1).await.unwrap();
    idp.rotated.store(true, Ordering::SeqCst);
    assert_eq!(v.verify(&cfg, &k2).await.unwrap().subject, "ada");
    assert_eq!(v.verify(&cfg, &k1).await.unwrap().subject, "ada");
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn unreachable_keys_are_a_clear_error() {
    let cfg = config("http://127.0.0.1:9");
    let token = sign(Algorithm::RS256, "k1", RSA1, &claims("http://127.0.0.1:9"));
    let e = verifier().verify(&cfg, &token).await.unwrap_err();
    assert!(matches!(e, IdentityError::KeysUnavailable(_)), "{e:?}");
    assert_eq!(e.code(), "idp_unavailable");
    assert!(!e.to_string().contains(&token));
}
