//! The resource manager's decisions, as a pure state machine fed one
//! reading at a time: what may start now, and the concurrency limit.
//!
//! Invariants:
//! - Decisions use a smoothed signal (an exponentially weighted average),
//!   so one busy sample does not stop dispatch, and each threshold has a
//!   hysteresis band, so the signal hovering at a threshold does not flap.
//! - Under the normal thresholds everything is admitted; between the normal
//!   and the emergency thresholds only critical work (priority 9-10);
//!   over an emergency threshold nothing new.
//! - When nothing runs, one test of any priority may start (the floor), so
//!   no execution waits forever.
//! - The concurrency limit (AIMD) halves on every reading over the normal
//!   thresholds and grows by an eighth of the maximum on every reading
//!   under them; it stays within 1..=max. Critical work has a limit of its
//!   own, which shrinks only over the emergency thresholds.

use serde::{Deserialize, Serialize};

use super::figures::Usage;
use crate::domain::Priority;

/// Weight of the newest reading in the smoothed signal. From a quiet 20 %
/// it takes three readings at 100 % to cross 80 % (52, 71, 83), and one
/// quiet reading after a busy spell does not clear it either.
const SMOOTHING: f64 = 0.4;
/// A CPU threshold, once crossed, clears this many points below itself
/// (less than the 10 points between the default thresholds, so that work
/// held at the emergency threshold is admitted again at the normal one).
const CPU_BAND_PERCENT: f64 = 5.0;
/// A memory threshold, once crossed, clears this share below itself.
const MEMORY_BAND: f64 = 0.05;

/// The limits admission enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// `MAX_CPU_PERCENT` (80): all cores together.
    pub max_cpu_percent: f64,
    /// `MAX_MEMORY_MB` (80 % of the machine): memory used on the machine.
    pub max_memory_mb: u64,
    /// `EMERGENCY_CPU_PERCENT` (90): how far critical work may go.
    pub emergency_cpu_percent: f64,
    /// `EMERGENCY_MEMORY_MB` (90 % of the machine).
    pub emergency_memory_mb: u64,
}

/// How loaded the machine is, by the smoothed signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Pressure {
    /// Under the normal thresholds: everything is admitted.
    Normal,
    /// Over a normal threshold: only critical work.
    Elevated,
    /// Over an emergency threshold: nothing new but the floor.
    Emergency,
}

/// What may start now.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// How many tests may start.
    pub room: usize,
    /// Only executions of at least this priority (0: any).
    pub min_priority: u8,
    /// Nothing runs: if nothing above is claimable, one test of any
    /// priority may start anyway.
    pub floor: bool,
    /// Why work waits, when the resource manager holds it back.
    pub reason: Option<String>,
}

impl Admission {
    /// No resource manager in the way: `room` slots for anything.
    pub fn open(room: usize) -> Self {
        Self { room, min_priority: 0, floor: false, reason: None }
    }
}

/// A change of a concurrency limit, with the reason (for the log).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitChange {
    pub critical: bool,
    pub from: usize,
    pub to: usize,
    pub reason: String,
}

/// One threshold with hysteresis.
#[derive(Debug, Clone, Copy, Default)]
struct Level {
    over: bool,
}

impl Level {
    fn update(&mut self, value: f64, limit: f64, band: f64) {
        if self.over {
            self.over = value >= limit - band;
        } else {
            self.over = value > limit;
        }
    }
}

#[derive(Debug, Clone)]
pub struct Governor {
    thresholds: Thresholds,
    max: usize,
    limit: usize,
    critical_limit: usize,
    cpu: Option<f64>,
    memory: Option<f64>,
    cpu_over: Level,
    cpu_emergency: Level,
    memory_over: Level,
    memory_emergency: Level,
}

