//! The `cardrun` binary on one machine: `run` on the offline example suite
//! writes JSON and JUnit reports and sets the exit code; help is complete;
//! plugins load from files; `serve` drains on SIGTERM.

use std::path::PathBuf;

use super::support::{Server, SlowOllama, cardrun, repo, wait_until};

#[test]
fn run_offline_suite_writes_json_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    let (json_path, junit_path) = (dir.path().join("out.json"), dir.path().join("junit.xml"));
    let out = cardrun()
        .args(["run", "examples/suites/offline.yaml", "--output"])
        .arg(&json_path)
        .arg("--junit")
        .arg(&junit_path)
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("4 passed, 0 failed"), "{stdout}");

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["model"], "echo:upper");
    assert_eq!(report["summary"]["total_tests"], 4);
    assert_eq!(report["summary"]["passed_tests"], 4);
    assert_eq!(report["results"][0]["result"]["status"], "passed");

    let junit = std::fs::read_to_string(&junit_path).unwrap();
    assert!(junit.starts_with("<?xml"), "{junit}");
    assert!(
        junit.contains("<testsuites name=\"Offline demo (echo adapter)\" tests=\"4\" failures=\"0\" errors=\"0\""),
        "{junit}"
    );
    assert_eq!(junit.matches("<testcase ").count(), 4);
    assert!(!junit.contains("<failure"));
}

#[test]
fn failing_suite_exits_one_with_a_junit_failure() {
    let dir = tempfile::tempdir().unwrap();
    let junit_path = dir.path().join("junit.xml");
    let out = cardrun()
        .args(["run", "examples/suites/failing.yaml", "--junit"])
        .arg(&junit_path)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let junit = std::fs::read_to_string(&junit_path).unwrap();
    assert!(junit.contains("failures=\"1\""), "{junit}");
    assert!(junit.contains("<failure message=\"equals: expected &quot;something else&quot;"), "{junit}");
}

#[test]
fn usage_errors_exit_two_with_a_message() {
    let out = cardrun().args(["run", "no/such/suite.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/suite.yaml"));
    let out = cardrun()
        .args(["run", "examples/suites/offline.yaml", "--model", "bard:x"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown model adapter"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_resource_settings_exit_two_naming_the_variable() {
    for (name, value) in [("MAX_CPU_PERCENT", "150"), ("EMERGENCY_CPU_PERCENT", "0"), ("RESOURCE_ADMISSION", "maybe")] {
        let out = cardrun()
            .args(["run", "examples/suites/offline.yaml"])
            .current_dir(repo())
            .env(name, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value}: {stderr}");
        assert!(stderr.contains(name) && stderr.contains(value), "{name}={value}: {stderr}");
    }
}

/// Runs `cmd`, killing it after `bound` (the run it replaces took longer).
fn output_within(mut cmd: std::process::Command, bound: std::time::Duration) -> std::process::Output {
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(bound) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
            panic!("still running after {bound:?}");
        }
    }
}

#[test]
fn a_model_server_that_never_answers_stops_the_run_at_the_warm_up() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    let mut cmd = cardrun();
    // Each test may take two minutes: without the warm-up check the run
    // would outlast the bound below.
    cmd.args(["run", "examples/suites/ollama.yaml", "--timeout", "120000"])
        .current_dir(repo())
        .env("OLLAMA_BASE_URL", &url);
    let out = output_within(cmd, std::time::Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("did not answer its warm-up within 5000 ms"), "{stderr}");
    assert!(stderr.contains("--warmup-timeout"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "no results table");
}

#[test]
fn a_model_server_that_is_down_stops_the_run_at_the_warm_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = cardrun();
    cmd.args(["run", "examples/suites/ollama.yaml", "--timeout", "120000", "--warmup-timeout", "2000"])
        .current_dir(repo())
        .env("OLLAMA_BASE_URL", format!("http://127.0.0.1:{port}"));
    let out = output_within(cmd, std::time::Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("failed its warm-up") && stderr.contains("--warmup-timeout"), "{stderr}");
}

#[test]
fn report_paths_are_checked_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("results.json");
    for flag in ["--output", "--junit"] {
        let out = cardrun()
            .args(["run", "examples/suites/offline.yaml", flag])
            .arg(&missing)
            .current_dir(repo())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(&format!("cannot write {}", missing.display())), "{flag}: {stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "{flag}: the suite did not run");
    }
    // A path that can be written is left as it was until the results come.
    let fine = dir.path().join("results.json");
    let out = cardrun()
        .args(["run", "examples/suites/offline.yaml", "--output"])
        .arg(&fine)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&fine).unwrap().contains("results"));
    // Not a terminal: no escape codes anywhere.
    assert!(!out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b), "ANSI codes in piped output");
}

