//! `/api/parallel-test-execution`: queue, batch, progress, results, active,
//! cancel, queue stats and system resources.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::extract::{ApiQuery, IdPath};
use super::{ApiError, ApiJson, AppState, ok};
use crate::domain::{ExecutionStatus, ResultSummary, TestResult, TestStatus};
use crate::engine::ExecutionRequest;

type St = State<Arc<AppState>>;
type Reply = Result<(StatusCode, Json<Value>), ApiError>;

/// Largest batch accepted in one request.
const MAX_BATCH: usize = 1_000;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/queue", post(queue))
        .route("/batch", post(batch))
        .route("/active", get(active))
        .route("/executions", get(list))
        .route("/queue/stats", get(queue_stats))
        .route("/system/resources", get(system_resources))
        .route("/{id}/progress", get(progress))
        .route("/{id}/results", get(results))
        .route("/{id}", delete(cancel))
}

async fn queue(State(s): St, ApiJson(request): ApiJson<ExecutionRequest>) -> Reply {
    let execution = s.engine.submit(request).await?;
    Ok((
        StatusCode::ACCEPTED,
        ok(json!({
            "execution_id": execution.execution_id,
            "job_id": execution.execution_id,
            "status": "queued",
            "total_tests": execution.test_case_ids.len(),
            "priority": execution.priority,
            "model": execution.model,
            "configuration": execution.configuration,
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    executions: Vec<Value>,
}

async fn batch(State(s): St, ApiJson(body): ApiJson<BatchBody>) -> Reply {
    if body.executions.is_empty() {
        return Err(ApiError::bad_request("executions must not be empty"));
    }
    if body.executions.len() > MAX_BATCH {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("at most {MAX_BATCH} executions per batch")));
    }
    let mut results = Vec::with_capacity(body.executions.len());
    let mut queued = 0;
    for (index, item) in body.executions.into_iter().enumerate() {
        // Each item is validated on its own: one bad item fails alone.
        let outcome = match serde_json::from_value::<ExecutionRequest>(item) {
            Err(e) => Err(ApiError::bad_request(e.to_string())),
            Ok(request) => s.engine.submit(request).await.map_err(ApiError::from),
        };
        match outcome {
            Ok(e) => {
                queued += 1;
                results
                    .push(json!({"index": index, "success": true, "execution_id": e.execution_id, "status": "queued"}));
            }
            Err(e) => {
                results.push(json!({"index": index, "success": false, "status": e.status.as_u16(), "error": e.message}))
            }
        }
    }
    let total = results.len();
    Ok((
        StatusCode::ACCEPTED,
        ok(json!({
            "batch_id": Uuid::new_v4(),
            "total_executions": total,
            "successful_queued": queued,
            "failed_to_queue": total - queued,
            "results": results,
        })),
    ))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::bad_request(format!("`{id}` is not a valid execution id (a UUID)")))
}

async fn progress(State(s): St, IdPath(id): IdPath<String>) -> Reply {
    let progress = s.engine.progress(parse_id(&id)?).await?;
    Ok((StatusCode::OK, ok(progress)))
}

/// `GET /{id}/results`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionResults {
    pub execution_id: Uuid,
    pub status: ExecutionStatus,
    pub model: String,
    pub prompt_card_id: i64,
    pub summary: ResultSummary,
    pub results: Vec<TestResult>,
}

async fn results(State(s): St, IdPath(id): IdPath<String>) -> Reply {
    let (execution, results, summary) = s.engine.results(parse_id(&id)?).await?;
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u64>,
    offset: Option<u64>,
}

/// Largest page of `GET /executions`.
const MAX_LIST: u64 = 200;

/// `GET /executions?limit=50&offset=0`: executions newest first, with
/// their result counts.
async fn list(State(s): St, ApiQuery(q): ApiQuery<ListQuery>) -> Reply {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be from 1 to {MAX_LIST}")));
    }
    let store = s.engine.store();
    let now = chrono::Utc::now();
    let mut items = Vec::new();
    let mut titles: std::collections::HashMap<i64, Option<String>> = std::collections::HashMap::new();
    for e in store.recent_executions(limit, q.offset.unwrap_or(0)).await? {
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

async fn active(State(s): St) -> Reply {
    Ok((StatusCode::OK, ok(s.engine.active().await?)))
}

async fn cancel(State(s): St, IdPath(id): IdPath<String>) -> Reply {
    let outcome = s.engine.cancel(parse_id(&id)?).await?;
    Ok((StatusCode::OK, ok(outcome)))
}

async fn queue_stats(State(s): St) -> Reply {
    Ok((StatusCode::OK, ok(super::system::queue_stats(&s).await?)))
}

async fn system_resources(State(s): St) -> Reply {
    Ok((StatusCode::OK, ok(super::system::system_resources(&s).await?)))
}
