//! Rendering prompts when an execution is planned: minijinja (this code)
//! against the `{{ name }}` regex substitution it replaced (the previous
//! code, kept here as the baseline), for N test cases of one template.
//!
//! `cargo run --release -p cardrun-benches --bin template [CASES]`

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use cardrun::domain::Template;
use cardrun_benches::machine;
use regex::Regex;
use serde_json::{Map, Value, json};

/// The previous renderer: one regex, every placeholder replaced.
static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}").expect("static regex is valid"));

fn previous_render(text: &str, vars: &[(String, String)]) -> String {
    PLACEHOLDER
        .replace_all(text, |caps: &regex::Captures<'_>| {
            vars.iter().find(|(k, _)| k == &caps[1]).map(|(_, v)| v.clone()).unwrap_or_default()
        })
        .into_owned()
}

const TEMPLATE: &str = "You are a {{role}}. Answer the question about {{topic}} in at most {{n}} words.\n\nQuestion: {{question}}\nAnswer:";

fn main() {
    let cases: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    println!("machine: {}; {cases} test cases, 3 rounds each, alternating", machine());
    let vars: Vec<Map<String, Value>> = (0..cases)
        .map(|i| {
            let v = json!({"role": "geography teacher", "topic": format!("country {i}"), "n": 20,
                           "question": format!("What is the capital of country number {i}, and why?")});
            v.as_object().cloned().unwrap_or_default()
        })
        .collect();
    let as_text: Vec<Vec<(String, String)>> = vars
        .iter()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect())
        .collect();

    let started = Instant::now();
    let template = Template::parse(TEMPLATE).expect("valid template");
    println!("minijinja parse (once per execution): {:?}", started.elapsed());

    let mut previous = Vec::new();
    let mut current = Vec::new();
    let mut bytes = (0usize, 0usize);
    for _ in 0..3 {
        let t = Instant::now();
        for v in &as_text {
            bytes.0 += previous_render(TEMPLATE, v).len();
        }
        previous.push(t.elapsed());
        let t = Instant::now();
        for v in &vars {
            bytes.1 += template.render(v).map(|p| p.as_text().len()).unwrap_or(0);
        }
        current.push(t.elapsed());
    }
    assert_eq!(bytes.0, bytes.1, "both render the same prompts");
    let report = |name: &str, mut samples: Vec<Duration>| {
        samples.sort_unstable();
        let median = samples[samples.len() / 2];
        let per = median.as_nanos() / cases.max(1) as u128;
        println!("{name:<28} median {median:>10.2?} for {cases} ({per} ns per case)");
    };
    report("previous (regex)", previous);
    report("minijinja (this code)", current);
}
