//! Deliberately hostile plugins: each misbehaviour yields its typed error,
//! the host keeps serving, and the next use of the same plugin succeeds.

use std::time::Duration;

use cardrun::sandbox::imports::WorldKind;
use cardrun::sandbox::{
    AdapterSettings, AllowedHost, AssertionSpec, CompletionRequest, GenerationOptions, HttpGrant, Limits, Prompt,
    SandboxError, Subject,
};
use cardrun_tests::fake_llm::FakeLlm;
use cardrun_tests::{built_plugin, sandbox};
use serde_json::json;

fn small_limits() -> Limits {
    // 0.1 % of a 10 s budget = 10 ms of CPU in fuel (at the constant rate,
    // not calibrated); 32 MiB of memory. The deadline leaves a loaded
    // machine a thousand times that: these tests are about fuel, memory
    // and traps, and the deadline's own tests set theirs.
    let mut limits = Limits::from_resource_limits(0.1, 32, 10_000, 1);
    limits.max_output_bytes = 1 << 20;
    limits
}

async fn hostile_sandbox() -> std::sync::Arc<cardrun::sandbox::Sandbox> {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let info = sandbox.add_assertion_plugin(&built_plugin("cardrun_test_hostile_assertion")).await.unwrap();
    assert_eq!(info.assertion_types, vec!["hostile".to_string()]);
    sandbox
}

async fn misbehave(sandbox: &cardrun::sandbox::Sandbox, what: &str, limits: &Limits) -> Result<String, SandboxError> {
    let out = sandbox
        .evaluate(
            &AssertionSpec::new("hostile", json!(what)),
            &Subject { output: "x".into(), ..Default::default() },
            limits,
        )
        .await;
    match out.error {
        Some(e) => Err(e),
        None => Ok(out.reason),
    }
}

/// After any misbehaviour the same plugin must still work.
async fn still_works(sandbox: &cardrun::sandbox::Sandbox) {
    assert_eq!(misbehave(sandbox, "ok", &small_limits()).await.unwrap(), "behaved");
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_fuel() {
    let sandbox = hostile_sandbox().await;
    let err = misbehave(&sandbox, "loop", &small_limits()).await.unwrap_err();
    assert!(matches!(err, SandboxError::OutOfFuel { .. }), "{err}");
    still_works(&sandbox).await;
}

#[tokio::test]
async fn calibrated_fuel_runs_out_at_the_documented_share() {
    let sandbox = hostile_sandbox().await;
    let calibration = sandbox.fuel_calibration().clone();
    let rate = calibration.fuel_per_ms;
    assert_eq!(calibration.runs_fuel_per_ms.len(), 5, "{calibration:?}");
    assert!(rate > 1_000_000, "fewer than a million operators per ms: {calibration:?}");
    // 0.2 % of a 5 s budget: 10 ms of CPU, at the rate measured here. The
    // deadline leaves 500 times that in wall time, for a loaded machine.
    let configuration = cardrun::domain::TestConfiguration {
        timeout_per_test: 5_000,
        resource_limits: cardrun::domain::ResourceLimits { cpu_percent: 0.2, memory_mb: 512 },
        ..Default::default()
    };
    let limits = sandbox.limits_for(&configuration);
    assert_eq!(limits.fuel, Some(10 * rate));
    let err = misbehave(&sandbox, "loop", &limits).await.unwrap_err();
    let SandboxError::OutOfFuel { budget, cpu_percent, fuel_per_ms } = &err else {
        panic!("{err} (calibration {calibration:?})")
    };
    assert_eq!((*budget, *cpu_percent, *fuel_per_ms), (10 * rate, 0.2, rate));
    let reason = err.to_string();
    assert!(reason.contains("is 10 ms of CPU") && reason.contains("resource_limits.cpu_percent 0.2 %"), "{reason}");
    assert_eq!(err.code(), "out_of_fuel");
    still_works(&sandbox).await;
}

#[tokio::test]
async fn infinite_loop_with_unlimited_fuel_is_stopped_by_the_deadline() {
    let sandbox = hostile_sandbox().await;
    let mut limits = small_limits().with_deadline(Duration::from_millis(200));
    limits.fuel = None;
    let err = misbehave(&sandbox, "loop", &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::Deadline { .. }), "{err}");
    assert_eq!(err.code(), "timeout");
    still_works(&sandbox).await;
}

