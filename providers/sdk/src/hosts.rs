//! The egress allow-list: which hosts a provider may talk to and sign credentials for.
//!
//! Entries are exact host names (`api.github.com`), leading wildcards (`*.googleapis.com`,
//! matching subdomains only, never the bare domain), or templates over credential metadata
//! and connection parameters (`{shop}.myshopify.com`). An entry may name a port
//! (`host:8443`); without one, only the scheme's default port is allowed. Signing is
//! `https` only: a credential is never attached to a plain-text request.

use crate::ProviderError;
use crate::http::{Url, parse_url};

/// Whether `host` (already lower-case, as [`parse_url`] returns it) on `port` matches one of
/// `allowed`, with templates filled from `params`.
pub fn host_allowed<S: AsRef<str>>(
    host: &str,
    port: u16,
    default_port: u16,
    allowed: &[S],
    params: &[(String, String)],
) -> bool {
    allowed.iter().any(|entry| {
        let Some(entry) = fill_template(entry.as_ref(), params) else {
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
    if host.starts_with('[') {
        return pattern == host;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty()),
        None => pattern == host,
    }
}

/// Fills `{name}` placeholders from `params`. A placeholder without a value, or a value that is
/// not made of host characters (`A-Z a-z 0-9 - .`), makes the entry unusable (`None`).
pub fn fill_template(entry: &str, params: &[(String, String)]) -> Option<String> {
    let mut out = String::with_capacity(entry.len());
    let mut rest = entry;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}')?;
        let name = &after[..end];
        let value = params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())?;
        let value_ok = !value.is_empty()
            && !value.starts_with('.')
            && !value.ends_with('.')
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !value_ok {
            return None;
        }
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Parses `url` and checks it is `https` and inside `allowed`; the error names only the host.
pub fn check_url<'a, S: AsRef<str>>(
    url: &'a str,
    allowed: &[S],
    params: &[(String, String)],
) -> Result<Url<'a>, ProviderError> {
    let parsed = parse_url(url)?;
    if parsed.scheme != "https" {
        return Err(ProviderError::HostNotAllowed(format!(
            "{}: credentials are only attached to https requests",
            parsed.host
        )));
    }
    if host_allowed(&parsed.host, parsed.effective_port(), 443, allowed, params) {
        Ok(parsed)
    } else {
        Err(ProviderError::HostNotAllowed(format!(
            "{} is not in this provider's allowed hosts",
            parsed.host
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        crate::http::owned_pairs(pairs)
    }

    #[test]
    fn exact_and_wildcard_entries() {
        let allowed = ["api.github.com", "*.googleapis.com"];
        let ok = |h: &str| host_allowed(h, 443, 443, &allowed, &[]);
        assert!(ok("api.github.com"));
        assert!(!ok("github.com"));
        assert!(!ok("xapi.github.com"));
        assert!(ok("gmail.googleapis.com"));
        assert!(ok("a.b.googleapis.com"));
        assert!(!ok("googleapis.com"), "a wildcard matches subdomains only");
        assert!(!ok("evilgoogleapis.com"));
        assert!(!ok(".googleapis.com"));
        assert!(!host_allowed("api.github.com", 8443, 443, &allowed, &[]));
        assert!(host_allowed(
            "api.github.com",
            8443,
            443,
            &["api.github.com:8443"],
            &[]
        ));
    }

    #[test]
    fn templates_fill_from_metadata_and_refuse_odd_values() {
        let allowed = ["{shop}.myshopify.com"];
        assert!(host_allowed(
            "acme.myshopify.com",
            443,
            443,
            &allowed,
            &meta(&[("shop", "acme")])
        ));
        assert!(!host_allowed("acme.myshopify.com", 443, 443, &allowed, &[]));
        assert!(!host_allowed(
            "evil.com",
            443,
            443,
            &allowed,
            &meta(&[("shop", "evil.com/")])
        ));
        assert_eq!(fill_template("{a", &[]), None);
    }

    #[test]
    fn check_url_requires_https_and_an_allowed_host() {
        let allowed = ["api.stripe.com"];
        assert!(check_url("https://api.stripe.com/v1/charges", &allowed, &[]).is_ok());
        assert!(matches!(
            check_url("http://api.stripe.com/v1/charges", &allowed, &[]),
            Err(ProviderError::HostNotAllowed(_))
        ));
        assert!(matches!(
            check_url("https://evil.example/v1", &allowed, &[]),
            Err(ProviderError::HostNotAllowed(_))
        ));
        assert!(matches!(
            check_url("https://api.stripe.com@evil.example/", &allowed, &[]),
            Err(ProviderError::InvalidInput(_))
        ));
    }
}
