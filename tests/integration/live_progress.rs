//! Live progress over Socket.IO (issue 10): the reference JavaScript client
//! on both transports, cardrun's own Rust client, and events arriving
//! through another API host.

use std::collections::BTreeSet;
use std::time::Duration;

use cardrun::progress::client::SocketClient;
use cardrun_tests::TestHost;
use cardrun_tests::fake_llm::FakeLlm;
use cardrun_tests::js::NodePeer;
use cardrun_tests::redis::RedisServer;
use serde_json::{Value, json};

const EXEC: &str = "/api/parallel-test-execution";

/// Eight cases, two of which fail their assertion.
async fn card(host: &TestHost) -> (i64, Vec<i64>) {
    let cases = (0..8)
        .map(|i| {
            let wanted = if i % 4 == 3 { "zzz".to_string() } else { format!("number {i}") };
            json!({"name": format!("t{i}"), "input_variables": {"n": i},
                   "assertions": [{"type": "contains", "value": wanted}]})
        })
        .collect();
    host.card_with_cases("Say number {{n}}", cases).await
}

async fn queue(host: &TestHost, card: i64, model: &str, concurrency: usize) -> String {
    let body = json!({"prompt_card_id": card, "model": model,
                      "configuration": {"max_concurrent_tests": concurrency, "retry_failed_tests": false}});
    let (status, reply) = host.post(&format!("{EXEC}/queue"), body).await;
    assert_eq!(status, 202, "{reply}");
    reply["data"]["execution_id"].as_str().expect("id").to_string()
}

/// `field` of every event under `key` that belongs to execution `id`.
fn of_execution<T>(done: &Value, key: &str, id: &str, field: impl Fn(&Value) -> Option<T>) -> Vec<T> {
    let events = done[key].as_array().unwrap_or_else(|| panic!("no `{key}` in {done}"));
    events.iter().filter(|e| e["execution_id"] == id).map(|e| field(e).expect("field present")).collect()
}

/// What a follower of one execution saw, checked against the rules: a
/// confirmation first, percent rising to 100, exactly one `test-complete`
/// per test, and one `execution-complete` whose summary matches.
fn check_followed(done: &Value, id: &str, case_ids: &[i64], passed: u64) {
    let confirmed = done["confirmed"].as_array().expect("confirmed");
    assert!(confirmed.iter().any(|c| c["execution_id"] == id && c["room"] == format!("test-{id}")), "{done}");
    let percents: Vec<f64> = of_execution(done, "progress", id, |p| p["percent"].as_f64());
    assert!(!percents.is_empty(), "{done}");
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "percent never falls: {percents:?}");
    assert_eq!(percents.last(), Some(&100.0), "{percents:?}");
    let tests: Vec<i64> = of_execution(done, "tests", id, |t| t["test_case_id"].as_i64());
    assert_eq!(tests.len(), case_ids.len(), "exactly one test-complete per test: {tests:?}");
    assert_eq!(tests.iter().copied().collect::<BTreeSet<_>>(), case_ids.iter().copied().collect());
    let complete: Vec<&Value> = done["complete"].as_array().expect("complete").iter().collect();
    assert_eq!(complete.len(), 1, "{done}");
    assert_eq!(complete[0]["execution_id"], id);
    assert_eq!(complete[0]["summary"]["total_tests"], case_ids.len());
    assert_eq!(complete[0]["summary"]["passed_tests"], passed);
}

#[tokio::test]
async fn the_reference_javascript_client_follows_a_run_on_both_transports() {
    let fake = FakeLlm::start().await;
    fake.set_latency(100);
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), &fake.base_url(), 4).await;
    let (card, case_ids) = card(&host).await;
    for transport in ["websocket", "polling"] {
        let mut node = NodePeer::start("follow.mjs", &[&host.base, transport]);
        let ready = node.report("ready", Duration::from_secs(20)).await;
        assert_eq!(ready["transport"], transport);
        // An unknown execution: an `error` event and a failed ack.
        node.send(json!({"subscribe": uuid::Uuid::new_v4().to_string()})).await;
        node.report("subscribed", Duration::from_secs(10)).await;
        let id = queue(&host, card, "llama3", 2).await;
        node.send(json!({"subscribe": id})).await;
        let done = node.report("done", Duration::from_secs(60)).await;
        assert_eq!(done["code"], 0, "{done}");
        let done = &done["done"];
        assert_eq!(done["acks"][0]["success"], false, "{done}");
        assert!(done["errors"][0]["message"].as_str().unwrap_or("").contains("no execution"), "{done}");
        assert_eq!(done["acks"][1]["success"], true, "{done}");
        assert_eq!(done["acks"][1]["room"], format!("test-{id}"));
        check_followed(done, &id, &case_ids, 6);
        assert!(node.wait().await.success());
    }
}

