//! The links ADD creates in the host: the bridge (created once, shared), the veth pair and its
//! port settings, the bridge's gateway addresses and the vlan gateway interface.

use std::hash::BuildHasher;

use ipnet::IpNet;
use wasm_cni_sdk::{log, CniError, Link, NetError, NetErrorKind, Netns};

use crate::addressing::plan_gateway_address;
use crate::config::{error, Config};
use crate::rollback::Rollback;

/// A host failure with what was being done in front; a policy denial keeps its own code.
pub fn fail(context: impl std::fmt::Display, e: NetError) -> CniError {
    let mut err = CniError::from(e.clone());
    err.msg = format!("{context}: {}", e.message);
    err
}

/// Best effort, as the reference does it for the same sysctls (it ignores their errors).
pub fn try_sysctl(ns: &Netns, key: &str, value: &str) {
    if let Err(e) = ns.set_sysctl(key, value) {
        log::debug(&format!("sysctl {key}={value}: {e}"));
    }
}

/// The bridge `name` in `host`, created when missing (the reference's `ensureBridge`).
/// Concurrent ADDs may race to create it: `exists` means another one won, so look it up.
pub fn ensure_bridge(host: &Netns, cfg: &Config) -> Result<Link, CniError> {
    let name = &cfg.bridge;
    let wrap = |msg: String| error(format!("failed to create bridge {name:?}: {msg}"));
    let lookup = || host.link(name).map_err(|e| fail("look up bridge", e));
    // Usually it exists: look first, so the host does not audit a failed create every time.
    let mut created = lookup()?;
    for _ in 0..3 {
        if created.is_some() {
            break;
        }
        match host.create_bridge(name, cfg.mtu, cfg.vlan_filtering()) {
            Ok(link) => created = Some(link),
            // Another ADD created it meanwhile (or it vanished again: then retry).
            Err(e) if e.kind == NetErrorKind::Exists => created = lookup()?,
            Err(e) => {
                let mut err = fail(format!("could not add {name:?}"), e);
                err.msg = format!("failed to create bridge {name:?}: {}", err.msg);
                return Err(err);
            }
        }
    }
    let br = created.ok_or_else(|| wrap(format!("could not look up {name:?}")))?;
    let info = br
        .info()
        .map_err(|e| fail(format!("could not lookup {name:?}"), e))?;
    if info.kind != "bridge" {
        return Err(wrap(format!("{name:?} already exists but is not a bridge")));
    }
    if cfg.promisc_mode && !info.promisc {
        br.set_promisc(true).map_err(|e| {
            fail(
                format!(
                    "failed to create bridge {name:?}: could not set promiscuous mode on {name:?}"
                ),
                e,
            )
        })?;
    }
    // We want to own the routes of this interface.
    try_sysctl(host, &format!("net/ipv6/conf/{name}/accept_ra"), "0");
    if !info.up {
        br.set_up()
            .map_err(|e| fail(format!("failed to set {name:?} up"), e))?;
    }
    Ok(br)
}

/// `veth` and 8 hex digits: random (the host's WASI random seeds the hasher), the attempt mixed
/// in so that a retry after a clash picks another name.
pub fn veth_name(container_id: &str, ifname: &str, attempt: u32) -> String {
    let state = std::collections::hash_map::RandomState::new();
    let h = state.hash_one((container_id, ifname, attempt));
    format!("veth{:08x}", (h ^ (h >> 32)) as u32)
}

/// The container and host ends of a new veth pair.
pub struct Veth {
    pub container: Link,
    /// The container end's MAC, read once it existed (it does not change: a configured MAC is
    /// set at creation).
    pub container_mac: String,
    pub host: Link,
    pub host_name: String,
}

