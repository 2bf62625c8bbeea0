//! `select-best`: decided across an evaluation's pairs once all of them
//! have run. Each test row (a test, by name, in every pair that ran it)
//! whose results hold a pending `select-best` is judged by the built-in
//! plugin with the row's outputs, in pair order, and this pair's index: the
//! grader is asked once per row (every pair sends the same prompt through
//! one response cache), and the pair it picks passes. Each pair's stored
//! result is rewritten with the verdict and its status recomputed.
//!
//! Crash safety: a row is written in one store write (one transaction), so
//! a crash leaves every row decided or still pending, never half of one;
//! pending rows are decided the next time the evaluation's results are
//! read. Deciding is idempotent for a row already decided: it is skipped.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::domain::{
    AssertionResult, AssertionSpec, Execution, GraderModels, GradingUsage, TestCase, TestResult, TestStatus,
};
use crate::engine::{Engine, ResponseCache, TestGrader};
use crate::sandbox::{Grading, Subject};
use crate::store::StoreError;

/// One evaluation is decided at a time in a process, so two readers of the
/// same results do not both ask the grader.
static DECIDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Decides the pending `select-best` assertions of an evaluation whose
/// pairs are `executions` with their stored `results` (same order), once
/// every pair has finished; `results` are updated in place as stored. The
/// number of rows decided.
pub async fn decide(
    engine: &Engine,
    executions: &[Execution],
    results: &mut [Vec<TestResult>],
) -> Result<usize, StoreError> {
    if executions.iter().any(|e| !e.status.is_finished()) || !results.iter().flatten().any(is_pending) {
        return Ok(0);
    }
    let _one_at_a_time = DECIDING.lock().await;
    // Another reader may have decided them while this one waited.
    for (execution, stored) in executions.iter().zip(results.iter_mut()) {
        *stored = engine.store().results(execution.execution_id).await?;
        stored.sort_by_key(|r| r.test_case_id);
    }
    let rows: BTreeSet<String> =
        results.iter().flatten().filter(|r| is_pending(r)).map(|r| r.test_case_name.clone()).collect();
    let cache = Arc::new(ResponseCache::default());
    let mut decided = 0;
    for name in rows {
        let row: Vec<(usize, usize)> = results
            .iter()
            .enumerate()
            .filter_map(|(p, pair)| pair.iter().position(|r| r.test_case_name == name).map(|i| (p, i)))
            .collect();
        let outputs: Vec<Value> = row.iter().map(|&(p, i)| Value::String(results[p][i].llm_output.clone())).collect();
        let mut rewritten = Vec::with_capacity(row.len());
        for (index, &(p, i)) in row.iter().enumerate() {
            let result = &results[p][i];
            if !is_pending(result) {
                continue;
            }
            let case = engine.store().test_case(result.test_case_id).await?;
            let mut result = result.clone();
            let judge = Judge { engine, execution: &executions[p], cache: &cache, outputs: &outputs, index };
            judge.decide(&mut result, case.as_ref()).await;
            rewritten.push((p, i, result));
        }
        let batch: Vec<TestResult> = rewritten.iter().map(|(_, _, r)| r.clone()).collect();
        engine.store().put_results(&batch).await?;
        for (p, i, result) in rewritten {
            results[p][i] = result;
        }
        tracing::info!(test = %name, pairs = row.len(), "select-best decided");
        decided += 1;
    }
    Ok(decided)
}

fn is_pending(result: &TestResult) -> bool {
    result.assertion_results.iter().any(|a| a.pending)
}

/// What judging one pair's result of a row needs.
struct Judge<'a> {
    engine: &'a Engine,
    execution: &'a Execution,
    cache: &'a Arc<ResponseCache>,
    outputs: &'a [Value],
    /// This pair's output among `outputs`.
    index: usize,
}

impl Judge<'_> {
    /// Judges each pending assertion of `result` and recomputes its status.
    /// Without its test case (deleted since), each is an error.
    async fn decide(&self, result: &mut TestResult, case: Option<&TestCase>) {
        let specs = case.map(|c| c.assertions.as_slice()).unwrap_or_default();
        let subject = Subject {
            output: result.llm_output.clone(),
            expected: result.expected_output.clone(),
            test_case_id: result.test_case_id.to_string(),
            prompt: result.prompt.clone().unwrap_or_default(),
            ..Subject::default()
        };
        let mut usages = Vec::new();
        for (j, judged) in result.assertion_results.iter_mut().enumerate() {
            if !judged.pending {
                continue;
            }
            // The test case may have been edited since: its assertion at
            // the same place must still be this one.
            let spec = specs.get(j).filter(|s| s.kind == judged.assertion_type && s.is_deferred());
            *judged = match spec {
                Some(spec) => {
                    let (outcome, usage) = self.evaluate(spec, &subject).await;
                    usages.extend(usage);
                    AssertionResult { metric: spec.metric.clone(), ..outcome }
                }
                None => AssertionResult {
                    passed: false,
                    score: 0.0,
                    pending: false,
                    error: Some("plugin_error".into()),
                    reason: "the test case changed or was deleted before `select-best` was decided".into(),
                    ..judged.clone()
                },
            };
        }
        for usage in usages {
            add_usage(&mut result.grading, usage);
        }
        restatus(result, case);
    }

    /// `spec` judged by its plugin with the row's outputs and this pair's
    /// index, under the pair's limits, through the grader it names (or the
    /// host's).
    async fn evaluate(&self, spec: &AssertionSpec, subject: &Subject) -> (AssertionResult, Option<GradingUsage>) {
        let sandbox = self.engine.sandbox();
        let config = self.engine.config();
        let tenant = self.execution.tenant_id;
        let known = sandbox.adapter_names_for(tenant);
        let resolve = |models: &GraderModels| models.resolved(&config.default_adapter, &known);
        let mut spec = spec.clone();
        let own = spec.provider.as_ref().map(resolve).transpose();
        let host = config.grader.as_ref().map(resolve).transpose();
        let (own, host) = match (own, host) {
            (Ok(own), Ok(host)) => (own, host),
            (Err(e), _) | (_, Err(e)) => return (failed(&spec, format!("grader: {}", e.0)), None),
        };
        spec.provider = own;
        let mut parameters = match spec.config.take() {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        parameters.insert("outputs".into(), Value::Array(self.outputs.to_vec()));
        parameters.insert("index".into(), Value::from(self.index));
        spec.config = Some(Value::Object(parameters));
        let limits = sandbox.limits_for(&self.execution.configuration);
        let grader = Arc::new(TestGrader::new(
            sandbox.clone(),
            self.cache.clone(),
            config.prices.clone(),
            tenant,
            limits.clone(),
            true,
        ));
        let grading = Grading { grader: grader.clone(), default: host };
        let outcome = sandbox.evaluate_pinned(tenant, &[], &spec, subject, &limits, Some(&grading)).await;
        (AssertionResult::from(outcome), grader.usage())
    }
}

