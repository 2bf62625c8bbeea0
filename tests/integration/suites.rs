//! The `tests/suites/` corpus through the import API: each suite goes up
//! as JSON `{suite, files}`, its cards are run for every (prompt, provider)
//! pair over the queue API, and the counts and verdicts must be those the
//! CLI gets. An invalid suite is a 400 naming every problem.

use cardrun::suite::{Suite, UploadedFiles};
use cardrun_tests::TestHost;
use cardrun_tests::corpus::corpus;
use cardrun_tests::fake_llm::FakeLlm;
use serde_json::json;

#[tokio::test]
async fn every_suite_of_the_corpus_imports_and_runs_as_expected_through_the_api() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 8).await;
    let corpus = corpus(&cardrun_tests::repo_root());
    assert!(corpus.len() >= 20);
    for suite in corpus {
        let (name, expected) = (&suite.name, &suite.expected);
        let text = std::fs::read_to_string(suite.dir.join("suite.yaml")).unwrap();
        let files = suite.files();
        let (status, reply) = host.post("/api/prompt-cards/import", json!({"suite": text, "files": files})).await;
        if !expected.invalid.is_empty() {
            assert_eq!(status, 400, "{name}: {reply}");
            let error = reply["error"].as_str().unwrap();
            for needle in &expected.invalid {
                assert!(error.contains(needle), "{name}: `{needle}` not in {error}");
            }
            continue;
        }
        assert!(status == 201 || status == 200, "{name}: {reply}");
        // The pairs, as the suite's plan (which the CLI runs) has them.
        let plan = Suite::parse(&text, &UploadedFiles::new(files).unwrap()).unwrap().plan(|_| Ok(())).unwrap();
        assert_eq!(plan.pairs.len(), expected.pairs, "{name}");
        let cards = reply["data"]["cards"].as_array().unwrap();
        assert_eq!(cards.len(), plan.cards.len(), "{name}");
        if !expected.labels.is_empty() {
            let labels: Vec<&str> = cards.iter().map(|c| c["label"].as_str().unwrap()).collect();
            assert_eq!(labels, expected.labels, "{name}");
        }
        let mut verdicts: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let (mut passed, mut failed) = (0, 0);
        for &(c, p) in &plan.pairs {
            let provider = &plan.providers[p];
            let mut body = json!({"prompt_card_id": cards[c]["prompt_card"]["id"], "model": provider.id});
            if !provider.options.is_default() {
                body["options"] = serde_json::to_value(&provider.options).unwrap();
            }
            let (status, reply) = host.post("/api/parallel-test-execution/queue", body).await;
            assert_eq!(status, 202, "{name}: {reply}");
            let id = reply["data"]["execution_id"].as_str().unwrap().to_string();
            host.wait_finished(&id).await;
            let results = host.results(&id).await;
            for r in results["results"].as_array().unwrap() {
                let status = r["status"].as_str().unwrap().to_string();
                passed += usize::from(status == "passed");
                failed += usize::from(status == "failed");
                verdicts.entry(r["test_case_name"].as_str().unwrap().to_string()).or_default().push(status);
            }
        }
        assert_eq!((passed, failed), (expected.passed, expected.failed), "{name}");
        for (test, statuses) in &expected.verdicts {
            assert_eq!(verdicts.get(test), Some(statuses), "{name}: verdicts of `{test}`");
        }
    }
}
