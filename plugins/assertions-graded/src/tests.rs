//! The grading logic against a scripted judge.

use std::cell::RefCell;

use cardrun_plugin_sdk::serde_json::json;

use super::*;

/// Answers in order; embeds each text as a fixed vector by its first word.
struct Scripted {
    answers: RefCell<Vec<Result<String, String>>>,
    prompts: RefCell<Vec<String>>,
}

impl Scripted {
    fn new(answers: &[&str]) -> Self {
        Self { answers: RefCell::new(answers.iter().map(|a| Ok(a.to_string())).collect()), prompts: RefCell::default() }
    }

    fn failing(message: &str) -> Self {
        Self { answers: RefCell::new(vec![Err(message.to_string())]), prompts: RefCell::default() }
    }
}

impl Judge for Scripted {
    fn complete(&self, prompt: &str) -> Result<String, String> {
        self.prompts.borrow_mut().push(prompt.to_string());
        let mut answers = self.answers.borrow_mut();
        if answers.is_empty() { Err("no scripted answer left".into()) } else { answers.remove(0) }
    }

    fn chat(&self, messages: &[(String, String)]) -> Result<String, String> {
        let flat: Vec<String> = messages.iter().map(|(role, content)| format!("{role}: {content}")).collect();
        self.complete(&flat.join("\n"))
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts
            .iter()
            .map(|t| match t.split_whitespace().next().unwrap_or_default().to_ascii_lowercase().as_str() {
                "paris" | "the" => vec![1.0, 0.0, 0.0],
                "france" => vec![0.9, 0.1, 0.0],
                "bees" => vec![0.0, 1.0, 0.0],
                _ => vec![0.0, 0.0, 1.0],
            })
            .collect())
    }
}

fn input(kind: &str, output: &str, value: Value) -> Input {
    Input::new(kind, output, value)
}

#[test]
fn llm_rubric_passes_fails_and_reads_prose() {
    let judge =
        Scripted::new(&["Here you go:\n```json\n{\"reason\": \"It is polite.\", \"pass\": true, \"score\": 0.9}\n```"]);
    let v = evaluate(&input("llm-rubric", "Thank you!", json!("is polite")), &judge).unwrap();
    assert!(v.pass && (v.score - 0.9).abs() < 1e-9 && v.reason == "It is polite.", "{v:?}");
    let prompt = &judge.prompts.borrow()[0];
    assert!(prompt.contains("cardrun llm-rubric") && prompt.contains("Thank you!") && prompt.contains("is polite"));

    let judge = Scripted::new(&["{\"reason\": \"rude\", \"pass\": false, \"score\": 0.1}"]);
    let v = evaluate(&input("llm-rubric", "Go away.", json!("is polite")), &judge).unwrap();
    assert!(!v.pass && (v.score - 0.1).abs() < 1e-9);
    // A score that contradicts the verdict is dropped for the verdict's own.
    let judge = Scripted::new(&["{\"pass\": false, \"score\": 1}"]);
    let v = evaluate(&input("llm-rubric", "x", json!("r")), &judge).unwrap();
    assert!(!v.pass && v.score == 0.0);
    // With a threshold, the score decides.
    let judge = Scripted::new(&["{\"pass\": true, \"score\": 0.6}"]);
    let v = evaluate(&input("llm-rubric", "x", json!("r")).with_threshold(0.8), &judge).unwrap();
    assert!(!v.pass && (v.score - 0.6).abs() < 1e-9);
}

#[test]
fn malformed_or_failed_grading_is_an_error_never_a_pass() {
    for kind in ["llm-rubric", "model-graded-closedqa", "factuality", "g-eval", "answer-relevance"] {
        let judge = Scripted::new(&["I'd say it looks fine to me."]);
        let err = evaluate(&input(kind, "out", json!("criterion")).with_prompt("Why?"), &judge).unwrap_err();
        assert!(err.contains("no JSON object"), "{kind}: {err}");
        let judge = Scripted::failing("grader: connection refused");
        let err = evaluate(&input(kind, "out", json!("criterion")).with_prompt("Why?"), &judge).unwrap_err();
        assert!(err.contains("connection refused"), "{kind}: {err}");
    }
    let judge = Scripted::new(&["{\"pass\": \"perhaps\"}"]);
    assert!(evaluate(&input("llm-rubric", "x", json!("r")), &judge).unwrap_err().contains("perhaps"));
    let judge = Scripted::new(&["{\"category\": \"F\"}"]);
    assert!(evaluate(&input("factuality", "x", json!("r")), &judge).unwrap_err().contains("\"F\""));
    let judge = Scripted::new(&["{\"steps\": [\"a\"]}", "{\"rating\": 14}"]);
    assert!(evaluate(&input("g-eval", "x", json!("r")), &judge).unwrap_err().contains("14"));
}

