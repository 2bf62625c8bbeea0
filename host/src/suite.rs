//! promptfoo-like YAML suites: import into cards and test cases, export back.
//!
//! ```yaml
//! description: Capitals
//! prompts:
//!   - "What is the capital of {{country}}? Answer with one word."
//! providers: [echo:upper]        # optional: the default model for `cardrun run`
//! tests:
//!   - description: France
//!     vars: { country: France }
//!     expected: Paris            # optional expected_output
//!     assert:
//!       - type: icontains
//!         value: paris
//! ```
//! Each prompt becomes one card holding every test.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::AssertionSpec;
use crate::domain::{PromptCard, Template, TestCase};
use crate::store::{CardInput, TestCaseInput};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(default)]
    pub description: String,
    pub prompts: Prompts,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    pub tests: Vec<SuiteTest>,
}

/// One prompt or a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompts {
    One(String),
    Many(Vec<String>),
}

impl Prompts {
    pub fn list(&self) -> Vec<String> {
        match self {
            Prompts::One(p) => vec![p.clone()],
            Prompts::Many(ps) => ps.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteTest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub vars: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, rename = "assert", skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<AssertionSpec>,
}

/// A suite ready to store: one card per prompt, with its test cases.
pub struct SuitePlan {
    pub cards: Vec<(CardInput, Vec<TestCaseInput>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("invalid suite YAML: {0}")]
    Yaml(String),
    #[error("invalid suite: {0}")]
    Invalid(String),
}

impl Suite {
    pub fn from_yaml(text: &str) -> Result<Self, SuiteError> {
        serde_yaml_ng::from_str(text).map_err(|e| SuiteError::Yaml(e.to_string()))
    }

    pub fn to_yaml(&self) -> Result<String, SuiteError> {
        serde_yaml_ng::to_string(self).map_err(|e| SuiteError::Yaml(e.to_string()))
    }

    /// Validates and turns the suite into cards and test cases.
    /// `known_type` checks assertion types against the plugin registry.
    pub fn plan(&self, known_type: impl Fn(&str) -> Result<(), String>) -> Result<SuitePlan, SuiteError> {
        let prompts = self.prompts.list();
        if prompts.is_empty() {
            return Err(SuiteError::Invalid("`prompts` is empty".into()));
        }
        if self.tests.is_empty() {
            return Err(SuiteError::Invalid("`tests` is empty".into()));
        }
        let mut cards = Vec::new();
        for (i, prompt) in prompts.iter().enumerate() {
            let variables = Template::new(prompt).variables();
            let title = match (self.description.is_empty(), prompts.len()) {
                (true, _) => format!("Prompt {}", i + 1),
                (false, 1) => self.description.clone(),
                (false, _) => format!("{} #{}", self.description, i + 1),
            };
            let card = CardInput {
                title,
                description: self.description.clone(),
                prompt_template: prompt.clone(),
                variables: variables.clone(),
            };
            let mut cases = Vec::new();
            for (n, test) in self.tests.iter().enumerate() {
                let name = test.description.clone().unwrap_or_else(|| format!("test {}", n + 1));
                let missing: Vec<&String> = variables.iter().filter(|v| !test.vars.contains_key(*v)).collect();
                if !missing.is_empty() {
                    return Err(SuiteError::Invalid(format!(
                        "test `{name}` lacks variable(s) {missing:?} used by prompt {}",
                        i + 1
                    )));
                }
                for a in &test.assertions {
                    known_type(&a.kind).map_err(|e| SuiteError::Invalid(format!("test `{name}`: {e}")))?;
                }
                cases.push(TestCaseInput {
                    name,
                    input_variables: test.vars.clone(),
                    expected_output: test.expected.clone(),
                    assertions: test.assertions.clone(),
                });
            }
            cards.push((card, cases));
        }
        Ok(SuitePlan { cards })
    }

    /// A suite holding one card and its test cases.
    pub fn export(card: &PromptCard, cases: &[TestCase]) -> Self {
        Suite {
            description: card.title.clone(),
            prompts: Prompts::One(card.prompt_template.clone()),
            providers: vec![],
            tests: cases
                .iter()
                .map(|tc| SuiteTest {
                    description: Some(tc.name.clone()),
                    vars: tc.input_variables.clone(),
                    expected: tc.expected_output.clone(),
                    assertions: tc.assertions.clone(),
                })
                .collect(),
        }
    }
}
