//! The WebAssembly sandbox: one engine configuration, precompiled artifacts, and the two kinds
//! of guest a plugin module can be.

pub mod artifact;
mod command;
pub mod component;
mod guest;
mod wasi;

pub use artifact::{Artifact, GuestKind};
pub use command::run_command;
pub use component::run_component;
pub use guest::codes;

use wasmtime::{Config, Engine};

/// Host bindings of `wit/plugin.wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        with: {
            "wasm-cni:plugin/network.netns": crate::caps::NetnsRes,
            "wasm-cni:plugin/network.link": crate::caps::LinkRes,
            "wasm-cni:plugin/ip-store.store": crate::caps::StoreRes,
        },
    });
}

/// The export that marks a WIT plugin component.
pub const HANDLER_EXPORT: &str = "wasm-cni:plugin/handler@0.1.0";
/// The export prefix that marks a plain WASI command (`wasi:cli/run@0.2.x`).
pub const WASI_RUN_EXPORT: &str = "wasi:cli/run@0.2";

/// Names this engine configuration inside artifacts. Bump it whenever [`config`] changes, so
/// artifacts made under the old configuration are recompiled instead of refused.
pub const ENGINE_TAG: &str = "wasm-cni/3 wasmtime-48 epoch fuel stack=512KiB no-unwind-info";

/// The one engine configuration, shared by the runtime and the install-time compiler: an
/// artifact only loads into an engine configured like the one that produced it.
pub fn config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Timeouts: a watchdog bumps the epoch at the deadline.
    config.epoch_interruption(true);
    // Instruction budgets (policy `fuel`): the accounting is compiled into the code, so it is
    // always on; a store without a budget gets u64::MAX (see guest::set_fuel).
    config.consume_fuel(true);
    // Deep recursion traps instead of exhausting the host's stack.
    config.max_wasm_stack(512 << 10);
    // No .eh_frame for guest code: wasmtime's own backtraces do not need it, and registering
    // it with the system unwinder is a large share of loading an artifact.
    config.native_unwind_info(false);
    config
}

pub fn engine() -> wasmtime::Result<Engine> {
    Engine::new(&config())
}
