//! `wasm-cni-floor`: the native floor of `cargo xtask bench`.
//!
//! The kernel work of a loopback ADD and of a bridge ADD/DEL with host-local IPAM, done by a
//! plain Rust program with the host's own netns handling (`wasm_cni::caps::netns::Netns`: a
//! netlink socket per namespace, made on a short-lived thread that entered it, driven from a
//! current-thread tokio runtime) and the same rtnetlink requests, but no wasm: no engine, no
//! artifact, no guest, no capability checks, no policy, no logging. `ours − floor` in the bench
//! is what the sandbox costs per exec. It is a measuring instrument, not a CNI plugin: it
//! trusts its config, speaks only cniVersion 1.0.0 and keeps only what the bench needs.
//!
//! Exec'd like a plugin (CNI_* env, config on stdin); the config's `type` picks the work:
//! - `loopback` ADD: `lo` up, read its addresses, print the result.
//! - `bridge` ADD: what our bridge plugin does for the bench's config, in the same requests
//!   where it needs them: the container's interface must not exist; the bridge (created if
//!   missing, up), `accept_ra` off on it; the veth pair created in the container netns with
//!   its peer sent to the host netns (NLM_F_ECHO gives both indexes, as in the host); the host
//!   end up, `accept_ra` off, enslaved, hairpin off; an IPv4 from the host-local store in
//!   `ipam.dataDir` through the host's own store code (`caps::store`: locked, the container's
//!   existing reservation looked for as host-local does, the round-robin cursor, the address's
//!   file created exclusively); in the container
//!   `accept_dad` off, `arp_notify` on, the address, up; the gateway address on the bridge
//!   unless there; `ip_forward` on unless on; the bridge's and host end's MACs read last.
//! - `bridge` DEL: release the container's IP in the store (same code), delete its veth end.
//! - VERSION: the version JSON (process start only).

use std::fs;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth};
use serde_json::{json, Value};
use wasm_cni::caps::netns::Netns;
use wasm_cni::caps::store::{store_dir, Disk};
use wasm_cni::caps::{new_link, peer_index};

/// The host's allocator, so that the floor differs from `wasm-cni` only by the sandbox.
#[global_allocator]
static ALLOC: wasm_cni::Allocator = wasm_cni::Allocator::new();

fn main() {
    match run() {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
        }
        Err(e) => {
            println!(
                "{}",
                json!({"cniVersion": "1.0.0", "code": 999, "msg": format!("{e:#}")})
            );
            std::process::exit(1);
        }
    }
}

fn env(k: &str) -> Result<String> {
    std::env::var(k).with_context(|| format!("{k} is not set"))
}

fn run() -> Result<String> {
    let command = env("CNI_COMMAND")?;
    let mut stdin = String::new();
    std::io::stdin().read_to_string(&mut stdin)?;
    if command == "VERSION" {
        return Ok(
            json!({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}).to_string(),
        );
    }
    let conf: Value = serde_json::from_str(&stdin).context("config")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let netns = env("CNI_NETNS")?;
    let ctr = Netns::open(Path::new(&netns), &rt).map_err(|e| anyhow!("{e:?}"))?;
    let ifname = env("CNI_IFNAME")?;
    let container = env("CNI_CONTAINERID")?;
    let kind = conf["type"].as_str().unwrap_or_default();
    match (kind, command.as_str()) {
        ("loopback", "ADD") => rt.block_on(loopback_add(ctr.handle(), &ifname)),
        ("bridge", "ADD") => {
            let host = Netns::host(&rt)?;
            rt.block_on(bridge_add(&conf, &host, &ctr, &ifname, &container))
        }
        ("bridge", "DEL") => rt.block_on(bridge_del(&conf, &ctr, &ifname, &container)),
        _ => bail!("the floor does not do {kind} {command}"),
    }
}

async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e).with_context(|| format!("get link {name}")),
    }
}

