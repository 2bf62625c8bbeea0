//! cardrun: run prompt-card test suites in parallel, with every assertion
//! and model adapter in a sandboxed WebAssembly component.
//!
//! Module map (DESIGN.md section 2); data flows one way:
//! API -> store + queue -> engine -> sandbox -> store + progress.
//! - [`domain`]: cards, test cases, executions, results, configuration.
//! - [`store`]: SQLite persistence.
//! - [`queue`]: the `Queue` trait and its in-memory implementation.
//! - [`engine`]: the dispatcher that runs test attempts.
//! - [`progress`]: the event bus and progress snapshots.
//! - [`resources`]: system resource sampling.
//! - [`sandbox`]: wasmtime engine, plugin registry, limits, host capabilities.
//! - [`api`]: the REST API.
//! - [`suite`]: suites in promptfoo's format, read below their folder.
//! - [`evaluation`]: a suite's prompts x providers pairs run as one group,
//!   compared, and compared between runs.
//! - [`app`]: wiring it all together from settings.

pub mod api;
pub mod app;
pub mod domain;
pub mod engine;
pub mod evaluation;
pub mod progress;
pub mod queue;
pub mod resources;
pub mod sandbox;
pub mod store;
pub mod suite;
pub mod tenants;
