//! Reports of `cardrun run` and `watch`: a terminal table, JSON, JUnit XML,
//! the progress bar, and the options that ask for them.

use cardrun::domain::{ResultSummary, TestResult, TestStatus};

use super::run::PairRun;
use cardrun::evaluation::EvaluationResults;

/// A plain-text table, one line per test, and a summary line.
pub fn table(results: &[(String, TestResult)]) -> String {
    let mut out = String::new();
    let width = results.iter().map(|(_, r)| r.test_case_name.chars().count()).max().unwrap_or(4).clamp(4, 48);
    out.push_str(&format!("{:<8} {:<width$} {:>8}  {}\n", "STATUS", "TEST", "TIME", "DETAIL"));
    for (_, r) in results {
        let detail = match r.status {
            TestStatus::Passed => {
                let mut d = String::new();
                if r.flaky {
                    d.push_str("flaky ");
                }
                if r.cache_hit {
                    d.push_str("cached");
                }
                d
            }
            _ => why_not_passed(r),
        };
        let name: String = r.test_case_name.chars().take(width).collect();
        let mut lines = wrap(&detail, DETAIL_WIDTH).into_iter();
        out.push_str(&format!(
            "{:<8} {:<width$} {:>6}ms  {}\n",
            r.status.as_str(),
            name,
            r.execution_time_ms,
            lines.next().unwrap_or_default()
        ));
        // Continuation lines start under DETAIL: the whole reason is shown.
        let indent = 8 + 1 + width + 1 + 8 + 2;
        for line in lines {
            out.push_str(&format!("{:indent$}{line}\n", ""));
        }
    }
    let plain: Vec<TestResult> = results.iter().map(|(_, r)| r.clone()).collect();
    let s = ResultSummary::of(&plain);
    out.push_str(&format!(
        "\n{} passed, {} failed, {} errors, {} skipped ({} tests)\n",
        s.passed_tests, s.failed_tests, s.error_tests, s.skipped_tests, s.total_tests
    ));
    let costs = plain.iter().flat_map(|r| [r.cost, r.grading.and_then(|g| g.cost)]).flatten();
    if let Some(cost) = costs.reduce(|a, b| a + b) {
        out.push_str(&format!("COST ${cost:.6}\n"));
    }
    for m in cardrun::evaluation::metrics(&plain) {
        out.push_str(&format!("METRIC {} {}/{} ({:.2})\n", m.name, m.passed, m.total, m.mean_score));
    }
    out
}

/// The test's error, else its first failed assertion.
fn why_not_passed(r: &TestResult) -> String {
    r.error
        .clone()
        .or_else(|| {
            r.assertion_results.iter().find(|a| !a.passed).map(|a| format!("{}: {}", a.assertion_type, a.reason))
        })
        .unwrap_or_default()
}

/// Characters of DETAIL per line before it wraps.
const DETAIL_WIDTH: usize = 100;

