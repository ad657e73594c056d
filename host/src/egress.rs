//! Egress: every HTTP exchange the host performs on a provider's behalf (connect steps,
//! refreshes, proxied calls) goes through here, so the provider's host allow-list, the
//! timeouts and the size limits hold everywhere.
//!
//! Owns: checking a URL against a provider's declared `allowed-hosts` (exact names, `*.`
//! wildcards for subdomains, `{param}` templates filled from credential metadata and
//! connection parameters, optional `:port`; an entry that is one placeholder alone may take
//! `host:port` or an absolute URL's host and port, as the provider SDK's `hosts` module
//! does), `https` only; never following a redirect (a
//! `3xx` is handed back as it is, so no credential can be walked to another host); connect and
//! total timeouts; a response size cap; dropping hop-by-hop headers; and operator-configured
//! origin overrides (`egress.overrides`), applied after the allow-list check, that send a
//! host's traffic elsewhere while keeping the original `Host` header.
//!
//! Must never: send to a host outside the allow-list, log a header value or a body, or put a
//! URL's query string into an error (it may carry a signature).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use url::Url;

use crate::config::EgressConfig;
use crate::plugin::types::{HttpRequest, HttpResponse};

/// Headers that describe one connection, not the message: never forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Whether `name` is a hop-by-hop header (or one the transport computes itself).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Why an exchange did not happen or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The URL's host is not one the provider declared.
    #[error("{host} is not among the hosts this provider may reach")]
    HostNotAllowed {
        /// The host (and port, if not the default).
        host: String,
    },
    /// The request cannot be sent as described (bad URL, method or header).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The provider could not be reached or did not answer in time.
    #[error("{host} could not be reached: {reason}")]
    Unreachable {
        /// The host.
        host: String,
        /// What failed (connect, TLS, timeout), without the URL's query.
        reason: String,
    },
    /// The response was larger than the configured cap.
    #[error("the provider's response is larger than {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
}

/// Checks `url` against a provider's `allowed` hosts (templates filled from `params`) and
/// returns it parsed. Only `https` URLs without user info pass.
pub fn check_url(
    url: &str,
    allowed: &[String],
    params: &[(String, String)],
) -> Result<Url, EgressError> {
    check_url_with(url, allowed, params, false)
}

