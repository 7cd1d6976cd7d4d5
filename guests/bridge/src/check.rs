//! CHECK: the state ADD left behind is still there (the reference's `cmdCheck`, with its
//! messages): the bridge, the container interface with its MAC, the veth peer enslaved to the
//! bridge, every address of prevResult on the interface and every route in the table.

use std::net::IpAddr;

use ipnet::IpNet;
use wasm_cni_sdk::{
    host_netns, ipam, CniError, CniResult, Context, Interface, LinkInfo, Netns, Route, RouteInfo,
};

use crate::addressing::default_gateways;
use crate::config::{error, Config};
use crate::links::fail;

/// The bridge and the container interface of prevResult, found by name (and sandbox) as the
/// reference finds them; an absent one is an empty interface (whose checks then fail).
pub fn find_interfaces(
    prev: &CniResult,
    bridge: &str,
    ifname: &str,
    netns_path: &str,
) -> (Interface, Interface) {
    let (mut br, mut cont) = (Interface::default(), Interface::default());
    for intf in &prev.interfaces {
        if intf.name == bridge {
            br = intf.clone();
        } else if intf.name == ifname && intf.sandbox == netns_path {
            cont = intf.clone();
        }
    }
    (br, cont)
}

/// Go's `%v` of a CNI 1.0 route: `{Dst:{IP:10.0.0.0 Mask:ffffff00} GW:<nil>}`.
pub fn go_route(route: &Route) -> String {
    let mask: String = match route.dst.netmask() {
        IpAddr::V4(m) => m.octets().iter().map(|b| format!("{b:02x}")).collect(),
        IpAddr::V6(m) => m.octets().iter().map(|b| format!("{b:02x}")).collect(),
    };
    let gw = route.gw.map_or("<nil>".to_string(), |g| g.to_string());
    format!("{{Dst:{{IP:{} Mask:{mask}}} GW:{gw}}}", route.dst.network())
}

/// Whether the main table has `route` as ADD installed it: a default route of its family
/// whatever its gateway (as the reference looks for it), any other route by destination and
/// gateway, the gateway being the route's own or else the family's default gateway.
pub fn route_present(
    table: &[RouteInfo],
    route: &Route,
    gateways: (Option<IpAddr>, Option<IpAddr>),
) -> bool {
    let dst = route.dst.trunc();
    let matches_dst = |r: &RouteInfo| r.dst.parse::<IpNet>().is_ok_and(|d| d == dst);
    if dst.prefix_len() == 0 {
        return table.iter().any(matches_dst);
    }
    let want_gw = route.gw.or(if dst.addr().is_ipv4() {
        gateways.0
    } else {
        gateways.1
    });
    table.iter().any(|r| {
        matches_dst(r) && r.gw.as_deref().and_then(|g| g.parse::<IpAddr>().ok()) == want_gw
    })
}

/// Whether the main table has a route to `address`'s subnet (the reference's gateway probe).
pub fn subnet_route_present(table: &[RouteInfo], address: &IpNet) -> bool {
    let subnet = address.trunc();
    table
        .iter()
        .any(|r| r.dst.parse::<IpNet>().is_ok_and(|d| d == subnet))
}

struct Found {
    index: u32,
    peer: Option<u32>,
}

/// The reference's `validateInterface`: the name is set, the link exists, the sandbox is
/// (or is not) set.
fn lookup(ns: &Netns, intf: &Interface, in_sandbox: bool) -> Result<LinkInfo, CniError> {
    if intf.name.is_empty() {
        return Err(error("Interface name missing "));
    }
    let info = ns
        .link(&intf.name)
        .map_err(|e| fail("look up link", e))?
        .map(|l| l.info())
        .transpose()
        .map_err(|e| fail("look up link", e))?
        .ok_or_else(|| error(format!("Interface name {} not found", intf.name)))?;
    if in_sandbox && intf.sandbox.is_empty() {
        return Err(error(format!(
            "Interface {} is expected to be in a sandbox",
            intf.name
        )));
    }
    if !in_sandbox && !intf.sandbox.is_empty() {
        return Err(error(format!(
            "Interface {} should not be in sandbox",
            intf.name
        )));
    }
    Ok(info)
}

