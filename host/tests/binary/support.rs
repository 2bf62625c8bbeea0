//! Helpers for driving the real `cardrun` binary: the command, a small fake
//! Ollama, `cardrun serve` and `cardrun worker` as child processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn cardrun() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardrun"));
    cmd.env("CARDRUN_CACHE_DIR", repo().join("target").join("test-artifact-cache"));
    // The harness keeps both cores busy, which says nothing about the
    // process under test: admission is tested on its own (the integration
    // tests' `resources` module, and `bad_resource_settings_...` here).
    cmd.env("RESOURCE_ADMISSION", "off");
    cmd
}

/// A stand-in for Ollama's `/api/generate`: answers with the prompt after
/// `latency` (prompts containing `slow` after `slow_latency`), counts the
/// prompts it was asked and the most answered at once. Warm-ups (an empty
/// prompt) are answered at once and not counted.
pub struct SlowOllama {
    pub url: String,
    prompts: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl SlowOllama {
    pub async fn start(latency: Duration) -> Self {
        Self::start_with(latency, latency).await
    }

    pub async fn start_with(latency: Duration, slow_latency: Duration) -> Self {
        let prompts = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let (p, f, m) = (prompts.clone(), in_flight.clone(), max_in_flight.clone());
        let generate = move |axum::Json(body): axum::Json<Value>| {
            let (p, f, m) = (p.clone(), f.clone(), m.clone());
            async move {
                let prompt = body["prompt"].as_str().unwrap_or_default().to_string();
                if !prompt.is_empty() {
                    p.fetch_add(1, Ordering::SeqCst);
                    let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(if prompt.contains("slow") { slow_latency } else { latency }).await;
                    f.fetch_sub(1, Ordering::SeqCst);
                }
                axum::Json(json!({"response": prompt, "done": true, "prompt_eval_count": 1, "eval_count": 1}))
            }
        };
        let app = axum::Router::new().route("/api/generate", axum::routing::post(generate));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, prompts, in_flight, max_in_flight }
    }

    pub fn prompts(&self) -> usize {
        self.prompts.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

/// A `cardrun` child process (`serve` or `worker`) with its log in a file.
pub struct Process {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Self {
        let mut cmd = cardrun();
        cmd.args(args).env("CARDRUN_LOG", "cardrun=info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child =
            cmd.stdout(std::process::Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        Self { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill_hard(&mut self) {
        assert!(Command::new("kill").args(["-KILL", &self.pid()]).status().unwrap().success());
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        assert!(Command::new("kill").args(["-TERM", &self.pid()]).status().unwrap().success());
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        panic!("process did not stop within 30 s: {}", self.log_text());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cardrun serve` as a child process on a free port.
pub struct Server {
    pub process: Process,
    pub base: String,
}

impl Server {
    pub async fn start(db: &Path, ollama: &str, log: PathBuf) -> Self {
        Self::start_with(db, ollama, log, &[], &[]).await
    }

    /// With extra arguments (`--no-worker`) and environment (`REDIS_URL`).
    pub async fn start_with(db: &Path, ollama: &str, log: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let db = db.to_string_lossy().into_owned();
        let mut all_args = vec!["serve", "--host", "127.0.0.1", "--port", &port];
        // A DATABASE_URL (PostgreSQL) in `env` is the store; else the file.
        if !env.iter().any(|(k, _)| *k == "DATABASE_URL") {
            all_args.extend(["--database", db.as_str()]);
        }
        all_args.extend_from_slice(args);
        let mut all_env = vec![("OLLAMA_BASE_URL", ollama)];
        all_env.extend_from_slice(env);
        let process = Process::spawn(&all_args, &all_env, log);
        let server = Self { process, base: format!("http://127.0.0.1:{port}") };
        for _ in 0..600 {
            if reqwest::get(format!("{}/health", server.base)).await.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not come up: {}", server.log_text());
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let resp = reqwest::Client::new().post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Value {
        let resp = reqwest::Client::new().delete(format!("{}{path}", self.base)).send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// Uploads a plugin (`content_type`: `application/wasm`, or multipart
    /// for an adapter), as the holder of `key` when there is one; (status,
    /// body).
    pub async fn upload(&self, key: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let mut request = reqwest::Client::new().post(format!("{}/api/plugins", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let reply = request.header("content-type", content_type).body(body).send().await.unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.base)).await.unwrap().json().await.unwrap()
    }

    /// A card whose test cases render `say {{w}}` with each word; returns
    /// the card id.
    pub async fn card(&self, words: &[&str], assertion: Value) -> i64 {
        let card = self.post("/api/prompt-cards", json!({"title": "t", "prompt_template": "say {{w}}"})).await;
        let card_id = card["data"]["id"].as_i64().unwrap();
        for (i, w) in words.iter().enumerate() {
            self.post(
                "/api/test-cases",
                json!({"prompt_card_id": card_id, "name": format!("t{i}"), "input_variables": {"w": w},
                       "assertions": [assertion]}),
            )
            .await;
        }
        card_id
    }

    /// Queues every test case of `card`; returns the execution id.
    pub async fn queue(&self, card: i64, configuration: Value) -> String {
        let queued = self
            .post(
                "/api/parallel-test-execution/queue",
                json!({"prompt_card_id": card, "model": "ollama:m", "configuration": configuration}),
            )
            .await;
        queued["data"]["execution_id"].as_str().unwrap().to_string()
    }

    /// Polls progress until the execution finished (bounded: 60 s).
    pub async fn wait_finished(&self, id: &str) -> Value {
        let mut progress = Value::Null;
        for _ in 0..1200 {
            progress = self.get(&format!("/api/parallel-test-execution/{id}/progress")).await;
            if matches!(progress["data"]["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                return progress["data"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("execution {id} did not finish: {progress}\n{}", self.log_text());
    }

    pub async fn results(&self, id: &str) -> Value {
        self.get(&format!("/api/parallel-test-execution/{id}/results")).await["data"].clone()
    }
}

pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}
