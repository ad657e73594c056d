//! AWS Signature Version 4 (header form): canonical request, string to sign, signing key and
//! the `Authorization` header.
//!
//! Pure functions of the request, the keys and `now`; nothing here reads a clock. S3 differs
//! from every other service in two ways handled here: its paths are neither normalised nor
//! double-encoded, and it requires `x-amz-content-sha256`.

use core::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tessera_provider_sdk::classify::civil_from_epoch;
use tessera_provider_sdk::http::{
    self, header, parse_url, percent_decode, percent_encode_strict, set_header,
};
use tessera_provider_sdk::{HttpRequest, ProviderError};

/// The signing algorithm name.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Headers never signed: they are set or rewritten by HTTP clients and proxies.
const UNSIGNED_HEADERS: &[&str] = &[
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "expect",
    "transfer-encoding",
    "connection",
];

/// Where the session token goes relative to the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPlacement {
    /// `X-Amz-Security-Token` is a signed header (what AWS SDKs do).
    Signed,
    /// The token header is added after signing, unsigned (a few services require this).
    AfterSigning,
}

/// Keys and scope for one signature.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    /// The access key id (`AKIA…`, `ASIA…`).
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// The session token of temporary credentials.
    pub session_token: Option<&'a str>,
    /// Where the session token goes.
    pub token_placement: TokenPlacement,
    /// The signing region (`us-east-1`).
    pub region: &'a str,
    /// The signing service name (`s3`, `sts`, `dynamodb`).
    pub service: &'a str,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

/// The intermediate strings of a signature, for tests and diagnostics (they hold no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The canonical request.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// The `Authorization` header value.
    pub authorization: String,
}

