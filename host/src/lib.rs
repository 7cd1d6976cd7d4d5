//! wasm-cni: the native host of sandboxed CNI plugins.
//!
//! The architecture, one module per concern:
//! - [`cni`]: the CNI protocol (environment, stdin, versions, output), done natively before any
//!   guest runs, the way Go's `skel` does it.
//! - [`sandbox`]: the wasmtime engine, precompiled artifacts and the two kinds of guest
//!   (WIT plugin components and plain WASI CNI programs).
//! - [`caps`]: the capabilities a guest can be handed (network namespaces and links, logging);
//!   all real netlink work happens here.
//! - [`policy`]: what a guest is granted and the limits it runs under.
//! - [`plugin`]: one CNI exec, from argv[0] to the JSON on stdout.
//! - [`log`]: the host's structured log.
//! - [`cli`]: operator tooling (`inspect`, `validate`).

pub mod caps;
pub mod cli;
pub mod cni;
pub mod log;
pub mod parallel;
pub mod plugin;
pub mod policy;
pub mod sandbox;

/// The memory allocator of the host binaries (`wasm-cni`, `wasm-cni-compile`), which are
/// static musl executables (xtask `host_build`: glibc's start-up alone costs ~0.3 ms per exec
/// in a VM). musl's own malloc made an exec's work ~40% slower (artifact load 240 → 450 µs);
/// mimalloc reserved a 1 GiB arena with huge pages and read sysfs at start. Doug Lea's
/// allocator (Rust port) needs no start-up and no C: a loopback ADD is then as fast as with
/// glibc's malloc and its peak RSS smaller (docs/bench.md). Tests keep the system allocator.
pub type Allocator = dlmalloc::GlobalDlmalloc;
