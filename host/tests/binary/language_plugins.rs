//! Plugins written in Python and JavaScript, built from source with their
//! pinned toolchains (componentize-py, componentize-js) as an author would,
//! then run through `cardrun run` and through upload to a server; and the
//! `cardrun plugin` tools that help write them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, cardrun, repo};

/// Where the build scripts keep their toolchains (the venv of the pinned
/// componentize-py), shared by every test and kept between runs.
fn toolchains() -> PathBuf {
    repo().join("target").join("toolchains")
}

fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name)
}

/// Runs `command`, panicking with its output when it fails.
fn succeed(command: &mut Command, what: &str) -> Output {
    let out = command.env("CARDRUN_TOOLCHAINS", toolchains()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds a Python example with its README's command; the component.
fn build_python(name: &str, wasm: &str) -> PathBuf {
    let dir = example(name);
    succeed(Command::new("bash").arg("build.sh").current_dir(&dir), &format!("{name}/build.sh"));
    dir.join(wasm)
}

/// Runs a Python example's unit tests in CPython.
fn python_unit_tests(name: &str) {
    succeed(Command::new("python3").args(["-m", "unittest", "-q"]).current_dir(example(name)), "python unit tests");
}

/// Installs the JavaScript example's pinned packages.
fn npm_ci(dir: &Path) {
    succeed(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(dir), "npm ci");
}

/// `cardrun run SUITE` with extra arguments; asserts every test passed.
fn run_passes(suite: &Path, args: &[&str], tests: usize) {
    let out = succeed(cardrun().arg("run").arg(suite).args(args).arg("--quiet"), "cardrun run");
    let text = stdout(&out);
    assert!(text.contains(&format!("{tests} passed, 0 failed, 0 errors")), "{text}");
}

/// Runs `suite` on `server` through `POST /api/evaluations`; asserts
/// every test passed.
async fn evaluation_passes(server: &Server, suite: &Path, tests: usize) {
    let suite = std::fs::read_to_string(suite).unwrap();
    let started = server.post("/api/evaluations", json!({"suite": suite})).await;
    let id = started["data"]["evaluation_id"].as_str().unwrap_or_else(|| panic!("{started}")).to_string();
    let mut progress = Value::Null;
    for _ in 0..1200 {
        progress = server.get(&format!("/api/evaluations/{id}")).await["data"].clone();
        if progress["status"] != "running" && progress["status"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(progress["status"], "completed", "{progress}\n{}", server.log_text());
    assert_eq!(progress["passed_tests"], tests, "{progress}");
}

async fn server(dir: &Path, name: &str) -> Server {
    // No model server is needed: the suites use the offline echo adapter.
    Server::start(&dir.join(format!("{name}.db")), "http://127.0.0.1:9", dir.join(format!("{name}.log"))).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_evaluator_builds_runs_its_suite_locally_and_on_a_server_and_benches() {
    python_unit_tests("python-evaluator");
    let wasm = build_python("python-evaluator", "readability.wasm");
    let suite = example("python-evaluator").join("suite.yaml");
    run_passes(&suite, &["--plugin", wasm.to_str().unwrap()], 3);

    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "py").await;
    let (status, reply) = server.upload(None, "application/wasm", std::fs::read(&wasm).unwrap()).await;
    assert_eq!(status, 201, "{reply}");
    evaluation_passes(&server, &suite, 3).await;

    // Compiled once: the artifact `run` cached is what `check` loads. The
    // Python runtime fits the sandbox's floor of 16 MiB per instance (the
    // minimum documented in docs/plugins.md).
    let out = succeed(
        cardrun().args(["plugin", "check"]).arg(&wasm).args(["--value", "8", "--memory-mb", "16"]),
        "cardrun plugin check",
    );
    let text = stdout(&out);
    assert!(text.contains("loaded from the compiled cache") && text.contains("verdict: pass"), "{text}");

    // `plugin bench`: the plugin beside the built-ins, in one run.
    let out = succeed(
        cardrun().args(["plugin", "bench"]).arg(&wasm).args(["--iterations", "3", "--value", "8"]),
        "cardrun plugin bench",
    );
    let table = stdout(&out);
    for row in ["| readability (`readability`) |", "| built-in `contains`", "| built-in `is-json`"] {
        assert!(table.contains(row), "{row} in\n{table}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_js_evaluator_builds_runs_its_suite_and_a_build_with_wasi_http_is_refused_with_the_fix() {
    let dir_js = example("js-evaluator");
    npm_ci(&dir_js);
    succeed(Command::new("npm").arg("test").current_dir(&dir_js), "npm test");
    succeed(Command::new("npm").args(["run", "build"]).current_dir(&dir_js), "npm run build");
    let wasm = dir_js.join("json-path.wasm");
    let suite = dir_js.join("suite.yaml");
    run_passes(&suite, &["--plugin", wasm.to_str().unwrap()], 3);

    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "js").await;
    let (status, reply) = server.upload(None, "application/wasm", std::fs::read(&wasm).unwrap()).await;
    assert_eq!(status, 201, "{reply}");
    evaluation_passes(&server, &suite, 3).await;

    // The same source built without `--disable http fetch-event` imports
    // wasi:http, which cardrun does not provide: `plugin check` and an
    // upload both name the import and the flag that drops it.
    let with_http = dir.path().join("with-http.wasm");
    succeed(
        Command::new("npx")
            .args(["componentize-js", "app.js", "--wit", "../../wit", "--world-name", "checked-assertion", "--out"])
            .arg(&with_http)
            .current_dir(&dir_js),
        "componentize-js without -d http",
    );
    let out = cardrun().args(["plugin", "check"]).arg(&with_http).output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("`wasi:http/types@") && text.contains("-d http -d fetch-event"), "{text}");
    let (status, reply) = server.upload(None, "application/wasm", std::fs::read(&with_http).unwrap()).await;
    assert_eq!(status, 400, "{reply}");
    let message = reply["error"].as_str().unwrap_or_default();
    assert!(message.contains("wasi:http/types") && message.contains("-d http"), "{reply}");
}

/// A fake OpenAI-compatible server: answers a chat with its last user
/// message, upper-cased, and counts tokens as words.
async fn fake_openai() -> String {
    let chat = |axum::Json(body): axum::Json<Value>| async move {
        let last = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
        let text = last["content"].as_str().unwrap_or_default().to_uppercase();
        axum::Json(json!({
            "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": text.split_whitespace().count()}
        }))
    };
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

const ADAPTER_SUITE: &str = r#"
description: the Python adapter against a chat-completions server
prompts: ["say {{word}}"]
providers: [pychat:tiny-model]
tests:
  - vars: { word: hello }
    assert:
      - type: equals
        value: SAY HELLO
  - vars: { word: world }
    assert:
      - type: contains
        value: WORLD
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_python_adapter_reaches_the_model_only_through_the_host() {
    python_unit_tests("python-adapter");
    let wasm = build_python("python-adapter", "openai-chat.wasm");
    let openai = fake_openai().await;
    let host = openai.trim_start_matches("http://").to_string();
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(&suite, ADAPTER_SUITE).unwrap();
    let manifest = json!({"name": "pychat", "config": {"base_url": openai}, "allowed_hosts": [host]});
    let manifest_file = dir.path().join("pychat.yaml");
    let mut with_component = manifest.clone();
    with_component["component"] = json!(wasm.to_str().unwrap());
    std::fs::write(&manifest_file, with_component.to_string()).unwrap();
    run_passes(&suite, &["--adapter-plugin", manifest_file.to_str().unwrap()], 2);

    // A host off its allow-list is refused by the host, not reached.
    let denied = dir.path().join("denied.yaml");
    let mut off_list = with_component.clone();
    off_list["allowed_hosts"] = json!(["127.0.0.1:9"]);
    std::fs::write(&denied, off_list.to_string()).unwrap();
    let out = cardrun().arg("run").arg(&suite).args(["--quiet", "--adapter-plugin"]).arg(&denied).output().unwrap();
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("not on its allow-list"), "{text}");

    // Uploaded to a server with its manifest, as a tenant would.
    let server = server(dir.path(), "adapter").await;
    let boundary = "cardrun-python-adapter-5e2a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{manifest}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"a.wasm\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&std::fs::read(&wasm).unwrap());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, reply) = server.upload(None, &format!("multipart/form-data; boundary={boundary}"), body).await;
    assert_eq!(status, 201, "{reply}");
    evaluation_passes(&server, &suite, 2).await;
}

#[test]
fn plugin_new_scaffolds_a_plugin_per_language_that_builds_checks_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (lang, build) in [
        ("python", vec!["bash", "build.sh"]),
        ("js", vec!["sh", "-c", "npm install --no-audit --no-fund --loglevel=error && npm run build"]),
        ("rust", vec!["bash", "build.sh"]),
    ] {
        let name = format!("mentions-{lang}");
        let plugin = dir.path().join(&name);
        succeed(cardrun().args(["plugin", "new", "--lang", lang, &name, "--dir"]).arg(&plugin), "plugin new");
        // The Rust scaffold shares the plugins' build directory, so its
        // dependencies are not compiled again.
        let mut command = Command::new(build[0]);
        command.args(&build[1..]).current_dir(&plugin).env("CARGO_TARGET_DIR", repo().join("target").join("wasm"));
        succeed(&mut command, &format!("building the {lang} scaffold"));
        let wasm = plugin.join(format!("{name}.wasm"));
        let out = succeed(
            cardrun().args(["plugin", "check"]).arg(&wasm).args(["--value", r#"["fox", "dog"]"#]),
            "plugin check",
        );
        let text = stdout(&out);
        assert!(text.contains("world: checked-assertion") && text.contains("verdict: pass"), "{lang}: {text}");
        assert!(text.contains("peak memory") && text.contains("fuel"), "{lang}: {text}");
        run_passes(&plugin.join("suite.yaml"), &["--plugin", wasm.to_str().unwrap()], 2);
    }
    // A name that is no assertion type, or a folder in use, is refused.
    let out = cardrun().args(["plugin", "new", "--lang", "rust", "Bad Name"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cardrun().args(["plugin", "new", "--lang", "js", "again", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"), "{out:?}");
}
