//! host-device: moves an existing device of the host into the container (renamed to
//! CNI_IFNAME, its host name kept as the interface alias) and back on DEL, with optional IPAM.
//!
//! Parity with the reference plugin, except where the spec or safety asks for more: DEL
//! succeeds when the netns or the interface is gone (and still releases the IPAM
//! addresses), an existing CNI_IFNAME fails the ADD before anything moves, and a failed ADD
//! puts the device back in the host under its own name.

mod config;

use std::net::IpAddr;

use config::{fail, Config, Selector};
use ipnet::IpNet;
use wasm_cni_sdk::{
    host_netns, ipam, log, CniError, CniResult, Context, DeviceSelector, Interface, Link, LinkInfo,
    NetError, Netns, Plugin, Route, RouteSpec,
};

struct HostDevice;

impl Plugin for HostDevice {
    fn add(ctx: &Context, netns: &Netns) -> Result<CniResult, CniError> {
        let conf = Config::load(ctx)?;
        let host = host_netns()?;
        let dev = find_device(&host, &conf.selector()?)?;
        if netns.link(&ctx.ifname)?.is_some() {
            return Err(fail(format!(
                "failed to move link: the container already has an interface named {:?}",
                ctx.ifname
            )));
        }
        let original = move_in(&dev, &host, netns, &ctx.ifname)?;
        attach(ctx, &conf, netns, &dev).inspect_err(|_| move_back(&dev, &host, &original))
    }

    fn del(ctx: &Context, netns: Option<&Netns>) -> Result<(), CniError> {
        let conf = Config::load(ctx)?;
        // A gone netns took the device with it (a physical one went back to the initial
        // netns): there is nothing left to move, only the addresses to release.
        if let Some(netns) = netns {
            move_out(netns, &ctx.ifname)?;
        }
        if let Some(ipam_type) = &conf.ipam {
            ipam::del(ipam_type, &ctx.config_json)?;
        }
        Ok(())
    }

    fn check(ctx: &Context, netns: &Netns) -> Result<(), CniError> {
        let conf = Config::load(ctx)?;
        if let Some(ipam_type) = &conf.ipam {
            ipam::check(ipam_type, &ctx.config_json)?;
        }
        let prev = ctx
            .prev_result()
            .ok_or_else(|| fail("Required prevResult missing"))?;
        let Some(iface) = prev
            .interfaces
            .iter()
            .find(|i| i.name == ctx.ifname && i.sandbox == ctx.netns_path)
        else {
            return Err(fail(format!(
                "Sandbox in prevResult  doesn't match configured netns: {}",
                ctx.netns_path
            )));
        };
        let dev = netns.link(&iface.name)?.ok_or_else(|| {
            fail(format!(
                "Container Interface name in prevResult: {} not found",
                iface.name
            ))
        })?;
        let info = dev.info()?;
        if !iface.mac.is_empty() && iface.mac != info.mac {
            return Err(fail(format!(
                "Interface {} Mac {} doesn't match container Mac: {}",
                iface.name, iface.mac, info.mac
            )));
        }
        check_addresses(netns, &dev, &ctx.ifname, prev)?;
        check_routes(netns, prev)
    }
}

wasm_cni_sdk::export_plugin!(HostDevice, capabilities = ["host-netns", "ipam"]);

/// The device the selector names in the host netns (errors worded as the reference's).
fn find_device(host: &Netns, selector: &Selector) -> Result<Link, CniError> {
    let not_found = |msg: String| fail(format!("failed to find host device: {msg}"));
    let found = match selector {
        Selector::Name(name) => host.find_device(&DeviceSelector::Name(name.clone()))?,
        Selector::Hwaddr(mac) => host.find_device(&DeviceSelector::Hwaddr(mac.clone()))?,
        Selector::KernelPath(path) => kernel_path_device(host, path)?,
        Selector::PciBusId(id) => host.find_device(&DeviceSelector::PciBusId(id.clone()))?,
    };
    found.ok_or_else(|| {
        not_found(match selector {
            Selector::Name(_) => "Link not found".into(),
            Selector::Hwaddr(_) => "failed to find physical interface".into(),
            Selector::KernelPath(path) => format!(
                "failed to find network devices at {:?}",
                format!("{path}/net")
            ),
            Selector::PciBusId(id) => format!("failed to find device name for pci address {id}"),
        })
    })
}

