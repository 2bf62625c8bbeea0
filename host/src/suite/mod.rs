//! Suites as promptfoo writes them, for `cardrun run` and the import API.
//!
//! ```yaml
//! description: Capitals
//! prompts:
//!   - "What is the capital of {{ country }}? Answer with one word."
//!   - file://prompts/formal.txt
//! providers: [ollama:llama3, {id: openai:gpt-4o-mini, config: {temperature: 0}}]
//! defaultTest:
//!   assert: [{type: not-icontains, value: sorry}]
//! tests:
//!   - description: France
//!     vars: { country: France }
//!     assert:
//!       - type: icontains
//!         value: paris
//!   - file://tests/*.csv
//! ```
//! Each prompt becomes one card holding every test; every (prompt,
//! provider) pair runs (the matrix). `format.rs` reads the YAML,
//! `prompts.rs`, `providers.rs` and `test_cases.rs` resolve their parts through
//! `files.rs` (which never reads outside the suite's folder), and `plan`
//! checks the result against the plugins.

pub mod archive;
pub mod files;
pub mod filters;
mod format;
mod params;
mod prompts;
mod providers;
mod test_cases;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{AssertionSpec, PromptCard, Template, TestCase, limits};
use crate::store::{CardInput, TestCaseInput};
pub use files::{FileError, FolderFiles, SuiteFiles, UploadedFiles};
pub use prompts::SuitePrompt;
pub use providers::SuiteProvider;
pub use test_cases::{SuiteTest, expected_assertion};

/// A suite with every file read, defaults merged and vars expanded.
#[derive(Debug, Clone)]
pub struct Suite {
    pub description: String,
    /// Keys the imported card instead of the description.
    pub id: Option<String>,
    pub prompts: Vec<SuitePrompt>,
    pub providers: Vec<SuiteProvider>,
    pub tests: Vec<SuiteTest>,
    /// `nunjucksFilters`: name -> JavaScript whose value is the filter
    /// function; every card of the suite gets them.
    pub filters: BTreeMap<String, String>,
    /// Parts that are ignored, each said once (printed by `cardrun run`,
    /// returned by the import API).
    pub warnings: Vec<String>,
    /// The YAML it was read from, to give problems their line.
    source: String,
}

/// One card of a plan and its test cases.
#[derive(Debug, Clone)]
pub struct PlannedCard {
    pub card: CardInput,
    pub cases: Vec<TestCaseInput>,
    /// The prompt's label, for tables.
    pub label: String,
}

/// One (prompt, provider) pair that runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPair {
    /// Index into `SuitePlan::cards`.
    pub card: usize,
    /// Index into `SuitePlan::providers`.
    pub provider: usize,
    /// The indices of the card's test cases this pair runs, when tests'
    /// `providers`/`prompts` leave some out; `None`: all of them.
    pub tests: Option<Vec<usize>>,
}

/// A suite ready to store and run.
#[derive(Debug, Clone)]
pub struct SuitePlan {
    pub cards: Vec<PlannedCard>,
    pub providers: Vec<SuiteProvider>,
    /// Every pair that runs, card-major; a pair no test runs on is left out.
    pub pairs: Vec<PlannedPair>,
}

impl SuitePlan {
    /// Tests over all pairs.
    pub fn total_tests(&self) -> usize {
        self.pairs
            .iter()
            .map(|p| p.tests.as_ref().map_or_else(|| self.cards[p.card].cases.len(), Vec::len))
            .fold(0, usize::saturating_add)
    }
}

/// Whether a provider filter entry names `provider`, as promptfoo matches
/// them: its label or id, `adapter:*`, or a bare adapter name.
fn names_provider(entry: &str, provider: &SuiteProvider) -> bool {
    entry == provider.label
        || entry == provider.id
        || entry.strip_suffix('*').is_some_and(|prefix| provider.id.starts_with(prefix))
        || provider.id.strip_prefix(entry).is_some_and(|rest| rest.starts_with(':'))
}

/// Whether a prompt filter entry names `prompt`: its label or id, or a
/// prefix ending in `*`.
fn names_prompt(entry: &str, prompt: &SuitePrompt) -> bool {
    entry == prompt.label
        || prompt.id.as_deref() == Some(entry)
        || entry.strip_suffix('*').is_some_and(|prefix| prompt.label.starts_with(prefix))
}

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("invalid suite YAML: {0}")]
    Yaml(String),
    #[error("reading the suite: {0}")]
    File(#[from] FileError),
    /// Every problem found, each with where it is.
    #[error("{}", problems(.0))]
    Invalid(Vec<String>),
}

