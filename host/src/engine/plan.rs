//! Turning a queue request into a stored execution and its jobs, with every
//! validation rule of DESIGN.md sections 3 and 4.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{
    Execution, ExecutionStatus, GenerationOptions, ModelRef, Priority, Prompt, Template, TestConfigurationPatch,
};
use crate::queue::Job;
use crate::sandbox::Sandbox;
use crate::store::{Store, StoreError};

/// The body of `POST /queue` (and of each `/batch` item).
#[derive(Debug, Clone, Deserialize)]
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
    let model = ModelRef::parse(&request.model, default_adapter, &sandbox.adapter_names())?;
    sandbox.adapter(&model.adapter).map_err(|e| PlanError::Invalid(e.to_string()))?;
    let priority = Priority::from_json(request.priority.as_ref())?;
    let configuration = request.configuration.unwrap_or_default().resolve()?;
    let options = request.options.unwrap_or_default();
    options.validate().map_err(|e| PlanError::Invalid(format!("options: {e}")))?;
    within_host_limits(&configuration, &host.limits)?;

    let all_cases = store.test_cases_of(card.id).await?;
    let cases = match request.test_case_ids.filter(|ids| !ids.is_empty()) {
        None => all_cases,
        Some(ids) => {
            let mut seen = HashSet::new();
            if let Some(dup) = ids.iter().find(|id| !seen.insert(**id)) {
                return Err(PlanError::Invalid(format!("test case {dup} is listed more than once")));
            }
            // By id, so that picking n of n cases stays linear.
            let mut by_id: HashMap<i64, _> = all_cases.into_iter().map(|tc| (tc.id, tc)).collect();
            let mut picked = Vec::with_capacity(ids.len());
            for id in ids {
                match by_id.remove(&id) {
                    Some(tc) => picked.push(tc),
                    None => match store.test_case(id).await? {
                        Some(other) => {
                            return Err(PlanError::Invalid(format!(
                                "test case {id} belongs to prompt card {}, not {}",
                                other.prompt_card_id, card.id
                            )));
                        }
                        None => return Err(PlanError::NotFound(format!("test case {id} not found"))),
                    },
                }
            }
            picked
        }
    };
    if cases.is_empty() {
        return Err(PlanError::Invalid(format!("prompt card {} has no test cases to run", card.id)));
    }

    let execution_id = Uuid::new_v4();
    let template = Template::parse(&card.prompt_template)
        .map_err(|e| PlanError::Invalid(format!("prompt card {}: {e}", card.id)))?;
    let test_case_ids: Vec<i64> = cases.iter().map(|tc| tc.id).collect();
    let shared_configuration = std::sync::Arc::new(configuration.clone());
    let mut jobs = Vec::with_capacity(cases.len());
    // Cases are consumed: their fields move into the jobs, so a large
    // execution does not hold every case twice while it is planned.
    for tc in cases {
        let variables = tc.variables_as_text();
        let mut prompt = template
            .render(&tc.input_variables)
            .map_err(|e| PlanError::Invalid(format!("test case {} ({}): {e}", tc.id, tc.name)))?;
        if model.chat {
            prompt = prompt.into_chat();
        }
        let chat = match &prompt {
            Prompt::Chat(messages) => messages.clone(),
            Prompt::Text(_) => Vec::new(),
        };
        for a in &tc.assertions {
            sandbox.assertion_plugin(&a.kind).map_err(|e| PlanError::Invalid(format!("test case {}: {e}", tc.id)))?;
        }
        jobs.push(Job {
            execution_id,
            test_case_id: tc.id,
            test_case_name: tc.name,
            attempt: 0,
            adapter: model.adapter.clone(),
            model: model.model.clone(),
            prompt: prompt.as_text(),
            chat,
            options: options.clone(),
            variables,
            expected_output: tc.expected_output,
            assertions: tc.assertions,
            threshold: tc.threshold,
            configuration: shared_configuration.clone(),
            previous_attempts: Vec::new(),
            queued_at_ms: None,
        });
    }
    let execution = Execution {
        execution_id,
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
