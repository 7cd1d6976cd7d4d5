//! Running a plain WASI CNI program (a `wasi:cli/run` command): the CNI protocol as the spec
//! describes it, with CNI_* in the environment, the config on stdin and the answer on stdout,
//! all of it inside the sandbox. The guest never sees the host's stdout: its output is
//! captured, capped and checked before the host prints it.

use cni_types::{CniError, CniResult};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command as WasiCommand;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::guest::{self, codes, Limiter, Watchdog};
use crate::cni::{Command, Request};
use crate::log::Logger;
use crate::policy::Limits;

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Run a WASI command guest for one request. Returns what to print on success (the result
/// for ADD, nothing for the other verbs).
pub fn run_command(
    engine: &Engine,
    component: &Component,
    req: &Request,
    limits: &Limits,
    logger: &Logger,
) -> Result<Option<String>, CniError> {
    let stdout = MemoryOutputPipe::new(limits.output_bytes);
    let stderr = guest::stderr_pipe(limits);
    let limiter = Limiter::new(limits);
    let memory_hit = limiter.hit.clone();
    let status = run(
        engine,
        component,
        req,
        limits,
        limiter,
        stdout.clone(),
        stderr.clone(),
    );
    guest::forward_stderr(&stderr, logger);
    let status = status.map_err(|e| {
        guest::trap_error(
            &logger.plugin,
            &e,
            limits,
            memory_hit.load(std::sync::atomic::Ordering::Relaxed),
        )
    })?;
    let out = stdout.contents();
    if out.len() >= limits.output_bytes {
        return Err(CniError::new(
            codes::SANDBOX_FAILURE,
            format!(
                "plugin {} wrote more than its output limit of {} bytes",
                logger.plugin, limits.output_bytes
            ),
            "",
        ));
    }
    let text = String::from_utf8_lossy(&out);
    let text = text.trim();
    if status != 0 {
        return Err(serde_json::from_str::<CniError>(text).unwrap_or_else(|_| {
            CniError::new(
                codes::BAD_GUEST_OUTPUT,
                format!(
                    "plugin {} exited with status {status} without a CNI error on stdout",
                    logger.plugin
                ),
                text.chars().take(512).collect::<String>(),
            )
        }));
    }
    if req.command != Command::Add {
        return Ok(None);
    }
    // The answer must be a result of the version asked for; it is printed as the guest wrote it.
    let bad = |why: String| {
        CniError::new(
            codes::BAD_GUEST_OUTPUT,
            why,
            text.chars().take(512).collect::<String>(),
        )
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "plugin {} printed no JSON result: {e}",
            logger.plugin
        ))
    })?;
    CniResult::from_json(&value, &req.version).map_err(|e| {
        bad(format!(
            "plugin {} printed an invalid result: {}",
            logger.plugin, e.msg
        ))
    })?;
    Ok(Some(text.to_string()))
}

/// Run the command; the guest's exit status, or the trap that stopped it.
fn run(
    engine: &Engine,
    component: &Component,
    req: &Request,
    limits: &Limits,
    limiter: Limiter,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
) -> wasmtime::Result<i32> {
    let mut linker: Linker<State> = Linker::new(engine);
    super::wasi::add_to_linker(&mut linker)?;
    let wasi = WasiCtxBuilder::new()
        .env("CNI_COMMAND", req.command.as_str())
        .env("CNI_CONTAINERID", &req.container_id)
        .env("CNI_NETNS", &req.netns)
        .env("CNI_IFNAME", &req.ifname)
        .env("CNI_ARGS", &req.cni_args)
        .env("CNI_PATH", &req.path)
        .stdin(MemoryInputPipe::new(req.config_bytes.clone()))
        .stdout(stdout)
        .stderr(stderr)
        .build();
    let mut store = Store::new(
        engine,
        State {
            wasi,
            table: ResourceTable::new(),
            limiter,
        },
    );
    store.limiter(|s| &mut s.limiter);
    guest::set_fuel(&mut store, limits)?;
    let _watchdog = Watchdog::arm(&mut store, limits.timeout)?;
    let command = WasiCommand::instantiate(&mut store, component, &linker)?;
    match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Ok(*code),
            None => Err(e),
        },
    }
}
