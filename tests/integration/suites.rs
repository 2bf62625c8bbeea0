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
        let plan = Suite::parse(&text, &UploadedFiles::new(files).unwrap())
            .unwrap()
            .plan(|_| Ok::<(), std::convert::Infallible>(()))
            .unwrap();
        assert_eq!(plan.pairs.len(), expected.pairs, "{name}");
        let cards = reply["data"]["cards"].as_array().unwrap();
        assert_eq!(cards.len(), plan.cards.len(), "{name}");
        if !expected.labels.is_empty() {
            let labels: Vec<&str> = cards.iter().map(|c| c["label"].as_str().unwrap()).collect();
            assert_eq!(labels, expected.labels, "{name}");
        }
        // Per pair, each test's status.
        let mut per_pair: Vec<std::collections::BTreeMap<String, String>> = Vec::new();
        let (mut passed, mut failed, mut errors) = (0, 0, 0);
        for pair in &plan.pairs {
            let (c, provider) = (pair.card, &plan.providers[pair.provider]);
            let mut body = json!({"prompt_card_id": cards[c]["prompt_card"]["id"], "model": provider.id});
            if let Some(tests) = &pair.tests {
                let ids = cards[c]["test_case_ids"].as_array().unwrap();
                body["test_case_ids"] = tests.iter().map(|&n| ids[n].clone()).collect();
            }
            if !provider.options.is_default() {
                body["options"] = serde_json::to_value(&provider.options).unwrap();
            }
            let (status, reply) = host.post("/api/parallel-test-execution/queue", body).await;
            assert_eq!(status, 202, "{name}: {reply}");
            let id = reply["data"]["execution_id"].as_str().unwrap().to_string();
            host.wait_finished(&id).await;
            let results = host.results(&id).await;
            let mut statuses = std::collections::BTreeMap::new();
            for r in results["results"].as_array().unwrap() {
                let status = r["status"].as_str().unwrap().to_string();
                passed += usize::from(status == "passed");
                failed += usize::from(status == "failed");
                errors += usize::from(status == "error");
                statuses.insert(r["test_case_name"].as_str().unwrap().to_string(), status);
            }
            per_pair.push(statuses);
        }
        assert_eq!((passed, failed, errors), (expected.passed, expected.failed, expected.errors), "{name}");
        for (test, statuses) in &expected.verdicts {
            let got: Vec<&str> = per_pair.iter().map(|p| p.get(test).map_or("missing", String::as_str)).collect();
            assert_eq!(&got, statuses, "{name}: verdicts of `{test}`");
        }
    }
}

/// A chat prompt goes to Ollama's `/api/chat` as messages (and to
/// Anthropic's `/v1/messages` with its system message apart), a text prompt
/// under `ollama:chat:` as one user message and under `ollama:completion:`
/// to `/api/generate`; a provider's `config` arrives as options.
#[tokio::test]
async fn chat_prompts_and_provider_options_reach_the_model_server_as_written() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 4).await;
    let suite = r#"
description: chat and options
prompts:
  - raw: '[{"role": "system", "content": "Be {{tone}}."}, {"role": "user", "content": "Hi {{name}}"}]'
    label: chat
  - raw: "Plain {{name}}"
    label: plain
providers:
  - id: ollama:m
    config: { temperature: 0.25, num_predict: 12, stop: ["END"], seed: 5 }
    prompts: [chat]
  - { id: "ollama:chat:m", prompts: [plain] }
  - { id: "ollama:completion:m", prompts: [plain] }
  - { id: "anthropic:messages:claude-x", prompts: [chat] }
tests:
  - vars: { tone: brief, name: Ada }
