//! The floor under every plugin use: raw wasmtime with the sandbox's engine
//! settings and no cardrun code (the `floor` and `breakdown` benches).

use std::path::Path;

use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// A store's data: WASI and nothing else.
pub struct State {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The sandbox's engine configuration, with `keep_resident` bytes of each
/// linear memory kept resident between instances.
pub fn engine(keep_resident: usize) -> Engine {
    let mut config = Config::new();
    config.wasm_component_model(true).consume_fuel(true).epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(1000)
        .total_core_instances(4000)
        .total_memories(1000)
        .total_tables(2000)
        .total_stacks(1000)
        .max_memory_size(1 << 30)
        .table_elements(100_000)
        .linear_memory_keep_resident(keep_resident)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto)
        .decommit_batch_size(32);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).expect("engine")
}

/// The component at `path`, pre-linked with WASI and stand-ins for the
/// host interfaces an assertion may import (`describe()` calls none).
pub fn pre(engine: &Engine, path: &Path) -> InstancePre<State> {
    let bytes = std::fs::read(path).expect("plugin built");
    let component = Component::new(engine, bytes).expect("compiles");
    let mut linker: Linker<State> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    linker.instance("cardrun:plugin/types@0.1.0").expect("types-only interface");
    // `model-call`, which the text built-ins import for `cost`,
    // `finish-reason` and the perplexity types.
    let mut model_call = linker.instance("cardrun:plugin/model-call@0.1.0").expect("model-call");
    model_call.func_wrap("finish-reason", |_, (): ()| Ok((String::new(),))).expect("finish-reason");
    model_call.func_wrap("cost", |_, (): ()| Ok((None::<f64>,))).expect("cost");
    model_call.func_wrap("logprobs", |_, (): ()| Ok((None::<Vec<f64>>,))).expect("logprobs");
    linker.instantiate_pre(&component).expect("pre")
}
