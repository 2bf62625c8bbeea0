//! The floor under `Sandbox::evaluate`: raw wasmtime with the same engine
//! settings, no cardrun code. New store + WASI context + instantiate from an
//! `InstancePre` (+ optionally one `describe` call), per component.
//!
//! `cargo run --release -p cardrun-benches --bin floor [ITERATIONS]`

use std::time::Instant;

use cardrun_benches::floor::{State, engine, pre};
use cardrun_benches::{machine, percentiles};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;

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
            let pre = pre(&engine, &dir.join(format!("{file}.wasm")));
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
