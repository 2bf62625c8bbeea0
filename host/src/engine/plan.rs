//! Turning a queue request into a stored execution and its jobs, with every
//! validation rule of DESIGN.md sections 3 and 4.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{
    AssertionSpec, Execution, ExecutionStatus, GenerationOptions, GraderModels, ModelRef, Priority, Prompt, Rendering,
    Template, TestConfigurationPatch, limits,
};
use crate::queue::Job;
use crate::sandbox::Sandbox;
use crate::store::{Store, StoreError};

/// The body of `POST /queue` (and of each `/batch` item).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionRequest {
    pub prompt_card_id: i64,
    /// Empty or absent: every test case of the card.
    #[serde(default)]
    pub test_case_ids: Option<Vec<i64>>,
    pub model: String,
    #[serde(default)]
    pub configuration: Option<TestConfigurationPatch>,
    /// 0..=10 or low|medium|high|critical.
    #[serde(default)]
    pub priority: Option<Value>,
    /// Temperature, max_tokens and the like; absent: the model's defaults.
    #[serde(default)]
    pub options: Option<GenerationOptions>,
    /// The model's price in US dollars per token (promptfoo's provider
    /// `config.cost`); absent: the host's prices file or built-in table.
    #[serde(default)]
    pub price: Option<crate::domain::Price>,
    /// Queued as a pair of an evaluation, whose other pairs `select-best`
    /// compares this one's outputs with; never from a request body.
    #[serde(skip)]
    pub in_evaluation: bool,
}

/// Why a request cannot be queued.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::domain::Invalid> for PlanError {
    fn from(e: crate::domain::Invalid) -> Self {
        Self::Invalid(e.0)
    }
}

/// Why a test case's prompt could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] crate::domain::TemplateError),
    #[error("custom filter `{0}` has no function")]
    NoFunction(String),
    #[error("filter `{filter}`: {cause}")]
    Filter { filter: String, cause: crate::sandbox::SandboxError },
    #[error("custom filters are chained more than {MAX_FILTER_ROUNDS} deep in one expression")]
    TooDeep,
}

/// Validates `request` and builds the execution and its self-contained jobs.
pub async fn plan(
    store: &dyn Store,
    sandbox: &Sandbox,
    host: &super::EngineConfig,
    request: ExecutionRequest,
) -> Result<(Execution, Vec<Job>), PlanError> {
    let default_adapter = host.default_adapter.as_str();
    let card = store
        .card(request.prompt_card_id)
        .await?
        .ok_or_else(|| PlanError::NotFound(format!("prompt card {} not found", request.prompt_card_id)))?;
    let model = ModelRef::parse(&request.model, default_adapter, &sandbox.adapter_names_for(card.tenant_id))?;
    sandbox.adapter_for(card.tenant_id, &model.adapter).map_err(|e| PlanError::Invalid(e.to_string()))?;
    let priority = Priority::from_json(request.priority.as_ref())?;
    let configuration = request.configuration.unwrap_or_default().resolve()?;
    let options = request.options.unwrap_or_default();
    options.validate().map_err(|e| PlanError::Invalid(format!("options: {e}")))?;
    within_host_limits(&configuration, &host.limits)?;
    if let Some(price) = &request.price {
        price.validate()?;
    }
    let price = request.price.or_else(|| host.prices.price(&model.adapter, &model.model));

    let filter_names: Vec<String> = card.filters.keys().cloned().collect();
    let template = Template::parse_with_filters(&card.prompt_template, &filter_names)
        .map_err(|e| PlanError::Invalid(format!("prompt card {}: {e}", card.id)))?;
    let execution_id = Uuid::new_v4();
    let host_grader = host
        .grader
        .as_ref()
        .map(|g| g.resolved(default_adapter, &sandbox.adapter_names_for(card.tenant_id)))
        .transpose()
        .map_err(|e| PlanError::Invalid(format!("this host's --grader (DEFAULT_GRADER): {}", e.0)))?;
    let to_job = JobMaker {
        execution_id,
        tenant_id: card.tenant_id,
        template: &template,
        filters: &card.filters,
        model: &model,
        options: &options,
        configuration: Arc::new(configuration.clone()),
        sandbox,
        default_adapter,
        grader: host_grader.as_ref(),
        price,
        in_evaluation: request.in_evaluation,
    };
    let jobs = match request.test_case_ids.filter(|ids| !ids.is_empty()) {
        None => every_case(store, card.id, &to_job).await?,
        Some(ids) => picked_cases(store, card.id, &ids, &to_job).await?,
    };
    if jobs.is_empty() {
        return Err(PlanError::Invalid(format!("prompt card {} has no test cases to run", card.id)));
    }
    let test_case_ids: Vec<i64> = jobs.iter().map(|job| job.test_case_id).collect();
    let execution = Execution {
        execution_id,
        tenant_id: card.tenant_id,
        prompt_card_id: card.id,
        test_case_ids,
        model: model.to_string(),
        configuration,
        priority: priority.0,
        status: ExecutionStatus::Queued,
        created_at: Utc::now(),
        started_at: None,
        completed_at: None,
    };
    Ok((execution, jobs))
}

