//! Compiling plugins in a child process with a time budget.
//!
//! Cranelift cannot be interrupted, and a component built to be slow to
//! compile costs the host every core for as long as it takes (the structure
//! check in `upload.rs` bounds that to seconds, by an estimate). With an
//! [`ExternalCompiler`] the host runs `cardrun compile-plugin` instead: a
//! child process with the same engine configuration, killed when the
//! budget runs out. Its artifact is loaded like one from the disk cache.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine::{Allocator, build_engine};
use super::error::SandboxError;

/// The program that compiles plugins (the `cardrun` binary) and the time it
/// may take (`COMPILE_BUDGET_MS`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalCompiler {
    pub program: PathBuf,
    pub budget: Duration,
}

/// The child's arguments for `allocator`, so that it builds an engine whose
/// artifacts the parent's engine accepts.
fn allocator_args(allocator: Allocator) -> Vec<String> {
    match allocator {
        Allocator::Pooling { max_instances } => vec!["--pooling".into(), max_instances.to_string()],
        Allocator::OnDemand => vec![],
    }
}

/// Compiles `bytes` in a child process; returns the component loaded into
/// `engine`.
pub async fn compile(
    compiler: &ExternalCompiler,
    allocator: Allocator,
    engine: &Engine,
    bytes: &[u8],
) -> Result<Component, SandboxError> {
    let internal = |what: &str, e: std::io::Error| SandboxError::Internal(format!("{what}: {e}"));
    let dir = tempfile::tempdir().map_err(|e| internal("a directory for the compiler", e))?;
    let (input, output) = (dir.path().join("plugin.wasm"), dir.path().join("plugin.cwasm"));
    // Up to 32 MiB: small enough to write on this thread.
    std::fs::write(&input, bytes).map_err(|e| internal("writing the plugin for the compiler", e))?;
    let mut child = tokio::process::Command::new(&compiler.program)
        .arg("compile-plugin")
        .arg(&input)
        .arg(&output)
        .args(allocator_args(allocator))
        .env("CARDRUN_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| internal("starting the compiler", e))?;
    let stderr = child.stderr.take();
    let status = match tokio::time::timeout(compiler.budget, child.wait()).await {
        Ok(status) => status.map_err(|e| internal("waiting for the compiler", e))?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(SandboxError::CompileBudget { budget_ms: compiler.budget.as_millis() as u64 });
        }
    };
    if !status.success() {
        let mut message = String::new();
        if let Some(mut stderr) = stderr {
            use tokio::io::AsyncReadExt;
            let mut limited = (&mut stderr).take(4096);
            let _ = limited.read_to_string(&mut message).await;
        }
        let message = message.trim().trim_start_matches("error: ").to_string();
        return Err(SandboxError::InvalidComponent(if message.is_empty() {
            format!("compiler exited with {status}")
        } else {
            message
        }));
    }
    let artifact = std::fs::read(&output).map_err(|e| internal("reading the compiled plugin", e))?;
    // SAFETY: the artifact is the output of our own binary's compiler, with
    // this engine's configuration; wasmtime checks its header and refuses an
    // artifact of another version or configuration.
    unsafe { Component::deserialize(engine, &artifact) }
        .map_err(|e| SandboxError::Internal(format!("loading the compiled plugin: {e:#}")))
}

/// The child's side (`cardrun compile-plugin INPUT OUTPUT [--pooling N]`):
/// compiles INPUT with the engine the parent uses and writes the artifact.
pub fn compile_file(
    input: &std::path::Path,
    output: &std::path::Path,
    pooling: Option<u32>,
) -> Result<(), SandboxError> {
    let allocator = pooling.map_or(Allocator::OnDemand, |max_instances| Allocator::Pooling { max_instances });
    let engine = build_engine(allocator)?;
    let bytes =
        std::fs::read(input).map_err(|e| SandboxError::Internal(format!("reading {}: {e}", input.display())))?;
    let component = Component::new(&engine, &bytes).map_err(|e| SandboxError::InvalidComponent(format!("{e:#}")))?;
    let artifact = component.serialize().map_err(|e| SandboxError::Internal(format!("{e:#}")))?;
    std::fs::write(output, artifact).map_err(|e| SandboxError::Internal(format!("writing {}: {e}", output.display())))
}
