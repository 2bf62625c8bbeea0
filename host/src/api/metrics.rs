//! `GET /metrics`: Prometheus text exposition (format 0.0.4).
//!
//! Every figure is read at scrape time from what already keeps it (the
//! engine's counters, the queue, the store, the resource monitor), so there
//! is no registry to keep in step; the format is a few lines per family,
//! written here rather than pulling in a metrics crate for it.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::{ApiError, AppState};

/// One metric family: `# HELP`, `# TYPE`, then `name{label="value"} n` per
/// sample. Label values here are fixed identifiers (no escaping needed).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(Option<(&str, &str)>, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (label, value) in samples {
        match label {
            Some((key, val)) => {
                let _ = writeln!(out, "{name}{{{key}=\"{val}\"}} {value}");
            }
            None => {
                let _ = writeln!(out, "{name} {value}");
            }
        }
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let engine = &state.engine;
    let queue =
        engine.queue().counts().await.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let executions = engine.store().execution_counts()?;
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
    family(
        &mut out,
        "cardrun_queue_wait_milliseconds",
        "gauge",
        "Wait between enqueue and claim over recent claims.",
        &[(Some(("stat", "average")), queue.wait_ms_avg), (Some(("stat", "max")), queue.wait_ms_max)],
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
        "Assertion plugins loaded (built-in ones included).",
        &[(None, engine.sandbox().assertion_plugins().len() as f64)],
    );
    family(&mut out, "cardrun_system_cpu_percent", "gauge", "Machine CPU use (sysinfo).", &[(None, usage.cpu_percent)]);
    family(
        &mut out,
        "cardrun_process_resident_memory_megabytes",
        "gauge",
        "This process's resident memory.",
        &[(None, usage.process_rss_mb as f64)],
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
