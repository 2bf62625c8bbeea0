//! The built-in plugins, compiled to `wasm32-wasip2` by `build.rs` and
//! embedded in the binary.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// Component bytes of every built-in assertion plugin: text and measure
/// types; apart, because each makes a component several times bigger or
/// imports what the others do not, the structured types, `javascript`
/// (a JavaScript engine) and the model-graded types (the grader).
pub const ASSERTION_PLUGINS: &[&[u8]] = &[ASSERTIONS, JSON_ASSERTIONS, JS_ASSERTIONS, GRADED_ASSERTIONS];

/// `(adapter name, component bytes)` of every built-in adapter.
pub const ADAPTERS: &[(&str, &[u8])] =
    &[("echo", ADAPTER_ECHO), ("ollama", ADAPTER_OLLAMA), ("openai", ADAPTER_OPENAI), ("anthropic", ADAPTER_ANTHROPIC)];
