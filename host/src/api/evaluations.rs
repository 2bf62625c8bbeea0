//! `/api/evaluations`: a suite's prompts x providers matrix as one group of
//! executions. `POST /` starts one, `GET /{id}` is its progress, `GET
//! /{id}/results` the comparison of its pairs (what `cardrun run` prints),
//! and `GET /{id}/compare/{other}` the tests whose verdict changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::IdPath;
use super::{ApiError, ApiJson, AppState, Envelope, ErrorBody, Reply, Scope, ok};
use crate::domain::{ExecutionStatus, TestConfigurationPatch};
use crate::engine::{Engine, PlanError};
use crate::evaluation::{
    self, Comparison, Evaluation, EvaluationError, EvaluationOptions, EvaluationProgress, EvaluationResults, Verdicts,
};
use crate::suite::SuiteProvider;

type St = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(progress))
        .routes(routes!(results))
        .routes(routes!(compare))
}

/// The body of `POST /api/evaluations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EvaluationRequest {
    /// The suite's YAML (promptfoo's format).
    suite: String,
    /// Relative path to text: everything its `file://` references may read.
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// Replaces the suite's providers, as `cardrun run --model` does.
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    configuration: Option<TestConfigurationPatch>,
    /// 0..=10 or low|medium|high|critical, for every pair.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    priority: Option<Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Started {
    evaluation_id: Uuid,
    status: ExecutionStatus,
    pairs: Vec<crate::domain::EvaluationPair>,
    total_tests: usize,
    /// Parts of the suite that were ignored, and why.
    warnings: Vec<String>,
}

/// Runs a suite: every prompt with every provider, one execution per pair.
#[utoipa::path(post, path = "/", tag = "evaluations", request_body = EvaluationRequest, responses(
    (status = 202, body = Envelope<Started>), (status = "4XX", body = ErrorBody)))]
async fn start(State(s): St, scope: Scope, ApiJson(request): ApiJson<EvaluationRequest>) -> Reply<Started> {
    let mut suite = super::cards::read_suite(&request.suite, request.files)?;
    if let Some(model) = request.model {
        suite.providers = vec![SuiteProvider {
            id: model.clone(),
            label: model,
            options: Default::default(),
            price: None,
            prompts: None,
        }];
    }
    if suite.providers.is_empty() {
        return Err(ApiError::bad_request("the suite names no providers: list them under `providers` or pass `model`"));
    }
    let plan = super::cards::plan_suite(&s.engine, &suite, scope).await?;
    scope.may_queue(&s, u32::try_from(plan.pairs.len()).unwrap_or(u32::MAX)).await?;
    let options = EvaluationOptions { configuration: request.configuration, priority: request.priority };
    let evaluation = evaluation::submit(&s.engine, &suite.description, &plan, &options).await?;
    let total_tests = plan.total_tests();
    Ok((
        StatusCode::ACCEPTED,
        ok(Started {
            evaluation_id: evaluation.evaluation_id,
            status: ExecutionStatus::Queued,
            pairs: evaluation.pairs,
            total_tests,
            warnings: suite.warnings,
        }),
    ))
}

/// Evaluation `id`, if the request's tenant may see it.
async fn find(engine: &Engine, scope: Scope, id: Uuid) -> Result<Evaluation, ApiError> {
    let found = engine.store().evaluation(id).await?.filter(|e| scope.sees(e.tenant_id));
    found.ok_or_else(|| ApiError::not_found(format!("evaluation {id} not found")))
}

/// Progress of every pair.
#[utoipa::path(get, path = "/{id}", tag = "evaluations", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Envelope<EvaluationProgress>), (status = "4XX", body = ErrorBody)))]
async fn progress(State(s): St, scope: Scope, IdPath(id): IdPath<Uuid>) -> Reply<EvaluationProgress> {
    let evaluation = find(&s.engine, scope, id).await?;
    let mut per_pair = Vec::with_capacity(evaluation.pairs.len());
    for pair in &evaluation.pairs {
        per_pair.push(s.engine.progress(pair.execution_id).await?);
    }
    Ok((StatusCode::OK, ok(evaluation::progress(&evaluation, &per_pair))))
}

/// The comparison of `id`'s pairs from the store.
async fn results_of(engine: &Engine, scope: Scope, id: Uuid) -> Result<EvaluationResults, ApiError> {
    let evaluation = find(engine, scope, id).await?;
    let mut executions = Vec::with_capacity(evaluation.pairs.len());
    let mut results = Vec::with_capacity(evaluation.pairs.len());
    for pair in &evaluation.pairs {
        let (execution, mut pair_results, _) = engine.results(pair.execution_id).await?;
        // Test case ids follow the suite's order.
        pair_results.sort_by_key(|r| r.test_case_id);
        executions.push(execution);
        results.push(pair_results);
    }
    // `select-best` is decided here once every pair has run (and stored).
    evaluation::decide(engine, &executions, &mut results).await?;
    let per_pair: Vec<_> = executions.iter().map(|e| e.status).zip(results).collect();
    Ok(evaluation::results(&evaluation, &per_pair))
}

/// Every test's verdict for every pair, side by side, with each pair's
/// summary.
#[utoipa::path(get, path = "/{id}/results", tag = "evaluations", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Envelope<EvaluationResults>), (status = "4XX", body = ErrorBody)))]
async fn results(State(s): St, scope: Scope, IdPath(id): IdPath<Uuid>) -> Reply<EvaluationResults> {
    Ok((StatusCode::OK, ok(results_of(&s.engine, scope, id).await?)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Compared {
    base: Uuid,
    other: Uuid,
    #[serde(flatten)]
    comparison: Comparison,
}

/// What changed from evaluation `id` to `other`: tests that now fail,
/// now pass, or came and went.
#[utoipa::path(get, path = "/{id}/compare/{other}", tag = "evaluations",
    params(("id" = Uuid, Path), ("other" = Uuid, Path)),
    responses((status = 200, body = Envelope<Compared>), (status = "4XX", body = ErrorBody)))]
async fn compare(State(s): St, scope: Scope, IdPath((id, other)): IdPath<(Uuid, Uuid)>) -> Reply<Compared> {
    let base = Verdicts::of(&results_of(&s.engine, scope, id).await?);
    let then = Verdicts::of(&results_of(&s.engine, scope, other).await?);
    Ok((StatusCode::OK, ok(Compared { base: id, other, comparison: evaluation::compare(&base, &then) })))
}

impl From<EvaluationError> for ApiError {
    fn from(e: EvaluationError) -> Self {
        match e {
            EvaluationError::Plan { pair, source } => match source {
                PlanError::Invalid(m) => ApiError::bad_request(format!("pair `{pair}`: {m}")),
                PlanError::NotFound(m) => ApiError::not_found(format!("pair `{pair}`: {m}")),
                PlanError::Store(s) => s.into(),
            },
            EvaluationError::Store(s) => s.into(),
        }
    }
}
