//! Who follows which execution, and what each follower still has to be
//! sent. Transport-free: the Socket.IO layer drains a [`Feed`] per client.
//!
//! Invariants:
//! - the hub never waits: an event is handed to each follower with a
//!   `try_send`, under one short lock and never across an `.await`;
//! - `test-complete` and `execution-complete` are queued for every follower
//!   in publication order and never dropped; a follower whose queue is full
//!   (it fell [`Hub::max_behind`] frames behind) is cut off with a reason;
//! - progress is coalesced twice: per execution, at most one snapshot per
//!   [`PROGRESS_INTERVAL`] reaches the followers (a finished snapshot goes at
//!   once), and per follower, a snapshot not yet sent is replaced by a newer
//!   one instead of queued behind it. So a 100,000-test execution sends each
//!   follower about ten snapshots a second, however fast it runs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::{ExecutionComplete, Listener, Origin, ProgressEvent};
use serde_json::value::RawValue;

use crate::domain::ExecutionProgress;

/// The least time between two progress snapshots of one execution.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// How many frames a follower may have queued before it is cut off.
pub const DEFAULT_MAX_BEHIND: usize = 10_000;

/// A follower's id in the hub.
pub type FollowerId = u64;

/// One thing to send to a follower.
#[derive(Debug, Clone)]
pub enum Frame {
    /// The follower now follows this execution (`subscription-confirmed`).
    Subscribed(Uuid),
    /// The follower's latest unsent snapshot of this execution (see
    /// [`Feed::take_progress`]).
    Progress(Uuid),
    /// The result, serialised once for every follower.
    TestComplete(Arc<RawValue>),
    ExecutionComplete(Arc<ExecutionComplete>),
}

/// The receiving end of one follower.
pub struct Feed {
    pub id: FollowerId,
    frames: mpsc::Receiver<Frame>,
    pending: Arc<Mutex<HashMap<Uuid, ExecutionProgress>>>,
    cut_off: watch::Receiver<Option<String>>,
}

impl Feed {
    /// The next frame; `None` once the follower is removed.
    pub async fn next(&mut self) -> Option<Frame> {
        self.frames.recv().await
    }

    /// The snapshot a [`Frame::Progress`] stands for (the newest one), or
    /// `None` when a later frame already took it.
    pub fn take_progress(&self, execution_id: Uuid) -> Option<ExecutionProgress> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&execution_id)
    }

    /// What resolves once the hub cuts this follower off.
    pub fn cut_off_signal(&self) -> CutOff {
        CutOff(self.cut_off.clone())
    }
}

/// Resolves with the reason once the hub cut a follower off.
pub struct CutOff(watch::Receiver<Option<String>>);

impl CutOff {
    pub async fn wait(&mut self) -> String {
        loop {
            if let Some(reason) = self.0.borrow().clone() {
                return reason;
            }
            if self.0.changed().await.is_err() {
                return "the progress service stopped".to_string();
            }
        }
    }
}

struct Follower {
    frames: mpsc::Sender<Frame>,
    pending: Arc<Mutex<HashMap<Uuid, ExecutionProgress>>>,
    cut_off: watch::Sender<Option<String>>,
}

#[derive(Default)]
struct State {
    followers: HashMap<FollowerId, Follower>,
    by_execution: HashMap<Uuid, HashSet<FollowerId>>,
    executions: HashMap<Uuid, Tracked>,
}

/// What the hub remembers of an execution it has seen events of.
struct Tracked {
    /// When a snapshot last went out, and the newest one held back.
    progress_sent: Instant,
    held_progress: Option<ExecutionProgress>,
    /// The most tests a sent snapshot counted: an older snapshot (another
    /// host's, overtaken on the way) is dropped, so percent never falls.
    most_completed: usize,
    /// `test-complete` events seen, and when the last one came.
    test_completes: usize,
    last_test_complete: Instant,
    /// An `execution-complete` waiting for the execution's last
    /// `test-complete`s (see [`END_QUIET`]).
    held_end: Option<ExecutionComplete>,
    /// The execution ended: later running snapshots are stale.
    ended: bool,
    /// The `execution-complete` that went out, for a follower that
    /// subscribes between reading its snapshot (still running) and joining
    /// (see [`Hub::follow`]): it would miss the end otherwise.
    sent_end: Option<Arc<ExecutionComplete>>,
    last_event: Instant,
}

