//! The built-in adapters against the fake Ollama/OpenAI/Anthropic server.

use std::time::Duration;

use cardrun::sandbox::{ChatMessage, CompletionRequest, GenerationOptions, Limits, Prompt, SandboxError};
use cardrun_tests::fake_llm::FakeLlm;
use cardrun_tests::sandbox;

fn text(model: &str, prompt: &str) -> CompletionRequest {
    CompletionRequest {
        model: model.into(),
        prompt: Prompt::Text(prompt.into()),
        options: GenerationOptions::default(),
        logprobs: false,
    }
}

#[tokio::test]
async fn echo_is_deterministic_and_offline() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let limits = Limits::default();
    let out = sandbox.complete("echo", &text("upper", "hello there"), &limits).await.unwrap();
    assert_eq!(out.text, "HELLO THERE");
    assert_eq!(out.tokens.map(|t| (t.prompt, t.completion)), Some((2, 2)));
    assert_eq!(sandbox.complete("echo", &text("echo", "same"), &limits).await.unwrap().text, "same");
    assert_eq!(sandbox.complete("echo", &text("reverse", "abc"), &limits).await.unwrap().text, "cba");
    let err = sandbox.complete("echo", &text("shout", "x"), &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::Plugin(ref m) if m.contains("identity")), "{err}");
    sandbox.warm("echo", "upper", &limits).await.unwrap();
}

#[tokio::test]
async fn ollama_generate_chat_and_warm() {
    let fake = FakeLlm::start().await;
    fake.answer("What is the capital of France?", "Paris");
    let sandbox = sandbox(&fake.base_url()).await;
    let limits = Limits::default();
    let mut request = text("llama3", "What is the capital of France?");
    request.options.temperature = Some(0.2);
    request.options.max_tokens = Some(64);
    let out = sandbox.complete("ollama", &request, &limits).await.unwrap();
    assert_eq!(out.text, "Paris");
    assert_eq!(out.tokens.map(|t| t.completion), Some(1));
    let seen = fake.seen();
    assert_eq!(seen[0].path, "/api/generate");
    assert_eq!(seen[0].body["model"], "llama3");
    assert_eq!(seen[0].body["stream"], false);
    assert_eq!(seen[0].body["options"]["num_predict"], 64);
    assert_eq!(seen[0].authorization, None, "no key is sent to Ollama");

    let chat = CompletionRequest {
        model: "llama3".into(),
        prompt: Prompt::Chat(vec![
            ChatMessage { role: "system".into(), content: "be brief".into() },
            ChatMessage { role: "user".into(), content: "What is the capital of France?".into() },
        ]),
        options: GenerationOptions::default(),
        logprobs: false,
    };
    assert_eq!(sandbox.complete("ollama", &chat, &limits).await.unwrap().text, "Paris");
    assert_eq!(fake.seen()[1].path, "/api/chat");
    assert_eq!(fake.seen()[1].body["messages"][0]["role"], "system");

    sandbox.warm("ollama", "llama3", &limits).await.unwrap();
    let warm = fake.seen().pop().unwrap();
    assert_eq!(warm.path, "/api/generate");
    assert_eq!(warm.body["prompt"], "");
    assert_eq!(warm.body["keep_alive"], "5m");
}

#[tokio::test]
async fn openai_gets_the_key_from_the_host_only() {
    let fake = FakeLlm::start().await;
    fake.set_fixed(Some("4"));
    let sandbox = sandbox(&fake.base_url()).await;
    let out = sandbox.complete("openai", &text("gpt-4o-mini", "2+2?"), &Limits::default()).await.unwrap();
    assert_eq!(out.text, "4");
    assert_eq!(out.tokens.map(|t| (t.prompt, t.completion)), Some((11, 1)));
    let seen = fake.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].body["messages"][0]["content"], "2+2?");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-test-secret"));
    // The plugin's config never carries the key.
    let settings = sandbox.adapter("openai").unwrap().settings().config.to_string();
    assert!(!settings.contains("sk-test-secret"), "{settings}");
}

