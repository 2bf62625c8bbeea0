//! `/api/parallel-test-execution`: queue, batch, progress, results, active,
//! cancel, queue stats and system resources.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiQuery, IdPath};
use super::system::{QueueStats, SystemResources};
use super::{ApiError, ApiJson, AppState, Envelope, ErrorBody, Reply, Scope, ok};
use crate::domain::{ExecutionProgress, ExecutionStatus, ResultSummary, TestConfiguration, TestResult, TestStatus};
use crate::engine::{CancelOutcome, ExecutionRequest};

type St = State<Arc<AppState>>;

/// Largest batch accepted in one request.
const MAX_BATCH: usize = 1_000;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(queue))
        .routes(routes!(batch))
        .routes(routes!(active))
        .routes(routes!(list))
        .routes(routes!(queue_stats))
        .routes(routes!(system_resources))
        .routes(routes!(progress))
        .routes(routes!(results))
        .routes(routes!(cancel))
}

/// The reply of `POST /queue`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    pub execution_id: Uuid,
    /// The same as `execution_id` (the original system's name for it).
    pub job_id: Uuid,
    pub status: ExecutionStatus,
    pub total_tests: usize,
    pub priority: u8,
    pub model: String,
    pub configuration: TestConfiguration,
}

/// Queues a run of a card's test cases (all, or those listed) against a
/// model.
#[utoipa::path(post, path = "/queue", tag = "executions", request_body = ExecutionRequest, responses(
    (status = 202, body = Envelope<Queued>), (status = "4XX", body = ErrorBody), (status = "5XX", body = ErrorBody)))]
async fn queue(State(s): St, scope: Scope, ApiJson(request): ApiJson<ExecutionRequest>) -> Reply<Queued> {
    may_use_card(&s, scope, request.prompt_card_id).await?;
    scope.may_queue(&s, 1).await?;
    let execution = s.engine.submit(request).await?;
    Ok((
        StatusCode::ACCEPTED,
        ok(Queued {
            execution_id: execution.execution_id,
            job_id: execution.execution_id,
            status: ExecutionStatus::Queued,
            total_tests: execution.test_case_ids.len(),
            priority: execution.priority,
            model: execution.model,
            configuration: execution.configuration,
        }),
    ))
}

/// Several executions at once; each item is a `POST /queue` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    #[schema(value_type = Vec<ExecutionRequest>)]
    executions: Vec<Value>,
}

/// How one item of a batch fared.
#[derive(Debug, Serialize, ToSchema)]
struct BatchItem {
    index: usize,
    success: bool,
    /// When queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_id: Option<Uuid>,
    /// `queued`, or the HTTP status the item alone would have had.
    #[schema(value_type = Object)]
    status: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The reply of `POST /batch`.
#[derive(Debug, Serialize, ToSchema)]
struct BatchReply {
    batch_id: Uuid,
    total_executions: usize,
    successful_queued: usize,
    failed_to_queue: usize,
    results: Vec<BatchItem>,
}

/// Queues up to 1,000 executions; one bad item fails alone.
#[utoipa::path(post, path = "/batch", tag = "executions", request_body = BatchBody, responses(
    (status = 202, body = Envelope<BatchReply>), (status = "4XX", body = ErrorBody)))]
