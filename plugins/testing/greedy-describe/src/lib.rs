//! Describes itself without bound: 100,000 types and a 30 MB description.
//! Were it accepted, every listing, log line and unknown-type error would
//! carry megabytes.

wit_bindgen::generate!({ world: "assertion", path: "../../../wit" });

struct Greedy;

impl Guest for Greedy {
    fn describe() -> AssertionInfo {
        AssertionInfo {
            name: "greedy".into(),
            version: "0.1.0".into(),
            assertion_types: (0..100_000).map(|i| format!("greedy-{i}")).collect(),
            description: "x".repeat(30 << 20),
        }
    }

    fn evaluate(_input: AssertionInput) -> Result<Verdict, String> {
        Ok(Verdict { pass: true, score: 1.0, reason: String::new() })
    }
}

export!(Greedy);
