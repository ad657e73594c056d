//! Verification of one signed request, in the order `docs/SIGNING.md` §4 documents: parse,
//! profile, skew, digest, key, signature, nonce. Cheap, key-independent checks come first;
//! the nonce is recorded only once the signature is known to be valid.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Uri, request::Parts};
use subtle::ConstantTimeEq as _;
use tessera_proto::signing::{
    self, ALGORITHM, CONTENT_DIGEST_HEADER, COVERED_COMPONENTS, KeyId, LABEL, MAX_SKEW_SECONDS,
    Message, OPTIONAL_COVERED_HEADERS, ParamValue, SIGNATURE_HEADER, SIGNATURE_INPUT_HEADER,
    SIGNATURE_LEN, SIGNATURE_PARAMETERS, SignatureParams, SigningKey,
};

use super::{AuthError, NonceOutcome, NonceStore, StoreError};

/// The parts of an HTTP request the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The method as received (`POST`).
    pub method: &'a str,
    /// The absolute target URI the client sent to (see [`target_uri`]).
    pub target_uri: &'a str,
    /// All request header fields.
    pub headers: &'a HeaderMap,
    /// The request content as received.
    pub body: &'a [u8],
}

impl<'a> SignedRequest<'a> {
    /// Borrows the method and headers of `parts`; `target_uri` comes from [`target_uri`].
    pub fn from_parts(parts: &'a Parts, target_uri: &'a str, body: &'a [u8]) -> Self {
        Self {
            method: parts.method.as_str(),
            target_uri,
            headers: &parts.headers,
            body,
        }
    }
}

/// The absolute target URI of a request as the client addressed it: the host's configured
/// public origin (`https://tessera.example.com`, no trailing slash) plus the request's
/// path and query as received. Never built from `Host` or `X-Forwarded-*` headers.
pub fn target_uri(public_origin: &str, uri: &Uri) -> String {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{}{}", public_origin.trim_end_matches('/'), path_and_query)
}

/// The current Unix time in seconds (the API layer passes it to [`verify`]).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A key found by its key id, and who it belongs to.
#[derive(Debug)]
pub struct ResolvedKey<P> {
    /// The derived signing key (unwrapped from the vault).
    pub signing_key: SigningKey,
    /// Who signs with it (app or agent, with its scopes), for the layers above.
    pub principal: P,
}

/// Finds the signing key of an active API key by key id. The database implementation
/// lives in `store`; tests use a map.
pub trait KeyResolver: Send + Sync {
    /// What the caller learns about a verified signer.
    type Principal: Send;

    /// `Ok(None)` when no active key has this id (revoked keys included).
    fn resolve(
        &self,
        key_id: &KeyId,
    ) -> impl Future<Output = Result<Option<ResolvedKey<Self::Principal>>, StoreError>> + Send;
}

/// A request whose signature verified.
#[derive(Debug)]
pub struct Verified<P> {
    /// The key that signed.
    pub key_id: KeyId,
    /// Its owner, as the resolver returned it.
    pub principal: P,
    /// The `created` parameter (Unix seconds).
    pub created: i64,
}

/// The fields of a Tessera signature once its profile is checked.
struct Profile {
    params: SignatureParams,
    created: i64,
    nonce: String,
    key_id: KeyId,
}