async fn batch(State(s): St, scope: Scope, ApiJson(body): ApiJson<BatchBody>) -> Reply<BatchReply> {
    if body.executions.is_empty() {
        return Err(ApiError::bad_request("executions must not be empty"));
    }
    if body.executions.len() > MAX_BATCH {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("at most {MAX_BATCH} executions per batch")));
    }
    scope.may_queue(&s, u32::try_from(body.executions.len()).unwrap_or(u32::MAX)).await?;
    let mut results = Vec::with_capacity(body.executions.len());
    let mut queued = 0;
    for (index, item) in body.executions.into_iter().enumerate() {
        // Each item is validated on its own: one bad item fails alone.
        let outcome = match serde_json::from_value::<ExecutionRequest>(item) {
            Err(e) => Err(ApiError::bad_request(e.to_string())),
            Ok(request) => match may_use_card(&s, scope, request.prompt_card_id).await {
                Ok(()) => s.engine.submit(request).await.map_err(ApiError::from),
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(e) => {
                queued += 1;
                results.push(BatchItem {
                    index,
                    success: true,
                    execution_id: Some(e.execution_id),
                    status: Value::from("queued"),
                    error: None,
                });
            }
            Err(e) => results.push(BatchItem {
                index,
                success: false,
                execution_id: None,
                status: Value::from(e.status.as_u16()),
                error: Some(e.message),
            }),
        }
    }
    let total = results.len();
    Ok((
        StatusCode::ACCEPTED,
        ok(BatchReply {
            batch_id: Uuid::new_v4(),
            total_executions: total,
            successful_queued: queued,
            failed_to_queue: total.saturating_sub(queued),
            results,
        }),
    ))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::bad_request(format!("`{id}` is not a valid execution id (a UUID)")))
}

/// With a key, card `id` must be the tenant's (404 otherwise); without
/// one, planning finds an unknown card itself, so nothing is read twice.
async fn may_use_card(s: &AppState, scope: Scope, id: i64) -> Result<(), ApiError> {
    if scope.0.is_some() {
        super::cards::find_card(s, scope, id).await?;
    }
    Ok(())
}

/// Execution `id` parsed and, with a key, checked to be the tenant's (404
/// otherwise, as for an unknown id). Without keys no lookup is made: the
/// engine answers 404 for unknown ids itself.
async fn owned(s: &AppState, scope: Scope, id: &str) -> Result<Uuid, ApiError> {
    let id = parse_id(id)?;
    if scope.0.is_some() {
        let execution = s.engine.store().execution(id).await?.filter(|e| scope.sees(e.tenant_id));
        if execution.is_none() {
            return Err(ApiError::not_found(format!("execution {id} not found")));
        }
    }
    Ok(id)
}

/// An execution's progress: live while it runs, its last snapshot after.
#[utoipa::path(get, path = "/{id}/progress", tag = "executions", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Envelope<ExecutionProgress>), (status = "4XX", body = ErrorBody)))]
async fn progress(State(s): St, scope: Scope, IdPath(id): IdPath<String>) -> Reply<ExecutionProgress> {
    let progress = s.engine.progress(owned(&s, scope, &id).await?).await?;
    Ok((StatusCode::OK, ok(progress)))
}

/// `GET /{id}/results`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionResults {
    pub execution_id: Uuid,
    pub status: ExecutionStatus,
    pub model: String,
    pub prompt_card_id: i64,
    pub summary: ResultSummary,
    pub results: Vec<TestResult>,
}

/// An execution's results so far, with their summary.
#[utoipa::path(get, path = "/{id}/results", tag = "executions", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Envelope<ExecutionResults>), (status = "4XX", body = ErrorBody)))]
async fn results(State(s): St, scope: Scope, IdPath(id): IdPath<String>) -> Reply<ExecutionResults> {
    let (execution, results, summary) = s.engine.results(owned(&s, scope, &id).await?).await?;
    Ok((
        StatusCode::OK,
        ok(ExecutionResults {
            execution_id: execution.execution_id,
            status: execution.status,
            model: execution.model,
            prompt_card_id: execution.prompt_card_id,
            summary,
            results,
        }),
    ))
}

/// One line of `GET /executions`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionListItem {
    pub execution_id: Uuid,
    pub prompt_card_id: i64,
    /// The card's title (absent when the card was deleted).
    pub card_title: Option<String>,
    pub model: String,
    pub status: ExecutionStatus,
    pub priority: u8,
    pub total_tests: usize,
    pub passed_tests: usize,
    pub failed_tests: usize,
    pub error_tests: usize,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// From start to completion (or to now while it runs).
    pub duration_ms: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// 1 to 200; 50 when absent.
    limit: Option<u64>,
    /// Executions to skip.
    offset: Option<u64>,
}

/// Largest page of `GET /executions`.
const MAX_LIST: u64 = 200;

