//! A deliberately hostile provider component for the host's sandbox tests.
//!
//! It implements the contract, but `sign` picks a misbehaviour from the request URL's path:
//! `/loop`, `/grow`, `/recurse`, `/huge`, `/panic`, `/file`, `/env`, `/socket`, `/clock`, and
//! `/ok` (a normal Bearer sign). Attempts to reach host resources report what they got in
//! response headers, so a test can assert that they got nothing. Never ship this.

// The bindings generated from the WIT carry no docs and trip a clippy lint of their own.
#![allow(missing_docs, clippy::same_length_and_capacity)]
#![allow(clippy::missing_panics_doc)]

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "provider-component" });

use exports::tessera::provider::provider::{
    AuthKind, Classification, Context, Credential, Guest, HttpRequest, HttpResponse, Input,
    ProviderError, ProviderInfo, Step,
};
use std::hint::black_box;

/// The contract version, stamped the way the provider SDK does it.
#[unsafe(link_section = "tessera:contract-version")]
#[used]
static CONTRACT_VERSION: [u8; 5] = *b"0.1.0";

struct Hostile;

fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split('?').next().unwrap_or(path)
}

fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn grow_forever() -> usize {
    // Grows linear memory 1 MiB at a time without touching it, so the test measures the
    // memory limit, not how fast the machine can fault pages in.
    let mut grown = 0usize;
    loop {
        if core::arch::wasm32::memory_grow(0, 16) == usize::MAX {
            return grown;
        }
        grown += 1;
        black_box(grown);
    }
}

/// Recursion with scalar locals only, so it exhausts the wasm stack itself rather than the
/// shadow stack Rust keeps in linear memory.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(black_box(depth))
}

fn describe<T, E: std::fmt::Display>(r: Result<T, E>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => format!("ok:{}", ok(v)),
        Err(e) => format!("err:{e}"),
    }
}

fn misbehave(mut request: HttpRequest, credential: &Credential) -> HttpRequest {
    let path = path_of(&request.url).to_owned();
    let mut add = |name: &str, value: String| request.headers.push((name.to_owned(), value));
    match path.as_str() {
        "/loop" => spin_forever(),
        "/print" => {
            // Tries to leak the credential through the host's log.
            for (name, value) in &credential.secrets {
                println!("stdout leak {name}={value}");
                eprintln!("stderr leak {name}={value}");
            }
            add("x-printed", "yes".to_owned());
        }
        "/grow" => add("x-grown", grow_forever().to_string()),
        "/recurse" => add("x-depth", recurse(0).to_string()),
        "/huge" => add("x-huge", "a".repeat(16 << 20)),
        "/panic" => panic!("hostile component panicked on purpose"),
        "/file" => {
            add(
                "x-file",
                describe(std::fs::read_to_string("/etc/passwd"), |s| s),
            );
            add(
                "x-dir",
                describe(std::fs::read_dir("/"), |d| d.count().to_string()),
            );
        }
        "/env" => {
            for name in ["HOME", "PATH", "USER"] {
                add(
                    &format!("x-env-{name}"),
                    describe(std::env::var(name), |s| s),
                );
            }
            let all: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            add("x-env-all", all.join(";"));
            add("x-args", std::env::args().collect::<Vec<_>>().join(" "));
        }
        "/socket" => {
            let port = query_param(&request.url, "port").unwrap_or("80").to_owned();
            let tcp = std::net::TcpStream::connect(format!("127.0.0.1:{port}"));
            add("x-tcp", describe(tcp, |_| "connected".to_owned()));
            let udp = std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.send_to(b"hi", format!("127.0.0.1:{port}")));
            add("x-udp", describe(udp, |n| n.to_string()));
            let dns = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80));
            add(
                "x-dns",
                describe(dns, |a| {
                    a.map(|a| a.to_string()).collect::<Vec<_>>().join(",")
                }),
            );
        }
        "/clock" => {
            let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            add(
                "x-clock",
                describe(wall, |d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos())),
            );
            let start = std::time::Instant::now();
            black_box(recurse_bounded(1000));
            add("x-elapsed-nanos", start.elapsed().as_nanos().to_string());
        }
        _ => {
            let token = credential
                .secrets
                .iter()
                .find(|(k, _)| k == "access_token")
                .map_or("", |(_, v)| v.as_str());
            add("authorization", format!("Bearer {token}"));
        }
    }
    request
}

fn recurse_bounded(n: u64) -> u64 {
    (0..n).fold(0, |a, b| black_box(a ^ b))
}

impl Guest for Hostile {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "hostile".into(),
            display_name: "Hostile test component".into(),
            version: "0.1.0".into(),
            categories: vec!["testing".into()],
            auth_kind: AuthKind::ManagedSecret,
            default_scopes: Vec::new(),
            scope_separator: " ".into(),
            scopes: Vec::new(),
            allowed_hosts: vec!["hostile.test".into()],
            secret_fields: Vec::new(),
            connection_params: Vec::new(),
            pkce: false,
            supports_refresh: false,
            supports_revoke: false,
            logo_url: None,
            docs_url: None,
        }
    }

    fn begin_connect(_ctx: Context) -> Step {
        Step::Fail(ProviderError::Unsupported("hostile".into()))
    }

    fn resume(_ctx: Context, _state: Vec<u8>, _input: Input) -> Step {
        Step::Fail(ProviderError::Unsupported("hostile".into()))
    }

    fn refresh(_ctx: Context, _credential: Credential) -> Step {
        Step::Fail(ProviderError::Unsupported("hostile".into()))
    }

    fn sign(
        request: HttpRequest,
        credential: Credential,
        _now: u64,
    ) -> Result<HttpRequest, ProviderError> {
        Ok(misbehave(request, &credential))
    }

    fn classify(response: HttpResponse, _now: u64) -> Classification {
        eprintln!("hostile classify saw status {}", response.status);
        if response.status == 401 {
            Classification::Unauthorized
        } else {
            Classification::Ok
        }
    }

    fn revoke(_ctx: Context, _credential: Credential) -> Option<HttpRequest> {
        None
    }
}

export!(Hostile);
