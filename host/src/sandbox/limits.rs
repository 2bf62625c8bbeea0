//! Per-use plugin limits and their derivation from an execution's
//! `resource_limits` and `timeout_per_test`.

use std::time::Duration;

/// Fuel units per millisecond of CPU time assumed until the sandbox has
/// measured this machine's rate ([`super::calibrate`]), which replaces it.
///
/// Wasmtime charges about one unit per WebAssembly operator; a tight guest
/// loop ran at 10.8 M to 20 M units per ms on machines of the kind we build
/// on (WASMTIME-NOTES.md).
pub const FUEL_PER_CPU_MS: u64 = 20_000_000;

/// The largest linear memory any single plugin instance may get; the pooling
/// allocator reserves slots of this size.
pub const MAX_INSTANCE_MEMORY_BYTES: usize = 1 << 30;

/// Limits applied to one plugin use (one fresh instance).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Fuel budget; `None` means unlimited (the deadline still applies).
    pub fuel: Option<u64>,
    /// `resource_limits.cpu_percent`: the share of `deadline` the fuel
    /// budget stands for.
    pub cpu_percent: f64,
    /// The fuel rate the budget was computed at (units per CPU ms).
    pub fuel_per_ms: u64,
    /// Cap on the instance's linear memory.
    pub memory_bytes: usize,
    /// Wall-clock deadline for the whole use, host calls included.
    pub deadline: Duration,
    /// Cap on the bytes handed to the plugin (output, value, config...).
    pub max_input_bytes: usize,
    /// Cap on the text a plugin returns (completion text, verdict reason).
    pub max_output_bytes: usize,
    /// Bytes of stdout/stderr kept (the tail); the rest is dropped.
    pub max_log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_resource_limits(20.0, 512, 30_000, 8)
    }
}

impl Limits {
    /// These limits with the instance memory capped at `max_mb` MiB.
    pub fn with_max_memory_mb(mut self, max_mb: u64) -> Self {
        let cap = usize::try_from(max_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        self.memory_bytes = self.memory_bytes.min(cap.max(16 << 20));
        self
    }

    /// The limits of one plugin use under an execution's configuration.
    pub fn for_configuration(c: &crate::domain::TestConfiguration) -> Self {
        Self::from_resource_limits(
            c.resource_limits.cpu_percent,
            c.resource_limits.memory_mb,
            c.timeout_per_test,
            c.max_concurrent_tests,
        )
    }

    /// Derives limits from an execution's configuration:
    ///
    /// - fuel = `cpu_percent`/100 x `timeout_ms` x [`FUEL_PER_CPU_MS`]: the
    ///   share of the test's time budget a plugin may spend computing (the
    ///   engine replaces the rate with the measured one,
    ///   [`Limits::with_fuel_rate`]);
    /// - memory = `memory_mb` / `max_concurrent_tests`, because that many
    ///   instances may run at once (at least 16 MiB, at most 1 GiB);
    /// - deadline = `timeout_ms`.
    pub fn from_resource_limits(cpu_percent: f64, memory_mb: u64, timeout_ms: u64, max_concurrent_tests: u32) -> Self {
        let cpu_percent = cpu_percent.clamp(0.0, 100.0);
        let per_instance = memory_mb.saturating_mul(1 << 20) / u64::from(max_concurrent_tests.max(1));
        let memory_bytes =
            usize::try_from(per_instance).unwrap_or(usize::MAX).clamp(16 << 20, MAX_INSTANCE_MEMORY_BYTES);
        Self {
            fuel: None,
            cpu_percent,
            fuel_per_ms: FUEL_PER_CPU_MS,
            memory_bytes,
            deadline: Duration::from_millis(timeout_ms.max(1)),
            max_input_bytes: 4 << 20,
            max_output_bytes: 1 << 20,
            max_log_bytes: 16 << 10,
        }
        .with_fuel_rate(FUEL_PER_CPU_MS)
    }

    /// These limits with the fuel budget computed at `fuel_per_ms` (the
    /// rate measured on this machine): `cpu_percent` of the deadline.
    pub fn with_fuel_rate(mut self, fuel_per_ms: u64) -> Self {
        let fuel_per_ms = fuel_per_ms.max(1);
        let cpu_ms = self.cpu_percent / 100.0 * self.deadline.as_secs_f64() * 1e3;
        self.fuel = Some(((cpu_ms * fuel_per_ms as f64).min(u64::MAX as f64) as u64).max(1));
        self.fuel_per_ms = fuel_per_ms;
        self
    }

    /// The same limits with a different deadline (e.g. what is left of a
    /// test's budget after the model call).
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        Self { deadline, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_documented_conversion() {
        let l = Limits::from_resource_limits(20.0, 512, 30_000, 8);
        assert_eq!(l.fuel, Some(6_000 * FUEL_PER_CPU_MS));
        assert_eq!(l.memory_bytes, 64 << 20);
        assert_eq!(l.deadline, Duration::from_secs(30));
    }

    #[test]
    fn the_fuel_follows_the_rate_it_is_given() {
        let l = Limits::from_resource_limits(10.0, 512, 2_000, 8).with_fuel_rate(1_000);
        assert_eq!((l.fuel, l.fuel_per_ms, l.cpu_percent), (Some(200_000), 1_000, 10.0));
    }

    #[test]
    fn memory_is_clamped() {
        assert_eq!(Limits::from_resource_limits(20.0, 1, 1000, 64).memory_bytes, 16 << 20);
        assert_eq!(Limits::from_resource_limits(20.0, 1 << 20, 1000, 1).memory_bytes, MAX_INSTANCE_MEMORY_BYTES);
    }
}
