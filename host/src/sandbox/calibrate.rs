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
/// one untimed run), timing each run by this thread's CPU clock. The rate
/// kept is the fuel difference over the difference of the *fastest* small
/// and the *fastest* large run.
///
/// Why not wall time and a median: on a loaded machine a run is preempted
/// at random, so per-pair rates ran from 1.7 to 11.3 M units per ms on one
/// machine (docs/BENCHMARKS.md, eighteenth session), and a CI run once took
/// 10 ms of the fuel so measured past a 500 ms deadline. A thread's CPU
/// clock does not run while it is preempted; what it may still count (other
/// tasks run on this thread while the plugin yielded at an epoch tick) only
/// adds time, which the minima leave out.
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
    // A pair is measured again when its task moved threads midway; a few
    // spare tries, so that a busy runtime cannot hold start-up for long.
    for _ in 0..RUNS * 3 {
        if runs.len() == RUNS {
            break;
        }
        let (Some(a), Some(b)) =
            (timed(sandbox, &spec, &small, &limits).await?, timed(sandbox, &spec, &large, &limits).await?)
        else {
            continue;
        };
        // The same input burns the same fuel every time.
        fuel_difference = b.fuel.saturating_sub(a.fuel);
        runs.push(rate(fuel_difference, b.cpu_us.saturating_sub(a.cpu_us)));
        fastest_small = fastest_small.min(a.cpu_us);
        fastest_large = fastest_large.min(b.cpu_us);
    }
    if runs.is_empty() {
        return Err(SandboxError::Internal("fuel calibration: every run moved between threads".into()));
    }
    let fuel_per_ms = rate(fuel_difference, fastest_large.saturating_sub(fastest_small));
    Ok(FuelCalibration { fuel_per_ms, runs_fuel_per_ms: runs, took_ms: started.elapsed().as_secs_f64() * 1e3 })
}

/// Fuel one run burnt, and the CPU time its thread spent on it.
struct Timed {
    fuel: u64,
    cpu_us: u64,
}

/// One run, or `None` when its task resumed on another thread (a
/// multi-threaded runtime may move it at an epoch yield), since then one
/// thread's clock does not cover it.
async fn timed(
    sandbox: &Sandbox,
    spec: &AssertionSpec,
    subject: &Subject,
    limits: &Limits,
) -> Result<Option<Timed>, SandboxError> {
    let thread = std::thread::current().id();
    let before = thread_cpu_us();
    let outcome = sandbox.evaluate(spec, subject, limits).await;
    let cpu_us = thread_cpu_us().saturating_sub(before);
    if let Some(e) = outcome.error {
        return Err(e);
    }
    Ok((std::thread::current().id() == thread).then_some(Timed { fuel: outcome.fuel_used, cpu_us }))
}

/// This thread's CPU time in microseconds.
fn thread_cpu_us() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

/// Fuel per millisecond, at least 1; a zero interval counts as 1 us.
fn rate(fuel: u64, micros: u64) -> u64 {
    ((fuel as f64) * 1e3 / micros.max(1) as f64).max(1.0) as u64
}
