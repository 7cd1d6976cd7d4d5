//! bridge: attaches containers to a Linux bridge in the host through a veth pair, with
//! addresses from the IPAM plugin the config names (parity with the reference `bridge`
//! plugin of containernetworking/plugins).
//!
//! ADD creates (or reuses) the bridge, creates the veth pair across the two namespaces in one
//! step, enslaves the host end, asks IPAM for addresses and configures the container; with
//! `isGateway` the bridge gets the gateway addresses and forwarding is enabled, with `ipMasq`
//! the host masquerades the container's traffic, with `macspoofchk` the host drops frames from
//! the container's veth whose source MAC is not the container's (nftables, in the reference's
//! layout). Unlike the reference, a failed ADD removes everything it created (veth, IP
//! reservation, spoof-check and masquerade rules). DEL never removes the bridge and succeeds
//! when things are already gone; it removes the spoof check also when the netns is gone.
//!
//! - [`config`] — the configuration and its validation
//! - [`addressing`] — gateways, default routes and routes from the IPAM result
//! - [`links`] — bridge, veth, ports, vlans and the bridge's addresses in the host
//! - [`gateway`] — with `isGateway`: gateway addresses and forwarding in the host
//! - [`iface`] — the container interface's addresses and routes
//! - [`check`] — CHECK
//! - [`rollback`] — undoing a failed ADD

mod addressing;
mod check;
mod config;
mod gateway;
mod iface;
mod links;
mod rollback;
#[cfg(test)]
mod tests;

use wasm_cni_sdk::{
    firewall, host_netns, ipam, CniError, CniResult, Context, Interface, Link, Netns, Plugin,
};

use crate::addressing::calc_gateways;
use crate::config::{error, Config};
use crate::links::{fail, Veth};
use crate::rollback::Rollback;

/// Where the container interface sits in the result's `interfaces`.
const CONTAINER_INDEX: u32 = 2;

struct Bridge;

fn load(ctx: &Context) -> Result<Config, CniError> {
    Config::parse(&ctx.config_json, &ctx.args)
}

/// The ipMasq backend for the host: as configured, or its default.
fn masq_backend(cfg: &Config) -> &str {
    cfg.ip_masq_backend.as_deref().unwrap_or("")
}

/// The layer-2 result: bridge, host veth and container interface (MACs of the first two are
/// filled in at the end, when they have settled).
fn base_result(ctx: &Context, cfg: &Config, veth: &Veth) -> CniResult {
    let named = |name: &str| Interface {
        name: name.to_string(),
        ..Default::default()
    };
    CniResult {
        interfaces: vec![
            named(&cfg.bridge),
            named(&veth.host_name),
            Interface {
                mac: veth.container_mac.clone(),
                sandbox: ctx.netns_path.clone(),
                ..named(&ctx.ifname)
            },
        ],
        ..Default::default()
    }
}

/// Install the MAC spoof check for the container's veth, its removal registered first (a
/// half-installed check is removed too).
fn spoof_check_add(
    ctx: &Context,
    cfg: &Config,
    host_ifname: &str,
    mac: &str,
    rollback: &mut Rollback<'_>,
) -> Result<(), CniError> {
    let (network, id, ifname) = (
        cfg.name.clone(),
        ctx.container_id.clone(),
        ctx.ifname.clone(),
    );
    rollback.push("spoof-check del".into(), move || {
        firewall::mac_spoof_check_del(&network, &id, &ifname)
    });
    firewall::mac_spoof_check_add(&cfg.name, &ctx.container_id, &ctx.ifname, host_ifname, mac)
}

/// The layer-3 part of ADD: addresses from IPAM into the container, gateways, masquerade;
/// each step that leaves something behind registers its undoing.
fn add_layer3<'a>(
    ctx: &Context,
    cfg: &Config,
    container: &Netns,
    (host, bridge): (&Netns, &Link),
    veth: &Veth,
    result: &mut CniResult,
    rollback: &mut Rollback<'a>,
) -> Result<(), CniError> {
    let ipam_result = ipam::add(&cfg.ipam_type, &ctx.config_json)?;
    let (ipam_type, config) = (cfg.ipam_type.clone(), ctx.config_json.clone());
    rollback.push(format!("IPAM DEL ({ipam_type})"), move || {
        ipam::del(&ipam_type, &config)
    });
    result.ips = ipam_result.ips;
    result.routes = ipam_result.routes;
    result.dns = ipam_result.dns;
    if result.ips.is_empty() {
        return Err(error("IPAM plugin returned missing IP config"));
    }
    let gateways = calc_gateways(
        result,
        cfg.is_gateway,
        cfg.is_default_gateway,
        CONTAINER_INDEX,
    );
    iface::configure(container, &veth.container, &ctx.ifname, result, cfg)?;
    if cfg.is_gateway {
        gateway::setup(
            host,
            bridge,
            cfg,
            &ctx.container_id,
            &gateways,
            &mut result.interfaces,
        )?;
    }
    if cfg.ip_masq {
        let addresses: Vec<_> = result.ips.iter().map(|ip| ip.address).collect();
        let backend = masq_backend(cfg).to_string();
        let (network, id) = (cfg.name.clone(), ctx.container_id.clone());
        // Registered first: a half-installed set of rules is removed too.
        rollback.push("masquerade del".into(), move || {
            firewall::masquerade_del(&network, &id, &backend)
        });
        firewall::masquerade_add(&cfg.name, &ctx.container_id, &addresses, masq_backend(cfg))?;
    }
    Ok(())
}

