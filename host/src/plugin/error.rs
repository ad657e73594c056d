//! The plugin module's error type.
//!
//! Every message names the provider (its id once known, otherwise the component's source) and
//! says what went wrong in words an operator can act on. Messages must never contain call
//! arguments or results: those carry credentials.

use std::time::Duration;

/// Why loading a component or calling into it failed.
///
/// Call errors fail that one call only; the [`Plugin`](super::Plugin) stays usable and the
/// next call gets a fresh instance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The component implements a contract version this host does not serve.
    #[error(
        "component `{component}` implements provider contract {found}, which this host does not \
         support (supported: {supported})"
    )]
    UnsupportedContract {
        /// Where the component came from.
        component: String,
        /// The version the component declares, or `none`.
        found: String,
        /// The versions this host serves, e.g. `0.1.x`.
        supported: String,
    },
    /// The bytes are not a usable provider component.
    #[error("component `{component}` is not a valid provider component: {reason}")]
    Invalid {
        /// Where the component came from.
        component: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Cranelift could not compile the component.
    #[error("component `{component}` failed to compile: {detail}")]
    Compile {
        /// Where the component came from.
        component: String,
        /// The compiler's message.
        detail: String,
    },
    /// The component could not be instantiated (for example the instance pool is exhausted).
    #[error("provider `{provider}`: could not instantiate for `{call}`: {detail}")]
    Instantiate {
        /// Provider id (or component source while loading).
        provider: String,
        /// The contract function being called.
        call: &'static str,
        /// wasmtime's message.
        detail: String,
    },
    /// The guest trapped (panic, stack overflow, out-of-bounds access, ...).
    #[error("provider `{provider}` trapped in `{call}`: {detail}")]
    Trap {
        /// Provider id (or component source while loading).
        provider: String,
        /// The contract function being called.
        call: &'static str,
        /// The trap, without arguments or guest data.
        detail: String,
    },
    /// The guest ran past its epoch deadline and was interrupted.
    #[error("provider `{provider}` exceeded its {} ms deadline in `{call}` and was stopped", deadline.as_millis())]
    DeadlineExceeded {
        /// Provider id (or component source while loading).
        provider: String,
        /// The contract function being called.
        call: &'static str,
        /// The configured per-call deadline.
        deadline: Duration,
    },
    /// The guest tried to grow its memory beyond the per-call cap.
    #[error("provider `{provider}` exceeded its {limit_bytes}-byte memory limit in `{call}`")]
    MemoryLimit {
        /// Provider id (or component source while loading).
        provider: String,
        /// The contract function being called.
        call: &'static str,
        /// The configured memory cap.
        limit_bytes: usize,
    },
    /// The guest returned a value larger than the host accepts.
    #[error(
        "provider `{provider}` returned {size} bytes from `{call}`, more than the {limit}-byte limit"
    )]
    OutputTooLarge {
        /// Provider id.
        provider: String,
        /// The contract function being called.
        call: &'static str,
        /// Approximate size of the lifted value.
        size: usize,
        /// The configured cap.
        limit: usize,
    },
    /// The outer (async) timeout fired before the call finished.
    #[error("provider `{provider}` did not answer `{call}` within {} ms", timeout.as_millis())]
    Timeout {
        /// Provider id.
        provider: String,
        /// The contract function being called.
        call: &'static str,
        /// The configured outer timeout.
        timeout: Duration,
    },
    /// The wasmtime engine could not be created.
    #[error("could not create the WebAssembly engine: {0}")]
    Engine(String),
    /// The precompiled-component cache could not be used.
    #[error("component cache at {path}: {detail}")]
    Cache {
        /// The cache directory or file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// Reading a component or the provider directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A host-side failure that is not the component's fault.
    #[error("provider `{provider}`: internal host error in `{call}`: {detail}")]
    Internal {
        /// Provider id.
        provider: String,
        /// The contract function being called.
        call: &'static str,
        /// What went wrong.
        detail: String,
    },
}
