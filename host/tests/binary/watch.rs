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

/// A server whose Socket.IO side accepts the subscription and then says
/// nothing (an end lost on the way), while its REST side says the
/// execution finished: `watch` ends from the REST check, it does not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_from_rest_when_the_end_never_arrives_over_the_socket() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let id = uuid::Uuid::new_v4();
    let progress_reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reads = progress_reads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let reads = reads.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 512];
                let n = stream.peek(&mut head).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&head[..n]).into_owned();
                if request.contains("/socket.io/") {
                    silent_socket(stream).await;
                    return;
                }
                let now = chrono::Utc::now();
                let data = if request.contains("/progress") {
                    // Running at the first read, finished after that.
                    let first = reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                    let status = if first { "running" } else { "completed" };
                    json!({"job_id": id, "execution_id": id, "status": status, "percent": 50.0, "message": "",
                           "current_test": null, "total_tests": 1, "completed_tests": 1, "passed_tests": 1,
                           "failed_tests": 0, "updated_at": now, "estimated_time_remaining_ms": null})
                } else if request.contains("/results") {
                    json!({"execution_id": id, "status": "completed", "model": "echo:echo", "prompt_card_id": 1,
                           "summary": {"total_tests": 1, "passed_tests": 1, "failed_tests": 0, "error_tests": 0,
                                       "skipped_tests": 0, "cancelled_tests": 0, "flaky_tests": 0,
                                       "total_execution_time": 1, "average_execution_time": 1.0},
                           "results": []})
                } else {
                    json!({"title": "card"})
                };
                let body = json!({"success": true, "data": data}).to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut buf = vec![0u8; n];
                let _ = tokio::io::AsyncReadExt::read_exact(&mut stream, &mut buf).await;
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    let (code, out, err) = watch(&base, &id.to_string(), &[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(progress_reads.load(std::sync::atomic::Ordering::SeqCst) >= 2, "progress was read again over REST");
}

/// Engine.IO open and the namespace connect, then silence.
async fn silent_socket(stream: tokio::net::TcpStream) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let open = r#"0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
    let _ = ws.send(Message::text(open)).await;
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Text(t) = message
            && t.as_str() == "40"
        {
            let _ = ws.send(Message::text(r#"40{"sid":"n"}"#)).await;
        }
    }
}
