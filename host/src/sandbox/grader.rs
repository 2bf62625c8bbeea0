//! The `grader` capability: what an assertion plugin may ask of a model.
//!
//! Invariants:
//! - the plugin names no model: the host resolves the grader for the
//!   assertion (its `provider`, the test's, `--grader`, `DEFAULT_GRADER`)
//!   and gives the plugin only the answer;
//! - a grader call runs while the plugin's instance waits in a host call,
//!   so it counts against the assertion's deadline, not its fuel;
//! - any failed grader call makes the assertion an error
//!   ([`super::SandboxError::Grader`]), whatever verdict the plugin returns
//!   after it: a grader failure is never a pass.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::types::{Completion, Prompt};
use crate::domain::GraderModels;

/// A boxed future of a grader call (the trait is used as `dyn`).
pub type GraderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, GraderFailure>> + Send + 'a>>;

/// Why a grader call gave no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraderFailure {
    /// No grader model is configured for the test.
    #[error(
        "no grader model is configured: set the assertion's `provider`, the test's `options.provider`, `defaultTest.options.provider`, `--grader` or DEFAULT_GRADER"
    )]
    NotConfigured,
    /// The grader's adapter cannot do what was asked.
    #[error("{0}")]
    Unsupported(String),
    /// The model call failed (after retries), or the model is unknown.
    #[error("{0}")]
    Failed(String),
}

/// Answers grader calls for one test: routes them to models and bills them.
pub trait Grader: Send + Sync {
    /// One completion from the text model of `models`.
    fn complete<'a>(&'a self, models: &'a GraderModels, prompt: Prompt) -> GraderFuture<'a, Completion>;
    /// One embedding per text from the embedding model of `models`.
    fn embed<'a>(&'a self, models: &'a GraderModels, texts: Vec<String>) -> GraderFuture<'a, Vec<Vec<f32>>>;
}

/// The grader an assertion instance may call, with the models resolved
/// for that assertion.
#[derive(Clone)]
pub struct GraderAccess {
    pub grader: Arc<dyn Grader>,
    /// `None`: nothing configured anywhere; calls are `NotConfigured`.
    pub models: Option<GraderModels>,
}

/// Longest list of texts one `embed` call may ask for, and the largest
/// vector a model may return (both bound what the host copies).
pub const MAX_EMBED_TEXTS: usize = 256;
pub const MAX_EMBEDDING_DIMENSIONS: usize = 16_384;

/// A test's grader and the models it grades with by default (the host's
/// `--grader` or `DEFAULT_GRADER`), to which an assertion's own
/// `provider` is preferred.
#[derive(Clone)]
pub struct Grading {
    pub grader: Arc<dyn Grader>,
    pub default: Option<GraderModels>,
}

impl Grading {
    /// What the instance judging `spec` may call.
    pub fn access_for(&self, spec: &crate::domain::AssertionSpec) -> GraderAccess {
        let models = match &spec.provider {
            Some(own) => Some(own.or(self.default.as_ref())),
            None => self.default.clone(),
        };
        GraderAccess { grader: self.grader.clone(), models }
    }
}
