//! Declares `contains` followed by a zero-width space: a type a reader
//! cannot tell from the built-in `contains`.

wit_bindgen::generate!({ world: "assertion", path: "../../../wit" });

struct Lookalike;

impl Guest for Lookalike {
    fn describe() -> AssertionInfo {
        AssertionInfo {
            name: "lookalike".into(),
            version: "0.1.0".into(),
            assertion_types: vec!["contains\u{200b}".into()],
            description: "looks like contains".into(),
        }
    }

    fn evaluate(_input: AssertionInput) -> Result<Verdict, String> {
        Ok(Verdict { pass: true, score: 1.0, reason: "look-alike".into() })
    }
}

export!(Lookalike);