/// Create the pair in one step: `ifname` in the container, a fresh `veth…` name in the host
/// (the reference's `ip.SetupVeth`), registering its removal with `rollback`.
pub fn create_veth<'a>(
    container: &'a Netns,
    host: &Netns,
    ctx_id: &str,
    ifname: &str,
    cfg: &Config,
    rollback: &mut Rollback<'a>,
) -> Result<Veth, CniError> {
    for attempt in 0..10 {
        let host_name = veth_name(ctx_id, ifname, attempt);
        match container.create_veth(ifname, &host_name, host, cfg.mtu, cfg.mac.as_deref()) {
            Ok((cont, hostv)) => {
                let info = cont
                    .info()
                    .map_err(|e| fail(format!("failed to lookup {ifname:?}"), e))?;
                let index = info.index;
                rollback.push(format!("delete veth {ifname}"), move || {
                    // Deleting one end deletes the pair.
                    match container.link_by_index(index) {
                        Ok(Some(l)) => l.delete().map_err(Into::into),
                        Ok(None) => Ok(()),
                        Err(e) => Err(e.into()),
                    }
                });
                return Ok(Veth {
                    container: cont,
                    container_mac: info.mac,
                    host: hostv,
                    host_name,
                });
            }
            Err(e) if e.kind == NetErrorKind::Exists => {
                if container
                    .link(ifname)
                    .map_err(|e| fail("look up link", e))?
                    .is_some()
                {
                    return Err(error(format!(
                        "container veth name provided ({ifname}) already exists"
                    )));
                }
                if host
                    .link(&host_name)
                    .map_err(|e| fail("look up link", e))?
                    .is_none()
                {
                    return Err(fail("failed to make veth pair", e));
                }
                // The random host name is taken: draw another.
            }
            Err(e) => return Err(fail("failed to make veth pair", e)),
        }
    }
    Err(error("failed to find a unique veth name"))
}

/// Bring the host end up, enslave it to the bridge and set its port flags and vlans (the rest
/// of the reference's `setupVeth`).
pub fn attach_port(
    host: &Netns,
    bridge: &Link,
    veth: &Link,
    veth_name: &str,
    cfg: &Config,
) -> Result<(), CniError> {
    veth.set_up()
        .map_err(|e| fail(format!("failed to set {veth_name:?} up"), e))?;
    try_sysctl(host, &format!("net/ipv6/conf/{veth_name}/accept_ra"), "0");
    veth.set_master(Some(bridge)).map_err(|e| {
        fail(
            format!("failed to connect {veth_name:?} to bridge {}", cfg.bridge),
            e,
        )
    })?;
    veth.set_bridge_port(Some(cfg.hairpin_mode), None)
        .map_err(|e| fail(format!("failed to setup hairpin mode for {veth_name}"), e))?;
    if cfg.port_isolation {
        veth.set_bridge_port(None, Some(true))
            .map_err(|e| fail(format!("failed to set isolation mode for {veth_name}"), e))?;
    }
    setup_vlans(
        veth,
        veth_name,
        cfg.vlan,
        &cfg.vlan_trunk,
        cfg.preserve_default_vlan,
    )
}

/// The port's vlans: `vlan` as its untagged PVID (access port), `trunk` tagged; the bridge's
/// default vlan (1) is removed unless preserved.
fn setup_vlans(
    veth: &Link,
    veth_name: &str,
    vlan: u16,
    trunk: &[u16],
    preserve_default: bool,
) -> Result<(), CniError> {
    if (vlan != 0 || !trunk.is_empty()) && !preserve_default {
        // The kernel gives a new port the bridge's default_pvid, 1 unless changed. (The host
        // has no vlan listing yet, so a changed default_pvid is left alone.)
        match veth.del_bridge_vlan(1, false) {
            Ok(()) => {}
            Err(e) if e.is_not_found() || e.kind == NetErrorKind::InvalidArgument => {}
            Err(e) => {
                return Err(fail(
                    format!("failed to remove default vlan on interface {veth_name:?}"),
                    e,
                ))
            }
        }
    }
    if vlan != 0 {
        veth.add_bridge_vlan(vlan, true, true, false).map_err(|e| {
            fail(
                format!("failed to setup vlan tag on interface {veth_name:?}"),
                e,
            )
        })?;
    }
    for v in trunk {
        veth.add_bridge_vlan(*v, false, false, false).map_err(|e| {
            fail(
                format!("failed to setup vlan tag on interface {veth_name:?}"),
                e,
            )
        })?;
    }
    Ok(())
}

