//! Signs every request to the host as `docs/SIGNING.md` specifies (RFC 9421 `hmac-sha256`,
//! label `tsr`, RFC 9530 `Content-Digest`), on top of the shared pieces in
//! [`tessera_proto::signing`] so the SDK and the host verifier cannot drift.
//!
//! Owns the derived signing key, never the API key string: the key is parsed once, the
//! signing key derived, and the parsed key dropped (it zeroizes itself). Must never put the
//! signing key, a signature base or a signature into an error, a log line or `Debug` output.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use tessera_proto::signing::{
    self, ApiKey, CONTENT_DIGEST_HEADER, KeyId, LABEL, Message, SignatureParams, SigningError,
    SigningKey,
};

/// How many random bytes a nonce carries: 128 bits, 22 base64url characters (at least
/// [`signing::NONCE_MIN_LEN`]).
const NONCE_BYTES: usize = 16;

/// The key id and derived signing key of one API key.
#[derive(Clone)]
pub(crate) struct Signer {
    key_id: KeyId,
    key: SigningKey,
}

/// The three header fields a signed request carries.
pub(crate) struct SignedHeaders {
    /// `Content-Digest` value.
    pub(crate) content_digest: String,
    /// `Signature-Input` value.
    pub(crate) signature_input: String,
    /// `Signature` value.
    pub(crate) signature: String,
}

impl Signer {
    /// Parses `tsr_app_…` / `tsr_agent_…` and derives the signing key. The key string is not
    /// kept.
    pub(crate) fn from_api_key(api_key: &str) -> Result<Self, SigningError> {
        let key = ApiKey::parse(api_key.trim())?;
        Ok(Self {
            key_id: key.key_id().clone(),
            key: key.signing_key(),
        })
    }

    /// The public key id (the `keyid` parameter).
    pub(crate) fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Signs a request now, with a fresh random nonce.
    ///
    /// `covered` are extra header fields, `(name, value)` with the value exactly as sent,
    /// covered after the mandatory `"@method" "@target-uri" "content-digest"`, in the order
    /// given.
    pub(crate) fn sign(
        &self,
        method: &str,
        target_uri: &str,
        body: &[u8],
        covered: &[(&str, &str)],
    ) -> Result<SignedHeaders, SigningError> {
        self.sign_at(
            method,
            target_uri,
            body,
            covered,
            unix_now(),
            &fresh_nonce(),
        )
    }

    /// Signs a request at time `created` (Unix seconds) with `nonce`: [`Signer::sign`] with
    /// its clock and randomness injected, for tests against fixed examples.
    pub(crate) fn sign_at(
        &self,
        method: &str,
        target_uri: &str,
        body: &[u8],
        covered: &[(&str, &str)],
        created: i64,
        nonce: &str,
    ) -> Result<SignedHeaders, SigningError> {
        // The Tessera profile validates nonce and `created`; extra fields only extend its
        // component list, the parameters stay exactly as the profile builds them.
        let profile = SignatureParams::tessera(created, nonce, &self.key_id)?;
        let components = profile
            .components()
            .iter()
            .cloned()
            .chain(covered.iter().map(|(name, _)| name.to_ascii_lowercase()))
            .collect();
        let params = SignatureParams::new(components, profile.params().to_vec());

        let content_digest = signing::content_digest(body);
        let mut headers = Vec::with_capacity(1 + covered.len());
        headers.push((CONTENT_DIGEST_HEADER, content_digest.as_str()));
        headers.extend_from_slice(covered);
        let message = Message {
            method,
            target_uri,
            headers: &headers,
        };
        let base = signing::signature_base(&message, &params)?;
        let signature = self.key.sign(base.as_bytes());
        Ok(SignedHeaders {
            signature_input: format!("{LABEL}={}", params.serialize()),
            signature: format!("{LABEL}=:{}:", STANDARD.encode(signature)),
            content_digest,
        })
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .field("key", &self.key) // prints `SigningKey([redacted])`
            .finish()
    }
}

/// A fresh nonce: base64url of 16 random bytes (22 characters of `[A-Za-z0-9_-]`).
fn fresh_nonce() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; NONCE_BYTES]>())
}