#[tokio::test]
async fn runaway_plugin_does_not_starve_its_neighbours() {
    let sandbox = hostile_sandbox().await;
    // A generous deadline: the point is that neighbours finish while the
    // runaway still spins, even on a loaded machine.
    let mut limits = small_limits().with_deadline(Duration::from_secs(3));
    limits.fuel = None;
    let runaway = {
        let sandbox = sandbox.clone();
        let limits = limits.clone();
        tokio::spawn(async move { misbehave(&sandbox, "loop", &limits).await })
    };
    // While the runaway spins, well-behaved evaluations still complete.
    tokio::task::yield_now().await;
    for _ in 0..10 {
        still_works(&sandbox).await;
    }
    assert!(!runaway.is_finished(), "the neighbours finished before the runaway's deadline");
    assert!(matches!(runaway.await.unwrap(), Err(SandboxError::Deadline { .. })));
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_cap() {
    let sandbox = hostile_sandbox().await;
    let mut limits = small_limits();
    limits.fuel = None;
    let err = misbehave(&sandbox, "alloc", &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::MemoryLimit { limit_bytes } if limit_bytes == 32 << 20), "{err}");
    still_works(&sandbox).await;
}

#[tokio::test]
async fn deep_recursion_overflows_the_stack_cleanly() {
    let sandbox = hostile_sandbox().await;
    let mut limits = small_limits();
    limits.fuel = None;
    let err = misbehave(&sandbox, "recurse", &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::StackOverflow), "{err}");
    still_works(&sandbox).await;
    let err = misbehave(&sandbox, "recurse-shadow", &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::Trap { ref message, .. } if message.contains("out of bounds")), "{err}");
    still_works(&sandbox).await;
}

#[tokio::test]
async fn panic_is_a_trap_with_the_message_from_stderr() {
    let sandbox = hostile_sandbox().await;
    let err = misbehave(&sandbox, "panic", &small_limits()).await.unwrap_err();
    match &err {
        SandboxError::Trap { stderr_tail, .. } => {
            assert!(stderr_tail.contains("hostile plugin panicked on purpose"), "{stderr_tail}")
        }
        other => panic!("expected a trap, got {other}"),
    }
    still_works(&sandbox).await;
}

#[tokio::test]
async fn megabytes_of_output_are_refused() {
    let sandbox = hostile_sandbox().await;
    let mut limits = small_limits();
    limits.memory_bytes = 64 << 20;
    limits.fuel = None;
    let err = misbehave(&sandbox, "big-output", &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::OutputTooLarge { len, cap } if len == 8 << 20 && cap == 1 << 20), "{err}");
    still_works(&sandbox).await;
}

#[tokio::test]
async fn megabytes_on_stderr_and_stdout_are_truncated_not_fatal() {
    // Noise is not an error: the log keeps its last bytes, the verdict stands.
    let sandbox = hostile_sandbox().await;
    let mut limits = small_limits();
    limits.fuel = None;
    assert_eq!(misbehave(&sandbox, "stderr", &limits).await.unwrap(), "printed megabytes on stderr");
    assert_eq!(misbehave(&sandbox, "stdout", &limits).await.unwrap(), "printed megabytes on stdout");
    still_works(&sandbox).await;
}

#[tokio::test]
async fn files_environment_and_sockets_are_not_there() {
    let sandbox = hostile_sandbox().await;
    let limits = small_limits();
    for (what, needle) in [
        ("read-file", "file read refused"),
        ("list-root", "read_dir refused"),
        ("read-env", "env read refused: environment variable not found (0 vars visible)"),
        ("socket", "socket refused"),
    ] {
        let err = misbehave(&sandbox, what, &limits).await.unwrap_err();
        assert!(matches!(err, SandboxError::Plugin(ref m) if m.contains(needle)), "{what}: {err}");
    }
    still_works(&sandbox).await;
}

fn request(model: &str) -> CompletionRequest {
    CompletionRequest {
        model: model.into(),
        prompt: Prompt::Text("hi".into()),
        options: GenerationOptions::default(),
        logprobs: false,
    }
}

#[tokio::test]
async fn adapter_cannot_reach_hosts_off_its_allow_list() {
    let fake = FakeLlm::start().await;
    let sandbox = sandbox(&fake.base_url()).await;
    let settings = AdapterSettings {
        config: json!({}),
        grant: HttpGrant { allowed: vec![AllowedHost::parse(&fake.base_url()).unwrap()], secret_headers: vec![] },
    };
    sandbox.add_adapter_plugin("hostile", &built_plugin("cardrun_test_hostile_adapter"), settings).unwrap();
    let limits = small_limits();
    let err = sandbox.complete("hostile", &request("exfiltrate"), &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::HostDenied { ref host } if host == "evil.example.com:80"), "{err}");
    let err = sandbox.complete("hostile", &request("exfiltrate-ip"), &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::HostDenied { ref host } if host == "127.0.0.2:9"), "{err}");
    assert_eq!(fake.request_count(), 0);
    let mut roomy = limits.clone();
    roomy.memory_bytes = 64 << 20;
    let err = sandbox.complete("hostile", &request("huge"), &roomy).await.unwrap_err();
    assert!(matches!(err, SandboxError::OutputTooLarge { .. }), "{err}");
    let err = sandbox.complete("hostile", &request("loop"), &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::OutOfFuel { .. }), "{err}");
    assert_eq!(sandbox.complete("hostile", &request("ok"), &limits).await.unwrap().text, "fine");
}