fn validate_bridge(host: &Netns, intf: &Interface, cfg: &Config) -> Result<Found, CniError> {
    let info = lookup(host, intf, false)?;
    if info.kind != "bridge" {
        return Err(error(format!(
            "Interface {} does not have link type of bridge",
            intf.name
        )));
    }
    if !intf.mac.is_empty() && !intf.mac.eq_ignore_ascii_case(&info.mac) {
        return Err(error(format!(
            "Bridge interface {} Mac doesn't match: {}",
            intf.name, intf.mac
        )));
    }
    if info.promisc != cfg.promisc_mode {
        return Err(error(format!(
            "Bridge interface {} configured Promisc Mode {} doesn't match current state: {} ",
            intf.name, cfg.promisc_mode, info.promisc
        )));
    }
    Ok(Found {
        index: info.index,
        peer: None,
    })
}

fn validate_container(container: &Netns, intf: &Interface) -> Result<Found, CniError> {
    let info = lookup(container, intf, true)?;
    if info.kind != "veth" {
        return Err(error(format!(
            "Error: Container interface {} not of type veth",
            info.name
        )));
    }
    let peer = info.peer.ok_or_else(|| {
        error(format!(
            "Unable to obtain veth peer index for veth {}",
            info.name
        ))
    })?;
    if !intf.mac.is_empty() && !intf.mac.eq_ignore_ascii_case(&info.mac) {
        return Err(error(format!(
            "Interface {} Mac {} doesn't match container Mac: {}",
            intf.name, intf.mac, info.mac
        )));
    }
    Ok(Found {
        index: info.index,
        peer: Some(peer),
    })
}

/// Whether `intf` is the host end of the container's veth, enslaved to the bridge; links that
/// are not veths are not ours and are skipped.
fn is_bridge_veth(
    host: &Netns,
    intf: &Interface,
    br: &Found,
    cont: &Found,
) -> Result<bool, CniError> {
    let info = lookup(host, intf, false)?;
    if info.kind != "veth" {
        return Ok(false);
    }
    let peer = info.peer.ok_or_else(|| {
        error(format!(
            "Unable to obtain veth peer index for veth {}",
            info.name
        ))
    })?;
    if Some(info.index) != cont.peer || peer != cont.index || info.master != Some(br.index) {
        return Ok(false);
    }
    if !intf.mac.is_empty() && !intf.mac.eq_ignore_ascii_case(&info.mac) {
        return Err(error(format!(
            "Interface {} Mac doesn't match: {} not found",
            intf.name, intf.mac
        )));
    }
    Ok(true)
}

