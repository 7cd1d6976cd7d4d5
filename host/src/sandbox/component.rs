//! Running a WIT plugin component: the host calls the verb export with a typed invocation and
//! the handles this run grants; the guest answers with a typed result or a typed CNI error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cni_types::{CniError, CniResult};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::wasm_cni::plugin::types as wit;
use super::bindings::Plugin;
use super::guest::{self, codes, Limiter, Watchdog};
use crate::caps::{Caps, Netns};
use crate::cni::{Command, Request};
use crate::log::Logger;
use crate::policy::Limits;

struct State {
    wasi: WasiCtx,
    wasi_table: ResourceTable,
    caps: Caps,
    limiter: Limiter,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.wasi_table,
        }
    }
}

/// The one plugin linker of this process. It links an interface when the first component that
/// imports it is instantiated, so an exec pays only for the interfaces its plugin imports
/// (loopback: 15 of 24), and a nested IPAM run adds just what its delegating plugin's run did
/// not need. An exec links every interface ahead (`link_all`, on the helper that prepares the
/// request while the main thread loads the artifact: see `plugin::exec`).
struct Linked {
    linker: Linker<State>,
    /// The interfaces (names without version) linked so far.
    added: Vec<&'static str>,
}

static LINKER: std::sync::Mutex<Option<Linked>> = std::sync::Mutex::new(None);

/// Every interface a plugin component may import, by name without version, with its linker.
fn interfaces() -> impl Iterator<Item = (&'static str, super::wasi::Adder<State>)> {
    use super::bindings::wasm_cni::plugin::{files, firewall, ip_store, ipam, log, network};
    let caps: [(&'static str, super::wasi::Adder<State>); 6] = [
        ("wasm-cni:plugin/network", |l| {
            network::add_to_linker::<State, HasSelf<Caps>>(l, |s| &mut s.caps)
        }),
        ("wasm-cni:plugin/ipam", |l| {
            ipam::add_to_linker::<State, HasSelf<Caps>>(l, |s| &mut s.caps)
        }),
        ("wasm-cni:plugin/ip-store", |l| {
            ip_store::add_to_linker::<State, HasSelf<Caps>>(l, |s| &mut s.caps)
        }),
        ("wasm-cni:plugin/firewall", |l| {
            firewall::add_to_linker::<State, HasSelf<Caps>>(l, |s| &mut s.caps)
        }),
        ("wasm-cni:plugin/log", |l| {
            log::add_to_linker::<State, HasSelf<Caps>>(l, |s| &mut s.caps)
        }),
        ("wasm-cni:plugin/files", |l| {
            files::add_to_linker::<State, HasSelf<Caps>>(l, |s| &mut s.caps)
        }),
    ];
    caps.into_iter().chain(super::wasi::interfaces::<State>())
}

/// Link every interface a plugin may import, as far as not linked yet. An exec does this on a
/// helper while its main thread is still loading the plugin's artifact: linking first what the
/// component imports would wait for the load. A linked interface grants nothing by itself: a guest
/// reaches only what its component imports, and the capabilities check every call.
pub fn link_all(engine: &Engine) -> wasmtime::Result<()> {
    let mut slot = LINKER.lock().unwrap_or_else(|e| e.into_inner());
    let linked = linked(&mut slot, engine)?;
    for (name, add) in interfaces() {
        if !linked.added.contains(&name) {
            add(&mut linked.linker)?;
            linked.added.push(name);
        }
    }
    Ok(())
}

/// The process's linker, made on first use; refuses a store of another engine.
fn linked<'a>(slot: &'a mut Option<Linked>, engine: &Engine) -> wasmtime::Result<&'a mut Linked> {
    let linked = slot.get_or_insert_with(|| Linked {
        linker: Linker::new(engine),
        added: Vec::new(),
    });
    if !Engine::same(linked.linker.engine(), engine) {
        return Err(wasmtime::format_err!(
            "a store of another engine than the process's"
        ));
    }
    Ok(linked)
}

