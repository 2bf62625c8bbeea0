//! The cardrun plugin SDK.
//!
//! A cardrun plugin is a WebAssembly component (`wasm32-wasip2`) that
//! implements one of the worlds of `wit/cardrun.wit`. This crate hides the
//! bindings: an evaluator is a type implementing [`Evaluator`] plus one
//! [`export_evaluator!`] line.
//!
//! ```ignore
//! use cardrun_plugin_sdk::{export_evaluator, Evaluator, Input, Verdict};
//!
//! struct Shouty;
//! impl Evaluator for Shouty {
//!     const NAME: &'static str = "shouty";
//!     const TYPES: &'static [&'static str] = &["shouty"];
//!     fn evaluate(input: &Input) -> Result<Verdict, String> {
//!         let loud = input.output().chars().all(|c| !c.is_lowercase());
//!         Ok(Verdict::check(loud, "all upper case", "has lower-case letters"))
//!     }
//!     // Optional: refuse bad parameters when a test case is written.
//!     fn check(input: &Input) -> Result<(), String> {
//!         if input.value().is_null() { Ok(()) } else { Err("`shouty` takes no value".into()) }
//!     }
//! }
//! export_evaluator!(Shouty);
//! ```
//!
//! Model adapters use the lower-level [`adapter`] bindings and [`http`].

mod evaluator;
pub mod grader;
pub mod http;
pub mod model_call;

pub use evaluator::{Evaluator, Input, Verdict};
pub use serde_json;

/// Raw bindings of the `assertion` world.
pub mod assertion {
    wit_bindgen::generate!({
        world: "assertion",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_assertion",
        default_bindings_module: "cardrun_plugin_sdk::assertion",
    });
}

/// Raw bindings of the `checked-assertion` world: `assertion` plus `check`.
/// Its types are those of [`assertion`].
// The generated ABI shim takes `assertion-params` flattened (11 arguments).
#[allow(clippy::too_many_arguments)]
pub mod checked_assertion {
    wit_bindgen::generate!({
        world: "checked-assertion",
        path: "../../wit",
        with: { "cardrun:plugin/types@0.1.0": crate::assertion::cardrun::plugin::types },
        pub_export_macro: true,
        export_macro_name: "export_checked_assertion",
        default_bindings_module: "cardrun_plugin_sdk::checked_assertion",
    });
}

/// Raw bindings of the `graded-assertion` world: `checked-assertion` plus
/// the host's `grader` import. Its types are those of [`assertion`].
#[allow(clippy::too_many_arguments)]
pub mod graded_assertion {
    wit_bindgen::generate!({
        world: "graded-assertion",
        path: "../../wit",
        with: { "cardrun:plugin/types@0.1.0": crate::assertion::cardrun::plugin::types },
        pub_export_macro: true,
        export_macro_name: "export_graded_assertion",
        default_bindings_module: "cardrun_plugin_sdk::graded_assertion",
    });
}

/// Raw bindings of the `scripted-assertion` world: `checked-assertion` plus
/// `call`, which runs a script for the host. Its types are those of
/// [`assertion`].
#[allow(clippy::too_many_arguments)]
pub mod scripted_assertion {
    wit_bindgen::generate!({
        world: "scripted-assertion",
        path: "../../wit",
        with: { "cardrun:plugin/types@0.1.0": crate::assertion::cardrun::plugin::types },
        pub_export_macro: true,
        export_macro_name: "export_scripted_assertion",
        default_bindings_module: "cardrun_plugin_sdk::scripted_assertion",
    });
}

/// Raw bindings of the `model-adapter` world.
pub mod adapter {
    wit_bindgen::generate!({
        world: "model-adapter",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_model_adapter",
        default_bindings_module: "cardrun_plugin_sdk::adapter",
    });
}

/// Raw bindings of the `embedding-adapter` world: `model-adapter` plus
/// `embed`. Its types and `http` are those of [`adapter`].
pub mod embedding_adapter {
    wit_bindgen::generate!({
        world: "embedding-adapter",
        path: "../../wit",
        with: {
            "cardrun:plugin/types@0.1.0": crate::adapter::cardrun::plugin::types,
            "cardrun:plugin/http@0.1.0": crate::adapter::cardrun::plugin::http,
        },
        pub_export_macro: true,
        export_macro_name: "export_embedding_adapter",
        default_bindings_module: "cardrun_plugin_sdk::embedding_adapter",
    });
}