pub fn check(ctx: &Context, container: &Netns, cfg: &Config) -> Result<(), CniError> {
    if cfg.is_layer3() {
        ipam::check(&cfg.ipam_type, &ctx.config_json)?;
    }
    let prev = ctx
        .prev_result()
        .ok_or_else(|| error("Required prevResult missing"))?;
    let (br_if, cont_if) = find_interfaces(prev, &cfg.bridge, &ctx.ifname, &ctx.netns_path);
    let host = host_netns().map_err(|e| fail("failed to open the host netns", e))?;
    let br = validate_bridge(&host, &br_if, cfg)?;
    if ctx.netns_path != cont_if.sandbox {
        return Err(error(format!(
            "Sandbox in prevResult {} doesn't match configured netns: {}",
            cont_if.sandbox, ctx.netns_path
        )));
    }
    let cont = validate_container(container, &cont_if)?;
    let mut veth_found = false;
    for intf in &prev.interfaces {
        if intf.name == br_if.name || intf.name == cont_if.name {
            continue;
        }
        if is_bridge_veth(&host, intf, &br, &cont)? {
            veth_found = true;
            break;
        }
    }
    if !veth_found {
        return Err(error(format!(
            "CNI veth created for bridge {} was not found",
            cfg.bridge
        )));
    }

    let link = container
        .link(&ctx.ifname)
        .map_err(|e| fail("look up link", e))?
        .ok_or_else(|| error(format!("Cannot find container link {}", ctx.ifname)))?;
    let addresses = link
        .addresses()
        .map_err(|e| fail("Cannot obtain List of IP Addresses", e))?;
    let mut tables: [Option<Vec<RouteInfo>>; 2] = [None, None];
    let mut table = |v6: bool| -> Result<Vec<RouteInfo>, CniError> {
        let slot = &mut tables[usize::from(v6)];
        if slot.is_none() {
            *slot = Some(container.routes(v6).map_err(|e| fail("list routes", e))?);
        }
        Ok(slot.clone().unwrap_or_default())
    };
    for ip in &prev.ips {
        if !addresses.contains(&ip.address) {
            return Err(error(format!(
                "Failed to match addr {} on interface {}",
                ip.address, ctx.ifname
            )));
        }
        if !subnet_route_present(&table(ip.address.addr().is_ipv6())?, &ip.address) {
            return Err(error(format!(
                "Failed to find Gateway {} for interface {}",
                ip.gateway.map_or("<nil>".to_string(), |g| g.to_string()),
                ctx.ifname
            )));
        }
    }
    let gateways = default_gateways(prev);
    for route in &prev.routes {
        if route.table.is_some_and(|t| t != 254) {
            // Only the main table can be listed; a route elsewhere cannot be verified.
            continue;
        }
        if !route_present(&table(route.dst.addr().is_ipv6())?, route, gateways) {
            return Err(error(format!(
                "Expected Route {} not found in routing table",
                go_route(route)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, gw: Option<&str>) -> Route {
        Route::new(dst.parse().unwrap(), gw.map(|g| g.parse().unwrap()))
    }

    fn info(dst: &str, gw: Option<&str>) -> RouteInfo {
        RouteInfo {
            dst: dst.into(),
            gw: gw.map(String::from),
            oif: Some(2),
            priority: None,
            table: 254,
            scope: 0,
        }
    }

    fn iface(name: &str, sandbox: &str) -> Interface {
        Interface {
            name: name.into(),
            sandbox: sandbox.into(),
            ..Default::default()
        }
    }

    #[test]
    fn interfaces_are_found_by_name_and_sandbox() {
        let prev = CniResult {
            interfaces: vec![
                iface("cni0", ""),
                iface("veth1", ""),
                iface("eth0", "/other"),
                iface("eth0", "/ns"),
            ],
            ..Default::default()
        };
        let (br, cont) = find_interfaces(&prev, "cni0", "eth0", "/ns");
        assert_eq!(br.name, "cni0");
        assert_eq!(cont.sandbox, "/ns");
        let (br, cont) = find_interfaces(&prev, "br9", "eth1", "/ns");
        assert_eq!((br.name.as_str(), cont.name.as_str()), ("", ""));
    }

    #[test]
    fn routes_print_like_go() {
        assert_eq!(
            go_route(&route("10.99.0.0/16", None)),
            "{Dst:{IP:10.99.0.0 Mask:ffff0000} GW:<nil>}"
        );
        assert_eq!(
            go_route(&route("0.0.0.0/0", Some("10.1.0.1"))),
            "{Dst:{IP:0.0.0.0 Mask:00000000} GW:10.1.0.1}"
        );
    }

    #[test]
    fn routes_are_matched_as_add_installed_them() {
        let table = [
            info("0.0.0.0/0", Some("10.1.0.1")),
            info("10.1.0.0/24", None),
            info("10.99.0.0/16", Some("10.1.0.1")),
        ];
        let gws = (Some("10.1.0.1".parse().unwrap()), None);
        assert!(route_present(&table, &route("0.0.0.0/0", None), gws));
        assert!(route_present(
            &table,
            &route("0.0.0.0/0", Some("10.1.0.9")),
            gws
        ));
        assert!(route_present(&table, &route("10.99.0.0/16", None), gws));
        assert!(route_present(
            &table,
            &route("10.99.0.0/16", Some("10.1.0.1")),
            gws
        ));
        assert!(!route_present(
            &table,
            &route("10.99.0.0/16", Some("10.1.0.2")),
            gws
        ));
        assert!(!route_present(&table, &route("10.98.0.0/16", None), gws));
        assert!(!route_present(&[], &route("0.0.0.0/0", None), gws));
        assert!(subnet_route_present(
            &table,
            &"10.1.0.7/24".parse().unwrap()
        ));
        assert!(!subnet_route_present(
            &table,
            &"10.2.0.7/24".parse().unwrap()
        ));
    }
}