/// Whether `host` (lower case, as `Url::host_str` gives it) is the loopback interface.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// [`check_url`], also letting plain `http` through to a loopback host (`127.0.0.0/8`, `::1`,
/// `localhost`) when `http_loopback` is set (`egress.allow_http_loopback`, for test rigs).
pub fn check_url_with(
    url: &str,
    allowed: &[String],
    params: &[(String, String)],
    http_loopback: bool,
) -> Result<Url, EgressError> {
    let parsed = Url::parse(url)
        .map_err(|_| EgressError::InvalidRequest("the URL does not parse".into()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| EgressError::InvalidRequest("the URL has no host".into()))?
        .to_ascii_lowercase();
    let shown = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let loopback_http = http_loopback && parsed.scheme() == "http" && is_loopback(&host);
    if parsed.scheme() != "https" && !loopback_http {
        return Err(EgressError::InvalidRequest(format!(
            "only https URLs are allowed, not {}:",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(EgressError::InvalidRequest(
            "the URL must not carry user info".into(),
        ));
    }
    let default_port = if loopback_http { 80 } else { 443 };
    let port = parsed.port_or_known_default().unwrap_or(default_port);
    if host_allowed(&host, port, default_port, allowed, params) {
        Ok(parsed)
    } else {
        Err(EgressError::HostNotAllowed { host: shown })
    }
}

/// Whether `host` on `port` matches an entry of `allowed` (see the module doc).
pub fn host_allowed(
    host: &str,
    port: u16,
    default_port: u16,
    allowed: &[String],
    params: &[(String, String)],
) -> bool {
    allowed.iter().any(|entry| {
        let Some(entry) = fill_template(entry, params) else {
            return false;
        };
        let (pattern, entry_port) = match entry.rsplit_once(':') {
            Some((p, port)) => match port.parse::<u16>() {
                Ok(port) => (p.to_owned(), port),
                Err(_) => return false,
            },
            None => (entry.clone(), default_port),
        };
        entry_port == port && pattern_matches(&pattern.to_ascii_lowercase(), host)
    })
}

fn pattern_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty()),
        None => pattern == host,
    }
}

/// Fills `{name}` placeholders from `params`; a missing value or one that is not made of
/// host characters makes the entry unusable. An entry that is a single placeholder also takes
/// `host:port` or an absolute `http(s)` URL, of which only the host and port count (the
/// generic `oauth2` provider is configured with its issuer's URL).
fn fill_template(entry: &str, params: &[(String, String)]) -> Option<String> {
    if let Some(name) = entry
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|name| !name.contains(['{', '}']))
    {
        let value = params.iter().find(|(k, _)| k == name).map(|(_, v)| v)?;
        return authority_of(value);
    }
    let mut out = String::with_capacity(entry.len());
    let mut rest = entry;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}')?;
        let name = &after[..end];
        let value = params.iter().find(|(k, _)| k == name).map(|(_, v)| v)?;
        let ok = !value.is_empty()
            && !value.starts_with('.')
            && !value.ends_with('.')
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !ok {
            return None;
        }
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Whether the host of `url` could match an entry of `allowed` for some value of the entry's
/// `{param}` placeholders (each stands for one or more host characters; `*.` for one or more
/// labels). Used to infer which provider a call means from its URL, before any credential
/// (and so any parameter value) is known; the call is checked exactly afterwards. An entry
/// that is one whole placeholder (any host at all) never matches: it cannot tell providers
/// apart.
pub fn host_could_match(url: &Url, allowed: &[String]) -> bool {
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let port = url.port_or_known_default().unwrap_or(443);
    allowed.iter().any(|entry| {
        let whole =
            entry.starts_with('{') && entry.ends_with('}') && entry.matches('{').count() == 1;
        if whole {
            return false;
        }
        let (pattern, entry_port) = match entry.rsplit_once(':') {
            Some((p, port)) => match port.parse::<u16>() {
                Ok(port) => (p, port),
                Err(_) => return false,
            },
            None => (entry.as_str(), 443),
        };
        entry_port == port && glob_host(&pattern.to_ascii_lowercase(), &host)
    })
}

/// Matches `host` against `pattern`, where `{…}` and a leading `*` match one or more host
/// characters.
fn glob_host(pattern: &str, host: &str) -> bool {
    let mut parts: Vec<&str> = Vec::new();
    let mut rest = pattern.strip_prefix('*').map_or(pattern, |r| {
        parts.push("");
        r
    });
    while let Some(start) = rest.find('{') {
        parts.push(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => rest = &rest[start + end + 1..],
            None => return false,
        }
    }
    parts.push(rest);
    glob_walk(&parts, host)
}

/// `parts[0]` must be a prefix of `host`, the last part its suffix, and each gap between
/// parts one or more host characters.
fn glob_walk(parts: &[&str], host: &str) -> bool {
    let host_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    match parts {
        [] => host.is_empty(),
        [last] => host == *last,
        [first, rest @ ..] => {
            let Some(after) = host.strip_prefix(first) else {
                return false;
            };
            (1..=after.len()).any(|n| {
                after.is_char_boundary(n)
                    && after[..n].chars().all(host_char)
                    && glob_walk(rest, &after[n..])
            })
        }
    }
}

/// The `host[:port]` of a whole-entry template value: a host name with an optional port, or
/// the host and port of an absolute `http(s)` URL; user info, IPv6 literals, a bad port or any
/// other character make it unusable.
fn authority_of(value: &str) -> Option<String> {
    let authority = match value.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http") =>
        {
            &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())]
        }
        Some(_) => return None,
        None => value,
    };
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|p| p != 0)
    });
    (host_ok && port_ok).then(|| authority.to_ascii_lowercase())
}

