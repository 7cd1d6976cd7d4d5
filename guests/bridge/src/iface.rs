//! The container side of ADD: the interface's sysctls, addresses, state and routes (the
//! reference's `ipam.ConfigureIface` and the sysctls bridge sets around it).

use wasm_cni_sdk::{CniError, CniResult, Link, NetErrorKind, Netns};

use crate::addressing::{default_gateways, route_spec};
use crate::config::{error, Config};
use crate::links::{fail, try_sysctl};

/// Configure `link` (`ifname` in `container`) with the addresses and routes of `result`.
pub fn configure(
    container: &Netns,
    link: &Link,
    ifname: &str,
    result: &CniResult,
    cfg: &Config,
) -> Result<(), CniError> {
    if cfg.enable_dad {
        try_sysctl(
            container,
            &format!("net/ipv6/conf/{ifname}/enhanced_dad"),
            "1",
        );
        try_sysctl(
            container,
            &format!("net/ipv6/conf/{ifname}/accept_dad"),
            "1",
        );
    } else {
        try_sysctl(
            container,
            &format!("net/ipv6/conf/{ifname}/accept_dad"),
            "0",
        );
    }
    try_sysctl(
        container,
        &format!("net/ipv4/conf/{ifname}/arp_notify"),
        "1",
    );

    let mut ipv6_enabled = false;
    for ip in &result.ips {
        if !ipv6_enabled && ip.address.addr().is_ipv6() {
            enable_ipv6(container, ifname)?;
            ipv6_enabled = true;
        }
        link.add_address(&ip.address).map_err(|e| {
            fail(
                format!("failed to add IP addr {} to {ifname:?}", ip.address),
                e,
            )
        })?;
    }
    link.set_up()
        .map_err(|e| fail(format!("failed to set {ifname:?} UP"), e))?;

    let gateways = default_gateways(result);
    for route in &result.routes {
        let spec = route_spec(route, gateways);
        match link.add_route(&spec) {
            Ok(()) => {}
            // Duplicate routes: the first one wins, as in the reference.
            Err(e) if e.kind == NetErrorKind::Exists => {}
            Err(e) => {
                return Err(fail(
                    format!(
                        "failed to add route '{} via {} dev {ifname}'",
                        route.dst,
                        spec.gw.as_deref().unwrap_or("<nil>")
                    ),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// IPv6 must be enabled on `lo` and the interface before an IPv6 address is added.
fn enable_ipv6(container: &Netns, ifname: &str) -> Result<(), CniError> {
    for iface in ["lo", ifname] {
        let key = format!("net/ipv6/conf/{iface}/disable_ipv6");
        let Ok(value) = container.sysctl(&key) else {
            continue;
        };
        if value == "0" {
            continue;
        }
        container.set_sysctl(&key, "0").map_err(|e| {
            error(format!(
                "failed to enable IPv6 for interface {iface:?} ({key}={value}): {e}"
            ))
        })?;
    }
    Ok(())
}
