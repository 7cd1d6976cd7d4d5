//! Firewall rules in the host: masquerade (bridge's `ipMasq`), keyed by network and container,
//! and the MAC spoof check (bridge's `macspoofchk`), keyed by container and interface.

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

/// MAC spoof check (bridge's `macspoofchk`): frames entering the bridge from `host_ifname`
/// pass only with source MAC `mac`. Keyed by container and `ifname`, as the reference keys
/// them; installing again replaces the rules. `network` is named in the host's audit line.
pub fn mac_spoof_check_add(
    network: &str,
    container_id: &str,
    ifname: &str,
    host_ifname: &str,
    mac: &str,
) -> Result<(), CniError> {
    firewall::mac_spoof_check_add(network, container_id, ifname, host_ifname, mac).map_err(error)
}

/// Remove the MAC spoof check of (container, `ifname`); succeeds when there is none.
pub fn mac_spoof_check_del(
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<(), CniError> {
    firewall::mac_spoof_check_del(network, container_id, ifname).map_err(error)
}
