//! OAuth: how an app is configured for each OAuth provider (client id, sealed client secret,
//! scopes, redirect URI, parameters) and the connect flow end users go through.
//!
//! Must never: log, return or store unsealed a client secret, token or OAuth `state`.

pub mod config;
pub mod connect;
pub mod pages;
pub mod refresh;
