//! Tenant isolation (issue 14, point 2): two tenants with their own keys
//! cannot read, change, run, cancel, list or follow each other's cards,
//! test cases, executions or evaluations; another tenant's ids answer 404,
//! exactly as unknown ids do.

use std::time::Duration;

use cardrun::progress::client::SocketClient;
use cardrun_tests::TestHost;
use cardrun_tests::fake_llm::FakeLlm;
use reqwest::Method;
use serde_json::{Value, json};

const EXEC: &str = "/api/parallel-test-execution";

/// A request as the holder of `key`; (status, body).
async fn call(host: &TestHost, key: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = host.client.request(method, host.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The next event named `name` (others skipped), within a few seconds.
async fn next_named(client: &mut SocketClient, name: &str) -> Value {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = client.next().await {
            if event.name == name {
                return event.data;
            }
        }
        Value::Null
    });
    found.await.unwrap_or_else(|_| panic!("no `{name}` event"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_see_or_touch_each_others_work() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), &fake.base_url(), 4).await;
    let store = host.app.engine.store().clone();
    for name in ["acme", "beta"] {
        cardrun::tenants::create_tenant(store.as_ref(), name).await.unwrap();
    }
    let acme = cardrun::tenants::create_key(store.as_ref(), "acme").await.unwrap().secret;
    let beta = cardrun::tenants::create_key(store.as_ref(), "beta").await.unwrap().secret;

    // acme's card, test case, execution and evaluation.
    let (status, card) = call(
        &host,
        &acme,
        Method::POST,
        "/api/prompt-cards",
        Some(json!({"title": "Mine", "prompt_template": "Say {{w}}"})),
    )
    .await;
    assert_eq!(status, 201, "{card}");
    let card = card["data"]["id"].as_i64().unwrap();
    let case = json!({"prompt_card_id": card, "name": "one", "input_variables": {"w": "hi"},
                      "assertions": [{"type": "contains", "value": "hi"}]});
    let (status, tc) = call(&host, &acme, Method::POST, "/api/test-cases", Some(case.clone())).await;
    assert_eq!(status, 201, "{tc}");
    let tc = tc["data"]["id"].as_i64().unwrap();
    let (status, queued) = call(
        &host,
        &acme,
        Method::POST,
        &format!("{EXEC}/queue"),
        Some(json!({"prompt_card_id": card, "model": "llama3"})),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let execution = queued["data"]["execution_id"].as_str().unwrap().to_string();
    let suite = "description: Shared title\nprompts: ['Say {{w}}']\ntests:\n  - vars: {w: hi}\n";
    let (status, started) =
        call(&host, &acme, Method::POST, "/api/evaluations", Some(json!({"suite": suite, "model": "llama3"}))).await;
    assert_eq!(status, 202, "{started}");
    let evaluation = started["data"]["evaluation_id"].as_str().unwrap().to_string();

    // beta: every one of acme's ids is a 404, whatever the verb.
    let unknown_card = 999_999;
    let (_, missing) = call(&host, &beta, Method::GET, &format!("/api/prompt-cards/{unknown_card}"), None).await;
    let theirs: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/prompt-cards/{card}"), None),
        (Method::GET, format!("/api/prompt-cards/{card}/export"), None),
        (Method::PUT, format!("/api/prompt-cards/{card}"), Some(json!({"title": "x", "prompt_template": "y"}))),
        (Method::DELETE, format!("/api/prompt-cards/{card}"), None),
        (Method::GET, format!("/api/test-cases?prompt_card_id={card}"), None),
        (Method::POST, "/api/test-cases".into(), Some(case.clone())),
        (Method::GET, format!("/api/test-cases/{tc}"), None),
        (Method::PUT, format!("/api/test-cases/{tc}"), Some(case.clone())),
        (Method::DELETE, format!("/api/test-cases/{tc}"), None),
        (Method::POST, format!("{EXEC}/queue"), Some(json!({"prompt_card_id": card, "model": "llama3"}))),
        (Method::GET, format!("{EXEC}/{execution}/progress"), None),
        (Method::GET, format!("{EXEC}/{execution}/results"), None),
        (Method::DELETE, format!("{EXEC}/{execution}"), None),
        (Method::GET, format!("/api/evaluations/{evaluation}"), None),
        (Method::GET, format!("/api/evaluations/{evaluation}/results"), None),
    ];
    for (method, path, body) in theirs {
        let (status, reply) = call(&host, &beta, method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {reply}");
        assert_eq!(reply["success"], false);
    }
    assert!(missing["error"].as_str().unwrap().contains("not found"), "{missing}");
    // A batch item naming acme's card fails alone, as an unknown card.
    let batch = json!({"executions": [{"prompt_card_id": card, "model": "llama3"}]});
    let (status, reply) = call(&host, &beta, Method::POST, &format!("{EXEC}/batch"), Some(batch)).await;
    assert_eq!((status, reply["data"]["results"][0]["status"].as_u64()), (202, Some(404)), "{reply}");

    // Lists hold only one's own.
    let (_, cards) = call(&host, &beta, Method::GET, "/api/prompt-cards", None).await;
    assert_eq!(cards["data"]["total"], 0, "{cards}");
    let (_, cards) = call(&host, &acme, Method::GET, "/api/prompt-cards", None).await;
    assert_eq!(cards["data"]["total"], 2, "{cards}");
    let (_, listed) = call(&host, &beta, Method::GET, &format!("{EXEC}/executions"), None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0, "{listed}");
    let (_, active) = call(&host, &beta, Method::GET, &format!("{EXEC}/active"), None).await;
    assert!(active["data"].as_array().unwrap().is_empty(), "{active}");
    let (_, listed) = call(&host, &acme, Method::GET, &format!("{EXEC}/executions"), None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "the queued one and the evaluation's pair: {listed}");

    // The same suite title imported by beta is beta's own card.
    let (status, imported) =
        call(&host, &beta, Method::POST, "/api/evaluations", Some(json!({"suite": suite, "model": "llama3"}))).await;
    assert_eq!(status, 202, "{imported}");
    let beta_card = imported["data"]["pairs"][0]["prompt_card_id"].as_i64().unwrap();
    let acme_card = started["data"]["pairs"][0]["prompt_card_id"].as_i64().unwrap();
    assert_ne!(beta_card, acme_card);

    // Socket.IO: beta cannot follow acme's execution; acme can.
    let mut watcher = SocketClient::connect_with_key(&host.base, Some(&beta)).await.expect("beta connects");
    watcher.emit("subscribe-test", &json!(execution)).unwrap();
    let refused = next_named(&mut watcher, "error").await;
    assert!(refused["message"].as_str().unwrap().contains("no execution"), "{refused}");
    let mut owner = SocketClient::connect_with_key(&host.base, Some(&acme)).await.expect("acme connects");
    owner.emit("subscribe-test", &json!(execution)).unwrap();
    let confirmed = next_named(&mut owner, "subscription-confirmed").await;
    assert_eq!(confirmed["execution_id"], execution.as_str());

    // acme still has everything.
    let (status, _) = call(&host, &acme, Method::GET, &format!("/api/test-cases/{tc}"), None).await;
    assert_eq!(status, 200);
    host.stop().await;
}
