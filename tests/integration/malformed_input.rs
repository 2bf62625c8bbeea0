//! Malformed input to every route (issue 14, "input that cannot hurt"): a
//! property test over real HTTP. Whatever the method, path, query, content
//! type and body, the host never answers 5xx, every refusal under `/api`
//! is the error envelope with a message, and the host still serves
//! afterwards. Bounded: a fixed number of generated requests (proptest
//! shrinks a failure to the smallest request that shows it).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use cardrun_tests::TestHost;
use cardrun_tests::fake_llm::FakeLlm;
use cardrun_tests::routes::ROUTES;

/// Requests generated per run; each is one real HTTP round trip.
const CASES: u32 = 1_500;

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "text/plain",
    "application/wasm",
    "multipart/form-data; boundary=x",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
];

/// Ids the host knows, so that generated requests reach past the lookups.
#[derive(Debug, Clone)]
struct Known {
    card: i64,
    case: i64,
    execution: String,
}

#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Numbers at and past every boundary a parser or an SQL cast has.
fn extreme_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just(i64::MAX.to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1e308".to_string()),
        Just("NaN".to_string()),
        Just("".to_string()),
    ]
}

fn segment(known: &Known) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(known.card.to_string()),
        Just(known.case.to_string()),
        Just(known.execution.clone()),
        Just(uuid::Uuid::nil().to_string()),
        Just("contains".to_string()),
        extreme_number(),
        "\\PC{0,24}".prop_map(|s| percent_encode(&s)),
        Just("%00".to_string()),
        Just("..%2F..%2Fetc%2Fpasswd".to_string()),
        "[a-z]{300}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("page"),
        Just("limit"),
        Just("offset"),
        Just("search"),
        Just("prompt_card_id"),
        Just("unknown")
    ];
    let value = prop_oneof![extreme_number(), "\\PC{0,16}".prop_map(|s| percent_encode(&s))];
    prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        if pairs.is_empty() {
            return String::new();
        }
        let joined: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("?{}", joined.join("&"))
    })
}

