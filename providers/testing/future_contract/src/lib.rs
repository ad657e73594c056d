//! A provider component built against a future contract, `tessera:provider@9.0.0`, which the
//! host does not support: loading it must be refused before compilation. Never ship this.

// The bindings generated from the WIT carry no docs and trip a clippy lint of their own.
#![allow(missing_docs, clippy::same_length_and_capacity)]

wit_bindgen::generate!({ path: "wit", world: "provider-component" });

use exports::tessera::provider::provider::{
    AuthKind, Classification, Context, Credential, Guest, HttpRequest, HttpResponse, Input,
    ProviderError, ProviderInfo, Step,
};

#[unsafe(link_section = "tessera:contract-version")]
#[used]
static CONTRACT_VERSION: [u8; 5] = *b"9.0.0";

struct Future;

impl Guest for Future {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "future-contract".into(),
            display_name: "Future contract".into(),
            version: "9.0.0".into(),
            categories: Vec::new(),
            auth_kind: AuthKind::ManagedSecret,
            default_scopes: Vec::new(),
            scope_separator: " ".into(),
            scopes: Vec::new(),
            allowed_hosts: Vec::new(),
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

export!(Future);
