//! Masquerade rules in the host (bridge's `ipMasq`), keyed by network and container.

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::wasm_cni::plugin::firewall;
#[cfg(not(target_arch = "wasm32"))]
use crate::fake::backend as firewall;
use crate::CniError;

fn error(msg: String) -> CniError {
    CniError::new(cni_types::codes::INTERNAL, msg, "")
}

/// Masquerade traffic from `addresses` (CIDR) leaving their subnets. `backend`: "nftables"
/// (default when empty) or "iptables".
pub fn masquerade_add(
    network: &str,
    container_id: &str,
    addresses: &[ipnet::IpNet],
    backend: &str,
) -> Result<(), CniError> {
    let addrs: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    firewall::masquerade_add(network, container_id, &addrs, backend).map_err(error)
}

/// Remove this container's masquerade rules; succeeds when there are none.
pub fn masquerade_del(network: &str, container_id: &str, backend: &str) -> Result<(), CniError> {
    firewall::masquerade_del(network, container_id, backend).map_err(error)
}
