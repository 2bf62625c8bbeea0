//! Test harness shared by cardrun's integration tests.

pub mod bomb;
pub mod corpus;
pub mod fake_llm;
pub mod js;
pub mod postgres;
pub mod redis;
pub mod routes;

pub use bomb::compile_bomb;

use std::path::PathBuf;
use std::sync::Arc;

use cardrun::sandbox::{AdapterEndpoints, Allocator, HttpSettings, Sandbox, SandboxConfig};

/// A sandbox config whose adapters point at `base_url` (a fake server), with
/// the artifact cache shared by every test of this build.
pub fn sandbox_config(base_url: &str) -> SandboxConfig {
    SandboxConfig {
        allocator: Allocator::Pooling { max_instances: 200 },
        cache_dir: Some(artifact_cache_dir()),
        http: HttpSettings { base_backoff: std::time::Duration::from_millis(20), ..HttpSettings::default() },
        endpoints: AdapterEndpoints {
            ollama_base_url: base_url.to_string(),
            openai_base_url: base_url.to_string(),
            openai_api_key: Some("sk-test-secret".to_string()),
            anthropic_base_url: base_url.to_string(),
            anthropic_api_key: Some("sk-ant-test-secret".to_string()),
        },
        max_plugins: 100,
        compiler: None,
    }
}

/// A sandbox pointing at `base_url`.
pub async fn sandbox(base_url: &str) -> Arc<Sandbox> {
    Arc::new(Sandbox::new(sandbox_config(base_url)).await.expect("sandbox builds"))
}

/// Precompiled plugins are shared between tests (keyed by content hash).
pub fn artifact_cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("test-artifact-cache")
}

