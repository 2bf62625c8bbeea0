//! Concurrency per model endpoint (scheme, host and port), adapted to the
//! endpoint's push-back (AIMD), so many tests against one rate-limited
//! server slow down together instead of all retrying into the wall.
//!
//! - A 429 or 503 sets the endpoint's limit to half of what was in flight
//!   when it came (or half the limit, if that is lower), at most once per
//!   [`DECREASE_GAP`], so one burst of refusals counts once. The refused
//!   request itself waits its `Retry-After` before it tries again (the
//!   HTTP capability's retry); the endpoint is not paused for everyone,
//!   which measured 5x slower against a server that limits concurrency
//!   (docs/BENCHMARKS.md).
//! - Each success grows the limit by `1 / limit`: about one more request in
//!   flight per round trip of the whole window (additive increase).
//! - The limit stays within 1..=`max`; every change of its whole part is
//!   logged with the reason.
//!
//! Invariant: a request holds an [`EndpointPermit`] while it is in flight,
//! so at most `floor(limit)` requests to one endpoint run at once (one
//! always may).
//!
//! With a [`SharedEndpoints`] (Redis), the deployment keeps one limit per
//! endpoint for all its processes: each process reports its successes and
//! push-backs every [`SYNC_INTERVAL`] (at once after a push-back) and takes
//! its part of the deployment's limit (the limit over the processes). The
//! hot path stays local: acquiring and releasing never wait for Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Refusals closer together than this halve the limit once.
pub const DECREASE_GAP: Duration = Duration::from_millis(100);
/// How often a process merges its endpoint figures with the deployment's.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// What one process tells the deployment about one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointReport {
    pub endpoint: String,
    /// Successes since the last report.
    pub successes: u64,
    /// Requests this process had in flight at a push-back since the last
    /// report (the most, if several).
    pub pushed_back_in_flight: Option<u32>,
}

/// The deployment's limits, as a [`SharedEndpoints`] answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentLimits {
    /// Endpoint -> the limit for the whole deployment.
    pub limits: Vec<(String, f64)>,
    /// Processes sharing them (live workers), at least 1.
    pub processes: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("shared endpoint limits unavailable: {0}")]
pub struct SharedEndpointsError(pub String);

/// Where a deployment keeps its endpoint limits (Redis).
#[async_trait::async_trait]
pub trait SharedEndpoints: Send + Sync {
    /// Merges `reports` into the deployment's limits and returns them all.
    async fn sync(&self, reports: &[EndpointReport]) -> Result<DeploymentLimits, SharedEndpointsError>;
}

/// `MODEL_ENDPOINT_AIMD` (true) and `MODEL_ENDPOINT_MAX_CONCURRENCY` (256).
#[derive(Debug, Clone, Copy)]
pub struct EndpointSettings {
    pub adaptive: bool,
    pub max: u32,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        Self { adaptive: true, max: 256 }
    }
}

/// One endpoint's figures, for `/system/resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub limit: u32,
    pub in_flight: u32,
    pub pushed_back: u64,
    /// The deployment's limit for all its processes, when shared (Redis).
    pub deployment_limit: Option<f64>,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: u32,
    last_decrease: Option<Instant>,
    pushed_back: u64,
    /// Successes not yet reported to the deployment.
    unreported_successes: u64,
    /// In flight at the latest push-back not yet reported.
    unreported_push_back: Option<u32>,
    deployment_limit: Option<f64>,
}

#[derive(Debug)]
struct Endpoint {
    name: String,
    state: Mutex<State>,
    freed: Notify,
    /// The process's push-back signal (see [`EndpointLimits::sync_with`]).
    pushed: Arc<Notify>,
}

impl Endpoint {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
pub struct EndpointLimits {
    settings: EndpointSettings,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    /// Woken by a push-back, so the deployment hears of it at once.
    pushed: Arc<Notify>,
}

impl EndpointLimits {
    pub fn new(settings: EndpointSettings) -> Self {
        Self {
            settings: EndpointSettings { max: settings.max.max(1), ..settings },
            endpoints: Mutex::default(),
            pushed: Arc::new(Notify::new()),
        }
    }

