//! Socket.IO under load (issue 10): event latency and concurrent clients.
//!
//! `socketio [CLIENTS,...] [TESTS]` (default `0,1,100,1000 1000`). For each
//! client count it runs one execution of TESTS tests (concurrency 50,
//! cache off) against a fake Ollama answering after 50 ms, on one host
//! (the host in this process; the clients in one Node process running the
//! reference `socket.io-client`, each subscribed to the execution).
//!
//! It prints, per client count:
//! - the engine's tests/s (submission to `execution-complete` on the host's
//!   bus) and the process's CPU per test;
//! - how many `test-complete` events the clients got (min, median, max:
//!   tests settled while the clients were still subscribing are missed by
//!   design, they are in the snapshot);
//! - event latency, p50 and p99, from the moment the host's collector
//!   published a test's `test-complete` on its bus (the result settled and
//!   stored) to the moment the first and the last client received it;
//! - the same from the moment the fake model sent the test's answer (so
//!   it adds the adapter, the assertion, the queue and the store write).
//!
//! 1,000 clients need more than 1,024 file descriptors: run it as
//! `bash -c 'ulimit -n 8192; ./target/release/socketio'`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cardrun_tests::TestHost;
use cardrun_tests::js::NodePeer;
use serde_json::{Value, json};

const LATENCY: Duration = Duration::from_millis(50);

/// When the fake model answered each prompt, or when the host published
/// its result (epoch ms).
type Answered = Arc<Mutex<HashMap<String, f64>>>;

/// Notes when each `test-complete` is published on the host's bus.
struct Published(Answered);

impl cardrun::progress::Listener for Published {
    fn on_event(&self, event: &cardrun::progress::ProgressEvent, _: cardrun::progress::Origin) {
        if let cardrun::progress::ProgressEvent::TestComplete(r) = event
            && let Some(prompt) = &r.prompt
        {
            self.0.lock().expect("log").insert(prompt.clone(), epoch_ms());
        }
    }
}