#[test]
fn closed_qa_and_factuality_follow_the_grader() {
    let judge = Scripted::new(&["Reasoning... {\"reason\": \"names the city\", \"pass\": true}"]);
    let v = evaluate(&input("model-graded-closedqa", "Paris", json!("names a city")).with_prompt("Capital?"), &judge)
        .unwrap();
    assert!(v.pass && v.score == 1.0);
    assert!(judge.prompts.borrow()[0].contains("<question>\nCapital?\n</question>"));

    let judge = Scripted::new(&["{\"category\": \"(D)\", \"reason\": \"says Lyon\"}"]);
    let v = evaluate(&input("factuality", "Lyon", json!("Paris")), &judge).unwrap();
    assert!(!v.pass && v.reason.starts_with("category D (disagree)"), "{v:?}");
    let judge = Scripted::new(&["{\"category\": \"A\"}"]);
    let v = evaluate(&input("factuality", "Paris", Value::Null).with_expected("Paris, France"), &judge).unwrap();
    assert!(v.pass && judge.prompts.borrow()[0].contains("<expert>\nParis, France\n</expert>"));
    // promptfoo's per-category scores.
    let judge = Scripted::new(&["{\"category\": \"A\"}"]);
    let v = evaluate(&input("factuality", "Paris", json!("Paris")).with_config(json!({"subset": 0})), &judge).unwrap();
    assert!(!v.pass && v.score == 0.0);
    assert!(
        check(&input("factuality", "", json!("x")).with_config(json!({"subsets": 1}))).unwrap_err().contains("subsets")
    );
}

#[test]
fn answer_relevance_compares_generated_questions_with_the_query() {
    let judge = Scripted::new(&["{\"questions\": [\"The capital of France?\", \"France its capital?\"]}"]);
    let relevant = input("answer-relevance", "Paris.", Value::Null).with_variables(&[("query", "The capital?")]);
    let v = evaluate(&relevant, &judge).unwrap();
    assert!(v.pass && v.score > 0.9, "{v:?}");
    let judge = Scripted::new(&["{\"questions\": [\"Bees make honey how?\"]}"]);
    let v = evaluate(&relevant, &judge).unwrap();
    assert!(!v.pass && v.score < 0.1, "{v:?}");
}

#[test]
fn g_eval_rates_on_generated_steps() {
    let judge =
        Scripted::new(&["{\"steps\": [\"Check tone.\", \"Check facts.\"]}", "{\"rating\": 8, \"reason\": \"good\"}"]);
    let v = evaluate(&input("g-eval", "A fine answer.", json!("coherent and polite")), &judge).unwrap();
    assert!(v.pass && (v.score - 0.8).abs() < 1e-9 && v.reason.contains("8/10"), "{v:?}");
    assert!(judge.prompts.borrow()[1].contains("1. Check tone.\n2. Check facts."));
    let judge = Scripted::new(&["{\"steps\": [\"Check.\"]}", "{\"rating\": \"6/10\"}"]);
    let v = evaluate(&input("g-eval", "meh", json!("coherent")), &judge).unwrap();
    assert!(!v.pass && (v.score - 0.6).abs() < 1e-9);
}

#[test]
fn similar_passes_and_fails_by_threshold() {
    let judge = Scripted::new(&[]);
    let v = evaluate(&input("similar", "Paris is the capital", json!("The capital is Paris")), &judge).unwrap();
    assert!(v.pass && v.score > 0.99);
    let v = evaluate(&input("similar", "France it is", json!("Paris")), &judge).unwrap();
    assert!(v.pass && v.score > 0.9, "{v:?}");
    let v = evaluate(&input("similar", "France it is", json!("Paris")).with_threshold(0.999), &judge).unwrap();
    assert!(!v.pass);
    let v = evaluate(&input("similar", "Bees buzz", json!(["Paris", "Other"])), &judge).unwrap();
    assert!(!v.pass && v.score < 0.1);
    assert!(check(&input("similar", "", json!(3))).is_err());
    assert!(check(&input("similar", "", json!("x")).with_threshold(1.5)).is_err());
}

