//! The egress allow-list: which hosts a provider may talk to and sign credentials for.
//!
//! Entries are exact host names (`api.github.com`), leading wildcards (`*.googleapis.com`,
//! matching subdomains only, never the bare domain), or templates over credential metadata
//! and connection parameters (`{shop}.myshopify.com`). An entry may name a port
//! (`host:8443`); without one, only the scheme's default port is allowed. An entry that is
//! one placeholder and nothing else (`{api_host}`, `{issuer}`) may also take a value with a
//! port (`127.0.0.1:8443`) or an absolute `http(s)` URL, of which the host and port count
//! (`https://idp.example.com/realms/acme` gives `idp.example.com`), so a provider configured
//! with URLs (a generic `OpenID` Connect issuer) can allow exactly their hosts. Signing is
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
/// not made of host characters (`A-Z a-z 0-9 - .`), makes the entry unusable (`None`). An
/// entry that is a single placeholder also takes `host:port` or an absolute `http(s)` URL
/// (see [`authority_of`]).
pub fn fill_template(entry: &str, params: &[(String, String)]) -> Option<String> {
    if let Some(name) = entry
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|name| !name.contains(['{', '}']))
    {
        let value = params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())?;
        return authority_of(value);
    }
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

/// The `host[:port]` a whole-entry template value stands for: the value itself when it is a
/// host name with an optional port, or the host and port of an absolute `http(s)` URL. User
/// info, IPv6 literals, an empty or zero port, or any other character make it `None`.
pub fn authority_of(value: &str) -> Option<String> {
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

/// Whether `host` (lower case, IPv6 in brackets) names the loopback interface literally:
/// `localhost`, `127.0.0.0/8` or `[::1]`.
pub fn is_loopback(host: &str) -> bool {
    if host == "localhost" || host == "[::1]" {
        return true;
    }
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets[0] == "127"
        && octets
            .iter()
            .all(|o| !o.is_empty() && o.len() <= 3 && o.parse::<u8>().is_ok())
}

/// Parses `url` and checks it is `https` and inside `allowed`; the error names only the host.
/// Plain `http` passes only to a loopback host (`127.0.0.1`, `localhost`, `[::1]`): such a
/// request never leaves the machine (test servers), and the host's egress still refuses it
/// unless the operator allowed loopback `http`.
pub fn check_url<'a, S: AsRef<str>>(
    url: &'a str,
    allowed: &[S],
    params: &[(String, String)],
) -> Result<Url<'a>, ProviderError> {
    let parsed = parse_url(url)?;
    let loopback_http = parsed.scheme == "http" && is_loopback(&parsed.host);
    if parsed.scheme != "https" && !loopback_http {
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
    fn a_whole_entry_template_takes_a_port_or_a_urls_host_and_port() {
        let allowed = ["{api_host}", "{issuer}"];
        let params = meta(&[
            ("api_host", "127.0.0.1:8443"),
            ("issuer", "https://IdP.example.com/realms/acme"),
        ]);
        assert!(host_allowed("127.0.0.1", 8443, 443, &allowed, &params));
        assert!(!host_allowed("127.0.0.1", 443, 443, &allowed, &params));
        assert!(host_allowed("idp.example.com", 443, 443, &allowed, &params));
        assert!(!host_allowed(
            "idp.example.com",
            8443,
            443,
            &allowed,
            &params
        ));
        let loopback = meta(&[("issuer", "http://127.0.0.1:39001")]);
        assert!(host_allowed(
            "127.0.0.1",
            39001,
            443,
            &["{issuer}"],
            &loopback
        ));
        for bad in [
            "https://user@idp.example.com/",
            "ftp://idp.example.com/",
            "https://[::1]:8443/",
            "idp.example.com:",
            "idp.example.com:0",
            "idp.example.com:99999",
            "idp.example.com:1:2",
            "https://",
            "idp.example.com/x",
        ] {
            assert_eq!(authority_of(bad), None, "{bad}");
            let params = meta(&[("issuer", bad)]);
            assert_eq!(fill_template("{issuer}", &params), None, "{bad}");
        }
        // Inside a longer entry a value is still a bare host label, never a URL or a port.
        let shop = meta(&[("shop", "https://acme")]);
        assert_eq!(fill_template("{shop}.myshopify.com", &shop), None);
        let shop = meta(&[("shop", "acme:8443")]);
        assert_eq!(fill_template("{shop}.myshopify.com", &shop), None);
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

    #[test]
    fn plain_http_is_signed_only_for_an_allowed_loopback_host() {
        let allowed = ["{api_host}"];
        let params = meta(&[("api_host", "127.0.0.1:39001")]);
        assert!(check_url("http://127.0.0.1:39001/me", &allowed, &params).is_ok());
        for url in [
            "http://127.0.0.1:39002/me",
            "http://127.0.0.1/me",
            "http://127.0.0.1.evil.example:39001/me",
        ] {
            assert!(
                matches!(
                    check_url(url, &allowed, &params),
                    Err(ProviderError::HostNotAllowed(_))
                ),
                "{url}"
            );
        }
        let public = meta(&[("api_host", "api.example.com")]);
        assert!(matches!(
            check_url("http://api.example.com/", &allowed, &public),
            Err(ProviderError::HostNotAllowed(_))
        ));
        assert!(is_loopback("127.10.0.1") && is_loopback("[::1]") && is_loopback("localhost"));
        assert!(!is_loopback("127.0.0.1.nip.io") && !is_loopback("128.0.0.1"));
    }
}
