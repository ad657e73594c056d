//! The provider plugin runtime: a wasmtime engine, sandbox limits and the provider registry.
//!
//! This module owns everything between provider component bytes and a typed call result:
//! the contract-version check (before compilation), compilation and the authenticated
//! precompiled cache, the pooling allocator and its fallback, per-call stores with a memory
//! cap, an epoch deadline and an outer timeout, the deny-all WASI context, and the registry
//! of built-in and operator-supplied providers. It must never give a component ambient
//! authority (files, environment, network, clock), never reuse an instance between calls,
//! and never log or put in an error message the arguments or results of a call.

mod bindings;
mod cache;
mod contract;
mod engine;
mod error;
mod output;
mod registry;
mod runtime;
mod sandbox;

pub use contract::{
    CONTRACT_SECTION, ComponentManifest, ContractVersion, PROVIDER_INTERFACE, SUPPORTED_CONTRACTS,
    component_imports, inspect, supported_contracts,
};
pub use engine::{AllocatorKind, PoolConfig, PoolingMode};
pub use error::PluginError;

pub use registry::{LoadReport, Registry, RegistryConfig, Watcher};
pub use runtime::{CallObserver, LoadOrigin, Plugin, Runtime, RuntimeConfig, RuntimeStats, Source};

/// The contract's data types, as generated from `wit/0.1.0/provider.wit`.
pub mod types {
    pub use super::bindings::exports::tessera::provider::provider::{
        AuthKind, Classification, Connected, Context, Credential, Field, HttpRequest, HttpResponse,
        Input, Outgoing, Pairs, ProviderError, ProviderInfo, RedirectTo, Scope, Step,
        UpstreamError,
    };
}
