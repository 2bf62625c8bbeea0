//! Per-use plugin limits and their derivation from an execution's
//! `resource_limits` and `timeout_per_test`.

use std::time::Duration;

/// Fuel units granted per millisecond of CPU time.
///
/// Wasmtime charges about one unit per WebAssembly operator. On the 2-core
/// machines we build on, a tight guest loop burns 10 M units in about 0.5 ms
/// (WASMTIME-NOTES.md), so 20 M units is roughly one millisecond of busy CPU.
pub const FUEL_PER_CPU_MS: u64 = 20_000_000;

/// The largest linear memory any single plugin instance may get; the pooling
/// allocator reserves slots of this size.
pub const MAX_INSTANCE_MEMORY_BYTES: usize = 1 << 30;

/// Limits applied to one plugin use (one fresh instance).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Fuel budget; `None` means unlimited (the deadline still applies).
    pub fuel: Option<u64>,
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
    ///   share of the test's time budget a plugin may spend computing;
    /// - memory = `memory_mb` / `max_concurrent_tests`, because that many
    ///   instances may run at once (at least 16 MiB, at most 1 GiB);
    /// - deadline = `timeout_ms`.
    pub fn from_resource_limits(cpu_percent: f64, memory_mb: u64, timeout_ms: u64, max_concurrent_tests: u32) -> Self {
        let cpu_ms = (cpu_percent.clamp(0.0, 100.0) / 100.0) * timeout_ms as f64;
        let fuel = (cpu_ms * FUEL_PER_CPU_MS as f64).min(u64::MAX as f64) as u64;
        let per_instance = memory_mb.saturating_mul(1 << 20) / u64::from(max_concurrent_tests.max(1));
        let memory_bytes =
            usize::try_from(per_instance).unwrap_or(usize::MAX).clamp(16 << 20, MAX_INSTANCE_MEMORY_BYTES);
        Self {
            fuel: Some(fuel.max(1)),
            memory_bytes,
            deadline: Duration::from_millis(timeout_ms.max(1)),
            max_input_bytes: 4 << 20,
            max_output_bytes: 1 << 20,
            max_log_bytes: 16 << 10,
        }
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
    fn memory_is_clamped() {
        assert_eq!(Limits::from_resource_limits(20.0, 1, 1000, 64).memory_bytes, 16 << 20);
        assert_eq!(Limits::from_resource_limits(20.0, 1 << 20, 1000, 1).memory_bytes, MAX_INSTANCE_MEMORY_BYTES);
    }
}
