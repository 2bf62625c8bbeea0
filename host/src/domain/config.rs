//! TestConfiguration: every field has an effect (DESIGN.md section 4).

use super::Invalid;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceLimits {
    pub memory_mb: u64,
    pub cpu_percent: f64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self { memory_mb: 512, cpu_percent: 20.0 }
    }
}

/// The effective configuration of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestConfiguration {
    pub max_concurrent_tests: u32,
    pub timeout_per_test: u64,
    pub retry_failed_tests: bool,
    pub max_retries: u32,
    pub stop_on_first_failure: bool,
    pub resource_limits: ResourceLimits,
    pub cache_enabled: bool,
    pub progress_updates: bool,
}

impl Default for TestConfiguration {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Self {
            max_concurrent_tests: (2 * cores).min(8),
            timeout_per_test: 30_000,
            retry_failed_tests: true,
            max_retries: 2,
            stop_on_first_failure: false,
            resource_limits: ResourceLimits::default(),
            cache_enabled: true,
            progress_updates: true,
        }
    }
}

/// A partial `resource_limits` as sent by a client.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimitsPatch {
    pub memory_mb: Option<u64>,
    pub cpu_percent: Option<f64>,
}

/// A partial configuration as sent by a client; unknown fields are errors.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestConfigurationPatch {
    pub max_concurrent_tests: Option<u32>,
    pub timeout_per_test: Option<u64>,
    pub retry_failed_tests: Option<bool>,
    pub max_retries: Option<u32>,
    pub stop_on_first_failure: Option<bool>,
    pub resource_limits: Option<ResourceLimitsPatch>,
    pub cache_enabled: Option<bool>,
    pub progress_updates: Option<bool>,
}

impl TestConfigurationPatch {
    /// Merges over the defaults field by field and validates the ranges.
    pub fn resolve(self) -> Result<TestConfiguration, Invalid> {
        let d = TestConfiguration::default();
        let limits = self.resource_limits.unwrap_or_default();
        let c = TestConfiguration {
            max_concurrent_tests: self.max_concurrent_tests.unwrap_or(d.max_concurrent_tests),
            timeout_per_test: self.timeout_per_test.unwrap_or(d.timeout_per_test),
            retry_failed_tests: self.retry_failed_tests.unwrap_or(d.retry_failed_tests),
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            stop_on_first_failure: self.stop_on_first_failure.unwrap_or(d.stop_on_first_failure),
            resource_limits: ResourceLimits {
                memory_mb: limits.memory_mb.unwrap_or(d.resource_limits.memory_mb),
                cpu_percent: limits.cpu_percent.unwrap_or(d.resource_limits.cpu_percent),
            },
            cache_enabled: self.cache_enabled.unwrap_or(d.cache_enabled),
            progress_updates: self.progress_updates.unwrap_or(d.progress_updates),
        };
        if !(1..=256).contains(&c.max_concurrent_tests) {
            return Err(Invalid::new(format!("max_concurrent_tests must be 1..=256, got {}", c.max_concurrent_tests)));
        }
        if !(100..=600_000).contains(&c.timeout_per_test) {
            return Err(Invalid::new(format!("timeout_per_test must be 100..=600000 ms, got {}", c.timeout_per_test)));
        }
        if c.max_retries > 10 {
            return Err(Invalid::new(format!("max_retries must be 0..=10, got {}", c.max_retries)));
        }
        if !(16..=65_536).contains(&c.resource_limits.memory_mb) {
            return Err(Invalid::new(format!(
                "resource_limits.memory_mb must be 16..=65536, got {}",
                c.resource_limits.memory_mb
            )));
        }
        if !(c.resource_limits.cpu_percent > 0.0 && c.resource_limits.cpu_percent <= 100.0) {
            return Err(Invalid::new(format!(
                "resource_limits.cpu_percent must be in (0, 100], got {}",
                c.resource_limits.cpu_percent
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_resource_limits_merge_field_by_field() {
        let patch: TestConfigurationPatch = serde_json::from_str(r#"{"resource_limits": {"memory_mb": 256}}"#).unwrap();
        let c = patch.resolve().unwrap();
        assert_eq!(c.resource_limits.memory_mb, 256);
        assert_eq!(c.resource_limits.cpu_percent, 20.0);
        assert_eq!(c.timeout_per_test, 30_000);
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for bad in [
            r#"{"max_concurrent_tests": 0}"#,
            r#"{"timeout_per_test": 5}"#,
            r#"{"max_retries": 99}"#,
            r#"{"resource_limits": {"cpu_percent": 0}}"#,
        ] {
            let patch: TestConfigurationPatch = serde_json::from_str(bad).unwrap();
            assert!(patch.resolve().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<TestConfigurationPatch>(r#"{"max_concurent_tests": 2}"#).is_err());
    }
}
