//! Host bindings generated from the frozen contract in `wit/0.1.0`.
//!
//! This module only holds generated code; it must never gain hand-written logic, so that the
//! host's view of the contract cannot drift from the WIT file.

// Generated code: the WIT comments become its docs, and it is not ours to restyle.
#![allow(missing_docs, clippy::pedantic)]

wasmtime::component::bindgen!({
    path: "../wit/0.1.0",
    world: "provider-component",
});
