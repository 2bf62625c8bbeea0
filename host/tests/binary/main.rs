//! The real `cardrun` binary in separate processes, killed by PID: the CLI
//! on one machine, distributed execution over real Redis servers, and API
//! hosts sharing one PostgreSQL database.
//!
//! This lives in the host package (not `tests/`) because only a package's
//! own tests get `CARGO_BIN_EXE_cardrun`; the Redis and PostgreSQL harnesses
//! are shared with the integration tests by path.

// Shared with `tests/`, which uses the cluster half of it.
#[allow(dead_code)]
#[path = "../../../tests/support/redis.rs"]
mod redis;

#[allow(dead_code)]
#[path = "../../../tests/support/bomb.rs"]
mod bomb;

// Shared with `tests/`, whose import runner also uploads the files.
#[allow(dead_code)]
#[path = "../../../tests/support/corpus.rs"]
mod corpus;

#[allow(dead_code)]
#[path = "../../../tests/support/postgres.rs"]
mod postgres;

// The fake model server of the integration tests (grader mode).
#[allow(dead_code)]
#[path = "../../../tests/support/fake_llm.rs"]
mod fake_llm;

mod cli;
mod compile;
mod distributed;
mod graders;
mod language_plugins;
mod memory;
mod shared_store;
mod suites;
mod support;
mod tenants;
mod watch;