impl Governor {
    /// A governor for up to `max` tests at once, starting at `max`.
    pub fn new(thresholds: Thresholds, max: usize) -> Self {
        let max = max.max(1);
        Self {
            thresholds,
            max,
            limit: max,
            critical_limit: max,
            cpu: None,
            memory: None,
            cpu_over: Level::default(),
            cpu_emergency: Level::default(),
            memory_over: Level::default(),
            memory_emergency: Level::default(),
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The most tests at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The concurrency limit for ordinary work (`optimal_concurrency`).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The concurrency limit for critical work.
    pub fn critical_limit(&self) -> usize {
        self.critical_limit
    }

    /// The smoothed CPU and memory signals.
    pub fn smoothed(&self) -> (f64, f64) {
        (self.cpu.unwrap_or(0.0), self.memory.unwrap_or(0.0))
    }

    pub fn pressure(&self) -> Pressure {
        if self.cpu_emergency.over || self.memory_emergency.over {
            Pressure::Emergency
        } else if self.cpu_over.over || self.memory_over.over {
            Pressure::Elevated
        } else {
            Pressure::Normal
        }
    }

    /// Takes one reading; returns the limit changes it caused.
    pub fn observe(&mut self, usage: &Usage) -> Vec<LimitChange> {
        let smooth = |old: Option<f64>, new: f64| old.map_or(new, |old| old + SMOOTHING * (new - old));
        let cpu = smooth(self.cpu, usage.cpu_percent.clamp(0.0, 100.0));
        let memory = smooth(self.memory, usage.memory_mb as f64);
        self.cpu = Some(cpu);
        self.memory = Some(memory);
        let t = &self.thresholds;
        self.cpu_over.update(cpu, t.max_cpu_percent, CPU_BAND_PERCENT);
        self.cpu_emergency.update(cpu, t.emergency_cpu_percent, CPU_BAND_PERCENT);
        let (max_mb, emergency_mb) = (t.max_memory_mb as f64, t.emergency_memory_mb as f64);
        self.memory_over.update(memory, max_mb, max_mb * MEMORY_BAND);
        self.memory_emergency.update(memory, emergency_mb, emergency_mb * MEMORY_BAND);

        let over_normal = self.cpu_over.over || self.memory_over.over;
        let over_emergency = self.cpu_emergency.over || self.memory_emergency.over;
        let mut changes = Vec::new();
        let step = self.max.div_ceil(8);
        let (limit, critical_limit) = (self.limit, self.critical_limit);
        if over_normal {
            self.limit = (limit / 2).max(1);
        } else {
            self.limit = limit.saturating_add(step).min(self.max);
        }
        if over_emergency {
            self.critical_limit = (critical_limit / 2).max(1);
        } else {
            self.critical_limit = critical_limit.saturating_add(step).min(self.max);
        }
        if self.limit != limit {
            changes.push(LimitChange { critical: false, from: limit, to: self.limit, reason: self.why(false) });
        }
        if self.critical_limit != critical_limit {
            changes.push(LimitChange {
                critical: true,
                from: critical_limit,
                to: self.critical_limit,
                reason: self.why(true),
            });
        }
        changes
    }

    /// What may start while `running` tests run.
    pub fn admission(&self, running: usize) -> Admission {
        let floor = running == 0;
        match self.pressure() {
            Pressure::Normal => {
                let room = self.limit.saturating_sub(running);
                let reason = (room == 0 && self.limit < self.max)
                    .then(|| format!("waiting for a slot: concurrency is recovering ({} of {})", self.limit, self.max));
                Admission { room, min_priority: 0, floor: false, reason }
            }
            Pressure::Elevated => Admission {
                room: self.critical_limit.saturating_sub(running),
                min_priority: Priority::CRITICAL_MIN,
                floor,
                reason: Some(format!("{} (only critical work starts)", self.why(false))),
            },
            Pressure::Emergency => Admission { room: 0, min_priority: 0, floor, reason: Some(self.why(true)) },
        }
    }

    /// Which signal is over which threshold, in words.
    fn why(&self, emergency: bool) -> String {
        let t = &self.thresholds;
        let (cpu, memory) = self.smoothed();
        let (cpu_over, memory_over, cpu_limit, memory_limit, cpu_name, memory_name) = if emergency {
            (
                self.cpu_emergency.over,
                self.memory_emergency.over,
                t.emergency_cpu_percent,
                t.emergency_memory_mb,
                "EMERGENCY_CPU_PERCENT",
                "EMERGENCY_MEMORY_MB",
            )
        } else {
            (
                self.cpu_over.over,
                self.memory_over.over,
                t.max_cpu_percent,
                t.max_memory_mb,
                "MAX_CPU_PERCENT",
                "MAX_MEMORY_MB",
            )
        };
        let mut parts = Vec::new();
        if cpu_over {
            parts.push(match cpu > cpu_limit {
                true => format!("waiting for CPU: {cpu:.0} % is over {cpu_name} {cpu_limit:.0} %"),
                false => format!(
                    "waiting for CPU: {cpu:.0} % has not yet fallen below {:.0} % since passing {cpu_name} {cpu_limit:.0} %",
                    cpu_limit - CPU_BAND_PERCENT
                ),
            });
        }
        if memory_over {
            let limit = memory_limit as f64;
            parts.push(match memory > limit {
                true => format!("waiting for memory: {memory:.0} MiB used is over {memory_name} {memory_limit} MiB"),
                false => format!(
                    "waiting for memory: {memory:.0} MiB used has not yet fallen below {:.0} MiB since passing {memory_name} {memory_limit} MiB",
                    limit - limit * MEMORY_BAND
                ),
            });
        }
        if parts.is_empty() {
            format!("CPU {cpu:.0} % and memory {memory:.0} MiB are under {cpu_name} and {memory_name}")
        } else {
            parts.join("; ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds {
            max_cpu_percent: 80.0,
            max_memory_mb: 8_000,
            emergency_cpu_percent: 90.0,
            emergency_memory_mb: 9_000,
        }
    }

    fn usage(cpu: f64, memory_mb: u64) -> Usage {
        Usage { cpu_percent: cpu, memory_mb, ..Usage::default() }
    }

    /// A governor whose smoothed signal has settled at `cpu`, `memory`.
    fn settled(cpu: f64, memory_mb: u64) -> Governor {
        let mut g = Governor::new(thresholds(), 16);
        for _ in 0..30 {
            g.observe(&usage(cpu, memory_mb));
        }
        g
    }

    #[test]
    fn one_busy_sample_does_not_stop_dispatch_but_a_busy_spell_does() {
        let mut g = settled(20.0, 1_000);
        g.observe(&usage(100.0, 1_000));
        assert_eq!(g.pressure(), Pressure::Normal);
        assert_eq!(g.admission(0), Admission::open(16));
        g.observe(&usage(100.0, 1_000));
        g.observe(&usage(100.0, 1_000));
        assert_ne!(g.pressure(), Pressure::Normal, "three busy readings: {:?}", g.smoothed());
    }

    #[test]
    fn admission_holds_work_back_over_the_limit_and_resumes_below_it() {
        let mut g = settled(85.0, 1_000);
        assert_eq!(g.pressure(), Pressure::Elevated);
        let held = g.admission(3);
        assert_eq!(held.min_priority, 9, "only critical work");
        let reason = held.reason.expect("a reason");
        assert!(reason.contains("waiting for CPU") && reason.contains("MAX_CPU_PERCENT 80"), "{reason}");
        // Hysteresis: just under the threshold is not enough...
        for _ in 0..30 {
            g.observe(&usage(77.0, 1_000));
        }
        assert_eq!(g.pressure(), Pressure::Elevated);
        let reason = g.admission(3).reason.expect("a reason");
        assert!(reason.contains("77 % has not yet fallen below 75 %"), "{reason}");
        // ...clearly under it is.
        for _ in 0..30 {
            g.observe(&usage(60.0, 1_000));
        }
        assert_eq!(g.pressure(), Pressure::Normal);
        assert_eq!(g.admission(3).min_priority, 0);
        assert!(g.admission(3).room > 0);
    }

    #[test]
    fn memory_counts_like_cpu() {
        let g = settled(10.0, 8_500);
        assert_eq!(g.pressure(), Pressure::Elevated);
        let reason = g.admission(1).reason.expect("a reason");
        assert!(reason.contains("waiting for memory") && reason.contains("MAX_MEMORY_MB 8000"), "{reason}");
        assert_eq!(settled(10.0, 9_500).pressure(), Pressure::Emergency);
    }

    #[test]
    fn critical_work_passes_up_to_the_emergency_threshold() {
        let g = settled(85.0, 1_000);
        let admitted = g.admission(2);
        assert_eq!(admitted.min_priority, 9);
        assert_eq!(admitted.room, 14, "critical work keeps its own limit below the emergency threshold");
        let over = settled(95.0, 1_000);
        assert_eq!(over.pressure(), Pressure::Emergency);
        let held = over.admission(2);
        assert_eq!(held.room, 0);
        assert!(!held.floor, "tests run, so nothing more starts");
        assert!(held.reason.expect("reason").contains("EMERGENCY_CPU_PERCENT 90"));
    }

    #[test]
    fn one_test_always_runs() {
        for cpu in [85.0, 99.0] {
            let g = settled(cpu, 1_000);
            assert!(g.admission(0).floor, "at {cpu} % with nothing running, one test may start");
            assert!(!g.admission(1).floor);
        }
    }

    #[test]
    fn the_limit_halves_under_pressure_and_grows_back_by_steps() {
        let mut g = Governor::new(thresholds(), 16);
        let mut limits = Vec::new();
        for _ in 0..6 {
            let changes = g.observe(&usage(100.0, 1_000));
            for c in changes.iter().filter(|c| !c.critical) {
                assert!(c.reason.contains("waiting for CPU"), "{c:?}");
            }
            limits.push(g.limit());
        }
        assert_eq!(limits, vec![8, 4, 2, 1, 1, 1], "halved on every reading over, never below 1");
        let mut back = Vec::new();
        for _ in 0..10 {
            g.observe(&usage(5.0, 1_000));
            back.push(g.limit());
        }
        // One quiet reading takes the smoothed signal from 100 to 62, under
        // the band (75); the limit grows by max/8 = 2 per reading, up to the
        // maximum.
        assert_eq!(back, vec![3, 5, 7, 9, 11, 13, 15, 16, 16, 16]);
    }

    #[test]
    fn the_critical_limit_shrinks_only_over_the_emergency_threshold() {
        let mut g = settled(85.0, 1_000);
        assert_eq!((g.limit(), g.critical_limit()), (1, 16));
        let changes = (0..10).flat_map(|_| g.observe(&usage(100.0, 1_000))).collect::<Vec<_>>();
        assert!(changes.iter().any(|c| c.critical && c.reason.contains("EMERGENCY_CPU_PERCENT")), "{changes:?}");
        assert_eq!(g.critical_limit(), 1);
    }
}