#[test]
fn every_problem_of_a_suite_is_reported_at_once_with_file_line_and_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        "description: d\nprompts: ['{{a}} {{b}}']\ntests:\n  - description: one\n    vars: { a: 1 }\n    assert:\n      - type: contians\n  - description: two\n    vars: { a: 1, b: 2 }\n    assert:\n      - type: simlarity\n",
    )
    .unwrap();
    let out = cardrun().args(["run"]).arg(&suite).args(["--model", "echo:echo"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&suite.display().to_string()) && stderr.contains("3 problems"), "{stderr}");
    assert!(stderr.contains("line 7: tests[0]") && stderr.contains("did you mean `contains`?"), "{stderr}");
    assert!(stderr.contains("line 11: tests[1]") && stderr.contains("did you mean `similarity`?"), "{stderr}");
    assert!(stderr.contains("missing template variable(s): b"), "{stderr}");
}

#[test]
fn invalid_assertion_parameters_stop_the_run_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        "description: d\nprompts: ['{{a}}']\ntests:\n  - description: one\n    vars: { a: 1 }\n    assert:\n      - type: regex\n        value: '(unclosed'\n",
    )
    .unwrap();
    let report = dir.path().join("out.json");
    let out =
        cardrun().args(["run"]).arg(&suite).args(["--model", "echo:echo", "--output"]).arg(&report).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 7: tests[0] `one`, assert[0] `regex`: invalid parameters: invalid regex"),
        "{stderr}"
    );
    assert!(!report.exists(), "nothing ran, nothing was written");
}

#[test]
fn help_describes_every_subcommand() {
    let out = cardrun().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serve") && text.contains("run"), "{text}");
    let out = cardrun().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--output", "--junit", "--concurrency", "--model", "--adapter", "--plugin"] {
        assert!(text.contains(flag), "{flag} missing from run --help");
    }
    let out = cardrun().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DATABASE_PATH") && text.contains("PLUGIN_DIR") && text.contains("--plugin"), "{text}");
    assert!(text.contains("--adapter-plugin"), "{text}");
    let out = cardrun().args(["plugin", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["new", "check", "bench"] {
        assert!(text.contains(command), "`plugin {command}` missing from plugin --help: {text}");
    }
}

/// A suite using a third-party assertion type (the test plugin
/// `same-as-expected`, built by `build.rs`).
const PLUGIN_SUITE: &str = r#"
description: plugin suite
prompts: ["{{word}}"]
providers: [echo:echo]
tests:
  - vars: { word: hello }
    expected: hello
    assert:
      - type: same-as-expected
  - vars: { word: hello }
    expected: goodbye
    assert:
      - type: not-same-as-expected
"#;

fn trivial_plugin() -> PathBuf {
    PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR).join("cardrun_test_trivial_assertion.wasm")
}

#[test]
fn run_loads_assertion_plugins_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(&suite, PLUGIN_SUITE).unwrap();

    let out = cardrun().arg("run").arg(&suite).arg("--plugin").arg(trivial_plugin()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");

    // The same through PLUGIN_DIR.
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(trivial_plugin(), plugins.join("trivial.wasm")).unwrap();
    let out = cardrun().arg("run").arg(&suite).env("PLUGIN_DIR", &plugins).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn missing_or_invalid_plugins_exit_two_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(&suite, PLUGIN_SUITE).unwrap();
    let stderr_of = |out: std::process::Output| {
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // Without the plugin the type is unknown.
    let err = stderr_of(cardrun().arg("run").arg(&suite).output().unwrap());
    assert!(err.contains("same-as-expected"), "{err}");
    // A file that does not exist.
    let err = stderr_of(cardrun().arg("run").arg(&suite).args(["--plugin", "no/such.wasm"]).output().unwrap());
    assert!(err.contains("reading plugin no/such.wasm"), "{err}");
    // A file that is not a component.
    let err = stderr_of(cardrun().arg("run").arg(&suite).arg("--plugin").arg(&suite).output().unwrap());
    assert!(err.contains("loading plugin") && err.contains("suite.yaml"), "{err}");
    // A model adapter is not an assertion plugin.
    let adapter = PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR).join("cardrun_adapter_echo.wasm");
    let err = stderr_of(cardrun().arg("run").arg(&suite).arg("--plugin").arg(adapter).output().unwrap());
    assert!(err.contains("loading plugin") && err.contains("assertion"), "{err}");
    // PLUGIN_DIR that does not exist.
    let err = stderr_of(cardrun().arg("run").arg(&suite).env("PLUGIN_DIR", dir.path().join("nope")).output().unwrap());
    assert!(err.contains("PLUGIN_DIR"), "{err}");
}

