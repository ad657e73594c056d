//! The authoring kit for Tessera provider components.
//!
//! A provider is a WebAssembly component implementing the `tessera:provider` contract
//! (`wit/0.1.0/provider.wit`). This crate owns the guest side of that contract:
//!
//! - [`bindings`]: the types and the export glue generated from the WIT, re-exported here
//!   ([`HttpRequest`], [`Step`], [`ProviderError`], ...);
//! - [`Provider`]: the contract as a Rust trait, and [`export_provider!`], which exports a
//!   `Provider` as the component's implementation and stamps [`CONTRACT_VERSION`] into the
//!   module;
//! - [`oauth2`]: a declarative OAuth 2 provider ([`OAuth2`] spec + [`OAuth2Provider`] trait +
//!   [`OAuth2Adapter`]), so a typical provider crate is data;
//! - [`http`], [`hosts`], [`classify`], [`pkce`]: the small helpers every provider needs
//!   (URL and form handling, headers, the egress allow-list, response classification, PKCE).
//!
//! Components are sans-IO: nothing here touches the network, a clock, files or randomness.
//! Time and entropy arrive in the [`Context`]; HTTP exchanges leave as [`Step::Send`]. Nothing
//! here may panic on input a user, an operator or an upstream service controls.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

extern crate self as tessera_provider_sdk;

#[cfg(all(target_arch = "wasm32", feature = "arena"))]
mod arena;
pub mod classify;
pub mod hosts;
pub mod http;
pub mod oauth2;
pub mod pkce;
#[cfg(feature = "testkit")]
pub mod testkit;

use core::marker::PhantomData;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Bindings generated from the WIT contract (`wit/0.1.0`), plus the raw export macro.
///
/// Provider authors use the re-exports at the crate root and [`export_provider!`] instead.
#[allow(missing_docs, clippy::pedantic)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/0.1.0",
        world: "provider-component",
        pub_export_macro: true,
        export_macro_name: "__export_provider_component",
        default_bindings_module: "tessera_provider_sdk::bindings",
        runtime_path: "tessera_provider_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::exports::tessera::provider::provider::{
    AuthKind, Classification, Connected, Context, Credential, Field, HttpRequest, HttpResponse,
    Input, Outgoing, ProviderError, ProviderInfo, RedirectTo, Scope, Step, UpstreamError,
};
pub use oauth2::{OAuth2, OAuth2Adapter, OAuth2Provider};

/// Ordered name/value pairs (headers, query or form parameters), as in the WIT `pairs` type.
pub type Pairs = Vec<(String, String)>;

/// The version of the WIT contract this SDK implements; stamped into every component by
/// [`export_provider!`] as the custom section `tessera:contract-version`.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// The name of the custom section that carries [`CONTRACT_VERSION`] in a provider module.
pub const CONTRACT_VERSION_SECTION: &str = "tessera:contract-version";

/// The length of [`CONTRACT_VERSION`] in bytes, for the custom-section static.
#[doc(hidden)]
pub const __CONTRACT_VERSION_LEN: usize = CONTRACT_VERSION.len();

/// [`CONTRACT_VERSION`] as a byte array, built at compile time for the custom section.
#[doc(hidden)]
pub const __CONTRACT_VERSION_BYTES: [u8; __CONTRACT_VERSION_LEN] = {
    let src = CONTRACT_VERSION.as_bytes();
    let mut out = [0u8; __CONTRACT_VERSION_LEN];
    let mut i = 0;
    while i < out.len() {
        out[i] = src[i];
        i += 1;
    }
    out
};

/// The provider contract as a Rust trait: one associated function per WIT export.
///
/// Implement it (or [`OAuth2Provider`] for a standard OAuth 2 service) and export the type with
/// [`export_provider!`]. Every function must be deterministic and must not panic: errors are
/// values ([`Step::Fail`], `Err(ProviderError)`).
pub trait Provider {
    /// The provider's manifest: cheap, and always the same value.
    fn info() -> ProviderInfo;