/// `GET /executions?limit=50&offset=0`: executions newest first, with
/// their result counts.
#[utoipa::path(get, path = "/executions", tag = "executions", params(ListQuery), responses(
    (status = 200, body = Envelope<Vec<ExecutionListItem>>), (status = "4XX", body = ErrorBody)))]
async fn list(State(s): St, scope: Scope, ApiQuery(q): ApiQuery<ListQuery>) -> Reply<Vec<ExecutionListItem>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be from 1 to {MAX_LIST}")));
    }
    let store = s.engine.store();
    let now = chrono::Utc::now();
    let mut items = Vec::new();
    let mut titles: std::collections::HashMap<i64, Option<String>> = std::collections::HashMap::new();
    for e in store.recent_executions(scope.0, limit, q.offset.unwrap_or(0)).await? {
        let card_title = match titles.get(&e.prompt_card_id) {
            Some(t) => t.clone(),
            None => {
                let t = store.card(e.prompt_card_id).await?.map(|c| c.title);
                titles.insert(e.prompt_card_id, t.clone());
                t
            }
        };
        let counts = store.result_counts(e.execution_id).await?;
        let count = |status: TestStatus| counts.iter().filter(|(s, _)| *s == status).map(|(_, n)| *n).sum::<usize>();
        let duration_ms = e.started_at.map(|start| {
            let end = e.completed_at.unwrap_or(now);
            u64::try_from((end - start).num_milliseconds()).unwrap_or(0)
        });
        items.push(ExecutionListItem {
            execution_id: e.execution_id,
            prompt_card_id: e.prompt_card_id,
            card_title,
            model: e.model,
            status: e.status,
            priority: e.priority,
            total_tests: e.test_case_ids.len(),
            passed_tests: count(TestStatus::Passed),
            failed_tests: count(TestStatus::Failed),
            error_tests: count(TestStatus::Error),
            created_at: e.created_at,
            started_at: e.started_at,
            completed_at: e.completed_at,
            duration_ms,
        });
    }
    Ok((StatusCode::OK, ok(items)))
}

/// Progress of every execution queued or running.
#[utoipa::path(get, path = "/active", tag = "executions", responses(
    (status = 200, body = Envelope<Vec<ExecutionProgress>>), (status = "5XX", body = ErrorBody)))]
async fn active(State(s): St, scope: Scope) -> Reply<Vec<ExecutionProgress>> {
    let mut active = s.engine.active().await?;
    if scope.0.is_some() {
        let mut mine = Vec::with_capacity(active.len());
        for progress in active {
            let owner = s.engine.store().execution(progress.execution_id).await?.and_then(|e| e.tenant_id);
            if scope.sees(owner) {
                mine.push(progress);
            }
        }
        active = mine;
    }
    Ok((StatusCode::OK, ok(active)))
}

/// Cancels an execution: queued tests are dropped, running ones stopped.
/// Cancelling a finished execution changes nothing.
#[utoipa::path(delete, path = "/{id}", tag = "executions", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Envelope<CancelOutcome>), (status = "4XX", body = ErrorBody)))]
async fn cancel(State(s): St, scope: Scope, IdPath(id): IdPath<String>) -> Reply<CancelOutcome> {
    let outcome = s.engine.cancel(owned(&s, scope, &id).await?).await?;
    Ok((StatusCode::OK, ok(outcome)))
}

/// The queue: waiting, running and finished work, by priority.
#[utoipa::path(get, path = "/queue/stats", tag = "executions", responses(
    (status = 200, body = Envelope<QueueStats>), (status = "5XX", body = ErrorBody)))]
async fn queue_stats(State(s): St, scope: Scope) -> Reply<QueueStats> {
    Ok((StatusCode::OK, ok(super::system::queue_stats(&s, scope.0).await?)))
}

/// This host's CPU, memory and load, and the limits it admits work by.
#[utoipa::path(get, path = "/system/resources", tag = "executions", responses(
    (status = 200, body = Envelope<SystemResources>), (status = "5XX", body = ErrorBody)))]
async fn system_resources(State(s): St) -> Reply<SystemResources> {
    Ok((StatusCode::OK, ok(super::system::system_resources(&s).await?)))
}
