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

pub mod alloc;
pub mod caps;
pub mod cli;
pub mod cni;
pub mod log;
pub mod parallel;
pub mod plugin;
pub mod policy;
pub mod sandbox;

pub use alloc::Allocator;