/// An assertion that could not be judged.
fn failed(spec: &AssertionSpec, reason: String) -> AssertionResult {
    AssertionResult {
        passed: false,
        score: 0.0,
        reason,
        error: Some("grader_error".into()),
        pending: false,
        ..AssertionResult::pending(spec)
    }
}

/// The grader calls of a decision, added to the test's.
fn add_usage(total: &mut Option<GradingUsage>, more: GradingUsage) {
    let sum = match total.take() {
        None => more,
        Some(t) => GradingUsage {
            calls: t.calls.saturating_add(more.calls),
            cache_hits: t.cache_hits.saturating_add(more.cache_hits),
            tokens: crate::domain::TokenUsage {
                prompt: t.tokens.prompt.saturating_add(more.tokens.prompt),
                completion: t.tokens.completion.saturating_add(more.tokens.completion),
            },
            cost: t.cost.zip(more.cost).map(|(a, b)| a + b),
        },
    };
    *total = Some(sum);
}

/// The test's status from its assertions, as an attempt computes it: an
/// error if one erred; with the test's threshold, its weighted score
/// decides; else every assertion must pass. A result without assertions
/// judged (the model call failed) keeps its status.
fn restatus(result: &mut TestResult, case: Option<&TestCase>) {
    let judged = &result.assertion_results;
    if judged.is_empty() || result.status == TestStatus::Error && judged.iter().all(|a| a.error.is_none()) {
        return;
    }
    if let Some(erred) = judged.iter().find(|a| a.error.is_some()) {
        result.status = TestStatus::Error;
        result.error = Some(format!("{}: {}", erred.assertion_type, erred.reason));
        return;
    }
    let weights = case.map(|c| c.assertions.as_slice()).unwrap_or_default();
    let threshold = case.and_then(|c| c.threshold);
    let (mut total, mut weight_sum) = (0.0, 0.0);
    for (j, a) in judged.iter().enumerate() {
        let w = weights.get(j).and_then(|s| s.weight).filter(|w| w.is_finite() && *w >= 0.0).unwrap_or(1.0);
        total += w * a.score.clamp(0.0, 1.0);
        weight_sum += w;
    }
    let score = (weight_sum > 0.0).then(|| total / weight_sum);
    let (passed, error) = match (threshold, score) {
        (Some(t), Some(score)) if score < t => {
            (false, Some(format!("weighted score {score:.3} is below the test's threshold {t}")))
        }
        (Some(_), Some(_)) => (true, None),
        _ => (judged.iter().all(|a| a.passed), None),
    };
    result.status = if passed { TestStatus::Passed } else { TestStatus::Failed };
    result.error = error;
    result.flaky = passed && result.attempts.iter().any(|a| a.status != TestStatus::Passed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assertion(passed: bool, score: f64) -> AssertionResult {
        AssertionResult {
            assertion_type: "x".into(),
            passed,
            score,
            reason: String::new(),
            fuel_used: 0,
            duration_us: 0,
            error: None,
            metric: None,
            pending: false,
        }
    }

    fn result(assertions: Vec<AssertionResult>) -> TestResult {
        TestResult { test_case_id: 1, assertion_results: assertions, ..TestResult::sample("t", TestStatus::Passed) }
    }

    #[test]
    fn status_follows_the_decided_assertions() {
        let mut r = result(vec![assertion(true, 1.0), assertion(false, 0.0)]);
        restatus(&mut r, None);
        assert_eq!(r.status, TestStatus::Failed);
        let mut r = result(vec![assertion(true, 1.0), assertion(true, 1.0)]);
        restatus(&mut r, None);
        assert_eq!(r.status, TestStatus::Passed);
        let mut erred = assertion(false, 0.0);
        erred.error = Some("grader_error".into());
        let mut r = result(vec![assertion(true, 1.0), erred]);
        restatus(&mut r, None);
        assert_eq!(r.status, TestStatus::Error);
        let mut total = Some(GradingUsage { calls: 1, cost: Some(0.5), ..GradingUsage::default() });
        add_usage(&mut total, GradingUsage { calls: 2, cache_hits: 1, cost: Some(0.25), ..GradingUsage::default() });
        let total = total.unwrap();
        assert_eq!((total.calls, total.cache_hits, total.cost), (3, 1, Some(0.75)));
    }
}
