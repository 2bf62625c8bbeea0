//! Which tests changed verdict between two runs: the regression view CI
//! needs. Tests are matched by pair label and test name, so two runs of
//! the same suite compare whatever their ids.

use serde::{Deserialize, Serialize};

use super::EvaluationResults;
use crate::domain::TestStatus;

/// Each test's verdict by `(pair label, test name)`, in run order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdicts {
    entries: Vec<((String, String), TestStatus)>,
}

impl Verdicts {
    /// Adds one verdict; a second test of the same name in the same pair
    /// is told apart as `name (2)`.
    pub fn insert(&mut self, pair: &str, test: &str, status: TestStatus) {
        let mut name = test.to_string();
        let mut n = 1;
        while self.get(pair, &name).is_some() {
            n += 1;
            name = format!("{test} ({n})");
        }
        self.entries.push(((pair.to_string(), name), status));
    }

    fn get(&self, pair: &str, test: &str) -> Option<TestStatus> {
        self.entries.iter().find(|((p, t), _)| p == pair && t == test).map(|(_, s)| *s)
    }

    /// The verdicts of an evaluation's results.
    pub fn of(results: &EvaluationResults) -> Self {
        let mut v = Self::default();
        for row in &results.tests {
            for (pair, status) in results.pairs.iter().zip(&row.verdicts) {
                if let Some(status) = status {
                    v.insert(&pair.label, &row.name, *status);
                }
            }
        }
        v
    }
}

/// A test whose verdict differs between the runs (`None`: not in that run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    pub pair: String,
    pub test: String,
    pub before: Option<TestStatus>,
    pub after: Option<TestStatus>,
}

/// The differences between a base run and another.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comparison {
    /// Passed before, did not pass now (failed, error, skipped...).
    pub regressions: Vec<Change>,
    /// Did not pass before, passes now.
    pub fixes: Vec<Change>,
    /// Other changes: between two ways of not passing, or a test only in
    /// one of the runs.
    pub other_changes: Vec<Change>,
    /// Tests with the same verdict in both.
    pub unchanged: usize,
}

impl Comparison {
    pub fn has_regressions(&self) -> bool {
        !self.regressions.is_empty()
    }
}

pub fn compare(base: &Verdicts, other: &Verdicts) -> Comparison {
    let mut c = Comparison::default();
    let change = |(pair, test): &(String, String), before, after| Change {
        pair: pair.clone(),
        test: test.clone(),
        before,
        after,
    };
    for (key, before) in &base.entries {
        let after = other.get(&key.0, &key.1);
        match after {
            Some(after) if after == *before => c.unchanged += 1,
            Some(after) if *before == TestStatus::Passed => c.regressions.push(change(key, Some(*before), Some(after))),
            Some(TestStatus::Passed) => c.fixes.push(change(key, Some(*before), Some(TestStatus::Passed))),
            after => c.other_changes.push(change(key, Some(*before), after)),
        }
    }
    for (key, after) in &other.entries {
        if base.get(&key.0, &key.1).is_none() {
            c.other_changes.push(change(key, None, Some(*after)));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regressions_fixes_and_the_rest() {
        let mut a = Verdicts::default();
        let mut b = Verdicts::default();
        for (pair, test, before, after) in [
            ("p", "kept", TestStatus::Passed, Some(TestStatus::Passed)),
            ("p", "broke", TestStatus::Passed, Some(TestStatus::Failed)),
            ("q", "mended", TestStatus::Error, Some(TestStatus::Passed)),
            ("q", "worse", TestStatus::Failed, Some(TestStatus::Error)),
            ("q", "gone", TestStatus::Passed, None),
        ] {
            a.insert(pair, test, before);
            if let Some(after) = after {
                b.insert(pair, test, after);
            }
        }
        b.insert("q", "new", TestStatus::Failed);
        let c = compare(&a, &b);
        assert_eq!(c.unchanged, 1);
        assert_eq!(c.regressions.len(), 1);
        assert_eq!(c.regressions[0].test, "broke");
        assert_eq!(c.fixes[0].test, "mended");
        let others: Vec<&str> = c.other_changes.iter().map(|x| x.test.as_str()).collect();
        assert_eq!(others, ["worse", "gone", "new"]);
        assert!(c.has_regressions() && !compare(&b, &b).has_regressions());
    }
}