/// Any JSON, with the awkward leaves over-represented.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(json!(1e308)),
        Just(json!(-0.5)),
        "\\PC{0,20}".prop_map(Value::String),
        Just(Value::String("(unclosed".into())),
        Just(Value::String("{{ x ".into())),
        Just(Value::String("x".repeat(70_000))),
    ];
    leaf.prop_recursive(4, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies the routes accept, to be broken one field at a time.
fn valid_bodies(known: &Known) -> Vec<Value> {
    let suite = "prompts: ['Say {{n}}']\nproviders: [echo]\ntests:\n  - vars: {n: 1}\n    assert: [{type: contains, value: '1'}]\n";
    vec![
        json!({"title": "t", "prompt_template": "Say {{n}}"}),
        json!({"prompt_card_id": known.card, "name": "n", "input_variables": {"n": 1},
               "assertions": [{"type": "contains", "value": "1"}]}),
        json!({"prompt_card_id": known.card, "model": "llama3",
               "configuration": {"max_concurrent_tests": 2, "timeout_per_test": 5000}}),
        json!({"executions": [{"prompt_card_id": known.card, "model": "llama3"}]}),
        json!({"suite": suite, "model": "echo"}),
    ]
}

fn mutated_json(known: &Known) -> impl Strategy<Value = Vec<u8>> {
    let bodies = valid_bodies(known);
    (prop::sample::select(bodies), prop::sample::select(FIELDS), any_json(), 0..4u8).prop_map(
        |(mut body, field, value, how)| {
            if let Some(object) = body.as_object_mut() {
                match how {
                    0 => {
                        object.insert(field.to_string(), value);
                    }
                    1 => {
                        object.remove(field);
                    }
                    // Left valid: requests that get past every check.
                    2 => {}
                    _ => {
                        // One level down: a field of the first assertion,
                        // configuration or execution.
                        for nested in object.values_mut() {
                            let target = match nested {
                                Value::Array(items) => items.first_mut(),
                                other => Some(other),
                            };
                            if let Some(Value::Object(inner)) = target {
                                inner.insert(field.to_string(), value);
                                break;
                            }
                        }
                    }
                }
            }
            serde_json::to_vec(&body).unwrap_or_default()
        },
    )
}

const FIELDS: &[&str] = &[
    "title",
    "prompt_template",
    "variables",
    "prompt_card_id",
    "name",
    "input_variables",
    "expected_output",
    "assertions",
    "threshold",
    "type",
    "value",
    "weight",
    "model",
    "configuration",
    "max_concurrent_tests",
    "timeout_per_test",
    "max_retries",
    "resource_limits",
    "priority",
    "test_case_ids",
    "options",
    "executions",
    "suite",
    "files",
];

/// YAML that attacks the parser: aliases that expand exponentially, deep
/// nesting, and text that is not YAML at all.
fn hostile_yaml() -> impl Strategy<Value = Vec<u8>> {
    let laughs = {
        let mut doc = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (i, name) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
            let prev = ["a", "b", "c", "d", "e", "f", "g", "h"][i];
            doc.push_str(&format!(
                "{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
        }
        doc.push_str("prompts: *i\n");
        doc
    };
    prop_oneof![
        Just(laughs.into_bytes()),
        (1usize..20_000).prop_map(|depth| format!("prompts: {}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        (1usize..5_000).prop_map(|depth| "- ".repeat(depth).into_bytes()),
        "\\PC{0,200}".prop_map(String::into_bytes),
    ]
}

fn body(known: &Known) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..256),
        any_json().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        mutated_json(known),
        mutated_json(known),
        hostile_yaml(),
        hostile_yaml()
            .prop_map(|yaml| serde_json::to_vec(&json!({"suite": String::from_utf8_lossy(&yaml)})).unwrap_or_default()),
        (1usize..50_000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
    ]
}

fn request(known: &Known) -> impl Strategy<Value = Request> {
    // Mostly a route's own method; sometimes any method on any route.
    let route = prop_oneof![
        4 => prop::sample::select(ROUTES),
        1 => (prop::sample::select(METHODS), prop::sample::select(ROUTES)).prop_map(|(m, (_, path))| (m, path)),
    ];
    (
        route,
        segment(known),
        segment(known),
        query(),
        prop_oneof![
            3 => Just(Some("application/json")),
            2 => prop::sample::select(CONTENT_TYPES).prop_map(Some),
            1 => Just(None),
        ],
        body(known),
    )
        .prop_map(|((method, route), id, other, query, content_type, body)| Request {
            method,
            path: format!("{}{query}", route.replace("{id}", &id).replace("{other}", &other)),
            content_type,
            body,
        })
}

/// Sends one request on a connection of its own (a refused body may leave
/// a kept-alive connection unusable, which is the client's to notice, not
/// what this test is about); (status, body).
async fn send(client: &reqwest::Client, host: &TestHost, r: &Request) -> Result<(u16, Vec<u8>), String> {
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut builder = client.request(method, host.url(&r.path)).body(r.body.clone());
    if let Some(kind) = r.content_type {
        builder = builder.header("content-type", kind);
    }
    let response = builder.send().await.map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| format!("body cut short: {e}"))?;
    Ok((status, bytes.to_vec()))
}

fn check(r: &Request, status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned();
    prop_assert!(status < 500, "{} {} answered {status}: {text}", r.method, r.path);
    if status >= 400 && r.path.starts_with("/api") {
        let envelope: Value = serde_json::from_slice(body)
            .map_err(|e| TestCaseError::fail(format!("{} {}: {status} is not JSON ({e}): {text}", r.method, r.path)))?;
        prop_assert_eq!(&envelope["success"], &json!(false), "{} {}: {}", r.method, r.path, text);
        let message = envelope["error"].as_str().unwrap_or_default();
        prop_assert!(!message.is_empty(), "{} {}: no message: {text}", r.method, r.path);
    }
    Ok(())
}

#[test]
fn every_route_answers_malformed_input_with_a_4xx_envelope_and_never_a_5xx() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, host, known) = runtime.block_on(async {
        let fake = FakeLlm::start().await;
        let host = TestHost::start(&dir.path().join("db"), &fake.base_url(), 4).await;
        let (card, cases) =
            host.card_with_cases("Say {{n}}", vec![json!({"name": "one", "input_variables": {"n": 1}})]).await;
        let (status, queued) =
            host.post("/api/parallel-test-execution/queue", json!({"prompt_card_id": card, "model": "llama3"})).await;
        assert_eq!(status, 202, "{queued}");
        let execution = queued["data"]["execution_id"].as_str().expect("execution id").to_string();
        (fake, host, Known { card, case: cases[0], execution })
    });

    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let outcome = runner.run(&request(&known), |r| {
        let (status, body) = runtime.block_on(send(&client, &host, &r)).map_err(TestCaseError::fail)?;
        *seen.lock().expect("counts").entry(status).or_default() += 1;
        check(&r, status, &body)
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // The generator reaches past routing and parsing: some requests are
    // accepted, some refused by the handlers' own checks.
    let seen = seen.into_inner().expect("counts");
    eprintln!("statuses: {seen:?}");
    assert!(seen.range(200..300).count() > 0, "nothing was accepted: {seen:?}");
    assert!(seen.contains_key(&400) && seen.contains_key(&404), "{seen:?}");

    runtime.block_on(async {
        let (status, health) = host.get("/health").await;
        assert_eq!(status, 200, "the host still serves: {health}");
        host.stop().await;
        drop(fake);
    });
}

/// Sends `body` to `path` and expects a 400 whose message holds `needle`.
async fn refused(host: &TestHost, method: reqwest::Method, path: &str, body: Value, needle: &str) {
    let (status, reply) = host.call(method, path, Some(body)).await;
    assert_eq!(status, 400, "{path}: {reply}");
    let message = reply["error"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{path}: `{needle}` not in {message}");
}

#[tokio::test]
async fn writes_over_the_size_limits_are_400_naming_the_limit() {
    use cardrun::domain::limits::*;
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 2).await;
    let (card, cases) = host.card_with_cases("{{w}}", vec![json!({"name": "a", "input_variables": {"w": "x"}})]).await;

    let big_template = format!("{{{{w}}}}{}", "x".repeat(MAX_TEMPLATE_BYTES));
    let body = json!({"title": "t", "prompt_template": big_template});
    refused(&host, Method::POST, "/api/prompt-cards", body.clone(), "prompt_template has").await;
    refused(&host, Method::PUT, &format!("/api/prompt-cards/{card}"), body, "at most 262144").await;
    let body = json!({"title": "t".repeat(MAX_NAME_BYTES + 1), "prompt_template": "{{w}}"});
    refused(&host, Method::POST, "/api/prompt-cards", body, "title has 501 bytes").await;

    let assertions: Vec<Value> = (0..=MAX_ASSERTIONS).map(|_| json!({"type": "contains", "value": "x"})).collect();
    let body = json!({"prompt_card_id": card, "name": "n", "input_variables": {"w": "x"}, "assertions": assertions});
    refused(&host, Method::POST, "/api/test-cases", body.clone(), "at most 64 are allowed").await;
    refused(&host, Method::PUT, &format!("/api/test-cases/{}", cases[0]), body, "assertions has 65").await;
    let body = json!({"prompt_card_id": card, "name": "n", "input_variables": {"w": "y".repeat(MAX_VARIABLES_BYTES)}});
    refused(&host, Method::POST, "/api/test-cases", body, "input_variables has").await;

    let too_many: Vec<i64> = (1..=(MAX_TESTS_PER_EXECUTION as i64 + 1)).collect();
    let body = json!({"prompt_card_id": card, "model": "echo:echo", "test_case_ids": too_many});
    refused(&host, Method::POST, "/api/parallel-test-execution/queue", body, "at most 100000").await;

    // A suite: the same limits, with the test's place in the message.
    let suite = format!(
        "prompts: ['{{{{w}}}}']\ntests:\n  - description: huge\n    vars: {{w: x}}\n    assert:\n{}",
        "      - {type: contains, value: x}\n".repeat(MAX_ASSERTIONS + 1)
    );
    let response = host
        .client
        .post(host.url("/api/prompt-cards/import"))
        .header("content-type", "application/yaml")
        .body(suite)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let reply: Value = response.json().await.expect("envelope");
    let message = reply["error"].as_str().unwrap_or_default();
    assert!(message.contains("`huge`: assertions has 65"), "{message}");
    assert_eq!(status, 400);
    host.stop().await;
}

#[tokio::test]
async fn hostile_yaml_is_refused_in_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 2).await;
    // Nine levels of nine aliases: 387 million strings if expanded into a
    // test's variables.
    let mut laughs = String::from("metadata:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let (prev, name) = (pair[0], pair[1]);
        laughs.push_str(&format!(
            "  {name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    laughs.push_str("prompts: ['{{n}}']\ntests: [{vars: {n: *i}}]\n");
    // Nesting 100,000 deep in 200 KB, in flow and in block style.
    let deep = format!("prompts: {}x{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let deep_block = format!("prompts:\n{}x\n", "- ".repeat(100_000));
    let deep_maps = format!("prompts: {}x\n", "{a: ".repeat(100_000));
    for (what, yaml) in
        [("aliases", laughs), ("nesting", deep), ("block nesting", deep_block), ("map nesting", deep_maps)]
    {
        let started = std::time::Instant::now();
        let response = host
            .client
            .post(host.url("/api/prompt-cards/import"))
            .header("content-type", "application/yaml")
            .body(yaml)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status().as_u16(), 400, "{what}");
        let body: Value = response.json().await.expect("envelope");
        assert_eq!(body["success"], false, "{what}: {body}");
        eprintln!("{what}: {} after {:?}", body["error"], started.elapsed());
    }
    let (status, _) = host.get("/health").await;
    assert_eq!(status, 200);
    host.stop().await;
}