fn epoch_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// A fake Ollama on its own thread that notes when it answered each prompt.
fn fake_ollama() -> (String, Answered) {
    use axum::Json;
    let answered: Answered = Arc::default();
    let log = answered.clone();
    let generate = move |Json(body): Json<Value>| {
        let log = log.clone();
        async move {
            let prompt = body["prompt"].as_str().unwrap_or_default().to_string();
            if !prompt.is_empty() {
                tokio::time::sleep(LATENCY).await;
                log.lock().expect("log").insert(prompt.clone(), epoch_ms());
            }
            Json(json!({"response": prompt, "done": true, "prompt_eval_count": 2, "eval_count": 2}))
        }
    };
    let url = cardrun_benches::serve_on_own_thread(
        axum::Router::new().route("/api/generate", axum::routing::post(generate)),
        "fake-ollama",
    );
    (url, answered)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let counts: Vec<usize> = args
        .get(1)
        .map_or("0,1,100,1000", String::as_str)
        .split(',')
        .map(|c| c.trim().parse().expect("client counts: numbers"))
        .collect();
    let tests: usize = args.get(2).map_or(1000, |t| t.parse().expect("tests: a number"));
    println!("machine: {}", cardrun_benches::machine());

    let (llm, answered) = fake_ollama();
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = cardrun_tests::host_settings(&dir.path().join("bench.db"), &llm, 100);
    settings.max_concurrent_tests = 100;
    let host = TestHost::start_with_settings(settings).await;
    let published: Answered = Arc::default();
    host.app.engine.progress_service().add_listener(Arc::new(Published(published.clone())));
    let (card, _) = host.card_with_cases("item {{n}}", Vec::new()).await;
    host.numbered_cases(card, tests, "item").await;

    println!(
        "{:>7}  {:>8}  {:>10}  {:>14}  {:>21}  {:>21}  {:>21}",
        "clients",
        "tests/s",
        "CPU/test",
        "events/client",
        "settled->first p50/99",
        "settled->last p50/99",
        "answer->first p50/99"
    );
    for clients in counts.iter().copied() {
        // The prompts repeat between rounds (the cache is off): each answer
        // time in the log is overwritten by this round's.
        let mut swarm = (clients > 0).then(|| NodePeer::start("swarm.mjs", &[&host.base, &clients.to_string()]));
        if let Some(s) = swarm.as_mut() {
            s.report("ready", Duration::from_secs(120)).await;
        }
        let mut events = host.app.engine.progress_service().subscribe();
        let cpu_before = cardrun_benches::process_cpu_time();
        let started = Instant::now();
        let body = json!({"prompt_card_id": card, "model": "ollama:m",
            "configuration": {"max_concurrent_tests": 50, "cache_enabled": false, "retry_failed_tests": false}});
        let (status, reply) = host.post("/api/parallel-test-execution/queue", body).await;
        assert_eq!(status, 202, "{reply}");
        let id = reply["data"]["execution_id"].as_str().expect("id").to_string();
        if let Some(s) = swarm.as_mut() {
            s.send(json!({"subscribe": id})).await;
        }
        loop {
            match events.recv().await {
                Ok(cardrun::progress::ProgressEvent::ExecutionComplete(c)) if c.execution_id.to_string() == id => break,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("bus closed: {e}"),
            }
        }
        let elapsed = started.elapsed();
        let cpu = match (cpu_before, cardrun_benches::process_cpu_time()) {
            (Some(a), Some(b)) => format!("{:.0} us", (b - a).as_secs_f64() * 1e6 / tests as f64),
            _ => "n/a".into(),
        };
        let rate = tests as f64 / elapsed.as_secs_f64();
        let Some(mut swarm) = swarm else {
            println!("{clients:>7}  {rate:>8.0}  {cpu:>10}  {:>14}  {:>21}  {:>21}  {:>21}", "-", "-", "-", "-");
            continue;
        };
        let done = swarm.report("done", Duration::from_secs(120)).await;
        let done = &done["done"];
        let latencies = |log: &Answered, which: usize| {
            let log = log.lock().expect("log").clone();
            let mut v: Vec<f64> = done["received"]
                .as_object()
                .expect("received")
                .iter()
                .filter_map(|(prompt, times)| Some(times[which].as_f64()? - log.get(prompt)?))
                .collect();
            v.sort_by(f64::total_cmp);
            format!("{:.1} / {:.1} ms", percentile(&v, 0.5), percentile(&v, 0.99))
        };
        // `SOCKETIO_TAIL=1`: the slowest events and when they were
        // published (this is how Nagle's 40 ms stalls showed up).
        if std::env::var_os("SOCKETIO_TAIL").is_some() {
            let log = published.lock().expect("log").clone();
            let start = log.values().copied().fold(f64::MAX, f64::min);
            let mut v: Vec<(f64, f64)> = done["received"]
                .as_object()
                .expect("received")
                .iter()
                .filter_map(|(p, t)| Some((t[0].as_f64()? - log.get(p)?, log.get(p)? - start)))
                .collect();
            v.sort_by(|a, b| b.0.total_cmp(&a.0));
            println!("slowest (latency ms, published at ms): {:?}", &v[..v.len().min(15)]);
        }
        let per_client = &done["tests_per_client"];
        println!(
            "{clients:>7}  {rate:>8.0}  {cpu:>10}  {:>14}  {:>21}  {:>21}  {:>21}",
            format!("{}/{}/{}", per_client[0], per_client[1], per_client[2]),
            latencies(&published, 0),
            latencies(&published, 1),
            latencies(&answered, 0),
        );
        println!(
            "         clients' process: {:.1} s CPU over {:.1} s; its event loop late by p99 {:.1} ms, max {:.1} ms; {} disconnects",
            done["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
            elapsed.as_secs_f64(),
            done["event_loop_delay_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
            done["event_loop_delay_ms"]["max"].as_f64().unwrap_or(f64::NAN),
            done["disconnects"]
        );
        let _ = swarm.wait().await;
    }
}
