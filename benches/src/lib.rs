//! Small helpers shared by the benchmark binaries.

pub mod floor;

use std::collections::BTreeMap;
use std::time::Duration;

/// Median and 99th percentile of `samples` (sorted in place).
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// The machine, for the record.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{} x {cpu}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// CPU time (user + system) this process has used so far, from
/// `/proc/self/stat` (clock ticks, usually 10 ms): enough to tell a
/// CPU-bound run from one that waits.
pub fn process_cpu_time() -> Option<Duration> {
    cpu_time_of("self")
}

/// CPU time (user + system) of process `pid` (or `self`) so far, as
/// [`process_cpu_time`] reads it.
pub fn cpu_time_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at `)`.
    let ticks = cpu_ticks(stat.rsplit_once(')')?.1)?;
    Some(Duration::from_secs_f64(ticks as f64 / 100.0))
}

/// CPU time (user + system) of each thread of this process so far, by
/// thread id: its name and the time. Threads that cannot be read (one may
/// exit while the list is read) are left out.
pub fn thread_cpu_times() -> BTreeMap<u64, (String, Duration)> {
    let mut threads = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return threads };
    for entry in dir.flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u64>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
        if let Some(ticks) = cpu_ticks(rest) {
            threads.insert(tid, (name, Duration::from_secs_f64(ticks as f64 / 100.0)));
        }
    }
    threads
}

/// utime + stime from the part of a `stat` line after the command name.
fn cpu_ticks(after_name: &str) -> Option<u64> {
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after `)`.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A private `redis-server` on a free loopback port (persistence off),
/// stopped when dropped.
pub struct RedisServer {
    pub url: String,
    child: std::process::Child,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a [`RedisServer`]; panics if `redis-server` is not installed.
pub fn redis_server() -> RedisServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let server = RedisServer { url: format!("redis://127.0.0.1:{port}"), child };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("redis-server did not start");
}

/// A fake Ollama `/api/generate` answering every prompt (echoed) after
/// `latency`, warm-ups (empty prompt) at once. It runs on its own thread and
/// runtime, as a model server runs in its own process. Returns its URL.
pub fn fake_ollama(latency: Duration) -> String {
    use axum::Json;
    use serde_json::{Value, json};
    let generate = move |Json(body): Json<Value>| async move {
        if body["prompt"].as_str().is_some_and(|p| !p.is_empty()) {
            tokio::time::sleep(latency).await;
        }
        Json(json!({"response": body["prompt"], "done": true, "prompt_eval_count": 2, "eval_count": 2}))
    };
    serve_on_own_thread(axum::Router::new().route("/api/generate", axum::routing::post(generate)), "fake-ollama")
}

/// Serves `app` on a free loopback port from a thread and runtime of its
/// own (named `name`), as a model server runs in its own process. Returns
/// its URL.
pub fn serve_on_own_thread(app: axum::Router, name: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app).await;
            });
        })
        .expect("server thread");
    format!("http://{addr}")
}

/// A job like the engine's: a short prompt, one `contains` assertion (the
/// `queue` and `breakdown` benches).
pub fn job(
    execution_id: uuid::Uuid,
    n: i64,
    configuration: &std::sync::Arc<cardrun::domain::TestConfiguration>,
) -> cardrun::queue::Job {
    cardrun::queue::Job {
        tenant_id: None,
        execution_id,
        test_case_id: n,
        test_case_name: format!("t{n}"),
        attempt: 0,
        adapter: "echo".into(),
        model: "echo".into(),
        prompt: format!("item {n}"),
        chat: vec![],
        options: Default::default(),
        variables: vec![("n".into(), n.to_string())],
        expected_output: None,
        assertions: vec![cardrun::domain::AssertionSpec::new("contains", serde_json::json!("item"))],
        plugin_versions: vec![],
        threshold: None,
        transform: None,
        logprobs: false,
        grader: None,
        price: None,
        configuration: configuration.clone(),
        previous_attempts: vec![],
        queued_at_ms: None,
    }
}

/// A child process killed (and reaped) when dropped.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A binary built beside the running bench (`cardrun`, `fake_model`).
pub fn sibling_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent().expect("bin dir").join(name)
}

/// Waits until `url` answers 2xx (a server starting); panics after 30 s.
pub async fn wait_for(client: &reqwest::Client, url: &str) {
    for _ in 0..600 {
        if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not answer");
}

/// Imports a suite of one card with `tests` test cases (prompt `item
/// {{n}}`, one assertion `{type: assertion, value: "item"}` each) through
/// `POST /api/prompt-cards/import`; returns the card's id.
pub async fn import_card(
    client: &reqwest::Client,
    base: &str,
    description: &str,
    tests: usize,
    provider: &str,
    assertion: &str,
) -> i64 {
    use serde_json::{Value, json};
    let cases: Vec<Value> =
        (0..tests).map(|i| json!({"vars": {"n": i}, "assert": [{"type": assertion, "value": "item"}]})).collect();
    let suite = json!({"description": description, "prompts": ["item {{n}}"], "providers": [provider], "tests": cases});
    let reply: Value = client
        .post(format!("{base}/api/prompt-cards/import"))
        .body(serde_json::to_string(&suite).expect("yaml is a superset of json"))
        .send()
        .await
        .expect("import")
        .json()
        .await
        .expect("json");
    reply["data"]["cards"][0]["prompt_card"]["id"].as_i64().unwrap_or_else(|| panic!("card id in {reply}"))
}

/// Queues every test of `card` against `model` at `concurrency` (cache and
/// retries off) with `POST /queue`; returns the execution's id.
pub async fn queue_card(client: &reqwest::Client, base: &str, card: i64, model: &str, concurrency: u32) -> String {
    use serde_json::{Value, json};
    let reply: Value = client
        .post(format!("{base}/api/parallel-test-execution/queue"))
        .json(&json!({"prompt_card_id": card, "model": model,
                      "configuration": {"max_concurrent_tests": concurrency, "cache_enabled": false, "retry_failed_tests": false}}))
        .send()
        .await
        .expect("queue")
        .json()
        .await
        .expect("json");
    reply["data"]["execution_id"].as_str().unwrap_or_else(|| panic!("execution id in {reply}")).to_string()
}