/// Raw bindings of the `logprob-adapter` world: `embedding-adapter` plus
/// `complete-with-logprobs`. Its types and `http` are those of [`adapter`].
pub mod logprob_adapter {
    wit_bindgen::generate!({
        world: "logprob-adapter",
        path: "../../wit",
        with: {
            "cardrun:plugin/types@0.1.0": crate::adapter::cardrun::plugin::types,
            "cardrun:plugin/http@0.1.0": crate::adapter::cardrun::plugin::http,
        },
        pub_export_macro: true,
        export_macro_name: "export_logprob_adapter",
        default_bindings_module: "cardrun_plugin_sdk::logprob_adapter",
    });
}

/// Exports a type implementing [`Evaluator`] as this component's
/// `checked-assertion` world (the `assertion` world plus `check`, which
/// calls [`Evaluator::check`]). Use it once per plugin crate.
#[macro_export]
macro_rules! export_evaluator {
    ($evaluator:ty) => {
        $crate::__export_evaluator_as!($evaluator, checked_assertion, export_checked_assertion, {});
    };
}

/// Exports a type implementing [`Evaluator`] as this component's
/// `graded-assertion` world: as [`export_evaluator!`], and the evaluator
/// may ask the host's grader model through [`grader`] and read the model
/// call through [`model_call`].
#[macro_export]
macro_rules! export_graded_evaluator {
    ($evaluator:ty) => {
        $crate::__export_evaluator_as!($evaluator, graded_assertion, export_graded_assertion, {});
    };
}

/// Exports a type implementing [`Evaluator`] and [`Scripts`] as this
/// component's `scripted-assertion` world: as [`export_evaluator!`], and
/// the host may ask it to run scripts (transforms, template filters).
#[macro_export]
macro_rules! export_scripted_evaluator {
    ($evaluator:ty) => {
        $crate::__export_evaluator_as!($evaluator, scripted_assertion, export_scripted_assertion, {
            fn call(
                function: ::std::string::String,
                arguments: ::std::string::String,
            ) -> ::core::result::Result<::std::string::String, ::std::string::String> {
                <$evaluator as $crate::Scripts>::call(&function, &arguments)
            }
        });
    };
}

/// A plugin that runs scripts for the host (the `scripted-assertion`
/// world).
pub trait Scripts {
    /// Evaluates `function` (source whose value is a function), calls it
    /// with `arguments` (a JSON array) and returns the result as JSON text.
    fn call(function: &str, arguments: &str) -> Result<String, String>;
}

/// The macros above: the same exports, through `$world`'s bindings, plus
/// any the world adds.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_evaluator_as {
    ($evaluator:ty, $world:ident, $export:ident, { $($extra:tt)* }) => {
        struct __CardrunEvaluatorExport;

        impl $crate::$world::Guest for __CardrunEvaluatorExport {
            fn describe() -> $crate::assertion::AssertionInfo {
                $crate::__describe::<$evaluator>()
            }

            fn evaluate(
                input: $crate::assertion::AssertionInput,
            ) -> ::core::result::Result<$crate::assertion::Verdict, ::std::string::String> {
                $crate::__evaluate::<$evaluator>(input)
            }

            fn check(
                params: $crate::assertion::cardrun::plugin::types::AssertionParams,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::__check::<$evaluator>(params)
            }

            $($extra)*
        }

        $crate::$world::$export!(__CardrunEvaluatorExport);
    };
}

#[doc(hidden)]
pub fn __describe<E: Evaluator>() -> assertion::AssertionInfo {
    assertion::AssertionInfo {
        name: E::NAME.to_string(),
        version: E::VERSION.to_string(),
        assertion_types: E::TYPES.iter().map(|t| t.to_string()).collect(),
        description: E::DESCRIPTION.to_string(),
    }
}

#[doc(hidden)]
pub fn __evaluate<E: Evaluator>(raw: assertion::AssertionInput) -> Result<assertion::Verdict, String> {
    let input = Input::from_raw(raw)?;
    let verdict = E::evaluate(&input)?;
    Ok(assertion::Verdict { pass: verdict.pass, score: verdict.score, reason: verdict.reason })
}

#[doc(hidden)]
pub fn __check<E: Evaluator>(raw: assertion::cardrun::plugin::types::AssertionParams) -> Result<(), String> {
    E::check(&Input::from_params(raw)?)
}