impl Plugin for Bridge {
    fn add(ctx: &Context, container: &Netns) -> Result<CniResult, CniError> {
        let cfg = load(ctx)?;
        cfg.check_for_add()?;
        let ifname = ctx.ifname.as_str();
        // Before anything is created (and before IPAM, so no address can leak).
        if container
            .link(ifname)
            .map_err(|e| fail("look up link", e))?
            .is_some()
        {
            return Err(error(format!(
                "container veth name provided ({ifname}) already exists"
            )));
        }
        let host = host_netns().map_err(|e| fail("failed to open the host netns", e))?;
        let bridge = links::ensure_bridge(&host, &cfg)?;

        let mut rollback = Rollback::new();
        let veth = links::create_veth(
            container,
            &host,
            &ctx.container_id,
            ifname,
            &cfg,
            &mut rollback,
        )?;
        links::attach_port(&host, &bridge, &veth.host, &veth.host_name, &cfg)?;
        let mut result = base_result(ctx, &cfg, &veth);
        if cfg.mac_spoof_check {
            // As the reference: as soon as the container's MAC is known, before IPAM.
            spoof_check_add(
                ctx,
                &cfg,
                &veth.host_name,
                &result.interfaces[2].mac,
                &mut rollback,
            )?;
        }
        if cfg.is_layer3() {
            add_layer3(
                ctx,
                &cfg,
                container,
                (&host, &bridge),
                &veth,
                &mut result,
                &mut rollback,
            )?;
        } else if !cfg.disable_container_interface {
            veth.container
                .set_up()
                .map_err(|e| fail(format!("failed to set {ifname:?} up"), e))?;
        }

        // The MACs as they are now: the host end may change, and the bridge takes its lowest
        // port's MAC unless its own was pinned.
        result.interfaces[1].mac = veth
            .host
            .info()
            .map_err(|e| fail(format!("failed to lookup {:?}", veth.host_name), e))?
            .mac;
        result.interfaces[0].mac = bridge
            .info()
            .map_err(|e| fail(format!("could not lookup {:?}", cfg.bridge), e))?
            .mac;
        if let Some(dns) = &cfg.dns {
            result.dns = dns.clone();
        }
        rollback.disarm();
        Ok(result)
    }

    fn del(ctx: &Context, container: Option<&Netns>) -> Result<(), CniError> {
        let cfg = load(ctx)?;
        if let Some(container) = container {
            // Deleting the container end removes the pair; already gone is fine.
            if let Some(link) = container
                .link(&ctx.ifname)
                .map_err(|e| fail("look up link", e))?
            {
                match link.delete() {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(fail(format!("failed to delete {:?}", ctx.ifname), e)),
                }
            }
        }
        // Every cleanup step runs even when an earlier one fails (a failing nft must not keep
        // the addresses reserved); the first failure is the answer, and a retried DEL redoes
        // only what is left.
        let mut first: Option<CniError> = None;
        let mut step = |r: Result<(), CniError>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        if cfg.is_layer3() {
            step(ipam::del(&cfg.ipam_type, &ctx.config_json));
        }
        // Both keyed by the container, not the netns: removed also when the netns is long gone
        // (the reference leaves the spoof check behind then).
        if cfg.mac_spoof_check {
            step(firewall::mac_spoof_check_del(
                &cfg.name,
                &ctx.container_id,
                &ctx.ifname,
            ));
        }
        if cfg.is_layer3() && cfg.ip_masq {
            step(firewall::masquerade_del(
                &cfg.name,
                &ctx.container_id,
                masq_backend(&cfg),
            ));
        }
        first.map_or(Ok(()), Err)
    }

    fn check(ctx: &Context, container: &Netns) -> Result<(), CniError> {
        let cfg = load(ctx)?;
        check::check(ctx, container, &cfg)
    }
}

wasm_cni_sdk::export_plugin!(Bridge, capabilities = ["host-netns", "ipam", "firewall"]);
