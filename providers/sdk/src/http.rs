//! Small HTTP helpers: URL splitting, headers, form and percent encoding, Basic and Bearer auth.
//!
//! This module only parses and builds strings; it never performs I/O. The URL parser is
//! deliberately strict (no user info, no odd host characters): it decides which host a
//! credential is signed for, so anything ambiguous is refused rather than guessed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::{HttpRequest, ProviderError};

/// The parts of an absolute `http(s)` URL that signing and allow-listing need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url<'a> {
    /// `http` or `https`, lower-cased.
    pub scheme: String,
    /// The host, lower-cased, without a trailing dot; IPv6 literals keep their brackets.
    pub host: String,
    /// The explicit port, if the URL has one.
    pub port: Option<u16>,
    /// The path exactly as written (still percent-encoded); `/` when the URL has none.
    pub path: &'a str,
    /// The query string without `?`, exactly as written, if any.
    pub query: Option<&'a str>,
}

impl Url<'_> {
    /// The port in effect: the explicit one, else 443 for `https` and 80 for `http`.
    pub fn effective_port(&self) -> u16 {
        self.port
            .unwrap_or(if self.scheme == "https" { 443 } else { 80 })
    }

    /// `host[:port]` as it belongs in a `Host` header (the port only when not the default).
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) if port != self.effective_default_port() => {
                format!("{}:{port}", self.host)
            }
            _ => self.host.clone(),
        }
    }

    fn effective_default_port(&self) -> u16 {
        if self.scheme == "https" { 443 } else { 80 }
    }
}

fn invalid(msg: &str) -> ProviderError {
    ProviderError::InvalidInput(msg.to_owned())
}

/// Splits an absolute `http://` or `https://` URL.
///
/// Refuses user info (`user@host`), empty or malformed hosts, bad ports, and whitespace or
/// control characters anywhere, because a lenient parser here could sign for the wrong host.
pub fn parse_url(url: &str) -> Result<Url<'_>, ProviderError> {
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(invalid(
            "the URL contains whitespace, control characters or a backslash",
        ));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("the URL is not absolute"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(invalid("the URL scheme must be https or http"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(invalid("URLs with user info are not accepted"));
    }
    let (host, port) = split_host_port(authority)?;
    let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok(Url {
        scheme,
        host,
        port,
        path,
        query,
    })
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), ProviderError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid("the URL has an unterminated IPv6 host"))?;
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(invalid("the URL has a malformed IPv6 host"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| invalid("the URL has a malformed port"))?,
            ),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            && !host.starts_with('.')
            && !host.contains("..");
        if !valid {
            return Err(invalid("the URL has an empty or malformed host"));
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|_| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| invalid("the URL has a malformed port"))?,
        ),
    };
    Ok((host, port))
}

/// Appends `pairs` to `base` as a form-encoded query string (`?` or `&` as needed).
pub fn with_query<K: AsRef<str>, V: AsRef<str>>(base: &str, pairs: &[(K, V)]) -> String {
    if pairs.is_empty() {
        return base.to_owned();
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{}", form_encode(pairs))
}

/// Encodes `pairs` as `application/x-www-form-urlencoded`.
pub fn form_encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k.as_ref(), v.as_ref());
    }
    serializer.finish()
}

/// Decodes an `application/x-www-form-urlencoded` body or query string (lossy on bad UTF-8).
pub fn form_decode(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Percent-encodes every byte except RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// and `/` too when `keep_slash` is set. This is the encoding `SigV4` and OAuth 1 sign over.
pub fn percent_encode_strict(input: &[u8], keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Decodes `%XX` escapes (a malformed escape is kept literally); `+` stays `+`.
pub fn percent_decode(input: &str) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of header `name` (case-insensitive), in order.
pub fn header_values<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Removes every header called `name` (case-insensitive).
pub fn remove_header(headers: &mut Vec<(String, String)>, name: &str) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
}

/// Replaces every header called `name` (case-insensitive) with one `name: value`.
pub fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: impl Into<String>) {
    remove_header(headers, name);
    headers.push((name.to_owned(), value.into()));
}