fn problems(list: &[String]) -> String {
    match list {
        [one] => format!("invalid suite: {one}"),
        many => format!("invalid suite, {} problems:\n  - {}", many.len(), many.join("\n  - ")),
    }
}

impl Suite {
    /// Reads the suite at `path`; its `file://` references are read below
    /// its folder only.
    pub fn load(path: &Path) -> Result<Self, SuiteError> {
        let folder = FolderFiles::open(path.parent().unwrap_or(Path::new(".")))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| FileError::Io { path: path.display().to_string(), reason: e.to_string() })?;
        Self::parse(&text, &folder)
    }

    /// A suite with no files to read (a `file://` reference is an error).
    pub fn from_yaml(text: &str) -> Result<Self, SuiteError> {
        Self::parse(text, &UploadedFiles::default())
    }

    /// Reads `text`, resolving `file://` references through `files`.
    /// Every problem is reported at once.
    pub fn parse(text: &str, files: &dyn SuiteFiles) -> Result<Self, SuiteError> {
        let raw: format::RawSuite =
            yaml::from_str(text).map_err(|e| SuiteError::Yaml(format::suggest_field(&e.to_string())))?;
        let mut found = providers::Findings::default();
        for (key, why) in raw.unsupported() {
            found.problems.push(format!("`{key}`: {why}"));
        }
        if raw.evaluate_options.is_some() {
            found
                .warnings
                .push("`evaluateOptions` is ignored; pass --concurrency and --retries to `cardrun run`".into());
        }
        if raw.output_path.is_some() {
            found.warnings.push("`outputPath` is ignored; pass --output to `cardrun run`".into());
        }
        let prompts = match &raw.prompts {
            Some(p) => prompts::resolve(p, files, &mut found.problems),
            None => {
                found.problems.push("`prompts` is missing".into());
                Vec::new()
            }
        };
        let providers = raw.providers.as_ref().map(|p| providers::resolve(p, files, &mut found)).unwrap_or_default();
        let templates = raw.assertion_templates.clone().unwrap_or_default();
        let cx = test_cases::Context { files, templates: &templates };
        let tests = test_cases::resolve(raw.tests.as_ref(), raw.default_test.as_ref(), &cx, &mut found.problems);
        let filters =
            raw.nunjucks_filters.as_ref().map(|f| filters::resolve(f, files, &mut found.problems)).unwrap_or_default();
        let suite = Suite {
            description: raw.description.unwrap_or_default(),
            id: raw.id,
            prompts,
            providers,
            tests,
            filters,
            warnings: found.warnings,
            source: text.to_string(),
        };
        if !found.problems.is_empty() {
            let located = found.problems.into_iter().map(|p| suite.locate(p)).collect();
            return Err(SuiteError::Invalid(located));
        }
        Ok(suite)
    }

    /// Prefixes "line N: " to a problem that starts with `tests[n]` or a
    /// top-level key, when the source shows where.
    fn locate(&self, problem: String) -> String {
        let key = problem.split([':', '[', '.', ',']).next().unwrap_or("").trim_matches('`');
        if key.is_empty() || key.contains(' ') {
            return problem;
        }
        match self.source.lines().position(|l| l.starts_with(&format!("{key}:"))) {
            Some(i) => format!("line {}: {problem}", i + 1),
            None => problem,
        }
    }

    /// "line N: " for the first line of the source holding every one of
    /// `needles`.
    fn line_of(&self, needles: &[&str]) -> String {
        let found = self.source.lines().position(|line| needles.iter().all(|n| line.contains(n)));
        found.map_or_else(String::new, |i| format!("line {}: ", i + 1))
    }

    /// Checks the suite against the plugins (`known_type`) and the
    /// templates against the tests' vars, and turns it into cards, test
    /// cases and the pairs to run. Every problem is reported at once.
    pub fn plan<E: std::fmt::Display>(
        &self,
        known_type: impl Fn(&str) -> Result<(), E>,
    ) -> Result<SuitePlan, SuiteError> {
        let mut problems = Vec::new();
        if self.prompts.is_empty() {
            problems.push(format!("{}`prompts` is empty", self.line_of(&["prompts"])));
        }
        if self.tests.is_empty() {
            problems.push(format!("{}`tests` is empty", self.line_of(&["tests"])));
        }
        let mut templates = Vec::with_capacity(self.prompts.len());
        if let Err(e) = limits::check_test_count(self.tests.len()) {
            problems.push(format!("{}`tests`: {e}", self.line_of(&["tests"])));
        }
        let filter_names: Vec<String> = self.filters.keys().cloned().collect();
        for (i, prompt) in self.prompts.iter().enumerate() {
            if let Err(e) = limits::check_template(&prompt.template) {
                problems.push(format!("prompt {} `{}`: {e}", i + 1, short(&prompt.label)));
                templates.push(None);
                continue;
            }
            match Template::parse_with_filters(&prompt.template, &filter_names) {
                Ok(t) => templates.push(Some(t)),
                Err(e) => {
                    problems.push(format!("prompt {} `{}`: {e}", i + 1, short(&prompt.label)));
                    templates.push(None);
                }
            }
        }
        let mut reported = std::collections::HashSet::new();
        for (n, test) in self.tests.iter().enumerate() {
            let name = test_name(test, n);
            if let Err(e) = limits::check_test_case(&name, &test.vars, test.expected.as_deref(), &test.assertions) {
                problems.push(format!("{} `{}`: {e}", test.place, short(&name)));
                continue;
            }
            for (j, a) in test.assertions.iter().enumerate() {
                if let Err(e) = known_type(&a.kind) {
                    // Once per type and place: a defaultTest assertion is in every test.
                    if reported.insert((a.kind.clone(), test.place.clone())) {
                        let line = self.line_of(&["type", &a.kind]);
                        problems.push(format!("{line}{} `{name}`, assert[{j}]: {e}", test.place));
                    }
                }
            }
            // Rendering now finds missing vars and unknown filters before
            // anything runs, never after.
            for (i, template) in templates.iter().enumerate() {
                let Some(template) = template else { continue };
                // Custom filters run when the pairs are planned, in the sandbox.
                if let Err(e) = template.render_step(&test.vars) {
                    let line =
                        test.description.as_deref().map_or_else(String::new, |d| self.line_of(&["description", d]));
                    problems.push(format!("{line}{} `{name}` with prompt {}: {e}", test.place, i + 1));
                }
            }
        }
        let labels: Vec<&str> = self.prompts.iter().map(|p| p.label.as_str()).collect();
        let provider_labels: Vec<&str> = self.providers.iter().map(|p| p.label.as_str()).collect();
        for (n, test) in self.tests.iter().enumerate() {
            let name = test_name(test, n);
            for wanted in test.providers.iter().flatten() {
                if !self.providers.iter().any(|p| names_provider(wanted, p)) {
                    let hint = crate::domain::closest(wanted, &provider_labels)
                        .map_or_else(String::new, |b| format!("; did you mean `{b}`?"));
                    problems.push(format!("{} `{name}`: `providers` names no provider `{wanted}`{hint}", test.place));
                }
            }
            for wanted in test.prompts.iter().flatten() {
                if !self.prompts.iter().any(|p| names_prompt(wanted, p)) {
                    let hint = crate::domain::closest(wanted, &labels)
                        .map_or_else(String::new, |b| format!("; did you mean `{b}`?"));
                    problems.push(format!("{} `{name}`: `prompts` names no prompt `{wanted}`{hint}", test.place));
                }
            }
        }
        for (k, provider) in self.providers.iter().enumerate() {
            for wanted in provider.prompts.iter().flatten() {
                if !self.prompts.iter().any(|p| p.label == *wanted || p.id.as_deref() == Some(wanted)) {
                    let hint = crate::domain::closest(wanted, &labels)
                        .map_or_else(String::new, |b| format!("; did you mean `{b}`?"));
                    problems.push(format!(
                        "providers[{k}] `{}`: names no prompt labelled `{wanted}`{hint}",
                        provider.label
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(SuiteError::Invalid(problems));
        }

        let key = self.id.clone().unwrap_or_else(|| self.description.clone());
        let cases: Vec<TestCaseInput> = self
            .tests
            .iter()
            .enumerate()
            .map(|(n, test)| TestCaseInput {
                name: test_name(test, n),
                input_variables: test.vars.clone(),
                expected_output: test.expected.clone(),
                assertions: test.assertions.clone(),
                threshold: test.threshold,
                transform: test.transform.clone(),
            })
            .collect();
        let mut cards = Vec::with_capacity(self.prompts.len());
        for (i, (prompt, template)) in self.prompts.iter().zip(&templates).enumerate() {
            let title = match (key.is_empty(), self.prompts.len()) {
                (true, _) => format!("Prompt {}", i + 1),
                (false, 1) => key.clone(),
                (false, _) => format!("{key} #{}", i + 1),
            };
            let card = CardInput {
                // The importer sets the owner.
                tenant_id: None,
                title,
                description: self.description.clone(),
                prompt_template: prompt.template.clone(),
                variables: template.as_ref().map(Template::variables).unwrap_or_default(),
                filters: self.filters.clone(),
            };
            if let Err(e) = limits::check_card(&card.title, &card.description, &card.prompt_template, &card.variables) {
                problems.push(format!("prompt {} `{}`: {e}", i + 1, short(&prompt.label)));
            }
            cards.push(PlannedCard { card, cases: cases.clone(), label: prompt.label.clone() });
        }
        if !problems.is_empty() {
            return Err(SuiteError::Invalid(problems));
        }
        let mut pairs = Vec::new();
        for (c, prompt) in self.prompts.iter().enumerate() {
            for (p, provider) in self.providers.iter().enumerate() {
                let runs = provider
                    .prompts
                    .as_ref()
                    .is_none_or(|wanted| wanted.iter().any(|w| *w == prompt.label || prompt.id.as_deref() == Some(w)));
                if !runs {
                    continue;
                }
                let tests: Vec<usize> = (0..self.tests.len())
                    .filter(|&n| {
                        let test = &self.tests[n];
                        test.providers.as_ref().is_none_or(|w| w.iter().any(|e| names_provider(e, provider)))
                            && test.prompts.as_ref().is_none_or(|w| w.iter().any(|e| names_prompt(e, prompt)))
                    })
                    .collect();
                if tests.is_empty() {
                    continue;
                }
                let tests = (tests.len() < self.tests.len()).then_some(tests);
                pairs.push(PlannedPair { card: c, provider: p, tests });
            }
        }
        Ok(SuitePlan { cards, providers: self.providers.clone(), pairs })
    }

    /// A card and its test cases as suite YAML that imports back as it was.
    pub fn export(card: &PromptCard, cases: &[TestCase]) -> Result<String, SuiteError> {
        let suite = Exported {
            description: &card.title,
            prompts: [card.prompt_template.as_str()],
            tests: cases
                .iter()
                .map(|tc| ExportedTest {
                    description: &tc.name,
                    vars: &tc.input_variables,
                    expected: tc.expected_output.as_deref(),
                    assertions: &tc.assertions,
                    threshold: tc.threshold,
                    options: tc.transform.as_deref().map(|transform| ExportedOptions { transform }),
                })
                .collect(),
        };
        let yaml = serde_yaml_ng::to_string(&suite).map_err(|e| SuiteError::Yaml(e.to_string()))?;
        if card.filters.is_empty() {
            return Ok(yaml);
        }
        // A suite holds filters only as files (`nunjucksFilters`), which an
        // export cannot write: say so rather than drop them silently.
        let names: Vec<&str> = card.filters.keys().map(String::as_str).collect();
        Ok(format!(
            "# This card's custom filters ({}) are not exported: add each as a JavaScript file under `nunjucksFilters`.\n{yaml}",
            names.join(", ")
        ))
    }
}

fn test_name(test: &SuiteTest, n: usize) -> String {
    test.description.clone().unwrap_or_else(|| format!("test {}", n + 1))
}

/// The first line of a label, cut for messages.
fn short(label: &str) -> String {
    let line = label.lines().next().unwrap_or("");
    if line.chars().count() > 60 {
        format!("{}…", line.chars().take(60).collect::<String>())
    } else {
        line.to_string()
    }
}

#[derive(Serialize)]
struct Exported<'a> {
    description: &'a str,
    prompts: [&'a str; 1],
    tests: Vec<ExportedTest<'a>>,
}

#[derive(Serialize)]
struct ExportedTest<'a> {
    description: &'a str,
    vars: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<&'a str>,
    #[serde(rename = "assert", skip_serializing_if = "<[AssertionSpec]>::is_empty")]
    assertions: &'a [AssertionSpec],
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<ExportedOptions<'a>>,
}

#[derive(Serialize)]
struct ExportedOptions<'a> {
    transform: &'a str,
}

#[cfg(test)]
mod unit {
    #[test]
    fn tests_run_only_on_the_providers_and_prompts_they_name() {
        let yaml = "prompts: [{raw: 'a {{x}}', label: A}, {raw: 'b {{x}}', label: B}]\nproviders: [echo:upper, {id: openai:m, label: mini}]\ntests:\n  - {vars: {x: 1}, providers: [mini]}\n  - {vars: {x: 2}, providers: ['echo:*'], prompts: [B]}\n  - {vars: {x: 3}, providers: [openai]}\n";
        let plan = Suite::from_yaml(yaml).unwrap().plan(known).unwrap();
        let got: Vec<(usize, usize, Option<Vec<usize>>)> =
            plan.pairs.iter().map(|p| (p.card, p.provider, p.tests.clone())).collect();
        assert_eq!(got, vec![(0, 1, Some(vec![0, 2])), (1, 0, Some(vec![1])), (1, 1, Some(vec![0, 2]))]);
        assert_eq!(plan.total_tests(), 5);
        let bad = "prompts: [{raw: a, label: A}]\nproviders: [{id: echo:x, label: fast}]\ntests: [{vars: {}, providers: [fsat]}]\n";
        let err = Suite::from_yaml(bad).unwrap().plan(known).expect_err("invalid").to_string();
        assert!(err.contains("names no provider `fsat`; did you mean `fast`?"), "{err}");
    }

    use super::*;

    fn known(kind: &str) -> Result<(), String> {
        if kind == "contains" { Ok(()) } else { Err(format!("unknown assertion type `{kind}`")) }
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_line() {
        let yaml = "description: d\nprompts: ['{{a}} {{b}}']\ntests:\n  - description: one\n    vars: { a: 1 }\n    assert:\n      - type: contians\n  - description: two\n    vars: { a: 1, b: 2 }\n";
        let suite = Suite::from_yaml(yaml).unwrap();
        let err = suite.plan(known).expect_err("invalid");
        let SuiteError::Invalid(problems) = &err else { panic!("{err}") };
        assert_eq!(problems.len(), 2, "{err}");
        assert!(problems[0].starts_with("line 7: tests[0] `one`, assert[0]: unknown assertion type"), "{err}");
        assert!(
            problems[1].starts_with("line 4: tests[0] `one` with prompt 1: missing template variable(s): b"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_get_a_suggestion_and_no_rust_type_names() {
        let err = Suite::from_yaml("prompts: ['x']\ntests:\n  - asert: []\n").expect_err("invalid").to_string();
        assert!(err.contains("unknown field `asert`") && err.contains("did you mean `assert`?"), "{err}");
        let err = Suite::from_yaml("prompts: ['x']\ntests: []\ndefaultTets: {}\n").expect_err("invalid").to_string();
        assert!(err.contains("did you mean `defaultTest`?") && err.contains("line 3"), "{err}");
        let err = Suite::from_yaml("prompts: 3\ntests: []\n").expect_err("invalid").to_string();
        assert!(err.contains("not a number") && !err.contains("Value"), "{err}");
    }

    #[test]
    fn the_matrix_pairs_prompts_and_providers() {
        let yaml = "prompts: [{raw: 'a {{x}}', label: A}, {raw: 'b {{x}}', label: B}]\nproviders: [echo:upper, {id: echo:lower, prompts: [B]}]\ntests: [{vars: {x: 1}}]\n";
        let plan = Suite::from_yaml(yaml).unwrap().plan(known).unwrap();
        let pairs: Vec<(usize, usize)> = plan.pairs.iter().map(|p| (p.card, p.provider)).collect();
        assert_eq!(pairs, vec![(0, 0), (1, 0), (1, 1)]);
        assert_eq!(plan.cards[1].label, "B");
        let bad = "prompts: [{raw: a, label: A}]\nproviders: [{id: echo:x, prompts: [a]}]\ntests: [{vars: {}}]\n";
        let err = Suite::from_yaml(bad).unwrap().plan(known).expect_err("invalid").to_string();
        assert!(err.contains("names no prompt labelled `a`; did you mean `A`?"), "{err}");
    }
}
