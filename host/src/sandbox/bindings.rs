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

/// The `model-adapter` world.
pub mod adapter {
    wasmtime::component::bindgen!({
        world: "model-adapter",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
    });
}
