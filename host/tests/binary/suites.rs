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
    assert_eq!(report["summary"]["error_tests"], expected.errors, "{name}: errors");
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

/// Runs `suite` with `cardrun run --output`, returning the report.
fn run_report(suite: &Path, out: &Path) -> Value {
    let run = cardrun().arg("run").arg(suite).arg("--output").arg(out).output().unwrap();
    assert!(run.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// Starts an evaluation of `suite` (YAML) on `server` and waits for it.
async fn evaluate(server: &crate::support::Server, suite: &str) -> (String, Value) {
    let started = server.post("/api/evaluations", serde_json::json!({"suite": suite})).await;
    let id = started["data"]["evaluation_id"].as_str().unwrap().to_string();
    for _ in 0..1200 {
        let progress = server.get(&format!("/api/evaluations/{id}")).await;
        if progress["data"]["status"] == "completed" {
            assert_eq!(progress["data"]["percent"], 100.0);
            let results = server.get(&format!("/api/evaluations/{id}/results")).await["data"].clone();
            return (id, results);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("evaluation {id} did not finish: {}", server.log_text());
}

#[tokio::test]
async fn the_matrix_table_json_and_api_agree_and_compare_finds_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    let source = repo().join("tests/suites/11-matrix-2x3/suite.yaml");
    let before = std::fs::read_to_string(&source).unwrap();
    // The same suite where `tell · echo:echo` no longer passes `mentions the animal`.
    let after = before.replace("  - echo:echo\n", "  - { id: echo:lower, label: echo:echo }\n").replace(
        "assert: [{ type: icontains, value: owl }]",
        "assert: [{ type: icontains, value: owl }, { type: not-contains, value: tell me }]",
    );
    assert_ne!(before, after);
    let (suite_a, suite_b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&suite_a, &before).unwrap();
    std::fs::write(&suite_b, &after).unwrap();
    let (json_a, json_b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let report_a = run_report(&suite_a, &json_a);
    run_report(&suite_b, &json_b);

    // The API gives the comparison the CLI's JSON has.
    let server = crate::support::Server::start(
        &dir.path().join("db.sqlite"),
        "http://127.0.0.1:9",
        dir.path().join("serve.log"),
    )
    .await;
    let (id_a, api_a) = evaluate(&server, &before).await;
    assert_eq!(api_a["pairs"].as_array().unwrap().len(), 6);
    assert_eq!(api_a["best"], report_a["best"]);
    assert_eq!(api_a["tests"], report_a["tests"]);
    for (api, cli) in api_a["pairs"].as_array().unwrap().iter().zip(report_a["pairs"].as_array().unwrap()) {
        for key in ["label", "prompt", "provider", "model", "passed_tests", "total_tests", "pass_rate", "prompt_tokens"]
        {
            assert_eq!(api[key], cli[key], "{key}");
        }
    }

    // `compare`: one regression each way it is asked.
    let out = cardrun().arg("compare").arg(&json_a).arg(&json_b).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("REGRESSION  mentions the animal [tell · echo:echo]: passed -> failed"), "{stdout}");
    assert!(stdout.contains("1 regressions"), "{stdout}");
    let same = cardrun().arg("compare").arg(&json_a).arg(&json_a).output().unwrap();
    assert_eq!(same.status.code(), Some(0));
    let missing = cardrun().arg("compare").arg(&json_a).arg(dir.path().join("none.json")).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));

    let (id_b, _) = evaluate(&server, &after).await;
    let compared = server.get(&format!("/api/evaluations/{id_a}/compare/{id_b}")).await["data"].clone();
    let regressions = compared["regressions"].as_array().unwrap();
    assert_eq!(regressions.len(), 1, "{compared}");
    assert_eq!(regressions[0]["pair"], "tell · echo:echo");
    assert_eq!(regressions[0]["test"], "mentions the animal");
    let unknown = reqwest::get(format!("{}/api/evaluations/{}", server.base, uuid_like())).await.unwrap();
    assert_eq!(unknown.status(), 404);
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}
