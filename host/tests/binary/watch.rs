//! `cardrun watch`: follows a run on a real `cardrun serve` over Socket.IO,
//! prints `run`'s table, and exits with `run`'s codes.

use std::time::Duration;

use serde_json::json;

use crate::support::{Server, SlowOllama, cardrun};

/// Runs `cardrun watch ID --server URL` to the end: (exit code, stdout, stderr).
async fn watch(server: &str, id: &str, extra: &[&str]) -> (i32, String, String) {
    let mut command = tokio::process::Command::from(cardrun());
    command.args(["watch", id, "--server", server]).args(extra);
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("watch finishes within 60 s")
        .expect("watch runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_run_and_exits_like_run() {
    let ollama = SlowOllama::start(Duration::from_millis(150)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("db"), &ollama.url, dir.path().join("serve.log")).await;

    // Every test passes: exit 0, the table lists each test.
    let card = server.card(&["a", "b", "c", "d"], json!({"type": "contains", "value": "say"})).await;
    let id = server.queue(card, json!({"max_concurrent_tests": 2})).await;
    let junit = dir.path().join("watch.xml");
    let (code, out, err) = watch(&server.base, &id, &["--junit", junit.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("passed")).count(), 4, "{out}");
    assert!(out.contains("4 passed, 0 failed"), "{out}");
    assert!(std::fs::read_to_string(&junit).unwrap().contains("tests=\"4\""));

    // A failing test: exit 1, with the failing assertion's reason.
    let card = server.card(&["a", "b"], json!({"type": "contains", "value": "b"})).await;
    let id = server.queue(card, json!({"retry_failed_tests": false})).await;
    let (code, out, err) = watch(&server.base, &id, &[]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("1 passed, 1 failed"), "{out}");
    assert!(out.contains("does not contain"), "{out}");

    // A finished execution answers at once, with the same table and code.
    let (code, again, _) = watch(&server.base, &id, &[]).await;
    assert_eq!((code, again.lines().count()), (1, out.lines().count()));

    // Unknown executions and servers: exit 2 with a message.
    let (code, _, err) = watch(&server.base, &uuid::Uuid::new_v4().to_string(), &[]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no execution") || err.contains("not found") || err.contains("No execution"), "{err}");
    let (code, _, err) = watch(&server.base, "not-a-uuid", &[]).await;
    assert_eq!(code, 2);
    assert!(err.contains("not an execution id"), "{err}");
    let (code, _, err) = watch("http://127.0.0.1:9", &id, &[]).await;
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach"), "{err}");
}
