//! Test harness shared by cardrun's integration tests.

pub mod fake_llm;

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
        },
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
