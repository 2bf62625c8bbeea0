//! The comparison of an evaluation's pairs: per pair pass rate, mean
//! score, latency p50/p95 and tokens; per test its verdict in each pair;
//! the best pair. `cardrun run` prints it and the API returns it, so the
//! two always agree.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Evaluation;
use crate::domain::{ExecutionProgress, ExecutionStatus, ResultSummary, TestResult, TestStatus};

/// One pair's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PairSummary {
    pub label: String,
    pub prompt: String,
    pub provider: String,
    pub model: String,
    pub execution_id: Uuid,
    pub status: ExecutionStatus,
    /// The pair's counts and times, as an execution's results have them
    /// (`total_tests`, `passed_tests`, ... at this level in JSON).
    #[serde(flatten)]
    pub summary: ResultSummary,
    /// Passed over total, 0..=1.
    pub pass_rate: f64,
    /// The mean over tests of each test's mean assertion score, 0..=1
    /// (`None` before any test finished).
    pub mean_score: Option<f64>,
    /// Per-test time (all attempts), milliseconds.
    pub latency_p50_ms: u64,
    pub latency_p95_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// What the pair cost in US dollars: its tests' `cost` and
    /// `grading.cost`, where known (a model without a price adds nothing);
    /// `None` when none is known.
    pub cost_usd: Option<f64>,
    /// Each named `metric` of its assertions, totalled, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSummary>,
}

/// One named metric over a pair's results: its assertions passed, and
/// their mean score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricSummary {
    pub name: String,
    /// Assertions of this metric that passed, of `total`.
    pub passed: usize,
    pub total: usize,
    /// Mean score of its assertions, 0..=1.
    pub mean_score: f64,
}

/// The named metrics of `results`, by name.
pub fn metrics(results: &[TestResult]) -> Vec<MetricSummary> {
    let mut by_name: std::collections::BTreeMap<&str, (usize, usize, f64)> = Default::default();
    // A pending `select-best` is not judged yet: it counts for nothing.
    for a in results.iter().flat_map(|r| &r.assertion_results).filter(|a| !a.pending) {
        let Some(name) = a.metric.as_deref() else { continue };
        let entry = by_name.entry(name).or_default();
        entry.0 += usize::from(a.passed);
        entry.1 += 1;
        entry.2 += a.score.clamp(0.0, 1.0);
    }
    by_name
        .into_iter()
        .map(|(name, (passed, total, scores))| MetricSummary {
            name: name.to_string(),
            passed,
            total,
            mean_score: scores / total.max(1) as f64,
        })
        .collect()
}

/// A test's verdict in each pair, in the pairs' order (`None`: no result).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestRow {
    pub name: String,
    pub verdicts: Vec<Option<TestStatus>>,
}

/// The comparison of an evaluation's pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvaluationResults {
    pub evaluation_id: Uuid,
    pub description: String,
    /// The label of the pair with the highest pass rate (ties: the most
    /// tests passed, the higher mean score, then the earlier pair); `None`
    /// with fewer than two pairs.
    pub best: Option<String>,
    pub pairs: Vec<PairSummary>,
    pub tests: Vec<TestRow>,
}

/// The results of `evaluation`, given each pair's execution status and
/// results (in the pairs' order, each in suite order).
pub fn results(evaluation: &Evaluation, per_pair: &[(ExecutionStatus, Vec<TestResult>)]) -> EvaluationResults {
    let pairs: Vec<PairSummary> = evaluation
        .pairs
        .iter()
        .zip(per_pair)
        .map(|(pair, (status, results))| {
            let summary = ResultSummary::of(results);
            let mut times: Vec<u64> = results.iter().map(|r| r.execution_time_ms).collect();
            times.sort_unstable();
            let scores: Vec<f64> = results.iter().filter_map(test_score).collect();
            let tokens = |f: fn(&crate::domain::TokenUsage) -> u32| {
                results.iter().filter_map(|r| r.tokens.as_ref()).map(|t| u64::from(f(t))).fold(0, u64::saturating_add)
            };
            PairSummary {
                label: pair.label.clone(),
                prompt: pair.prompt.clone(),
                provider: pair.provider.clone(),
                model: pair.model.clone(),
                execution_id: pair.execution_id,
                status: *status,
                pass_rate: ratio(summary.passed_tests, summary.total_tests),
                summary,
                mean_score: (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64),
                latency_p50_ms: percentile(&times, 50),
                latency_p95_ms: percentile(&times, 95),
                prompt_tokens: tokens(|t| t.prompt),
                completion_tokens: tokens(|t| t.completion),
                cost_usd: results
                    .iter()
                    .flat_map(|r| [r.cost, r.grading.and_then(|g| g.cost)])
                    .flatten()
                    .reduce(|a, b| a + b),
                metrics: metrics(results),
            }
        })
        .collect();
    let tests = rows(per_pair);
    let best = best_pair(&pairs).map(|b| pairs[b].label.clone());
    EvaluationResults {
        evaluation_id: evaluation.evaluation_id,
        description: evaluation.description.clone(),
        best,
        pairs,
        tests,
    }
}

