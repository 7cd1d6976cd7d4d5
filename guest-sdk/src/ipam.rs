//! Delegating to the IPAM plugin named by the config (`ipam.type`), as the CNI spec describes.
//! The host runs a wasm-cni IPAM plugin in-process in its own sandbox and execs anything else.

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::wasm_cni::plugin::ipam::delegate;
use crate::__private::bindings::wasm_cni::plugin::ipam::Verb;
use crate::context::result_from_host;
#[cfg(not(target_arch = "wasm32"))]
use crate::fake::backend::delegate;
use crate::{CniError, CniResult};

fn error(e: crate::__private::WitError) -> CniError {
    CniError::new(e.code, e.msg, e.details)
}

/// IPAM ADD: the addresses (and routes, dns) for this container.
pub fn add(plugin_type: &str, config: &str) -> Result<CniResult, CniError> {
    match delegate(plugin_type, Verb::Add, config).map_err(error)? {
        Some(result) => result_from_host(result),
        None => Err(CniError::new(
            cni_types::codes::INTERNAL,
            format!("IPAM plugin {plugin_type} returned no result"),
            "",
        )),
    }
}

/// IPAM DEL: release what ADD allocated (succeeds when there is nothing).
pub fn del(plugin_type: &str, config: &str) -> Result<(), CniError> {
    delegate(plugin_type, Verb::Del, config)
        .map(|_| ())
        .map_err(error)
}

/// IPAM CHECK.
pub fn check(plugin_type: &str, config: &str) -> Result<(), CniError> {
    delegate(plugin_type, Verb::Check, config)
        .map(|_| ())
        .map_err(error)
}