/// Verifies `request` at time `now` (Unix seconds). See `docs/SIGNING.md` §4 for the
/// order of checks and the error each returns.
pub async fn verify<K: KeyResolver, N: NonceStore>(
    request: &SignedRequest<'_>,
    keys: &K,
    nonces: &N,
    now: i64,
) -> Result<Verified<K::Principal>, AuthError> {
    let input = combined_field(request.headers, SIGNATURE_INPUT_HEADER)?;
    let sig = combined_field(request.headers, SIGNATURE_HEADER)?;
    let (Some(input), Some(sig)) = (input, sig) else {
        return Err(AuthError::SignatureMissing);
    };
    let params = signing::parse_signature_input(&input, LABEL)
        .map_err(|_| AuthError::SignatureMalformed("Signature-Input is not a valid dictionary"))?;
    let signature = signing::parse_signature(&sig, LABEL)
        .map_err(|_| AuthError::SignatureMalformed("Signature is not a valid dictionary"))?;
    let (Some(params), Some(signature)) = (params, signature) else {
        return Err(AuthError::SignatureMissing);
    };
    let profile = check_profile(params)?;

    let skew = now.saturating_sub(profile.created);
    if skew.unsigned_abs() > MAX_SKEW_SECONDS.unsigned_abs() {
        return Err(AuthError::SignatureExpired { skew });
    }

    let digest_field =
        combined_field(request.headers, CONTENT_DIGEST_HEADER)?.ok_or(AuthError::DigestMissing)?;
    let sent_digest = signing::parse_content_digest_sha256(&digest_field)
        .ok()
        .flatten()
        .ok_or(AuthError::DigestMissing)?;
    if !bool::from(sent_digest.as_slice().ct_eq(&signing::sha256(request.body))) {
        return Err(AuthError::DigestMismatch);
    }

    let resolved = keys
        .resolve(&profile.key_id)
        .await?
        .ok_or(AuthError::UnknownKey)?;

    // An optional header is covered exactly when it is sent: one that is sent but not
    // covered could have been added or changed on the way.
    let mut optional = Vec::new();
    for name in OPTIONAL_COVERED_HEADERS {
        let sent = combined_field(request.headers, name)?;
        let covered = profile.params.components().iter().any(|c| c == name);
        match (sent, covered) {
            (Some(value), true) => optional.push((name, value)),
            (None, false) => {}
            _ => return Err(AuthError::ComponentsInvalid),
        }
    }
    let mut headers = vec![(CONTENT_DIGEST_HEADER, digest_field.as_str())];
    headers.extend(optional.iter().map(|(n, v)| (*n, v.as_str())));
    let message = Message {
        method: request.method,
        target_uri: request.target_uri,
        headers: &headers,
    };
    // A target URI or method that cannot be put into a base cannot have been signed.
    let base = signing::signature_base(&message, &profile.params)
        .map_err(|_| AuthError::SignatureInvalid)?;
    let expected = resolved.signing_key.sign(base.as_bytes());
    // The length is public (always 32); only the bytes are compared in constant time.
    if signature.len() != SIGNATURE_LEN || !bool::from(signature.as_slice().ct_eq(&expected)) {
        return Err(AuthError::SignatureInvalid);
    }

    let expires_at = profile.created.saturating_add(MAX_SKEW_SECONDS);
    match nonces
        .check_and_remember(&profile.key_id, &profile.nonce, expires_at, now)
        .await?
    {
        NonceOutcome::Fresh => Ok(Verified {
            key_id: profile.key_id,
            principal: resolved.principal,
            created: profile.created,
        }),
        NonceOutcome::Replayed => Err(AuthError::NonceReplayed),
        NonceOutcome::KeyInactive => Err(AuthError::UnknownKey),
    }
}

/// All values of a header field combined with `, ` (RFC 9110 §5.3), trimmed.
fn combined_field(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, AuthError> {
    let mut values = Vec::new();
    for value in headers.get_all(name) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::SignatureMalformed("a signature field is not visible ASCII"))?;
        values.push(value.trim_matches([' ', '\t']));
    }
    Ok((!values.is_empty()).then(|| values.join(", ")))
}

fn check_profile(params: SignatureParams) -> Result<Profile, AuthError> {
    let names: Vec<&str> = params.params().iter().map(|(k, _)| k.as_str()).collect();
    if names.len() != SIGNATURE_PARAMETERS.len()
        || !SIGNATURE_PARAMETERS.iter().all(|p| names.contains(p))
    {
        return Err(AuthError::SignatureMalformed(
            "parameters must be exactly created, nonce, keyid and alg",
        ));
    }
    let (
        Some(ParamValue::Integer(created)),
        Some(ParamValue::String(nonce)),
        Some(ParamValue::String(key_id)),
        Some(ParamValue::String(alg)),
    ) = (
        params.param("created"),
        params.param("nonce"),
        params.param("keyid"),
        params.param("alg"),
    )
    else {
        return Err(AuthError::SignatureMalformed(
            "created must be an integer; nonce, keyid and alg strings",
        ));
    };
    if !signing::is_valid_nonce(nonce) {
        return Err(AuthError::SignatureMalformed(
            "nonce must be 16 to 64 characters of A-Z a-z 0-9 _ -",
        ));
    }
    let key_id = KeyId::parse(key_id)
        .map_err(|_| AuthError::SignatureMalformed("keyid must be 16 lower-case hex characters"))?;
    if alg != ALGORITHM {
        return Err(AuthError::AlgorithmUnsupported);
    }
    let components = params.components();
    let once = |c: &str| components.iter().filter(|x| *x == c).count() == 1;
    if !COVERED_COMPONENTS.iter().all(|c| once(c))
        || !components.iter().all(|c| {
            COVERED_COMPONENTS.contains(&c.as_str())
                || (OPTIONAL_COVERED_HEADERS.contains(&c.as_str()) && once(c))
        })
    {
        return Err(AuthError::ComponentsInvalid);
    }
    Ok(Profile {
        created: *created,
        nonce: nonce.clone(),
        key_id,
        params,
    })
}

#[cfg(test)]
mod tests;
