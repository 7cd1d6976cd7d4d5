//! The WASI a guest gets: streams and the CLI world's stdio/environment/exit, clocks and
//! random — nothing else. Filesystem and sockets are not linked at all (a module that imports
//! them does not instantiate, and the CNI error says which import is missing), which is both
//! the least privilege and the cheapest linker to build on every exec.

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::{cli, clocks, random};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::WasiView;

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links one WASI interface into a linker.
pub type Adder<T> = fn(&mut Linker<T>) -> wasmtime::Result<()>;

/// Every WASI interface a guest gets, by name (without version), each with its linker.
pub fn interfaces<T: WasiView + 'static>() -> [(&'static str, Adder<T>); 18] {
    use wasmtime_wasi::p2::bindings::sync::io;
    [
        ("wasi:io/error", |l| {
            wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, HasIo>(l, |t| {
                t.ctx().table
            })
        }),
        ("wasi:io/poll", |l| {
            io::poll::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)
        }),
        ("wasi:io/streams", |l| {
            io::streams::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)
        }),
        ("wasi:cli/exit", |l| {
            cli::exit::add_to_linker::<T, WasiCli>(l, <T as WasiCliView>::cli)
        }),
        ("wasi:cli/environment", |l| {
            cli::environment::add_to_linker::<T, WasiCli>(l, <T as WasiCliView>::cli)
        }),
        ("wasi:cli/stdin", |l| {
            cli::stdin::add_to_linker::<T, WasiCli>(l, <T as WasiCliView>::cli)
        }),
        ("wasi:cli/stdout", |l| {
            cli::stdout::add_to_linker::<T, WasiCli>(l, <T as WasiCliView>::cli)
        }),
        ("wasi:cli/stderr", |l| {
            cli::stderr::add_to_linker::<T, WasiCli>(l, <T as WasiCliView>::cli)
        }),
        ("wasi:cli/terminal-input", |l| {
            cli::terminal_input::add_to_linker::<T, WasiCli>(l, <T as WasiCliView>::cli)
        }),
        ("wasi:cli/terminal-output", |l| {
            cli::terminal_output::add_to_linker::<T, WasiCli>(l, <T as WasiCliView>::cli)
        }),
        ("wasi:cli/terminal-stdin", |l| {
            cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, <T as WasiCliView>::cli)
        }),
        ("wasi:cli/terminal-stdout", |l| {
            cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, <T as WasiCliView>::cli)
        }),
        ("wasi:cli/terminal-stderr", |l| {
            cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, <T as WasiCliView>::cli)
        }),
        ("wasi:clocks/wall-clock", |l| {
            clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, <T as WasiClocksView>::clocks)
        }),
        ("wasi:clocks/monotonic-clock", |l| {
            clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(
                l,
                <T as WasiClocksView>::clocks,
            )
        }),
        ("wasi:random/random", |l| {
            random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())
        }),
        ("wasi:random/insecure", |l| {
            random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())
        }),
        ("wasi:random/insecure-seed", |l| {
            random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())
        }),
    ]
}

/// Link all of them (plain WASI commands).
pub fn add_to_linker<T: WasiView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    for (_, add) in interfaces::<T>() {
        add(l)?;
    }
    Ok(())
}
