//! System resource figures from sysinfo, sampled about once a second.
//!
//! This is the measuring half of the resource manager (DESIGN.md section
//! 8). Admission control and adaptive concurrency are not built yet: the
//! thresholds are reported, not enforced.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One sample.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub cpu_percent: f64,
    pub memory_mb: u64,
    pub memory_total_mb: u64,
    pub process_rss_mb: u64,
    pub load_average: [f64; 3],
    pub timestamp: Option<DateTime<Utc>>,
}

/// Thresholds (`MAX_CPU_PERCENT`, `MAX_MEMORY_MB`).
#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub max_cpu_percent: f64,
    pub max_memory_mb: u64,
    pub emergency_cpu_percent: f64,
}

#[derive(Clone)]
pub struct ResourceMonitor {
    latest: Arc<Mutex<Usage>>,
    pub thresholds: Thresholds,
}

impl ResourceMonitor {
    /// Starts sampling on a blocking thread (sysinfo reads /proc).
    pub fn start(thresholds: Thresholds) -> Self {
        let latest = Arc::new(Mutex::new(Usage::default()));
        let sink = latest.clone();
        let spawned = std::thread::Builder::new().name("cardrun-resources".into()).spawn(move || {
            let mut system = System::new();
            let pid = Pid::from_u32(std::process::id());
            // Weak: stop when every monitor handle is gone.
            while Arc::strong_count(&sink) > 1 {
                system.refresh_cpu_usage();
                system.refresh_memory();
                system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    ProcessRefreshKind::nothing().with_memory(),
                );
                let load = System::load_average();
                let usage = Usage {
                    cpu_percent: f64::from(system.global_cpu_usage()),
                    memory_mb: system.used_memory() >> 20,
                    memory_total_mb: system.total_memory() >> 20,
                    process_rss_mb: system.process(pid).map_or(0, |p| p.memory() >> 20),
                    load_average: [load.one, load.five, load.fifteen],
                    timestamp: Some(Utc::now()),
                };
                *sink.lock().unwrap_or_else(PoisonError::into_inner) = usage;
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start resource sampling");
        }
        Self { latest, thresholds }
    }

    pub fn usage(&self) -> Usage {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether CPU or memory is over its threshold right now.
    pub fn under_stress(&self) -> bool {
        let u = self.usage();
        u.cpu_percent > self.thresholds.max_cpu_percent || u.memory_mb > self.thresholds.max_memory_mb
    }
}
