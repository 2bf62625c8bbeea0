//! One attempt of one test: the model call (cached, single flight), then
//! the assertions, under `timeout_per_test`; and the test's final result,
//! built here and nowhere else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::ResponseCache;
use super::grader::TestGrader;
use crate::domain::{
    AssertionResult, AssertionSpec, Attempt, GradingUsage, PriceTable, TestResult, TestStatus, TokenUsage,
};
use crate::queue::Job;
use crate::sandbox::{CompletionRequest, Grading, Limits, Prompt, Sandbox, Subject};

/// What one attempt produced.
pub struct AttemptOutcome {
    pub status: TestStatus,
    pub output: String,
    pub assertions: Vec<AssertionResult>,
    pub cache_hit: bool,
    pub tokens: Option<TokenUsage>,
    /// What the assertions' grader calls cost.
    pub grading: Option<GradingUsage>,
    /// The model call's cost in US dollars, when its price is known (the
    /// grading's is in `grading`).
    pub cost: Option<f64>,
    pub error: Option<String>,
    pub elapsed_ms: u64,
    /// The attempt failed in a way that is the same every time for the
    /// same input (a plugin that loops, traps, or returns too much), so a
    /// retry cannot change it.
    pub deterministic: bool,
}

impl AttemptOutcome {
    fn error(message: String) -> Self {
        Self {
            status: TestStatus::Error,
            output: String::new(),
            assertions: vec![],
            cache_hit: false,
            tokens: None,
            grading: None,
            cost: None,
            error: Some(message),
            elapsed_ms: 0,
            deterministic: false,
        }
    }

    pub fn record(&self) -> Attempt {
        Attempt { status: self.status, execution_time_ms: self.elapsed_ms, error: self.error.clone() }
    }

    /// Should the test run again? Only a test that did not pass, with
    /// retries left, and not for a failure that a retry would repeat.
    pub fn wants_retry(&self, job: &Job) -> bool {
        let config = &job.configuration;
        self.status.is_failure() && !self.deterministic && config.retry_failed_tests && job.attempt < config.max_retries
    }

    /// The test's final result: this attempt's output and verdicts, every
    /// attempt's record, and `flaky` when it passed after failing.
    pub fn into_result(self, job: &Job) -> TestResult {
        let mut attempts = job.previous_attempts.clone();
        attempts.push(self.record());
        let flaky = self.status == TestStatus::Passed && attempts.iter().any(|a| a.status != TestStatus::Passed);
        TestResult {
            execution_id: job.execution_id,
            test_case_id: job.test_case_id,
            test_case_name: job.test_case_name.clone(),
            status: self.status,
            llm_output: self.output,
            assertion_results: self.assertions,
            execution_time_ms: attempts.iter().map(|a| a.execution_time_ms).fold(0, u64::saturating_add),
            attempts,
            flaky,
            cache_hit: self.cache_hit,
            tokens: self.tokens,
            error: self.error,
            prompt: Some(job.prompt.clone()),
            expected_output: job.expected_output.clone(),
            grading: self.grading,
            cost: self.cost,
        }
    }
}

/// What every attempt on a worker shares.
pub struct Services<'a> {
    pub sandbox: &'a Arc<Sandbox>,
    pub cache: &'a Arc<ResponseCache>,
    /// For what grader calls cost.
    pub prices: &'a Arc<PriceTable>,
}

/// Runs one attempt of `job` within its `timeout_per_test`, each plugin
/// use under `limits`.
pub async fn run(services: &Services<'_>, job: &Job, limits: &Limits) -> AttemptOutcome {
    let started = Instant::now();
    let timeout_ms = job.configuration.timeout_per_test;
    let mut outcome =
        match tokio::time::timeout(Duration::from_millis(timeout_ms), attempt(services, job, limits)).await {
            Ok(outcome) => outcome,
            Err(_) => AttemptOutcome::error(format!("timeout: the test exceeded timeout_per_test of {timeout_ms} ms")),
        };
    outcome.elapsed_ms = started.elapsed().as_millis() as u64;
    outcome
}

