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
    // Timeouts: a process timer bumps the epoch at a deadline (guest::Watchdog).
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

/// Set when this process is one CNI exec that exits right after printing its answer.
static ONE_SHOT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This process exits after its exec: what [`retire`] gets is left to the exit. Freeing a
/// guest's store, code and netlink runtime one by one costs an exec ~0.2 ms that the kernel
/// does for free when the process ends.
pub fn set_one_shot() {
    ONE_SHOT.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process is one exec that exits right after its answer ([`set_one_shot`]).
pub fn is_one_shot() -> bool {
    ONE_SHOT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Done with `v`: dropped, or in a one-shot exec left for the process exit to reclaim.
pub fn retire<T>(v: T) {
    if is_one_shot() {
        std::mem::forget(v);
    } else {
        drop(v);
    }
}

/// The process's one engine (its epoch is what the guests' time limit bumps, see
/// `guest::Watchdog`).
static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();

/// The process's engine, made on first use.
pub fn engine() -> wasmtime::Result<Engine> {
    if let Some(engine) = ENGINE.get() {
        return Ok(engine.clone());
    }
    let engine = Engine::new(&config())?;
    Ok(ENGINE.get_or_init(|| engine).clone())
}