#[tokio::test]
async fn anthropic_speaks_the_messages_api_with_the_key_from_the_host_only() {
    let fake = FakeLlm::start().await;
    fake.set_fixed(Some("Bonjour"));
    let sandbox = sandbox(&fake.base_url()).await;
    let chat = CompletionRequest {
        model: "claude-test".into(),
        prompt: Prompt::Chat(vec![
            ChatMessage { role: "system".into(), content: "Answer in French.".into() },
            ChatMessage { role: "user".into(), content: "Hello".into() },
        ]),
        options: GenerationOptions {
            temperature: Some(0.5),
            stop: vec!["END".into()],
            seed: Some(3),
            ..Default::default()
        },
        logprobs: false,
    };
    let out = sandbox.complete("anthropic", &chat, &Limits::default()).await.unwrap();
    assert_eq!(out.text, "Bonjour");
    assert_eq!(out.tokens.map(|t| (t.prompt, t.completion)), Some((13, 1)));
    assert_eq!(out.finish_reason, "end_turn");
    let seen = fake.seen();
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(seen[0].body["system"], "Answer in French.");
    assert_eq!(seen[0].body["messages"], serde_json::json!([{"role": "user", "content": "Hello"}]));
    assert_eq!(seen[0].body["max_tokens"], 1024, "the API requires it: a default is sent");
    assert_eq!(seen[0].body["temperature"], 0.5);
    assert_eq!(seen[0].body["stop_sequences"], serde_json::json!(["END"]));
    assert!(seen[0].body.get("seed").is_none(), "Anthropic has no seed");
    let header = |name: &str| seen[0].headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(header("x-api-key"), Some("sk-ant-test-secret"));
    assert_eq!(header("anthropic-version"), Some("2023-06-01"));
    let settings = sandbox.adapter("anthropic").unwrap().settings().config.to_string();
    assert!(!settings.contains("sk-ant-test-secret"), "{settings}");
    // A text prompt is one user message.
    sandbox.complete("anthropic", &text("claude-test", "Hi"), &Limits::default()).await.unwrap();
    assert_eq!(fake.seen()[1].body["messages"][0], serde_json::json!({"role": "user", "content": "Hi"}));
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff() {
    let fake = FakeLlm::start().await;
    let sandbox = sandbox(&fake.base_url()).await;
    let limits = Limits::default();
    fake.fail_next(2, 503, None);
    assert_eq!(sandbox.complete("ollama", &text("m", "hi"), &limits).await.unwrap().text, "hi");
    assert_eq!(fake.request_count(), 3, "two 503s then a success");

    fake.fail_next(1, 429, Some("1"));
    let started = std::time::Instant::now();
    assert_eq!(sandbox.complete("openai", &text("m", "again"), &limits).await.unwrap().text, "again");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");

    // More failures than attempts: the plugin sees the final status.
    fake.fail_next(10, 500, None);
    let err = sandbox.complete("ollama", &text("m", "x"), &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::Plugin(ref m) if m.contains("500")), "{err}");
    fake.fail_next(0, 500, None);

    // Connection refused is retried, then reported.
    let dead = sandbox_pointing_nowhere().await;
    let err = dead.complete("ollama", &text("m", "x"), &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::Plugin(ref m) if m.contains("127.0.0.1")), "{err}");
}

async fn sandbox_pointing_nowhere() -> std::sync::Arc<cardrun::sandbox::Sandbox> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    sandbox(&format!("http://127.0.0.1:{port}")).await
}

#[tokio::test]
async fn model_call_honours_the_deadline() {
    let fake = FakeLlm::start().await;
    fake.set_latency(2_000);
    let sandbox = sandbox(&fake.base_url()).await;
    let limits = Limits::default().with_deadline(Duration::from_millis(300));
    let err = sandbox.complete("ollama", &text("m", "slow"), &limits).await.unwrap_err();
    assert!(matches!(err, SandboxError::Deadline { .. }), "{err}");
    assert_eq!(err.code(), "timeout");
}

#[tokio::test]
async fn unknown_adapter_lists_the_known_ones() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let err = sandbox.complete("bard", &text("m", "x"), &Limits::default()).await.unwrap_err();
    assert_eq!(err.code(), "unknown_adapter");
    assert!(err.to_string().contains("anthropic, echo, ollama, openai"), "{err}");
}
