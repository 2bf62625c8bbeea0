//! `cardrun watch EXECUTION_ID --server URL`: follows a run on a server over
//! Socket.IO with a progress bar, then prints `run`'s results table and
//! exits with `run`'s codes.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

use super::report;
use super::run::PairRun;
use cardrun::api::ExecutionResults;
use cardrun::domain::{Evaluation, EvaluationPair};
use cardrun::domain::{ExecutionProgress, ExecutionStatus, TestResult, TestStatus};
use cardrun::evaluation;
use cardrun::progress::client::SocketClient;

pub struct WatchArgs {
    pub execution_id: String,
    pub server: String,
    /// An API key, sent on every request and in the Socket.IO handshake.
    pub key: Option<String>,
    pub report: report::ReportArgs,
}

/// Reconnections after a lost connection before giving up.
const RECONNECTS: u32 = 5;
/// How long the websocket handshake may take before it is tried again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After this long without an event, progress is read over REST: an end
/// that never arrives (lost on the way) cannot leave `watch` waiting.
const QUIET_CHECK: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Card {
    title: String,
}

/// GETs `path` and unwraps the envelope; a 4xx is the server's message.
async fn get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, server: &str, path: &str) -> anyhow::Result<T> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let reply = http.get(&url).send().await.with_context(|| format!("cannot reach {server}"))?;
    let status = reply.status();
    let body: Envelope<T> =
        reply.json().await.with_context(|| format!("{url} did not answer with cardrun's JSON ({status})"))?;
    match (body.data, body.error) {
        (Some(data), _) if status.is_success() => Ok(data),
        (_, Some(error)) => bail!("{error}"),
        _ => bail!("{url} answered {status}"),
    }
}

pub async fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let id = uuid::Uuid::parse_str(args.execution_id.trim())
        .map_err(|_| anyhow::anyhow!("`{}` is not an execution id (a UUID)", args.execution_id))?;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &args.key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| anyhow::anyhow!("the API key is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).default_headers(headers).build()?;
    let progress: ExecutionProgress =
        get(&http, &args.server, &format!("/api/parallel-test-execution/{id}/progress")).await?;

    let bar = report::progress_bar(progress.total_tests as u64, args.report.quiet);
    show(&bar, &progress);
    if !progress.status.is_finished() {
        follow(&http, &args.server, args.key.as_deref(), id, &bar).await?;
    }
    bar.finish_and_clear();

    let results: ExecutionResults =
        get(&http, &args.server, &format!("/api/parallel-test-execution/{id}/results")).await?;
    let title = get::<Card>(&http, &args.server, &format!("/api/prompt-cards/{}", results.prompt_card_id))
        .await
        .map_or_else(|_| format!("card {}", results.prompt_card_id), |c| c.title);
    // One execution is an evaluation of one pair, for the same reports.
    let evaluation = Evaluation {
        evaluation_id: id,
        tenant_id: None,
        description: title.clone(),
        pairs: vec![EvaluationPair {
            label: results.model.clone(),
            prompt: title.clone(),
            provider: results.model.clone(),
            model: results.model.clone(),
            prompt_card_id: results.prompt_card_id,
            execution_id: id,
        }],
        created_at: chrono::Utc::now(),
    };
    let summary = evaluation::results(&evaluation, &[(results.status, results.results.clone())]);
    let pair = PairRun { label: results.model.clone(), card_title: title.clone(), results: results.results };
    let all: Vec<(String, TestResult)> = pair.results.iter().map(|r| (title.clone(), r.clone())).collect();
    print!("{}", report::table(&all));
    if results.status == ExecutionStatus::Cancelled {
        println!("the execution was cancelled");
    }
    let pairs = [pair];
    if let Some(path) = &args.report.output {
        std::fs::write(path, report::json(&title, &summary, &pairs)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.report.junit {
        std::fs::write(path, report::junit(&title, &pairs)).with_context(|| format!("writing {}", path.display()))?;
    }
    let ok = results.status == ExecutionStatus::Completed && all.iter().all(|(_, r)| r.status == TestStatus::Passed);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Follows the execution until `execution-complete`, reconnecting (and
/// subscribing again, which resends the snapshot) when the connection drops.
/// When no event comes for [`QUIET_CHECK`], progress is read over REST, and
/// a finished execution ends the follow whatever the socket says.
async fn follow(
    http: &reqwest::Client,
    server: &str,
    key: Option<&str>,
    id: uuid::Uuid,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let (mut passed, mut not_passed) = (0usize, 0usize);
    let mut attempts = 0;
    loop {
        let connected = match tokio::time::timeout(CONNECT_TIMEOUT, SocketClient::connect_with_key(server, key)).await {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(_) => Err(anyhow::anyhow!("no handshake within {} s", CONNECT_TIMEOUT.as_secs())),
        };
        let mut client = match connected {
            Ok(c) => c,
            Err(e) if attempts < RECONNECTS => {
                attempts += 1;
                bar.set_message(format!("reconnecting ({e})"));
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempts))).await;
                continue;
            }
            Err(e) => return Err(e).context("following the execution"),
        };
        client.emit("subscribe-test", &json!({"executionId": id})).context("subscribing")?;
        loop {
            let event = match tokio::time::timeout(QUIET_CHECK, client.next()).await {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(_) => {
                    let path = format!("/api/parallel-test-execution/{id}/progress");
                    if let Ok(p) = get::<ExecutionProgress>(http, server, &path).await {
                        show(bar, &p);
                        if p.status.is_finished() {
                            client.close();
                            return Ok(());
                        }
                    }
                    continue;
                }
            };
            match event.name.as_str() {
                "progress" => {
                    if let Ok(p) = serde_json::from_value::<ExecutionProgress>(event.data) {
                        show(bar, &p);
                    }
                }
                "test-complete" => {
                    match event.data["status"].as_str() {
                        Some("passed") => passed += 1,
                        _ => not_passed += 1,
                    }
                    bar.set_message(format!("{passed} passed, {not_passed} not"));
                }
                "execution-complete" => {
                    client.close();
                    return Ok(());
                }
                "error" => {
                    let message = event.data["message"].as_str().unwrap_or("unknown error").to_string();
                    bail!("the server refused to follow {id}: {message}");
                }
                _ => {}
            }
        }
        if attempts >= RECONNECTS {
            bail!("lost the connection to {server} {RECONNECTS} times");
        }
        attempts += 1;
        bar.set_message("connection lost; reconnecting");
        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempts))).await;
    }
}

fn show(bar: &indicatif::ProgressBar, p: &ExecutionProgress) {
    bar.set_length(p.total_tests as u64);
    bar.set_position(p.completed_tests as u64);
    bar.set_message(format!("{} passed, {} failed ({})", p.passed_tests, p.failed_tests, p.status.as_str()));
}
