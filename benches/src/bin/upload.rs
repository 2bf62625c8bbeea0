//! What an upload costs before and during compilation: the structure check
//! (`cardrun::sandbox::upload::check`) and Cranelift's compile time, for the
//! built-in plugins and for compile bombs (one function whose N i64 locals
//! are all live).
//!
//! `cargo run --release -p cardrun-benches --bin upload`
//!
//! Compilation here uses a default wasmtime `Config` (Cranelift, the same
//! version as the host), not the sandbox's engine.

use std::time::{Duration, Instant};

use cardrun::sandbox::upload::{UploadLimits, check};
use cardrun_benches::machine;
use cardrun_tests::compile_bomb;

fn main() {
    println!("machine: {}\n", machine());
    let engine = wasmtime::Engine::new(&wasmtime::Config::new()).expect("engine");
    let mut subjects: Vec<(String, Vec<u8>)> = cardrun::sandbox::builtin::ASSERTION_PLUGINS
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("built-in assertions #{}", i + 1), b.to_vec()))
        .collect();
    for n in [1_000u32, 2_000, 5_000, 8_000, 20_000] {
        subjects.push((format!("bomb, {n} live locals"), compile_bomb(n)));
    }
    println!("| component | size | check | verdict | compile (Cranelift) |");
    println!("|---|---|---|---|---|");
    for (name, bytes) in subjects {
        let started = Instant::now();
        let verdict = check(&bytes, &UploadLimits::default());
        let checked = started.elapsed();
        let started = Instant::now();
        let compiled = wasmtime::component::Component::new(&engine, &bytes).is_ok();
        let compile = started.elapsed();
        println!(
            "| {name} | {} KB | {} | {} | {} |",
            bytes.len() / 1024,
            ms(checked),
            match verdict {
                Ok(stats) => format!(
                    "accepted ({} functions, at most {} locals, complexity {:.2e})",
                    stats.functions, stats.most_locals, stats.complexity as f64
                ),
                Err(e) => format!("refused: {e}"),
            },
            if compiled { ms(compile) } else { format!("failed after {}", ms(compile)) }
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
