//! API keys (issue 14, point 1) with the real binary: `cardrun tenant` and
//! `cardrun key` write to the store a running server reads; once a tenant
//! exists every API and Socket.IO request needs a live key, `cardrun watch`
//! presents one, and a revoked key stops working at once.

use std::path::Path;
use std::time::Duration;

use cardrun::progress::client::{ClientError, SocketClient};
use serde_json::{Value, json};

use super::support::{Server, SlowOllama, cardrun};

/// Runs `cardrun ARGS --database DB`; (success, stdout, stderr).
pub(super) fn cli(db: &Path, args: &[&str]) -> (bool, String, String) {
    let out = cardrun().args(args).arg("--database").arg(db).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (status, body, WWW-Authenticate) of `GET path` with `key`.
async fn get(base: &str, path: &str, key: Option<&str>) -> (u16, Value, Option<String>) {
    let mut request = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_tenant_exists_every_request_needs_a_live_key() {
    let ollama = SlowOllama::start(Duration::from_millis(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cardrun.db");
    let server = Server::start(&db, &ollama.url, dir.path().join("log")).await;
    let card = server.card(&["a", "b"], json!({"type": "contains", "value": "say"})).await;
    assert_eq!(get(&server.base, "/api/prompt-cards", None).await.0, 200, "no tenant: open");

    let (ok, out, err) = cli(&db, &["tenant", "create", "acme"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("owns the 1 card(s)"), "the first tenant takes over what was made before: {out}");
    let (ok, key, err) = cli(&db, &["key", "create", "acme"]);
    assert!(ok, "{err}");
    let key = key.trim().to_string();
    assert!(key.starts_with("crd_"), "{key}");
    let key_id = key.split('_').nth(1).unwrap().to_string();
    assert!(err.contains(&key_id), "{err}");

    // The running server notices the tenant within a second.
    let mut refused = (0, Value::Null, None);
    for _ in 0..100 {
        refused = get(&server.base, "/api/prompt-cards", None).await;
        if refused.0 == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refused.0, 401, "{:?}", refused.1);
    assert_eq!(refused.1["success"], false);
    assert!(refused.1["error"].as_str().unwrap().contains("Bearer"), "{}", refused.1);
    assert_eq!(refused.2.as_deref(), Some("Bearer"));
    for open in ["/health", "/api/openapi.json", "/metrics"] {
        let status = reqwest::get(format!("{}{open}", server.base)).await.unwrap().status().as_u16();
        assert_eq!(status, 200, "{open} stays open");
    }
    let (status, body, _) = get(&server.base, "/api/prompt-cards", Some("crd_000000000000_nope")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not valid"), "{body}");
    let (status, body, _) = get(&server.base, &format!("/api/prompt-cards/{card}"), Some(&key)).await;
    assert_eq!(status, 200, "{body}");

    // Socket.IO: refused without the key, accepted with it.
    match SocketClient::connect(&server.base).await {
        Err(ClientError::Refused(why)) => assert!(why.contains("API key is required"), "{why}"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a Socket.IO client without a key was let in"),
    }
    assert!(SocketClient::connect_with_key(&server.base, Some("crd_000000000000_nope")).await.is_err());
    SocketClient::connect_with_key(&server.base, Some(&key)).await.expect("a key opens Socket.IO");

    // `cardrun watch` follows an execution with the key.
    let queued: Value = reqwest::Client::new()
        .post(format!("{}/api/parallel-test-execution/queue", server.base))
        .bearer_auth(&key)
        .json(&json!({"prompt_card_id": card, "model": "ollama:m"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = queued["data"]["execution_id"].as_str().expect("queued").to_string();
    let watch = cardrun()
        .args(["watch", &id, "--server", &server.base, "--quiet"])
        .env("CARDRUN_API_KEY", &key)
        .output()
        .unwrap();
    assert!(watch.status.success(), "{}", String::from_utf8_lossy(&watch.stderr));
    let without = cardrun().args(["watch", &id, "--server", &server.base, "--quiet"]).output().unwrap();
    assert!(!without.status.success(), "watch without a key must fail");

    // Revoked: refused at once.
    let (ok, out, err) = cli(&db, &["key", "revoke", &key_id]);
    assert!(ok, "{out}{err}");
    assert_eq!(get(&server.base, "/api/prompt-cards", Some(&key)).await.0, 401);
    let (ok, _, err) = cli(&db, &["key", "revoke", &key_id]);
    assert!(!ok && err.contains("no live key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_required_before_any_tenant_and_a_metrics_token() {
    let ollama = SlowOllama::start(Duration::from_millis(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let env = [("CARDRUN_AUTH", "required"), ("METRICS_TOKEN", "s3cret-token")];
    let server = Server::start_with(&dir.path().join("db"), &ollama.url, dir.path().join("log"), &[], &env).await;
    assert_eq!(get(&server.base, "/api/prompt-cards", None).await.0, 401, "required with no tenant at all");
    assert_eq!(get(&server.base, "/metrics", None).await.0, 401);
    assert_eq!(get(&server.base, "/metrics", Some("wrong-token!")).await.0, 401);
    let metrics = reqwest::Client::new().get(format!("{}/metrics", server.base)).bearer_auth("s3cret-token");
    assert_eq!(metrics.send().await.unwrap().status().as_u16(), 200);
    assert_eq!(get(&server.base, "/health", None).await.0, 200);

    let bad = cardrun().args(["serve", "--port", "0"]).env("CARDRUN_AUTH", "maybe").output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("CARDRUN_AUTH must be `required` or `auto`"));
}
