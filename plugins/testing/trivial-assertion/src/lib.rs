//! `same-as-expected`: passes when the output equals the test's expected
//! output. Written against the raw bindings (no SDK, no JSON parsing) so
//! the benchmark can tell the sandbox's own cost from a plugin's.

wit_bindgen::generate!({ world: "assertion", path: "../../../wit" });

struct Trivial;

impl Guest for Trivial {
    fn describe() -> AssertionInfo {
        AssertionInfo {
            name: "trivial".into(),
            version: "0.1.0".into(),
            assertion_types: vec!["same-as-expected".into()],
            description: "output equals the expected output".into(),
        }
    }

    fn evaluate(input: AssertionInput) -> Result<Verdict, String> {
        let expected = input.expected.ok_or("`same-as-expected` needs an expected output")?;
        let pass = input.output == expected;
        Ok(Verdict { pass, score: if pass { 1.0 } else { 0.0 }, reason: String::new() })
    }
}

export!(Trivial);
