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
//! always may). The limits are per process; a deployment's workers adapt
//! each on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Refusals closer together than this halve the limit once.
pub const DECREASE_GAP: Duration = Duration::from_millis(100);

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub limit: u32,
    pub in_flight: u32,
    pub pushed_back: u64,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: u32,
    last_decrease: Option<Instant>,
    pushed_back: u64,
}

#[derive(Debug)]
struct Endpoint {
    name: String,
    state: Mutex<State>,
    freed: Notify,
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
}

impl EndpointLimits {
    pub fn new(settings: EndpointSettings) -> Self {
        Self { settings: EndpointSettings { max: settings.max.max(1), ..settings }, endpoints: Mutex::default() }
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
                    }),
                    freed: Notify::new(),
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
                }
            })
            .collect();
        list.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        list
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
}
