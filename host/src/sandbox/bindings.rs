//! Host-side bindings of `wit/cardrun.wit`, one module per world.

/// The `assertion` world.
pub mod assertion {
    wasmtime::component::bindgen!({
        world: "assertion",
        path: "../wit",
        exports: { default: async },
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
