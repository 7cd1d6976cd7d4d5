//! With `isGateway`: the gateway addresses on the bridge (or, with `vlan`, on the vlan's
//! gateway interface) and forwarding in the host (the gateway part of the reference's
//! `cmdAdd`).

use wasm_cni_sdk::{CniError, Interface, Link, Netns};

use crate::addressing::Gateways;
use crate::config::Config;
use crate::links::{self, fail};

/// `context: message`, keeping the code.
fn prefixed(context: &str) -> impl Fn(CniError) -> CniError + '_ {
    move |e| CniError {
        msg: format!("{context}: {}", e.msg),
        ..e
    }
}

/// Put every gateway on the bridge (or the vlan interface, which is then appended to
/// `interfaces`) and turn on forwarding for each family that has one.
pub fn setup(
    host: &Netns,
    bridge: &Link,
    cfg: &Config,
    container_id: &str,
    gateways: &Gateways,
    interfaces: &mut Vec<Interface>,
) -> Result<(), CniError> {
    let mut vlan_link: Option<(Link, String)> = None;
    for (v6, gws) in [(false, &gateways.v4), (true, &gateways.v6)] {
        for gw in gws {
            if cfg.vlan == 0 {
                links::ensure_gateway_address(bridge, &cfg.bridge, *gw, cfg.force_address)
                    .map_err(prefixed("failed to set bridge addr"))?;
                continue;
            }
            if vlan_link.is_none() {
                let link = links::ensure_vlan_interface(host, bridge, cfg, container_id)
                    .map_err(prefixed("failed to create vlan interface"))?;
                let info = link
                    .info()
                    .map_err(|e| fail("failed to create vlan interface", e))?;
                interfaces.push(Interface {
                    name: info.name.clone(),
                    mac: info.mac,
                    ..Default::default()
                });
                vlan_link = Some((link, info.name));
            }
            let (link, name) = vlan_link.as_ref().expect("created above");
            links::ensure_gateway_address(link, name, *gw, cfg.force_address).map_err(prefixed(
                "failed to set vlan interface for bridge with addr",
            ))?;
        }
        if !gws.is_empty() {
            enable_forwarding(host, v6)?;
        }
    }
    Ok(())
}

/// Turn on forwarding in the host for a family (read first: nothing to write when it is on).
fn enable_forwarding(host: &Netns, v6: bool) -> Result<(), CniError> {
    let key = if v6 {
        "net.ipv6.conf.all.forwarding"
    } else {
        "net.ipv4.ip_forward"
    };
    if host.sysctl(key).is_ok_and(|v| v == "1") {
        return Ok(());
    }
    host.set_sysctl(key, "1")
        .map_err(|e| fail("failed to enable forwarding", e))
}