/// The vlan gateway interface `<bridge>.<vlan>` (the reference's `ensureVlanInterface`): one
/// end of a veth pair in the host, its peer a port of the bridge in that vlan. Shared by every
/// container of the vlan, so never rolled back.
pub fn ensure_vlan_interface(
    host: &Netns,
    bridge: &Link,
    cfg: &Config,
    ctx_id: &str,
) -> Result<Link, CniError> {
    let name = format!("{}.{}", cfg.bridge, cfg.vlan);
    if let Some(link) = host.link(&name).map_err(|e| fail("look up link", e))? {
        return Ok(link);
    }
    let mtu = bridge.info().map_err(|e| fail("look up bridge", e))?.mtu;
    let mut created = None;
    for attempt in 0..10 {
        let peer = veth_name(ctx_id, &name, attempt);
        match host.create_veth(&name, &peer, host, Some(mtu), None) {
            Ok((gw, port)) => {
                created = Some((gw, port, peer));
                break;
            }
            Err(e) if e.kind == NetErrorKind::Exists => {
                // Another ADD created it meanwhile.
                if let Some(link) = host.link(&name).map_err(|e| fail("look up link", e))? {
                    return Ok(link);
                }
            }
            Err(e) => return Err(fail(format!("faild to create vlan gateway {name:?}"), e)),
        }
    }
    let (gw, port, peer) = created.ok_or_else(|| error("failed to find a unique veth name"))?;
    let port_cfg = Config {
        hairpin_mode: false,
        port_isolation: false,
        ..cfg.clone()
    };
    let r = attach_port(host, bridge, &port, &peer, &port_cfg).and_then(|()| {
        gw.set_up()
            .map_err(|e| fail(format!("failed to up {name:?}"), e))
    });
    if let Err(e) = r {
        let _ = gw.delete();
        return Err(error(format!(
            "faild to create vlan gateway {name:?}: {}",
            e.msg
        )));
    }
    Ok(gw)
}

/// Put the gateway address `want` on `link` (the bridge or the vlan interface), as the
/// reference's `ensureAddr`: present already is fine, and so is `exists` from a concurrent ADD.
pub fn ensure_gateway_address(
    link: &Link,
    link_name: &str,
    want: IpNet,
    force: bool,
) -> Result<(), CniError> {
    let existing = link
        .addresses()
        .map_err(|e| fail("could not get list of IP addresses", e))?;
    let (remove, add) = plan_gateway_address(&existing, want, force).map_err(|_| {
        error(format!(
            "{link_name:?} already has an IP address different from {want}"
        ))
    })?;
    for old in remove {
        link.del_address(&old)
            .map_err(|e| fail(format!("could not remove IP address from {link_name:?}"), e))?;
    }
    if !add {
        return Ok(());
    }
    match link.add_address(&want) {
        Ok(()) => {}
        Err(e) if e.kind == NetErrorKind::Exists => {}
        Err(e) => {
            return Err(fail(
                format!("could not add IP address to {link_name:?}"),
                e,
            ))
        }
    }
    // Pin the bridge's MAC: otherwise it follows the lowest port MAC as ports come and go.
    let mac = link
        .info()
        .map_err(|e| fail("could not set bridge's mac", e))?
        .mac;
    link.set_mac(&mac)
        .map_err(|e| fail("could not set bridge's mac", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_veth_and_8_hex_digits_and_vary() {
        let a = veth_name("c1", "eth0", 0);
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("veth"));
        assert!(a[4..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let b = veth_name("c1", "eth0", 1);
        let c = veth_name("c1", "eth0", 0);
        assert!(a != b || a != c, "names are random per call");
    }
}