#[test]
fn parameters_are_checked_without_a_model() {
    assert!(check(&input("llm-rubric", "", Value::Null)).unwrap_err().contains("needs a `value`"));
    assert!(check(&input("llm-rubric", "", json!("polite"))).is_ok());
    assert!(check(&input("factuality", "", Value::Null)).unwrap_err().contains("reference answer"));
    assert!(check(&input("g-eval", "", json!("x")).with_threshold(0.0)).is_err());
}

#[test]
fn a_rubric_prompt_replaces_cardruns_and_is_checked_when_written() {
    let judge = Scripted::new(&["{\"pass\": true, \"reason\": \"ok\"}", "{\"pass\": false, \"reason\": \"no\"}"]);
    let custom = |kind: &str, prompt: Value| {
        input(kind, "Bonjour", json!("is French")).with_prompt("Say hi").with_config(json!({"rubricPrompt": prompt}))
    };
    let v = evaluate(&custom("llm-rubric", json!("Is <{{ output }}> {{rubric}}?")), &judge).unwrap();
    assert!(v.pass, "{v:?}");
    let chat = json!([{"role": "system", "content": "Strict."}, {"role": "user", "content": "{{input}} / {{completion}} / {{criteria}}"}]);
    let v = evaluate(&custom("model-graded-closedqa", chat), &judge).unwrap();
    assert!(!v.pass, "{v:?}");
    let prompts = judge.prompts.borrow();
    assert_eq!(prompts[0], "Is <Bonjour> is French?");
    assert_eq!(prompts[1], "system: Strict.\nuser: Say hi / Bonjour / is French");
    // A typo or a type without custom prompts is refused by `check`.
    let typo = evaluate(&custom("llm-rubric", json!("{{ outptu }}")), &Scripted::new(&[])).unwrap_err();
    assert!(typo.contains("outptu"), "{typo}");
    assert!(check(&custom("llm-rubric", json!("{{ outptu "))).is_err());
    assert!(check(&custom("similar", json!("x"))).unwrap_err().contains("takes no `rubricPrompt`"));
    let factuality = custom("factuality", json!("{{ideal}} vs {{completion}}"));
    assert!(check(&factuality).is_ok(), "rubricPrompt is not a factuality category");
}

#[test]
fn select_best_passes_only_the_chosen_output_and_asks_the_same_prompt_for_each() {
    let judge = Scripted::new(&["{\"reason\": \"kindest\", \"best\": 1}", "{\"reason\": \"kindest\", \"best\": 1}"]);
    let of = |index: u64| {
        input("select-best", "x", json!("most polite"))
            .with_config(json!({"outputs": ["Go away", "Thank you", "Fine"], "index": index}))
    };
    let chosen = evaluate(&of(1), &judge).unwrap();
    assert!(chosen.pass && chosen.reason.contains("best of 3"), "{chosen:?}");
    let other = evaluate(&of(0), &judge).unwrap();
    assert!(!other.pass && other.reason.contains("output 1 of 3"), "{other:?}");
    let prompts = judge.prompts.borrow();
    assert_eq!(prompts[0], prompts[1], "one prompt per row: the host's cache asks once");
    assert!(prompts[0].contains("<output index=\"2\">\nFine\n</output>"));
    // Not decided yet, too few outputs, or an index the grader made up: errors.
    let pending = evaluate(&input("select-best", "x", json!("c")), &judge).unwrap_err();
    assert!(pending.contains("decided once every pair has run"), "{pending}");
    let one = input("select-best", "x", json!("c")).with_config(json!({"outputs": ["a"], "index": 0}));
    assert!(evaluate(&one, &judge).unwrap_err().contains("at least two"));
    let judge = Scripted::new(&["{\"best\": 7}"]);
    assert!(evaluate(&of(0), &judge).unwrap_err().contains("not an index"));
}
