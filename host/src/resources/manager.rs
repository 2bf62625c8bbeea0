//! The resource manager of one process: samples its [`Figures`] on a
//! thread of its own and feeds a [`Governor`]; the worker asks it what may
//! start, and the API shows what it sees.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::figures::{Figures, Usage};
use super::governor::{Admission, Governor, Pressure, Thresholds};

/// Configuration (environment variables in parentheses).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSettings {
    /// `MAX_CPU_PERCENT` (80).
    pub max_cpu_percent: f64,
    /// `MAX_MEMORY_MB` (80 % of the machine's memory).
    pub max_memory_mb: Option<u64>,
    /// `EMERGENCY_CPU_PERCENT` (90; at least `MAX_CPU_PERCENT`).
    pub emergency_cpu_percent: f64,
    /// `EMERGENCY_MEMORY_MB` (90 % of the machine's memory; at least
    /// `MAX_MEMORY_MB`).
    pub emergency_memory_mb: Option<u64>,
    /// `RESOURCE_SAMPLE_MS` (1000): how often the machine is read.
    pub sample_interval: Duration,
    /// `RESOURCE_ADMISSION` (on): `off` reports the figures but starts work
    /// whatever they say (for a machine where cardrun is the only load and
    /// should use all of it).
    pub admission: bool,
}

impl Default for ResourceSettings {
    fn default() -> Self {
        Self {
            max_cpu_percent: 80.0,
            max_memory_mb: None,
            emergency_cpu_percent: 90.0,
            emergency_memory_mb: None,
            sample_interval: Duration::from_secs(1),
            admission: true,
        }
    }
}

impl ResourceSettings {
    /// The thresholds on a machine with `total_mb` of memory.
    pub fn thresholds(&self, total_mb: u64) -> Thresholds {
        let max_memory_mb = self.max_memory_mb.unwrap_or(total_mb / 10 * 8);
        Thresholds {
            max_cpu_percent: self.max_cpu_percent,
            max_memory_mb,
            emergency_cpu_percent: self.emergency_cpu_percent.max(self.max_cpu_percent),
            emergency_memory_mb: self.emergency_memory_mb.unwrap_or(total_mb / 10 * 9).max(max_memory_mb),
        }
    }
}

/// What the manager sees and decides, for `/system/resources`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagerStatus {
    pub usage: Usage,
    pub thresholds: Thresholds,
    /// The smoothed signals admission decides on.
    pub smoothed_cpu_percent: f64,
    pub smoothed_memory_mb: f64,
    pub pressure: Pressure,
    pub admission_enabled: bool,
    /// Ordinary work's concurrency limit (AIMD).
    pub concurrency_limit: usize,
    /// Critical work's concurrency limit (shrinks only in an emergency).
    pub critical_concurrency_limit: usize,
    /// Why work waits, while it does.
    pub holding_reason: Option<String>,
}

struct State {
    usage: Usage,
    governor: Governor,
}

struct Shared {
    figures: Mutex<Box<dyn Figures>>,
    state: Mutex<State>,
    admission: bool,
}

/// Cheap to clone; clones share one manager. The sampling thread stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct ResourceManager {
    shared: Arc<Shared>,
}

impl ResourceManager {
    /// A manager for up to `max_concurrency` tests, reading `figures` every
    /// `sample_interval` on a thread of its own (reading /proc blocks).
    pub fn start(settings: &ResourceSettings, max_concurrency: usize, mut figures: Box<dyn Figures>) -> Self {
        let first = figures.sample();
        let thresholds = settings.thresholds(first.memory_total_mb);
        tracing::info!(
            max_cpu_percent = thresholds.max_cpu_percent,
            max_memory_mb = thresholds.max_memory_mb,
            emergency_cpu_percent = thresholds.emergency_cpu_percent,
            emergency_memory_mb = thresholds.emergency_memory_mb,
            admission = settings.admission,
            "resource manager started"
        );
        let governor = Governor::new(thresholds, max_concurrency);
        let shared = Arc::new(Shared {
            figures: Mutex::new(figures),
            state: Mutex::new(State { usage: first, governor }),
            admission: settings.admission,
        });
        let weak = Arc::downgrade(&shared);
        let interval = settings.sample_interval.max(Duration::from_millis(10));
        let spawned =
            std::thread::Builder::new().name("cardrun-resources".into()).spawn(move || sample_loop(&weak, interval));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start resource sampling; the figures stay as first read");
        }
        Self { shared }
    }

    /// Reads the figures now and applies them (the sampling thread does
    /// this every interval; tests call it to step the manager).
    pub fn sample_now(&self) {
        sample(&self.shared);
    }

    pub fn usage(&self) -> Usage {
        self.state().usage.clone()
    }

    pub fn thresholds(&self) -> Thresholds {
        self.state().governor.thresholds().clone()
    }

    /// What may start while `running` tests run (of at most `max`).
    pub fn admission(&self, running: usize, max: usize) -> Admission {
        if !self.shared.admission {
            return Admission::open(max.saturating_sub(running));
        }
        let mut admission = self.state().governor.admission(running);
        admission.room = admission.room.min(max.saturating_sub(running));
        admission
    }

    /// Whether the smoothed signal is over a normal threshold.
    pub fn under_stress(&self) -> bool {
        self.state().governor.pressure() != Pressure::Normal
    }

    pub fn status(&self) -> ManagerStatus {
        let state = self.state();
        let g = &state.governor;
        let (cpu, memory) = g.smoothed();
        let holding_reason = if self.shared.admission { g.admission(usize::MAX).reason } else { None };
        ManagerStatus {
            usage: state.usage.clone(),
            thresholds: g.thresholds().clone(),
            smoothed_cpu_percent: (cpu * 10.0).round() / 10.0,
            smoothed_memory_mb: memory.round(),
            pressure: g.pressure(),
            admission_enabled: self.shared.admission,
            // Without admission nothing is enforced: the limits are the maximum.
            concurrency_limit: if self.shared.admission { g.limit() } else { g.max() },
            critical_concurrency_limit: if self.shared.admission { g.critical_limit() } else { g.max() },
            holding_reason,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn sample_loop(weak: &Weak<Shared>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(shared) = weak.upgrade() else { return };
        sample(&shared);
    }
}

fn sample(shared: &Shared) {
    // The reading is taken before the state is locked: it may block.
    let usage = shared.figures.lock().unwrap_or_else(PoisonError::into_inner).sample();
    let changes = {
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.usage = usage;
        let State { usage, governor } = &mut *state;
        governor.observe(usage)
    };
    if shared.admission {
        for c in changes {
            let class = if c.critical { "critical" } else { "ordinary" };
            tracing::info!(class, from = c.from, to = c.to, reason = %c.reason, "concurrency limit changed");
        }
    }
}
