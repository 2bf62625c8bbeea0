//! Every route the router serves, written out by hand: the OpenAPI test
//! checks the document against it both ways, and the malformed-input test
//! sends requests to each.

/// (method, path), with `{id}` and `{other}` for path segments, plus one
/// path that is no route.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/dashboard/{id}"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/prompt-cards"),
    ("POST", "/api/prompt-cards"),
    ("POST", "/api/prompt-cards/import"),
    ("GET", "/api/prompt-cards/{id}"),
    ("PUT", "/api/prompt-cards/{id}"),
    ("DELETE", "/api/prompt-cards/{id}"),
    ("GET", "/api/prompt-cards/{id}/export"),
    ("GET", "/api/test-cases"),
    ("POST", "/api/test-cases"),
    ("GET", "/api/test-cases/{id}"),
    ("PUT", "/api/test-cases/{id}"),
    ("DELETE", "/api/test-cases/{id}"),
    ("POST", "/api/parallel-test-execution/queue"),
    ("POST", "/api/parallel-test-execution/batch"),
    ("GET", "/api/parallel-test-execution/active"),
    ("GET", "/api/parallel-test-execution/executions"),
    ("GET", "/api/parallel-test-execution/queue/stats"),
    ("GET", "/api/parallel-test-execution/system/resources"),
    ("GET", "/api/parallel-test-execution/{id}/progress"),
    ("GET", "/api/parallel-test-execution/{id}/results"),
    ("DELETE", "/api/parallel-test-execution/{id}"),
    ("GET", "/api/plugins"),
    ("POST", "/api/plugins"),
    ("PUT", "/api/plugins/{id}"),
    ("DELETE", "/api/plugins/{id}"),
    ("POST", "/api/evaluations"),
    ("GET", "/api/evaluations/{id}"),
    ("GET", "/api/evaluations/{id}/results"),
    ("GET", "/api/evaluations/{id}/compare/{other}"),
    ("GET", "/api/no-such-route"),
];
