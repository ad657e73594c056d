//! [`Caller`]: the extractor that authenticates an API request. It reads the body (at most
//! [`MAX_BODY_BYTES`]), rebuilds the target URI from the configured public origin, verifies
//! the signature with the database key resolver and nonce store, records the key's use, and
//! hands the handler who signed plus the verified body and the client's address
//! ([`client_ip`]).
//!
//! Must never: build the target URI from `Host` or `X-Forwarded-*` headers, believe
//! `X-Forwarded-For` from a peer that is not a configured trusted proxy, hand a handler a
//! request whose signature did not verify, or log the signature headers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRef, FromRequest, Request};
use axum::http::{HeaderMap, header, request};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use ipnet::IpNet;
use tessera_proto::calls::{AGENT_HEADER, CALLER_HEADER, CONSTRAINTS_HEADER};
use tessera_proto::scopes::Scope;
use tessera_proto::signing::KeyKind;
use tessera_proto::whoami::Whoami;

use super::{ApiError, ApiState};
use crate::auth::{self, KeyPrincipal, SignedRequest};

/// The largest request body the API reads, in bytes (1 MiB); larger is `413 body_too_large`.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The scopes of a route any valid key may call.
pub const ANY_KEY: &[Scope] = &[];

/// A request whose signature verified: who signed it and the body it covered.
#[derive(Debug)]
pub struct Caller {
    /// The key, its app (and agent) and its **effective** Tessera scopes: the key's scopes,
    /// narrowed by the request's `tessera-constraints` header when it carries one.
    pub principal: KeyPrincipal,
    /// The request body, exactly the bytes the `Content-Digest` covered.
    pub body: Bytes,
    /// The caller name the SDK declared (`tessera-caller`), for attribution.
    pub caller: Option<String>,
    /// Whether an app key acts as one of its agents (`tessera-agent`): `principal.agent_id`
    /// is then that agent, and `principal.key_id` still the app key.
    pub impersonating: bool,
    /// The address of the client that sent the request (see [`client_ip`]): the TCP peer, or
    /// — when the peer is a configured trusted proxy — the rightmost untrusted
    /// `X-Forwarded-For` address. `0.0.0.0` (unspecified) when the connection's address is
    /// unknown, which only happens when a router is called without
    /// `into_make_service_with_connect_info` (unit tests); `tessera serve` always has it.
    pub client_ip: IpAddr,
    /// The grant epoch as of this request's nonce transaction (SQLite; `0`: none): a call
    /// may use grants kept at it (`Grants::find_usable_at`).
    pub grant_epoch: i64,
}

impl Caller {
    /// Refuses with `403 insufficient_scope` (naming what is missing) unless the key holds
    /// every scope in `needed`. The first line of every handler.
    pub fn require(&self, needed: &[Scope]) -> Result<(), ApiError> {
        let mut missing: Vec<Scope> = needed
            .iter()
            .copied()
            .filter(|s| !self.principal.scopes.contains(s))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        Err(ApiError::InsufficientScope { missing })
    }

    /// The app of an app key; an agent key (or an app key acting as an agent) is refused
    /// with `403 app_key_required`: for routes that administer the app itself.
    pub fn require_app_key(&self) -> Result<crate::store::AppId, ApiError> {
        if self.principal.agent_id.is_some() {
            return Err(crate::policy::PolicyError::AppKeyRequired.into());
        }
        Ok(self.principal.app_id)
    }

    /// What `GET /v1/whoami` answers for this caller.
    pub fn whoami(&self) -> Whoami {
        let p = &self.principal;
        Whoami {
            app_id: p.app_id.to_string(),
            key_id: p.key_id.to_string(),
            kind: p.kind.as_str().to_owned(),
            agent_id: p.agent_id.map(|a| a.to_string()),
            scopes: p.scopes.clone(),
        }
    }
}

impl<S> FromRequest<S> for Caller
where
    ApiState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let api = ApiState::from_ref(state);
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(ApiError::BodyTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        let body = read_body(body, MAX_BODY_BYTES).await?;
        let target_uri = auth::target_uri(&api.public_origin, &parts.uri);
        let signed = SignedRequest::from_parts(&parts, &target_uri, &body);
        let verified = auth::verify(&signed, &api.keys, &api.nonces, auth::unix_now()).await?;
        // Read only now that the nonce is committed, so not older than what its transaction saw.
        let grant_epoch = api.grants.epoch_seen();
        // `last_used_at` is informational: failing to record it must not fail a request
        // that is already authenticated.
        if let Err(e) = api.apps.record_key_use(&verified.key_id).await {
            tracing::warn!(key_id = %verified.key_id, error = %e, "cannot record API key use");
        }
        let mut principal = verified.principal;
        if let Some(value) = header_text(&parts.headers, CONSTRAINTS_HEADER)? {
            let wanted = Scope::parse_list(&value).map_err(|e| {
                ApiError::InvalidRequest(format!(
                    "{CONSTRAINTS_HEADER} names an unknown scope {:?}",
                    e.name
                ))
            })?;
            // Intersection: a constraint can only take scopes away, never add one.
            principal.scopes.retain(|s| wanted.contains(s));
        }
        let caller = header_text(&parts.headers, CALLER_HEADER)?
            .map(|c| c.chars().take(MAX_CALLER_LEN).collect());
        let impersonating = match header_text(&parts.headers, AGENT_HEADER)? {
            Some(agent) => {
                principal.agent_id = Some(act_as(&api, &principal, &agent).await?);
                true
            }
            None => false,
        };
        Ok(Self {
            principal,
            body,
            caller,
            impersonating,
            client_ip: request_client_ip(&parts, &api.trusted_proxies),
            grant_epoch,
        })
    }
}

