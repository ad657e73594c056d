//! Helpers for provider crates' native unit tests (feature `testkit`): a filled-in
//! [`Context`], responses, and step unpacking that panics with the step it got. Test code only:
//! these helpers panic by design, so no component build enables this module.

#![allow(clippy::panic, clippy::missing_panics_doc)]

use crate::http::{form_decode, owned_pairs};
use crate::{
    Connected, Context, Credential, HttpRequest, HttpResponse, Input, Outgoing, ProviderError,
    RedirectTo, Step,
};

/// A context with client `client-1` / secret `s3cret`, redirect
/// `https://tessera.example/oauth/callback`, state `st-123`, entropy `[7; 32]`, now `1_000`.
pub fn context() -> Context {
    Context {
        client_id: "client-1".into(),
        client_secret: Some("s3cret".into()),
        redirect_uri: "https://tessera.example/oauth/callback".into(),
        scopes: Vec::new(),
        connection_params: Vec::new(),
        secret_fields: Vec::new(),
        extra_params: Vec::new(),
        state: "st-123".into(),
        entropy: vec![7; 32],
        now: 1_000,
    }
}

/// A context carrying managed-secret field values.
pub fn secret_context(fields: &[(&str, &str)]) -> Context {
    Context {
        client_id: String::new(),
        client_secret: None,
        secret_fields: owned_pairs(fields),
        ..context()
    }
}

/// A response with the given status, headers and body.
pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: owned_pairs(headers),
        body: body.as_bytes().to_vec(),
    }
}

/// An `input::http-response` with a JSON body.
pub fn json_input(status: u16, body: &str) -> Input {
    Input::HttpResponse(response(
        status,
        &[("Content-Type", "application/json")],
        body,
    ))
}

/// An `input::callback` with the given query parameters.
pub fn callback(pairs: &[(&str, &str)]) -> Input {
    Input::Callback(owned_pairs(pairs))
}

/// A credential with the given secrets and metadata, no scopes, no expiry.
pub fn credential(secrets: &[(&str, &str)], metadata: &[(&str, &str)]) -> Credential {
    Credential {
        secrets: owned_pairs(secrets),
        metadata: owned_pairs(metadata),
        scopes: Vec::new(),
        expires_at: None,
    }
}

/// A bodiless request.
pub fn request(method: &str, url: &str) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        url: url.into(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// The query parameters of `url`.
pub fn query(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .map(|(_, q)| form_decode(q.as_bytes()))
        .unwrap_or_default()
}

/// Unpacks a `redirect` step.
pub fn expect_redirect(step: Step) -> RedirectTo {
    match step {
        Step::Redirect(r) => r,
        other => panic!("expected a redirect step, got {other:?}"),
    }
}

/// Unpacks a `send` step.
pub fn expect_send(step: Step) -> Outgoing {
    match step {
        Step::Send(o) => o,
        other => panic!("expected a send step, got {other:?}"),
    }
}

/// Unpacks a `done` step.
pub fn expect_done(step: Step) -> Connected {
    match step {
        Step::Done(c) => c,
        other => panic!("expected a done step, got {other:?}"),
    }
}

/// Unpacks a `fail` step.
pub fn expect_fail(step: Step) -> ProviderError {
    match step {
        Step::Fail(e) => e,
        other => panic!("expected a fail step, got {other:?}"),
    }
}
