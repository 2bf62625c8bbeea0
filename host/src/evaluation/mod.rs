//! Evaluations: a suite's prompts x providers matrix run as one group of
//! executions, one per (prompt, provider) pair, with an id and a record in
//! the store. `submit.rs` imports the suite's cards and queues the pairs,
//! `summary.rs` turns the pairs' results into the comparison that `cardrun
//! run` prints and `/api/evaluations/{id}/results` returns, and
//! `compare.rs` finds the tests whose verdict changed between two runs, and
//! `select.rs` decides `select-best` across the pairs once they have run.

mod compare;
mod select;
mod submit;
mod summary;

pub use crate::domain::{Evaluation, EvaluationPair};

pub use compare::{Change, Comparison, Verdicts, compare};
pub use select::decide;
pub use submit::{EvaluationOptions, submit};
pub use summary::{
    EvaluationProgress, EvaluationResults, MetricSummary, PairProgress, PairSummary, TestRow, best_pair, metrics,
    progress, results,
};

#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    /// A pair could not be queued (bad model, limits): the message says which.
    #[error("{pair}: {source}")]
    Plan { pair: String, source: crate::engine::PlanError },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
