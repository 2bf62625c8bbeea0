//! `cardrun run` with model-graded assertions: the grader from `--grader`
//! or `DEFAULT_GRADER`, refused up front without one, and the cost and
//! metric rows of the comparison table.

use crate::fake_llm::FakeLlm;
use crate::support::cardrun;

const SUITE: &str = "prompts: ['{{a}}']
providers:
  - {id: ollama:m, config: {cost: 0.001}}
tests:
  - description: polite
    vars: {a: 'Thank you kindly [[grade:pass]]'}
    assert: [{type: llm-rubric, value: is polite, metric: tone}, {type: cost, value: 0.05}]
  - description: rude
    vars: {a: 'Go away [[grade:fail]]'}
    assert: [{type: llm-rubric, value: is polite, metric: tone}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_grades_with_the_grader_flag_or_default_grader_and_refuses_without_one() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(&suite, SUITE).unwrap();
    let run = |grader_flag: bool, default_grader: Option<&str>| {
        let mut cmd = cardrun();
        cmd.arg("run").arg(&suite).env("OLLAMA_BASE_URL", fake.base_url()).env_remove("DEFAULT_GRADER");
        if grader_flag {
            cmd.args(["--grader", "ollama:judge"]);
        }
        if let Some(model) = default_grader {
            cmd.env("DEFAULT_GRADER", model);
        }
        async move { tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap() }
    };

    let out = run(true, None).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "one test fails: {stdout}\n{stderr}");
    assert!(stdout.contains("METRIC tone 1/2 (0.50)"), "{stdout}");
    assert!(stdout.contains("COST $0.0"), "{stdout}");
    let judged = fake.seen().into_iter().filter(|s| s.body["model"] == "judge").count();
    assert_eq!(judged, 2, "one grading per test, to the --grader model");

    let out = run(false, Some("ollama:judge")).await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));

    let out = run(false, None).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("asks a grader model") && stderr.contains("--grader"), "{stderr}");

    let out = {
        let mut cmd = cardrun();
        cmd.arg("run").arg(&suite).env("OLLAMA_BASE_URL", fake.base_url()).args(["--grader", "bard:x"]);
        tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--grader") && stderr.contains("bard"), "{stderr}");
}

/// `cardrun run` decides `select-best` once every pair has run, before it
/// prints the table and writes the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_decides_select_best_across_the_pairs() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        "prompts: ['Say {{w}}']\nproviders: [echo:echo, echo:upper, echo:reverse]\n\
         tests:\n  - description: loudest\n    vars: {w: hi}\n    assert: [{type: select-best, value: 'the loudest [[grade:best=1]]'}]\n",
    )
    .unwrap();
    let report = dir.path().join("report.json");
    let mut cmd = cardrun();
    cmd.arg("run").arg(&suite).arg("--output").arg(&report).args(["--grader", "ollama:judge"]);
    cmd.env("OLLAMA_BASE_URL", fake.base_url());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "two pairs were not chosen: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let statuses: Vec<&str> =
        report["results"].as_array().unwrap().iter().map(|r| r["result"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "passed", "failed"], "{report}");
    assert_eq!(report["best"], "echo:upper", "{report}");
    assert_eq!(fake.seen().into_iter().filter(|s| s.body["model"] == "judge").count(), 1);
}
