//! cardrun's integration tests, one module per area.

mod bare_plugin;
mod dashboard;
mod example_plugin;
mod graded_assertions;
mod hardening;
mod host_api;
mod host_execution;
mod javascript_assertions;
mod live_progress;
mod malformed_input;
mod openapi;
mod parameter_checks;
mod plugin_unit_tests;
mod plugin_versions;
mod queue_redis;
mod resources;
mod sandbox_adapters;
mod sandbox_assertions;
mod sandbox_hostile;
mod store_postgres;
mod suites;
mod tenants;
mod transforms;
