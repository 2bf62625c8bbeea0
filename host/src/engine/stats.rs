//! What a worker measures about its own work, for `/metrics`: how long
//! tests waited in the queue, how long attempts ran, and how often the
//! response cache answered.
//!
//! Histograms have fixed buckets (seconds, as Prometheus expects) and are
//! updated with atomics only, so recording costs a few nanoseconds and no
//! lock on the test path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the buckets: from 1 ms to 5 minutes.
pub const BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0];

/// A Prometheus histogram: a count per bucket, the sum and the count.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or under each bound (not cumulative here).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or under it)`, cumulative.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0u64;
        let buckets = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                total = total.saturating_add(n.load(Ordering::Relaxed));
                (*bound, total)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A worker's figures since it started.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// From queueing (or re-queueing, for a retry) to claim.
    pub queue_wait: Histogram,
    /// One attempt: model call and assertions.
    pub run_time: Histogram,
    /// First attempts with the cache on that the cache answered...
    pub cache_hits: AtomicU64,
    /// ...and that asked the model.
    pub cache_misses: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_sum_is_kept() {
        let h = Histogram::default();
        for ms in [0, 3, 3, 40, 700, 400_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 6);
        assert!((s.sum_seconds - 400.746).abs() < 1e-9, "{}", s.sum_seconds);
        let at = |bound: f64| s.buckets.iter().find(|(b, _)| *b == bound).map(|(_, n)| *n);
        assert_eq!(at(0.001), Some(1));
        assert_eq!(at(0.005), Some(3));
        assert_eq!(at(0.05), Some(4));
        assert_eq!(at(1.0), Some(5));
        // Over the last bound: only in the count (the `+Inf` bucket).
        assert_eq!(at(300.0), Some(5));
    }
}
