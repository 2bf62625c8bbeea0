//! Where one test's host CPU goes (issue 16, point 1). Each step of the hot
//! path runs alone, `N` times in a row on one thread, and is measured as
//! process CPU per operation (the fake model server's own thread left
//! out), beside the floor (raw wasmtime: store + instantiate of the trivial
//! component) in the same run:
//!
//! - the model adapter instance alone (`echo`, no network);
//! - a model call over HTTP (`ollama` adapter, its instance included, to a
//!   fake server answering at once on its own thread);
//! - the same request without the plugin: through reqwest, through hyper's
//!   pooled client, and through the HTTP capability;
//! - an assertion instance (`contains`);
//! - a result written as JSON;
//! - a result stored (SQLite file, batches of 64, as the collector writes);
//! - a progress event published and received;
//! - the queue: a job claimed and finished (memory queue).
//!
//! `cargo run --release -p cardrun-benches --bin breakdown [N] [ONLY]`
//!
//! With `ONLY`, just the floor and the steps whose label contains it (to
//! profile one step with `perf record`).
//!
//! The engine bench's CPU per test on the same kind of work (`engine`) is
//! the whole these parts add up to, or not.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cardrun::domain::{Execution, ExecutionStatus, Prompt, TestConfiguration, TestResult, TestStatus, TokenUsage};
use cardrun::progress::{ProgressEvent, ProgressService};
use cardrun::queue::{ExecutionEntry, Job, MemoryQueue, Queue};
use cardrun::sandbox::{AssertionSpec, CompletionRequest, GenerationOptions, Limits, Sandbox, Subject};
use cardrun::store::{CardInput, Database, open};
use cardrun_benches::floor::{State, engine, pre};
use cardrun_benches::{fake_ollama, job, machine, process_cpu_time, thread_cpu_times};
use serde_json::json;
use uuid::Uuid;
use wasmtime::Store as WasmStore;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;

/// CPU of this process so far, without the fake model server's thread.
fn own_cpu() -> Duration {
    let server: Duration = thread_cpu_times().values().filter(|(name, _)| name == "fake-ollama").map(|(_, t)| *t).sum();
    process_cpu_time().unwrap_or_default().saturating_sub(server)
}

/// Runs `step` `n` times (after `n / 10` to warm up) and prints its CPU per
/// operation, and its multiple of `floor_us` when given.
async fn measure<F, Fut>(label: &str, n: usize, floor_us: Option<f64>, mut step: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let only = std::env::args().nth(2);
    if floor_us.is_some() && only.is_some_and(|only| !label.contains(&only)) {
        return 0.0;
    }
    for i in 0..n / 10 {
        step(i).await;
    }
    let before = own_cpu();
    for i in 0..n {
        step(i).await;
    }
    let per_op = own_cpu().saturating_sub(before).as_secs_f64() * 1e6 / n as f64;
    let times = floor_us.map_or_else(|| "1.0".to_string(), |f| format!("{:.1}", per_op / f));
    println!("| {label} | {per_op:.1} us | {times} |");
    per_op
}