"#;
    let (status, started) = host.post("/api/evaluations", json!({"suite": suite})).await;
    assert_eq!(status, 202, "{started}");
    let id = started["data"]["evaluation_id"].as_str().unwrap().to_string();
    assert_eq!(started["data"]["pairs"].as_array().unwrap().len(), 4);
    for pair in started["data"]["pairs"].as_array().unwrap() {
        host.wait_finished(pair["execution_id"].as_str().unwrap()).await;
    }
    let (_, progress) = host.get(&format!("/api/evaluations/{id}")).await;
    assert_eq!(progress["data"]["status"], "completed", "{progress}");
    let seen: Vec<_> =
        fake.seen().into_iter().filter(|s| s.body.get("messages").is_some() || s.body["prompt"] != "").collect();
    let chat = seen.iter().find(|s| s.body["messages"][0]["content"] == "Be brief.").expect("a chat request");
    assert_eq!(chat.path, "/api/chat");
    assert_eq!(chat.body["messages"][1], json!({"role": "user", "content": "Hi Ada"}));
    assert_eq!(chat.body["options"]["temperature"], 0.25, "{}", chat.body);
    assert_eq!(chat.body["options"]["num_predict"], 12);
    assert_eq!(chat.body["options"]["seed"], 5);
    let as_chat = seen.iter().find(|s| s.body["messages"][0]["content"] == "Plain Ada").expect("ollama:chat:");
    assert_eq!((as_chat.path.as_str(), &as_chat.body["messages"][0]["role"]), ("/api/chat", &json!("user")));
    assert!(seen.iter().any(|s| s.path == "/api/generate" && s.body["prompt"] == "Plain Ada"), "ollama:completion:");
    let claude = seen.iter().find(|s| s.path == "/v1/messages").expect("anthropic:messages:");
    assert_eq!((&claude.body["model"], &claude.body["system"]), (&json!("claude-x"), &json!("Be brief.")));
}

#[tokio::test]
async fn evaluation_requests_that_cannot_run_are_4xx_and_queue_nothing() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 4).await;
    let ok_suite = "prompts: ['x {{a}}']\ntests: [{vars: {a: 1}}]\n";
    for (body, status, needle) in [
        (json!({"suite": "prompts: ["}), 400, "YAML"),
        (json!({"suite": ok_suite}), 400, "names no providers"),
        (
            json!({"suite": "prompts: [file://p.txt]\nproviders: [echo:echo]\ntests: [{vars: {}}]"}),
            400,
            "`p.txt` does not exist",
        ),
        (json!({"suite": ok_suite, "model": "echo:echo", "files": {"../x": "y"}}), 400, "outside the suite's folder"),
        (json!({"suite": ok_suite, "model": "echo:echo", "colour": 1}), 400, "colour"),
    ] {
        let (got, reply) = host.post("/api/evaluations", body.clone()).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(needle), "{body}: {reply}");
    }
    // The second pair's model is unknown: the first pair is not left queued.
    let suite = "prompts: ['x {{a}}']\nproviders: [echo:echo, bard:x]\ntests: [{vars: {a: 1}}]\n";
    let (got, reply) = host.post("/api/evaluations", json!({"suite": suite})).await;
    assert_eq!(got, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("pair `bard:x`: unknown model adapter `bard`"), "{reply}");
    let (_, active) = host.get("/api/parallel-test-execution/active").await;
    assert_eq!(active["data"].as_array().map(Vec::len), Some(0), "{active}");
    let (got, _) = host.get("/api/evaluations/00000000-0000-4000-8000-000000000000/results").await;
    assert_eq!(got, 404);
    let (got, _) = host.get("/api/evaluations/not-a-uuid").await;
    assert_eq!(got, 400);
}