/// The header trusted proxies append the address they received a request from to.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The address of the client that made a request whose TCP peer is `peer`.
///
/// `peer` itself, unless it is within `trusted` (the configured reverse proxies). Then the
/// `X-Forwarded-For` entries (every occurrence of the header, in order, comma-separated) are
/// walked from the right — each trusted proxy appends the address it received the request
/// from, so the right end is the part trusted proxies wrote and the left end is whatever the
/// client sent — skipping addresses that are themselves trusted proxies; the first that is
/// not is the client. If every entry is a trusted address, the leftmost is the client (a
/// client inside the proxies' own network). If the header is missing, or the walk reaches an
/// entry that is not an address (`unknown`, a host name, non-ASCII bytes), the peer is the
/// answer: nothing left of a bad entry can be attributed to a trusted proxy.
///
/// Entries may carry a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`) or IPv6 brackets; empty
/// list items are ignored. IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, what a dual-stack
/// listener reports for an IPv4 peer) are compared and returned as IPv4. The RFC 7239
/// `Forwarded` header is not read: believing it as well would let a client spoof its address
/// through whichever of the two headers the operator's proxy passes on unchanged.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut leftmost = None;
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        for hop in text.rsplit(',').map(str::trim).filter(|h| !h.is_empty()) {
            let Some(ip) = parse_hop(hop) else {
                return peer;
            };
            if !is_trusted(ip, trusted) {
                return ip;
            }
            leftmost = Some(ip);
        }
    }
    leftmost.unwrap_or(peer)
}

/// [`client_ip`] of a request, with the peer from the connection info `tessera serve`
/// attaches; unspecified (and no header believed) when there is none.
fn request_client_ip(parts: &request::Parts, trusted: &[IpNet]) -> IpAddr {
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => client_ip(peer.ip(), &parts.headers, trusted),
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// One `X-Forwarded-For` entry: an address, optionally with a port or IPv6 brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// The agent an app key asks to act as (`tessera-agent`): an enabled agent of its own app.
async fn act_as(
    api: &ApiState,
    principal: &KeyPrincipal,
    agent: &str,
) -> Result<crate::store::AgentId, ApiError> {
    if principal.kind != KeyKind::App {
        return Err(ApiError::InvalidRequest(format!(
            "{AGENT_HEADER}: only an app key may act as one of its agents"
        )));
    }
    let not_found = || {
        ApiError::Agent(crate::agents::AgentError::NotFound {
            id: agent.to_owned(),
        })
    };
    let id = agent.parse().map_err(|_| not_found())?;
    let found = crate::store::agents::get(api.apps.store(), principal.app_id, id)
        .await
        .map_err(|e| ApiError::Agent(e.into()))?
        .ok_or_else(not_found)?;
    if found.disabled_at.is_some() {
        return Err(ApiError::InvalidRequest(format!(
            "{AGENT_HEADER}: agent {agent} is disabled"
        )));
    }
    Ok(found.id)
}

/// The longest caller name kept (longer ones are cut).
const MAX_CALLER_LEN: usize = 128;

/// A header's value as text, if present; refuses one that is not visible ASCII.
fn header_text(
    headers: &axum::http::HeaderMap,
    name: &'static str,
) -> Result<Option<String>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|_| ApiError::InvalidRequest(format!("{name} is not visible ASCII"))),
    }
}