/// Test cases are read this many at a time, so a large card is never in
/// memory as test cases and as jobs at once (a 100,000-case card held
/// 140 MB of parsed cases while it was planned).
const PAGE: u32 = 1_000;

/// The card's test cases in id order, read a page at a time: each page is
/// turned into jobs before the next is read.
struct Cases<'a> {
    store: &'a dyn Store,
    card_id: i64,
    after: i64,
    page: std::vec::IntoIter<crate::domain::TestCase>,
}

impl<'a> Cases<'a> {
    fn of(store: &'a dyn Store, card_id: i64) -> Self {
        Self { store, card_id, after: 0, page: Vec::new().into_iter() }
    }

    /// The next test case; `None` at the end.
    async fn next(&mut self) -> Result<Option<crate::domain::TestCase>, PlanError> {
        if let Some(tc) = self.page.next() {
            return Ok(Some(tc));
        }
        let page = self.store.test_cases_after(self.card_id, self.after, PAGE).await?;
        if let Some(last) = page.last() {
            self.after = last.id;
        }
        self.page = page.into_iter();
        Ok(self.page.next())
    }
}

/// Every test case of the card, in id order, as jobs.
async fn every_case(store: &dyn Store, card_id: i64, to_job: &JobMaker<'_>) -> Result<Vec<Job>, PlanError> {
    let mut jobs = Vec::new();
    let mut cases = Cases::of(store, card_id);
    while let Some(tc) = cases.next().await? {
        jobs.push(to_job.make(tc).await?);
        limits::check_test_count(jobs.len())?;
    }
    Ok(jobs)
}

/// The listed test cases of the card, in the order listed, as jobs.
async fn picked_cases(
    store: &dyn Store,
    card_id: i64,
    ids: &[i64],
    to_job: &JobMaker<'_>,
) -> Result<Vec<Job>, PlanError> {
    limits::check_test_count(ids.len())?;
    let mut slot_of = HashMap::with_capacity(ids.len());
    for (slot, id) in ids.iter().enumerate() {
        if slot_of.insert(*id, slot).is_some() {
            return Err(PlanError::Invalid(format!("test case {id} is listed more than once")));
        }
    }
    // Only the listed ones are kept: linear in the card.
    let mut slots: Vec<Option<Job>> = std::iter::repeat_with(|| None).take(ids.len()).collect();
    let mut cases = Cases::of(store, card_id);
    while let Some(tc) = cases.next().await? {
        if let Some(&slot) = slot_of.get(&tc.id) {
            slots[slot] = Some(to_job.make(tc).await?);
        }
    }
    let mut jobs = Vec::with_capacity(ids.len());
    for (id, slot) in ids.iter().zip(slots) {
        match slot {
            Some(job) => jobs.push(job),
            None => {
                return Err(match store.test_case(*id).await? {
                    Some(other) => PlanError::Invalid(format!(
                        "test case {id} belongs to prompt card {}, not {card_id}",
                        other.prompt_card_id
                    )),
                    None => PlanError::NotFound(format!("test case {id} not found")),
                });
            }
        }
    }
    Ok(jobs)
}

/// What every job of one execution shares; turns a test case into its job.
struct JobMaker<'a> {
    execution_id: Uuid,
    tenant_id: Option<i64>,
    template: &'a Template,
    /// The card's custom filters, by name (JavaScript whose value is the
    /// function).
    filters: &'a std::collections::BTreeMap<String, String>,
    model: &'a ModelRef,
    options: &'a GenerationOptions,
    configuration: Arc<crate::domain::TestConfiguration>,
    sandbox: &'a Sandbox,
    default_adapter: &'a str,
    /// The host's grading models (`--grader`, `DEFAULT_GRADER`).
    grader: Option<&'a GraderModels>,
    price: Option<crate::domain::Price>,
    in_evaluation: bool,
}