/// `kernelpath` names a device; its network devices are listed in `<path>/net` and the
/// reference takes the first name there (in name order) that is a link of this netns.
/// The path of a network device itself (`.../net/<name>`) is accepted too.
fn kernel_path_device(host: &Netns, path: &str) -> Result<Option<Link>, NetError> {
    let under = |p: String| host.find_device(&DeviceSelector::KernelPath(p));
    let Some(first) = under(format!("{path}/net"))? else {
        return Ok(match under(path.to_string())? {
            Some(dev) if path.ends_with(&format!("/net/{}", dev.info()?.name)) => Some(dev),
            _ => None,
        });
    };
    // The host answers in link order: look for a sibling that sorts before it.
    let first_name = first.info()?.name;
    let mut names: Vec<String> = host
        .links()?
        .into_iter()
        .map(|l| l.name)
        .filter(|n| *n < first_name)
        .collect();
    names.sort();
    for name in names {
        if let Some(dev) = under(format!("{path}/net/{name}"))? {
            return Ok(Some(dev));
        }
    }
    Ok(Some(first))
}

/// Record the host name as the alias, move the device into the container as `ifname` (which
/// the caller found free there) and bring it up. Returns the device as it was in the host.
fn move_in(dev: &Link, host: &Netns, netns: &Netns, ifname: &str) -> Result<LinkInfo, CniError> {
    let original = dev.info()?;
    let name = &original.name;
    dev.set_alias(name).map_err(|e| {
        fail(format!(
            "failed to move link: failed to set alias to {name:?}: {e}"
        ))
    })?;
    if let Err(e) = dev.move_to(netns, Some(ifname)) {
        let _ = dev.set_alias(&original.alias);
        return Err(fail(format!(
            "failed to move link: failed to move {name:?} into the container as {ifname:?}: {e}"
        )));
    }
    if let Err(e) = dev.set_up() {
        move_back(dev, host, &original);
        return Err(fail(format!(
            "failed to move link: failed to set {ifname:?} up: {e}"
        )));
    }
    Ok(original)
}

/// Undo [`move_in`] after a failed ADD: the device goes back under its own name, alias and
/// up state. Best effort: the ADD's error is what the runtime needs to see.
fn move_back(dev: &Link, host: &Netns, original: &LinkInfo) {
    let _ = dev.set_down();
    if let Err(e) = dev.move_to(host, Some(&original.name)) {
        log::error(&format!(
            "rollback: could not move {:?} back to the host: {e}",
            original.name
        ));
        return;
    }
    let _ = dev.set_alias(&original.alias);
    if original.up {
        let _ = dev.set_up();
    }
}

/// The result of an ADD, with the IPAM plugin's addresses and routes applied to the device.
fn attach(ctx: &Context, conf: &Config, netns: &Netns, dev: &Link) -> Result<CniResult, CniError> {
    let info = dev.info()?;
    let iface = Interface {
        name: info.name,
        mac: info.mac,
        sandbox: ctx.netns_path.clone(),
        ..Default::default()
    };
    let Some(ipam_type) = &conf.ipam else {
        return Ok(CniResult {
            interfaces: vec![iface],
            ..Default::default()
        });
    };
    let mut result = ipam::add(ipam_type, &ctx.config_json)?;
    let configured = if result.ips.is_empty() {
        Err(fail("IPAM plugin returned missing IP config"))
    } else {
        configure(netns, dev, &ctx.ifname, &result)
    };
    if let Err(e) = configured {
        let _ = ipam::del(ipam_type, &ctx.config_json);
        return Err(e);
    }
    for ip in &mut result.ips {
        ip.interface = Some(0);
    }
    result.interfaces = vec![iface];
    result.dns = conf.dns.clone();
    Ok(result)
}

/// A route's gateway: its own, else the first address gateway of its family (as the
/// reference's `ipam.ConfigureIface` installs it).
fn gateway(result: &CniResult, route: &Route) -> Option<IpAddr> {
    let v4 = route.dst.addr().is_ipv4();
    route.gw.or_else(|| {
        result
            .ips
            .iter()
            .filter_map(|ip| ip.gateway)
            .find(|gw| gw.is_ipv4() == v4)
    })
}

