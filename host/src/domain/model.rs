//! `"<adapter>:<model>"` model references.

use super::Invalid;

use std::fmt;

/// A model reference: the adapter to use and the model name it receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    pub adapter: String,
    pub model: String,
    /// Send text prompts as a one-message chat (`ollama:chat:llama3`, as
    /// promptfoo spells it); `ollama:completion:llama3` is plain text.
    pub chat: bool,
}

impl ModelRef {
    /// Parses `adapter:model`. The text before the first `:` is always the
    /// adapter (so an Ollama tag is written `ollama:llama3:8b`), and it must
    /// be a known adapter; a bare name without `:` uses `default_adapter`,
    /// so the original system's `"llama3"` keeps working.
    pub fn parse(text: &str, default_adapter: &str, known_adapters: &[String]) -> Result<Self, Invalid> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Invalid::new("model must not be empty"));
        }
        let (adapter, model) = text.split_once(':').unwrap_or((default_adapter, text));
        if !known_adapters.iter().any(|a| a == adapter) {
            return Err(Invalid::new(format!(
                "unknown model adapter `{adapter}` in model `{text}`; known adapters: {} (write models as adapter:model, e.g. ollama:llama3:8b)",
                known_adapters.join(", ")
            )));
        }
        let (chat, model) = match model.split_once(':') {
            Some(("chat" | "messages", rest)) => (true, rest),
            Some(("completion", rest)) => (false, rest),
            _ => (false, model),
        };
        if model.is_empty() {
            return Err(Invalid::new(format!("model `{text}` names no model after the adapter")));
        }
        Ok(Self { adapter: adapter.to_string(), model: model.to_string(), chat })
    }
}

impl ModelRef {
    /// Parses a grading model as promptfoo spells one: as [`ModelRef::parse`],
    /// and `openai:embedding:text-embedding-3-small` or
    /// `ollama:embeddings:nomic-embed-text` name an embedding model.
    pub fn parse_grader(text: &str, default_adapter: &str, known_adapters: &[String]) -> Result<Self, Invalid> {
        let mut model = Self::parse(text, default_adapter, known_adapters)?;
        for prefix in ["embedding:", "embeddings:"] {
            if let Some(rest) = model.model.strip_prefix(prefix) {
                if rest.is_empty() {
                    return Err(Invalid::new(format!("model `{text}` names no model after `{prefix}`")));
                }
                model.model = rest.to_string();
            }
        }
        Ok(model)
    }
}

impl super::GraderModels {
    /// The same models with each id checked and written in full
    /// (`adapter:model`), so a job carries ids any worker reads alike.
    pub fn resolved(&self, default_adapter: &str, known_adapters: &[String]) -> Result<Self, Invalid> {
        let one = |id: &Option<String>| {
            id.as_deref()
                .map(|id| ModelRef::parse_grader(id, default_adapter, known_adapters).map(|m| m.to_string()))
                .transpose()
                .map_err(|e| Invalid::new(format!("grading provider: {}", e.0)))
        };
        Ok(Self { text: one(&self.text)?, embedding: one(&self.embedding)? })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.chat { "chat:" } else { "" };
        write!(f, "{}:{mode}{}", self.adapter, self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        vec!["echo".into(), "ollama".into(), "openai".into()]
    }

    #[test]
    fn parses_prefixed_and_bare_names() {
        assert_eq!(ModelRef::parse("openai:gpt-4o-mini", "ollama", &known()).unwrap().adapter, "openai");
        let bare = ModelRef::parse("llama3", "ollama", &known()).unwrap();
        assert_eq!((bare.adapter.as_str(), bare.model.as_str()), ("ollama", "llama3"));
        assert!(ModelRef::parse("bard:x", "ollama", &known()).unwrap_err().contains("echo, ollama, openai"));
        let nested = ModelRef::parse("ollama:llama3:8b", "ollama", &known()).unwrap();
        assert_eq!(nested.model, "llama3:8b");
        assert!(ModelRef::parse(" ", "ollama", &known()).is_err());
        let chat = ModelRef::parse("ollama:chat:llama3:8b", "ollama", &known()).unwrap();
        assert!(chat.chat && chat.model == "llama3:8b" && chat.to_string() == "ollama:chat:llama3:8b");
        let text = ModelRef::parse("ollama:completion:llama3", "ollama", &known()).unwrap();
        assert!(!text.chat && text.model == "llama3");
        assert!(ModelRef::parse("ollama:chat:", "ollama", &known()).is_err());
        assert!(ModelRef::parse("openai:", "ollama", &known()).is_err());
    }

    #[test]
    fn grading_models_read_promptfoos_embedding_spelling() {
        let e = ModelRef::parse_grader("openai:embedding:text-embedding-3-small", "ollama", &known()).unwrap();
        assert_eq!((e.adapter.as_str(), e.model.as_str()), ("openai", "text-embedding-3-small"));
        let e = ModelRef::parse_grader("ollama:embeddings:nomic-embed-text", "ollama", &known()).unwrap();
        assert_eq!(e.to_string(), "ollama:nomic-embed-text");
        assert!(ModelRef::parse_grader("ollama:embedding:", "ollama", &known()).is_err());
        let bare = super::super::GraderModels::single("judge").resolved("ollama", &known()).unwrap();
        assert_eq!(bare.text.as_deref(), Some("ollama:judge"));
        let unknown = super::super::GraderModels::single("bard:x").resolved("ollama", &known()).unwrap_err();
        assert!(unknown.0.contains("grading provider") && unknown.0.contains("bard"), "{}", unknown.0);
    }
}
