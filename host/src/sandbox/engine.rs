//! The one wasmtime [`Engine`] of a process and its epoch ticker.

use std::thread;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::error::SandboxError;
use super::limits::MAX_INSTANCE_MEMORY_BYTES;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Which instance allocator the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved instance slots, tuned as measured in WASMTIME-NOTES.md.
    Pooling {
        /// How many instances may be alive at once.
        max_instances: u32,
    },
    /// mmap per instance: slower, no up-front reservation.
    OnDemand,
}

impl Default for Allocator {
    fn default() -> Self {
        Allocator::Pooling { max_instances: 1000 }
    }
}

/// Builds the engine: component model, fuel, epoch interruption, and the
/// chosen allocator. Falls back to on-demand allocation (with a warning)
/// when the pooling reservation is refused by the OS.
pub fn build_engine(allocator: Allocator) -> Result<Engine, SandboxError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    if let Allocator::Pooling { max_instances } = allocator {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances.saturating_mul(4))
            .total_memories(max_instances)
            .total_tables(max_instances.saturating_mul(2))
            .total_stacks(max_instances)
            .max_memory_size(MAX_INSTANCE_MEMORY_BYTES)
            .table_elements(100_000)
            // The settings that make instance reuse cheap (see notes).
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto)
            // Decommitted as soon as an instance ends: with batches of 32,
            // up to 31 finished instances kept their touched memory (a
            // plugin that allocated 64 MiB left it resident), so the host
            // went far past its plugin memory budget. No measurable cost
            // (docs/BENCHMARKS.md, fifth session).
            .decommit_batch_size(1);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&config) {
            Ok(engine) => return Ok(start_ticker(engine)),
            Err(e) => tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand"),
        }
        config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    }
    let engine = Engine::new(&config).map_err(|e| SandboxError::Internal(e.to_string()))?;
    Ok(start_ticker(engine))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is
/// dropped (the thread holds only a weak reference).
fn start_ticker(engine: Engine) -> Engine {
    let weak = engine.weak();
    let spawned = thread::Builder::new().name("cardrun-epoch".into()).spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            thread::sleep(EPOCH_TICK);
        }
    });
    if let Err(e) = spawned {
        // Without the ticker deadlines degrade to the outer tokio timeout.
        tracing::error!(error = %e, "could not start the epoch ticker");
    }
    engine
}
