//! What both kinds of guest share: the store's limits (memory, fuel), the watchdog that enforces
//! the timeout, the guest's captured stderr, and turning a trap into a CNI error.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cni_types::CniError;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
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

/// The guest's time limit, without a thread per run: one POSIX timer per process fires
/// `SIGALRM` at the earliest deadline of all armed runs, and the handler only bumps the
/// engine's epoch (an atomic add, safe in a signal handler). A running guest checks the epoch
/// in its loops and calls; its store's callback then compares the store's own deadline: passed,
/// and the guest traps with `Trap::Interrupt`; not yet (the bump was for another run, e.g. the
/// delegating plugin's while a nested IPAM run goes on), and it re-arms the timer for the
/// earliest deadline still ahead and runs on. Dropping the watchdog disarms it.
pub struct Watchdog {
    id: u64,
}

/// The process's timer and the deadlines of the runs armed now.
struct Timer {
    id: libc::timer_t,
    armed: Vec<(u64, Instant)>,
    next_id: u64,
}

// SAFETY: `timer_t` is an opaque id the kernel hands out; any thread may use it.
unsafe impl Send for Timer {}

static TIMER: Mutex<Option<Timer>> = Mutex::new(None);

extern "C" fn on_alarm(_signal: libc::c_int) {
    if let Some(engine) = super::ENGINE.get() {
        engine.increment_epoch();
    }
}

impl Timer {
    fn create() -> io::Result<Timer> {
        // SAFETY: installs a handler that only does an atomic add (see `on_alarm`); the
        // sigaction and sigevent structs are zeroed and then filled as the kernel expects.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut event: libc::sigevent = std::mem::zeroed();
            event.sigev_notify = libc::SIGEV_SIGNAL;
            event.sigev_signo = libc::SIGALRM;
            let mut id: libc::timer_t = std::ptr::null_mut();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Timer {
                id,
                armed: Vec::new(),
                next_id: 0,
            })
        }
    }

    /// Set the timer to the earliest armed deadline that is still ahead, or stop it.
    fn program(&self) -> io::Result<()> {
        let now = Instant::now();
        let next = self
            .armed
            .iter()
            .map(|(_, d)| *d)
            .filter(|d| *d > now)
            .min();
        let after = next.map_or(Duration::ZERO, |d| d - now);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().try_into().unwrap_or(i64::MAX),
                // A zero value stops the timer: a deadline due now fires in 1 ns.
                tv_nsec: match (next, after.subsec_nanos()) {
                    (Some(_), 0) if after.as_secs() == 0 => 1,
                    (_, ns) => ns as libc::c_long,
                },
            },
        };
        // SAFETY: `self.id` is a timer this process created and never deletes.
        if unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn with_timer<T>(f: impl FnOnce(&mut Timer) -> io::Result<T>) -> io::Result<T> {
    let mut slot = TIMER.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(Timer::create()?);
    }
    f(slot.as_mut().expect("created above"))
}

impl Watchdog {
    /// Give the guest in `store` `timeout` from now. The store must belong to the process's
    /// engine ([`super::engine`]): its epoch is the one the timer bumps.
    pub fn arm<T: 'static>(store: &mut Store<T>, timeout: Duration) -> wasmtime::Result<Watchdog> {
        let now = Instant::now();
        // An unrepresentable deadline (a timeout of centuries) is as good as none.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(1 << 32));
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                return Err(Trap::Interrupt.into());
            }
            // Woken for another run's deadline: keep the timer on the ones still ahead.
            let _ = with_timer(|t| t.program());
            Ok(UpdateDeadline::Continue(1))
        });
        let id = with_timer(|t| {
            t.next_id += 1;
            let id = t.next_id;
            t.armed.push((id, deadline));
            t.program().map(|()| id)
        })
        .map_err(|e| wasmtime::format_err!("arming the guest's time limit: {e}"))?;
        if Instant::now() >= deadline {
            // Due already (the timer only takes deadlines ahead): the guest stops at once.
            store.engine().increment_epoch();
        }
        Ok(Watchdog { id })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = with_timer(|t| {
            t.armed.retain(|(id, _)| *id != self.id);
            t.program()
        });
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
