//! The resource manager acting on a real host: admission by priority class
//! against injected figures, and against real load from busy-loop
//! processes.

use std::time::Duration;

use cardrun::resources::{ResourceSettings, SetFigures, Usage};
use cardrun_tests::TestHost;
use cardrun_tests::fake_llm::FakeLlm;
use serde_json::{Value, json};

const EXEC: &str = "/api/parallel-test-execution";
const RESOURCES: &str = "/api/parallel-test-execution/system/resources";

async fn queue(host: &TestHost, card: i64, priority: u8) -> String {
    let body = json!({"prompt_card_id": card, "model": "llama3", "priority": priority,
                      "configuration": {"max_concurrent_tests": 8, "retry_failed_tests": false}});
    let (status, reply) = host.post(&format!("{EXEC}/queue"), body).await;
    assert_eq!(status, 202, "{reply}");
    reply["data"]["execution_id"].as_str().expect("id").to_string()
}

async fn progress(host: &TestHost, id: &str) -> Value {
    let (status, body) = host.get(&format!("{EXEC}/{id}/progress")).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn resources(host: &TestHost) -> Value {
    let (status, body) = host.get(RESOURCES).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Polls until `done` holds for the execution's progress (bounded: 30 s).
async fn until(host: &TestHost, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let p = progress(host, id).await;
        if done(&p) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {}", progress(host, id).await);
}

fn message(progress: &Value) -> &str {
    progress["message"].as_str().unwrap_or("")
}

/// Gives the host's resource manager `n` readings of `cpu` percent.
fn load(host: &TestHost, figures: &SetFigures, cpu: f64, n: usize) {
    figures.set(cpu, 1_000);
    for _ in 0..n {
        host.app.resources.sample_now();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_holds_work_by_priority_class_and_resumes_below_the_threshold() {
    let fake = FakeLlm::start().await;
    fake.set_latency(150);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), &fake.base_url(), 8);
    // Readings come only from the test (`sample_now`).
    settings.resources = ResourceSettings {
        admission: true,
        sample_interval: Duration::from_secs(3600),
        max_memory_mb: Some(8_000),
        ..ResourceSettings::default()
    };
    let figures =
        SetFigures::new(Usage { cpu_percent: 10.0, memory_mb: 1_000, memory_total_mb: 16_000, ..Usage::default() });
    let host = TestHost::start_with_figures(settings, Box::new(figures.clone())).await;
    let (ordinary_card, _) = host.card_with_cases("ordinary {{n}}", Vec::new()).await;
    host.numbered_cases(ordinary_card, 40, "ordinary").await;
    let (critical_card, _) = host.card_with_cases("critical {{n}}", Vec::new()).await;
    host.numbered_cases(critical_card, 6, "critical").await;

    // Over the emergency threshold: nothing starts but the floor of one.
    load(&host, &figures, 95.0, 10);
    let r = resources(&host).await;
    assert_eq!(r["pressure"], "emergency", "{r}");
    assert_eq!(r["system_under_stress"], true);
    assert_eq!(r["optimal_concurrency"], 1, "halved on every reading over: {r}");
    assert_eq!(r["limits"]["emergency_cpu_percent"], 90.0);
    assert!(r["fuel_calibration"]["fuel_per_ms"].as_u64() > Some(0), "{r}");
    let ordinary = queue(&host, ordinary_card, 5).await;
    until(&host, &ordinary, "the floor runs tests one at a time", |p| p["completed_tests"].as_u64() >= Some(2)).await;
    until(&host, &ordinary, "progress says why", |p| message(p).contains("waiting for CPU")).await;
    assert_eq!(fake.max_in_flight(), 1, "one test at a time over the emergency threshold");

    // Between the thresholds: critical work passes, ordinary work waits.
    load(&host, &figures, 83.0, 10);
    let r = resources(&host).await;
    assert_eq!(r["pressure"], "elevated", "{r}");
    assert_eq!(r["critical_concurrency"], 8, "{r}");
    fake.reset_max_in_flight();
    let critical = queue(&host, critical_card, 10).await;
    host.wait_finished(&critical).await;
    let (_, results) = host.get(&format!("{EXEC}/{critical}/results")).await;
    assert_eq!(results["data"]["summary"]["passed_tests"], 6, "{results}");
    assert!(fake.max_in_flight() >= 3, "critical tests ran side by side: {}", fake.max_in_flight());
    let p = until(&host, &ordinary, "progress says why", |p| message(p).contains("only critical work")).await;
    assert_ne!(p["status"], "completed", "ordinary work waited: {p}");

    // Clearly under the threshold again: ordinary work resumes, and the
    // limit grows back.
    load(&host, &figures, 20.0, 12);
    let r = resources(&host).await;
    assert_eq!((r["pressure"].as_str(), r["optimal_concurrency"].as_u64()), (Some("normal"), Some(8)), "{r}");
    assert_eq!(r["holding_reason"], Value::Null);
    fake.reset_max_in_flight();
    let done = host.wait_finished(&ordinary).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(fake.max_in_flight() > 1, "ordinary tests ran side by side again");
    let (_, results) = host.get(&format!("{EXEC}/{ordinary}/results")).await;
    assert_eq!(results["data"]["summary"]["passed_tests"], 40, "{results}");
}

/// Busy-loop processes, one per core, killed when dropped.
struct BusyLoops(Vec<std::process::Child>);

impl BusyLoops {
    fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self(
            (0..cores)
                .map(|_| std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("sh runs"))
                .collect(),
        )
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_load_holds_work_at_the_floor_until_it_stops() {
    let fake = FakeLlm::start().await;
    fake.set_latency(100);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), &fake.base_url(), 8);
    settings.resources = ResourceSettings {
        admission: true,
        max_cpu_percent: 50.0,
        emergency_cpu_percent: 60.0,
        sample_interval: Duration::from_millis(200),
        ..ResourceSettings::default()
    };
    let host = TestHost::start_with_settings(settings).await;
    let (card, _) = host.card_with_cases("load {{n}}", Vec::new()).await;
    host.numbered_cases(card, 60, "load").await;

    let busy = BusyLoops::start();
    let mut stressed = false;
    for _ in 0..150 {
        if resources(&host).await["system_under_stress"] == true {
            stressed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stressed, "busy loops on every core did not register: {}", resources(&host).await);
    let id = queue(&host, card, 5).await;
    // While the loops run, tests start one at a time (the floor).
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.reset_max_in_flight();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(fake.max_in_flight() <= 1, "{} tests at once under load", fake.max_in_flight());
    let p = until(&host, &id, "progress says why", |p| message(p).contains("waiting for CPU")).await;
    assert_ne!(p["status"], "completed", "{p}");
    let r = resources(&host).await;
    let reason = r["holding_reason"].as_str().unwrap_or("");
    assert!(reason.contains("waiting for CPU") && reason.contains("EMERGENCY_CPU_PERCENT 60"), "{r}");

    // Once they stop, the execution completes.
    drop(busy);
    let done = host.wait_finished(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, results) = host.get(&format!("{EXEC}/{id}/results")).await;
    assert_eq!(results["data"]["summary"]["passed_tests"], 60, "{results}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_back_seen_by_one_process_lowers_the_endpoint_limit_of_another_through_redis() {
    let redis = cardrun_tests::redis::RedisServer::start();
    let limited = FakeLlm::start().await;
    let fine = FakeLlm::start().await;
    limited.fail_next(6, 429, Some("0"));
    let dir = tempfile::tempdir().unwrap();
    // Two API hosts of one deployment share one store.
    let settings = |worker: bool| {
        let mut s = cardrun_tests::host_settings(&dir.path().join("shared.db"), &limited.base_url(), 8);
        s.sandbox.endpoints.openai_base_url = fine.base_url();
        s.redis = Some(cardrun::queue::redis::RedisConfig::single(&redis.url(), "endpoints"));
        s.run_worker = worker;
        s
    };
    // `a` runs the tests; `b` runs none, so it can learn of the push-backs
    // only from the deployment's limits.
    let a = TestHost::start_with_settings(settings(true)).await;
    let b = TestHost::start_with_settings(settings(false)).await;
    let (card, _) = a.card_with_cases("n {{n}}", Vec::new()).await;
    a.numbered_cases(card, 6, "n").await;
    for model in ["ollama:m", "openai:m"] {
        let body = json!({"prompt_card_id": card, "model": model,
                          "configuration": {"cache_enabled": false, "max_concurrent_tests": 3}});
        let (status, reply) = a.post(&format!("{EXEC}/queue"), body).await;
        assert_eq!(status, 202, "{reply}");
        let done = a.wait_finished(reply["data"]["execution_id"].as_str().expect("id")).await;
        assert_eq!(done["passed_tests"], 6, "{model}: the 429s were retried: {done}");
    }
    let port = |base: &str| format!(":{}", base.rsplit(':').next().unwrap_or_default());
    let endpoint = |r: &Value, base: &str| {
        r["model_endpoints"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["endpoint"].as_str().is_some_and(|n| n.ends_with(&port(base)))).cloned())
    };
    let mut seen = Value::Null;
    for _ in 0..100 {
        let r = resources(&b).await;
        if let Some(e) = endpoint(&r, &limited.base_url()).filter(|e| e["limit"].as_u64() < Some(256)) {
            seen = e;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen["limit"].as_u64() <= Some(128), "b never heard of the push-backs: {}", resources(&b).await);
    assert_eq!(seen["pushed_back"], 0, "b made no request itself: {seen}");
    assert!(seen["deployment_limit"].as_f64() <= Some(128.0), "{seen}");
    // The endpoint that never pushed back keeps the maximum everywhere.
    let r = resources(&b).await;
    if let Some(other) = endpoint(&r, &fine.base_url()) {
        assert_eq!(other["limit"], 256, "{other}");
    }
    let a_side = endpoint(&resources(&a).await, &fine.base_url()).expect("a called it");
    assert_eq!((a_side["limit"].as_u64(), a_side["pushed_back"].as_u64()), (Some(256), Some(0)), "{a_side}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_host_without_a_worker_says_why_the_workers_hold_work_back() {
    let redis = cardrun_tests::redis::RedisServer::start();
    let fake = FakeLlm::start().await;
    fake.set_latency(100);
    let dir = tempfile::tempdir().unwrap();
    // Two API hosts of one deployment share one store.
    let settings = |worker: bool| {
        let mut s = cardrun_tests::host_settings(&dir.path().join("shared.db"), &fake.base_url(), 8);
        s.redis = Some(cardrun::queue::redis::RedisConfig::single(&redis.url(), "holds"));
        s.run_worker = worker;
        s.resources = ResourceSettings {
            admission: true,
            sample_interval: Duration::from_secs(3600),
            ..ResourceSettings::default()
        };
        s
    };
    let figures =
        SetFigures::new(Usage { cpu_percent: 10.0, memory_mb: 1_000, memory_total_mb: 16_000, ..Usage::default() });
    let worker = TestHost::start_with_figures(settings(true), Box::new(figures.clone())).await;
    let api = TestHost::start_with_settings(settings(false)).await;
    load(&worker, &figures, 95.0, 10);
    let (card, _) = api.card_with_cases("held {{n}}", Vec::new()).await;
    api.numbered_cases(card, 30, "held").await;
    let id = queue(&api, card, 5).await;
    let p = until(&api, &id, "the API host says why", |p| message(p).contains("waiting for CPU")).await;
    assert!(message(&p).contains("EMERGENCY_CPU_PERCENT 90"), "{p}");
    load(&worker, &figures, 10.0, 12);
    let done = api.wait_finished(&id).await;
    assert_eq!(done["passed_tests"], 30, "{done}");
    assert!(!message(&done).contains("waiting"), "{done}");
}
