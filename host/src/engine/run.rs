//! The live state of one execution on this host, and the exactly-once
//! settling of its tests.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use chrono::Utc;
use tokio::sync::OnceCell;
use tokio::task::AbortHandle;

use crate::domain::{Attempt, Execution, ExecutionProgress, ExecutionStatus, ResultSummary, TestResult};

/// Why an execution stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// `DELETE`: the rest are `cancelled`; the execution ends `cancelled`.
    Cancelled,
    /// `stop_on_first_failure`: the rest are `skipped`; it ends `failed`.
    StoppedOnFailure,
}

#[derive(Default)]
pub struct RunState {
    /// Tests with a final result (each counted once).
    pub settled: HashSet<i64>,
    /// The summary of those results, kept as they settle so that finishing
    /// does not read every result back from the store.
    pub summary: ResultSummary,
    /// Running tests and how to abort them.
    pub in_flight: HashMap<i64, (AbortHandle, String)>,
    /// Attempts so far, per test.
    pub attempts: HashMap<i64, Vec<Attempt>>,
    pub halt: Option<Halt>,
    pub started: Option<Instant>,
    pub current_test: Option<String>,
    pub finished: bool,
}

/// One execution being run by this host.
pub struct Run {
    pub execution: Execution,
    pub total: usize,
    /// Each model is warmed once per execution, before its first test.
    pub warmed: OnceCell<()>,
    state: Mutex<RunState>,
}

impl Run {
    pub fn new(execution: Execution, already_settled: &[TestResult]) -> Self {
        let total = execution.test_case_ids.len();
        let mut state = RunState::default();
        for r in already_settled {
            if state.settled.insert(r.test_case_id) {
                state.summary.add(r);
            }
        }
        Self { execution, total, warmed: OnceCell::new(), state: Mutex::new(state) }
    }

    pub fn state(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The progress snapshot as of now.
    pub fn progress(&self, state: &RunState) -> ExecutionProgress {
        let completed = state.settled.len();
        let status = if state.finished {
            match state.halt {
                Some(Halt::Cancelled) => ExecutionStatus::Cancelled,
                Some(Halt::StoppedOnFailure) => ExecutionStatus::Failed,
                None => ExecutionStatus::Completed,
            }
        } else if state.started.is_some() {
            ExecutionStatus::Running
        } else {
            ExecutionStatus::Queued
        };
        let eta = state.started.filter(|_| completed > 0 && completed < self.total).map(|t| {
            let per_test = t.elapsed().as_secs_f64() / completed as f64;
            (per_test * (self.total - completed) as f64 * 1e3) as u64
        });
        ExecutionProgress {
            job_id: self.execution.execution_id,
            execution_id: self.execution.execution_id,
            status,
            percent: if self.total == 0 {
                100.0
            } else {
                (completed as f64 * 100.0 / self.total as f64 * 10.0).round() / 10.0
            },
            message: format!("{completed}/{} tests finished", self.total),
            current_test: state.current_test.clone(),
            total_tests: self.total,
            completed_tests: completed,
            passed_tests: state.summary.passed_tests,
            failed_tests: state.summary.failed_tests + state.summary.error_tests,
            updated_at: Utc::now(),
            estimated_time_remaining_ms: eta,
        }
    }
}
