//! Fuel per millisecond of CPU on this machine, measured at start-up.
//!
//! Wasmtime charges fuel per WebAssembly operator, and how many operators
//! a millisecond runs depends on the machine and on the code: two machines
//! of the same kind here ran a tight loop at 10.8 M and 20 M units per ms
//! (WASMTIME-NOTES.md). `resource_limits.cpu_percent` is a share of CPU
//! time, so its fuel budget is that time at the rate measured here, on
//! plugin code: the built-in `contains` scanning text, at two sizes, so
//! that what does not grow with the input (instantiation, copying the
//! input in) cancels out of the rate.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Sandbox;
use super::error::SandboxError;
use super::limits::Limits;
use super::types::{AssertionSpec, Subject};

/// The two input sizes (bytes), well under the 4 MiB input cap.
const SMALL: usize = 256 << 10;
const LARGE: usize = 2 << 20;
/// Pairs measured.
const RUNS: usize = 5;

/// The measured rate, shown in `/system/resources` and logged at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FuelCalibration {
    /// Fuel units one millisecond of plugin CPU burns here (from the
    /// fastest runs).
    pub fuel_per_ms: u64,
    /// Each pair's own rate, in the order run: how noisy the machine was.
    pub runs_fuel_per_ms: Vec<u64>,
    /// How long the calibration took.
    pub took_ms: f64,
}

impl FuelCalibration {
    /// The rate assumed where calibration fails.
    pub fn assumed(fuel_per_ms: u64) -> Self {
        Self { fuel_per_ms, runs_fuel_per_ms: Vec::new(), took_ms: 0.0 }
    }
}

/// Runs `contains` over [`SMALL`] and [`LARGE`] texts [`RUNS`] times (after
/// one untimed run). The rate kept is the fuel difference over the
/// difference of the *fastest* small and the fastest large run: being
/// descheduled only ever adds time, so the minima are the closest to what
/// the plugin itself cost. A per-pair rate, by contrast, runs away when the
/// small run of a pair was preempted and the large one was not (a CI run
/// on a loaded machine once took 10 ms of the fuel so measured past a
/// 500 ms deadline).
pub async fn calibrate(sandbox: &Sandbox) -> Result<FuelCalibration, SandboxError> {
    let started = std::time::Instant::now();
    // Generous: the calibration must not be stopped by the limits it sets.
    let limits = Limits::from_resource_limits(100.0, 64, 60_000, 1);
    // A needle that is not there: the whole text is scanned.
    let spec = AssertionSpec::new("contains", json!("\u{1}"));
    let small = Subject { output: "a".repeat(SMALL), ..Subject::default() };
    let large = Subject { output: "a".repeat(LARGE), ..Subject::default() };
    // Untimed: the first uses of an instance slot fault its pages in, and
    // measured three to four times slower than the rest.
    let _ = sandbox.evaluate(&spec, &large, &limits).await;
    let mut runs = Vec::with_capacity(RUNS);
    let (mut fastest_small, mut fastest_large) = (u64::MAX, u64::MAX);
    let mut fuel_difference = 0;
    for _ in 0..RUNS {
        let a = sandbox.evaluate(&spec, &small, &limits).await;
        let b = sandbox.evaluate(&spec, &large, &limits).await;
        if let Some(e) = a.error.or(b.error) {
            return Err(e);
        }
        // The same input burns the same fuel every time.
        fuel_difference = b.fuel_used.saturating_sub(a.fuel_used);
        runs.push(rate(fuel_difference, b.duration_us.saturating_sub(a.duration_us)));
        fastest_small = fastest_small.min(a.duration_us);
        fastest_large = fastest_large.min(b.duration_us);
    }
    let fuel_per_ms = rate(fuel_difference, fastest_large.saturating_sub(fastest_small));
    Ok(FuelCalibration { fuel_per_ms, runs_fuel_per_ms: runs, took_ms: started.elapsed().as_secs_f64() * 1e3 })
}

/// Fuel per millisecond, at least 1; a zero interval counts as 1 us.
fn rate(fuel: u64, micros: u64) -> u64 {
    ((fuel as f64) * 1e3 / micros.max(1) as f64).max(1.0) as u64
}