/// Sets `name: value` only when no header of that name is present.
pub fn default_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    if header(headers, name).is_none() {
        headers.push((name.to_owned(), value.to_owned()));
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))`, the client authentication of
/// RFC 6749 §2.3.1 (each part form-encoded before joining).
pub fn basic_auth_oauth(client_id: &str, client_secret: &str) -> String {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret: String = form_urlencoded::byte_serialize(client_secret.as_bytes()).collect();
    basic_auth(&id, &secret)
}

/// `Basic base64(user:password)` as in RFC 7617, without any extra encoding.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// Sets `Authorization: Bearer <token>` on `request`, replacing any `Authorization` header.
pub fn bearer(request: &mut HttpRequest, token: &str) {
    set_header(
        &mut request.headers,
        "Authorization",
        format!("Bearer {token}"),
    );
}

/// A `GET` request with the given headers and an empty body.
pub fn get(url: impl Into<String>, headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url: url.into(),
        headers: owned_pairs(headers),
        body: Vec::new(),
    }
}

/// A `POST` of a form-encoded body, with `Content-Type` set and the given extra headers.
pub fn post_form<K: AsRef<str>, V: AsRef<str>>(
    url: impl Into<String>,
    form: &[(K, V)],
    headers: &[(&str, &str)],
) -> HttpRequest {
    let mut all = vec![(
        "Content-Type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    all.extend(owned_pairs(headers));
    HttpRequest {
        method: "POST".into(),
        url: url.into(),
        headers: all,
        body: form_encode(form).into_bytes(),
    }
}

/// Copies borrowed pairs into the owned form the WIT types use.
pub fn owned_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The value of `name` among `pairs` (exact, case-sensitive match, first occurrence).
pub fn pair<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_parts_signing_needs() {
        let u = parse_url("HTTPS://API.GitHub.com:8443/a/b%20c?x=1&y#frag").unwrap();
        assert_eq!(u.scheme, "https");
        assert_eq!(u.host, "api.github.com");
        assert_eq!(u.port, Some(8443));
        assert_eq!(u.path, "/a/b%20c");
        assert_eq!(u.query, Some("x=1&y"));
        assert_eq!(u.authority(), "api.github.com:8443");
        let u = parse_url("https://example.com").unwrap();
        assert_eq!((u.path, u.query, u.effective_port()), ("/", None, 443));
        let u = parse_url("http://[::1]:80/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority()),
            ("[::1]", "[::1]".to_owned())
        );
        assert_eq!(
            parse_url("https://api.github.com./").unwrap().host,
            "api.github.com"
        );
    }

    #[test]
    fn refuses_ambiguous_urls() {
        for bad in [
            "https://api.github.com@evil.example/",
            "https://evil.example\\@api.github.com/",
            "ftp://example.com/",
            "//example.com/",
            "https:///path",
            "https://exa mple.com/",
            "https://example.com:99999/",
            "https://example.com:/",
            "https://example.com:+1/",
            "https://ex%61mple.com/",
            "https://[::1/",
            "https://.example.com/",
            "https://example..com/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn form_round_trips_and_query_appends() {
        let body = form_encode(&[("a b", "c&d"), ("e", "é+")]);
        assert_eq!(body, "a+b=c%26d&e=%C3%A9%2B");
        assert_eq!(
            form_decode(body.as_bytes()),
            vec![("a b".into(), "c&d".into()), ("e".into(), "é+".into())]
        );
        assert_eq!(with_query("https://x/a", &[("k", "v")]), "https://x/a?k=v");
        assert_eq!(
            with_query("https://x/a?z=1", &[("k", "v")]),
            "https://x/a?z=1&k=v"
        );
    }

    #[test]
    fn strict_percent_encoding_keeps_only_unreserved() {
        assert_eq!(
            percent_encode_strict("a-b_c.d~e f/g+ሴ".as_bytes(), false),
            "a-b_c.d~e%20f%2Fg%2B%E1%88%B4"
        );
        assert_eq!(percent_encode_strict(b"/a b/", true), "/a%20b/");
        assert_eq!(percent_decode("a%20b%zz%4"), b"a b%zz%4".to_vec());
    }

    #[test]
    fn headers_are_case_insensitive_and_set_replaces() {
        let mut h = vec![
            ("authorization".to_owned(), "old".to_owned()),
            ("X".to_owned(), "1".to_owned()),
        ];
        assert_eq!(header(&h, "X"), Some("1"));
        set_header(&mut h, "Authorization", "new");
        assert_eq!(
            header_values(&h, "AUTHORIZATION").collect::<Vec<_>>(),
            vec!["new"]
        );
        default_header(&mut h, "x", "2");
        assert_eq!(header_values(&h, "x").count(), 1);
    }

    #[test]
    fn oauth_basic_auth_form_encodes_each_part() {
        // RFC 6749 §2.3.1: "client id:secret" with reserved characters encoded first.
        assert_eq!(
            basic_auth_oauth("id:1", "s p&"),
            basic_auth("id%3A1", "s+p%26")
        );
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