/// `s` on lines of at most `width` characters, broken at spaces where it
/// can be (a longer word is cut); control characters become spaces.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in flat.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let room = if used == 0 { width } else { width.saturating_sub(used + 1) };
            if word.len() <= room {
                if used > 0 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            let rest = word.split_off(width.max(1));
            lines.push(word.into_iter().collect());
            word = rest;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wraps_at_spaces_keeps_every_character_and_cuts_long_words() {
        assert_eq!(wrap("", 10), vec![""]);
        assert_eq!(wrap("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("x\ny", 10), vec!["x y"]);
        assert_eq!(wrap("abcdefghij k", 4), vec!["abcd", "efgh", "ij k"]);
        let long = "word ".repeat(60);
        let lines = wrap(&long, 100);
        assert!(lines.iter().all(|l| l.chars().count() <= 100));
        assert_eq!(lines.join(" "), long.trim_end());
    }
}

/// The comparison of a matrix run: one row per test, one column per
/// (prompt, provider) pair, a row of pass rates, the best pair marked;
/// then why each cell that did not pass did not.
pub fn matrix(summary: &EvaluationResults, runs: &[PairRun]) -> String {
    let name_width = summary.tests.iter().map(|t| t.name.chars().count()).max().unwrap_or(4).clamp(9, 40);
    let best = summary.best.as_deref();
    let headers: Vec<String> = summary
        .pairs
        .iter()
        .map(|p| if Some(p.label.as_str()) == best { format!("{} *", p.label) } else { p.label.clone() })
        .collect();
    let widths: Vec<usize> = headers.iter().map(|h| h.chars().count().clamp(12, 40)).collect();
    let cut = |s: &str, w: usize| -> String { s.chars().take(w).collect() };
    let mut out = format!("{:<name_width$}", "TEST");
    for (h, w) in headers.iter().zip(&widths) {
        out.push_str(&format!("  {:<w$}", cut(h, *w)));
    }
    out.push('\n');
    for row in &summary.tests {
        out.push_str(&format!("{:<name_width$}", cut(&row.name, name_width)));
        for (verdict, w) in row.verdicts.iter().zip(&widths) {
            let cell = verdict.map_or("-", |v| v.as_str());
            out.push_str(&format!("  {:<w$}", cell.to_uppercase()));
        }
        out.push('\n');
    }
    out.push_str(&format!("{:<name_width$}", "PASS RATE"));
    for (p, w) in summary.pairs.iter().zip(&widths) {
        let rate = format!("{:.0}% ({}/{})", p.pass_rate * 100.0, p.summary.passed_tests, p.summary.total_tests);
        out.push_str(&format!("  {rate:<w$}"));
    }
    out.push('\n');
    out.push_str(&format!("{:<name_width$}", "P50 / P95"));
    for (p, w) in summary.pairs.iter().zip(&widths) {
        let latency = format!("{} / {} ms", p.latency_p50_ms, p.latency_p95_ms);
        out.push_str(&format!("  {latency:<w$}"));
    }
    out.push('\n');
    if summary.pairs.iter().any(|p| p.cost_usd.is_some()) {
        out.push_str(&format!("{:<name_width$}", "COST"));
        for (p, w) in summary.pairs.iter().zip(&widths) {
            let cost = p.cost_usd.map_or_else(|| "unknown".to_string(), |c| format!("${c:.6}"));
            out.push_str(&format!("  {cost:<w$}"));
        }
        out.push('\n');
    }
    let mut names: Vec<&str> = summary.pairs.iter().flat_map(|p| p.metrics.iter().map(|m| m.name.as_str())).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        out.push_str(&format!("{:<name_width$}", cut(&format!("METRIC {name}"), name_width)));
        for (p, w) in summary.pairs.iter().zip(&widths) {
            let cell = p
                .metrics
                .iter()
                .find(|m| m.name == name)
                .map_or_else(|| "-".to_string(), |m| format!("{}/{} ({:.2})", m.passed, m.total, m.mean_score));
            out.push_str(&format!("  {cell:<w$}"));
        }
        out.push('\n');
    }
    if let Some(b) = summary.pairs.iter().find(|p| Some(p.label.as_str()) == best) {
        out.push_str(&format!(
            "\n* best: {} ({} of {} passed)\n",
            b.label, b.summary.passed_tests, b.summary.total_tests
        ));
    }
    let mut failures = String::new();
    for run in runs {
        for r in run.results.iter().filter(|r| r.status != TestStatus::Passed) {
            failures.push_str(&format!("{:<8} {} [{}]: ", r.status.as_str(), r.test_case_name, run.label));
            let mut lines = wrap(&why_not_passed(r), DETAIL_WIDTH).into_iter();
            failures.push_str(&lines.next().unwrap_or_default());
            failures.push('\n');
            for line in lines {
                failures.push_str(&format!("{:9}{line}\n", ""));
            }
        }
    }
    if !failures.is_empty() {
        out.push_str("\nNot passed:\n");
        out.push_str(&failures);
    }
    let all: Vec<TestResult> = runs.iter().flat_map(|p| p.results.iter().cloned()).collect();
    let s = ResultSummary::of(&all);
    out.push_str(&format!(
        "\n{} passed, {} failed, {} errors, {} skipped ({} tests in {} pairs)\n",
        s.passed_tests,
        s.failed_tests,
        s.error_tests,
        s.skipped_tests,
        s.total_tests,
        runs.len()
    ));
    out
}

/// The JSON report: the evaluation's comparison (pairs with pass rates,
/// latencies and tokens, each test's verdicts, the best pair: what the
/// table shows and `/api/evaluations/{id}/results` returns), the overall
/// summary, and every result with its pair.
pub fn json(suite: &str, summary: &EvaluationResults, runs: &[PairRun]) -> anyhow::Result<String> {
    let all: Vec<TestResult> = runs.iter().flat_map(|p| p.results.iter().cloned()).collect();
    let report = JsonReport {
        suite,
        model: summary.pairs.first().map_or("", |p| p.model.as_str()),
        summary: ResultSummary::of(&all),
        evaluation: summary,
        results: runs
            .iter()
            .flat_map(|p| {
                p.results.iter().map(move |r| JsonResult { pair: &p.label, prompt_card: &p.card_title, result: r })
            })
            .collect(),
    };
    Ok(serde_json::to_string_pretty(&report)?)
}

#[derive(serde::Serialize)]
struct JsonReport<'a> {
    suite: &'a str,
    /// The first pair's model (the only one without a matrix).
    model: &'a str,
    summary: ResultSummary,
    /// `best`, `pairs` and `tests` at the top level, as the API has them.
    #[serde(flatten)]
    evaluation: &'a EvaluationResults,
    results: Vec<JsonResult<'a>>,
}

