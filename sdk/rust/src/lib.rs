//! The Rust SDK for Tessera, a self-hosted credential vault and API proxy: your code
//! names the provider request it wants to make and which grant it may use; Tessera holds the
//! tokens, refreshes them, checks policy and writes the audit log.
//!
//! Every request to the host is signed with the API key (RFC 9421 `hmac-sha256`, see the
//! repository's `docs/SIGNING.md`); the key itself never crosses the wire and is not kept by
//! [`App`] once its signing key is derived. The caller name ([`App::caller`]) and scope
//! constraints ([`App::with_constraints`]) travel as headers covered by that signature.
//!
//! Two call modes:
//!
//! - **retrieve** ([`App::request`], scope `tokens:retrieve`): the host returns the auth
//!   material for exactly the described request, and the SDK sends the request to the
//!   provider itself, returning the provider's [`reqwest::Response`] untouched;
//! - **proxy** ([`App::proxy_request`], scope `proxy:execute`): the host sends the request
//!   and streams back the provider's answer as a [`ProxyResponse`].
//!
//! Failures are one [`Error`] enum whose variants follow the host's stable problem codes.
//!
//! # Example
//!
//! ```no_run
//! use tessera_sdk::{App, Error, Method, Scope};
//!
//! # async fn run(api_key: &str) -> Result<(), Error> {
//! let app = App::new(api_key, "http://127.0.0.1:8080")?.caller("email-bot");
//!
//! // Retrieve mode: Tessera signs, this process calls Stripe.
//! let customers = app
//!     .request(Method::GET, "https://api.stripe.com/v1/customers?limit=3")
//!     .grant_id("0b6f3c1e-8d2a-4f7b-9c15-2e4a6d8f0a13")
//!     .reason("sync invoices")
//!     .context("ticket", "42")
//!     .send()
//!     .await?;
//! println!("stripe answered {}", customers.status());
//!
//! // Proxy mode, from a client narrowed to one scope.
//! let proxy_only = app.with_constraints(&[Scope::ProxyExecute]);
//! match proxy_only
//!     .proxy_request(Method::GET, "https://api.github.com/user/repos")
//!     .grant_id("7d1e…")
//!     .send()
//!     .await
//! {
//!     Ok(resp) => println!("{} from {}", resp.status(), resp.provider()),
//!     Err(Error::GrantReauthRequired { detail }) => println!("ask the user to reconnect: {detail}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```

mod app;
mod calls;
mod error;
mod queries;
mod signer;

pub use app::App;
pub use calls::{
    AuthorizedRequest, CallBuilder, Proxy, ProxyBuilder, ProxyResponse, Retrieve, RetrieveBuilder,
};
pub use error::Error;
pub use queries::{AuditQuery, GrantQuery};

/// The wire types shared with the host, for what this crate does not re-export by name.
pub use tessera_proto as proto;

pub use bytes::Bytes;
pub use reqwest::{Method, StatusCode, Url, header};
pub use tessera_proto::agents::{Agent, AgentPage};
pub use tessera_proto::audit::{AuditEvent, AuditPage};
pub use tessera_proto::grants::{
    Grant, GrantKind, GrantPage, GrantStatus, ManagedSecretRequest, ManagedSecretResponse,
    Principal,
};
pub use tessera_proto::problem::Problem;
pub use tessera_proto::providers::ProviderSummary;
pub use tessera_proto::scopes::Scope;
pub use tessera_proto::whoami::Whoami;

/// Checking the webhook deliveries the host sends: [`webhooks::verify`] the
/// `tessera-signature` header against the body and the endpoint's secret, then act on the
/// [`webhooks::Event`].
pub mod webhooks {
    pub use tessera_proto::webhooks::{
        DEFAULT_TOLERANCE_SECS, EVENT_ID_HEADER, EVENT_TYPE_HEADER, EVENT_TYPES, Event,
        SIGNATURE_HEADER, WebhookError, verify,
    };
}