fn mac_of(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(m) => Some(
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

async fn set_up(h: &Handle, index: u32, controller: Option<u32>) -> Result<()> {
    let mut b = LinkUnspec::new_with_index(index).up();
    if let Some(c) = controller {
        b = b.controller(c);
    }
    h.link()
        .change(b.build())
        .execute()
        .await
        .with_context(|| format!("set link #{index} up"))
}

async fn loopback_add(h: &Handle, ifname: &str) -> Result<String> {
    let lo = link_by_name(h, ifname)
        .await?
        .ok_or_else(|| anyhow!("no {ifname}"))?;
    let index = lo.header.index;
    set_up(h, index, None).await?;
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await?;
    let ips: Vec<Value> = addrs
        .iter()
        .filter_map(|a| {
            let ip = a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })?;
            Some(json!({"interface": 0, "address": format!("{ip}/{}", a.header.prefix_len)}))
        })
        .collect();
    Ok(json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": ifname, "mac": "00:00:00:00:00:00", "sandbox": env("CNI_NETNS")?}],
        "ips": ips,
    })
    .to_string())
}

/// The host end's name, from the container id (the reference uses a random one).
fn host_veth_name(container: &str, ifname: &str) -> String {
    let mut h: u32 = 2166136261;
    for b in container.bytes().chain(ifname.bytes()) {
        h = (h ^ b as u32).wrapping_mul(16777619);
    }
    format!("vf{h:08x}")
}

async fn bridge_add(
    conf: &Value,
    host: &Netns,
    ctr: &Netns,
    ifname: &str,
    container: &str,
) -> Result<String> {
    let (hh, ch) = (host.handle(), ctr.handle());
    let br_name = conf["bridge"].as_str().unwrap_or("cni0");
    let subnet: Ipv4Net = conf["ipam"]["ranges"][0][0]["subnet"]
        .as_str()
        .context("ipam.ranges[0][0].subnet")?
        .parse()?;
    let gw = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    // The container's interface must not exist yet.
    if link_by_name(ch, ifname).await?.is_some() {
        bail!("{ifname} already exists");
    }
    // The bridge, created when missing (a concurrent ADD may win the race), and up.
    let br = match link_by_name(hh, br_name).await? {
        Some(l) => l,
        None => {
            let r = new_link(hh, LinkBridge::new(br_name).build()).await;
            let echoed = match r {
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => None,
                r => r.context("create bridge")?,
            };
            match echoed {
                Some(l) => l,
                None => link_by_name(hh, br_name)
                    .await?
                    .context("bridge vanished")?,
            }
        }
    };
    let br_index = br.header.index;
    sysctl(host, &format!("net/ipv6/conf/{br_name}/accept_ra"), "0")?;
    if !br.header.flags.contains(LinkFlags::Up) {
        set_up(hh, br_index, None).await?;
    }
    // The veth pair: created in the container netns, its peer sent to the host netns; the
    // kernel's echo gives this end and (IFLA_LINK) the peer's index.
    let peer_name = host_veth_name(container, ifname);
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer_name.clone())
        .setns_by_fd(host.file().as_raw_fd())
        .build();
    let msg = LinkVeth::new(ifname, &peer_name)
        .set_info_data(netlink_packet_route::link::InfoData::Veth(
            netlink_packet_route::link::InfoVeth::Peer(peer),
        ))
        .build();
    let here = match new_link(ch, msg).await.context("create veth")? {
        Some(l) => l,
        None => link_by_name(ch, ifname).await?.context("veth vanished")?,
    };
    let index = here.header.index;
    let peer_index = match peer_index(&here) {
        Some(i) => i,
        None => {
            link_by_name(hh, &peer_name)
                .await?
                .context("veth peer vanished")?
                .header
                .index
        }
    };
    // The host end: up, no router advertisements, enslaved, hairpin off.
    set_up(hh, peer_index, None).await?;
    sysctl(host, &format!("net/ipv6/conf/{peer_name}/accept_ra"), "0")?;
    hh.link()
        .change(
            LinkUnspec::new_with_index(peer_index)
                .controller(br_index)
                .build(),
        )
        .execute()
        .await
        .context("set master")?;
    hh.link()
        .set_port(LinkBridgePort::new(peer_index).hairpin(false).build())
        .execute()
        .await
        .context("hairpin")?;
    // IPAM, in-process like ours.
    let ip = allocate(conf, subnet, gw, container, ifname)?;
    // The container end: DAD off, ARP notify on, the address, up.
    sysctl(ctr, &format!("net/ipv6/conf/{ifname}/accept_dad"), "0")?;
    sysctl(ctr, &format!("net/ipv4/conf/{ifname}/arp_notify"), "1")?;
    ch.address()
        .add(index, IpAddr::V4(ip), subnet.prefix_len())
        .execute()
        .await
        .context("address add")?;
    set_up(ch, index, None).await?;
    // The gateway address on the bridge, unless a previous ADD put it there.
    let has_gw = hh
        .address()
        .get()
        .set_link_index_filter(br_index)
        .execute()
        .try_collect::<Vec<_>>()
        .await?
        .iter()
        .any(|a| {
            a.attributes
                .iter()
                .any(|at| matches!(at, AddressAttribute::Address(x) if *x == IpAddr::V4(gw)))
        });
    if !has_gw {
        let r = hh
            .address()
            .add(br_index, IpAddr::V4(gw), subnet.prefix_len())
            .execute()
            .await;
        match r {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
            r => r.context("gateway address")?,
        }
    }
    if fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?.trim() != "1" {
        fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("ip_forward")?;
    }
    // The MACs as they are now (the bridge takes its lowest port's).
    let br_mac = link_by_name(hh, br_name).await?;
    let peer_mac = link_by_name(hh, &peer_name).await?;
    Ok(json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": br_name, "mac": br_mac.as_ref().map(mac_of)},
            {"name": peer_name, "mac": peer_mac.as_ref().map(mac_of)},
            {"name": ifname, "mac": mac_of(&here), "sandbox": env("CNI_NETNS")?},
        ],
        "ips": [{"interface": 2, "address": format!("{ip}/{}", subnet.prefix_len()), "gateway": gw.to_string()}],
        "dns": {},
    })
    .to_string())
}

