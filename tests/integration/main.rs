//! cardrun's integration tests, one module per area.

mod sandbox_adapters;
mod sandbox_assertions;
mod sandbox_hostile;