/// Apply the IPAM result to the device, as the reference's `ipam.ConfigureIface`: every
/// address, then every route (see [`gateway`]).
fn configure(netns: &Netns, dev: &Link, ifname: &str, result: &CniResult) -> Result<(), CniError> {
    if result.ips.iter().any(|ip| ip.address.addr().is_ipv6()) {
        for name in ["lo", ifname] {
            let key = format!("net/ipv6/conf/{name}/disable_ipv6");
            if netns.sysctl(&key).is_ok_and(|v| v != "0") {
                netns.set_sysctl(&key, "0").map_err(|e| {
                    fail(format!("failed to enable IPv6 for interface {name:?}: {e}"))
                })?;
            }
        }
    }
    for ip in &result.ips {
        dev.add_address(&ip.address).map_err(|e| {
            fail(format!(
                "failed to add IP addr {} to {ifname:?}: {e}",
                ip.address
            ))
        })?;
    }
    for route in &result.routes {
        let gw = gateway(result, route);
        let spec = RouteSpec {
            dst: route.dst.to_string(),
            gw: gw.map(|g| g.to_string()),
            mtu: route.mtu,
            advmss: route.advmss,
            priority: route.priority,
            table: route.table,
            scope: route.scope.and_then(|s| u8::try_from(s).ok()),
        };
        dev.add_route(&spec).map_err(|e| {
            let via = gw.map_or("<nil>".to_string(), |g| g.to_string());
            fail(format!(
                "failed to add route '{} via {via} dev {ifname}': {e}",
                route.dst
            ))
        })?;
    }
    Ok(())
}

/// Move the container's CNI_IFNAME back to the host under the name kept in its alias (down,
/// as its earlier state is unknown; alias cleared). Nothing to do when it is not there; an
/// interface without an alias was not put there by host-device and is left alone.
fn move_out(netns: &Netns, ifname: &str) -> Result<(), CniError> {
    let Some(dev) = netns.link(ifname)? else {
        return Ok(());
    };
    let info = dev.info()?;
    let original = info.alias.clone();
    if original.is_empty() {
        log::warn(&format!(
            "{ifname} has no alias, so host-device did not move it here: leaving it"
        ));
        return Ok(());
    }
    let restore_failed = |why: String| {
        fail(format!(
            "failed to restore {ifname:?} to original name {original:?}: {why}"
        ))
    };
    let host = host_netns()?;
    // The kernel moves a device under its current name and renames it afterwards (the new
    // name only replaces a current name that is taken), so a clash would leave it in the host
    // as CNI_IFNAME: refuse first, and keep the alias until it is back.
    if host.link(&original)?.is_some() {
        return Err(restore_failed(format!(
            "the host already has a link named {original:?}"
        )));
    }
    if let Err(e) = dev
        .set_down()
        .and_then(|()| dev.move_to(&host, Some(&original)))
    {
        if info.up {
            let _ = dev.set_up();
        }
        return Err(restore_failed(e.to_string()));
    }
    if let Err(e) = dev.set_alias("") {
        log::warn(&format!("{original} is back, but its alias stays: {e}"));
    }
    Ok(())
}

/// CHECK: every address of the previous result is on the device, with its prefix route.
fn check_addresses(
    netns: &Netns,
    dev: &Link,
    ifname: &str,
    prev: &CniResult,
) -> Result<(), CniError> {
    let addresses = dev.addresses()?;
    for ip in &prev.ips {
        if !addresses.contains(&ip.address) {
            return Err(fail(format!(
                "Failed to match addr {} on interface {ifname}",
                ip.address
            )));
        }
        let prefix = ip.address.trunc();
        if !routes(netns, prefix.addr().is_ipv6())?
            .iter()
            .any(|(dst, _)| *dst == prefix)
        {
            let gw = ip.gateway.map_or("<nil>".to_string(), |g| g.to_string());
            return Err(fail(format!(
                "Failed to find Gateway {gw} for interface {ifname}"
            )));
        }
    }
    Ok(())
}

/// CHECK: every route of the previous result is in the main table, through the gateway ADD
/// gave it (a default route matches whatever its gateway, as in the reference). The
/// reference compares a route without `gw` against routes without one, so it fails CHECK
/// after its own ADD whenever the IPAM result relies on the address's gateway.
fn check_routes(netns: &Netns, prev: &CniResult) -> Result<(), CniError> {
    for route in &prev.routes {
        let want = gateway(prev, route);
        let found = routes(netns, route.dst.addr().is_ipv6())?
            .iter()
            .any(|(dst, gw)| *dst == route.dst && (route.dst.prefix_len() == 0 || *gw == want));
        if !found {
            let via = want.map_or("<nil>".to_string(), |g| g.to_string());
            return Err(fail(format!(
                "Expected Route {} via {via} not found in routing table",
                route.dst
            )));
        }
    }
    Ok(())
}

/// The main table's routes of one family as (destination, gateway).
fn routes(netns: &Netns, ipv6: bool) -> Result<Vec<(IpNet, Option<IpAddr>)>, CniError> {
    Ok(netns
        .routes(ipv6)?
        .into_iter()
        .filter_map(|r| {
            let dst = r.dst.parse().ok()?;
            Some((dst, r.gw.and_then(|g| g.parse().ok())))
        })
        .collect())
}
