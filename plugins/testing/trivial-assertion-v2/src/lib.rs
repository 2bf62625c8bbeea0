//! Version 2 of `trivial`: the same plugin name and type,
//! `same-as-expected`, but it passes everything (reason `v2`), so a test
//! can tell which version judged an output.

wit_bindgen::generate!({ world: "assertion", path: "../../../wit" });

struct TrivialV2;

impl Guest for TrivialV2 {
    fn describe() -> AssertionInfo {
        AssertionInfo {
            name: "trivial".into(),
            version: "0.2.0".into(),
            assertion_types: vec!["same-as-expected".into()],
            description: "version 2: passes everything".into(),
        }
    }

    fn evaluate(_input: AssertionInput) -> Result<Verdict, String> {
        Ok(Verdict { pass: true, score: 1.0, reason: "v2".into() })
    }
}

export!(TrivialV2);