/// Follows `id` with cardrun's own client until `execution-complete`, as
/// a report shaped like the JavaScript peer's.
async fn follow_with_rust_client(base: &str, id: &str) -> Value {
    let mut client = SocketClient::connect(base).await.expect("connects");
    client.emit("subscribe-test", &json!({"executionId": id})).expect("subscribes");
    let mut seen = json!({"confirmed": [], "progress": [], "tests": [], "complete": []});
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = client.next().await {
            let key = match event.name.as_str() {
                "subscription-confirmed" => "confirmed",
                "progress" => "progress",
                "test-complete" => "tests",
                "execution-complete" => "complete",
                other => panic!("unexpected event {other}: {}", event.data),
            };
            seen[key].as_array_mut().expect("list").push(event.data);
            if key == "complete" {
                return;
            }
        }
        panic!("connection closed before execution-complete");
    })
    .await
    .expect("execution-complete within 60 s");
    client.close();
    seen
}

#[tokio::test]
async fn the_rust_client_follows_a_large_run_with_progress_coalesced() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 8).await;
    let (card, _) = host.card_with_cases("item {{n}}", Vec::new()).await;
    host.numbered_cases(card, 2_000, "ITEM").await;
    // The echo model is fast: tests settled before the subscription arrives
    // are counted in the first snapshot, every later one is an event.
    let mut client = SocketClient::connect(&host.base).await.expect("connects");
    let id = queue(&host, card, "echo:upper", 8).await;
    client.emit("subscribe-test", &json!(id)).expect("subscribes");
    let mut progress_frames = 0;
    let mut tests = BTreeSet::new();
    let mut first_snapshot_completed = None;
    let summary = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(event) = client.next().await {
            match event.name.as_str() {
                "progress" => {
                    progress_frames += 1;
                    first_snapshot_completed.get_or_insert(event.data["completed_tests"].as_u64().expect("n"));
                }
                "test-complete" => assert!(tests.insert(event.data["test_case_id"].as_i64().expect("id"))),
                "execution-complete" => return event.data,
                _ => {}
            }
        }
        panic!("closed early");
    })
    .await
    .expect("finishes");
    assert_eq!(summary["summary"]["passed_tests"], 2_000, "{summary}");
    // Every test settled after the subscription arrives once; the ones
    // before it are counted in the first snapshot.
    let before = first_snapshot_completed.expect("a snapshot first") as usize;
    assert!(tests.len() >= 2_000 - before, "{} test-complete events, {before} settled before", tests.len());
    // Ten snapshots a second at most, not one per test.
    assert!(progress_frames < 200, "{progress_frames} progress frames for 2,000 tests");

    // A finished execution: its snapshot and its end, at once.
    let again = follow_with_rust_client(&host.base, &id).await;
    assert_eq!(again["progress"][0]["percent"], 100.0);
    assert_eq!(again["complete"][0]["summary"]["total_tests"], 2_000);
    assert!(again["tests"].as_array().expect("tests").is_empty());
}

#[tokio::test]
async fn the_rust_client_follows_a_run_from_its_start() {
    let fake = FakeLlm::start().await;
    fake.set_latency(100);
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), &fake.base_url(), 4).await;
    let (card, case_ids) = card(&host).await;
    let id = queue(&host, card, "llama3", 2).await;
    let seen = follow_with_rust_client(&host.base, &id).await;
    check_followed(&seen, &id, &case_ids, 6);
}

#[tokio::test]
async fn events_reach_a_client_on_another_api_host() {
    let redis = RedisServer::start();
    let fake = FakeLlm::start().await;
    fake.set_latency(100);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let mut settings = cardrun_tests::host_settings(&db, &fake.base_url(), 4);
    settings.redis = Some(cardrun::queue::redis::RedisConfig::single(&redis.url(), "live"));
    let runner = TestHost::start_with_settings(settings.clone()).await;
    settings.run_worker = false;
    let api_only = TestHost::start_with_settings(settings).await;
    let (card, case_ids) = card(&runner).await;

    let mut node = NodePeer::start("follow.mjs", &[&api_only.base, "websocket"]);
    node.report("ready", Duration::from_secs(20)).await;
    let id = queue(&runner, card, "llama3", 2).await;
    node.send(json!({"subscribe": id})).await;
    let done = node.report("done", Duration::from_secs(60)).await;
    assert_eq!(done["code"], 0, "{done}");
    check_followed(&done["done"], &id, &case_ids, 6);
    // Both hosts read the queue's event stream, so some events were stored
    // by the runner and reached the API-only host through the relay.
    let relay = api_only.app.relay.as_ref().expect("a relay with Redis");
    let received = relay.counters.received.load(std::sync::atomic::Ordering::Relaxed);
    assert!(received > 0, "no event came through the relay");
    assert!(node.wait().await.success());
}

type RawSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A client that stops reading: raw Engine.IO over a websocket with a tiny
/// receive buffer, subscribed, then never read again.
async fn stalled_client(base: &str, id: &str) -> RawSocket {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().expect("addr");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let stream = socket.connect(addr).await.expect("connects");
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.expect("websocket");
    let open = ws.next().await.expect("open").expect("open");
    assert!(open.to_text().expect("text").starts_with('0'), "{open:?}");
    ws.send(Message::text("40")).await.expect("connect");
    loop {
        let message = ws.next().await.expect("connected").expect("connected");
        match message.to_text().expect("text") {
            t if t.starts_with("40") => break,
            "2" => ws.send(Message::text("3")).await.expect("pong"),
            other => panic!("unexpected {other}"),
        }
    }
    ws.send(Message::text(format!(r#"42["subscribe-test","{id}"]"#))).await.expect("subscribe");
    ws
}

/// Reads a socket until the server closes it; how many `test-complete`
/// events it carried.
async fn read_to_end(mut socket: RawSocket) -> usize {
    use futures_util::StreamExt;
    let mut events = 0;
    while let Some(Ok(message)) = socket.next().await {
        if message.to_text().is_ok_and(|t| t.starts_with(r#"42["test-complete""#)) {
            events += 1;
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_cut_off_and_slows_no_one() {
    // A model at 10 ms and 32 at once: about 3,000 tests/s, which a reader
    // in a debug build keeps up with.
    let fake = FakeLlm::start().await;
    fake.set_latency(10);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), &fake.base_url(), 32);
    // Four collector batches (512 results each).
    settings.socket_max_behind = 2_048;
    let host = TestHost::start_with_settings(settings).await;
    // Each test-complete carries the prompt (and the echoed answer), so at
    // 1.5 KB apiece the stalled client's buffers (the hub's 2,048 frames,
    // socketioxide's 1,024, and a loopback send buffer of up to 4 MiB) hold
    // well under half of the 12,000 events: it must fall behind.
    let template = format!("item {{{{n}}}} {}", "x".repeat(1_500));
    let (card, _) = host.card_with_cases(&template, Vec::new()).await;
    host.numbered_cases(card, 12_000, "item").await;
    let mut reader = SocketClient::connect(&host.base).await.expect("connects");
    let id = queue(&host, card, "llama3", 32).await;
    let stalled = stalled_client(&host.base, &id).await;
    reader.emit("subscribe-test", &json!(id)).expect("subscribes");
    let mut first_completed = None;
    let mut tests = 0usize;
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(event) = reader.next().await {
            match event.name.as_str() {
                "progress" => {
                    first_completed.get_or_insert(event.data["completed_tests"].as_u64().expect("n") as usize);
                }
                "test-complete" => tests += 1,
                "execution-complete" => return,
                "error" => panic!("the reading client was cut off: {}", event.data),
                _ => {}
            }
        }
        panic!("the reading client was disconnected");
    })
    .await
    .expect("the run finishes for the reading client");
    // The reader got every test settled after it subscribed.
    assert!(tests + first_completed.unwrap_or(0) >= 12_000, "{tests} events, {first_completed:?} before");
    // The stalled one is dropped by whichever limit it meets first: the
    // hub's (2,048 events behind), the stall limit (its transport refused
    // frames for 30 s) or the heartbeat (a ping found its buffer full, at
    // most 25 s after it filled). A slow machine meets the last one before
    // the hub's; the hub's own cut-off is checked in its unit tests.
    tokio::time::timeout(Duration::from_secs(90), async {
        while host.app.hub.followers() > 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the stalled client is dropped");
    let received = tokio::time::timeout(Duration::from_secs(60), read_to_end(stalled))
        .await
        .expect("the server closed the stalled socket");
    assert!(received < 12_000, "the stalled client was sent {received} test-complete events");
    let (_, results) = host.get(&format!("{EXEC}/{id}/results")).await;
    assert_eq!(results["data"]["summary"]["passed_tests"], 12_000);
}
