//! A provider component whose `info()` never returns: loading it must fail within the call
//! deadline without hanging the host or its registry. Never ship this.

// The bindings generated from the WIT carry no docs and trip a clippy lint of their own.
#![allow(missing_docs, clippy::same_length_and_capacity)]

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "provider-component" });

use exports::tessera::provider::provider::{
    Classification, Context, Credential, Guest, HttpRequest, HttpResponse, Input, ProviderError,
    ProviderInfo, Step,
};

#[unsafe(link_section = "tessera:contract-version")]
#[used]
static CONTRACT_VERSION: [u8; 5] = *b"0.1.0";

struct HangInfo;

impl Guest for HangInfo {
    fn info() -> ProviderInfo {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn begin_connect(_ctx: Context) -> Step {
        Step::Fail(ProviderError::Unsupported(String::new()))
    }

    fn resume(_ctx: Context, _state: Vec<u8>, _input: Input) -> Step {
        Step::Fail(ProviderError::Unsupported(String::new()))
    }

    fn refresh(_ctx: Context, _credential: Credential) -> Step {
        Step::Fail(ProviderError::Unsupported(String::new()))
    }

    fn sign(
        request: HttpRequest,
        _credential: Credential,
        _now: u64,
    ) -> Result<HttpRequest, ProviderError> {
        Ok(request)
    }

    fn classify(_response: HttpResponse, _now: u64) -> Classification {
        Classification::Ok
    }

    fn revoke(_ctx: Context, _credential: Credential) -> Option<HttpRequest> {
        None
    }
}

export!(HangInfo);
