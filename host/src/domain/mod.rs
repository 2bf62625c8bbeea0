//! The domain model of DESIGN.md section 3, with the validation rules that
//! apply to it wherever it enters (API, suite import, CLI).

mod assertion;
mod config;
mod evaluation;
pub mod limits;
mod model;
mod prices;
mod priority;
mod prompt;
mod suggest;
mod template;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use assertion::{AssertionSpec, GraderModels, GradingUsage, TokenUsage};
pub use config::{ResourceLimits, TestConfiguration, TestConfigurationPatch};
pub use evaluation::{Evaluation, EvaluationPair};
pub use model::ModelRef;
pub use prices::{Price, PriceTable};
pub use priority::{Priority, PriorityClass};
pub use prompt::{CHAT_ROLES, ChatMessage, GenerationOptions, Prompt};
pub use suggest::closest;
pub use template::{FilterCall, Rendering, Template, TemplateError};

/// Input that breaks a rule of the domain; the message says which, in
/// words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// Whether the message mentions `text` (for tests and callers that
    /// match on it).
    pub fn contains(&self, text: &str) -> bool {
        self.0.contains(text)
    }
}

/// A prompt card: a template and its variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromptCard {
    pub id: i64,
    /// The tenant that owns it (`None`: made while keys were off). Never
    /// sent to clients.
    #[serde(skip)]
    pub tenant_id: Option<i64>,
    pub title: String,
    pub description: String,
    pub prompt_template: String,
    pub variables: Vec<String>,
    /// Custom template filters (`{{ x | name }}`): name -> JavaScript
    /// whose value is the function, run in the sandbox as the prompt is
    /// rendered. A suite's `nunjucksFilters` become these.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub filters: std::collections::BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A test case of a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestCase {
    pub id: i64,
    pub prompt_card_id: i64,
    pub name: String,
    pub input_variables: serde_json::Map<String, Value>,
    pub expected_output: Option<String>,
    pub assertions: Vec<AssertionSpec>,
    pub created_at: DateTime<Utc>,
    /// With one, the test passes when the weighted score of its
    /// assertions reaches it, whatever single assertions say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// promptfoo's `options.transform`: JavaScript (an expression, or a
    /// function body that returns) of `output` and `context` whose result
    /// replaces the model's output, for the assertions and in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
}