/// The host's HTTP client for provider traffic. Cheap to clone.
#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
    overrides: Arc<HashMap<String, Url>>,
    max_response: u64,
    http_loopback: bool,
    timeout: Duration,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("overrides", &self.overrides.keys().collect::<Vec<_>>())
            .field("max_response", &self.max_response)
            .finish_non_exhaustive()
    }
}

/// A provider response whose body has not been read yet.
#[derive(Debug)]
pub struct OpenResponse {
    /// The status.
    pub status: u16,
    /// The headers, hop-by-hop ones removed.
    pub headers: Vec<(String, String)>,
    body: Body,
    limit: u64,
    host: String,
}

/// Where an [`OpenResponse`]'s body comes from.
#[derive(Debug)]
enum Body {
    /// Still on the wire.
    Wire(reqwest::Response),
    /// Already read (a response looked at before it was relayed).
    Read(Bytes),
}

impl OpenResponse {
    /// A response whose body was already read, to be relayed like one still on the wire.
    pub fn buffered(response: HttpResponse) -> Self {
        Self {
            status: response.status,
            headers: response.headers,
            limit: u64::MAX,
            host: String::new(),
            body: Body::Read(Bytes::from(response.body)),
        }
    }

    /// The body as a stream of chunks, cut off with [`EgressError::TooLarge`] past the cap.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, EgressError>> {
        let limit = self.limit;
        let host = self.host;
        let mut seen: u64 = 0;
        let response = match self.body {
            Body::Read(bytes) => return futures_util::stream::once(async { Ok(bytes) }).boxed(),
            Body::Wire(response) => response,
        };
        response
            .bytes_stream()
            .map(move |chunk| {
                let chunk = chunk.map_err(|e| EgressError::Unreachable {
                    host: host.clone(),
                    reason: transport_reason(&e),
                })?;
                seen = seen.saturating_add(chunk.len() as u64);
                if seen > limit {
                    return Err(EgressError::TooLarge { limit });
                }
                Ok(chunk)
            })
            .boxed()
    }

    /// Reads the whole body (at most the cap).
    pub async fn into_response(self) -> Result<HttpResponse, EgressError> {
        let status = self.status;
        let headers = self.headers.clone();
        let mut body = Vec::new();
        let mut stream = Box::pin(self.into_stream());
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk?);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

