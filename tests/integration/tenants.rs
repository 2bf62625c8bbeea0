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

/// Tenants `acme` and `beta` in `host`'s store, and a key of each.
async fn two_tenants(host: &TestHost) -> (String, String) {
    let store = host.app.engine.store().clone();
    for name in ["acme", "beta"] {
        cardrun::tenants::create_tenant(store.as_ref(), name).await.unwrap();
    }
    let acme = cardrun::tenants::create_key(store.as_ref(), "acme").await.unwrap().secret;
    let beta = cardrun::tenants::create_key(store.as_ref(), "beta").await.unwrap().secret;
    (acme, beta)
}

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

/// Emits `event` until an event named `answer` comes back (others
/// skipped), as a careful client does: socketioxide sends the connect ack
/// before the connection's listeners exist (its connect runs on a spawned
/// task), so under load an emit right after connecting can be dropped.
async fn ask(client: &mut SocketClient, event: &str, data: Value, answer: &str) -> Value {
    let mut seen = Vec::new();
    for _ in 0..5 {
        client.emit(event, &data).expect("emits");
        let waited = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(got) = client.next().await {
                if got.name == answer {
                    return Some(got.data);
                }
                seen.push(format!("{} {}", got.name, got.data));
            }
            None
        });
        if let Ok(Some(data)) = waited.await {
            return data;
        }
    }
    panic!("no `{answer}` after `{event}` five times; saw {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_see_or_touch_each_others_work() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), &fake.base_url(), 4).await;
    let (acme, beta) = two_tenants(&host).await;

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
    let refused = ask(&mut watcher, "subscribe-test", json!(execution), "error").await;
    assert!(refused["message"].as_str().unwrap().contains("no execution"), "{refused}");
    let mut owner = SocketClient::connect_with_key(&host.base, Some(&acme)).await.expect("acme connects");
    let confirmed = ask(&mut owner, "subscribe-test", json!(execution), "subscription-confirmed").await;
    assert_eq!(confirmed["execution_id"], execution.as_str());

    // acme still has everything.
    let (status, _) = call(&host, &acme, Method::GET, &format!("/api/test-cases/{tc}"), None).await;
    assert_eq!(status, 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_answer_429_with_retry_after_per_tenant() {
    let fake = FakeLlm::start().await;
    fake.set_latency(2_000);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), &fake.base_url(), 1);
    settings.quotas = cardrun::tenants::QuotaSettings {
        requests_per_second: 10,
        executions_per_minute: 3,
        max_queued_tests: 4,
        ..Default::default()
    };
    let host = TestHost::start_with_settings(settings).await;
    let (acme, beta) = two_tenants(&host).await;
    let over = |reply: &reqwest::Response| reply.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());

    // Requests: a burst of twice the rate, then 429 with Retry-After; the
    // other tenant is not affected.
    let mut refused = None;
    for _ in 0..40 {
        let reply = host.client.get(host.url("/api/prompt-cards")).bearer_auth(&acme).send().await.unwrap();
        if reply.status().as_u16() == 429 {
            refused = Some((over(&reply), reply.json::<Value>().await.unwrap()));
            break;
        }
    }
    let (retry_after, body) = refused.expect("a burst of 40 requests is refused at some point");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(body["error"].as_str().unwrap().contains("over 10 requests per second"), "{body}");
    let (status, _) = call(&host, &beta, Method::GET, "/api/prompt-cards", None).await;
    assert_eq!(status, 200, "beta has its own allowance");
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    // Queued tests: a card of 3 slow tests; the first run fits, the second
    // (3 already queued or running) still does, the third is refused.
    let body = json!({"title": "t", "prompt_template": "Say {{w}}"});
    let (_, card) = call(&host, &beta, Method::POST, "/api/prompt-cards", Some(body)).await;
    let card = card["data"]["id"].as_i64().unwrap();
    for w in ["a", "b", "c"] {
        let case = json!({"prompt_card_id": card, "name": w, "input_variables": {"w": w}});
        assert_eq!(call(&host, &beta, Method::POST, "/api/test-cases", Some(case)).await.0, 201);
    }
    let queue = json!({"prompt_card_id": card, "model": "llama3"});
    assert_eq!(call(&host, &beta, Method::POST, &format!("{EXEC}/queue"), Some(queue.clone())).await.0, 202);
    assert_eq!(call(&host, &beta, Method::POST, &format!("{EXEC}/queue"), Some(queue.clone())).await.0, 202);
    let reply =
        host.client.post(host.url(&format!("{EXEC}/queue"))).bearer_auth(&beta).json(&queue).send().await.unwrap();
    assert_eq!(reply.status().as_u16(), 429);
    assert_eq!(over(&reply).as_deref(), Some("30"));
    let body: Value = reply.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("6 tests queued or running"), "{body}");

    // Queue figures are each tenant's own, over REST and Socket.IO.
    let (_, stats) = call(&host, &beta, Method::GET, &format!("{EXEC}/queue/stats"), None).await;
    assert_eq!(stats["data"]["executions_in_queue"], 2, "{stats}");
    let in_flight = stats["data"]["waiting"].as_u64().unwrap() + stats["data"]["active"].as_u64().unwrap();
    assert!((1..=6).contains(&in_flight), "{stats}");
    let (_, stats) = call(&host, &acme, Method::GET, &format!("{EXEC}/queue/stats"), None).await;
    assert_eq!(
        (stats["data"]["executions_in_queue"].as_u64(), stats["data"]["waiting"].as_u64()),
        (Some(0), Some(0)),
        "{stats}"
    );
    for (key, executions) in [(&acme, 0), (&beta, 2)] {
        let mut client = SocketClient::connect_with_key(&host.base, Some(key)).await.expect("connects");
        let figures = ask(&mut client, "subscribe-queue-stats", json!({}), "queue-stats").await;
        assert_eq!(figures["executions_in_queue"], executions, "{figures}");
    }

    // Executions per minute: acme's fourth within the minute.
    let (_, card) =
        call(&host, &acme, Method::POST, "/api/prompt-cards", Some(json!({"title": "a", "prompt_template": "x"})))
            .await;
    let card = card["data"]["id"].as_i64().unwrap();
    let case = json!({"prompt_card_id": card, "name": "one", "input_variables": {}});
    call(&host, &acme, Method::POST, "/api/test-cases", Some(case)).await;
    let batch = json!({"executions": [{"prompt_card_id": card, "model": "llama3"}, {"prompt_card_id": card, "model": "llama3"}, {"prompt_card_id": card, "model": "llama3"}]});
    let (status, _) = call(&host, &acme, Method::POST, &format!("{EXEC}/batch"), Some(batch)).await;
    assert_eq!(status, 202);
    let queue = json!({"prompt_card_id": card, "model": "llama3"});
    let (status, body) = call(&host, &acme, Method::POST, &format!("{EXEC}/queue"), Some(queue)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("over 3 executions per minute"), "{body}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_tenant_does_not_hold_back_another_at_equal_priority() {
    let fake = FakeLlm::start().await;
    fake.set_latency(100);
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), &fake.base_url(), 4).await;
    let (acme, beta) = two_tenants(&host).await;
    let queue = |key: String, tests: usize| {
        let host = &host;
        async move {
            let body = json!({"title": "t", "prompt_template": "Say {{n}}"});
            let (_, card) = call(host, &key, Method::POST, "/api/prompt-cards", Some(body)).await;
            let card = card["data"]["id"].as_i64().unwrap();
            host.numbered_cases(card, tests, "Say").await;
            let request = json!({"prompt_card_id": card, "model": "llama3",
                                 "configuration": {"cache_enabled": false}});
            let (status, queued) = call(host, &key, Method::POST, &format!("{EXEC}/queue"), Some(request)).await;
            assert_eq!(status, 202, "{queued}");
            queued["data"]["execution_id"].as_str().unwrap().to_string()
        }
    };

    // acme floods first: three executions of 40 tests on 4 slots (each
    // execution may hold 2 of them while another waits). beta queues 4
    // tests behind all 120, at the same priority.
    let mut flood = Vec::new();
    for _ in 0..3 {
        flood.push(queue(acme.clone(), 40).await);
    }
    let small = queue(beta.clone(), 4).await;
    for _ in 0..400 {
        let (_, progress) = call(&host, &beta, Method::GET, &format!("{EXEC}/{small}/progress"), None).await;
        if progress["data"]["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut flood_done = 0;
    for id in &flood {
        let (_, progress) = call(&host, &acme, Method::GET, &format!("{EXEC}/{id}/progress"), None).await;
        flood_done += progress["data"]["completed_tests"].as_u64().unwrap();
    }
    let (_, progress) = call(&host, &beta, Method::GET, &format!("{EXEC}/{small}/progress"), None).await;
    assert_eq!(progress["data"]["status"], "completed", "{progress}");
    // Each slot acme frees goes to beta until beta holds as many: beta's
    // run is done within a couple of slot turnovers. Without fair share
    // between tenants it would start only once acme's first execution ran
    // out (over 70 of acme's tests).
    assert!(flood_done < 30, "acme finished {flood_done} of 120 tests before beta's 4");
    for id in &flood {
        call(&host, &acme, Method::POST, &format!("{EXEC}/{id}/cancel"), None).await;
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_has_its_own_plugins_and_type_names() {
    let dir = tempfile::tempdir().unwrap();
    let settings = || {
        let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), "http://127.0.0.1:9", 4);
        settings.quotas.plugins.max_plugins = 1;
        settings
    };
    let host = TestHost::start_with_settings(settings()).await;
    let (acme, beta) = two_tenants(&host).await;
    let upload = |key: &str, method: Method, path: &str, plugin: &str| {
        let request = host
            .client
            .request(method, host.url(path))
            .bearer_auth(key)
            .header("content-type", "application/wasm")
            .body(cardrun_tests::built_plugin(plugin));
        async move {
            let reply = request.send().await.unwrap();
            let status = reply.status().as_u16();
            let retry_after = reply.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (status, retry_after, reply.json::<Value>().await.unwrap())
        }
    };

    // Both claim `same-as-expected`: acme's checks the output, beta's
    // passes everything. Each is its tenant's own.
    let (status, _, trivial) = upload(&acme, Method::POST, "/api/plugins", "cardrun_test_trivial_assertion").await;
    assert_eq!(status, 201, "{trivial}");
    assert_eq!(trivial["data"]["shared"], false);
    let (status, _, impostor) = upload(&beta, Method::POST, "/api/plugins", "cardrun_test_impostor_assertion").await;
    assert_eq!(status, 201, "the same type name in another tenant: {impostor}");

    // Each tenant's run of the same test gets its own plugin's verdict.
    let verdict = |key: String| {
        let host = &host;
        async move {
            let body = json!({"title": "t", "prompt_template": "{{w}}"});
            let (_, card) = call(host, &key, Method::POST, "/api/prompt-cards", Some(body)).await;
            let card = card["data"]["id"].as_i64().unwrap();
            let case = json!({"prompt_card_id": card, "name": "one", "input_variables": {"w": "hi"},
                              "expected_output": "something else", "assertions": [{"type": "same-as-expected"}]});
            let (status, tc) = call(host, &key, Method::POST, "/api/test-cases", Some(case)).await;
            assert_eq!(status, 201, "{tc}");
            let request = json!({"prompt_card_id": card, "model": "echo:echo"});
            let (_, queued) = call(host, &key, Method::POST, &format!("{EXEC}/queue"), Some(request)).await;
            let id = queued["data"]["execution_id"].as_str().unwrap().to_string();
            for _ in 0..400 {
                let (_, results) = call(host, &key, Method::GET, &format!("{EXEC}/{id}/results"), None).await;
                if let Some(result) = results["data"]["results"].as_array().and_then(|r| r.first()) {
                    return result["assertion_results"][0].clone();
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("no result for {id}");
        }
    };
    let acme_verdict = verdict(acme.clone()).await;
    assert_eq!(
        (acme_verdict["passed"].as_bool(), acme_verdict["error"].as_str()),
        (Some(false), None),
        "{acme_verdict}"
    );
    let beta_verdict = verdict(beta.clone()).await;
    assert_eq!(beta_verdict["passed"], true, "{beta_verdict}");
    assert_eq!(beta_verdict["reason"], "impostor");

    // Each lists the shared plugins and its own; the other's names are 404.
    assert_eq!(own_plugins(&host, &acme).await, ["trivial"]);
    assert_eq!(own_plugins(&host, &beta).await, ["impostor"]);
    assert_eq!(call(&host, &beta, Method::DELETE, "/api/plugins/trivial", None).await.0, 404);
    let (status, _, _) = upload(&beta, Method::PUT, "/api/plugins/trivial", "cardrun_test_trivial_assertion").await;
    assert_eq!(status, 404, "replacing another tenant's plugin");
    let (_, health) = host.get("/health").await;
    assert!(!health.to_string().contains("same-as-expected"), "tenants' types are not public: {health}");

    // A tenant's plugin allowance (1 here): a second plugin is a 429.
    let (status, retry_after, body) =
        upload(&acme, Method::POST, "/api/plugins", "cardrun_test_hostile_assertion").await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.is_some());
    assert!(body["error"].as_str().unwrap().contains("TENANT_MAX_PLUGINS"), "{body}");

    // Deleting acme's plugin leaves beta's type in place.
    assert_eq!(call(&host, &acme, Method::DELETE, "/api/plugins/trivial", None).await.0, 200);
    let (_, card) =
        call(&host, &acme, Method::POST, "/api/prompt-cards", Some(json!({"title": "u", "prompt_template": "x"})))
            .await;
    let case = json!({"prompt_card_id": card["data"]["id"], "name": "n", "assertions": [{"type": "same-as-expected"}]});
    let (status, reply) = call(&host, &acme, Method::POST, "/api/test-cases", Some(case)).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(own_plugins(&host, &beta).await, ["impostor"]);
    assert_eq!(beta_verdict["passed"], verdict(beta.clone()).await["passed"]);

    // After a restart each tenant's plugin is back in its own namespace.
    host.stop().await;
    let host = TestHost::start_with_settings(settings()).await;
    assert_eq!(own_plugins(&host, &beta).await, ["impostor"]);
    assert!(own_plugins(&host, &acme).await.is_empty());
    host.stop().await;
}

/// The names of the plugins `key`'s tenant uploaded, as it lists them.
async fn own_plugins(host: &TestHost, key: &str) -> Vec<String> {
    let (_, list) = call(host, key, Method::GET, "/api/plugins", None).await;
    let mut names: Vec<String> = list["data"]["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["shared"] == false)
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_adapter_runs_with_a_secret_only_the_host_sees() {
    const SECRET: &str = "Bearer s3cret-of-acme-0123456789";
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 4).await;
    let (acme, beta) = two_tenants(&host).await;
    let openai = cardrun::sandbox::builtin::ADAPTERS.iter().find(|(n, _)| *n == "openai").unwrap().1.to_vec();
    let hostile = cardrun_tests::built_plugin("cardrun_test_hostile_adapter");
    let upload = |key: &str, manifest: Value, component: Vec<u8>| {
        // As `curl -F manifest=@adapter.json -F component=@adapter.wasm`.
        let boundary = "cardrun-test-boundary-5f0c2e9a";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{manifest}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"adapter.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&component);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = host
            .client
            .post(host.url("/api/plugins"))
            .bearer_auth(key)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body);
        async move {
            let reply = request.send().await.unwrap();
            (reply.status().as_u16(), reply.text().await.unwrap())
        }
    };
    let manifest = |name: &str| {
        json!({"name": name, "config": {"base_url": fake.base_url()}, "allowed_hosts": [fake.base_url()],
               "secret_headers": [{"name": "authorization", "value": SECRET}]})
    };

    // Refused with the reason: a manifest without hosts, an assertion
    // component where an adapter is expected, a built-in adapter's name.
    let (status, reply) = upload(&acme, json!({"name": "x", "allowed_hosts": []}), openai.clone()).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("allowed_hosts"), "{reply}");
    let assertion = cardrun_tests::built_plugin("cardrun_test_trivial_assertion");
    let (status, reply) = upload(&acme, manifest("wrong"), assertion).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("model-adapter"), "{reply}");
    let (status, reply) = upload(&acme, manifest("openai"), openai.clone()).await;
    assert_eq!(status, 409, "{reply}");

    // acme's adapter: the built-in OpenAI-compatible component under its
    // own name, with its own server and key.
    let (status, reply) = upload(&acme, manifest("acme-llm"), openai.clone()).await;
    assert_eq!(status, 201, "{reply}");
    assert!(!reply.contains("s3cret"), "the upload's reply names no secret: {reply}");
    let body: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(body["data"]["secret_headers"], json!(["authorization"]));
    let (_, list) = call(&host, &acme, Method::GET, "/api/plugins", None).await;
    assert!(!list.to_string().contains("s3cret"), "{list}");
    assert!(list["data"]["adapters"].as_array().unwrap().contains(&json!("acme-llm")), "{list}");
    let (_, others) = call(&host, &beta, Method::GET, "/api/plugins", None).await;
    assert!(!others.to_string().contains("acme-llm"), "beta does not see it: {others}");

    let run = |key: String, model: &'static str| {
        let host = &host;
        async move {
            let body = json!({"title": "t", "prompt_template": "Say {{w}}"});
            let (_, card) = call(host, &key, Method::POST, "/api/prompt-cards", Some(body)).await;
            let card = card["data"]["id"].as_i64().unwrap();
            let case = json!({"prompt_card_id": card, "name": "one", "input_variables": {"w": "hi"}});
            call(host, &key, Method::POST, "/api/test-cases", Some(case)).await;
            let request = json!({"prompt_card_id": card, "model": model});
            let (status, queued) = call(host, &key, Method::POST, &format!("{EXEC}/queue"), Some(request)).await;
            if status != 202 {
                return (status, queued);
            }
            let id = queued["data"]["execution_id"].as_str().unwrap().to_string();
            for _ in 0..400 {
                let (_, results) = call(host, &key, Method::GET, &format!("{EXEC}/{id}/results"), None).await;
                if results["data"]["results"].as_array().is_some_and(|r| !r.is_empty()) {
                    return (200, results["data"].clone());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("no result for {id}");
        }
    };
    let (status, results) = run(acme.clone(), "acme-llm:gpt-test").await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results["results"][0]["status"], "passed", "{results}");
    let seen = fake.seen();
    let request = seen.iter().find(|s| s.path == "/v1/chat/completions").expect("the adapter called its server");
    assert_eq!(request.authorization.as_deref(), Some(SECRET), "the host added the secret");
    assert!(!results.to_string().contains("s3cret"), "{results}");
    // Another tenant cannot use it, nor learn where it connects: the
    // host's figures list the built-in adapters' endpoints only.
    let (status, reply) = run(beta.clone(), "acme-llm:gpt-test").await;
    assert_eq!(status, 400, "{reply}");
    let endpoint = fake.base_url().trim_start_matches("http://").to_string();
    let (_, figures) = call(&host, &beta, Method::GET, &format!("{EXEC}/system/resources"), None).await;
    assert!(figures["data"]["model_endpoints"].is_array(), "{figures}");
    assert!(!figures.to_string().contains(&endpoint), "{figures}");

    // What the adapter itself is given holds no secret.
    let (status, reply) = upload(&acme, manifest("acme-probe"), hostile).await;
    assert_eq!(status, 201, "{reply}");
    let (_, results) = run(acme.clone(), "acme-probe:config").await;
    let output = results["results"][0]["llm_output"].as_str().unwrap_or_default().to_string();
    assert!(output.contains("config=") && output.contains("base_url"), "{results}");
    assert!(!output.contains("s3cret"), "the plugin's view: {output}");

    // Deleted: gone from the list and from planning.
    assert_eq!(call(&host, &acme, Method::DELETE, "/api/plugins/acme-llm", None).await.0, 200);
    let (status, _) = run(acme.clone(), "acme-llm:gpt-test").await;
    assert_eq!(status, 400);
    host.stop().await;
}
