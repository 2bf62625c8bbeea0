//! The worker's table of running tests, with a count per execution kept as
//! entries come and go, so a claim asks for "what this worker holds per
//! execution" in time proportional to the executions, not the tests.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::queue::{Job, LeaseId};

/// A running test as its worker knows it.
pub struct Running {
    pub lease: LeaseId,
    pub job: Arc<Job>,
    pub abort: AbortHandle,
}

/// Invariant: `per_execution[e]` is the number of entries of `by_token`
/// whose lease is of execution `e`, and no count is zero.
#[derive(Default)]
pub struct RunningTable {
    by_token: HashMap<u64, Running>,
    per_execution: HashMap<Uuid, u32>,
}

impl RunningTable {
    pub fn insert(&mut self, token: u64, running: Running) {
        let execution_id = running.lease.execution_id;
        if let Some(replaced) = self.by_token.insert(token, running) {
            self.forget(replaced.lease.execution_id);
        }
        let n = self.per_execution.entry(execution_id).or_default();
        *n = n.saturating_add(1);
    }

    pub fn remove(&mut self, token: u64) -> Option<Running> {
        let running = self.by_token.remove(&token)?;
        self.forget(running.lease.execution_id);
        Some(running)
    }

    /// Removes and returns every entry that `pick` selects.
    pub fn remove_where(&mut self, pick: impl Fn(&Running) -> bool) -> Vec<Running> {
        let tokens: Vec<u64> = self.by_token.iter().filter(|(_, r)| pick(r)).map(|(t, _)| *t).collect();
        tokens.into_iter().filter_map(|t| self.remove(t)).collect()
    }

    pub fn drain(&mut self) -> Vec<Running> {
        self.per_execution.clear();
        self.by_token.drain().map(|(_, r)| r).collect()
    }

    pub fn tokens(&self) -> Vec<u64> {
        self.by_token.keys().copied().collect()
    }

    /// Running tests per execution.
    pub fn held(&self) -> Vec<(Uuid, u32)> {
        self.per_execution.iter().map(|(id, n)| (*id, *n)).collect()
    }

    fn forget(&mut self, execution_id: Uuid) {
        if let Some(n) = self.per_execution.get_mut(&execution_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_execution.remove(&execution_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(execution_id: Uuid, token: u64) -> Running {
        let job = crate::queue::conformance::job(execution_id, token as i64);
        let abort = tokio::spawn(async {}).abort_handle();
        Running { lease: LeaseId { execution_id, test_case_id: token as i64, token }, job: Arc::new(job), abort }
    }

    fn sorted(mut held: Vec<(Uuid, u32)>) -> Vec<(Uuid, u32)> {
        held.sort();
        held
    }

    #[tokio::test]
    async fn counts_follow_every_way_an_entry_leaves() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut table = RunningTable::default();
        for token in 1..=3 {
            table.insert(token, running(a, token));
        }
        table.insert(4, running(b, 4));
        assert_eq!(sorted(table.held()), sorted(vec![(a, 3), (b, 1)]));

        assert!(table.remove(2).is_some());
        assert!(table.remove(2).is_none(), "a second removal changes nothing");
        assert_eq!(sorted(table.held()), sorted(vec![(a, 2), (b, 1)]));

        let picked = table.remove_where(|r| r.lease.execution_id == b);
        assert_eq!(picked.len(), 1);
        assert_eq!(table.held(), vec![(a, 2)], "an execution with nothing running is not listed");

        // A token reused for another execution moves its count.
        table.insert(1, running(b, 1));
        assert_eq!(sorted(table.held()), sorted(vec![(a, 1), (b, 1)]));

        assert_eq!(table.drain().len(), 2);
        assert!(table.held().is_empty() && table.tokens().is_empty());
    }
}
