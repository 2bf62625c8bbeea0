//! The domain model of DESIGN.md section 3, with the validation rules that
//! apply to it wherever it enters (API, suite import, CLI).

mod config;
mod model;
mod priority;
mod template;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use config::{ResourceLimits, TestConfiguration, TestConfigurationPatch};
pub use model::ModelRef;
pub use priority::{Priority, PriorityClass};
pub use template::{Template, TemplateError};

use crate::sandbox::{AssertionOutcome, AssertionSpec, TokenUsage};

/// A prompt card: a template and its variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptCard {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub prompt_template: String,
    pub variables: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A test case of a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestCase {
    pub id: i64,
    pub prompt_card_id: i64,
    pub name: String,
    pub input_variables: serde_json::Map<String, Value>,
    pub expected_output: Option<String>,
    pub assertions: Vec<AssertionSpec>,
    pub created_at: DateTime<Utc>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub execution_id: Uuid,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub status: TestStatus,
    pub execution_time_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The stored result of one test case in one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// One assertion's result as stored and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

impl From<AssertionOutcome> for AssertionResult {
    fn from(o: AssertionOutcome) -> Self {
        Self {
            assertion_type: o.assertion_type,
            passed: o.passed,
            score: o.score,
            reason: o.reason,
            fuel_used: o.fuel_used,
            duration_us: o.duration_us,
            error: o.error.map(|e| e.code().to_string()),
        }
    }
}

/// A progress snapshot of an execution (DESIGN.md section 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        let count = |s: TestStatus| results.iter().filter(|r| r.status == s).count();
        let total_execution_time: u64 = results.iter().map(|r| r.execution_time_ms).sum();
        let ran = results.iter().filter(|r| !matches!(r.status, TestStatus::Skipped | TestStatus::Cancelled)).count();
        Self {
            total_tests: results.len(),
            passed_tests: count(TestStatus::Passed),
            failed_tests: count(TestStatus::Failed),
            error_tests: count(TestStatus::Error),
            skipped_tests: count(TestStatus::Skipped),
            cancelled_tests: count(TestStatus::Cancelled),
            flaky_tests: results.iter().filter(|r| r.flaky).count(),
            total_execution_time,
            average_execution_time: if ran == 0 { 0.0 } else { total_execution_time as f64 / ran as f64 },
        }
    }
}