impl JobMaker<'_> {
    /// The test case is consumed: its fields move into the job.
    async fn make(&self, tc: crate::domain::TestCase) -> Result<Job, PlanError> {
        let variables = tc.variables_as_text();
        let mut prompt = self
            .render(&tc.input_variables)
            .await
            .map_err(|e| PlanError::Invalid(format!("test case {} ({}): {e}", tc.id, tc.name)))?;
        if self.model.chat {
            prompt = prompt.into_chat();
        }
        let chat = match &prompt {
            Prompt::Chat(messages) => messages.clone(),
            Prompt::Text(_) => Vec::new(),
        };
        let mut assertions = tc.assertions;
        let mut needs_default_grader = false;
        for a in &mut assertions {
            let plugin = self
                .sandbox
                .assertion_plugin_for(self.tenant_id, &a.kind)
                .map_err(|e| PlanError::Invalid(format!("test case {}: {e}", tc.id)))?;
            if plugin.info().asks_grader {
                needs_default_grader |= self.resolve_grader(tc.id, a)?;
            }
        }
        if !self.in_evaluation && assertions.iter().any(AssertionSpec::is_deferred) {
            return Err(PlanError::Invalid(format!(
                "test case {} ({}): `select-best` compares a test's outputs across an evaluation's pairs; run the suite as an evaluation (POST /api/evaluations, cardrun run)",
                tc.id, tc.name
            )));
        }
        let logprobs = assertions.iter().any(AssertionSpec::reads_logprobs);
        if logprobs && !self.sandbox.adapter_for(self.tenant_id, &self.model.adapter).is_ok_and(|a| a.scores_tokens()) {
            return Err(PlanError::Invalid(format!(
                "test case {} ({}): `perplexity` needs the tokens' log-probabilities, which adapter `{}` does not return (`ollama` and `openai` do)",
                tc.id, tc.name, self.model.adapter
            )));
        }
        // Parsed lists keep the spare capacity they grew with; a queued job
        // lives for the whole run.
        assertions.shrink_to_fit();
        // Uploaded plugins judge this test in the version it is planned
        // with, whatever replaces them while it waits.
        let plugin_versions = self.sandbox.pins_for(self.tenant_id, &assertions);
        Ok(Job {
            execution_id: self.execution_id,
            tenant_id: self.tenant_id,
            test_case_id: tc.id,
            test_case_name: tc.name,
            attempt: 0,
            adapter: self.model.adapter.clone(),
            model: self.model.model.clone(),
            prompt: prompt.as_text(),
            chat,
            options: self.options.clone(),
            variables,
            expected_output: tc.expected_output,
            assertions,
            plugin_versions,
            threshold: tc.threshold,
            transform: tc.transform,
            logprobs,
            grader: if needs_default_grader { self.grader.cloned() } else { None },
            price: self.price,
            configuration: self.configuration.clone(),
            previous_attempts: Vec::new(),
            queued_at_ms: None,
        })
    }
}

/// Rounds of custom filter calls one render may take: one per level of
/// custom filters chained in one expression.
const MAX_FILTER_ROUNDS: usize = 8;

impl JobMaker<'_> {
    /// The test case's prompt: the template rendered with `vars`, its
    /// custom filters run in the sandbox (each distinct call once per
    /// execution) until it renders whole.
    async fn render(&self, vars: &serde_json::Map<String, Value>) -> Result<Prompt, RenderError> {
        let limits = self.sandbox.script_limits();
        for _ in 0..MAX_FILTER_ROUNDS {
            let calls = match self.template.render_step(vars)? {
                Rendering::Done(prompt) => return Ok(prompt),
                Rendering::Needs(calls) => calls,
            };
            for call in calls {
                let function =
                    self.filters.get(&call.filter).ok_or_else(|| RenderError::NoFunction(call.filter.clone()))?;
                let result = self
                    .sandbox
                    .run_script(function, &call.arguments, &limits)
                    .await
                    .map_err(|cause| RenderError::Filter { filter: call.filter.clone(), cause })?;
                self.template.learn(&call, result);
            }
        }
        Err(RenderError::TooDeep)
    }
}

impl JobMaker<'_> {
    /// Checks and writes in full the grading models of `assertion`, which
    /// asks a grader; whether it leans on the host's default models. With
    /// neither its own nor the host's, the test could only error: refused.
    fn resolve_grader(&self, test_case: i64, assertion: &mut AssertionSpec) -> Result<bool, PlanError> {
        let known = self.sandbox.adapter_names_for(self.tenant_id);
        let invalid = |e: crate::domain::Invalid| {
            PlanError::Invalid(format!("test case {test_case}: {}: {}", assertion.kind, e.0))
        };
        match &assertion.provider {
            Some(own) => {
                let resolved = own.resolved(self.default_adapter, &known).map_err(invalid)?;
                let complete = resolved.text.is_some();
                assertion.provider = Some(resolved);
                Ok(!complete)
            }
            None if self.grader.is_some() => Ok(true),
            None => Err(PlanError::Invalid(format!(
                "test case {test_case}: `{}` asks a grader model and none is configured: give the assertion a `provider`, the test `options.provider`, or start cardrun with --grader (DEFAULT_GRADER), e.g. --grader openai:gpt-4o-mini",
                assertion.kind
            ))),
        }
    }
}

/// An execution may not ask more of this host than its operator allows.
fn within_host_limits(c: &crate::domain::TestConfiguration, host: &super::HostLimits) -> Result<(), PlanError> {
    let over = |what: String| Err(PlanError::Invalid(what));
    if c.timeout_per_test > host.max_timeout_per_test_ms {
        return over(format!(
            "timeout_per_test {} ms is over this host's maximum of {} ms (MAX_TIMEOUT_PER_TEST_MS)",
            c.timeout_per_test, host.max_timeout_per_test_ms
        ));
    }
    if c.max_retries > host.max_retries {
        return over(format!(
            "max_retries {} is over this host's maximum of {} (MAX_RETRIES)",
            c.max_retries, host.max_retries
        ));
    }
    if c.resource_limits.memory_mb > host.plugin_memory_budget_mb {
        return over(format!(
            "resource_limits.memory_mb {} is over this host's plugin memory budget of {} MiB (PLUGIN_MEMORY_BUDGET_MB)",
            c.resource_limits.memory_mb, host.plugin_memory_budget_mb
        ));
    }
    Ok(())
}
