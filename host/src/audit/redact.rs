//! Redaction of what could carry a secret into an audit row: header values, URL query and
//! fragment parameters, URL passwords, and secret-named members of `detail`.
//!
//! Redaction is by name: a value is replaced by [`REDACTED`] whenever its name looks like it
//! could hold a secret, even when it does not. A false positive costs an operator a detail;
//! a false negative leaks a credential into every export of the log.

/// What a redacted value is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Header names that carry credentials but do not say so in their name.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-amz-security-token",
];

/// Query parameter names that carry credentials (compared in lower case).
const SECRET_PARAMS: &[&str] = &[
    "code",
    "code_verifier",
    "assertion",
    "client_assertion",
    "sig",
    "auth",
    "session",
    "sessionid",
    "x-amz-credential",
    "x-goog-credential",
    "password",
    "pass",
    "pwd",
];

/// Name fragments that mark a value as secret wherever they occur in a name.
const SECRET_FRAGMENTS: &[&str] = &[
    "token",
    "secret",
    "signature",
    "password",
    "passwd",
    "credential",
    "cookie",
    "authorization",
];

/// Whether a header, parameter or field named `name` may hold a secret.
fn secret_name(name: &str, exact: &[&str]) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    exact.contains(&lower.as_str())
        || SECRET_FRAGMENTS.iter().any(|f| lower.contains(f))
        || lower.ends_with("key")
        || lower.contains("key_")
        || lower.contains("key-")
}

/// `headers` with the value of every header that may hold a secret replaced by
/// [`REDACTED`]: `authorization`, `proxy-authorization`, `cookie`, `set-cookie`,
/// `x-api-key`, `x-amz-security-token`, and any name containing `token`, `secret`,
/// `signature`, `password`, `credential` or ending in `key` (case-insensitive). Names and
/// order are kept.
pub fn redact_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if secret_name(name, SECRET_HEADERS) {
                REDACTED.to_owned()
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect()
}

/// `url` (absolute, or a path with a query) with secrets removed: the password of
/// `user:password@`, and the value of every query or fragment parameter whose name may hold
/// a secret (`access_token`, `token`, `key`, `api_key`, `signature`, `X-Amz-Signature`,
/// `X-Amz-Credential`, `X-Amz-Security-Token`, `client_secret`, `code`, …; names are
/// compared in lower case after percent-decoding). Everything else is kept byte for byte.
pub fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(q) = query {
        out.push('?');
        out.push_str(&redact_params(q));
    }
    if let Some(f) = fragment {
        out.push('#');
        // OAuth implicit-style fragments carry `access_token=…`; other fragments are kept.
        if f.contains('=') {
            out.push_str(&redact_params(f));
        } else {
            out.push_str(f);
        }
    }
    out
}

/// `scheme://user:password@host/…` with the password redacted.
fn redact_userinfo(base: &str) -> String {
    let Some(scheme_end) = base.find("://") else {
        return base.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &base[authority_start..];
    let authority_len = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return base.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return base.to_owned();
    };
    format!(
        "{}{}:{REDACTED}{}",
        &base[..authority_start],
        &userinfo[..colon],
        &base[authority_start + at..]
    )
}