impl TestCase {
    /// Variables as strings (non-string JSON values are rendered as JSON).
    pub fn variables_as_text(&self) -> Vec<(String, String)> {
        self.input_variables
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl ExecutionStatus {
    /// Every status, in a stable order.
    pub const ALL: [ExecutionStatus; 5] = [Self::Queued, Self::Running, Self::Completed, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// One queued run of some test cases of a card against a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Execution {
    pub execution_id: Uuid,
    /// Its card's tenant. Never sent to clients.
    #[serde(skip)]
    pub tenant_id: Option<i64>,
    pub prompt_card_id: i64,
    pub test_case_ids: Vec<i64>,
    pub model: String,
    pub configuration: TestConfiguration,
    pub priority: u8,
    pub status: ExecutionStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TestStatus {
    Passed,
    Failed,
    Error,
    Skipped,
    Cancelled,
}

impl TestStatus {
    /// Every status, in a stable order (for counters and reports).
    pub const ALL: [TestStatus; 5] = [Self::Passed, Self::Failed, Self::Error, Self::Skipped, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Error => "error",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Did the test not pass (for `stop_on_first_failure` and retries)?
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Error)
    }
}

/// One attempt of a test, kept in its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub status: TestStatus,
    pub execution_time_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The stored result of one test case in one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestResult {
    pub execution_id: Uuid,
    pub test_case_id: i64,
    pub test_case_name: String,
    pub status: TestStatus,
    pub llm_output: String,
    pub assertion_results: Vec<AssertionResult>,
    pub execution_time_ms: u64,
    pub attempts: Vec<Attempt>,
    pub flaky: bool,
    pub cache_hit: bool,
    pub tokens: Option<TokenUsage>,
    pub error: Option<String>,
    /// The prompt as sent to the model (absent for tests that did not run,
    /// and in results stored before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The test case's expected output, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output: Option<String>,
    /// What its grader calls cost (model-graded assertions, `similar`),
    /// when it made any: billed to the test besides `tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grading: Option<GradingUsage>,
    /// What the test's model call cost in US dollars: its tokens at the
    /// model's price (absent when no price is known). What grading it cost
    /// is `grading.cost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// One assertion's result as stored and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssertionResult {
    #[serde(rename = "type")]
    pub assertion_type: String,
    pub passed: bool,
    pub score: f64,
    pub reason: String,
    pub fuel_used: u64,
    pub duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The assertion's named `metric`, which reports total per pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Not judged yet: `select-best` is decided across an evaluation's
    /// pairs once every pair has run; until then it counts for nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

impl AssertionResult {
    /// The placeholder of an assertion decided later (`select-best`).
    pub fn pending(spec: &AssertionSpec) -> Self {
        Self {
            assertion_type: spec.kind.clone(),
            passed: false,
            score: 0.0,
            reason: "decided across the evaluation's pairs once every pair has run".into(),
            fuel_used: 0,
            duration_us: 0,
            error: None,
            metric: spec.metric.clone(),
            pending: true,
        }
    }
}

/// A progress snapshot of an execution (DESIGN.md section 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionProgress {
    pub job_id: Uuid,
    pub execution_id: Uuid,
    pub status: ExecutionStatus,
    pub percent: f64,
    pub message: String,
    pub current_test: Option<String>,
    pub total_tests: usize,
    pub completed_tests: usize,
    pub passed_tests: usize,
    pub failed_tests: usize,
    pub updated_at: DateTime<Utc>,
    pub estimated_time_remaining_ms: Option<u64>,
}

/// The summary of an execution's results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultSummary {
    pub total_tests: usize,
    pub passed_tests: usize,
    pub failed_tests: usize,
    pub error_tests: usize,
    pub skipped_tests: usize,
    pub cancelled_tests: usize,
    pub flaky_tests: usize,
    pub total_execution_time: u64,
    pub average_execution_time: f64,
}

impl ResultSummary {
    pub fn of(results: &[TestResult]) -> Self {
        let mut summary = Self::default();
        for result in results {
            summary.add(result);
        }
        summary
    }

    /// Counts one more result (each test's final result once).
    pub fn add(&mut self, result: &TestResult) {
        self.count(result.status, result.execution_time_ms, result.flaky);
    }

    /// Counts a test settled without running (skipped, cancelled, or
    /// abandoned by its workers).
    pub fn add_unrun(&mut self, status: TestStatus) {
        self.count(status, 0, false);
    }

    /// Counts `tests` results of one status at once: their summed time and
    /// how many were flaky (a store's aggregate).
    pub fn add_group(&mut self, status: TestStatus, tests: usize, time_ms: u64, flaky: usize) {
        self.count_many(status, tests, time_ms, flaky);
    }

    fn count(&mut self, status: TestStatus, time_ms: u64, flaky: bool) {
        self.count_many(status, 1, time_ms, usize::from(flaky));
    }

    fn count_many(&mut self, status: TestStatus, tests: usize, time_ms: u64, flaky: usize) {
        self.total_tests = self.total_tests.saturating_add(tests);
        let counter = match status {
            TestStatus::Passed => &mut self.passed_tests,
            TestStatus::Failed => &mut self.failed_tests,
            TestStatus::Error => &mut self.error_tests,
            TestStatus::Skipped => &mut self.skipped_tests,
            TestStatus::Cancelled => &mut self.cancelled_tests,
        };
        *counter = counter.saturating_add(tests);
        self.flaky_tests = self.flaky_tests.saturating_add(flaky);
        self.total_execution_time = self.total_execution_time.saturating_add(time_ms);
        // Skipped and cancelled tests never ran: they do not lower the average.
        let ran = self.total_tests - self.skipped_tests - self.cancelled_tests;
        self.average_execution_time = if ran == 0 { 0.0 } else { self.total_execution_time as f64 / ran as f64 };
    }
}

impl TestResult {
    /// The result of a test settled without a run of its own: skipped,
    /// cancelled, or abandoned (`reason` says which).
    pub fn unrun(execution_id: Uuid, test_case_id: i64, name: String, status: TestStatus, reason: String) -> Self {
        Self {
            execution_id,
            test_case_id,
            test_case_name: name,
            status,
            llm_output: String::new(),
            assertion_results: vec![],
            execution_time_ms: 0,
            attempts: vec![],
            flaky: false,
            cache_hit: false,
            tokens: None,
            error: Some(reason),
            prompt: None,
            expected_output: None,
            grading: None,
            cost: None,
        }
    }
}

#[cfg(test)]
impl TestResult {
    /// A result with only its test's name and status, for unit tests.
    pub(crate) fn sample(name: &str, status: TestStatus) -> Self {
        Self {
            execution_id: Uuid::nil(),
            test_case_id: 0,
            test_case_name: name.into(),
            status,
            llm_output: String::new(),
            assertion_results: vec![],
            execution_time_ms: 0,
            attempts: vec![],
            flaky: false,
            cache_hit: false,
            tokens: None,
            error: None,
            prompt: None,
            expected_output: None,
            grading: None,
            cost: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: TestStatus, ms: u64, flaky: bool) -> TestResult {
        TestResult { test_case_id: 1, execution_time_ms: ms, flaky, ..TestResult::sample("t", status) }
    }

    #[test]
    fn summary_counts_each_status_and_averages_only_tests_that_ran() {
        let summary = ResultSummary::of(&[
            result(TestStatus::Passed, 10, false),
            result(TestStatus::Passed, 20, true),
            result(TestStatus::Failed, 30, false),
            result(TestStatus::Error, 40, false),
            result(TestStatus::Skipped, 0, false),
            result(TestStatus::Cancelled, 0, false),
        ]);
        assert_eq!(
            (summary.total_tests, summary.passed_tests, summary.failed_tests, summary.error_tests),
            (6, 2, 1, 1)
        );
        assert_eq!((summary.skipped_tests, summary.cancelled_tests, summary.flaky_tests), (1, 1, 1));
        assert_eq!(summary.total_execution_time, 100);
        assert_eq!(summary.average_execution_time, 25.0);
        assert_eq!(ResultSummary::of(&[result(TestStatus::Skipped, 0, false)]).average_execution_time, 0.0);
    }
}