async fn attempt(services: &Services<'_>, job: &Job, limits: &Limits) -> AttemptOutcome {
    let Services { sandbox, cache, prices } = *services;
    let config = &job.configuration;
    let request = CompletionRequest {
        model: job.model.clone(),
        prompt: if job.chat.is_empty() { Prompt::Text(job.prompt.clone()) } else { Prompt::Chat(job.chat.clone()) },
        options: job.options.clone(),
        logprobs: job.logprobs,
    };
    let call = || sandbox.complete_for(job.tenant_id, &job.adapter, &request, limits);
    // A retry must ask the model again: the cached answer is what failed.
    let (completion, cache_hit) = if config.cache_enabled && job.attempt == 0 {
        cache.get_or_call(ResponseCache::key(job.tenant_id, &job.adapter, &request), call).await
    } else {
        (call().await, false)
    };
    let completion = match completion {
        Ok(c) => c,
        Err(e) => {
            let deterministic = e.is_deterministic();
            return AttemptOutcome { cache_hit, deterministic, ..AttemptOutcome::error(format!("{}: {e}", e.code())) };
        }
    };
    let mut subject = Subject {
        output: completion.text.clone(),
        expected: job.expected_output.clone(),
        test_case_id: job.test_case_id.to_string(),
        variables: job.variables.clone(),
        prompt: job.prompt.clone(),
        latency_ms: completion.duration.as_millis() as u64,
        tokens: completion.tokens,
        finish_reason: completion.finish_reason.as_str().into(),
        cost: job.price.zip(completion.tokens).map(|(price, tokens)| price.cost(tokens)),
        logprobs: completion.logprobs.as_deref().map(std::sync::Arc::from),
    };
    // promptfoo's `options.transform`: the assertions judge, and the result
    // keeps, the transformed output. A transform that fails is the test's
    // error, with the model's own output kept to show why.
    if let Some(script) = &job.transform {
        match sandbox.transform(script, &subject.output, subject.script_context(), limits).await {
            Ok(output) => subject.output = output,
            Err(e) => {
                return AttemptOutcome {
                    output: completion.text,
                    cache_hit,
                    tokens: completion.tokens,
                    cost: subject.cost,
                    deterministic: e.is_deterministic(),
                    ..AttemptOutcome::error(format!("{}: transform: {e}", e.code()))
                };
            }
        }
    }
    // With no assertions, an expected output is checked for equality.
    let implicit;
    let specs: &[AssertionSpec] = if job.assertions.is_empty() && job.expected_output.is_some() {
        implicit = [AssertionSpec::new("equals", serde_json::Value::Null)];
        &implicit
    } else {
        &job.assertions
    };
    // A grader only for a test that can use one: without a model named
    // anywhere, a grader call could only be `not-configured`, which is what
    // an assertion gets without one (and the planner refuses such tests).
    let grader = (job.grader.is_some() || specs.iter().any(|s| s.provider.is_some())).then(|| {
        Arc::new(TestGrader::new(
            sandbox.clone(),
            cache.clone(),
            prices.clone(),
            job.tenant_id,
            limits.clone(),
            config.cache_enabled && job.attempt == 0,
        ))
    });
    let grading = grader.clone().map(|grader| Grading { grader, default: job.grader.clone() });
    // `select-best` waits for the evaluation's other pairs; the rest are
    // judged now.
    let judged: std::borrow::Cow<'_, [AssertionSpec]> = if specs.iter().any(AssertionSpec::is_deferred) {
        specs.iter().filter(|s| !s.is_deferred()).cloned().collect::<Vec<_>>().into()
    } else {
        specs.into()
    };
    let outcomes =
        sandbox.evaluate_all(job.tenant_id, &job.plugin_versions, &judged, &subject, limits, grading.as_ref()).await;
    let score = weighted_score(&judged, &outcomes);
    let below_threshold = match (job.threshold, score) {
        (Some(threshold), Some(score)) if score < threshold => {
            Some(format!("weighted score {score:.3} is below the test's threshold {threshold}"))
        }
        _ => None,
    };
    let status = if outcomes.iter().any(|o| o.error.is_some()) {
        TestStatus::Error
    } else if job.threshold.is_some() && score.is_some() {
        // promptfoo's semantics: the threshold decides, not each assertion.
        if below_threshold.is_none() { TestStatus::Passed } else { TestStatus::Failed }
    } else if outcomes.iter().all(|o| o.passed) {
        TestStatus::Passed
    } else {
        TestStatus::Failed
    };
    let grading = grader.and_then(|g| g.usage());
    let cost = subject.cost;
    let failed = outcomes.iter().find(|o| o.error.is_some());
    let error = failed.map(|o| format!("{}: {}", o.assertion_type, o.reason)).or(below_threshold);
    let deterministic = failed.and_then(|o| o.error.as_ref()).is_some_and(|e| e.is_deterministic());
    let mut outcomes = outcomes.into_iter();
    let assertions = specs
        .iter()
        .map(|spec| match spec.is_deferred() {
            true => AssertionResult::pending(spec),
            false => outcomes.next().map_or_else(
                || AssertionResult::pending(spec),
                |o| AssertionResult { metric: spec.metric.clone(), ..AssertionResult::from(o) },
            ),
        })
        .collect();
    AttemptOutcome {
        status,
        output: subject.output,
        assertions,
        cache_hit,
        tokens: completion.tokens,
        grading,
        cost,
        error,
        elapsed_ms: 0,
        deterministic,
    }
}

/// The weighted mean of the assertions' scores (`weight` defaults to 1; a
/// weight of 0 leaves an assertion out), as promptfoo computes a test's
/// score; `None` when no assertion weighs anything.
pub fn weighted_score(specs: &[AssertionSpec], outcomes: &[crate::sandbox::AssertionOutcome]) -> Option<f64> {
    let (mut total, mut weights) = (0.0, 0.0);
    for (spec, outcome) in specs.iter().zip(outcomes) {
        let weight = spec.weight.filter(|w| w.is_finite() && *w >= 0.0).unwrap_or(1.0);
        total += weight * outcome.score.clamp(0.0, 1.0);
        weights += weight;
    }
    (weights > 0.0).then(|| total / weights)
}
