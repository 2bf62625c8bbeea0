//! Host-side bindings of `wit/cardrun.wit`, one module per world.

/// The `assertion` world.
pub mod assertion {
    wasmtime::component::bindgen!({
        world: "assertion",
        path: "../wit",
        exports: { default: async },
    });
}

/// The `checked-assertion` world: `assertion` plus `check`. Its types are
/// those of [`assertion`], so one loaded component serves both.
pub mod checked {
    wasmtime::component::bindgen!({
        world: "checked-assertion",
        path: "../wit",
        exports: { default: async },
        with: { "cardrun:plugin/types": super::assertion::cardrun::plugin::types },
    });
}

/// The `scripted-assertion` world: `checked-assertion` plus `call`, which
/// runs the host's scripts (transforms, template filters). Its types are
/// those of [`assertion`].
pub mod scripted {
    wasmtime::component::bindgen!({
        world: "scripted-assertion",
        path: "../wit",
        exports: { default: async },
        with: { "cardrun:plugin/types": super::assertion::cardrun::plugin::types },
    });
}

/// The `graded-assertion` world: `checked-assertion` plus the host's
/// `grader` import. Only its `grader` interface is used: the assertion
/// linker gains it, so every assertion component may import it.
pub mod graded {
    wasmtime::component::bindgen!({
        world: "graded-assertion",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: { "cardrun:plugin/types": super::assertion::cardrun::plugin::types },
    });
}

/// The `model-adapter` world.
pub mod adapter {
    wasmtime::component::bindgen!({
        world: "model-adapter",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
    });
}

/// The `logprob-adapter` world: the `embedding-adapter` exports plus
/// `complete-with-logprobs`. Its types are those of [`adapter`].
pub mod logprob {
    wasmtime::component::bindgen!({
        world: "logprob-adapter",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "cardrun:plugin/types": super::adapter::cardrun::plugin::types,
            "cardrun:plugin/http": super::adapter::cardrun::plugin::http,
        },
    });
}

/// The `embedding-adapter` world: `model-adapter` plus `embed`. Its types
/// are those of [`adapter`], so one loaded component serves both.
pub mod embedding {
    wasmtime::component::bindgen!({
        world: "embedding-adapter",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "cardrun:plugin/types": super::adapter::cardrun::plugin::types,
            "cardrun:plugin/http": super::adapter::cardrun::plugin::http,
        },
    });
}