/// The current Unix time in whole seconds.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tessera_proto::signing::{RequestToSign, is_valid_nonce, parse_signature_input};

    use super::*;

    /// The ```` ```text example-N:field ```` blocks of `docs/SIGNING.md`.
    fn doc_examples() -> BTreeMap<String, BTreeMap<String, String>> {
        let doc = include_str!("../../../docs/SIGNING.md");
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut lines = doc.lines();
        while let Some(line) = lines.next() {
            let Some((example, field)) = line
                .strip_prefix("```text ")
                .and_then(|tag| tag.trim().split_once(':'))
            else {
                continue;
            };
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            out.entry(example.to_owned())
                .or_default()
                .insert(field.to_owned(), body.join("\n"));
        }
        out
    }

    #[test]
    fn signature_headers_match_the_worked_examples_of_signing_md() {
        let examples = doc_examples();
        assert!(examples.len() >= 2, "SIGNING.md lost its worked examples");
        for (name, ex) in &examples {
            let get = |k: &str| {
                ex.get(k)
                    .unwrap_or_else(|| panic!("{name}: no {k}"))
                    .as_str()
            };
            let headers = Signer::from_api_key(get("api-key"))
                .unwrap()
                .sign_at(
                    get("method"),
                    get("target-uri"),
                    get("body").as_bytes(),
                    &[],
                    get("created").parse().unwrap(),
                    get("nonce"),
                )
                .unwrap();
            assert_eq!(headers.content_digest, get("content-digest"), "{name}");
            assert_eq!(headers.signature_input, get("signature-input"), "{name}");
            assert_eq!(headers.signature, get("signature"), "{name}");
        }
    }

    fn example_signer() -> Signer {
        Signer::from_api_key("tsr_app_5e1f0a7c3b9d2468_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
            .unwrap()
    }

    #[test]
    fn without_extra_fields_the_signer_agrees_with_the_proto_reference_signer() {
        let signer = example_signer();
        let key =
            ApiKey::parse("tsr_app_5e1f0a7c3b9d2468_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
                .unwrap();
        let request = RequestToSign {
            method: "DELETE",
            target_uri: "http://127.0.0.1:8080/v1/grants/g%201?x=1",
            body: br#"{"reason":"done"}"#,
            created: 1_800_000_000,
            nonce: "abcdefghijklmnopqrstuv",
        };
        let reference = signing::sign_request(&key.signing_key(), key.key_id(), &request).unwrap();
        let ours = signer
            .sign_at(
                request.method,
                request.target_uri,
                request.body,
                &[],
                request.created,
                request.nonce,
            )
            .unwrap();
        assert_eq!(ours.content_digest, reference.content_digest);
        assert_eq!(ours.signature_input, reference.signature_input);
        assert_eq!(ours.signature, reference.signature);
    }

    #[test]
    fn extra_covered_header_fields_follow_the_mandatory_three_and_verify() {
        let covered = [
            ("tessera-constraints", "tokens:retrieve"),
            ("tessera-caller", "email-bot"),
        ];
        let uri = "https://tessera.example.com/v1/retrieve";
        let body = b"{}";
        let signed = example_signer()
            .sign_at(
                "POST",
                uri,
                body,
                &covered,
                1_767_225_600,
                "q3Zk9P_x-7LmN2bVc8RtYw",
            )
            .unwrap();
        assert_eq!(
            signed.signature_input,
            r#"tsr=("@method" "@target-uri" "content-digest" "tessera-constraints" "tessera-caller");created=1767225600;nonce="q3Zk9P_x-7LmN2bVc8RtYw";keyid="5e1f0a7c3b9d2468";alg="hmac-sha256""#
        );

        // Verify as a host would: rebuild the base from the received fields and the params.
        let params = parse_signature_input(&signed.signature_input, LABEL)
            .unwrap()
            .unwrap();
        let received = [
            ("Content-Digest", signed.content_digest.as_str()),
            ("Tessera-Caller", "email-bot"),
            ("Tessera-Constraints", "tokens:retrieve"),
        ];
        let base = signing::signature_base(
            &Message {
                method: "POST",
                target_uri: uri,
                headers: &received,
            },
            &params,
        )
        .unwrap();
        assert!(base.contains(
            "\n\"tessera-constraints\": tokens:retrieve\n\"tessera-caller\": email-bot\n"
        ));
        let expected = format!(
            "tsr=:{}:",
            STANDARD.encode(example_signer().key.sign(base.as_bytes()))
        );
        assert_eq!(signed.signature, expected);

        // Changing a covered header after signing breaks the signature.
        let tampered = [
            ("Content-Digest", signed.content_digest.as_str()),
            ("Tessera-Caller", "email-bot"),
            ("Tessera-Constraints", "tokens:retrieve proxy:execute"),
        ];
        let tampered_base = signing::signature_base(
            &Message {
                method: "POST",
                target_uri: uri,
                headers: &tampered,
            },
            &params,
        )
        .unwrap();
        assert_ne!(tampered_base, base);
    }

    #[test]
    fn each_request_gets_a_fresh_valid_nonce_and_the_current_time() {
        let signer = example_signer();
        let a = signer.sign("GET", "http://h/v1/whoami", b"", &[]).unwrap();
        let b = signer.sign("GET", "http://h/v1/whoami", b"", &[]).unwrap();
        assert_ne!(a.signature_input, b.signature_input);
        let params = parse_signature_input(&a.signature_input, LABEL)
            .unwrap()
            .unwrap();
        let Some(signing::ParamValue::String(nonce)) = params.param("nonce") else {
            panic!("no nonce in {}", a.signature_input);
        };
        assert!(is_valid_nonce(nonce), "{nonce}");
        let Some(signing::ParamValue::Integer(created)) = params.param("created") else {
            panic!("no created in {}", a.signature_input);
        };
        assert!((created - unix_now()).abs() <= 5);
    }

    #[test]
    fn debug_never_shows_the_signing_key() {
        let signer = example_signer();
        let debug = format!("{signer:?}");
        assert!(debug.contains("5e1f0a7c3b9d2468"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(!debug.contains("c2dbb784"), "{debug}");
    }

    #[test]
    fn a_malformed_key_is_refused_without_echoing_it() {
        let err = Signer::from_api_key("tsr_app_5e1f0a7c3b9d2468_SECRETSECRET").unwrap_err();
        assert!(!err.to_string().contains("SECRETSECRET"), "{err}");
    }
}