fn result(execution_id: Uuid, test_case_id: i64) -> TestResult {
    let assertion = cardrun::domain::AssertionResult {
        assertion_type: "contains".into(),
        passed: true,
        score: 1.0,
        reason: "output contains \"item\"".into(),
        fuel_used: 12_345,
        duration_us: 20,
        error: None,
        metric: None,
        pending: false,
    };
    TestResult {
        execution_id,
        test_case_id,
        test_case_name: format!("t{test_case_id}"),
        status: TestStatus::Passed,
        llm_output: format!("item {test_case_id}: the answer, as a model would write it in a sentence or two."),
        assertion_results: vec![assertion],
        execution_time_ms: 51,
        attempts: vec![cardrun::domain::Attempt { status: TestStatus::Passed, execution_time_ms: 51, error: None }],
        flaky: false,
        cache_hit: false,
        tokens: Some(TokenUsage { prompt: 12, completion: 20 }),
        error: None,
        prompt: Some(format!("Say item {test_case_id}")),
        expected_output: None,
        grading: None,
        cost: None,
    }
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    println!("machine: {}", machine());
    println!("operations per step: {n}, one at a time on one thread; CPU read from /proc (10 ms ticks)");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let base_url = fake_ollama(Duration::ZERO);
        let sandbox = Arc::new(Sandbox::new(cardrun_tests::sandbox_config(&base_url)).await.expect("sandbox"));
        let limits = Limits::default();
        println!("| step | CPU per operation | x floor |");
        println!("|---|---|---|");

        // The floor: raw wasmtime, the trivial component.
        let wasm = engine(2 << 20);
        let dir = std::path::Path::new(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR);
        let trivial = pre(&wasm, &dir.join("cardrun_test_trivial_assertion.wasm"));
        let floor = measure("floor: store + instantiate (raw wasmtime, trivial component)", n, None, |_| {
            let (wasm, trivial) = (&wasm, &trivial);
            async move {
                let state = State { wasi: WasiCtx::builder().build(), table: ResourceTable::new() };
                let mut store = WasmStore::new(wasm, state);
                store.set_fuel(u64::MAX).expect("fuel");
                store.set_epoch_deadline(u64::MAX / 2);
                trivial.instantiate_async(&mut store).await.expect("instantiate");
            }
        })
        .await;
        let floor = Some(floor);

        let request = |model: &str, i: usize| CompletionRequest {
            model: model.into(),
            prompt: Prompt::Text(format!("Say item {i}")),
            options: GenerationOptions::default(),
            logprobs: false,
        };
        measure("model adapter instance (`echo`, no network)", n, floor, |i| {
            let (sandbox, limits, request) = (&sandbox, &limits, request("upper", i));
            async move {
                sandbox.complete("echo", &request, limits).await.expect("echo");
            }
        })
        .await;
        measure("model call over HTTP (`ollama` adapter instance + request + parse)", n, floor, |i| {
            let (sandbox, limits, request) = (&sandbox, &limits, request("m", i));
            async move {
                sandbox.complete("ollama", &request, limits).await.expect("ollama");
            }
        })
        .await;
        // The same request without the plugin: a client built as the HTTP
        // capability builds its own, the body the adapter would send.
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let url = format!("{base_url}/api/generate");
        // What the `ollama` adapter sends for test `i`.
        let ollama_body = |i: usize| {
            format!(r#"{{"model":"m","prompt":"Say item {i}","stream":false,"options":{{}},"keep_alive":"5m"}}"#)
        };
        measure("HTTP request alone (reqwest, no plugin; same server)", n, floor, |i| {
            let (client, url) = (&client, &url);
            let body = ollama_body(i);
            async move {
                let response = client.post(url.as_str()).body(body).send().await.expect("send");
                std::hint::black_box(response.bytes().await.expect("body"));
            }
        })
        .await;
        // The same request through hyper's own pooled client (what reqwest
        // wraps), to see what reqwest's layers cost on top of it.
        let hyper_client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        let uri: hyper::Uri = url.parse().expect("uri");
        measure("HTTP request alone (hyper-util client, no plugin; same server)", n, floor, |i| {
            let (client, uri) = (&hyper_client, &uri);
            let body = ollama_body(i);
            async move {
                let request = hyper::Request::post(uri.clone())
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .expect("request");
                let response = client.request(request).await.expect("send");
                let body = http_body_util::BodyExt::collect(response.into_body()).await.expect("body");
                std::hint::black_box(body.to_bytes());
            }
        })
        .await;
        // The HTTP capability alone: allow-list, headers, endpoint limit,
        // retries' bookkeeping and the capped read, around the same client.
        let capability = cardrun::sandbox::http::HttpCapability::new(Default::default()).expect("capability");
        let grant = cardrun::sandbox::HttpGrant {
            allowed: vec![cardrun::sandbox::AllowedHost::parse(&base_url).expect("allowed host")],
            secret_headers: vec![],
        };
        measure("HTTP capability alone (no plugin; same request)", n, floor, |i| {
            let (capability, grant, url) = (&capability, &grant, &url);
            let request = cardrun::sandbox::http::PluginRequest {
                method: "POST".into(),
                url: url.clone(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: ollama_body(i).into_bytes(),
            };
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                std::hint::black_box(capability.send(grant, request, deadline).await.expect("send"));
            }
        })
        .await;
        let subject =
            Subject { output: "item 7: the answer".into(), prompt: "Say item 7".into(), ..Default::default() };
        let contains = AssertionSpec::new("contains", json!("item"));
        measure("assertion instance (`contains`)", n, floor, |_| {
            let (sandbox, limits, subject, contains) = (&sandbox, &limits, &subject, &contains);
            async move {
                let outcome = sandbox.evaluate(contains, subject, limits).await;
                assert!(outcome.passed, "{}", outcome.reason);
            }
        })
        .await;

        let execution_id = Uuid::new_v4();
        measure("result written as JSON", n, floor, |i| {
            let result = result(execution_id, i as i64);
            async move {
                std::hint::black_box(serde_json::to_vec(&result).expect("json"));
            }
        })
        .await;

        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&Database::Sqlite(dir.path().join("breakdown.db"))).await.expect("store");
        let card = store
            .create_card(&CardInput {
                tenant_id: None,
                title: "breakdown".into(),
                description: String::new(),
                prompt_template: "Say item {{n}}".into(),
                variables: vec!["n".into()],
                filters: Default::default(),
            })
            .await
            .expect("card");
        let execution = Execution {
            execution_id,
            tenant_id: None,
            prompt_card_id: card.id,
            test_case_ids: vec![],
            model: "echo:echo".into(),
            configuration: TestConfiguration::default(),
            priority: 5,
            status: ExecutionStatus::Running,
            created_at: chrono::Utc::now(),
            started_at: None,
            completed_at: None,
        };
        store.insert_execution(&execution, Box::new(std::iter::empty())).await.expect("execution");
        let batch = 64;
        let per_batch = measure("store write of 64 results (SQLite file), per batch", n / batch, floor, |b| {
            let store = store.clone();
            async move {
                let results: Vec<TestResult> =
                    (0..batch).map(|k| result(execution_id, (b * batch + k) as i64 + 1_000_000)).collect();
                store.put_results(&results).await.expect("put");
            }
        })
        .await;
        println!(
            "| store write, per result (the line above / {batch}) | {:.1} us | {} |",
            per_batch / batch as f64,
            floor.map_or_else(String::new, |f| format!("{:.1}", per_batch / batch as f64 / f))
        );

        let progress = ProgressService::new();
        let mut events = progress.subscribe();
        measure("progress event published and received (1 subscriber)", n, floor, |i| {
            let event = ProgressEvent::TestComplete(Box::new(result(execution_id, i as i64)));
            progress.publish(event);
            let received = events.try_recv().is_ok();
            async move {
                assert!(received);
            }
        })
        .await;

        let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::new(Default::default()));
        let configuration = Arc::new(TestConfiguration::default());
        let queue_id = Uuid::new_v4();
        let total = n + n / 10;
        let entry = ExecutionEntry {
            execution_id: queue_id,
            tenant_id: None,
            priority: 5,
            max_concurrent_tests: 64,
            total_tests: total as u32,
            already_settled: Default::default(),
        };
        let jobs: Vec<Job> = (0..total as i64).map(|i| job(queue_id, i, &configuration)).collect();
        queue.enqueue(entry, jobs).await.expect("enqueue");
        measure("queue: a job claimed and finished (memory queue)", n, floor, |i| {
            let queue = queue.clone();
            async move {
                let leases = queue.claim("bench", 1).await.expect("claim");
                let lease = leases.first().expect("a job");
                queue.finish(&lease.id(), &result(queue_id, i as i64), false).await.expect("finish");
            }
        })
        .await;
    });
}
