//! cardrun: run prompt-card test suites in parallel, with every assertion
//! and model adapter in a sandboxed WebAssembly component.
//!
//! Module map (see DESIGN.md section 2):
//! - [`sandbox`]: wasmtime engine, plugin registry, limits, host capabilities.

pub mod sandbox;
