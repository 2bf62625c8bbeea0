//! `cardrun compare BASE.json OTHER.json`: the tests whose verdict changed
//! between two `run --output` reports, and a non-zero exit on a regression.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;

use cardrun::domain::TestStatus;
use cardrun::evaluation::{Change, Comparison, Verdicts, compare};

/// What `compare` reads of a report.
#[derive(Deserialize)]
struct Report {
    results: Vec<ReportResult>,
}

#[derive(Deserialize)]
struct ReportResult {
    /// Absent in reports of one model from before the matrix.
    #[serde(default)]
    pair: Option<String>,
    result: ReportTest,
}

#[derive(Deserialize)]
struct ReportTest {
    test_case_name: String,
    status: TestStatus,
}

fn verdicts(path: &Path) -> anyhow::Result<Verdicts> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let report: Report = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a `cardrun run --output` report", path.display()))?;
    let mut v = Verdicts::default();
    for r in &report.results {
        v.insert(r.pair.as_deref().unwrap_or(""), &r.result.test_case_name, r.result.status);
    }
    Ok(v)
}

pub fn compare_reports(base: &Path, other: &Path) -> anyhow::Result<ExitCode> {
    let comparison = compare(&verdicts(base)?, &verdicts(other)?);
    print!("{}", describe(&comparison));
    Ok(if comparison.has_regressions() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn describe(c: &Comparison) -> String {
    let status = |s: Option<TestStatus>| s.map_or("absent", TestStatus::as_str);
    let line = |kind: &str, ch: &Change| {
        let pair = if ch.pair.is_empty() { String::new() } else { format!(" [{}]", ch.pair) };
        format!("{kind:<11} {}{pair}: {} -> {}\n", ch.test, status(ch.before), status(ch.after))
    };
    let mut out = String::new();
    for ch in &c.regressions {
        out.push_str(&line("REGRESSION", ch));
    }
    for ch in &c.fixes {
        out.push_str(&line("fixed", ch));
    }
    for ch in &c.other_changes {
        out.push_str(&line("changed", ch));
    }
    out.push_str(&format!(
        "\n{} regressions, {} fixed, {} other changes, {} unchanged\n",
        c.regressions.len(),
        c.fixes.len(),
        c.other_changes.len(),
        c.unchanged
    ));
    out
}
