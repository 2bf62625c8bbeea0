//! Distributed execution with real processes: `cardrun serve --no-worker`
//! and `cardrun worker`s sharing a real `redis-server`, killed and stopped
//! by PID (DESIGN.md sections 6 and 11).

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::redis::RedisServer;
use super::support::{Process, Server, SlowOllama, wait_until};

/// A deployment: one Redis, one API host, and workers added on demand.
struct Deployment {
    redis: RedisServer,
    ollama: SlowOllama,
    server: Server,
    dir: tempfile::TempDir,
    lease_ms: String,
}

impl Deployment {
    /// An API host (`--no-worker` unless `host_runs_tests`) on a fresh Redis.
    async fn start(ollama: SlowOllama, lease_ms: u64, host_runs_tests: bool) -> Self {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let lease = lease_ms.to_string();
        let url = redis.url();
        let env = [("REDIS_URL", url.as_str()), ("LEASE_MS", lease.as_str()), ("MAX_CONCURRENT_TESTS", "2")];
        let args: &[&str] = if host_runs_tests { &[] } else { &["--no-worker"] };
        let server =
            Server::start_with(&dir.path().join("cardrun.db"), &ollama.url, dir.path().join("serve.log"), args, &env)
                .await;
        Self { redis, ollama, server, dir, lease_ms: lease }
    }

    /// `cardrun worker` running at most two tests at once.
    fn worker(&self, name: &str) -> Process {
        let url = self.redis.url();
        Process::spawn(
            &["worker"],
            &[
                ("REDIS_URL", url.as_str()),
                ("OLLAMA_BASE_URL", self.ollama.url.as_str()),
                ("MAX_CONCURRENT_TESTS", "2"),
                ("LEASE_MS", self.lease_ms.as_str()),
                ("SHUTDOWN_GRACE_MS", "10000"),
            ],
            self.dir.path().join(format!("{name}.log")),
        )
    }

    /// A tenant and a key of it, made with the real CLI on the host's store.
    fn tenant_key(&self, tenant: &str) -> String {
        let db = self.dir.path().join("cardrun.db");
        let (ok, out, err) = super::tenants::cli(&db, &["tenant", "create", tenant]);
        assert!(ok, "{out}{err}");
        let (ok, key, err) = super::tenants::cli(&db, &["key", "create", tenant]);
        assert!(ok, "{err}");
        key.trim().to_string()
    }

    /// Waits until the host asks for keys (it notices a first tenant within
    /// a second); from then on uploads are the tenant's own.
    async fn wait_for_keys(&self) {
        for _ in 0..100 {
            let open = reqwest::get(format!("{}/api/prompt-cards", self.server.base)).await.unwrap();
            if open.status() == 401 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the host never asked for a key");
    }

    /// `POST path` as the holder of `key`; (status, body).
    async fn post_as(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.server.base);
        let reply = reqwest::Client::new().post(url).bearer_auth(key).json(&body).send().await.unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap_or(Value::Null))
    }

    /// Uploads a plugin (`content_type`: wasm, or multipart for an adapter).
    async fn upload_as(&self, key: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        self.server.upload(Some(key), content_type, body).await
    }

    /// A card `say {{w}}` of the key's tenant with one test case per
    /// (name, assertion), `expected` as their expected output; its id.
    async fn card_as(&self, key: &str, cases: &[(&str, Value)], expected: &str) -> i64 {
        let (_, card) =
            self.post_as(key, "/api/prompt-cards", json!({"title": "t", "prompt_template": "say {{w}}"})).await;
        let card_id = card["data"]["id"].as_i64().unwrap_or_else(|| panic!("{card}"));
        for (name, assertion) in cases {
            let mut case = json!({"prompt_card_id": card_id, "name": name, "input_variables": {"w": name},
                                  "assertions": [assertion]});
            if !expected.is_empty() {
                case["expected_output"] = json!(expected);
            }
            let (status, created) = self.post_as(key, "/api/test-cases", case).await;
            assert_eq!(status, 201, "{created}");
        }
        card_id
    }

    async fn queue_as(&self, key: &str, card_id: i64, model: &str) -> String {
        let request = json!({"prompt_card_id": card_id, "model": model});
        let (_, queued) = self.post_as(key, "/api/parallel-test-execution/queue", request).await;
        queued["data"]["execution_id"].as_str().unwrap_or_else(|| panic!("{queued}")).to_string()
    }

    /// Polls the execution's progress as `key` until it has finished
    /// (bounded: 20 s); the last progress.
    async fn finish_as(&self, key: &str, id: &str) -> Value {
        let url = format!("{}/api/parallel-test-execution/{id}/progress", self.server.base);
        let mut progress = Value::Null;
        for _ in 0..400 {
            let reply = reqwest::Client::new().get(&url).bearer_auth(key).send().await.unwrap();
            progress = reply.json::<Value>().await.unwrap()["data"].clone();
            if progress["status"] == "completed" || progress["status"] == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        progress
    }

    async fn stats(&self) -> Value {
        self.server.get("/api/parallel-test-execution/queue/stats").await["data"].clone()
    }

    /// Waits until `n` workers have sent a heartbeat.
    async fn wait_for_workers(&self, n: u64) {
        for _ in 0..400 {
            if self.stats().await["workers"].as_u64() == Some(n) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} workers did not register: {}", self.stats().await);
    }
}

