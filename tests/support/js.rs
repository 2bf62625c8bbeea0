//! JavaScript peers run by Node from the tests: the reference Socket.IO
//! client and Playwright. Their packages live in `tests/js` (lock file
//! committed); a checkout without `node_modules` gets them with `npm ci`
//! on first use.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// `tests/js`.
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Installs `tests/js`'s packages once per test process when missing.
pub fn ensure_packages() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let modules = js_dir().join("node_modules");
    let present = ["socket.io-client", "playwright-core", "@seriousme/openapi-schema-validator"]
        .iter()
        .all(|package| modules.join(package).exists());
    if *done || present {
        *done = true;
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(js_dir())
        .status()
        .expect("npm runs (Node.js and npm are needed for the JavaScript peers; .ci/run installs them)");
    assert!(status.success(), "npm ci in tests/js failed");
    *done = true;
}

/// A Node process speaking JSON lines: commands on stdin, reports on
/// stdout.
pub struct NodePeer {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl NodePeer {
    /// Runs `node tests/js/<script> args...`.
    pub fn start(script: &str, args: &[&str]) -> Self {
        ensure_packages();
        let mut child = Command::new("node")
            .arg(js_dir().join(script))
            .args(args)
            .current_dir(js_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, stdin, lines }
    }

    /// Sends one command.
    pub async fn send(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("command sent");
    }

    /// The next report that has `key`, skipping others; panics after
    /// `within`.
    pub async fn report(&mut self, key: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no `{key}` report from node within {within:?}"))
                .expect("node's stdout")
                .unwrap_or_else(|| panic!("node exited before reporting `{key}`"));
            let Ok(report) = serde_json::from_str::<Value>(&line) else {
                eprintln!("node: {line}");
                continue;
            };
            if report.get(key).is_some() {
                return report;
            }
            assert!(report.get("connect_error").is_none(), "node could not connect: {report}");
        }
    }

    /// Waits for the process to exit.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        drop(self.stdin);
        self.child.wait().await.expect("node exits")
    }
}
