//! The OpenAPI document (issue 14): an OpenAPI 3.1 document that the
//! reference validator accepts, listing exactly the routes the router
//! serves, each with its request and response schemas.

use std::collections::BTreeSet;

use cardrun_tests::TestHost;
use cardrun_tests::js::{ensure_packages, js_dir};
use cardrun_tests::routes::ROUTES;
use serde_json::Value;

async fn document() -> (TestHost, tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 2).await;
    let response = host.client.get(host.url("/api/openapi.json")).send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(kind.starts_with("application/json"), "{kind}");
    let doc: Value = response.json().await.expect("JSON");
    (host, dir, doc)
}

/// (method, path) of every operation, path parameters renamed to `{id}`
/// and `{other}` as the route list writes them.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let mut n = 0;
        let normalised: Vec<String> = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    n += 1;
                    if n == 1 { "{id}".to_string() } else { "{other}".to_string() }
                } else {
                    segment.to_string()
                }
            })
            .collect();
        for method in item.as_object().expect("path item").keys() {
            found.insert((method.to_uppercase(), normalised.join("/")));
        }
    }
    found
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let (host, dir, doc) = document().await;
    assert!(doc["openapi"].as_str().unwrap_or_default().starts_with("3.1"), "{}", doc["openapi"]);
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    ensure_packages();
    let output = std::process::Command::new("node")
        .arg(js_dir().join("openapi.mjs"))
        .arg(&file)
        .current_dir(js_dir())
        .output()
        .expect("node runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let verdict: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(verdict["valid"], true, "{:#}", verdict["errors"]);
    assert_eq!(verdict["version"], "3.1");
    host.stop().await;
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let (host, _dir, doc) = document().await;
    let documented = operations(&doc);
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|(_, path)| *path != "/api/no-such-route")
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "undocumented {undocumented:?}, not in the list {unserved:?}"
    );
    // Every documented operation reaches a handler: never the router's
    // "no such route" nor a 405.
    for (method, path) in &documented {
        let url = host.url(&path.replace("{id}", "1").replace("{other}", "2"));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = host.client.request(method.clone(), url).send().await.expect("sent");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(!body.contains("no such route"), "{method} {path} is not routed: {body}");
    }
    host.stop().await;
}

#[tokio::test]
async fn every_operation_has_its_request_and_response_schemas() {
    let (host, _dir, doc) = document().await;
    let schemas = doc["components"]["schemas"].as_object().expect("component schemas");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let place = format!("{method} {path}");
            assert!(op["summary"].is_string() || op["description"].is_string(), "{place}: no description");
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{place}: no responses"));
            let success = responses
                .iter()
                .find(|(code, _)| code.starts_with('2'))
                .unwrap_or_else(|| panic!("{place}: no 2xx response"));
            let content = success.1["content"].as_object().unwrap_or_else(|| panic!("{place}: 2xx has no content"));
            // Every JSON reply but the document itself has its schema.
            let typed = path != "/api/openapi.json";
            if let Some(json) = content.get("application/json").filter(|_| typed) {
                assert!(json["schema"].is_object(), "{place}: the JSON reply has no schema");
            }
            let takes_input =
                op["parameters"].as_array().is_some_and(|p| !p.is_empty()) || op["requestBody"].is_object();
            if path.starts_with("/api/") && takes_input {
                let refusal = responses.iter().find(|(code, _)| code.starts_with('4'));
                let refusal = refusal.unwrap_or_else(|| panic!("{place}: no 4xx response"));
                let schema = &refusal.1["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{place}");
            }
            if method == "post" || method == "put" {
                let body = op["requestBody"]["content"].as_object();
                assert!(body.is_some_and(|c| !c.is_empty()), "{place}: no request body");
            }
        }
    }
    // Schemas that requests and replies name are defined.
    let text = doc.to_string();
    for name in ["PromptCard", "TestCase", "ExecutionRequest", "ExecutionProgress", "TestResult", "ErrorBody"] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap_or_default();
        assert!(schemas.contains_key(name), "`{name}` is referenced but not defined");
    }
    host.stop().await;
}
