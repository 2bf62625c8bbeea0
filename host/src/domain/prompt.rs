//! What is sent to a model: text or a chat conversation, and the
//! generation options that go with it. Shared by jobs, the suite loader and
//! the sandbox's adapter calls.

use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The roles a chat message may have.
pub const CHAT_ROLES: [&str; 3] = ["system", "user", "assistant"];

/// A prompt: plain text or chat messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

impl Prompt {
    /// The prompt as one text, for reports and for assertions that look at
    /// the prompt: chat messages become `role: content` lines.
    pub fn as_text(&self) -> String {
        match self {
            Prompt::Text(t) => t.clone(),
            Prompt::Chat(messages) => {
                messages.iter().map(|m| format!("{}: {}", m.role, m.content)).collect::<Vec<_>>().join("\n")
            }
        }
    }

    /// A text prompt as a one-message conversation (for `ollama:chat:`
    /// style providers); a chat stays as it is.
    pub fn into_chat(self) -> Self {
        match self {
            Prompt::Text(content) => Prompt::Chat(vec![ChatMessage { role: "user".into(), content }]),
            chat => chat,
        }
    }
}

/// Generation options; `None` keeps the model server's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

impl GenerationOptions {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the ranges model servers accept.
    pub fn validate(&self) -> Result<(), super::Invalid> {
        if let Some(t) = self.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            return Err(super::Invalid::new(format!("temperature must be 0..=2, got {t}")));
        }
        if let Some(p) = self.top_p.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(super::Invalid::new(format!("top_p must be 0..=1, got {p}")));
        }
        if self.max_tokens == Some(0) {
            return Err(super::Invalid::new("max_tokens must be at least 1"));
        }
        if self.stop.len() > 16 {
            return Err(super::Invalid::new(format!("at most 16 stop sequences, got {}", self.stop.len())));
        }
        Ok(())
    }
}