/// Reads `body`, refusing more than `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::BodyTooLarge { limit })
        }
        Err(_) => Err(ApiError::BodyUnreadable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::signing::{KeyId, KeyKind};

    fn caller(scopes: Vec<Scope>) -> Caller {
        Caller {
            principal: KeyPrincipal {
                key_id: KeyId::parse("0123456789abcdef").unwrap(),
                app_id: crate::store::AppId::new(),
                kind: KeyKind::App,
                agent_id: None,
                scopes,
            },
            body: Bytes::new(),
            caller: None,
            impersonating: false,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            grant_epoch: 0,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|n| crate::config::parse_trusted_proxy(n).unwrap())
            .collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(X_FORWARDED_FOR, v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let spoofed = xff(&["10.0.0.1, 198.51.100.9"]);
        assert_eq!(
            client_ip(ip("203.0.113.5"), &spoofed, &nets(&["10.0.0.0/8"])),
            ip("203.0.113.5")
        );
        // With no trusted proxy configured (the default), even a loopback peer is not one.
        assert_eq!(client_ip(ip("127.0.0.1"), &spoofed, &[]), ip("127.0.0.1"));
    }

    #[test]
    fn a_trusted_peer_yields_the_rightmost_untrusted_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client prepended a fake address; the proxy appended the real one.
        let headers = xff(&["1.2.3.4, 203.0.113.5"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_skipped_across_header_lines() {
        let trusted = nets(&["10.0.0.0/8", "192.168.1.1", "2001:db8:ffff::/48"]);
        // Two header lines form one list, in order: 1.2.3.4, 203.0.113.5, 192.168.1.1,
        // 2001:db8:ffff::2, 10.9.9.9.
        let headers = xff(&[
            "1.2.3.4,203.0.113.5",
            " 192.168.1.1 , 2001:db8:ffff::2,,10.9.9.9",
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            ip("203.0.113.5")
        );
        // Every entry trusted: the leftmost is a client inside the proxies' network.
        let inside = xff(&["10.1.1.1, 10.2.2.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &inside, &trusted), ip("10.1.1.1"));
    }

    #[test]
    fn a_missing_or_malformed_forwarding_header_leaves_the_peer() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
        assert_eq!(client_ip(peer, &xff(&[" , "]), &trusted), peer);
        for bad in [
            "unknown",
            "203.0.113.5, proxy.internal",
            "203.0.113.5/24",
            "1.2.3",
        ] {
            assert_eq!(client_ip(peer, &xff(&[bad]), &trusted), peer, "{bad}");
        }
        // A bad entry behind (to the right of) a trusted hop also stops the walk.
        let behind = xff(&["203.0.113.5, garbage, 10.0.0.2"]);
        assert_eq!(client_ip(peer, &behind, &trusted), peer);
        // Bytes that are not visible ASCII.
        let mut opaque = HeaderMap::new();
        opaque.append(
            X_FORWARDED_FOR,
            axum::http::HeaderValue::from_bytes(b"203.0.113.\xff").unwrap(),
        );
        assert_eq!(client_ip(peer, &opaque, &trusted), peer);
        // Garbage the client put to the left of the real address is never reached.
        let left = xff(&["garbage, 203.0.113.5"]);
        assert_eq!(client_ip(peer, &left, &trusted), ip("203.0.113.5"));
    }

    #[test]
    fn ipv6_ports_brackets_and_mapped_addresses_are_understood() {
        let trusted = nets(&["::1", "2001:db8::/32", "10.0.0.0/8"]);
        let headers = xff(&["[2001:db9::7]:4711, [2001:db8::2]"]);
        assert_eq!(client_ip(ip("::1"), &headers, &trusted), ip("2001:db9::7"));
        let v4_port = xff(&["198.51.100.9:5555"]);
        assert_eq!(
            client_ip(ip("2001:db8::1"), &v4_port, &trusted),
            ip("198.51.100.9")
        );
        // A dual-stack listener reports an IPv4 proxy as ::ffff:10.0.0.1: still trusted.
        let mapped = xff(&["::ffff:198.51.100.9"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &mapped, &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.5"), &HeaderMap::new(), &trusted),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn the_peer_comes_from_the_connection_info() {
        let trusted = nets(&["10.0.0.0/8"]);
        let request = |peer: Option<&str>| {
            let mut request = axum::http::Request::builder()
                .header(X_FORWARDED_FOR, "203.0.113.5")
                .body(())
                .unwrap();
            if let Some(peer) = peer {
                let addr: SocketAddr = peer.parse().unwrap();
                request.extensions_mut().insert(ConnectInfo(addr));
            }
            request.into_parts().0
        };
        assert_eq!(
            request_client_ip(&request(Some("198.51.100.1:40000")), &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            request_client_ip(&request(Some("10.0.0.1:40000")), &trusted),
            ip("203.0.113.5")
        );
        // No connection info: unspecified, and the header is not believed even if 0.0.0.0
        // were in a trusted range.
        assert_eq!(
            request_client_ip(&request(None), &nets(&["0.0.0.0/0"])),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn require_names_exactly_the_missing_scopes() {
        let c = caller(vec![Scope::ProxyExecute]);
        assert!(c.require(ANY_KEY).is_ok());
        assert!(c.require(&[Scope::ProxyExecute]).is_ok());
        match c.require(&[Scope::AuditRead, Scope::ProxyExecute, Scope::GrantsRead]) {
            Err(ApiError::InsufficientScope { missing }) => {
                assert_eq!(missing, vec![Scope::GrantsRead, Scope::AuditRead]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_body_too_large() {
        let ok = read_body(Body::from(vec![0u8; 16]), 16).await.unwrap();
        assert_eq!(ok.len(), 16);
        let err = read_body(Body::from(vec![0u8; 17]), 16).await.unwrap_err();
        assert_eq!(err.code(), "body_too_large");
        assert_eq!(err.status().as_u16(), 413);
    }
}
