//! How long results take from settle (the worker's event added to the
//! queue) to durable (their batch committed by the store): a histogram
//! with 1 ms buckets up to [`FINE_MS`], read as quantiles by benches and
//! as a Prometheus histogram by `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::stats::{BUCKETS, HistogramSnapshot};

/// Lags up to this many milliseconds are counted to the millisecond;
/// longer ones in one overflow bucket.
pub const FINE_MS: usize = 2048;

#[derive(Clone)]
pub struct DurableLag {
    inner: Arc<Counts>,
}

struct Counts {
    /// `buckets[i]`: results whose lag was `i` ms; the last one, longer.
    buckets: Box<[AtomicU64]>,
    sum_ms: AtomicU64,
}

impl Default for DurableLag {
    fn default() -> Self {
        let buckets = (0..=FINE_MS).map(|_| AtomicU64::new(0)).collect();
        Self { inner: Arc::new(Counts { buckets, sum_ms: AtomicU64::new(0) }) }
    }
}

impl DurableLag {
    /// Counts `n` results that became durable `lag_ms` after they settled.
    pub fn record(&self, lag_ms: u64, n: u64) {
        let i = usize::try_from(lag_ms).map_or(FINE_MS, |ms| ms.min(FINE_MS));
        if let Some(bucket) = self.inner.buckets.get(i) {
            bucket.fetch_add(n, Ordering::Relaxed);
        }
        self.inner.sum_ms.fetch_add(lag_ms.saturating_mul(n), Ordering::Relaxed);
    }

    /// Results counted so far.
    pub fn count(&self) -> u64 {
        self.inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Sum of all lags, in milliseconds.
    pub fn sum_ms(&self) -> u64 {
        self.inner.sum_ms.load(Ordering::Relaxed)
    }

    /// The lag (ms) that a fraction `q` of results stayed within; `None`
    /// before any result, [`FINE_MS`] when it is in the overflow bucket.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self.inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let wanted = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (ms, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return Some(ms as u64);
            }
        }
        Some(FINE_MS as u64)
    }

    /// As a Prometheus histogram, in the buckets of the worker's histograms
    /// ([`BUCKETS`]). Lags are whole milliseconds: one of exactly a bound
    /// counts under it.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self.inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let buckets = BUCKETS
            .iter()
            .map(|&bound| {
                let upto = ((bound * 1000.0).round() as usize).min(FINE_MS - 1);
                (bound, counts.iter().take(upto + 1).sum())
            })
            .collect();
        HistogramSnapshot { buckets, count: counts.iter().sum(), sum_seconds: self.sum_ms() as f64 / 1e3 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_buckets_follow_the_recorded_lags() {
        let lag = DurableLag::default();
        assert_eq!(lag.quantile(0.99), None);
        lag.record(3, 90);
        lag.record(40, 9);
        lag.record(100_000, 1);
        assert_eq!(lag.count(), 100);
        assert_eq!(lag.quantile(0.5), Some(3));
        assert_eq!(lag.quantile(0.9), Some(3));
        assert_eq!(lag.quantile(0.95), Some(40));
        assert_eq!(lag.quantile(0.99), Some(40));
        assert_eq!(lag.quantile(1.0), Some(FINE_MS as u64));
        let snapshot = lag.snapshot();
        let at = |bound: f64| snapshot.buckets.iter().find(|(b, _)| *b == bound).map(|(_, n)| *n);
        assert_eq!((at(0.001), at(0.005), at(0.05), at(300.0)), (Some(0), Some(90), Some(99), Some(99)));
        assert_eq!(snapshot.count, 100);
        assert_eq!(lag.sum_ms(), 3 * 90 + 40 * 9 + 100_000);
    }
}
