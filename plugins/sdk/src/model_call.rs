//! The test's own model call, beyond the input every evaluator gets, for
//! evaluators exported with [`crate::export_graded_evaluator!`]: why the
//! model stopped, what the call cost and how likely its tokens were.

use crate::graded_assertion::cardrun::plugin::model_call as host;

/// Why generation stopped, as the model server said (`stop`, `length`,
/// `end_turn`...); empty when the adapter did not say.
pub fn finish_reason() -> String {
    host::finish_reason()
}

/// What the call cost in US dollars; `None` when the model has no known
/// price or the server counted no tokens.
pub fn cost() -> Option<f64> {
    host::cost()
}

/// The natural log-probability of each generated token, in order; `None`
/// unless the test has a type that reads them and the adapter returned
/// them.
pub fn logprobs() -> Option<Vec<f64>> {
    host::logprobs()
}
