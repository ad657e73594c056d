//! Tessera host library. The `tessera` binary only wires these modules together.
//!
//! Calls go one way: `cli` → `server` → `api` → `apps` / `agents` / `setup` / `conformance` /
//! `scaffold` → `auth` → `keys` (the live key ring, data-key rotation) → `vault` / `store` /
//! `plugin`; `config` is read once by `cli` and
//! passed down.
//! No module reaches upward.

pub mod agents;
pub mod api;
pub mod apps;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod builtin;
pub mod calls;
pub mod cli;
pub mod config;
pub mod conformance;
pub mod delegations;
pub mod egress;
pub mod grants;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod oauth;
pub mod plugin;
pub mod policy;
pub mod scaffold;
pub mod server;
pub mod setup;
pub mod store;
pub mod vault;
pub mod wallet;
pub mod webhooks;
