//! Evaluations: a suite's prompts x providers matrix as one group of
//! executions (DESIGN.md section 3's "A/B testing for prompt variations").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One (prompt, provider) pair of an evaluation and the execution that
/// runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvaluationPair {
    /// `prompt · provider`, or just one of them when the other is alone.
    pub label: String,
    /// The prompt's label in the suite.
    pub prompt: String,
    /// The provider's label in the suite.
    pub provider: String,
    /// `adapter:model`.
    pub model: String,
    pub prompt_card_id: i64,
    pub execution_id: Uuid,
}

/// A stored evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evaluation {
    pub evaluation_id: Uuid,
    /// The tenant that started it. Never sent to clients.
    #[serde(skip)]
    pub tenant_id: Option<i64>,
    /// The suite's description.
    pub description: String,
    pub pairs: Vec<EvaluationPair>,
    pub created_at: DateTime<Utc>,
}
