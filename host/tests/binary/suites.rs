//! The `tests/suites/` corpus through `cardrun run`: each suite's result
//! counts, verdicts per pair and prompt labels, or for an invalid suite
//! every expected problem in one report and exit code 2.

use std::path::Path;

use serde_json::Value;

use crate::corpus::{Expected, corpus};
use crate::support::{cardrun, repo};

fn check_report(name: &str, report: &Value, expected: &Expected) {
    let pairs = report["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), expected.pairs, "{name}: pairs");
    assert_eq!(report["summary"]["passed_tests"], expected.passed, "{name}: passed");
    assert_eq!(report["summary"]["failed_tests"], expected.failed, "{name}: failed");
    assert_eq!(report["summary"]["error_tests"], 0, "{name}: errors");
    let results = report["results"].as_array().unwrap();
    for (test, statuses) in &expected.verdicts {
        let got: Vec<&str> = pairs
            .iter()
            .map(|p| {
                results
                    .iter()
                    .find(|r| r["pair"] == p["label"] && r["result"]["test_case_name"] == test.as_str())
                    .map_or("missing", |r| r["result"]["status"].as_str().unwrap())
            })
            .collect();
        assert_eq!(got, *statuses, "{name}: verdicts of `{test}`");
    }
    if !expected.labels.is_empty() {
        let mut labels: Vec<&str> = pairs.iter().map(|p| p["prompt"].as_str().unwrap()).collect();
        labels.dedup();
        assert_eq!(labels, expected.labels, "{name}: prompt labels");
    }
}

#[test]
fn every_suite_of_the_corpus_runs_as_expected_through_the_cli() {
    let corpus = corpus(&repo());
    assert!(corpus.len() >= 20, "the corpus has {} suites", corpus.len());
    let out_dir = tempfile::tempdir().unwrap();
    for suite in corpus {
        let (name, dir, expected) = (suite.name, suite.dir, suite.expected);
        let json = out_dir.path().join(format!("{name}.json"));
        let out = cardrun().arg("run").arg(dir.join("suite.yaml")).arg("--output").arg(&json).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !expected.invalid.is_empty() {
            assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
            for needle in &expected.invalid {
                assert!(stderr.contains(needle), "{name}: `{needle}` not in {stderr}");
            }
            assert!(!Path::new(&json).exists(), "{name}: an invalid suite wrote results");
            continue;
        }
        let code = if expected.failed == 0 { 0 } else { 1 };
        assert_eq!(out.status.code(), Some(code), "{name}: {stderr}\n{}", String::from_utf8_lossy(&out.stdout));
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        check_report(&name, &report, &expected);
        if expected.pairs > 1 {
            // The table agrees with the JSON: its pass-rate row and best pair.
            let stdout = String::from_utf8_lossy(&out.stdout);
            let best = report["best"].as_str().unwrap();
            assert!(stdout.contains(&format!("* best: {best} (")), "{name}: {stdout}");
            assert!(stdout.contains("PASS RATE"), "{name}: {stdout}");
        }
    }
}
