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
/// Pairs measured; the median rate is kept.
const RUNS: usize = 5;

/// The measured rate, shown in `/system/resources` and logged at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FuelCalibration {
    /// Fuel units one millisecond of plugin CPU burns here (the median).
    pub fuel_per_ms: u64,
    /// Each run's rate, in the order run.
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
/// one untimed run) and keeps the median of (fuel difference / time
/// difference).
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
    for _ in 0..RUNS {
        let a = sandbox.evaluate(&spec, &small, &limits).await;
        let b = sandbox.evaluate(&spec, &large, &limits).await;
        if let Some(e) = a.error.or(b.error) {
            return Err(e);
        }
        let fuel = b.fuel_used.saturating_sub(a.fuel_used) as f64;
        let micros = b.duration_us.saturating_sub(a.duration_us).max(1) as f64;
        runs.push((fuel * 1e3 / micros) as u64);
    }
    let mut sorted = runs.clone();
    sorted.sort_unstable();
    let fuel_per_ms = sorted.get(RUNS / 2).copied().unwrap_or(1).max(1);
    Ok(FuelCalibration { fuel_per_ms, runs_fuel_per_ms: runs, took_ms: started.elapsed().as_secs_f64() * 1e3 })
}