#[derive(serde::Serialize)]
struct JsonResult<'a> {
    pair: &'a str,
    prompt_card: &'a str,
    result: &'a TestResult,
}

/// JUnit XML: one `testsuite` per pair, one `testcase` per test.
pub fn junit(suite_name: &str, pairs: &[PairRun]) -> String {
    let all: Vec<TestResult> = pairs.iter().flat_map(|p| p.results.iter().cloned()).collect();
    let all = ResultSummary::of(&all);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">\n",
        escape(if suite_name.is_empty() { "cardrun" } else { suite_name }),
        all.total_tests,
        all.failed_tests,
        all.error_tests,
        all.skipped_tests + all.cancelled_tests
    ));
    for pair in pairs {
        let name = if pairs.len() == 1 { &pair.card_title } else { &pair.label };
        let s = ResultSummary::of(&pair.results);
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">\n",
            escape(name),
            s.total_tests,
            s.failed_tests,
            s.error_tests,
            s.skipped_tests + s.cancelled_tests,
            s.total_execution_time as f64 / 1000.0
        ));
        for r in &pair.results {
            xml.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\">",
                escape(&r.test_case_name),
                escape(name),
                r.execution_time_ms as f64 / 1000.0
            ));
            let why = why_not_passed(r);
            match r.status {
                TestStatus::Passed => {}
                TestStatus::Failed => xml.push_str(&format!(
                    "\n      <failure message=\"{}\">{}</failure>\n    ",
                    escape(&why),
                    escape(&format!("output: {}", r.llm_output))
                )),
                TestStatus::Error => xml.push_str(&format!("\n      <error message=\"{}\"/>\n    ", escape(&why))),
                TestStatus::Skipped | TestStatus::Cancelled => {
                    xml.push_str(&format!("\n      <skipped message=\"{}\"/>\n    ", escape(&why)))
                }
            }
            xml.push_str("</testcase>\n");
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Escapes text for XML attributes and content; drops characters XML 1.0
/// cannot hold.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

/// The report options of `run` and `watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Write every result as JSON to this file.
    #[arg(long)]
    pub output: Option<std::path::PathBuf>,
    /// Write a JUnit XML report to this file (for CI).
    #[arg(long)]
    pub junit: Option<std::path::PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// Fails unless `path` can be written (its folder exists and the file can
/// be created), so that a bad path is found before a run, not after it.
/// Leaves no file behind that was not there.
pub fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The progress bar of `run` and `watch` (hidden with `--quiet` or when
/// stderr is not a terminal).
pub fn progress_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}