/// A suite and its files as `multipart/form-data`, as `curl -F` sends them.
#[tokio::test]
async fn a_suite_imports_as_multipart_with_its_files() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 4).await;
    let suite = "description: multipart\nprompts: [file://prompts/p.txt]\ntests: [file://cases.csv]\n";
    let part = |name: &str, file: Option<&str>, text: &str| {
        let filename = file.map_or_else(String::new, |f| format!("; filename=\"{f}\""));
        format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n{text}\r\n")
    };
    let import = |body: String| {
        host.client
            .post(host.url("/api/prompt-cards/import"))
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body(body)
            .send()
    };
    let body = [
        part("suite", Some("suite.yaml"), suite),
        part("file", Some("prompts/p.txt"), "Say {{w}}"),
        part("file", Some("cases.csv"), "w,__expected\nhi,Say hi\n"),
    ]
    .concat()
        + "--XyZ--\r\n";
    let resp = import(body).await.unwrap();
    let status = resp.status().as_u16();
    let reply: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{reply}");
    let card = &reply["data"]["cards"][0];
    assert_eq!(card["prompt_card"]["prompt_template"], "Say {{w}}");
    assert_eq!(card["label"], "prompts/p.txt");
    assert_eq!(card["test_case_ids"].as_array().unwrap().len(), 1);

    // Without the file, the reference is an error naming it.
    let body = part("suite", None, suite) + "--XyZ--\r\n";
    let resp = import(body).await.unwrap();
    assert_eq!(resp.status(), 400);
    let reply: serde_json::Value = resp.json().await.unwrap();
    assert!(reply["error"].as_str().unwrap().contains("`prompts/p.txt` does not exist"), "{reply}");
}

/// `files` (the suite as `suite.yaml` among them) as a tar.gz under `top`.
fn tar_gz(files: &std::collections::BTreeMap<String, String>, top: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, format!("{top}{path}"), text.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (path, text) in files {
        writer.start_file(*path, zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut writer, text.as_bytes()).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// A suite's folder uploaded as one archive imports as the same suite sent
/// as JSON; an archive that escapes its folder, holds no suite or is not an
/// archive is a 400 that says so.
#[tokio::test]
async fn a_suite_folder_imports_as_a_tar_gz_or_zip_archive() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), "http://127.0.0.1:9", 2).await;
    for name in ["14-tests-csv", "17-vars-from-files", "03-prompt-file-separated"] {
        let suite = corpus(&cardrun_tests::repo_root()).into_iter().find(|s| s.name == name).unwrap();
        let text = std::fs::read_to_string(suite.dir.join("suite.yaml")).unwrap();
        let (status, as_json) =
            host.post("/api/prompt-cards/import", json!({"suite": text, "files": suite.files()})).await;
        assert!(status == 200 || status == 201, "{name}: {as_json}");
        let mut files = suite.files();
        files.insert("suite.yaml".into(), text);
        let pairs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        for (content_type, archive) in
            [("application/gzip", tar_gz(&files, "my-suite/")), ("application/zip", zip_of(&pairs))]
        {
            let (status, reply) = host.post_typed("/api/prompt-cards/import", content_type, archive).await;
            assert!(status == 200 || status == 201, "{name} as {content_type}: {reply}");
            let count = |r: &serde_json::Value| r["data"]["cards"].as_array().unwrap().len();
            assert_eq!(count(&reply), count(&as_json), "{name} as {content_type}");
            // Label, template and number of test cases of each card.
            let cards = |r: &serde_json::Value| -> Vec<serde_json::Value> {
                let cards = r["data"]["cards"].as_array().unwrap().iter();
                cards
                    .map(|c| {
                        let cases = c["test_case_ids"].as_array().unwrap().len();
                        json!([c["label"], c["prompt_card"]["prompt_template"], cases])
                    })
                    .collect()
            };
            assert_eq!(cards(&reply), cards(&as_json), "{name} as {content_type}: {reply}");
        }
    }
    let refusals = [
        (zip_of(&[("suite.yaml", "prompts: [x]"), ("../escape.txt", "y")]), "outside the suite's folder"),
        (zip_of(&[("notes.txt", "y")]), "promptfooconfig.yaml"),
        (b"not a zip".to_vec(), "cannot be read"),
    ];
    for (body, needle) in refusals {
        let (status, reply) = host.post_typed("/api/prompt-cards/import", "application/zip", body).await;
        assert_eq!(status, 400, "{reply}");
        assert!(reply["error"].as_str().unwrap().contains(needle), "{needle}: {reply}");
    }
}