    fn endpoint(&self, name: &str) -> Arc<Endpoint> {
        let mut map = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Endpoint {
                    name: name.to_string(),
                    state: Mutex::new(State {
                        limit: f64::from(self.settings.max),
                        in_flight: 0,
                        last_decrease: None,
                        pushed_back: 0,
                        unreported_successes: 0,
                        unreported_push_back: None,
                        deployment_limit: None,
                    }),
                    freed: Notify::new(),
                    pushed: self.pushed.clone(),
                })
            })
            .clone()
    }

    /// Waits for room at `endpoint` until `deadline`; `None` when the
    /// deadline comes first.
    pub async fn acquire(&self, endpoint: &str, deadline: Instant) -> Option<EndpointPermit> {
        let ep = self.endpoint(endpoint);
        loop {
            // Registered before looking, so a release in between is not lost.
            let freed = ep.freed.notified();
            {
                let mut s = ep.lock();
                if s.in_flight < (s.limit.floor() as u32).max(1) {
                    s.in_flight += 1;
                    return Some(EndpointPermit {
                        endpoint: ep.clone(),
                        adaptive: self.settings.adaptive,
                        max: self.settings.max,
                        done: false,
                    });
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            let _ = tokio::time::timeout_at(deadline.into(), freed).await;
        }
    }

    /// Every endpoint's figures, by name.
    pub fn status(&self) -> Vec<EndpointStatus> {
        let map = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<EndpointStatus> = map
            .values()
            .map(|ep| {
                let s = ep.lock();
                EndpointStatus {
                    endpoint: ep.name.clone(),
                    limit: s.limit.floor() as u32,
                    in_flight: s.in_flight,
                    pushed_back: s.pushed_back,
                    deployment_limit: s.deployment_limit.map(|d| (d * 100.0).round() / 100.0),
                }
            })
            .collect();
        list.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        list
    }

    /// What happened at each endpoint since the last call (only endpoints
    /// with something to tell).
    pub fn take_reports(&self) -> Vec<EndpointReport> {
        let map = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        map.values()
            .filter_map(|ep| {
                let mut s = ep.lock();
                let report = EndpointReport {
                    endpoint: ep.name.clone(),
                    successes: std::mem::take(&mut s.unreported_successes),
                    pushed_back_in_flight: s.unreported_push_back.take(),
                };
                (report.successes > 0 || report.pushed_back_in_flight.is_some()).then_some(report)
            })
            .collect()
    }

    /// Takes this process's part of the deployment's limits.
    pub fn apply(&self, deployment: &DeploymentLimits) {
        if !self.settings.adaptive {
            return;
        }
        let processes = f64::from(deployment.processes.max(1));
        for (name, limit) in &deployment.limits {
            let ep = self.endpoint(name);
            let mut s = ep.lock();
            let before = s.limit.floor() as u32;
            s.deployment_limit = Some(*limit);
            s.limit = (limit / processes).clamp(1.0, f64::from(self.settings.max));
            let after = s.limit.floor() as u32;
            drop(s);
            if after != before {
                tracing::info!(endpoint = %name, from = before, to = after, deployment_limit = limit, processes = deployment.processes, "model endpoint limit set from the deployment's");
            }
            if after > before {
                ep.freed.notify_waiters();
            }
        }
    }

    /// Merges this process's figures with the deployment's every
    /// [`SYNC_INTERVAL`], and at once after a push-back, until `self` is
    /// dropped.
    pub async fn sync_with(self: Arc<Self>, shared: Arc<dyn SharedEndpoints>) {
        let weak = Arc::downgrade(&self);
        let signal = self.pushed.clone();
        drop(self);
        loop {
            let Some(limits) = weak.upgrade() else { return };
            let pushed = signal.notified();
            let reports = limits.take_reports();
            match shared.sync(&reports).await {
                Ok(deployment) => limits.apply(&deployment),
                Err(e) => {
                    tracing::debug!(error = %e, "endpoint limits not synced; each process adapts alone meanwhile");
                    limits.restore(reports);
                }
            }
            drop(limits);
            let _ = tokio::time::timeout(SYNC_INTERVAL, pushed).await;
        }
    }

    /// Keeps reports that could not be sent for the next sync.
    fn restore(&self, reports: Vec<EndpointReport>) {
        for report in reports {
            let ep = self.endpoint(&report.endpoint);
            let mut s = ep.lock();
            s.unreported_successes = s.unreported_successes.saturating_add(report.successes);
            s.unreported_push_back = s.unreported_push_back.max(report.pushed_back_in_flight);
        }
    }
}

/// A request in flight to one endpoint; dropping it frees its place.
#[derive(Debug)]
pub struct EndpointPermit {
    endpoint: Arc<Endpoint>,
    adaptive: bool,
    max: u32,
    done: bool,
}

impl EndpointPermit {
    /// The endpoint answered: the limit grows by `1 / limit`.
    pub fn succeeded(mut self) {
        if self.adaptive {
            let mut s = self.endpoint.lock();
            let before = s.limit.floor();
            s.limit = (s.limit + 1.0 / s.limit).min(f64::from(self.max));
            s.unreported_successes = s.unreported_successes.saturating_add(1);
            if s.limit.floor() > before {
                tracing::debug!(endpoint = %self.endpoint.name, limit = s.limit.floor() as u32, "model endpoint limit grows: requests succeed");
            }
        }
        self.release();
    }

    /// The endpoint pushed back (429 or 503): the limit halves.
    /// `retry_after` is only logged: the refused request waits it itself.
    pub fn pushed_back(mut self, retry_after: Option<Duration>) {
        {
            let mut s = self.endpoint.lock();
            s.pushed_back += 1;
            if self.adaptive {
                s.unreported_push_back = s.unreported_push_back.max(Some(s.in_flight));
                self.endpoint.pushed.notify_one();
                let now = Instant::now();
                if s.last_decrease.is_none_or(|t| now.duration_since(t) >= DECREASE_GAP) {
                    s.last_decrease = Some(now);
                    let before = s.limit.floor() as u32;
                    // This request is still counted in flight.
                    s.limit = (s.limit.min(f64::from(s.in_flight)) / 2.0).max(1.0);
                    tracing::info!(
                        endpoint = %self.endpoint.name,
                        from = before,
                        to = s.limit.floor() as u32,
                        retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
                        "model endpoint limit halved: the server pushed back"
                    );
                }
            }
        }
        self.release();
    }

    fn release(&mut self) {
        if !self.done {
            self.done = true;
            let mut s = self.endpoint.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            drop(s);
            self.endpoint.freed.notify_one();
        }
    }
}

impl Drop for EndpointPermit {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn push_back_halves_one_endpoint_and_success_grows_it_back() {
        let limits = EndpointLimits::new(EndpointSettings { adaptive: true, max: 8 });
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(limits.acquire("http://a", later(100)).await.unwrap());
        }
        let b = limits.acquire("http://b", later(100)).await.unwrap();
        // Six in flight when the refusal came: the limit becomes three.
        held.pop().unwrap().pushed_back(None);
        b.succeeded();
        let status = limits.status();
        assert_eq!((status[0].endpoint.as_str(), status[0].limit, status[0].pushed_back), ("http://a", 3, 1));
        assert_eq!((status[1].endpoint.as_str(), status[1].limit), ("http://b", 8));
        // The rest of the burst counts once.
        while let Some(p) = held.pop() {
            p.pushed_back(None);
        }
        assert_eq!(limits.status()[0].limit, 3);
        // Successes grow it back, additively.
        for _ in 0..40 {
            limits.acquire("http://a", later(100)).await.unwrap().succeeded();
        }
        assert_eq!(limits.status()[0].limit, 8);
    }

    #[tokio::test]
    async fn the_limit_bounds_requests_in_flight() {
        let limits = EndpointLimits::new(EndpointSettings { adaptive: true, max: 2 });
        let one = limits.acquire("e", later(100)).await.unwrap();
        let two = limits.acquire("e", later(100)).await.unwrap();
        assert!(limits.acquire("e", later(30)).await.is_none(), "a third waits for room");
        drop(one);
        let three = limits.acquire("e", later(100)).await.unwrap();
        // Halved to 1: with two in flight, nothing more starts until both end.
        three.pushed_back(Some(Duration::from_secs(1)));
        assert!(limits.acquire("e", later(30)).await.is_none());
        drop(two);
        assert!(limits.acquire("e", later(100)).await.is_some());
    }

    #[tokio::test]
    async fn without_adaptation_the_limit_stays() {
        let limits = EndpointLimits::new(EndpointSettings { adaptive: false, max: 4 });
        limits.acquire("e", later(100)).await.unwrap().pushed_back(Some(Duration::from_secs(5)));
        assert_eq!(limits.status()[0].limit, 4);
    }
    #[tokio::test]
    async fn reports_carry_successes_and_push_backs_and_the_deployment_sets_the_share() {
        let limits = EndpointLimits::new(EndpointSettings { adaptive: true, max: 64 });
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(limits.acquire("http://a", later(100)).await.unwrap());
        }
        held.pop().unwrap().pushed_back(None);
        held.pop().unwrap().succeeded();
        let reports = limits.take_reports();
        assert_eq!(
            reports,
            vec![EndpointReport { endpoint: "http://a".into(), successes: 1, pushed_back_in_flight: Some(4) }]
        );
        assert!(limits.take_reports().is_empty(), "reported once");
        // Unsent reports are kept for the next sync.
        limits.restore(reports.clone());
        assert_eq!(limits.take_reports(), reports);
        // Four processes share a deployment limit of 10: 2 each (floored),
        // and an endpoint this process never called is known from now on.
        let deployment =
            DeploymentLimits { limits: vec![("http://a".into(), 10.0), ("http://b".into(), 100.0)], processes: 4 };
        limits.apply(&deployment);
        let status = limits.status();
        assert_eq!((status[0].limit, status[0].deployment_limit), (2, Some(10.0)));
        assert_eq!((status[1].endpoint.as_str(), status[1].limit), ("http://b", 25));
    }
}