    /// Starts connecting: `redirect` (OAuth), `send` (a validation request) or `done`.
    fn begin_connect(ctx: Context) -> Step;

    /// Continues a connect or refresh flow with the result of the last step.
    fn resume(ctx: Context, state: Vec<u8>, input: Input) -> Step;

    /// Renews a credential. The default says the provider cannot.
    fn refresh(ctx: Context, credential: Credential) -> Step {
        let _ = (ctx, credential);
        Step::Fail(ProviderError::Unsupported(
            "this provider cannot refresh credentials".into(),
        ))
    }

    /// Adds authentication to `request`, or refuses with `host-not-allowed`.
    fn sign(
        request: HttpRequest,
        credential: Credential,
        now: u64,
    ) -> Result<HttpRequest, ProviderError>;

    /// Says what a provider response means. The default is [`classify::standard`].
    fn classify(response: HttpResponse, now: u64) -> Classification {
        classify::standard(&response, now)
    }

    /// Describes the upstream revocation request. The default: there is none.
    fn revoke(ctx: Context, credential: Credential) -> Option<HttpRequest> {
        let _ = (ctx, credential);
        None
    }
}

/// Adapts a [`Provider`] to the generated `Guest` trait; used by [`export_provider!`].
pub struct Export<P>(PhantomData<P>);

impl<P: Provider> bindings::exports::tessera::provider::provider::Guest for Export<P> {
    fn info() -> ProviderInfo {
        P::info()
    }
    fn begin_connect(ctx: Context) -> Step {
        P::begin_connect(ctx)
    }
    fn resume(ctx: Context, state: Vec<u8>, input: Input) -> Step {
        P::resume(ctx, state, input)
    }
    fn refresh(ctx: Context, credential: Credential) -> Step {
        P::refresh(ctx, credential)
    }
    fn sign(
        request: HttpRequest,
        credential: Credential,
        now: u64,
    ) -> Result<HttpRequest, ProviderError> {
        P::sign(request, credential, now)
    }
    fn classify(response: HttpResponse, now: u64) -> Classification {
        P::classify(response, now)
    }
    fn revoke(ctx: Context, credential: Credential) -> Option<HttpRequest> {
        P::revoke(ctx, credential)
    }
}

/// Exports a [`Provider`] type as the component's implementation of the contract.
///
/// On `wasm32` it emits the contract's exported functions (through wit-bindgen's export macro
/// and [`Export`]) and a custom section `tessera:contract-version` holding
/// [`CONTRACT_VERSION`], which the host reads before compiling the component. On other
/// targets it expands to nothing, so native unit tests link normally.
///
/// ```text
/// tessera_provider_sdk::export_provider!(tessera_provider_sdk::OAuth2Adapter<GitHub>);
/// ```
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        // Checks the `Provider` bound on every target, so native builds see the same errors.
        const _: fn() -> $crate::ProviderInfo = <$provider as $crate::Provider>::info;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __TesseraExport = $crate::Export<$provider>;
            $crate::bindings::__export_provider_component!(
                __TesseraExport with_types_in $crate::bindings
            );

            #[used]
            #[unsafe(link_section = "tessera:contract-version")]
            static __TESSERA_CONTRACT_VERSION: [u8; $crate::__CONTRACT_VERSION_LEN] =
                $crate::__CONTRACT_VERSION_BYTES;
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_version_bytes_spell_the_version() {
        assert_eq!(&__CONTRACT_VERSION_BYTES[..], CONTRACT_VERSION.as_bytes());
    }

    #[test]
    fn contract_version_matches_the_wit_package() {
        let wit = include_str!("../../../wit/0.1.0/provider.wit");
        assert!(wit.contains(&format!("package tessera:provider@{CONTRACT_VERSION};")));
    }
}
