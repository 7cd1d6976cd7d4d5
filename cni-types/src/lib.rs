//! The CNI types shared by the native host and by the guest SDK (compiled for `wasm32-wasip2`).
//!
//! Everything here follows the CNI specification 1.1.0 and reproduces the observable behaviour of
//! the reference Go library (`containernetworking/cni`): the same error codes and messages, the
//! same version rules, and the same JSON for results of every spec version. Nothing in this crate
//! touches the operating system, so it builds for WebAssembly as well as for the host.
//!
//! - [`error`]: [`CniError`] and the well-known error [`codes`].
//! - [`version`]: supported spec versions, version parsing and the VERSION answer.
//! - [`validate`]: container id, network name and interface name rules.
//! - [`args`]: `CNI_ARGS` parsing.
//! - [`result`]: [`CniResult`] and its conversion to and from every version's JSON.
//! - [`config`]: [`NetConf`], the network configuration a plugin receives.

pub mod args;
pub mod config;
pub mod error;
pub mod result;
pub mod validate;
pub mod version;
mod wit;

mod util;

pub use config::*;
pub use error::{codes, CniError};
pub use result::*;
pub use version::*;