/// Write a sysctl under /proc/sys inside `ns` (as the host does: on the netns's worker).
fn sysctl(ns: &Netns, key: &str, value: &'static str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    ns.run(move || fs::write(&path, value))
        .with_context(|| format!("sysctl {key}"))
}

async fn bridge_del(conf: &Value, ctr: &Netns, ifname: &str, container: &str) -> Result<String> {
    release(conf, container, ifname)?;
    let h = ctr.handle();
    if let Some(link) = link_by_name(h, ifname).await? {
        let index = link.header.index;
        // What the reference reads before deleting (the addresses it reports as released).
        let _addrs: Vec<_> = h
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await?;
        h.link().del(index).execute().await.context("delete veth")?;
    }
    Ok(String::new())
}

/// The network's host-local store, locked: the host's own store code (`caps::store`), as our
/// host-local plugin's requests drive it.
fn locked_store(conf: &Value) -> Result<Disk> {
    let dir = store_dir(conf["name"].as_str().unwrap_or_default(), conf.get("ipam"))
        .map_err(|e| anyhow!(e))?;
    let disk = Disk::open(&dir)?;
    disk.lock()?;
    Ok(disk)
}

fn allocate(
    conf: &Value,
    subnet: Ipv4Net,
    gw: Ipv4Addr,
    container: &str,
    ifname: &str,
) -> Result<Ipv4Addr> {
    let disk = locked_store(conf)?;
    // host-local refuses a second address for the same container and interface (the
    // reference's GetByID, a walk of the store).
    if !disk.get_by_id(container, ifname)?.is_empty() {
        bail!("{container}/{ifname} already has an address");
    }
    let first = u32::from(subnet.network()) + 1;
    let last = u32::from(subnet.broadcast()) - 1;
    let start = match disk.last_reserved_ip("0")? {
        Some(IpAddr::V4(ip)) if (first..=last).contains(&u32::from(ip)) => u32::from(ip),
        _ => last,
    };
    let count = last - first + 1;
    for step in 1..=count {
        let ip = Ipv4Addr::from(first + (start - first + step) % count);
        if ip != gw && disk.reserve(IpAddr::V4(ip), container, ifname, "0")? {
            disk.unlock()?;
            return Ok(ip);
        }
    }
    bail!("no free address in {subnet}")
}

fn release(conf: &Value, container: &str, ifname: &str) -> Result<()> {
    let disk = locked_store(conf)?;
    disk.release_by_id(container, ifname)?;
    disk.unlock()?;
    Ok(())
}
