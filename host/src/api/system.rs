//! The two operator snapshots, `queue/stats` and `system/resources`, as
//! typed structs: REST answers them on request and the Socket.IO server
//! pushes them to `queue-stats` and `system-resources` listeners.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::domain::ExecutionStatus;
use crate::engine::Reserved;
use crate::resources::Pressure;
use crate::sandbox::calibrate::FuelCalibration;

/// `GET /queue/stats` and the `queue-stats` event.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub waiting: u64,
    pub active: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Always 0: nothing is scheduled for later (kept from the original API).
    pub delayed: u64,
    pub backend: String,
    pub backend_note: Option<String>,
    pub executions_in_queue: u64,
    pub waiting_by_priority: WaitingByPriority,
    pub leases_reaped: u64,
    pub workers: u64,
    pub event_lag: u64,
    pub wait_time_ms: WaitTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaitingByPriority {
    pub low: u64,
    pub medium: u64,
    pub high: u64,
    pub critical: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaitTime {
    pub average: f64,
    pub max: f64,
}

/// `GET /system/resources` and the `system-resources` event: what this
/// process's resource manager sees and decides.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SystemResources {
    pub current_usage: CurrentUsage,
    pub limits: ResourceLimits,
    pub reserved_resources: Reserved,
    /// The smoothed signal is over a normal threshold.
    pub system_under_stress: bool,
    /// `normal`, `elevated` (only critical work starts) or `emergency`
    /// (nothing new starts but the floor of one test).
    pub pressure: Pressure,
    /// Ordinary work's concurrency limit now (AIMD, at most
    /// `max_concurrent_tests`).
    pub optimal_concurrency: usize,
    /// Critical work's concurrency limit now.
    pub critical_concurrency: usize,
    /// Why work waits, while the resource manager holds it back.
    pub holding_reason: Option<String>,
    /// Each model endpoint's concurrency limit, halved when the endpoint
    /// pushes back (429, 503) and grown back by successes.
    pub model_endpoints: Vec<crate::sandbox::endpoints::EndpointStatus>,
    /// Fuel per CPU millisecond measured on this machine at start: what
    /// `resource_limits.cpu_percent` is converted at.
    pub fuel_calibration: FuelCalibration,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurrentUsage {
    pub cpu_percent: f64,
    pub memory_mb: u64,
    pub memory_total_mb: u64,
    pub process_rss_mb: u64,
    /// The signals admission decides on (exponentially smoothed).
    pub smoothed_cpu_percent: f64,
    pub smoothed_memory_mb: f64,
    pub active_tests: usize,
    pub queue_length: u64,
    pub load_average: [f64; 3],
    pub timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = HostResourceLimits)]
pub struct ResourceLimits {
    pub max_cpu_percent: f64,
    pub max_memory_mb: u64,
    pub emergency_cpu_percent: f64,
    pub emergency_memory_mb: u64,
    pub max_concurrent_tests: usize,
    /// `RESOURCE_ADMISSION`: whether the thresholds hold work back.
    pub admission_enabled: bool,
}

fn queue_down(e: crate::queue::QueueError) -> ApiError {
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// The queue's figures; with `tenant`, its work counts are that tenant's
/// only (waiting, running, finished, per priority), and the deployment's
/// own figures (backend, workers, leases reaped, event lag, wait times)
/// stay as they are.
pub async fn queue_stats(s: &AppState, tenant: Option<i64>) -> Result<QueueStats, ApiError> {
    let mut counts = s.engine.queue().counts().await.map_err(queue_down)?;
    if let Some(tenant) = tenant {
        let (mut waiting, mut active, mut by_class, mut executions) = (0u64, 0u64, [0u64; 4], 0u64);
        for live in s.engine.queue().executions().await.map_err(queue_down)? {
            let owner = s.engine.store().execution(live.execution_id).await?.and_then(|e| e.tenant_id);
            if owner == Some(tenant) {
                waiting = waiting.saturating_add(u64::from(live.waiting));
                active = active.saturating_add(u64::from(live.running));
                let class = &mut by_class[crate::queue::QueueCounts::class_index(live.priority)];
                *class = class.saturating_add(u64::from(live.waiting));
                executions = executions.saturating_add(1);
            }
        }
        (counts.waiting, counts.active, counts.waiting_by_class, counts.executions) =
            (waiting, active, by_class, executions);
    }
    let executions = s.engine.store().execution_counts(tenant).await?;
    let count = |status: ExecutionStatus| executions.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
    let [low, medium, high, critical] = counts.waiting_by_class;
    Ok(QueueStats {
        waiting: counts.waiting,
        active: counts.active,
        completed: count(ExecutionStatus::Completed),
        failed: count(ExecutionStatus::Failed),
        cancelled: count(ExecutionStatus::Cancelled),
        delayed: 0,
        backend: s.engine.queue().backend().to_string(),
        backend_note: s.queue_note.clone(),
        executions_in_queue: counts.executions,
        waiting_by_priority: WaitingByPriority { low, medium, high, critical },
        leases_reaped: counts.reaped,
        workers: counts.workers,
        event_lag: counts.event_lag,
        wait_time_ms: WaitTime { average: counts.wait_ms_avg, max: counts.wait_ms_max },
    })
}

pub async fn system_resources(s: &AppState) -> Result<SystemResources, ApiError> {
    let status = s.resources.status();
    let counts = s.engine.queue().counts().await.map_err(queue_down)?;
    let t = &status.thresholds;
    let max = s.engine.config().max_concurrent_tests;
    let active = s.engine.active_tests();
    let reserved = s
        .engine
        .worker()
        .map_or(Reserved { tests: active, memory_mb: 0, memory_budget_mb: 0, cpu_percent: 0 }, |w| w.reserved());
    let usage = status.usage;
    Ok(SystemResources {
        current_usage: CurrentUsage {
            cpu_percent: usage.cpu_percent,
            memory_mb: usage.memory_mb,
            memory_total_mb: usage.memory_total_mb,
            process_rss_mb: usage.process_rss_mb,
            smoothed_cpu_percent: status.smoothed_cpu_percent,
            smoothed_memory_mb: status.smoothed_memory_mb,
            active_tests: active,
            queue_length: counts.waiting,
            load_average: usage.load_average,
            timestamp: usage.timestamp,
        },
        limits: ResourceLimits {
            max_cpu_percent: t.max_cpu_percent,
            max_memory_mb: t.max_memory_mb,
            emergency_cpu_percent: t.emergency_cpu_percent,
            emergency_memory_mb: t.emergency_memory_mb,
            max_concurrent_tests: max,
            admission_enabled: status.admission_enabled,
        },
        reserved_resources: reserved,
        system_under_stress: status.pressure != Pressure::Normal,
        pressure: status.pressure,
        optimal_concurrency: status.concurrency_limit.min(max),
        critical_concurrency: status.critical_concurrency_limit.min(max),
        holding_reason: status.holding_reason,
        model_endpoints: s.engine.sandbox().shared_endpoint_status(),
        fuel_calibration: s.engine.sandbox().fuel_calibration().clone(),
    })
}