/// Instantiate `component` with the process's linker, first linking the interfaces it imports
/// that are not linked yet. An import no interface provides is left to instantiation to refuse
/// (with the error naming it), as is an interface of another version.
fn instantiate(store: &mut Store<State>, component: &Component) -> wasmtime::Result<Plugin> {
    // One engine per process (super::engine), so one linker serves every store.
    let engine = store.engine().clone();
    let mut slot = LINKER.lock().unwrap_or_else(|e| e.into_inner());
    let linked = linked(&mut slot, &engine)?;
    // Linked ahead (`link_all`): nothing to look up.
    if linked.added.len() < interfaces().count() {
        let ty = component.component_type();
        for (import, _) in ty.imports(&engine) {
            let name = import.split('@').next().unwrap_or(import);
            if linked.added.contains(&name) {
                continue;
            }
            if let Some((name, add)) = interfaces().find(|(n, _)| *n == name) {
                add(&mut linked.linker)?;
                linked.added.push(name);
            }
        }
    }
    crate::log::trace::mark("link");
    Plugin::instantiate(store, component, &linked.linker)
}

/// Run one verb of a plugin component. `netns` gives the container's namespace (none for DEL
/// when it is gone, and for STATUS and GC); it is asked once the guest is instantiated, so a
/// namespace still being entered has until then. Returns the result for ADD.
pub fn run_component(
    engine: &Engine,
    component: &Component,
    req: &Request,
    netns: impl FnOnce() -> Result<Option<Arc<Netns>>, CniError>,
    caps: Caps,
    limits: &Limits,
    logger: &Logger,
) -> Result<Option<CniResult>, CniError> {
    let ready = prepare(engine, component, caps, limits, logger)?;
    run_ready(ready, req, netns, limits, logger)
}

/// A plugin component instantiated, its time limit running, not yet called: an IPAM plugin
/// is made ready on another thread while the plugin that delegates to it runs (see
/// `plugin::prefetch_ipam`), then handed the capabilities of the delegation
/// ([`Ready::hand_over`]) and called.
pub struct Ready {
    store: Store<State>,
    instance: Plugin,
    stderr: MemoryOutputPipe,
    memory_hit: Arc<AtomicBool>,
    watchdog: Watchdog,
}

impl Ready {
    /// Give a plugin made ready ahead the capabilities of its run (before anything of its verb
    /// runs) and start its time limit again from now: it was made ready while its delegating
    /// plugin ran, and that time is not its own.
    pub fn hand_over(
        mut self,
        caps: Caps,
        limits: &Limits,
        logger: &Logger,
    ) -> Result<Ready, CniError> {
        self.store.data_mut().caps = caps;
        // The new deadline replaces the old one, which the assignment disarms.
        self.watchdog = Watchdog::arm(&mut self.store, limits.timeout)
            .map_err(|e| trapped(&e, limits, logger, &self.memory_hit))?;
        Ok(self)
    }
}

/// The CNI error for a run the sandbox stopped.
fn trapped(e: &wasmtime::Error, limits: &Limits, logger: &Logger, hit: &AtomicBool) -> CniError {
    guest::trap_error(&logger.plugin, e, limits, hit.load(Ordering::Relaxed))
}

