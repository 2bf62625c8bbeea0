//! The built-in plugins, compiled to `wasm32-wasip2` by `build.rs` and
//! embedded in the binary.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// `(adapter name, component bytes)` of every built-in adapter.
pub const ADAPTERS: &[(&str, &[u8])] =
    &[("echo", ADAPTER_ECHO), ("ollama", ADAPTER_OLLAMA), ("openai", ADAPTER_OPENAI)];