impl Tracked {
    fn new(now: Instant) -> Self {
        Self {
            progress_sent: now.checked_sub(PROGRESS_INTERVAL).unwrap_or(now),
            held_progress: None,
            most_completed: 0,
            test_completes: 0,
            last_test_complete: now,
            held_end: None,
            ended: false,
            sent_end: None,
            last_event: now,
        }
    }
}

/// How long an `execution-complete` waits for `test-complete`s it has not
/// seen yet. Two API hosts store an execution's results side by side, and
/// the one that finishes the execution can publish its end a few
/// milliseconds before the other host's last `test-complete` has crossed
/// the relay. The end goes out once every test was seen, or after this
/// long without one.
pub const END_QUIET: Duration = Duration::from_millis(250);

/// How long an execution is remembered after its last event.
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// Counters for `/metrics` and the benches.
#[derive(Debug, Default)]
pub struct HubCounters {
    pub frames_queued: AtomicU64,
    pub progress_coalesced: AtomicU64,
    pub followers_cut_off: AtomicU64,
}

pub struct Hub {
    state: Mutex<State>,
    next_id: AtomicU64,
    max_behind: usize,
    pub counters: HubCounters,
}

impl Hub {
    /// A hub that cuts off followers `max_behind` frames behind.
    pub fn new(max_behind: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            max_behind: max_behind.max(1),
            counters: HubCounters::default(),
        })
    }

    pub fn max_behind(&self) -> usize {
        self.max_behind
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new follower, following nothing yet.
    pub fn join(&self) -> Feed {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.max_behind);
        let (cut_tx, cut_rx) = watch::channel(None);
        let pending = Arc::new(Mutex::new(HashMap::new()));
        self.lock().followers.insert(id, Follower { frames: tx, pending: pending.clone(), cut_off: cut_tx });
        Feed { id, frames: rx, pending, cut_off: cut_rx }
    }

    /// Removes a follower and every subscription of it.
    pub fn leave(&self, id: FollowerId) {
        let mut state = self.lock();
        state.followers.remove(&id);
        state.by_execution.retain(|_, ids| {
            ids.remove(&id);
            !ids.is_empty()
        });
    }

    /// Starts sending `id` the events of `execution_id`: first a
    /// [`Frame::Subscribed`], then the current `snapshot` and, for a finished
    /// execution, how it ended, all ahead of any later event.
    pub fn follow(
        &self,
        id: FollowerId,
        execution_id: Uuid,
        snapshot: Option<ExecutionProgress>,
        ended: Option<ExecutionComplete>,
    ) {
        let mut state = self.lock();
        let Some(follower) = state.followers.get(&id) else { return };
        let mut queued = self.try_queue(follower, Frame::Subscribed(execution_id));
        if let Some(p) = snapshot {
            let unsent = follower.pending.lock().unwrap_or_else(PoisonError::into_inner).insert(execution_id, p);
            if unsent.is_none() {
                queued &= self.try_queue(follower, Frame::Progress(execution_id));
            }
        }
        // The end already went out to the execution's followers before this
        // one joined (its snapshot was read while it still ran): send it.
        let missed = state.executions.get(&execution_id).and_then(|t| t.sent_end.clone());
        if let Some(c) = ended.map(Arc::new).or(missed) {
            queued &= self.try_queue(follower, Frame::ExecutionComplete(c));
        }
        if queued {
            state.by_execution.entry(execution_id).or_default().insert(id);
        } else {
            self.cut_off(&mut state, &[id]);
        }
    }

    /// Stops sending `id` the events of `execution_id`.
    pub fn unfollow(&self, id: FollowerId, execution_id: Uuid) {
        let mut state = self.lock();
        if let Some(ids) = state.by_execution.get_mut(&execution_id) {
            ids.remove(&id);
            if ids.is_empty() {
                state.by_execution.remove(&execution_id);
            }
        }
    }

    /// How many followers are connected.
    pub fn followers(&self) -> usize {
        self.lock().followers.len()
    }

    /// Hands `event` to the followers of its execution.
    pub fn dispatch(&self, event: &ProgressEvent) {
        let execution_id = event.execution_id();
        let now = Instant::now();
        let mut state = self.lock();
        let tracked = state.executions.entry(execution_id).or_insert_with(|| Tracked::new(now));
        tracked.last_event = now;
        match event {
            ProgressEvent::Progress(p) => {
                let finished = p.status.is_finished();
                if !finished && (tracked.ended || p.completed_tests < tracked.most_completed) {
                    return;
                }
                tracked.most_completed = tracked.most_completed.max(p.completed_tests);
                if finished || now.duration_since(tracked.progress_sent) >= PROGRESS_INTERVAL {
                    tracked.progress_sent = now;
                    tracked.held_progress = None;
                    tracked.ended |= finished;
                    self.send_progress(&mut state, p);
                } else {
                    tracked.held_progress = Some(p.clone());
                    self.counters.progress_coalesced.fetch_add(1, Ordering::Relaxed);
                }
            }
            ProgressEvent::TestComplete(r) => {
                tracked.test_completes += 1;
                tracked.last_test_complete = now;
                let release = tracked.held_end.take_if(|end| tracked.test_completes >= end.summary.total_tests);
                // Serialised only when someone follows the execution.
                if state.by_execution.contains_key(&execution_id) {
                    match serde_json::value::to_raw_value(&**r) {
                        Ok(json) => self.send(&mut state, execution_id, &Frame::TestComplete(Arc::from(json))),
                        Err(e) => {
                            tracing::error!(execution_id = %execution_id, error = %e, "a result could not be serialised")
                        }
                    }
                }
                if let Some(end) = release {
                    self.send(&mut state, execution_id, &Frame::ExecutionComplete(Arc::new(end)));
                }
            }
            ProgressEvent::ExecutionComplete(c) => {
                tracked.ended = true;
                if tracked.test_completes >= c.summary.total_tests {
                    let end = Arc::new(c.clone());
                    tracked.sent_end = Some(end.clone());
                    self.send(&mut state, execution_id, &Frame::ExecutionComplete(end));
                } else {
                    tracked.held_end = Some(c.clone());
                }
            }
        }
    }

    /// Sends what was held back and is now due: progress snapshots whose
    /// interval has passed, and ends that waited [`END_QUIET`]. Called every
    /// [`PROGRESS_INTERVAL`] by [`Hub::run_throttle`].
    pub fn flush_held(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        let mut due_progress = Vec::new();
        let mut due_ends = Vec::new();
        for tracked in state.executions.values_mut() {
            if tracked.held_progress.is_some() && now.duration_since(tracked.progress_sent) >= PROGRESS_INTERVAL {
                tracked.progress_sent = now;
                due_progress.extend(tracked.held_progress.take());
            }
            let quiet_since = tracked.last_test_complete.max(tracked.last_event);
            if tracked.held_end.is_some() && now.duration_since(quiet_since) >= END_QUIET {
                due_ends.extend(tracked.held_end.take());
            }
        }
        state.executions.retain(|_, t| {
            t.held_progress.is_some() || t.held_end.is_some() || now.duration_since(t.last_event) < FORGET_AFTER
        });
        for p in &due_progress {
            self.send_progress(&mut state, p);
        }
        for end in due_ends {
            let id = end.execution_id;
            let end = Arc::new(end);
            if let Some(tracked) = state.executions.get_mut(&id) {
                tracked.sent_end = Some(end.clone());
            }
            self.send(&mut state, id, &Frame::ExecutionComplete(end));
        }
    }

    /// Flushes held snapshots forever (spawn it once).
    pub async fn run_throttle(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            self.flush_held();
        }
    }

    fn send_progress(&self, state: &mut State, p: &ExecutionProgress) {
        let Some(ids) = state.by_execution.get(&p.execution_id) else { return };
        let mut behind = Vec::new();
        for id in ids {
            let Some(follower) = state.followers.get(id) else { continue };
            let unsent =
                follower.pending.lock().unwrap_or_else(PoisonError::into_inner).insert(p.execution_id, p.clone());
            if unsent.is_some() {
                // The queued frame will carry this newer snapshot.
                self.counters.progress_coalesced.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !self.try_queue(follower, Frame::Progress(p.execution_id)) {
                behind.push(*id);
            }
        }
        self.cut_off(state, &behind);
    }

    fn send(&self, state: &mut State, execution_id: Uuid, frame: &Frame) {
        let Some(ids) = state.by_execution.get(&execution_id) else { return };
        let behind: Vec<FollowerId> = ids
            .iter()
            .filter(|id| state.followers.get(id).is_some_and(|f| !self.try_queue(f, frame.clone())))
            .copied()
            .collect();
        self.cut_off(state, &behind);
    }

    /// Queues a frame; `false` when the follower's queue is full.
    fn try_queue(&self, follower: &Follower, frame: Frame) -> bool {
        match follower.frames.try_send(frame) {
            Ok(()) => {
                self.counters.frames_queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => false,
            // A follower whose feed is gone is removed by `leave`.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    fn cut_off(&self, state: &mut State, ids: &[FollowerId]) {
        for id in ids {
            if let Some(follower) = state.followers.remove(id) {
                let reason = format!("fell more than {} events behind; reconnect and subscribe again", self.max_behind);
                tracing::warn!(follower = id, "{reason}");
                let _ = follower.cut_off.send(Some(reason));
                self.counters.followers_cut_off.fetch_add(1, Ordering::Relaxed);
            }
            for followers in state.by_execution.values_mut() {
                followers.remove(id);
            }
        }
        state.by_execution.retain(|_, ids| !ids.is_empty());
    }
}

impl Listener for Hub {
    fn on_event(&self, event: &ProgressEvent, _origin: Origin) {
        self.dispatch(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExecutionStatus, ResultSummary, TestResult};

    fn progress(id: Uuid, completed: usize, status: ExecutionStatus) -> ProgressEvent {
        ProgressEvent::Progress(ExecutionProgress {
            job_id: id,
            execution_id: id,
            status,
            percent: completed as f64,
            message: String::new(),
            current_test: None,
            total_tests: 100,
            completed_tests: completed,
            passed_tests: completed,
            failed_tests: 0,
            updated_at: chrono::Utc::now(),
            estimated_time_remaining_ms: None,
        })
    }

    fn complete(id: Uuid) -> ProgressEvent {
        ProgressEvent::TestComplete(Box::new(TestResult::unrun(
            id,
            1,
            "t".into(),
            crate::domain::TestStatus::Skipped,
            String::new(),
        )))
    }

    fn drain(feed: &mut Feed) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(frame) = feed.frames.try_recv() {
            seen.push(match frame {
                Frame::Progress(id) => match feed.take_progress(id) {
                    Some(p) => format!("progress {}", p.completed_tests),
                    None => "progress taken".to_string(),
                },
                Frame::Subscribed(_) => "subscribed".to_string(),
                Frame::TestComplete(_) => "test".to_string(),
                Frame::ExecutionComplete(_) => "complete".to_string(),
            });
        }
        seen
    }

    /// A follower of `id` whose `Subscribed` frame is already taken.
    fn follower_of(hub: &Hub, id: Uuid) -> Feed {
        let mut feed = hub.join();
        hub.follow(feed.id, id, None, None);
        assert_eq!(drain(&mut feed), ["subscribed"]);
        feed
    }

    /// The snapshot was read while the execution ran, and it ended before
    /// the follower joined: the end still reaches it, once.
    #[test]
    fn a_follower_that_joins_just_after_the_end_still_gets_it() {
        let hub = Hub::new(100);
        let id = Uuid::new_v4();
        hub.dispatch(&ProgressEvent::ExecutionComplete(ExecutionComplete {
            execution_id: id,
            status: ExecutionStatus::Completed,
            summary: ResultSummary::default(),
        }));
        let mut feed = hub.join();
        let ProgressEvent::Progress(running) = progress(id, 3, ExecutionStatus::Running) else { unreachable!() };
        hub.follow(feed.id, id, Some(running), None);
        assert_eq!(drain(&mut feed), ["subscribed", "progress 3", "complete"]);
        // A follower of an execution that has not ended gets no end.
        let mut other = hub.join();
        hub.follow(other.id, Uuid::new_v4(), None, None);
        assert_eq!(drain(&mut other), ["subscribed"]);
    }

    #[test]
    fn only_followers_of_an_execution_receive_its_events() {
        let hub = Hub::new(100);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut fa = hub.join();
        let mut fb = hub.join();
        hub.follow(fa.id, a, None, None);
        hub.follow(fb.id, b, None, None);
        assert_eq!(drain(&mut fa), ["subscribed"]);
        assert_eq!(drain(&mut fb), ["subscribed"]);
        hub.dispatch(&complete(a));
        assert_eq!(drain(&mut fa), ["test"]);
        assert!(drain(&mut fb).is_empty());
        hub.unfollow(fa.id, a);
        hub.dispatch(&complete(a));
        assert!(drain(&mut fa).is_empty());
    }

    #[test]
    fn progress_is_coalesced_and_the_finished_snapshot_always_goes_out() {
        let hub = Hub::new(100);
        let id = Uuid::new_v4();
        let mut feed = follower_of(&hub, id);
        for n in 1..=50 {
            hub.dispatch(&progress(id, n, ExecutionStatus::Running));
            hub.dispatch(&complete(id));
        }
        hub.dispatch(&progress(id, 100, ExecutionStatus::Completed));
        hub.dispatch(&ProgressEvent::ExecutionComplete(ExecutionComplete {
            execution_id: id,
            status: ExecutionStatus::Completed,
            summary: ResultSummary::default(),
        }));
        let seen = drain(&mut feed);
        assert_eq!(seen.iter().filter(|s| *s == "test").count(), 50, "no test-complete is dropped");
        let snapshots: Vec<&String> = seen.iter().filter(|s| s.starts_with("progress")).collect();
        // The first snapshot goes at once; the other 49 running ones fall in
        // the same interval and are held; the finished one goes at once and
        // replaces the unsent one.
        assert!(snapshots.len() <= 2, "{seen:?}");
        assert_eq!(seen.iter().rev().find(|s| s.starts_with("progress")).map(String::as_str), Some("progress 100"));
        assert_eq!(seen.last().map(String::as_str), Some("complete"));
    }

    #[test]
    fn an_end_waits_for_test_completes_still_crossing_from_another_host() {
        let hub = Hub::new(100);
        let id = Uuid::new_v4();
        let mut feed = follower_of(&hub, id);
        hub.dispatch(&complete(id));
        let summary = ResultSummary { total_tests: 2, ..ResultSummary::default() };
        let end = ExecutionComplete { execution_id: id, status: ExecutionStatus::Completed, summary };
        hub.dispatch(&ProgressEvent::ExecutionComplete(end.clone()));
        assert_eq!(drain(&mut feed), ["test"], "the end waits for the second test");
        hub.dispatch(&complete(id));
        assert_eq!(drain(&mut feed), ["test", "complete"]);

        // A test that never arrives holds the end for END_QUIET only.
        let other = Uuid::new_v4();
        hub.follow(feed.id, other, None, None);
        drain(&mut feed);
        hub.dispatch(&ProgressEvent::ExecutionComplete(ExecutionComplete { execution_id: other, ..end }));
        hub.flush_held();
        assert!(drain(&mut feed).is_empty());
        std::thread::sleep(END_QUIET);
        hub.flush_held();
        assert_eq!(drain(&mut feed), ["complete"]);
    }

    #[test]
    fn an_older_snapshot_arriving_late_is_dropped() {
        let hub = Hub::new(100);
        let id = Uuid::new_v4();
        let mut feed = follower_of(&hub, id);
        hub.dispatch(&progress(id, 5, ExecutionStatus::Running));
        std::thread::sleep(PROGRESS_INTERVAL);
        hub.dispatch(&progress(id, 3, ExecutionStatus::Running));
        hub.flush_held();
        assert_eq!(drain(&mut feed), ["progress 5"]);
        hub.dispatch(&progress(id, 100, ExecutionStatus::Completed));
        std::thread::sleep(PROGRESS_INTERVAL);
        hub.dispatch(&progress(id, 99, ExecutionStatus::Running));
        hub.flush_held();
        assert_eq!(drain(&mut feed), ["progress 100"]);
    }

    #[test]
    fn held_progress_is_flushed_after_the_interval() {
        let hub = Hub::new(100);
        let id = Uuid::new_v4();
        let mut feed = follower_of(&hub, id);
        hub.dispatch(&progress(id, 1, ExecutionStatus::Running));
        assert_eq!(drain(&mut feed), ["progress 1"]);
        hub.dispatch(&progress(id, 2, ExecutionStatus::Running));
        hub.dispatch(&progress(id, 3, ExecutionStatus::Running));
        assert!(drain(&mut feed).is_empty());
        std::thread::sleep(PROGRESS_INTERVAL);
        hub.flush_held();
        assert_eq!(drain(&mut feed), ["progress 3"]);
    }

    #[test]
    fn a_subscriber_gets_the_snapshot_first_and_the_end_of_a_finished_execution() {
        let hub = Hub::new(100);
        let id = Uuid::new_v4();
        let mut feed = hub.join();
        let ProgressEvent::Progress(snapshot) = progress(id, 100, ExecutionStatus::Completed) else { unreachable!() };
        let ended = ExecutionComplete {
            execution_id: id,
            status: ExecutionStatus::Completed,
            summary: ResultSummary::default(),
        };
        hub.follow(feed.id, id, Some(snapshot), Some(ended));
        assert_eq!(drain(&mut feed), ["subscribed", "progress 100", "complete"]);
    }

    #[tokio::test]
    async fn a_follower_too_far_behind_is_cut_off_with_a_reason_and_others_are_not() {
        let hub = Hub::new(10);
        let id = Uuid::new_v4();
        let stalled = hub.join();
        let mut keeping_up = hub.join();
        hub.follow(stalled.id, id, None, None);
        hub.follow(keeping_up.id, id, None, None);
        drain(&mut keeping_up);
        let mut received = 0;
        for _ in 0..25 {
            hub.dispatch(&complete(id));
            received += drain(&mut keeping_up).len();
        }
        assert_eq!(received, 25);
        // The stalled one had its `Subscribed` frame queued too: 9 events fit.
        let reason = tokio::time::timeout(Duration::from_secs(1), stalled.cut_off_signal().wait()).await.unwrap();
        assert!(reason.contains("more than 10 events behind"), "{reason}");
        assert_eq!(hub.followers(), 1);
        assert_eq!(hub.counters.followers_cut_off.load(Ordering::Relaxed), 1);
    }
}
