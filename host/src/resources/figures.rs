//! Where the resource manager's numbers come from: the machine (sysinfo),
//! or, in tests, whatever the test sets.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One reading of the machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Every core together, 0 to 100.
    pub cpu_percent: f64,
    pub memory_mb: u64,
    pub memory_total_mb: u64,
    pub process_rss_mb: u64,
    pub load_average: [f64; 3],
    pub timestamp: Option<DateTime<Utc>>,
}

/// A source of readings. The manager calls `sample` from its own thread
/// about once a second, and nowhere else.
pub trait Figures: Send + 'static {
    fn sample(&mut self) -> Usage;
}

/// The machine itself.
pub struct SystemFigures {
    system: System,
    pid: Pid,
}

impl SystemFigures {
    pub fn new() -> Self {
        Self { system: System::new(), pid: Pid::from_u32(std::process::id()) }
    }
}

impl Default for SystemFigures {
    fn default() -> Self {
        Self::new()
    }
}

impl Figures for SystemFigures {
    fn sample(&mut self) -> Usage {
        let system = &mut self.system;
        // CPU usage is the change since the previous refresh, so the first
        // reading is 0 and every later one covers the sampling interval.
        system.refresh_cpu_usage();
        system.refresh_memory();
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        let load = System::load_average();
        Usage {
            cpu_percent: f64::from(system.global_cpu_usage()),
            memory_mb: system.used_memory() >> 20,
            memory_total_mb: system.total_memory() >> 20,
            process_rss_mb: system.process(self.pid).map_or(0, |p| p.memory() >> 20),
            load_average: [load.one, load.five, load.fifteen],
            timestamp: Some(Utc::now()),
        }
    }
}

/// Readings a test sets: clones share one value.
#[derive(Clone, Default)]
pub struct SetFigures(Arc<Mutex<Usage>>);

impl SetFigures {
    pub fn new(usage: Usage) -> Self {
        Self(Arc::new(Mutex::new(usage)))
    }

    /// The next samples read `cpu_percent` and `memory_mb`.
    pub fn set(&self, cpu_percent: f64, memory_mb: u64) {
        let mut usage = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        usage.cpu_percent = cpu_percent;
        usage.memory_mb = memory_mb;
    }
}

impl Figures for SetFigures {
    fn sample(&mut self) -> Usage {
        let mut usage = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        usage.timestamp = Some(Utc::now());
        usage
    }
}
