//! The floor under `Sandbox::evaluate`: raw wasmtime with the same engine
//! settings, no cardrun code. New store + WASI context + instantiate from an
//! `InstancePre` (+ optionally one `describe` call), per component.
//!
//! `cargo run --release -p cardrun-benches --bin floor [ITERATIONS]`

use std::time::Instant;

use cardrun_benches::{machine, percentiles};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn engine(keep_resident: usize) -> Engine {
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

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50_000);
    println!("machine: {}", machine());
    println!("| component | keep resident | step | median | p99 | per second (1 thread) |");
    println!("|---|---|---|---|---|---|");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = std::path::Path::new(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR);
    for file in [
        "cardrun_test_bare_assertion",
        "cardrun_test_trivial_assertion",
        "cardrun_test_hostile_assertion",
        "cardrun_builtin_assertions",
        "cardrun_builtin_json_assertions",
    ] {
        for keep_resident_mib in [2usize, 32] {
            let engine = engine(keep_resident_mib << 20);
            let bytes = std::fs::read(dir.join(format!("{file}.wasm"))).expect("plugin built");
            let component = Component::new(&engine, bytes).expect("compiles");
            let mut linker: Linker<State> = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
            linker.instance("cardrun:plugin/types@0.1.0").expect("types-only interface");
            // `model-call`, which the text built-ins import for `cost` and
            // `finish-reason` (`describe()` calls neither).
            let mut model_call = linker.instance("cardrun:plugin/model-call@0.1.0").expect("model-call");
            model_call.func_wrap("finish-reason", |_, (): ()| Ok((String::new(),))).expect("finish-reason");
            model_call.func_wrap("cost", |_, (): ()| Ok((None::<f64>,))).expect("cost");
            let pre = linker.instantiate_pre(&component).expect("pre");
            for call in [false, true] {
                let mut samples = Vec::with_capacity(n);
                runtime.block_on(async {
                    for i in 0..n + 2_000 {
                        let t = Instant::now();
                        let mut store = Store::new(
                            &engine,
                            State { wasi: WasiCtx::builder().build(), table: ResourceTable::new() },
                        );
                        store.set_fuel(u64::MAX).expect("fuel");
                        store.set_epoch_deadline(u64::MAX / 2);
                        let instance = pre.instantiate_async(&mut store).await.expect("instantiate");
                        if call {
                            let describe = instance.get_func(&mut store, "describe").expect("describe export");
                            let mut out = [wasmtime::component::Val::Bool(false)];
                            describe.call_async(&mut store, &[], &mut out).await.expect("call");
                        }
                        drop(store);
                        if i >= 2_000 {
                            samples.push(t.elapsed());
                        }
                    }
                });
                let total: f64 = samples.iter().map(|d| d.as_secs_f64()).sum();
                let (median, p99) = percentiles(&mut samples);
                let step = if call { "store + instantiate + describe()" } else { "store + instantiate" };
                println!(
                    "| {file} | {keep_resident_mib} MiB | {step} | {:.1} us | {:.1} us | {:.0} |",
                    median.as_secs_f64() * 1e6,
                    p99.as_secs_f64() * 1e6,
                    n as f64 / total
                );
            }
        }
    }
}
