//! Starting an evaluation: the suite's cards imported (updated when they
//! exist), every pair queued, the evaluation stored.

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use super::{Evaluation, EvaluationError, EvaluationPair};
use crate::domain::{ModelRef, TestConfigurationPatch};
use crate::engine::{Engine, ExecutionRequest};
use crate::suite::SuitePlan;

/// How every pair of an evaluation runs.
#[derive(Debug, Clone, Default)]
pub struct EvaluationOptions {
    pub configuration: Option<TestConfigurationPatch>,
    pub priority: Option<Value>,
}

/// Imports `plan`'s cards and queues one execution per pair. An unknown
/// model stops the evaluation before anything is stored; a pair that
/// cannot be queued for another reason (host limits) stops it too, and the
/// pairs queued before it are cancelled.
pub async fn submit(
    engine: &Engine,
    description: &str,
    plan: &SuitePlan,
    options: &EvaluationOptions,
) -> Result<Evaluation, EvaluationError> {
    // Every model is checked before anything is stored or queued.
    let sandbox = engine.sandbox();
    // The cards are the tenant's (the plan says whose), and so are its adapters.
    let owner = plan.cards.first().and_then(|planned| planned.card.tenant_id);
    for provider in &plan.providers {
        ModelRef::parse(&provider.id, &engine.config().default_adapter, &sandbox.adapter_names_for(owner))
            .map_err(|e| EvaluationError::Plan { pair: provider.label.clone(), source: e.into() })?;
    }
    // `select-best` needs two outputs of a test to compare.
    if plan.pairs.len() < 2
        && let Some(case) =
            plan.cards.iter().flat_map(|c| &c.cases).find(|c| c.assertions.iter().any(|a| a.is_deferred()))
    {
        return Err(EvaluationError::Plan {
            pair: case.name.clone(),
            source: crate::engine::PlanError::Invalid(
                "`select-best` compares a test's outputs across an evaluation's pairs, and this one has a single pair: add prompts or providers".into(),
            ),
        });
    }
    let mut card_ids = Vec::with_capacity(plan.cards.len());
    let mut case_ids = Vec::with_capacity(plan.cards.len());
    for planned in &plan.cards {
        let imported = engine.store().import_card(&planned.card, &planned.cases).await?;
        let (card, ids) = (imported.card, imported.test_case_ids);
        card_ids.push(card.id);
        case_ids.push(ids);
    }
    let one_prompt = plan.cards.len() == 1;
    let one_provider = plan.providers.len() == 1;
    let mut pairs = Vec::with_capacity(plan.pairs.len());
    for pair in &plan.pairs {
        let (c, p) = (pair.card, pair.provider);
        let (planned, provider) = (&plan.cards[c], &plan.providers[p]);
        // Only the tests whose `providers`/`prompts` name this pair.
        let test_case_ids =
            pair.tests.as_ref().map(|tests| tests.iter().filter_map(|&n| case_ids[c].get(n).copied()).collect());
        let label = match (one_prompt, one_provider) {
            (true, _) => provider.label.clone(),
            (false, true) => planned.label.clone(),
            (false, false) => format!("{} · {}", planned.label, provider.label),
        };
        let request = ExecutionRequest {
            prompt_card_id: card_ids[c],
            test_case_ids,
            model: provider.id.clone(),
            configuration: options.configuration.clone(),
            priority: options.priority.clone(),
            options: (!provider.options.is_default()).then(|| provider.options.clone()),
            price: provider.price,
            in_evaluation: true,
        };
        let execution = match engine.submit(request).await {
            Ok(execution) => execution,
            Err(source) => {
                // Nothing half-queued: the pairs already queued are cancelled.
                for queued in &pairs {
                    let queued: &EvaluationPair = queued;
                    if let Err(e) = engine.cancel(queued.execution_id).await {
                        tracing::warn!(execution_id = %queued.execution_id, error = %e, "cancelling a pair failed");
                    }
                }
                return Err(EvaluationError::Plan { pair: label, source });
            }
        };
        pairs.push(EvaluationPair {
            label,
            prompt: planned.label.clone(),
            provider: provider.label.clone(),
            model: provider.id.clone(),
            prompt_card_id: card_ids[c],
            execution_id: execution.execution_id,
        });
    }
    let evaluation = Evaluation {
        evaluation_id: Uuid::new_v4(),
        // The cards' owner: one tenant imports a suite.
        tenant_id: plan.cards.first().and_then(|planned| planned.card.tenant_id),
        description: description.to_string(),
        pairs,
        created_at: Utc::now(),
    };
    engine.store().insert_evaluation(&evaluation).await?;
    tracing::info!(evaluation_id = %evaluation.evaluation_id, pairs = evaluation.pairs.len(), "evaluation queued");
    Ok(evaluation)
}
