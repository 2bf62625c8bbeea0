//! Per-tenant quotas (issue 14, point 5, in part): requests per second and
//! executions per minute as token buckets, and a cap on the tests a tenant
//! has queued or running. Going over is a 429 with `Retry-After`.
//!
//! The buckets live in each API host's memory, so with several hosts
//! behind a load balancer a tenant gets each host's allowance.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A tenant's allowances (`TENANT_*` environment variables).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaSettings {
    /// `TENANT_REQUESTS_PER_SECOND` (50; bursts of twice that).
    pub requests_per_second: u32,
    /// `TENANT_EXECUTIONS_PER_MINUTE` (120; bursts of a tenth of a minute's worth, at least 10).
    pub executions_per_minute: u32,
    /// `TENANT_MAX_QUEUED_TESTS` (200,000): tests of executions queued or
    /// running at once.
    pub max_queued_tests: u64,
    /// `TENANT_MAX_RUNNING_TESTS` (0: no allowance): tests of one tenant
    /// running at once across the deployment, enforced in the queue's claim.
    pub max_running_tests: u32,
    /// `TENANT_MAX_PLUGINS` (20) and `TENANT_MAX_PLUGIN_BYTES` (64 MiB):
    /// uploaded plugins, and their bytes together.
    pub plugins: crate::sandbox::PluginQuota,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 50,
            executions_per_minute: 120,
            max_queued_tests: 200_000,
            max_running_tests: 0,
            plugins: crate::sandbox::PluginQuota::default(),
        }
    }
}

/// What a bucket meters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metered {
    Requests,
    Executions,
}

/// Over a quota: what, and when to try again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what}; try again in {} s", retry_after.as_secs().max(1))]
pub struct OverQuota {
    pub what: String,
    pub retry_after: Duration,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Every tenant's buckets.
pub struct Quotas {
    settings: QuotaSettings,
    buckets: Mutex<HashMap<(i64, Metered), Bucket>>,
}

impl Quotas {
    pub fn new(settings: QuotaSettings) -> Self {
        Self { settings, buckets: Mutex::new(HashMap::new()) }
    }

    pub fn settings(&self) -> QuotaSettings {
        self.settings
    }

    /// (tokens per second, capacity) of a bucket.
    fn rate(&self, metered: Metered) -> (f64, f64) {
        match metered {
            Metered::Requests => {
                let per_second = f64::from(self.settings.requests_per_second.max(1));
                (per_second, per_second * 2.0)
            }
            Metered::Executions => {
                let per_minute = f64::from(self.settings.executions_per_minute.max(1));
                (per_minute / 60.0, (per_minute / 10.0).max(10.0).min(per_minute))
            }
        }
    }

    /// Takes `cost` tokens from the tenant's bucket, or says when they will
    /// be there.
    pub fn take(&self, tenant: i64, metered: Metered, cost: u32) -> Result<(), OverQuota> {
        let (rate, capacity) = self.rate(metered);
        let cost = f64::from(cost);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry((tenant, metered)).or_insert(Bucket { tokens: capacity, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            return Ok(());
        }
        let what = match metered {
            Metered::Requests => format!("over {} requests per second", self.settings.requests_per_second),
            Metered::Executions => format!("over {} executions per minute", self.settings.executions_per_minute),
        };
        let wait = if cost > capacity { f64::INFINITY } else { (cost - bucket.tokens) / rate };
        let retry_after = Duration::try_from_secs_f64(wait.ceil()).unwrap_or(Duration::from_secs(3600));
        Err(OverQuota { what, retry_after })
    }

    /// Whether a tenant with `queued` tests queued or running may queue
    /// more (the execution that crosses the cap is still taken whole).
    pub fn admit_tests(&self, queued: u64) -> Result<(), OverQuota> {
        let max = self.settings.max_queued_tests;
        if queued < max {
            return Ok(());
        }
        Err(OverQuota {
            what: format!("{queued} tests queued or running, this tenant's limit is {max}"),
            retry_after: Duration::from_secs(30),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_says_when() {
        let quotas = Quotas::new(QuotaSettings { requests_per_second: 5, ..QuotaSettings::default() });
        for _ in 0..10 {
            quotas.take(1, Metered::Requests, 1).unwrap();
        }
        let over = quotas.take(1, Metered::Requests, 1).unwrap_err();
        assert_eq!(over.retry_after, Duration::from_secs(1));
        assert!(over.to_string().contains("over 5 requests per second"), "{over}");
        quotas.take(2, Metered::Requests, 1).expect("another tenant has its own bucket");
    }

    #[test]
    fn executions_and_queued_tests_have_their_own_limits() {
        let quotas =
            Quotas::new(QuotaSettings { executions_per_minute: 2, max_queued_tests: 10, ..QuotaSettings::default() });
        quotas.take(1, Metered::Executions, 2).unwrap();
        let over = quotas.take(1, Metered::Executions, 1).unwrap_err();
        assert_eq!(over.retry_after, Duration::from_secs(30));
        assert!(quotas.take(1, Metered::Executions, 3).unwrap_err().retry_after >= Duration::from_secs(3600));
        quotas.admit_tests(9).unwrap();
        assert!(quotas.admit_tests(10).unwrap_err().what.contains("this tenant's limit is 10"));
    }
}
