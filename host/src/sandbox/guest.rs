//! What both kinds of guest share: the store's limits (memory, fuel), the watchdog that enforces
//! the timeout, the guest's captured stderr, and turning a trap into a CNI error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use cni_types::CniError;
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::log::{Level, Logger};
use crate::policy::Limits;

/// CNI error codes of the host (plugin-specific range, >= 100).
pub mod codes {
    /// The node policy refuses the plugin or one of its operations.
    pub const DENIED: u32 = 100;
    /// The module or its artifact is missing, corrupt or not a CNI plugin.
    pub const MODULE_UNAVAILABLE: u32 = 101;
    /// The guest was stopped: a trap or an exceeded limit (time, memory, stack, output).
    pub const SANDBOX_FAILURE: u32 = 102;
    /// The guest's answer broke the protocol (not a CNI result, bad address, ...).
    pub const BAD_GUEST_OUTPUT: u32 = 103;
}

/// Caps linear memory and tables, and remembers whether a cap was hit so the error can say so.
pub struct Limiter {
    memory_bytes: usize,
    /// Set once a growth was refused; shared so it can be read after the store is gone.
    pub hit: Arc<AtomicBool>,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Limiter {
        Limiter {
            memory_bytes: limits.memory_bytes,
            hit: Arc::new(AtomicBool::new(false)),
        }
    }

    fn allow(&mut self, ok: bool) -> bool {
        if !ok {
            self.hit.store(true, Ordering::Relaxed);
        }
        ok
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.allow(desired <= self.memory_bytes))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.allow(desired <= 100_000))
    }
}

/// Interrupts the guest at the deadline by bumping the engine's epoch; dropping it disarms.
pub struct Watchdog {
    _disarm: mpsc::Sender<()>,
}

impl Watchdog {
    pub fn arm(engine: &Engine, timeout: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let engine = engine.clone();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
                engine.increment_epoch();
            }
        });
        Watchdog { _disarm: tx }
    }
}

/// Give the store its instruction budget: the policy's `fuel`, or as good as unlimited. The
/// engine always compiles fuel accounting in (see [`super::config`]), so a store must get fuel
/// before the guest runs, or it traps at its first instruction.
pub fn set_fuel<T>(store: &mut Store<T>, limits: &Limits) -> wasmtime::Result<()> {
    store.set_fuel(limits.fuel.unwrap_or(u64::MAX))
}

/// A capped pipe for the guest's stderr; its lines go to the host log afterwards.
pub fn stderr_pipe(limits: &Limits) -> MemoryOutputPipe {
    MemoryOutputPipe::new(limits.output_bytes)
}

pub fn forward_stderr(pipe: &MemoryOutputPipe, logger: &Logger) {
    let bytes = pipe.contents();
    for line in String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        logger.log(Level::Info, line, &[("source", "guest-stderr".into())]);
    }
}

/// The CNI error for a guest that did not return normally. The message names the cause; the
/// details carry the trap and the start of its wasm backtrace.
pub fn trap_error(
    plugin: &str,
    err: &wasmtime::Error,
    limits: &Limits,
    memory_hit: bool,
) -> CniError {
    let msg = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!(
            "plugin {plugin} exceeded its time limit of {} ms and was stopped",
            limits.timeout.as_millis()
        ),
        Some(Trap::StackOverflow) => {
            format!("plugin {plugin} exhausted its stack (too deep recursion)")
        }
        // A Rust guest's own stack lives in linear memory: running off it lands here.
        Some(Trap::MemoryOutOfBounds) => format!(
            "plugin {plugin} accessed memory out of bounds (it exhausted its stack, or has a bug)"
        ),
        Some(Trap::OutOfFuel) => match limits.fuel {
            Some(fuel) => format!(
                "plugin {plugin} exceeded its instruction budget of {fuel} fuel and was stopped (policy key `fuel`)"
            ),
            None => format!("plugin {plugin} exceeded its instruction budget and was stopped"),
        },
        _ if memory_hit => format!(
            "plugin {plugin} exceeded its memory limit of {} MiB",
            limits.memory_bytes >> 20
        ),
        Some(trap) => format!("plugin {plugin} trapped: {trap}"),
        None => format!("plugin {plugin} failed in the sandbox: {err}"),
    };
    let details: String = format!("{err:?}").chars().take(2048).collect();
    CniError::new(codes::SANDBOX_FAILURE, msg, details)
}