/// One row per test, in the order tests first appear across the pairs
/// (the first pair's in the suite's order, then those only later pairs
/// run); a pair that runs only some tests (their `providers`/`prompts`)
/// has `None` in the others. Tests are matched by name, the n-th test of a
/// name in one pair with the n-th in another.
fn rows(per_pair: &[(ExecutionStatus, Vec<TestResult>)]) -> Vec<TestRow> {
    let mut index: HashMap<(&str, usize), usize> = HashMap::new();
    let mut rows: Vec<TestRow> = Vec::new();
    for (p, (_, results)) in per_pair.iter().enumerate() {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for r in results {
            let nth = seen.entry(r.test_case_name.as_str()).or_insert(0);
            let key = (r.test_case_name.as_str(), *nth);
            *nth += 1;
            let row = *index.entry(key).or_insert_with(|| {
                rows.push(TestRow { name: r.test_case_name.clone(), verdicts: vec![None; per_pair.len()] });
                rows.len() - 1
            });
            if let Some(slot) = rows.get_mut(row).and_then(|row| row.verdicts.get_mut(p)) {
                *slot = Some(r.status);
            }
        }
    }
    rows
}

/// A finished test's score: the mean of its assertions' scores, or 1/0
/// by its verdict when it has none.
fn test_score(r: &TestResult) -> Option<f64> {
    match r.status {
        TestStatus::Passed | TestStatus::Failed | TestStatus::Error => {}
        _ => return None,
    }
    if r.assertion_results.is_empty() {
        return Some(if r.status == TestStatus::Passed { 1.0 } else { 0.0 });
    }
    Some(r.assertion_results.iter().map(|a| a.score.clamp(0.0, 1.0)).sum::<f64>() / r.assertion_results.len() as f64)
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// The nearest-rank percentile of sorted `values` (0 when empty).
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The pair with the highest pass rate, then the most tests passed (more
/// evidence), then the highest mean score; a tie goes to the earlier pair.
/// (Not latency: it differs from run to run, and the best pair of the same
/// results must not.)
pub fn best_pair(pairs: &[PairSummary]) -> Option<usize> {
    if pairs.len() < 2 {
        return None;
    }
    let mut best = 0;
    for (i, p) in pairs.iter().enumerate().skip(1) {
        let b = &pairs[best];
        let score = |s: &PairSummary| s.mean_score.unwrap_or(0.0);
        let key = |s: &PairSummary| (s.pass_rate, s.summary.passed_tests, score(s));
        if key(p).partial_cmp(&key(b)) == Some(std::cmp::Ordering::Greater) {
            best = i;
        }
    }
    Some(best)
}

/// Progress of an evaluation: its pairs' progress added up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvaluationProgress {
    pub evaluation_id: Uuid,
    pub description: String,
    /// `running` while any pair is queued or running; then `completed` when
    /// every pair completed, else `failed` or `cancelled`.
    pub status: ExecutionStatus,
    pub percent: f64,
    pub total_tests: usize,
    pub completed_tests: usize,
    pub passed_tests: usize,
    pub failed_tests: usize,
    pub pairs: Vec<PairProgress>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PairProgress {
    pub label: String,
    pub execution_id: Uuid,
    pub status: ExecutionStatus,
    pub percent: f64,
    pub completed_tests: usize,
    pub total_tests: usize,
}

/// `evaluation`'s progress from each pair's execution progress (in the
/// pairs' order).
pub fn progress(evaluation: &Evaluation, per_pair: &[ExecutionProgress]) -> EvaluationProgress {
    let sum = |f: fn(&ExecutionProgress) -> usize| per_pair.iter().map(f).fold(0usize, usize::saturating_add);
    let (total, completed) = (sum(|p| p.total_tests), sum(|p| p.completed_tests));
    let statuses: Vec<ExecutionStatus> = per_pair.iter().map(|p| p.status).collect();
    let status = if statuses.iter().all(|s| *s == ExecutionStatus::Queued) {
        ExecutionStatus::Queued
    } else if statuses.iter().any(|s| !s.is_finished()) {
        ExecutionStatus::Running
    } else if statuses.iter().all(|s| *s == ExecutionStatus::Completed) {
        ExecutionStatus::Completed
    } else if statuses.contains(&ExecutionStatus::Failed) {
        ExecutionStatus::Failed
    } else {
        ExecutionStatus::Cancelled
    };
    EvaluationProgress {
        evaluation_id: evaluation.evaluation_id,
        description: evaluation.description.clone(),
        status,
        percent: if total == 0 { 100.0 } else { (ratio(completed, total) * 1000.0).round() / 10.0 },
        total_tests: total,
        completed_tests: completed,
        passed_tests: sum(|p| p.passed_tests),
        failed_tests: sum(|p| p.failed_tests),
        pairs: evaluation
            .pairs
            .iter()
            .zip(per_pair)
            .map(|(pair, p)| PairProgress {
                label: pair.label.clone(),
                execution_id: pair.execution_id,
                status: p.status,
                percent: p.percent,
                completed_tests: p.completed_tests,
                total_tests: p.total_tests,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, status: TestStatus) -> TestResult {
        TestResult::sample(name, status)
    }

    #[test]
    fn rows_match_tests_by_name_and_leave_gaps_where_a_pair_skips_one() {
        use TestStatus::{Failed, Passed};
        let per_pair = vec![
            (ExecutionStatus::Completed, vec![result("a", Passed), result("dup", Passed), result("dup", Failed)]),
            (ExecutionStatus::Completed, vec![result("dup", Failed), result("only-here", Passed)]),
        ];
        let rows = rows(&per_pair);
        let got: Vec<(&str, Vec<Option<TestStatus>>)> =
            rows.iter().map(|r| (r.name.as_str(), r.verdicts.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("a", vec![Some(Passed), None]),
                ("dup", vec![Some(Passed), Some(Failed)]),
                ("dup", vec![Some(Failed), None]),
                ("only-here", vec![None, Some(Passed)]),
            ]
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[7], 95), 7);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 95)), (50, 95));
        assert_eq!(percentile(&[1, 2, 3], 50), 2);
    }
}