impl Egress {
    /// A client with the configured timeouts, cap and overrides.
    pub fn new(config: &EgressConfig) -> Result<Self, EgressError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                EgressError::InvalidRequest(format!("cannot build the HTTP client: {e}"))
            })?;
        let mut overrides = HashMap::new();
        for (host, origin) in &config.overrides {
            let url = Url::parse(origin).map_err(|_| {
                EgressError::InvalidRequest(format!("egress override for {host} is not a URL"))
            })?;
            tracing::warn!(%host, %url, "egress override: traffic for this host goes elsewhere");
            overrides.insert(host.to_ascii_lowercase(), url);
        }
        if config.allow_http_loopback {
            tracing::warn!(
                "egress: plain http to loopback hosts is allowed (egress.allow_http_loopback)"
            );
        }
        Ok(Self {
            client,
            overrides: Arc::new(overrides),
            max_response: config.max_response_mib.saturating_mul(1 << 20),
            http_loopback: config.allow_http_loopback,
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }

    /// How long one exchange may take in total.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// [`check_url`] under this client's settings (plain `http` to loopback where allowed).
    pub fn check_url(
        &self,
        url: &str,
        allowed: &[String],
        params: &[(String, String)],
    ) -> Result<Url, EgressError> {
        check_url_with(url, allowed, params, self.http_loopback)
    }

    /// Sends `request` (after checking it against `allowed`) and returns the response with its
    /// body unread. A `3xx` is returned, never followed.
    pub async fn open(
        &self,
        request: &HttpRequest,
        allowed: &[String],
        params: &[(String, String)],
    ) -> Result<OpenResponse, EgressError> {
        let url = self.check_url(&request.url, allowed, params)?;
        self.send_checked(request, url).await
    }

    /// [`Self::open`] and read the whole body: for connect steps and refreshes.
    pub async fn exchange(
        &self,
        request: &HttpRequest,
        allowed: &[String],
        params: &[(String, String)],
    ) -> Result<HttpResponse, EgressError> {
        self.open(request, allowed, params)
            .await?
            .into_response()
            .await
    }

    async fn send_checked(
        &self,
        request: &HttpRequest,
        url: Url,
    ) -> Result<OpenResponse, EgressError> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| EgressError::InvalidRequest("the method is not a valid token".into()))?;
        let target = match self.overrides.get(&host) {
            Some(origin) => {
                let mut t = origin.clone();
                t.set_path(url.path());
                t.set_query(url.query());
                t
            }
            None => url,
        };
        let mut builder = self.client.request(method, target);
        for (name, value) in &request.headers {
            if is_hop_by_hop(name) {
                continue;
            }
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                EgressError::InvalidRequest(format!("header name {name:?} is not valid"))
            })?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                EgressError::InvalidRequest(format!("the value of header {name} is not valid"))
            })?;
            builder = builder.header(name, value);
        }
        builder = builder.header(reqwest::header::HOST, authority);
        if !request.body.is_empty() {
            builder = builder.body(request.body.clone());
        }
        let response = builder.send().await.map_err(|e| EgressError::Unreachable {
            host: host.clone(),
            reason: transport_reason(&e),
        })?;
        if response
            .content_length()
            .is_some_and(|n| n > self.max_response)
        {
            return Err(EgressError::TooLarge {
                limit: self.max_response,
            });
        }
        let headers = response
            .headers()
            .iter()
            .filter(|(n, _)| !is_hop_by_hop(n.as_str()))
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(OpenResponse {
            status: response.status().as_u16(),
            headers,
            body: Body::Wire(response),
            limit: self.max_response,
            host,
        })
    }
}