#[tokio::test]
async fn components_of_the_wrong_world_or_no_component_are_rejected() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let err = sandbox.add_assertion_plugin(&built_plugin("cardrun_adapter_echo")).await.unwrap_err();
    // The world is named before the imports: an adapter is not "an
    // assertion importing `http`".
    assert!(
        matches!(&err, SandboxError::WrongWorld { world: "assertion", detail } if detail.contains("model adapter")),
        "{err}"
    );
    let err = sandbox
        .add_adapter_plugin("x", &built_plugin("cardrun_builtin_assertions"), AdapterSettings::default())
        .unwrap_err();
    assert!(matches!(err, SandboxError::WrongWorld { world: "model-adapter", .. }), "{err}");
    let err = sandbox.add_assertion_plugin(b"\0asm not really").await.unwrap_err();
    assert!(matches!(err, SandboxError::InvalidComponent(_)), "{err}");
    let err = sandbox.add_assertion_plugin(b"plugins: [nope]").await.unwrap_err();
    assert_eq!(err, SandboxError::InvalidComponent("not a WebAssembly binary (no `\\0asm` header)".into()));
    // An empty core module: built for the wrong target.
    let err = sandbox.add_assertion_plugin(b"\0asm\x01\0\0\0").await.unwrap_err();
    assert!(matches!(&err, SandboxError::InvalidComponent(m) if m.contains("wasm32-wasip2")), "{err}");
    let err = sandbox.add_assertion_plugin(&built_plugin("cardrun_builtin_assertions")).await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::BuiltinType { name } if ["bleu", "contains"].contains(&name.as_str())),
        "{err}"
    );
    assert_eq!(err.code(), "builtin_type");
}

#[tokio::test]
async fn inspecting_a_component_names_its_world_and_what_it_lacks_without_registering_it() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let types_before = sandbox.assertion_types();
    let builtin = sandbox.inspect(&built_plugin("cardrun_builtin_assertions")).await.unwrap();
    assert_eq!(builtin.world, Some(WorldKind::Assertion));
    assert!(builtin.checks_parameters && builtin.missing_imports.is_empty(), "{builtin:?}");
    assert!(builtin.was_cached, "the built-ins are compiled at start");
    let adapter = sandbox.inspect(&built_plugin("cardrun_adapter_ollama")).await.unwrap();
    assert_eq!(adapter.world, Some(WorldKind::ModelAdapter));
    assert!(adapter.imports.iter().any(|i| i.starts_with("cardrun:plugin/http")), "{adapter:?}");
    assert!(adapter.missing_imports.is_empty(), "adapters get `http`: {adapter:?}");
    assert_eq!(sandbox.assertion_types(), types_before, "nothing was registered");
}

#[tokio::test]
async fn input_over_the_cap_is_refused_before_running() {
    let sandbox = hostile_sandbox().await;
    let mut limits = small_limits();
    limits.max_input_bytes = 1024;
    let out = sandbox
        .evaluate(
            &AssertionSpec::new("contains", json!("a")),
            &Subject { output: "a".repeat(2048), ..Default::default() },
            &limits,
        )
        .await;
    assert!(matches!(out.error, Some(SandboxError::InputTooLarge { len: 2053, cap: 1024 })), "{:?}", out.error);
}

#[tokio::test]
async fn compiled_plugins_are_cached_on_disk_by_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cardrun_tests::sandbox_config("http://127.0.0.1:9");
    config.cache_dir = Some(dir.path().to_path_buf());
    let first = cardrun::sandbox::Sandbox::new(config.clone()).await.unwrap();
    let hash = cardrun::sandbox::content_hash(cardrun::sandbox::builtin::ASSERTIONS);
    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .flat_map(|engine_dir| std::fs::read_dir(engine_dir.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&hash))
        .expect("artifact written");
    drop(first);
    let modified = std::fs::metadata(&artifact).unwrap().modified().unwrap();
    let second = cardrun::sandbox::Sandbox::new(config).await.unwrap();
    assert_eq!(std::fs::metadata(&artifact).unwrap().modified().unwrap(), modified, "reused, not rewritten");
    let out = second
        .evaluate(
            &AssertionSpec::new("equals", json!("a")),
            &Subject { output: "a".into(), ..Default::default() },
            &Limits::default(),
        )
        .await;
    assert!(out.passed);
}
