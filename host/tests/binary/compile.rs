//! Plugins compiled in a child process with a time budget
//! (`COMPILE_BUDGET_MS`): a component built to be slow to compile is killed
//! and refused; an ordinary one compiles and works.

use serde_json::json;

use super::bomb::compile_bombs;
use super::support::{Server, SlowOllama};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_over_the_budget_is_killed_and_refused() {
    let ollama = SlowOllama::start(std::time::Duration::from_millis(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("cardrun.db"),
        &ollama.url,
        dir.path().join("serve.log"),
        &[],
        &[("COMPILE_BUDGET_MS", "600")],
    )
    .await;
    let client = reqwest::Client::new();
    let upload = |bytes: Vec<u8>| {
        let (client, url) = (client.clone(), format!("{}/api/plugins", server.base));
        async move {
            let reply = client.post(url).body(bytes).send().await.unwrap();
            (reply.status().as_u16(), reply.json::<serde_json::Value>().await.unwrap())
        }
    };

    // Three functions of 5,000 live locals pass the structure check, and
    // take seconds of Cranelift time.
    let (status, body) = upload(compile_bombs(5_000, 3)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("COMPILE_BUDGET_MS"), "{body}");

    // An ordinary plugin, with bytes no cache has seen, compiles within it.
    let mut trivial = std::fs::read(
        std::path::PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR)
            .join("cardrun_test_trivial_assertion.wasm"),
    )
    .unwrap();
    let nonce = uuid_like();
    trivial.extend_from_slice(&[0, (nonce.len() + 2) as u8, 1, b'n']);
    trivial.extend_from_slice(nonce.as_bytes());
    let (status, body) = upload(trivial).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["assertion_types"], json!(["same-as-expected"]));
}

/// A string no earlier run produced (so the plugin's hash is new).
fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}