/// What failed in a transport error, without the URL (its query may hold a signature).
fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read".into()
    } else {
        "the exchange failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_host_could_match_templates_and_wildcards_but_not_a_whole_placeholder() {
        let could =
            |url: &str, list: &[&str]| host_could_match(&Url::parse(url).unwrap(), &allowed(list));
        assert!(could("https://api.stripe.com/v1/x", &["api.stripe.com"]));
        assert!(could("https://API.Stripe.com/", &["api.stripe.com"]));
        assert!(!could(
            "https://api.stripe.com.evil.io/",
            &["api.stripe.com"]
        ));
        assert!(could(
            "https://acme.myshopify.com/admin",
            &["{shop}.myshopify.com"]
        ));
        assert!(!could("https://myshopify.com/", &["{shop}.myshopify.com"]));
        assert!(!could(
            "https://acme.myshopify.com.evil.io/",
            &["{shop}.myshopify.com"]
        ));
        assert!(could("https://eu.api.example.com/", &["*.api.example.com"]));
        assert!(!could("https://api.example.com/", &["*.api.example.com"]));
        assert!(could(
            "https://a.b.example.com:8443/",
            &["{x}.example.com:8443"]
        ));
        assert!(!could("https://a.example.com:8443/", &["{x}.example.com"]));
        assert!(
            !could("https://idp.example.com/", &["{issuer}"]),
            "a whole placeholder says nothing about the provider"
        );
    }

    #[test]
    fn exact_wildcard_template_and_port_entries() {
        let list = allowed(&[
            "api.stripe.com",
            "*.amazonaws.com",
            "{shop}.myshopify.com",
            "x.example:8443",
        ]);
        let shop = vec![("shop".to_owned(), "acme".to_owned())];
        assert!(check_url("https://api.stripe.com/v1/x?y=1", &list, &[]).is_ok());
        assert!(check_url("https://API.Stripe.com/", &list, &[]).is_ok());
        assert!(check_url("https://sts.amazonaws.com/", &list, &[]).is_ok());
        assert!(check_url("https://acme.myshopify.com/admin", &list, &shop).is_ok());
        assert!(check_url("https://x.example:8443/", &list, &[]).is_ok());
        for (url, params) in [
            ("https://amazonaws.com/", &[][..]),
            ("https://evil.com/api.stripe.com", &[]),
            ("https://api.stripe.com.evil.com/", &[]),
            ("https://api.stripe.com:444/", &[]),
            ("https://x.example/", &[]),
            ("https://other.myshopify.com/", &shop[..]),
            ("https://acme.myshopify.com/", &[]),
        ] {
            assert!(
                matches!(
                    check_url(url, &list, params),
                    Err(EgressError::HostNotAllowed { .. })
                ),
                "{url}"
            );
        }
        let evil = vec![("shop".to_owned(), "evil.com/x".to_owned())];
        assert!(check_url("https://evil.com/x.myshopify.com", &list, &evil).is_err());
    }

    #[test]
    fn a_whole_entry_template_takes_a_urls_host_and_port() {
        let list = allowed(&["{api_host}", "{issuer}", "{shop}.myshopify.com"]);
        let params = vec![
            ("api_host".to_owned(), "api.example.com:8443".to_owned()),
            (
                "issuer".to_owned(),
                "https://IdP.example.com/realms/acme".to_owned(),
            ),
            ("shop".to_owned(), "https://evil.com".to_owned()),
        ];
        assert!(check_url("https://api.example.com:8443/v1", &list, &params).is_ok());
        assert!(check_url("https://idp.example.com/realms/acme/token", &list, &params).is_ok());
        for url in [
            "https://api.example.com/v1",
            "https://idp.example.com:8443/",
            "https://evil.com/",
            "https://evil.com.myshopify.com/",
        ] {
            assert!(
                matches!(
                    check_url(url, &list, &params),
                    Err(EgressError::HostNotAllowed { .. })
                ),
                "{url}"
            );
        }
        for bad in [
            "https://u@idp.example.com/",
            "ftp://idp.example.com",
            "idp.example.com:0",
        ] {
            let params = vec![("issuer".to_owned(), bad.to_owned())];
            assert!(
                check_url("https://idp.example.com/", &list, &params).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn plain_http_and_user_info_are_refused() {
        let list = allowed(&["api.stripe.com"]);
        for url in [
            "http://api.stripe.com/",
            "https://u:p@api.stripe.com/",
            "not a url",
        ] {
            assert!(
                matches!(
                    check_url(url, &list, &[]),
                    Err(EgressError::InvalidRequest(_))
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn plain_http_reaches_only_loopback_and_only_when_allowed() {
        let list = allowed(&["127.0.0.1:4444", "localhost:4444", "idp.example:4444"]);
        for url in ["http://127.0.0.1:4444/token", "http://localhost:4444/x"] {
            assert!(check_url_with(url, &list, &[], true).is_ok(), "{url}");
            assert!(
                matches!(
                    check_url_with(url, &list, &[], false),
                    Err(EgressError::InvalidRequest(_))
                ),
                "{url}"
            );
        }
        // Not loopback: https only, whatever the setting.
        assert!(matches!(
            check_url_with("http://idp.example:4444/", &list, &[], true),
            Err(EgressError::InvalidRequest(_))
        ));
        // Loopback but not on the allow-list (wrong port, and http's default port 80).
        for url in ["http://127.0.0.1:4445/", "http://127.0.0.1/"] {
            assert!(
                matches!(
                    check_url_with(url, &list, &[], true),
                    Err(EgressError::HostNotAllowed { .. })
                ),
                "{url}"
            );
        }
    }
    #[test]
    fn errors_never_show_the_query() {
        let list = allowed(&["api.stripe.com"]);
        let err = check_url("https://evil.com/?X-Amz-Signature=secret", &list, &[]).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