/// Instantiate `component` in a store of its own under `limits`, with `caps`.
pub fn prepare(
    engine: &Engine,
    component: &Component,
    caps: Caps,
    limits: &Limits,
    logger: &Logger,
) -> Result<Ready, CniError> {
    let stderr = guest::stderr_pipe(limits);
    let limiter = Limiter::new(limits);
    let memory_hit = limiter.hit.clone();
    let made = (|| {
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        let state = State {
            wasi,
            wasi_table: ResourceTable::new(),
            caps,
            limiter,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        guest::set_fuel(&mut store, limits)?;
        let watchdog = Watchdog::arm(&mut store, limits.timeout)?;
        let instance = instantiate(&mut store, component)?;
        crate::log::trace::mark("instantiate");
        wasmtime::Result::Ok((store, instance, watchdog))
    })();
    match made {
        Ok((store, instance, watchdog)) => Ok(Ready {
            store,
            instance,
            stderr,
            memory_hit,
            watchdog,
        }),
        Err(e) => {
            guest::forward_stderr(&stderr, logger);
            Err(trapped(&e, limits, logger, &memory_hit))
        }
    }
}

/// Call the verb of a ready plugin.
pub fn run_ready(
    ready: Ready,
    req: &Request,
    netns: impl FnOnce() -> Result<Option<Arc<Netns>>, CniError>,
    limits: &Limits,
    logger: &Logger,
) -> Result<Option<CniResult>, CniError> {
    let Ready {
        mut store,
        instance,
        stderr,
        memory_hit,
        watchdog,
    } = ready;
    let result = call(&mut store, &instance, req, netns);
    drop(watchdog);
    guest::forward_stderr(&stderr, logger);
    super::retire(store);
    result.map_err(|failure| match failure {
        Failure::Cni(e) => e,
        Failure::Trap(e) => trapped(&e, limits, logger, &memory_hit),
    })
}

/// How a call can fail: the guest's own CNI error, or the sandbox stopping it.
enum Failure {
    Cni(CniError),
    Trap(wasmtime::Error),
}

impl From<wasmtime::Error> for Failure {
    fn from(e: wasmtime::Error) -> Failure {
        Failure::Trap(e)
    }
}

impl From<CniError> for Failure {
    fn from(e: CniError) -> Failure {
        Failure::Cni(e)
    }
}

fn call(
    store: &mut Store<State>,
    instance: &Plugin,
    req: &Request,
    netns: impl FnOnce() -> Result<Option<Arc<Netns>>, CniError>,
) -> Result<Option<CniResult>, Failure> {
    let handler = instance.wasm_cni_plugin_handler();
    let inv = invocation(req)?;
    let ns = match netns()? {
        Some(ns) => Some(store.data_mut().caps.grant_netns(ns)?),
        None => None,
    };
    let required = |ns: Option<_>| {
        ns.ok_or_else(|| {
            CniError::new(
                cni_types::codes::INTERNAL,
                "the container netns is required",
                "",
            )
        })
    };
    let answer = match req.command {
        Command::Add => handler
            .call_add(&mut *store, &inv, required(ns)?)?
            .map(Some),
        Command::Check => handler
            .call_check(&mut *store, &inv, required(ns)?)?
            .map(|()| None),
        Command::Del => handler.call_del(&mut *store, &inv, ns)?.map(|()| None),
        Command::Status => handler.call_status(&mut *store, &inv)?.map(|()| None),
        Command::Gc => handler.call_gc(&mut *store, &inv)?.map(|()| None),
        Command::Version => unreachable!("VERSION is answered by the host"),
    };
    crate::log::trace::mark("call");
    match answer {
        Ok(Some(result)) => Ok(Some(guest_result(result)?)),
        Ok(None) => Ok(None),
        Err(e) => Err(cni_error(e).into()),
    }
}

fn cni_error(e: wit::CniError) -> CniError {
    CniError::new(e.code, e.msg, e.details)
}

fn invocation(req: &Request) -> Result<wit::Invocation, CniError> {
    let prev_result = req.config.prev_result()?;
    Ok(wit::Invocation {
        container_id: req.container_id.clone(),
        ifname: req.ifname.clone(),
        args: req.args.clone(),
        netns_path: req.netns.clone(),
        config: String::from_utf8_lossy(&req.config_bytes).into_owned(),
        prev_result: prev_result.as_ref().map(to_wit),
    })
}

cni_types::wit_result_conversions!(pub wit);

/// A guest's result: anything it cannot back with valid addresses is its fault (code 103).
fn guest_result(r: wit::CniResult) -> Result<CniResult, CniError> {
    from_wit(r, |what, s| {
        CniError::new(
            codes::BAD_GUEST_OUTPUT,
            format!("plugin returned an invalid {what}: {s:?}"),
            "",
        )
    })
}
