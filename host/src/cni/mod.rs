//! The CNI protocol: what a runtime hands a plugin and what it expects back.

mod request;

pub use request::{parse, Command, Parsed, Request, MAX_CONFIG_BYTES};

use cni_types::CniError;

/// The about text printed on stderr when CNI_COMMAND is unset (Go's skel does the same).
pub fn about(plugin: &str) -> String {
    format!(
        "CNI {plugin} plugin (wasm-cni {})\nCNI protocol versions supported: {}",
        env!("CARGO_PKG_VERSION"),
        cni_types::SUPPORTED_VERSIONS.join(", ")
    )
}

/// What one CNI exec prints on stdout and its exit status.
#[derive(Debug, PartialEq)]
pub struct Output {
    pub stdout: String,
    pub status: i32,
}

impl Output {
    pub fn success(stdout: String) -> Output {
        Output { stdout, status: 0 }
    }

    /// A CNI error: JSON on stdout and exit status 1, as the spec asks.
    pub fn error(err: &CniError, cni_version: &str) -> Output {
        Output {
            stdout: err.to_json(cni_version),
            status: 1,
        }
    }
}
