//! The host's grader model, for evaluators exported with
//! [`crate::export_graded_evaluator!`]: a completion (LLM-as-judge) or
//! embeddings. The host chooses the model and adds its keys; a failed call
//! makes the assertion an error whatever the evaluator returns after it.

use crate::assertion::cardrun::plugin::types::{ChatMessage, Prompt};
use crate::graded_assertion::cardrun::plugin::grader::{self as host, GraderError};

/// The grader's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    /// `(prompt, completion)` tokens, when the model counted them.
    pub tokens: Option<(u32, u32)>,
}

/// Asks the grader model to complete `prompt`.
pub fn complete(prompt: &str) -> Result<Answer, String> {
    answer(host::complete(&Prompt::Text(prompt.to_string())))
}

/// Asks the grader model to answer a conversation of `(role, content)`
/// messages.
pub fn chat(messages: &[(&str, &str)]) -> Result<Answer, String> {
    let messages = messages
        .iter()
        .map(|(role, content)| ChatMessage { role: role.to_string(), content: content.to_string() })
        .collect();
    answer(host::complete(&Prompt::Chat(messages)))
}

/// One embedding per text, in order, from the grader's embedding model.
pub fn embed(texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
    host::embed(texts).map_err(describe)
}

fn answer(
    result: Result<crate::assertion::cardrun::plugin::types::CompletionResponse, GraderError>,
) -> Result<Answer, String> {
    let response = result.map_err(describe)?;
    Ok(Answer { text: response.text, tokens: response.tokens.map(|t| (t.prompt, t.completion)) })
}

fn describe(e: GraderError) -> String {
    match e {
        GraderError::NotConfigured(m) | GraderError::Unsupported(m) | GraderError::Failed(m) => format!("grader: {m}"),
    }
}