/// A stand-in for Ollama's `/api/generate` that answers after `latency` and
/// counts the prompts it was asked (warm-ups, with an empty prompt, are
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_tests_finish_and_the_rest_run_after_a_restart() {
    let ollama = SlowOllama::start(std::time::Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cardrun.db");
    let server = Server::start(&db, &ollama.url, dir.path().join("serve-1.log")).await;

    let card =
        server.post("/api/prompt-cards", serde_json::json!({"title": "t", "prompt_template": "say {{w}}"})).await;
    let card_id = card["data"]["id"].as_i64().unwrap();
    for i in 0..6 {
        server
            .post(
                "/api/test-cases",
                serde_json::json!({"prompt_card_id": card_id, "name": format!("t{i}"), "input_variables": {"w": i},
                                   "assertions": [{"type": "contains", "value": "say"}]}),
            )
            .await;
    }
    let queued = server
        .post(
            "/api/parallel-test-execution/queue",
            serde_json::json!({"prompt_card_id": card_id, "model": "ollama:m",
                               "configuration": {"max_concurrent_tests": 3}}),
        )
        .await;
    let id = queued["data"]["execution_id"].as_str().unwrap().to_string();

    // Three tests are waiting on the model; stop the server now.
    wait_until("three prompts reach the model", || ollama.prompts() == 3).await;
    let mut server = server;
    let status = server.process.terminate().await;
    let first_log = server.log_text();
    assert!(status.success(), "exit {status:?}: {first_log}");
    assert!(first_log.contains("drained"), "{first_log}");
    // The running three finished; nothing new was started while draining.
    assert_eq!(ollama.prompts(), 3);

    // After a restart the other three run, and only they.
    let server = Server::start(&db, &ollama.url, dir.path().join("serve-2.log")).await;
    let mut progress = serde_json::Value::Null;
    for _ in 0..400 {
        progress = server.get(&format!("/api/parallel-test-execution/{id}/progress")).await;
        if progress["data"]["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(progress["data"]["status"], "completed", "{progress}");
    assert_eq!(progress["data"]["passed_tests"], 6, "{progress}");
    assert_eq!(ollama.prompts(), 6, "a drained test ran again");
}

/// Starts `serve` with `host_args`, waits for `/health` on loopback and
/// returns its log.
async fn serve_log(host_args: &[&str]) -> String {
    serve_log_with(host_args, &[]).await
}

async fn serve_log_with(host_args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let db = dir.path().join("db").to_string_lossy().into_owned();
    let mut args = vec!["serve", "--port", &port, "--database", &db];
    args.extend_from_slice(host_args);
    let mut process = super::support::Process::spawn(&args, env, dir.path().join("log"));
    let health = format!("http://127.0.0.1:{port}/health");
    for _ in 0..600 {
        if reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let status = process.terminate().await;
    assert!(status.success(), "{status:?}: {}", process.log_text());
    process.log_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_binds_loopback_unless_told_and_warns_beyond_it() {
    let listening = |log: &str| log.lines().find(|l| l.contains("cardrun listening")).unwrap_or_default().to_string();
    let default = serve_log(&[]).await;
    assert!(listening(&default).contains("(127.0.0.1:"), "{default}");
    assert!(!default.contains("without authentication"), "{default}");
    let everywhere = serve_log(&["--host", "0.0.0.0"]).await;
    assert!(listening(&everywhere).contains("(0.0.0.0:"), "{everywhere}");
    assert!(everywhere.contains("listening beyond this machine without authentication"), "{everywhere}");
    // With API keys required, binding everywhere is what a team wants.
    let required = serve_log_with(&["--host", "0.0.0.0"], &[("CARDRUN_AUTH", "required")]).await;
    assert!(listening(&required).contains("(0.0.0.0:"), "{required}");
    assert!(!required.contains("without authentication"), "{required}");
}