/// Bytes of a plugin built by the host's build script (e.g.
/// `cardrun_test_hostile_assertion`).
pub fn built_plugin(name: &str) -> Vec<u8> {
    let path = PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Settings of a test host: the store at `db` (a file path, so restarts
/// can be tested), adapters pointing at `llm_base`, no Redis.
pub fn host_settings(db: &std::path::Path, llm_base: &str, max_concurrent: usize) -> cardrun::app::Settings {
    cardrun::app::Settings {
        port: 0,
        database: cardrun::store::Database::Sqlite(db.to_path_buf()),
        max_concurrent_tests: max_concurrent,
        default_adapter: "ollama".into(),
        grader: None,
        prices: Default::default(),
        // The tests share two cores with the harness, so the machine's load
        // says nothing about the host under test; admission is tested with
        // figures the tests set (`TestHost::start_with_figures`).
        resources: cardrun::resources::ResourceSettings { admission: false, ..Default::default() },
        sandbox: sandbox_config(llm_base),
        assertion_plugins: Vec::new(),
        adapter_plugins: Vec::new(),
        shutdown_grace: std::time::Duration::from_secs(5),
        redis: None,
        queue: cardrun::queue::QueueSettings::default(),
        run_worker: true,
        cache_ttl: std::time::Duration::from_secs(3600),
        limits: cardrun::engine::HostLimits::default(),
        plugin_max_memory_mb: 256,
        execution_share_percent: Some(50),
        cors_origin: "*".into(),
        socket_max_behind: 10_000,
        auth_required: false,
        metrics_token: None,
        quotas: cardrun::tenants::QuotaSettings::default(),
    }
}

/// A cardrun host serving on a random loopback port.
pub struct TestHost {
    pub base: String,
    pub app: cardrun::app::App,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestHost {
    /// Starts a host on `db` (a file path, so restarts can be tested), with
    /// adapters pointing at `llm_base`.
    pub async fn start(db: &std::path::Path, llm_base: &str, max_concurrent: usize) -> Self {
        Self::start_with_plugins(db, llm_base, max_concurrent, Vec::new()).await
    }

    /// [`TestHost::start`], loading these assertion plugin files too.
    pub async fn start_with_plugins(
        db: &std::path::Path,
        llm_base: &str,
        max_concurrent: usize,
        assertion_plugins: Vec<PathBuf>,
    ) -> Self {
        let mut settings = host_settings(db, llm_base, max_concurrent);
        settings.assertion_plugins = assertion_plugins;
        Self::start_with_settings(settings).await
    }

    /// A host with these settings (see [`host_settings`]).
    pub async fn start_with_settings(settings: cardrun::app::Settings) -> Self {
        Self::start_with_figures(settings, Box::new(cardrun::resources::SystemFigures::new())).await
    }

    /// A host whose resource manager reads `figures` instead of the machine.
    pub async fn start_with_figures(
        settings: cardrun::app::Settings,
        figures: Box<dyn cardrun::resources::Figures>,
    ) -> Self {
        let app = cardrun::app::App::start_with_figures(&settings, figures).await.expect("host starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = app.router();
        let server = tokio::spawn(async move {
            let _ = cardrun::app::serve_router(listener, router, async {
                let _ = rx.await;
            })
            .await;
        });
        Self { base, app, client: reqwest::Client::new(), shutdown: Some(tx), server: Some(server) }
    }

    /// Stops serving (the engine's tasks die with the test's runtime).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and returns (status, body as JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        reply(req.send().await.expect("request sent")).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// POSTs raw bytes (e.g. a plugin upload) as `application/wasm`.
    pub async fn post_bytes(&self, path: &str, bytes: Vec<u8>) -> (u16, serde_json::Value) {
        self.send_bytes(reqwest::Method::POST, path, bytes).await
    }

    /// PUTs raw bytes as `application/wasm`.
    pub async fn put_bytes(&self, path: &str, bytes: Vec<u8>) -> (u16, serde_json::Value) {
        self.send_bytes(reqwest::Method::PUT, path, bytes).await
    }

    /// POSTs raw bytes as `content_type`.
    pub async fn post_typed(&self, path: &str, content_type: &str, bytes: Vec<u8>) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .expect("sent");
        reply(resp).await
    }

    async fn send_bytes(&self, method: reqwest::Method, path: &str, bytes: Vec<u8>) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .request(method, self.url(path))
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .expect("request sent");
        reply(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Creates a card and `cases` test cases; returns (card id, case ids).
    pub async fn card_with_cases(&self, template: &str, cases: Vec<serde_json::Value>) -> (i64, Vec<i64>) {
        let (status, card) =
            self.post("/api/prompt-cards", serde_json::json!({"title": "t", "prompt_template": template})).await;
        assert_eq!(status, 201, "{card}");
        let card_id = card["data"]["id"].as_i64().expect("card id");
        let mut ids = Vec::new();
        for mut case in cases {
            case["prompt_card_id"] = serde_json::json!(card_id);
            let (status, tc) = self.post("/api/test-cases", case).await;
            assert_eq!(status, 201, "{tc}");
            ids.push(tc["data"]["id"].as_i64().expect("case id"));
        }
        (card_id, ids)
    }

    /// Adds `n` test cases `t0..` to `card` straight in the store (for large
    /// runs), each with `n` as its variable `n` and one `contains` assertion
    /// looking for `needle`; returns their ids.
    pub async fn numbered_cases(&self, card: i64, n: usize, needle: &str) -> Vec<i64> {
        let store = self.app.engine.store();
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push({
                let mut vars = serde_json::Map::new();
                vars.insert("n".into(), serde_json::json!(i));
                let case = cardrun::store::TestCaseInput {
                    name: format!("t{i}"),
                    input_variables: vars,
                    expected_output: None,
                    assertions: vec![cardrun::sandbox::AssertionSpec::new("contains", serde_json::json!(needle))],
                    threshold: None,
                    transform: None,
                };
                store.create_test_case(card, &case).await.expect("stored").expect("the card exists").id
            });
        }
        ids
    }

    /// Polls progress until the execution has finished (bounded: 60 s).
    pub async fn wait_finished(&self, execution_id: &str) -> serde_json::Value {
        for _ in 0..1200 {
            let (status, body) = self.get(&format!("/api/parallel-test-execution/{execution_id}/progress")).await;
            assert_eq!(status, 200, "{body}");
            if matches!(body["data"]["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                return body["data"].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("execution {execution_id} did not finish in 60 s");
    }

    pub async fn results(&self, execution_id: &str) -> serde_json::Value {
        let (status, body) = self.get(&format!("/api/parallel-test-execution/{execution_id}/results")).await;
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }
}

/// Status and body of a response: JSON when it parses, else the text.
async fn reply(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}
