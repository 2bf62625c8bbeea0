//! `GET /metrics`: Prometheus text exposition (format 0.0.4).
//!
//! Every figure is read at scrape time from what already keeps it (the
//! engine's counters, the queue, the store, the resource monitor), so there
//! is no registry to keep in step; the format is a few lines per family,
//! written here rather than pulling in a metrics crate for it.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::{ApiError, AppState};
use crate::engine::stats::HistogramSnapshot;
use crate::resources::Pressure;

/// One metric family: `# HELP`, `# TYPE`, then `name{label="value"} n` per
/// sample.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(Option<(&str, &str)>, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (label, value) in samples {
        match label {
            Some((key, val)) => {
                let _ = writeln!(out, "{name}{{{key}=\"{}\"}} {value}", escape(val));
            }
            None => {
                let _ = writeln!(out, "{name} {value}");
            }
        }
    }
}

/// A label value as the text format wants it (endpoints come from
/// configuration, so they may hold anything).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A histogram family: cumulative `_bucket`s with `le`, `_sum`, `_count`.
fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound, n) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

fn mib(n: u64) -> f64 {
    n as f64 * 1_048_576.0
}

/// Prometheus text: tests, queue, executions, resources and latencies.
#[utoipa::path(get, path = "/metrics", tag = "system", responses(
    (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String),
    (status = "5XX", description = "The queue or store is unreachable", body = super::ErrorBody),
))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let engine = &state.engine;
    let queue =
        engine.queue().counts().await.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let executions = engine.store().execution_counts(None).await?;
    let usage = state.resources.usage();
    let mut out = String::with_capacity(2048);

    let finished: Vec<_> =
        engine.finished_counts().into_iter().map(|(s, n)| (Some(("status", s.as_str())), n as f64)).collect();
    family(
        &mut out,
        "cardrun_tests_finished_total",
        "counter",
        "Tests settled by this host since it started, by final status.",
        &finished,
    );
    family(&mut out, "cardrun_tests_running", "gauge", "Tests running now.", &[(None, engine.active_tests() as f64)]);
    family(
        &mut out,
        "cardrun_tests_max_concurrent",
        "gauge",
        "The global limit on running tests (MAX_CONCURRENT_TESTS).",
        &[(None, engine.config().max_concurrent_tests as f64)],
    );
    family(
        &mut out,
        "cardrun_queue_jobs",
        "gauge",
        "Test attempts in the queue, by state.",
        &[(Some(("state", "waiting")), queue.waiting as f64), (Some(("state", "active")), queue.active as f64)],
    );
    let classes = ["low", "medium", "high", "critical"];
    let by_class: Vec<_> =
        classes.iter().zip(queue.waiting_by_class).map(|(c, n)| (Some(("priority_class", *c)), n as f64)).collect();
    family(&mut out, "cardrun_queue_waiting", "gauge", "Waiting test attempts, by priority class.", &by_class);
    family(
        &mut out,
        "cardrun_queue_leases_reaped_total",
        "counter",
        "Expired leases returned to the queue (or settled as errors).",
        &[(None, queue.reaped as f64)],
    );
    family(
        &mut out,
        "cardrun_queue_workers",
        "gauge",
        "Workers that sent a heartbeat within one lease period.",
        &[(None, queue.workers as f64)],
    );
    family(
        &mut out,
        "cardrun_queue_event_lag",
        "gauge",
        "Queue events (results) not yet stored by any host.",
        &[(None, queue.event_lag as f64)],
    );
    let backend = engine.queue().backend();
    family(
        &mut out,
        "cardrun_queue_backend_info",
        "gauge",
        "Always 1; the backend is the label.",
        &[(Some(("backend", backend)), 1.0)],
    );
    let by_status: Vec<_> =
        executions.iter().map(|(status, n)| (Some(("status", status.as_str())), *n as f64)).collect();
    family(&mut out, "cardrun_executions", "gauge", "Executions in the store, by status.", &by_status);
    family(
        &mut out,
        "cardrun_assertion_plugins",
        "gauge",
        "Assertion plugins loaded (built-in ones and every tenant's included).",
        &[(None, engine.sandbox().assertion_plugin_count() as f64)],
    );
    histogram(
        &mut out,
        "cardrun_result_durable_seconds",
        "From a test's settle (its event in the queue) to its result committed by this host's store.",
        &engine.durable_lag().snapshot(),
    );
    let store_backend = engine.store().backend();
    family(
        &mut out,
        "cardrun_store_backend_info",
        "gauge",
        "Always 1; the store's backend is the label.",
        &[(Some(("backend", store_backend)), 1.0)],
    );
    if let Some(worker) = engine.worker() {
        let stats = worker.stats();
        histogram(
            &mut out,
            "cardrun_queue_wait_seconds",
            "From queueing (or re-queueing for a retry) to claim, of the tests this process claimed.",
            &stats.queue_wait.snapshot(),
        );
        histogram(
            &mut out,
            "cardrun_test_attempt_seconds",
            "One test attempt here: model call and assertions.",
            &stats.run_time.snapshot(),
        );
        let (hits, misses) = (stats.cache_hits.load(Relaxed), stats.cache_misses.load(Relaxed));
        family(
            &mut out,
            "cardrun_response_cache_requests_total",
            "counter",
            "First attempts with the cache on, by whether the response cache answered.",
            &[(Some(("result", "hit")), hits as f64), (Some(("result", "miss")), misses as f64)],
        );
        let reserved = worker.reserved();
        family(
            &mut out,
            "cardrun_reserved_plugin_memory_bytes",
            "gauge",
            "Plugin memory reserved by running tests (each instance's cap).",
            &[(None, mib(reserved.memory_mb))],
        );
        family(
            &mut out,
            "cardrun_reserved_cpu_percent",
            "gauge",
            "resource_limits.cpu_percent of the running tests, summed.",
            &[(None, reserved.cpu_percent as f64)],
        );
    }
    let status = state.resources.status();
    let t = &status.thresholds;
    family(&mut out, "cardrun_system_cpu_percent", "gauge", "Machine CPU use (sysinfo).", &[(None, usage.cpu_percent)]);
    family(
        &mut out,
        "cardrun_system_cpu_smoothed_percent",
        "gauge",
        "The smoothed CPU signal admission decides on.",
        &[(None, status.smoothed_cpu_percent)],
    );
    family(
        &mut out,
        "cardrun_system_memory_used_bytes",
        "gauge",
        "Machine memory in use (sysinfo).",
        &[(None, mib(usage.memory_mb))],
    );
    family(
        &mut out,
        "cardrun_system_memory_total_bytes",
        "gauge",
        "Machine memory.",
        &[(None, mib(usage.memory_total_mb))],
    );
    family(
        &mut out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        &[(None, mib(usage.process_rss_mb))],
    );
    family(
        &mut out,
        "cardrun_cpu_threshold_percent",
        "gauge",
        "MAX_CPU_PERCENT and EMERGENCY_CPU_PERCENT.",
        &[(Some(("level", "normal")), t.max_cpu_percent), (Some(("level", "emergency")), t.emergency_cpu_percent)],
    );
    family(
        &mut out,
        "cardrun_memory_threshold_bytes",
        "gauge",
        "MAX_MEMORY_MB and EMERGENCY_MEMORY_MB.",
        &[
            (Some(("level", "normal")), mib(t.max_memory_mb)),
            (Some(("level", "emergency")), mib(t.emergency_memory_mb)),
        ],
    );
    let pressure = match status.pressure {
        Pressure::Normal => 0.0,
        Pressure::Elevated => 1.0,
        Pressure::Emergency => 2.0,
    };
    family(
        &mut out,
        "cardrun_resource_pressure",
        "gauge",
        "0: normal; 1: over a normal threshold (critical work only); 2: over an emergency threshold.",
        &[(None, pressure)],
    );
    family(
        &mut out,
        "cardrun_concurrency_limit",
        "gauge",
        "The resource manager's concurrency limits (AIMD), by priority class.",
        &[
            (Some(("class", "ordinary")), status.concurrency_limit as f64),
            (Some(("class", "critical")), status.critical_concurrency_limit as f64),
        ],
    );
    family(
        &mut out,
        "cardrun_fuel_per_cpu_millisecond",
        "gauge",
        "Fuel units one millisecond of plugin CPU burns here, measured at start.",
        &[(None, engine.sandbox().fuel_calibration().fuel_per_ms as f64)],
    );
    let endpoints = engine.sandbox().endpoint_status();
    let per_endpoint = |f: &dyn Fn(&crate::sandbox::endpoints::EndpointStatus) -> f64| -> Vec<_> {
        endpoints.iter().map(|e| (Some(("endpoint", e.endpoint.as_str())), f(e))).collect()
    };
    family(
        &mut out,
        "cardrun_model_endpoint_concurrency_limit",
        "gauge",
        "Each model endpoint's concurrency limit (AIMD on 429 and 503).",
        &per_endpoint(&|e| f64::from(e.limit)),
    );
    family(
        &mut out,
        "cardrun_model_endpoint_in_flight",
        "gauge",
        "Requests in flight to each model endpoint.",
        &per_endpoint(&|e| f64::from(e.in_flight)),
    );
    family(
        &mut out,
        "cardrun_model_endpoint_push_backs_total",
        "counter",
        "429 and 503 answers from each model endpoint.",
        &per_endpoint(&|e| e.pushed_back as f64),
    );
    family(
        &mut out,
        "cardrun_build_info",
        "gauge",
        "Always 1; the version is the label.",
        &[(Some(("version", env!("CARGO_PKG_VERSION"))), 1.0)],
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out))
}
