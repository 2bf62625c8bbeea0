//! A suite's assertion parameters, checked by the plugins that own their
//! types (their `check` export) before anything is stored or run.

use super::{Suite, SuiteError, test_name};
use crate::sandbox::{Owner, ParameterChecks, Sandbox, SandboxError};

/// Distinct problems listed before the rest are only counted.
const MAX_LISTED: usize = 50;

/// One objection, and the tests it applies to beyond the first.
struct Objection {
    first_place: String,
    kind: String,
    message: String,
    more: usize,
}

impl Suite {
    /// Asks each assertion's plugin (as `owner` sees them) whether its parameters are valid; every
    /// objection is reported at once, with its line and test. The same
    /// objection to the same type (a `defaultTest` assertion is in every
    /// test) is listed once, with how many more tests share it. Unknown
    /// types are [`Suite::plan`]'s to report; a sandbox fault leaves the
    /// parameters to be checked at run time, as for a plugin without
    /// `check`.
    pub async fn check_parameters(&self, sandbox: &Sandbox, owner: Owner) -> Result<(), SuiteError> {
        let mut checks = ParameterChecks::new(sandbox, owner);
        let mut objections: Vec<Objection> = Vec::new();
        for (name, function) in &self.filters {
            match sandbox.check_script(function).await {
                Ok(()) | Err(SandboxError::Internal(_)) => {}
                Err(e) => objections.push(Objection {
                    first_place: format!("{}nunjucksFilters.{name}", self.line_of(&[name.as_str()])),
                    kind: "filter".into(),
                    message: e.to_string(),
                    more: 0,
                }),
            }
        }
        for (n, test) in self.tests.iter().enumerate() {
            if let Some(script) = &test.transform {
                match checks.check_transform(script).await {
                    Ok(()) | Err(SandboxError::Internal(_)) => {}
                    Err(e) => {
                        let message = e.to_string();
                        if let Some(seen) =
                            objections.iter_mut().find(|o| o.kind == "options.transform" && o.message == message)
                        {
                            seen.more = seen.more.saturating_add(1);
                        } else {
                            let line = self.line_of(&["transform"]);
                            let first_place =
                                format!("{line}{} `{}`, options.transform", test.place, test_name(test, n));
                            objections.push(Objection {
                                first_place,
                                kind: "options.transform".into(),
                                message,
                                more: 0,
                            });
                        }
                    }
                }
            }
            for (j, spec) in test.assertions.iter().enumerate() {
                let message = match checks.check(spec, test.expected.as_deref()).await {
                    Ok(()) | Err(SandboxError::UnknownAssertion { .. }) => continue,
                    Err(SandboxError::Internal(fault)) => {
                        tracing::warn!(assertion_type = %spec.kind, %fault, "parameter check failed in the sandbox");
                        continue;
                    }
                    Err(e) => e.to_string(),
                };
                if let Some(seen) = objections.iter_mut().find(|o| o.kind == spec.kind && o.message == message) {
                    seen.more = seen.more.saturating_add(1);
                    continue;
                }
                let line = self.line_of(&["type", &spec.kind]);
                let first_place = format!("{line}{} `{}`, assert[{j}]", test.place, test_name(test, n));
                objections.push(Objection { first_place, kind: spec.kind.clone(), message, more: 0 });
            }
        }
        if objections.is_empty() {
            return Ok(());
        }
        let unlisted = objections.len().saturating_sub(MAX_LISTED);
        let mut problems: Vec<String> = objections
            .into_iter()
            .take(MAX_LISTED)
            .map(|o| {
                let more = match o.more {
                    0 => String::new(),
                    1 => " (and in 1 more test)".to_string(),
                    n => format!(" (and in {n} more tests)"),
                };
                format!("{} `{}`: {}{more}", o.first_place, o.kind, o.message)
            })
            .collect();
        if unlisted > 0 {
            problems.push(format!("{unlisted} more assertions with invalid parameters"));
        }
        Err(SuiteError::Invalid(problems))
    }
}