fn words(n: usize, stem: &str) -> Vec<String> {
    (0..n).map(|i| format!("{stem}{i}")).collect()
}

async fn card(d: &Deployment, words: &[String], assertion: Value) -> i64 {
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    d.server.card(&refs, assertion).await
}

/// Each test has exactly one stored result; returns them.
async fn one_result_per_test(d: &Deployment, id: &str, total: usize) -> Vec<Value> {
    let results = d.server.results(id).await;
    let list = results["results"].as_array().cloned().unwrap_or_default();
    let ids: HashSet<i64> = list.iter().filter_map(|r| r["test_case_id"].as_i64()).collect();
    assert_eq!((list.len(), ids.len()), (total, total), "{results}");
    list
}

fn count_status(results: &[Value], status: &str) -> usize {
    results.iter().filter(|r| r["status"] == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_host_and_two_workers_split_one_execution() {
    let d = Deployment::start(SlowOllama::start(Duration::from_millis(300)).await, 15_000, false).await;
    let health = d.server.get("/health").await;
    assert_eq!(
        (health["data"]["queue_backend"].as_str(), health["data"]["worker"].as_bool()),
        (Some("redis"), Some(false))
    );
    let (_w1, _w2) = (d.worker("w1"), d.worker("w2"));
    d.wait_for_workers(2).await;

    let card = card(&d, &words(8, "w"), json!({"type": "contains", "value": "say"})).await;
    let id = d.server.queue(card, json!({"max_concurrent_tests": 4})).await;
    let done = d.server.wait_finished(&id).await;
    assert_eq!((done["status"].as_str(), done["passed_tests"].as_u64()), (Some("completed"), Some(8)), "{done}");
    one_result_per_test(&d, &id, 8).await;
    // Each worker runs at most two at once; four at once means both ran.
    assert_eq!(d.ollama.max_in_flight(), 4);
    let stats = d.stats().await;
    assert_eq!((stats["waiting"].as_u64(), stats["active"].as_u64()), (Some(0), Some(0)), "{stats}");
    assert_eq!(stats["completed"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_no_test() {
    let d = Deployment::start(SlowOllama::start(Duration::from_millis(400)).await, 1_500, false).await;
    let (mut w1, _w2) = (d.worker("w1"), d.worker("w2"));
    d.wait_for_workers(2).await;
    let card = card(&d, &words(12, "w"), json!({"type": "contains", "value": "say"})).await;
    let id = d.server.queue(card, json!({"max_concurrent_tests": 4})).await;

    wait_until("both workers are busy", || d.ollama.in_flight() == 4).await;
    w1.kill_hard();

    let done = d.server.wait_finished(&id).await;
    assert_eq!((done["status"].as_str(), done["passed_tests"].as_u64()), (Some("completed"), Some(12)), "{done}");
    let results = one_result_per_test(&d, &id, 12).await;
    assert_eq!(count_status(&results, "passed"), 12);
    // The dead worker's two leases expired and went to the other worker.
    assert!(d.stats().await["leases_reaped"].as_u64() >= Some(2), "{}", d.stats().await);
    assert!(d.ollama.prompts() >= 14, "the two lost tests ran again: {}", d.ollama.prompts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_mid_run_loses_no_execution() {
    let mut d = Deployment::start(SlowOllama::start(Duration::from_millis(300)).await, 1_500, true).await;
    let card = card(&d, &words(10, "w"), json!({"type": "contains", "value": "say"})).await;
    let id = d.server.queue(card, json!({"max_concurrent_tests": 2})).await;

    wait_until("two tests have run", || d.ollama.prompts() >= 4).await;
    d.redis.restart_empty();

    let done = d.server.wait_finished(&id).await;
    assert_eq!((done["status"].as_str(), done["passed_tests"].as_u64()), (Some("completed"), Some(10)), "{done}");
    one_result_per_test(&d, &id, 10).await;
    assert!(d.server.log_text().contains("lost its data"), "{}", d.server.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_and_another_finishes_the_rest() {
    let d = Deployment::start(SlowOllama::start(Duration::from_millis(1500)).await, 15_000, false).await;
    let mut w1 = d.worker("w1");
    d.wait_for_workers(1).await;
    let card = card(&d, &words(6, "w"), json!({"type": "contains", "value": "say"})).await;
    let id = d.server.queue(card, json!({"max_concurrent_tests": 3})).await;

    wait_until("the worker runs two tests", || d.ollama.prompts() == 2).await;
    let status = w1.terminate().await;
    let log = w1.log_text();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(log.contains("drained"), "{log}");
    assert_eq!(d.ollama.prompts(), 2, "nothing new started while draining");

    let _w2 = d.worker("w2");
    let done = d.server.wait_finished(&id).await;
    assert_eq!((done["status"].as_str(), done["passed_tests"].as_u64()), (Some("completed"), Some(6)), "{done}");
    one_result_per_test(&d, &id, 6).await;
    assert_eq!(d.ollama.prompts(), 6, "a drained test ran again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_on_first_failure_and_cancel_act_across_two_workers() {
    let ollama = SlowOllama::start_with(Duration::from_millis(200), Duration::from_secs(30)).await;
    let d = Deployment::start(ollama, 900, false).await;
    let (_w1, _w2) = (d.worker("w1"), d.worker("w2"));
    d.wait_for_workers(2).await;

    // Test 0 fails quickly while three slow ones run on the two workers.
    let mut stop_words = vec!["fail-fast".to_string()];
    stop_words.extend(words(7, "slow"));
    let card_id = card(&d, &stop_words, json!({"type": "not-contains", "value": "fail"})).await;
    let id = d
        .server
        .queue(card_id, json!({"max_concurrent_tests": 4, "stop_on_first_failure": true, "retry_failed_tests": false}))
        .await;
    let done = d.server.wait_finished(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let results = one_result_per_test(&d, &id, 8).await;
    let counts: Vec<usize> =
        ["failed", "cancelled", "skipped", "passed"].iter().map(|s| count_status(&results, s)).collect();
    assert_eq!(counts, vec![1, 3, 4, 0], "{results:?}");

    // Cancel: four slow tests running on two workers, four waiting. Their
    // prompts are those of the tests cancelled above, whose model calls
    // were aborted holding the shared cache's call locks: the locks must
    // have been released, or these would wait on them.
    let card_id = card(&d, &words(8, "slow"), json!({"type": "contains", "value": "say"})).await;
    let before = d.ollama.prompts();
    let id = d.server.queue(card_id, json!({"max_concurrent_tests": 4})).await;
    wait_until("four slow tests are running", || d.ollama.prompts() == before + 4).await;
    let cancelled = d.server.delete(&format!("/api/parallel-test-execution/{id}")).await;
    assert_eq!(cancelled["data"]["cancelled"], true, "{cancelled}");
    let done = d.server.wait_finished(&id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let results = one_result_per_test(&d, &id, 8).await;
    assert_eq!(count_status(&results, "cancelled"), 8, "{results:?}");
    let running: Vec<&Value> = results.iter().filter(|r| r["error"] == "cancelled while running").collect();
    assert_eq!(running.len(), 4, "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_absent_at_start_up_means_the_in_memory_queue() {
    let ollama = SlowOllama::start(Duration::from_millis(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let nobody = format!("redis://127.0.0.1:{}", super::redis::free_port());
    let server = Server::start_with(
        &dir.path().join("cardrun.db"),
        &ollama.url,
        dir.path().join("serve.log"),
        &[],
        &[("REDIS_URL", nobody.as_str())],
    )
    .await;
    let health = server.get("/health").await;
    assert_eq!(health["data"]["queue_backend"], "memory", "{health}");
    let note = health["data"]["queue_backend_note"].as_str().unwrap_or_default();
    assert!(note.contains("unreachable") && note.contains("in-memory"), "{note}");
    let stats = server.get("/api/parallel-test-execution/queue/stats").await;
    assert_eq!(stats["data"]["backend"], "memory");
    assert!(server.log_text().contains("unreachable at start-up"), "{}", server.log_text());
    // And it runs tests.
    let card = server.card(&["a", "b"], json!({"type": "contains", "value": "say"})).await;
    let id = server.queue(card, json!({})).await;
    assert_eq!(server.wait_finished(&id).await["passed_tests"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_prompts_are_answered_once_across_workers() {
    let d = Deployment::start(SlowOllama::start(Duration::from_millis(300)).await, 15_000, false).await;
    let (_w1, _w2) = (d.worker("w1"), d.worker("w2"));
    d.wait_for_workers(2).await;
    let same = vec!["same".to_string(); 6];
    let card = card(&d, &same, json!({"type": "contains", "value": "say"})).await;
    // Four at once over two workers: the three waiting ones (on either
    // worker) take the answer of the one that called the model.
    let id = d.server.queue(card, json!({"max_concurrent_tests": 4})).await;
    assert_eq!(d.server.wait_finished(&id).await["passed_tests"], 6);
    assert_eq!(d.ollama.prompts(), 1, "one model call for six identical prompts");
    let results = one_result_per_test(&d, &id, 6).await;
    assert_eq!(results.iter().filter(|r| r["cache_hit"] == true).count(), 5, "{results:?}");
    // A later execution is answered from Redis, by whichever worker.
    let id = d.server.queue(card, json!({"max_concurrent_tests": 4})).await;
    assert_eq!(d.server.wait_finished(&id).await["passed_tests"], 6);
    assert_eq!(d.ollama.prompts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_load_uploaded_plugins_by_content_hash() {
    let d = Deployment::start(SlowOllama::start(Duration::from_millis(10)).await, 15_000, false).await;
    let _w1 = d.worker("w1");
    d.wait_for_workers(1).await;
    // Uploaded to the API host after the worker started.
    let plugin = std::path::PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR)
        .join("cardrun_test_trivial_assertion.wasm");
    let (status, uploaded) = d.server.upload(None, "application/wasm", std::fs::read(plugin).unwrap()).await;
    assert_eq!(status, 201, "{uploaded}");
    let card = d.server.post("/api/prompt-cards", json!({"title": "t", "prompt_template": "say {{w}}"})).await;
    let card_id = card["data"]["id"].as_i64().unwrap();
    for (w, expected, kind) in [("hi", "say hi", "same-as-expected"), ("hi", "nope", "not-same-as-expected")] {
        d.server
            .post(
                "/api/test-cases",
                json!({"prompt_card_id": card_id, "name": kind, "input_variables": {"w": w},
                       "expected_output": expected, "assertions": [{"type": kind}]}),
            )
            .await;
    }
    let id = d.server.queue(card_id, json!({})).await;
    let done = d.server.wait_finished(&id).await;
    assert_eq!(done["passed_tests"], 2, "{}\n{}", d.server.results(&id).await, d.server.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_load_each_tenants_plugins_into_its_own_namespace() {
    let d = Deployment::start(SlowOllama::start(Duration::from_millis(10)).await, 15_000, false).await;
    let _w1 = d.worker("w1");
    d.wait_for_workers(1).await;
    let keys = [d.tenant_key("acme"), d.tenant_key("beta")];
    d.wait_for_keys().await;
    // The same type, `same-as-expected`, from two tenants: acme's compares
    // with the expected output, beta's passes everything. Uploaded after
    // the worker started; it loads each by owner and content hash.
    for (key, plugin) in keys.iter().zip(["cardrun_test_trivial_assertion", "cardrun_test_impostor_assertion"]) {
        let path = std::path::PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR).join(format!("{plugin}.wasm"));
        let (status, body) = d.upload_as(key, "application/wasm", std::fs::read(&path).unwrap()).await;
        assert_eq!((status, &body["data"]["shared"]), (201, &json!(false)), "{body}");
    }
    let mut passed = Vec::new();
    for key in &keys {
        let card_id = d.card_as(key, &[("one", json!({"type": "same-as-expected"}))], "not what it says").await;
        let id = d.queue_as(key, card_id, "ollama:m").await;
        passed.push(d.finish_as(key, &id).await["passed_tests"].as_u64());
    }
    assert_eq!(passed, [Some(0), Some(1)], "each tenant's own verdict\n{}", d.server.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_adapter_runs_on_a_worker_and_its_secret_stays_out_of_logs() {
    const SECRET: &str = "s3cret-acme-9f8e7d6c";
    let d = Deployment::start(SlowOllama::start(Duration::from_millis(10)).await, 15_000, false).await;
    let mut worker = d.worker("w1");
    d.wait_for_workers(1).await;
    let key = d.tenant_key("acme");
    d.wait_for_keys().await;
    // The built-in Ollama adapter's component as acme's own adapter, with
    // a secret header; uploaded after the worker started.
    let component = cardrun::sandbox::builtin::ADAPTERS.iter().find(|(n, _)| *n == "ollama").unwrap().1;
    let manifest = json!({"name": "acme-ollama", "config": {"base_url": d.ollama.url}, "allowed_hosts": [d.ollama.url],
                          "secret_headers": [{"name": "x-api-key", "value": SECRET}]});
    let boundary = "cardrun-binary-test-7c1d";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{manifest}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"a.wasm\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(component);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, reply) = d.upload_as(&key, &format!("multipart/form-data; boundary={boundary}"), body).await;
    assert_eq!(status, 201, "{reply}");
    assert!(!reply.to_string().contains(SECRET), "{reply}");

    let contains = json!({"type": "contains", "value": "say"});
    let card_id = d.card_as(&key, &[("a", contains.clone()), ("b", contains)], "").await;
    let id = d.queue_as(&key, card_id, "acme-ollama:m").await;
    let progress = d.finish_as(&key, &id).await;
    assert_eq!(progress["passed_tests"], 2, "{progress}\n{}", worker.log_text());
    // Run by the worker process (the API host runs no tests), whose log at
    // info level, like the API host's, never shows the secret.
    assert!(worker.log_text().contains("shared plugin loaded"), "{}", worker.log_text());
    worker.terminate().await;
    for (who, log) in [("API host", d.server.log_text()), ("worker", worker.log_text())] {
        assert!(!log.contains(SECRET), "the {who}'s log shows the secret:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_api_answers_from_the_store_and_hides_the_cause() {
    let mut d = Deployment::start(SlowOllama::start(Duration::from_millis(10)).await, 15_000, true).await;
    let card = card(&d, &words(2, "w"), json!({"type": "contains", "value": "say"})).await;
    let id = d.server.queue(card, json!({})).await;
    assert_eq!(d.server.wait_finished(&id).await["passed_tests"], 2);

    d.redis.kill();
    // What the store holds is still served...
    let progress = d.server.get(&format!("/api/parallel-test-execution/{id}/progress")).await;
    assert_eq!(progress["data"]["status"], "completed", "{progress}");
    assert_eq!(d.server.results(&id).await["summary"]["passed_tests"], 2);
    assert_eq!(d.server.get("/api/prompt-cards").await["success"], true);
    // ...and what needs Redis is a 503 that names no internals, with a
    // request id to find the cause in the log.
    let reply = reqwest::get(format!("{}/api/parallel-test-execution/queue/stats", d.server.base)).await.unwrap();
    assert_eq!(reply.status(), 503);
    let body: Value = reply.json().await.unwrap();
    let message = body["error"].as_str().unwrap_or_default();
    let request_id = body["request_id"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("unavailable") && message.contains(&request_id), "{body}");
    assert!(!message.to_lowercase().contains("redis") && !message.contains("refused"), "{body}");
    assert!(!request_id.is_empty(), "{body}");
    wait_until("the cause is logged under the request id", || {
        d.server.log_text().lines().any(|l| l.contains(&request_id) && l.contains("queue backend unavailable"))
    })
    .await;

    // Work queued meanwhile is kept, and runs once Redis is back.
    let later = d.server.queue(card, json!({})).await;
    d.redis.restart_empty();
    assert_eq!(d.server.wait_finished(&later).await["passed_tests"], 2);
}