fn redact_params(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value))
                if !value.is_empty() && secret_name(&decode(name), SECRET_PARAMS) =>
            {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent- and plus-decoding of a parameter name, lossy (names are only compared).
fn decode(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match name
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Field names in `detail` whose string value is a URL or a path with a query.
const URL_FIELDS: &[&str] = &["url", "uri", "path", "target", "location", "redirect_uri"];

/// Field names in `detail` that never hold a secret even though they match a secret pattern
/// (counters and flags about tokens, not tokens).
const SAFE_FIELDS: &[&str] = &["key_id", "grant_key", "token_type", "expires_in", "scopes"];

/// `detail` with every object member whose name may hold a secret replaced by
/// [`REDACTED`] (at any depth), the value of every `[name, value]` pair whose name may hold
/// a secret (a serialised header list) replaced too, and URL-named string members passed
/// through [`redact_url`]. `key_id` (a public key id) and `token_type` are kept.
pub fn redact_detail(detail: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match detail {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(name, value)| {
                    let lower = name.to_ascii_lowercase();
                    let value = if SAFE_FIELDS.contains(&lower.as_str()) {
                        value
                    } else if secret_name(&name, SECRET_HEADERS) {
                        match value {
                            Value::Null => Value::Null,
                            _ => Value::String(REDACTED.to_owned()),
                        }
                    } else if URL_FIELDS.contains(&lower.as_str()) {
                        match value {
                            Value::String(s) => Value::String(redact_url(&s)),
                            other => redact_detail(other),
                        }
                    } else {
                        redact_detail(value)
                    };
                    (name, value)
                })
                .collect(),
        ),
        // `[name, value]`: how a header list (`Vec<(String, String)>`) serialises.
        Value::Array(items)
            if items.len() == 2
                && items[1].is_string()
                && items[0]
                    .as_str()
                    .is_some_and(|name| secret_name(name, SECRET_HEADERS)) =>
        {
            let mut items = items;
            items[1] = Value::String(REDACTED.to_owned());
            Value::Array(items)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(redact_detail).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn secret_headers_are_redacted_and_others_kept() {
        let cases = [
            ("Authorization", "Bearer gho_abc", true),
            ("proxy-authorization", "Basic eDp5", true),
            ("Cookie", "sid=1", true),
            ("set-cookie", "sid=2", true),
            ("X-API-Key", "k1", true),
            ("x-amz-security-token", "FwoG", true),
            ("X-Goog-Api-Key", "AIza", true),
            ("x-csrf-token", "t", true),
            ("X-Client-Secret", "s", true),
            ("x-hub-signature-256", "sha256=ab", true),
            ("Idempotency-Key", "i", true),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD", false),
            ("x-amz-date", "20260101T000000Z", false),
            ("Content-Type", "application/json", false),
            ("Accept", "*/*", false),
            ("User-Agent", "tessera", false),
        ];
        let input = pairs(&cases.map(|(n, v, _)| (n, v)));
        let out = redact_headers(&input);
        assert_eq!(out.len(), cases.len());
        for ((name, value), (orig_name, orig_value, secret)) in out.iter().zip(cases) {
            assert_eq!(name, orig_name, "names are kept");
            let expected = if secret { REDACTED } else { orig_value };
            assert_eq!(value, expected, "{name}");
        }
    }

    #[test]
    fn secret_query_parameters_are_redacted() {
        let cases = [
            (
                "https://api.example.com/v1/x?access_token=abc&page=2",
                "https://api.example.com/v1/x?access_token=[redacted]&page=2",
            ),
            (
                "https://s3.amazonaws.com/b/o?X-Amz-Algorithm=AWS4-HMAC-SHA256\
                 &X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=f00&X-Amz-Security-Token=FwoG\
                 &X-Amz-Expires=300",
                "https://s3.amazonaws.com/b/o?X-Amz-Algorithm=AWS4-HMAC-SHA256\
                 &X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]\
                 &X-Amz-Security-Token=[redacted]&X-Amz-Expires=300",
            ),
            (
                "/oauth/callback?code=xyz&state=s1",
                "/oauth/callback?code=[redacted]&state=s1",
            ),
            (
                "https://maps.example.com/api?key=AIza&q=paris&api_key=2&apikey=3&client_secret=4",
                "https://maps.example.com/api?key=[redacted]&q=paris&api_key=[redacted]\
                 &apikey=[redacted]&client_secret=[redacted]",
            ),
            (
                "https://x.example.com/?%61ccess_token=1&sig=2&token=3&refresh_token=4",
                "https://x.example.com/?%61ccess_token=[redacted]&sig=[redacted]\
                 &token=[redacted]&refresh_token=[redacted]",
            ),
            (
                "https://app.example.com/cb#access_token=t&token_type=bearer&state=s",
                "https://app.example.com/cb#access_token=[redacted]&token_type=[redacted]&state=s",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_url(input), expected, "{input}");
        }
    }

    #[test]
    fn urls_without_secrets_are_kept_byte_for_byte() {
        for url in [
            "https://api.github.com/user/repos?per_page=100&page=2",
            "https://api.example.com/v1/keys/abc",
            "/v1/monkeys?sort=desc&flag&=x&empty=",
            "https://docs.example.com/page#section-2",
            "mailto:someone@example.com",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("https://alice:hunter2@db.example.com:5432/x?sslmode=require"),
            "https://alice:[redacted]@db.example.com:5432/x?sslmode=require"
        );
        assert_eq!(
            redact_url("https://alice@example.com/a@b"),
            "https://alice@example.com/a@b"
        );
    }

    #[test]
    fn detail_members_with_secret_names_are_redacted_at_any_depth() {
        let detail = serde_json::json!({
            "method": "POST",
            "status": 201,
            "key_id": "0123456789abcdef",
            "url": "https://api.example.com/x?access_token=abc&a=1",
            "request": {
                "headers": {"Authorization": "Bearer x", "accept": "*/*"},
                "client_secret": "s",
                "refresh_token": null,
            },
            "items": [{"password": "p", "name": "n"}],
            "pairs": [["X-Api-Key", "k"], ["accept", "*/*"], ["a", "b", "c"]],
        });
        let out = redact_detail(detail);
        assert_eq!(
            out,
            serde_json::json!({
                "method": "POST",
                "status": 201,
                "key_id": "0123456789abcdef",
                "url": "https://api.example.com/x?access_token=[redacted]&a=1",
                "request": {
                    "headers": {"Authorization": REDACTED, "accept": "*/*"},
                    "client_secret": REDACTED,
                    "refresh_token": null,
                },
                "items": [{"password": REDACTED, "name": "n"}],
                "pairs": [["X-Api-Key", REDACTED], ["accept", "*/*"], ["a", "b", "c"]],
            })
        );
    }
}