/// `YYYYMMDDTHHMMSSZ` for `now`.
pub fn amz_date(now: u64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_epoch(now);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail; an empty MAC would only make
    // the signature wrong, never panic.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Removes `.` and `..` segments (RFC 3986 §5.2.4) and empty segments (`//`), keeping a
/// trailing slash.
fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut out = format!("/{}", segments.join("/"));
    if trailing && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// The path as an HTTP client puts it on the wire: characters a client would escape
/// (controls, space, double quote, angle brackets, backquote, braces and non-ASCII)
/// percent-encoded, everything else kept.
fn wire_path(path: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b <= 0x20 || b >= 0x7f || matches!(b, b'"' | b'<' | b'>' | b'`' | b'{' | b'}') {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

fn canonical_uri(path: &str, service: &str) -> String {
    if service == "s3" {
        // S3: no normalisation, each segment encoded exactly once.
        path.split('/')
            .map(|segment| percent_encode_strict(&percent_decode(segment), false))
            .collect::<Vec<_>>()
            .join("/")
    } else {
        // Everyone else: normalised, and the (already once-encoded) wire path encoded again.
        percent_encode_strict(wire_path(&normalize_path(path)).as_bytes(), true)
    }
}

fn canonical_query(query: Option<&str>) -> String {
    let Some(query) = query else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_encode_strict(&percent_decode(k), false),
                percent_encode_strict(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs `request` in place: sets `X-Amz-Date`, the session token, `x-amz-content-sha256`
/// (S3) and `Authorization`. Returns the intermediate strings.
pub fn sign(request: &mut HttpRequest, params: &Params<'_>) -> Result<Signature, ProviderError> {
    let url = parse_url(&request.url)?;
    let path = url.path.to_owned();
    let query = url.query.map(str::to_owned);
    let authority = url.authority();
    let date_time = amz_date(params.now);
    let date = date_time.get(..8).unwrap_or_default().to_owned();

    http::remove_header(&mut request.headers, "authorization");
    set_header(&mut request.headers, "X-Amz-Date", date_time.clone());
    match (params.session_token, params.token_placement) {
        (Some(token), TokenPlacement::Signed) => {
            set_header(&mut request.headers, "X-Amz-Security-Token", token);
        }
        _ => http::remove_header(&mut request.headers, "x-amz-security-token"),
    }
    let payload_hash = if let Some(given) = header(&request.headers, "x-amz-content-sha256") {
        given.trim().to_owned()
    } else {
        let hash = sha256_hex(&request.body);
        if params.service == "s3" {
            set_header(&mut request.headers, "x-amz-content-sha256", hash.clone());
        }
        hash
    };

    // name -> values in order of appearance; BTreeMap keeps names sorted.
    let mut headers: std::collections::BTreeMap<String, Vec<String>> =
        std::collections::BTreeMap::new();
    if header(&request.headers, "host").is_none() {
        headers.insert("host".into(), vec![authority]);
    }
    for (name, value) in &request.headers {
        let name = name.to_ascii_lowercase();
        if UNSIGNED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        headers.entry(name).or_default().push(value);
    }
    let canonical_headers = headers.iter().fold(String::new(), |mut out, (k, v)| {
        let _ = writeln!(out, "{k}:{}", v.join(","));
        out
    });
    let signed_headers = headers.keys().cloned().collect::<Vec<_>>().join(";");

    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method.to_ascii_uppercase(),
        canonical_uri(&path, params.service),
        canonical_query(query.as_deref()),
        canonical_headers,
        signed_headers,
        payload_hash
    );
    let scope = format!("{date}/{}/{}/aws4_request", params.region, params.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{date_time}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(
        format!("AWS4{}", params.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, params.region.as_bytes());
    let k_service = hmac(&k_region, params.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        params.access_key_id
    );
    set_header(&mut request.headers, "Authorization", authorization.clone());
    if let (Some(token), TokenPlacement::AfterSigning) =
        (params.session_token, params.token_placement)
    {
        set_header(&mut request.headers, "X-Amz-Security-Token", token);
    }
    Ok(Signature {
        canonical_request,
        string_to_sign,
        authorization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_like_rfc3986_and_collapse_slashes() {
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("//"), "/");
        assert_eq!(normalize_path("/example/.."), "/");
        assert_eq!(normalize_path("/a/b/../.."), "/");
        assert_eq!(normalize_path("/./example"), "/example");
        assert_eq!(normalize_path("//example//"), "/example/");
        assert_eq!(normalize_path("/a/./b/"), "/a/b/");
        assert_eq!(normalize_path("/../a"), "/a");
    }

    #[test]
    fn non_s3_paths_are_double_encoded_and_s3_paths_once() {
        assert_eq!(canonical_uri("/a%20b/c", "dynamodb"), "/a%2520b/c");
        assert_eq!(canonical_uri("/a%20b/c", "s3"), "/a%20b/c");
        assert_eq!(canonical_uri("/ሴ", "service"), "/%25E1%2588%25B4");
        assert_eq!(canonical_uri("/my key/x=y", "s3"), "/my%20key/x%3Dy");
        assert_eq!(canonical_uri("/a/../b", "s3"), "/a/../b");
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        assert_eq!(canonical_query(Some("b=2&a=1&a=0&c")), "a=0&a=1&b=2&c=");
        assert_eq!(
            canonical_query(Some("k=a%20b&k2=a+b&x=%7e")),
            "k=a%20b&k2=a%2Bb&x=~"
        );
        assert_eq!(canonical_query(None), "");
    }

    #[test]
    fn amz_date_formats_utc() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
    }

    #[test]
    fn s3_gets_a_content_hash_and_tokens_are_signed() {
        let mut req = HttpRequest {
            method: "PUT".into(),
            url: "https://bucket.s3.eu-west-1.amazonaws.com/key".into(),
            headers: Vec::new(),
            body: b"hello".to_vec(),
        };
        let sig = sign(
            &mut req,
            &Params {
                access_key_id: "AKIDEXAMPLE",
                secret_access_key: "secret",
                session_token: Some("tok"),
                token_placement: TokenPlacement::Signed,
                region: "eu-west-1",
                service: "s3",
                now: 1_440_938_160,
            },
        )
        .unwrap();
        let hash = sha256_hex(b"hello");
        assert_eq!(
            header(&req.headers, "x-amz-content-sha256"),
            Some(hash.as_str())
        );
        assert_eq!(header(&req.headers, "x-amz-security-token"), Some("tok"));
        assert!(sig.canonical_request.ends_with(&hash));
        assert!(
            sig.authorization.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
            )
        );
        assert!(sig.authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/s3/aws4_request"
        ));
    }
}
