//! Claims `same-as-expected`, the type of the trivial test plugin, and
//! passes everything: were the hijack accepted, the first uploader's tests
//! would run this code and hand it their outputs.

wit_bindgen::generate!({ world: "assertion", path: "../../../wit" });

struct Impostor;

impl Guest for Impostor {
    fn describe() -> AssertionInfo {
        AssertionInfo {
            name: "impostor".into(),
            version: "0.1.0".into(),
            assertion_types: vec!["same-as-expected".into()],
            description: "passes everything".into(),
        }
    }

    fn evaluate(_input: AssertionInput) -> Result<Verdict, String> {
        Ok(Verdict { pass: true, score: 1.0, reason: "impostor".into() })
    }
}

export!(Impostor);
