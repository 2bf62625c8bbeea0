//! `bare-same-as-expected`: the trivial assertion (output equals the
//! expected output) built without `std`.
//!
//! A `wasm32-wasip2` guest that links `std` imports about 14 WASI
//! interfaces whether it uses them or not, and wasmtime wires every one of
//! them up again for each fresh instance. This plugin links none, so the
//! benchmark can tell the sandbox's own cost from the cost of those
//! imports.
//!
//! Memory comes from a bump allocator that never frees: every use gets a
//! fresh instance, so nothing would be reused anyway.

// Test builds (native or wasm) keep std; only the component is std-free.
#![cfg_attr(all(target_arch = "wasm32", not(test)), no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec;

wit_bindgen::generate!({ world: "assertion", path: "../../../wit" });

struct Bare;

impl Guest for Bare {
    fn describe() -> AssertionInfo {
        AssertionInfo {
            name: "bare".into(),
            version: "0.1.0".into(),
            assertion_types: vec!["bare-same-as-expected".into()],
            description: "output equals the expected output (no std, no WASI)".into(),
        }
    }

    fn evaluate(input: AssertionInput) -> Result<Verdict, String> {
        let Some(expected) = input.expected else {
            return Err("`bare-same-as-expected` needs an expected output".into());
        };
        let pass = input.output == expected;
        Ok(Verdict { pass, score: if pass { 1.0 } else { 0.0 }, reason: String::new() })
    }
}

export!(Bare);

#[cfg(all(target_arch = "wasm32", not(test)))]
mod runtime;
