//! Why work waits, as every host sees it: the admissions the workers of
//! the deployment record in the queue (what their resource managers hold
//! back), read every [`REFRESH`], and announced as progress events when
//! they change (no test settles to tell followers otherwise).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::domain::ExecutionProgress;
use crate::progress::{ProgressEvent, ProgressService};
use crate::queue::{Hold, LiveExecution, Queue, waiting_reason};

/// How often the deployment's admissions are read.
pub const REFRESH: Duration = Duration::from_millis(500);

/// The latest admissions read; clones share them.
#[derive(Clone, Default)]
pub struct Admissions(Arc<Mutex<Vec<Option<Hold>>>>);

impl Admissions {
    /// Why `live` waits for resources, if it has waiting tests and every
    /// worker holds it back.
    pub fn reason_for(&self, live: &LiveExecution) -> Option<String> {
        if live.waiting == 0 {
            return None;
        }
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        waiting_reason(&all, live.priority).map(str::to_string)
    }

    /// The progress of `live`, saying why it waits if it does.
    pub fn progress_of(&self, live: &LiveExecution) -> ExecutionProgress {
        super::progress_of(live, self.reason_for(live).as_deref())
    }

    /// Reads the admissions every [`REFRESH`]; when they change, publishes
    /// the progress of every execution in the queue.
    pub async fn follow(self, queue: Arc<dyn Queue>, progress: Arc<ProgressService>) {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut read = match queue.admissions().await {
                Ok(read) => read,
                Err(e) => {
                    tracing::debug!(error = %e, "could not read the workers' admissions");
                    continue;
                }
            };
            // Order does not matter; sorted, so a change is a real one.
            read.sort();
            let changed = {
                let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                let changed = *known != read;
                *known = read;
                changed
            };
            if !changed {
                continue;
            }
            match queue.executions().await {
                Ok(live) => {
                    for execution in &live {
                        progress.publish(ProgressEvent::Progress(self.progress_of(execution)));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not list executions to announce a hold"),
            }
        }
    }
}
