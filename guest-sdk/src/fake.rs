//! A fake host for unit tests of plugin logic, natively (`cargo test -p <plugin>`): no root,
//! no kernel, no wasm runtime.
//!
//! On `wasm32` the SDK's handles ([`Netns`], [`Link`](crate::Link)) and free functions
//! ([`host_netns`](crate::host_netns), [`ipam`](crate::ipam), [`firewall`](crate::firewall),
//! [`store`](crate::store), [`log`](crate::log)) call the real host. On every other target they
//! run against an in-memory model instead, so the plugin's code is the same in both builds:
//!
//! ```
//! use wasm_cni_sdk::fake::FakeHost;
//! use wasm_cni_sdk::{Context, NetErrorKind};
//!
//! let fake = FakeHost::new();                 // this thread's host from now on
//! let netns = fake.add_netns("container");    // `lo` only, down, like a fresh netns
//! let lo = netns.require_link("lo").unwrap(); // exactly what plugin code does
//! lo.set_up().unwrap();
//! assert!(fake.link(&netns, "lo").unwrap().up);
//! // The host netns is denied until the test grants it, as the node policy would.
//! assert!(matches!(wasm_cni_sdk::host_netns().err().unwrap().kind, NetErrorKind::Denied));
//! fake.grant("host-netns");
//! assert!(wasm_cni_sdk::host_netns().is_ok());
//! # let _ = Context::new("c1", "eth0", "/var/run/netns/container", "{}");
//! ```
//!
//! The model follows the host where plugins can tell: missing links, addresses and routes are
//! [`NetErrorKind::NotFound`], duplicates [`NetErrorKind::Exists`], bad names and addresses
//! [`NetErrorKind::InvalidArgument`]; a veth pair spans two namespaces and each end knows its
//! peer; moving a link renames it in the target (`Exists` leaves it where it was), takes it
//! down and flushes its addresses; deleting one end of a veth deletes both; sysctls live under
//! `net.` per namespace and per-device keys need the device; a link going down loses its
//! routes. Capabilities other than `host-netns` are granted by default ([`FakeHost::deny`]
//! takes them away); a denial is [`NetErrorKind::Denied`] (CNI code 100), worded as the host's.
//! Files ([`files`](crate::files)) are read from a map the test fills with
//! [`FakeHost::add_file`]; as on a node without a policy, none is readable until the test grants
//! it with [`FakeHost::grant_files`] (code 100 otherwise, code 5 for a granted missing file).
//!
//! Each test thread has its own current host (the last one created or [installed]
//! (FakeHost::install) on it), so tests run in parallel without seeing each other.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::rc::Rc;

use ipnet::IpNet;

use crate::store::Reservation;
use crate::{codes, CniError, CniResult, DeviceSelector, LinkInfo, NetErrorKind, Netns};

/// The WIT error record, as the host's imports return it (the SDK converts it).
type NetError = crate::__private::bindings::wasm_cni::plugin::network::NetError;

type Shared = Rc<RefCell<State>>;

thread_local! {
    static CURRENT: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

fn current() -> Shared {
    CURRENT.with(|c| c.borrow().clone()).expect(
        "no wasm_cni_sdk::fake::FakeHost on this thread: create one with FakeHost::new() \
         before calling plugin code natively",
    )
}

/// The capabilities a plugin can declare (see docs/policy.md).
pub const CAPABILITIES: &[&str] = &["host-netns", "ipam", "ip-store", "firewall", "files"];

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// A link as the fake holds it: what [`LinkInfo`] reports, plus addresses and the details
/// other selectors and bridge operations look at. Build one with [`FakeLink::new`] and
/// [`FakeHost::add_link`] to give a namespace a device (e.g. the host's `eth1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeLink {
    pub name: String,
    /// Assigned by [`FakeHost::add_link`]; `lo` is 1 in every namespace.
    pub index: u32,
    /// `veth`, `bridge`, ...; empty for a plain device (and `lo`).
    pub kind: String,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    pub master: Option<u32>,
    /// For a veth: the peer's index, in [`FakeLink::peer_netns`].
    pub peer: Option<u32>,
    /// For a veth: the name of the namespace its peer is in.
    pub peer_netns: Option<String>,
    pub alias: String,
    pub promisc: bool,
    /// In the order added.
    pub addresses: Vec<IpNet>,
    /// For [`DeviceSelector::PciBusId`].
    pub pci_id: String,
    /// The sysfs path of the device itself, e.g.
    /// `/sys/devices/pci0000:00/0000:00:1f.6/net/eth1` (for [`DeviceSelector::KernelPath`]).
    pub kernel_path: String,
    pub vlan_filtering: bool,
    pub hairpin: bool,
    pub isolated: bool,
    pub vlans: Vec<FakeVlan>,
}

impl FakeLink {
    /// A plain device, down, MTU 1500 (a MAC is assigned when added without one).
    pub fn new(name: &str) -> FakeLink {
        FakeLink {
            name: name.into(),
            mtu: 1500,
            ..Default::default()
        }
    }

    fn info(&self) -> LinkInfo {
        LinkInfo {
            index: self.index,
            name: self.name.clone(),
            kind: self.kind.clone(),
            mac: self.mac.clone(),
            mtu: self.mtu,
            up: self.up,
            master: self.master,
            peer: self.peer,
            alias: self.alias.clone(),
            promisc: self.promisc,
        }
    }
}

/// A bridge VLAN entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeVlan {
    pub vid: u16,
    pub pvid: bool,
    pub untagged: bool,
    /// Added with `on_bridge` (the bridge device's own VLAN).
    pub on_bridge: bool,
}

/// A route of the fake's tables (connected routes are not stored: [`FakeHost::routes`]
/// derives them from the addresses of links that are up, as the kernel does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeRoute {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub oif: u32,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: u32,
    pub scope: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// A line the plugin logged through [`crate::log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpamVerb {
    Add,
    Del,
    Check,
}

/// One delegation to an IPAM plugin through [`crate::ipam`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamCall {
    pub plugin_type: String,
    pub verb: IpamVerb,
    pub config: String,
}

/// One call of [`crate::firewall`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirewallCall {
    MasqueradeAdd {
        network: String,
        container_id: String,
        addresses: Vec<String>,
        backend: String,
    },
    MasqueradeDel {
        network: String,
        container_id: String,
        backend: String,
    },
    MacSpoofCheckAdd {
        network: String,
        container_id: String,
        ifname: String,
        host_ifname: String,
        mac: String,
    },
    MacSpoofCheckDel {
        network: String,
        container_id: String,
        ifname: String,
    },
}

/// A MAC spoof check in place (see [`FakeHost::mac_spoof_checks`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacSpoofCheck {
    pub network: String,
    pub host_ifname: String,
    pub mac: String,
}

struct NsState {
    name: String,
    alive: bool,
    links: Vec<FakeLink>,
    routes: Vec<FakeRoute>,
    sysctls: BTreeMap<String, String>,
}

#[derive(Default)]
struct StoreState {
    locked: bool,
    reservations: Vec<Reservation>,
    last: BTreeMap<String, IpAddr>,
}

struct State {
    plugin: String,
    namespaces: Vec<NsState>,
    host: usize,
    granted: Vec<String>,
    next_index: u32,
    next_mac: u32,
    ipam_results: BTreeMap<String, CniResult>,
    ipam_errors: BTreeMap<(String, u8), CniError>,
    ipam_calls: Vec<IpamCall>,
    firewall_calls: Vec<FirewallCall>,
    firewall_error: Option<String>,
    masquerades: BTreeMap<(String, String), Vec<String>>,
    mac_spoof_checks: BTreeMap<(String, String), MacSpoofCheck>,
    store: StoreState,
    logs: Vec<LogLine>,
    failures: Vec<(String, NetErrorKind, String)>,
    /// Files by absolute path, the `files` patterns granted, and every path read.
    files: BTreeMap<String, Vec<u8>>,
    file_patterns: Vec<String>,
    file_reads: Vec<String>,
}

fn err(kind: NetErrorKind, message: impl Into<String>) -> NetError {
    NetError {
        kind,
        message: message.into(),
    }
}

fn not_found(what: impl std::fmt::Display) -> NetError {
    err(NetErrorKind::NotFound, format!("{what} not found"))
}

fn check_name(name: &str) -> Result<(), NetError> {
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(err(
            NetErrorKind::InvalidArgument,
            format!("invalid interface name {name:?}"),
        ));
    }
    Ok(())
}

fn parse_mac(mac: &str) -> Result<String, NetError> {
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || u8::from_str_radix(p, 16).is_err())
    {
        return Err(err(
            NetErrorKind::InvalidArgument,
            format!("invalid MAC address {mac:?}"),
        ));
    }
    Ok(mac.to_ascii_lowercase())
}

fn parse_net(s: &str) -> Result<IpNet, NetError> {
    s.parse().map_err(|_| {
        err(
            NetErrorKind::InvalidArgument,
            format!("invalid address {s:?}"),
        )
    })
}

fn parse_ip(s: &str) -> Result<IpAddr, NetError> {
    s.parse().map_err(|_| {
        err(
            NetErrorKind::InvalidArgument,
            format!("invalid address {s:?}"),
        )
    })
}

/// `net/ipv4/ip_forward` or `net.ipv4.ip_forward` → the dotted form, under `net.` only.
fn sysctl_key(key: &str) -> Result<String, NetError> {
    let key = key.replace('/', ".");
    if !key.starts_with("net.") || key.split('.').any(str::is_empty) {
        return Err(err(
            NetErrorKind::InvalidArgument,
            format!("sysctl {key:?} is not a key under net."),
        ));
    }
    Ok(key)
}

/// For per-device keys (`net.ipv4.conf.<dev>.<leaf>`): (dev, the `default` key).
fn sysctl_device(key: &str) -> Option<(&str, String)> {
    let parts: Vec<&str> = key.splitn(5, '.').collect();
    if parts.len() == 5 && matches!(parts[2], "conf" | "neigh") {
        let default = format!("net.{}.{}.default.{}", parts[1], parts[2], parts[4]);
        return Some((parts[3], default));
    }
    None
}

fn default_sysctls() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("net.ipv4.ip_forward", "0"),
        ("net.ipv4.ip_local_port_range", "32768\t60999"),
        ("net.ipv4.ping_group_range", "1\t0"),
        ("net.ipv4.tcp_syncookies", "1"),
        ("net.core.somaxconn", "4096"),
        ("net.ipv6.conf.all.disable_ipv6", "0"),
        ("net.ipv6.conf.default.disable_ipv6", "0"),
        ("net.ipv6.conf.all.forwarding", "0"),
        ("net.ipv6.conf.default.forwarding", "0"),
        ("net.ipv6.conf.default.accept_ra", "1"),
    ] {
        m.insert(k.to_string(), v.to_string());
    }
    for scope in ["all", "default"] {
        for (leaf, v) in [
            ("rp_filter", "0"),
            ("forwarding", "0"),
            ("accept_redirects", "1"),
            ("send_redirects", "1"),
            ("arp_ignore", "0"),
            ("arp_announce", "0"),
            ("proxy_arp", "0"),
            ("route_localnet", "0"),
            ("accept_local", "0"),
        ] {
            m.insert(format!("net.ipv4.conf.{scope}.{leaf}"), v.to_string());
        }
    }
    m
}

fn lo() -> FakeLink {
    FakeLink {
        index: 1,
        mac: "00:00:00:00:00:00".into(),
        mtu: 65536,
        ..FakeLink::new("lo")
    }
}

impl State {
    fn new() -> State {
        let mut st = State {
            plugin: "fake".into(),
            namespaces: Vec::new(),
            host: 0,
            granted: vec![
                "ipam".into(),
                "ip-store".into(),
                "firewall".into(),
                "files".into(),
            ],
            next_index: 2,
            next_mac: 1,
            ipam_results: BTreeMap::new(),
            ipam_errors: BTreeMap::new(),
            ipam_calls: Vec::new(),
            firewall_calls: Vec::new(),
            firewall_error: None,
            masquerades: BTreeMap::new(),
            mac_spoof_checks: BTreeMap::new(),
            store: StoreState::default(),
            logs: Vec::new(),
            failures: Vec::new(),
            files: BTreeMap::new(),
            file_patterns: Vec::new(),
            file_reads: Vec::new(),
        };
        st.host = st.add_ns("host");
        // The host's lo is up, as on any running node.
        let host = st.host;
        st.set_up(host, 1, true);
        st
    }

    fn add_ns(&mut self, name: &str) -> usize {
        assert!(
            !self.namespaces.iter().any(|n| n.alive && n.name == name),
            "FakeHost: a namespace named {name:?} exists already"
        );
        self.namespaces.push(NsState {
            name: name.into(),
            alive: true,
            links: vec![lo()],
            routes: Vec::new(),
            sysctls: default_sysctls(),
        });
        self.namespaces.len() - 1
    }

    fn ns_id(&self, name: &str) -> Option<usize> {
        self.namespaces
            .iter()
            .position(|n| n.alive && n.name == name)
    }

    fn ns(&self, id: usize) -> Result<&NsState, NetError> {
        let ns = &self.namespaces[id];
        if !ns.alive {
            return Err(err(
                NetErrorKind::NotFound,
                format!("network namespace {} is gone", ns.name),
            ));
        }
        Ok(ns)
    }

    fn ns_mut(&mut self, id: usize) -> Result<&mut NsState, NetError> {
        self.ns(id)?;
        Ok(&mut self.namespaces[id])
    }

    fn denied(&self, capability: &str, op: &str) -> Option<String> {
        (!self.granted.iter().any(|g| g == capability)).then(|| {
            format!(
                "plugin {:?} is not granted the {capability} capability (needed for {op})",
                self.plugin
            )
        })
    }

    /// A failure the test injected with [`FakeHost::fail_next`].
    fn injected(&mut self, op: &str) -> Result<(), NetError> {
        if let Some(i) = self.failures.iter().position(|(o, _, _)| o == op) {
            let (_, kind, message) = self.failures.remove(i);
            return Err(err(kind, message));
        }
        Ok(())
    }

    fn link(&self, ns: usize, index: u32) -> Result<&FakeLink, NetError> {
        self.ns(ns)?
            .links
            .iter()
            .find(|l| l.index == index)
            .ok_or_else(|| not_found(format_args!("link with index {index}")))
    }

    fn link_mut(&mut self, ns: usize, index: u32) -> Result<&mut FakeLink, NetError> {
        self.link(ns, index)?;
        Ok(self.namespaces[ns]
            .links
            .iter_mut()
            .find(|l| l.index == index)
            .expect("checked"))
    }

    fn by_name(&self, ns: usize, name: &str) -> Option<&FakeLink> {
        self.namespaces[ns].links.iter().find(|l| l.name == name)
    }

    fn ensure_free(&self, ns: usize, name: &str) -> Result<(), NetError> {
        check_name(name)?;
        if self.by_name(ns, name).is_some() {
            return Err(err(
                NetErrorKind::Exists,
                format!(
                    "a link named {name} already exists in {}",
                    self.namespaces[ns].name
                ),
            ));
        }
        Ok(())
    }

    fn alloc_index(&mut self, ns: usize) -> u32 {
        loop {
            let i = self.next_index;
            self.next_index += 1;
            if !self.namespaces[ns].links.iter().any(|l| l.index == i) {
                return i;
            }
        }
    }

    fn alloc_mac(&mut self) -> String {
        let n = self.next_mac;
        self.next_mac += 1;
        format!(
            "02:fa:{:02x}:{:02x}:{:02x}:{:02x}",
            n >> 24,
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            n & 0xff
        )
    }

    fn insert_link(&mut self, ns: usize, mut link: FakeLink) -> u32 {
        link.index = self.alloc_index(ns);
        if link.mac.is_empty() {
            link.mac = self.alloc_mac();
        }
        let index = link.index;
        self.namespaces[ns].links.push(link);
        index
    }

    fn set_up(&mut self, ns: usize, index: u32, up: bool) {
        let st = &mut self.namespaces[ns];
        let Some(link) = st.links.iter_mut().find(|l| l.index == index) else {
            return;
        };
        link.up = up;
        if index == 1 {
            // The kernel gives lo its addresses when it comes up; IPv6 ones go when it is down.
            for a in ["127.0.0.1/8", "::1/128"] {
                let a: IpNet = a.parse().expect("valid");
                if up && !link.addresses.contains(&a) {
                    link.addresses.push(a);
                }
            }
        }
        if !up {
            link.addresses.retain(|a| a.addr().is_ipv4());
            st.routes.retain(|r| r.oif != index);
        }
    }

    /// Take a link out of `ns` (with what goes with it there) and return it.
    fn detach(&mut self, ns: usize, index: u32) -> FakeLink {
        let st = &mut self.namespaces[ns];
        let pos = st
            .links
            .iter()
            .position(|l| l.index == index)
            .expect("checked");
        let link = st.links.remove(pos);
        st.routes.retain(|r| r.oif != index);
        for l in st.links.iter_mut() {
            if l.master == Some(index) {
                l.master = None;
            }
        }
        let prefix = [
            format!("net.ipv4.conf.{}.", link.name),
            format!("net.ipv6.conf.{}.", link.name),
            format!("net.ipv4.neigh.{}.", link.name),
            format!("net.ipv6.neigh.{}.", link.name),
        ];
        st.sysctls
            .retain(|k, _| !prefix.iter().any(|p| k.starts_with(p.as_str())));
        link
    }

    /// Update the peer of a veth end that now is (`ns`, `index`).
    fn repoint_peer(&mut self, link: &FakeLink, ns: usize) {
        let (Some(peer), Some(peer_ns)) = (link.peer, link.peer_netns.as_deref()) else {
            return;
        };
        let Some(pns) = self.ns_id(peer_ns) else {
            return;
        };
        let ns_name = self.namespaces[ns].name.clone();
        if let Some(p) = self.namespaces[pns]
            .links
            .iter_mut()
            .find(|l| l.index == peer)
        {
            p.peer = Some(link.index);
            p.peer_netns = Some(ns_name);
        }
    }

    fn delete(&mut self, ns: usize, index: u32) -> Result<(), NetError> {
        if index == 1 {
            return Err(err(NetErrorKind::Other, "lo cannot be deleted"));
        }
        let link = self.detach(ns, index);
        if let (Some(peer), Some(pns)) = (link.peer, link.peer_netns.as_deref()) {
            if let Some(pns) = self.ns_id(pns) {
                if self.namespaces[pns].links.iter().any(|l| l.index == peer) {
                    self.detach(pns, peer);
                }
            }
        }
        Ok(())
    }

    fn move_link(
        &mut self,
        ns: usize,
        index: u32,
        target: usize,
        new_name: Option<&str>,
    ) -> Result<u32, NetError> {
        self.ns(target)?;
        let name = match new_name {
            Some(n) => n.to_string(),
            None => self.link(ns, index)?.name.clone(),
        };
        if index == 1 {
            return Err(err(
                NetErrorKind::InvalidArgument,
                "lo cannot leave its namespace",
            ));
        }
        if target == ns && self.link(ns, index)?.name == name {
            return Ok(index);
        }
        self.ensure_free(target, &name)?;
        let mut link = self.detach(ns, index);
        link.name = name;
        link.up = false;
        link.master = None;
        link.addresses.clear();
        link.vlans.clear();
        if self.namespaces[target]
            .links
            .iter()
            .any(|l| l.index == link.index)
        {
            link.index = self.alloc_index(target);
        }
        let new_index = link.index;
        self.repoint_peer(&link, target);
        self.namespaces[target].links.push(link);
        Ok(new_index)
    }

    fn remove_ns(&mut self, ns: usize) {
        let host = self.host;
        let indexes: Vec<u32> = self.namespaces[ns].links.iter().map(|l| l.index).collect();
        for index in indexes {
            let Some(link) = self.namespaces[ns].links.iter().find(|l| l.index == index) else {
                continue;
            };
            if link.kind.is_empty() && index != 1 && ns != host {
                // A physical device goes back to the initial namespace, renamed on a clash.
                let mut name = link.name.clone();
                if self.by_name(host, &name).is_some() {
                    name = format!("dev{index}");
                }
                let _ = self.move_link(ns, index, host, Some(&name));
            } else if index != 1 {
                let _ = self.delete(ns, index);
            }
        }
        self.namespaces[ns].alive = false;
        self.namespaces[ns].links.clear();
    }

    /// Routes of one family as the kernel lists the main table: connected routes of the
    /// addresses on links that are up, then the ones added.
    fn routes(&self, ns: usize, ipv6: bool) -> Result<Vec<FakeRoute>, NetError> {
        let st = self.ns(ns)?;
        let mut out = Vec::new();
        for l in st.links.iter().filter(|l| l.up && l.index != 1) {
            for a in &l.addresses {
                if a.addr().is_ipv6() == ipv6 && a.prefix_len() < a.max_prefix_len() {
                    let route = FakeRoute {
                        dst: a.trunc(),
                        gw: None,
                        oif: l.index,
                        mtu: None,
                        advmss: None,
                        priority: None,
                        table: MAIN_TABLE,
                        scope: 253,
                    };
                    if !out.contains(&route) {
                        out.push(route);
                    }
                }
            }
        }
        out.extend(
            st.routes
                .iter()
                .filter(|r| r.dst.addr().is_ipv6() == ipv6)
                .cloned(),
        );
        Ok(out)
    }

    fn sysctl_get(&self, ns: usize, key: &str) -> Result<String, NetError> {
        let key = sysctl_key(key)?;
        let st = self.ns(ns)?;
        if let Some(v) = st.sysctls.get(&key) {
            return Ok(v.clone());
        }
        let missing = || {
            err(
                NetErrorKind::NotFound,
                format!("sysctl {key} does not exist"),
            )
        };
        match sysctl_device(&key) {
            Some((dev, default)) if dev != "all" && dev != "default" => {
                if self.by_name(ns, dev).is_none() {
                    return Err(missing());
                }
                st.sysctls.get(&default).cloned().ok_or_else(missing)
            }
            _ => Err(missing()),
        }
    }

    fn sysctl_set(&mut self, ns: usize, key: &str, value: &str) -> Result<(), NetError> {
        let key = sysctl_key(key)?;
        self.ns(ns)?;
        let known = match sysctl_device(&key) {
            Some((dev, _)) if dev != "all" && dev != "default" => {
                if self.by_name(ns, dev).is_none() {
                    return Err(err(
                        NetErrorKind::NotFound,
                        format!("sysctl {key} does not exist (no link {dev} here)"),
                    ));
                }
                true
            }
            Some(_) => true,
            None => self.namespaces[ns].sysctls.contains_key(&key),
        };
        if !known {
            return Err(err(
                NetErrorKind::NotFound,
                format!("sysctl {key} does not exist"),
            ));
        }
        let value = value.trim();
        let numeric = self
            .sysctl_get(ns, &key)
            .is_ok_and(|old| old.parse::<i64>().is_ok());
        if numeric && value.parse::<i64>().is_err() {
            return Err(err(
                NetErrorKind::InvalidArgument,
                format!("invalid value {value:?} for sysctl {key}"),
            ));
        }
        self.namespaces[ns].sysctls.insert(key, value.to_string());
        Ok(())
    }
}

/// The in-memory host of one test. Creating one makes it the current host of this thread:
/// the SDK's free functions ([`crate::host_netns`], [`crate::ipam`], [`crate::firewall`],
/// [`crate::store`], [`crate::log`]) use it. Handles ([`Netns`], [`crate::Link`]) keep the
/// host they came from. Cloning gives another handle to the same host.
#[derive(Clone)]
pub struct FakeHost(Shared);

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost::new()
    }
}

impl FakeHost {
    /// A host with a host netns (named `host`, with `lo` up) and nothing else; it becomes this
    /// thread's current host.
    pub fn new() -> FakeHost {
        let host = FakeHost(Rc::new(RefCell::new(State::new())));
        host.install();
        host
    }

    /// Make this the thread's current host (done by [`FakeHost::new`]).
    pub fn install(&self) {
        CURRENT.with(|c| *c.borrow_mut() = Some(self.0.clone()));
    }

    /// The plugin name in denial messages (`"fake"` unless set).
    pub fn set_plugin_name(&self, name: &str) {
        self.0.borrow_mut().plugin = name.into();
    }

    /// Grant a capability (`host-netns`, `ipam`, `ip-store`, `firewall`).
    pub fn grant(&self, capability: &str) {
        assert!(
            CAPABILITIES.contains(&capability),
            "unknown capability {capability:?}"
        );
        let mut st = self.0.borrow_mut();
        if !st.granted.iter().any(|g| g == capability) {
            st.granted.push(capability.into());
        }
    }

    /// Take a capability away: its calls are denied (CNI code 100), as the host's policy would.
    pub fn deny(&self, capability: &str) {
        assert!(
            CAPABILITIES.contains(&capability),
            "unknown capability {capability:?}"
        );
        self.0.borrow_mut().granted.retain(|g| g != capability);
    }

    /// The host netns, for the test's own setup and assertions (whatever is granted).
    pub fn host(&self) -> Netns {
        let id = self.0.borrow().host;
        self.handle(id)
    }

    /// A new namespace with `lo` (down, no addresses), like a fresh container netns.
    pub fn add_netns(&self, name: &str) -> Netns {
        let id = self.0.borrow_mut().add_ns(name);
        self.handle(id)
    }

    /// The live namespace named `name`.
    pub fn netns(&self, name: &str) -> Option<Netns> {
        let id = self.0.borrow().ns_id(name)?;
        Some(self.handle(id))
    }

    /// Delete a namespace as the kernel does when its last user goes: veths die with their
    /// peers, plain devices return to the host netns. Handles into it fail with `NotFound`.
    pub fn remove_netns(&self, ns: &Netns) {
        self.0.borrow_mut().remove_ns(ns.0.id);
    }

    /// The name of the namespace behind a handle.
    pub fn netns_name(&self, ns: &Netns) -> String {
        self.0.borrow().namespaces[ns.0.id].name.clone()
    }

    /// Add a device to a namespace (its index is assigned, a MAC too when empty); returns its
    /// index.
    pub fn add_link(&self, ns: &Netns, link: FakeLink) -> u32 {
        let mut st = self.0.borrow_mut();
        assert!(
            st.by_name(ns.0.id, &link.name).is_none(),
            "FakeHost: link {} exists already",
            link.name
        );
        st.insert_link(ns.0.id, link)
    }

    /// A snapshot of the link named `name` in `ns`.
    pub fn link(&self, ns: &Netns, name: &str) -> Option<FakeLink> {
        self.0.borrow().by_name(ns.0.id, name).cloned()
    }

    /// Snapshots of every link in `ns`.
    pub fn links(&self, ns: &Netns) -> Vec<FakeLink> {
        self.0.borrow().namespaces[ns.0.id].links.clone()
    }

    /// The main-table routes of `ns`, IPv4 then IPv6 (connected ones included).
    pub fn routes(&self, ns: &Netns) -> Vec<FakeRoute> {
        let st = self.0.borrow();
        let mut v = st.routes(ns.0.id, false).unwrap_or_default();
        v.extend(st.routes(ns.0.id, true).unwrap_or_default());
        v.extend(
            st.namespaces[ns.0.id]
                .routes
                .iter()
                .filter(|r| r.table != MAIN_TABLE)
                .cloned(),
        );
        v.retain(|r| r.table == MAIN_TABLE);
        v
    }

    /// Every route added explicitly in `ns`, in any table.
    pub fn all_routes(&self, ns: &Netns) -> Vec<FakeRoute> {
        self.0.borrow().namespaces[ns.0.id].routes.clone()
    }

    /// A sysctl's value in `ns` (`None` when it does not exist).
    pub fn sysctl(&self, ns: &Netns, key: &str) -> Option<String> {
        self.0.borrow().sysctl_get(ns.0.id, key).ok()
    }

    /// Set (or create) a sysctl in `ns`, with no checks.
    pub fn set_sysctl(&self, ns: &Netns, key: &str, value: &str) {
        let key = sysctl_key(key).expect("a key under net.");
        self.0.borrow_mut().namespaces[ns.0.id]
            .sysctls
            .insert(key, value.into());
    }

    /// Make the next call of `op` (a WIT operation name: `address-add`, `move-to`,
    /// `create-veth`, `sysctl-set`, `host-netns`, ...) fail with this error, to test rollback.
    pub fn fail_next(&self, op: &str, kind: NetErrorKind, message: &str) {
        self.0
            .borrow_mut()
            .failures
            .push((op.into(), kind, message.into()));
    }

    /// What IPAM ADD through `plugin_type` returns.
    pub fn set_ipam_result(&self, plugin_type: &str, result: CniResult) {
        self.0
            .borrow_mut()
            .ipam_results
            .insert(plugin_type.into(), result);
    }

    /// Make `verb` through `plugin_type` fail with `error`.
    pub fn set_ipam_error(&self, plugin_type: &str, verb: IpamVerb, error: CniError) {
        self.0
            .borrow_mut()
            .ipam_errors
            .insert((plugin_type.into(), verb as u8), error);
    }

    /// Every IPAM delegation so far, in order.
    pub fn ipam_calls(&self) -> Vec<IpamCall> {
        self.0.borrow().ipam_calls.clone()
    }

    /// Every firewall call so far, in order.
    pub fn firewall_calls(&self) -> Vec<FirewallCall> {
        self.0.borrow().firewall_calls.clone()
    }

    /// The masquerade rules in place: (network, container id) → addresses.
    pub fn masquerades(&self) -> BTreeMap<(String, String), Vec<String>> {
        self.0.borrow().masquerades.clone()
    }

    /// The MAC spoof checks in place: (container id, ifname) → network, host link and MAC.
    pub fn mac_spoof_checks(&self) -> BTreeMap<(String, String), MacSpoofCheck> {
        self.0.borrow().mac_spoof_checks.clone()
    }

    /// Make every later firewall call fail with `message` (`None`: succeed again).
    pub fn set_firewall_error(&self, message: Option<&str>) {
        self.0.borrow_mut().firewall_error = message.map(Into::into);
    }

    /// The address store's reservations.
    pub fn reservations(&self) -> Vec<Reservation> {
        self.0.borrow().store.reservations.clone()
    }

    /// Put a reservation into the store (as another container's, or the reference's).
    pub fn add_reservation(&self, reservation: Reservation) {
        self.0.borrow_mut().store.reservations.push(reservation);
    }

    /// The last reservation of a range.
    pub fn last_reserved_ip(&self, range_id: &str) -> Option<IpAddr> {
        self.0.borrow().store.last.get(range_id).copied()
    }

    /// Whether the store's lock is held.
    pub fn store_locked(&self) -> bool {
        self.0.borrow().store.locked
    }

    /// Put a file on the fake host (readable once [`FakeHost::grant_files`] grants its path).
    pub fn add_file(&self, path: &str, contents: impl Into<Vec<u8>>) {
        self.0
            .borrow_mut()
            .files
            .insert(path.into(), contents.into());
    }

    /// Grant reading the files `pattern` matches (`*` wildcards), as the policy's `files` does.
    pub fn grant_files(&self, pattern: &str) {
        self.0.borrow_mut().file_patterns.push(pattern.into());
    }

    /// Every path the plugin asked to read, in order (granted or not).
    pub fn file_reads(&self) -> Vec<String> {
        self.0.borrow().file_reads.clone()
    }

    /// What the plugin logged, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        self.0.borrow().logs.clone()
    }

    fn handle(&self, id: usize) -> Netns {
        Netns(backend::Netns {
            host: self.0.clone(),
            id,
        })
    }
}

/// The native backends the SDK's handles and functions call instead of the WIT imports;
/// their signatures mirror the imports so the SDK code is the same on both targets.
pub(crate) mod backend {
    use super::*;
    use crate::__private::bindings::wasm_cni::plugin::ipam::Verb;
    use crate::__private::bindings::wasm_cni::plugin::log::Level;
    use crate::__private::{WitError, WitResult};
    use crate::{RouteInfo, RouteSpec};

    pub struct Netns {
        pub(super) host: Shared,
        pub(super) id: usize,
    }

    pub struct Link {
        host: Shared,
        ns: Cell<usize>,
        index: Cell<u32>,
    }

    impl Netns {
        fn link(&self, index: u32) -> Link {
            Link {
                host: self.host.clone(),
                ns: Cell::new(self.id),
                index: Cell::new(index),
            }
        }

        fn start(&self, op: &str) -> Result<std::cell::RefMut<'_, State>, NetError> {
            let mut st = self.host.borrow_mut();
            st.injected(op)?;
            st.ns(self.id)?;
            Ok(st)
        }

        pub fn link_by_name(&self, name: &str) -> Result<Option<Link>, NetError> {
            let st = self.start("link-by-name")?;
            let index = st.by_name(self.id, name).map(|l| l.index);
            Ok(index.map(|i| self.link(i)))
        }

        pub fn links(&self) -> Result<Vec<LinkInfo>, NetError> {
            let st = self.start("links")?;
            Ok(st.namespaces[self.id]
                .links
                .iter()
                .map(FakeLink::info)
                .collect())
        }

        pub fn link_by_index(&self, index: u32) -> Result<Option<Link>, NetError> {
            let st = self.start("link-by-index")?;
            let found = st.namespaces[self.id]
                .links
                .iter()
                .any(|l| l.index == index);
            Ok(found.then(|| self.link(index)))
        }

        pub fn find_device(&self, selector: &DeviceSelector) -> Result<Option<Link>, NetError> {
            let st = self.start("find-device")?;
            let links = &st.namespaces[self.id].links;
            let found = match selector {
                DeviceSelector::Name(n) => links.iter().find(|l| &l.name == n),
                DeviceSelector::Hwaddr(m) => links.iter().find(|l| l.mac.eq_ignore_ascii_case(m)),
                DeviceSelector::PciBusId(id) => links
                    .iter()
                    .find(|l| !l.pci_id.is_empty() && &l.pci_id == id),
                DeviceSelector::KernelPath(p) => {
                    let p = p.trim_end_matches('/');
                    let mut under: Vec<&FakeLink> = links
                        .iter()
                        .filter(|l| {
                            !l.kernel_path.is_empty()
                                && std::path::Path::new(&l.kernel_path).parent()
                                    == Some(std::path::Path::new(p))
                        })
                        .collect();
                    under.sort_by(|a, b| a.name.cmp(&b.name));
                    under
                        .first()
                        .copied()
                        .or_else(|| links.iter().find(|l| l.kernel_path == p))
                }
            };
            let index = found.map(|l| l.index);
            Ok(index.map(|i| self.link(i)))
        }

        pub fn create_veth(
            &self,
            name: &str,
            peer_name: &str,
            peer_ns: &Netns,
            mtu: Option<u32>,
            mac: Option<&str>,
        ) -> Result<(Link, Link), NetError> {
            let mut st = self.start("create-veth")?;
            st.ns(peer_ns.id)?;
            st.ensure_free(self.id, name)?;
            st.ensure_free(peer_ns.id, peer_name)?;
            if self.id == peer_ns.id && name == peer_name {
                return Err(err(NetErrorKind::Exists, format!("{name} twice")));
            }
            let mac = mac.map(parse_mac).transpose()?;
            let mtu = mtu.unwrap_or(1500);
            if !(68..=65535).contains(&mtu) {
                return Err(err(
                    NetErrorKind::InvalidArgument,
                    format!("invalid MTU {mtu}"),
                ));
            }
            let a = st.insert_link(
                self.id,
                FakeLink {
                    kind: "veth".into(),
                    mtu,
                    mac: mac.unwrap_or_default(),
                    ..FakeLink::new(name)
                },
            );
            let b = st.insert_link(
                peer_ns.id,
                FakeLink {
                    kind: "veth".into(),
                    mtu,
                    ..FakeLink::new(peer_name)
                },
            );
            let (here, there) = (
                st.namespaces[self.id].name.clone(),
                st.namespaces[peer_ns.id].name.clone(),
            );
            let la = st.link_mut(self.id, a)?;
            la.peer = Some(b);
            la.peer_netns = Some(there);
            let lb = st.link_mut(peer_ns.id, b)?;
            lb.peer = Some(a);
            lb.peer_netns = Some(here);
            Ok((self.link(a), peer_ns.link(b)))
        }

        pub fn create_bridge(
            &self,
            name: &str,
            mtu: Option<u32>,
            vlan_filtering: bool,
        ) -> Result<Link, NetError> {
            let mut st = self.start("create-bridge")?;
            st.ensure_free(self.id, name)?;
            let index = st.insert_link(
                self.id,
                FakeLink {
                    kind: "bridge".into(),
                    mtu: mtu.unwrap_or(1500),
                    vlan_filtering,
                    ..FakeLink::new(name)
                },
            );
            Ok(self.link(index))
        }

        pub fn routes(&self, ipv6: bool) -> Result<Vec<RouteInfo>, NetError> {
            let st = self.start("routes")?;
            Ok(st
                .routes(self.id, ipv6)?
                .into_iter()
                .filter(|r| r.table == MAIN_TABLE)
                .map(|r| RouteInfo {
                    dst: r.dst.to_string(),
                    gw: r.gw.map(|g| g.to_string()),
                    oif: Some(r.oif),
                    priority: r.priority,
                    table: r.table,
                    scope: r.scope,
                })
                .collect())
        }

        pub fn sysctl_get(&self, key: &str) -> Result<String, NetError> {
            self.start("sysctl-get")?.sysctl_get(self.id, key)
        }

        pub fn sysctl_set(&self, key: &str, value: &str) -> Result<(), NetError> {
            self.start("sysctl-set")?.sysctl_set(self.id, key, value)
        }
    }

    impl Link {
        fn start(&self, op: &str) -> Result<(std::cell::RefMut<'_, State>, usize, u32), NetError> {
            let mut st = self.host.borrow_mut();
            st.injected(op)?;
            let (ns, index) = (self.ns.get(), self.index.get());
            st.link(ns, index)?;
            Ok((st, ns, index))
        }

        pub fn info(&self) -> Result<LinkInfo, NetError> {
            let (st, ns, index) = self.start("info")?;
            Ok(st.link(ns, index)?.info())
        }

        pub fn set_up(&self, up: bool) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("set-up")?;
            st.set_up(ns, index, up);
            Ok(())
        }

        pub fn addresses(&self) -> Result<Vec<String>, NetError> {
            let (st, ns, index) = self.start("addresses")?;
            let l = st.link(ns, index)?;
            let v4 = l.addresses.iter().filter(|a| a.addr().is_ipv4());
            let v6 = l.addresses.iter().filter(|a| a.addr().is_ipv6());
            Ok(v4.chain(v6).map(|a| a.to_string()).collect())
        }

        pub fn address_add(&self, address: &str) -> Result<(), NetError> {
            let a = parse_net(address)?;
            let (mut st, ns, index) = self.start("address-add")?;
            let l = st.link_mut(ns, index)?;
            if l.addresses.contains(&a) {
                return Err(err(
                    NetErrorKind::Exists,
                    format!("address {a} already on {}", l.name),
                ));
            }
            l.addresses.push(a);
            Ok(())
        }

        pub fn address_del(&self, address: &str) -> Result<(), NetError> {
            let a = parse_net(address)?;
            let (mut st, ns, index) = self.start("address-del")?;
            let l = st.link_mut(ns, index)?;
            let before = l.addresses.len();
            l.addresses.retain(|x| x != &a);
            if l.addresses.len() == before {
                return Err(not_found(format_args!("address {a} on {}", l.name)));
            }
            Ok(())
        }

        fn route(&self, spec: &RouteSpec, index: u32) -> Result<FakeRoute, NetError> {
            let dst = parse_net(&spec.dst)?;
            let gw = spec.gw.as_deref().map(parse_ip).transpose()?;
            if gw.is_some_and(|g| g.is_ipv6() != dst.addr().is_ipv6()) {
                return Err(err(
                    NetErrorKind::InvalidArgument,
                    format!("gateway and destination {dst} of different families"),
                ));
            }
            Ok(FakeRoute {
                dst: dst.trunc(),
                gw,
                oif: index,
                mtu: spec.mtu,
                advmss: spec.advmss,
                priority: spec.priority,
                table: spec.table.unwrap_or(MAIN_TABLE),
                scope: spec.scope.unwrap_or(if gw.is_some() { 0 } else { 253 }),
            })
        }

        pub fn route_add(&self, spec: &RouteSpec) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("route-add")?;
            let route = self.route(spec, index)?;
            let l = st.link(ns, index)?;
            if !l.up {
                return Err(err(
                    NetErrorKind::Other,
                    format!("adding route {}: network is down ({})", route.dst, l.name),
                ));
            }
            if let Some(gw) = route.gw {
                let link_local =
                    matches!(gw, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if !link_local && route.scope != 253 && !l.addresses.iter().any(|a| a.contains(&gw))
                {
                    return Err(err(
                        NetErrorKind::Other,
                        format!(
                            "adding route {} via {gw}: network is unreachable",
                            route.dst
                        ),
                    ));
                }
            }
            let routes = &mut st.ns_mut(ns)?.routes;
            if routes.iter().any(|r| {
                r.dst == route.dst && r.table == route.table && r.priority == route.priority
            }) {
                return Err(err(
                    NetErrorKind::Exists,
                    format!("route to {} exists", route.dst),
                ));
            }
            routes.push(route);
            Ok(())
        }

        pub fn route_del(&self, spec: &RouteSpec) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("route-del")?;
            let want = self.route(spec, index)?;
            let routes = &mut st.ns_mut(ns)?.routes;
            let pos = routes.iter().position(|r| {
                r.dst == want.dst
                    && r.oif == index
                    && r.table == want.table
                    && (want.gw.is_none() || r.gw == want.gw)
                    && (want.priority.is_none() || r.priority == want.priority)
            });
            match pos {
                Some(p) => {
                    routes.remove(p);
                    Ok(())
                }
                None => Err(not_found(format_args!("route to {}", want.dst))),
            }
        }

        pub fn set_master(&self, master: Option<&Link>) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("set-master")?;
            let master = match master {
                None => None,
                Some(m) => {
                    let (mns, mi) = (m.ns.get(), m.index.get());
                    let ml = st.link(mns, mi)?;
                    if mns != ns || ml.kind != "bridge" || mi == index {
                        return Err(err(
                            NetErrorKind::InvalidArgument,
                            format!("{} is not a bridge in this namespace", ml.name),
                        ));
                    }
                    Some(mi)
                }
            };
            let l = st.link_mut(ns, index)?;
            l.master = master;
            if master.is_none() {
                l.hairpin = false;
                l.isolated = false;
            }
            Ok(())
        }

        pub fn set_mtu(&self, mtu: u32) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("set-mtu")?;
            if !((68..=65535).contains(&mtu) || (index == 1 && mtu == 65536)) {
                return Err(err(
                    NetErrorKind::InvalidArgument,
                    format!("invalid MTU {mtu}"),
                ));
            }
            st.link_mut(ns, index)?.mtu = mtu;
            Ok(())
        }

        pub fn set_mac(&self, mac: &str) -> Result<(), NetError> {
            let mac = parse_mac(mac)?;
            let (mut st, ns, index) = self.start("set-mac")?;
            st.link_mut(ns, index)?.mac = mac;
            Ok(())
        }

        pub fn set_promisc(&self, on: bool) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("set-promisc")?;
            st.link_mut(ns, index)?.promisc = on;
            Ok(())
        }

        pub fn set_alias(&self, alias: &str) -> Result<(), NetError> {
            if alias.len() > 255 {
                return Err(err(NetErrorKind::InvalidArgument, "alias too long"));
            }
            let (mut st, ns, index) = self.start("set-alias")?;
            st.link_mut(ns, index)?.alias = alias.into();
            Ok(())
        }

        pub fn rename(&self, name: &str) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("rename")?;
            let l = st.link(ns, index)?;
            if l.name == name {
                return Ok(());
            }
            if l.up {
                return Err(err(
                    NetErrorKind::Other,
                    format!("renaming {}: device or resource busy (it is up)", l.name),
                ));
            }
            st.ensure_free(ns, name)?;
            st.link_mut(ns, index)?.name = name.into();
            Ok(())
        }

        pub fn move_to(&self, target: &Netns, new_name: Option<&str>) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("move-to")?;
            if let Some(n) = new_name {
                check_name(n)?;
            }
            let new_index = st.move_link(ns, index, target.id, new_name)?;
            self.ns.set(target.id);
            self.index.set(new_index);
            Ok(())
        }

        pub fn delete(&self) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("delete")?;
            st.delete(ns, index)
        }

        pub fn set_bridge_port(
            &self,
            hairpin: Option<bool>,
            isolated: Option<bool>,
        ) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("set-bridge-port")?;
            let l = st.link_mut(ns, index)?;
            if l.master.is_none() {
                return Err(err(
                    NetErrorKind::InvalidArgument,
                    format!("{} is not a bridge port", l.name),
                ));
            }
            if let Some(h) = hairpin {
                l.hairpin = h;
            }
            if let Some(i) = isolated {
                l.isolated = i;
            }
            Ok(())
        }

        pub fn bridge_vlan_add(
            &self,
            vid: u16,
            pvid: bool,
            untagged: bool,
            on_bridge: bool,
        ) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("bridge-vlan-add")?;
            if !(1..=4094).contains(&vid) {
                return Err(err(
                    NetErrorKind::InvalidArgument,
                    format!("invalid VLAN id {vid}"),
                ));
            }
            let l = st.link_mut(ns, index)?;
            if l.master.is_none() && l.kind != "bridge" {
                return Err(err(
                    NetErrorKind::InvalidArgument,
                    format!("{} is neither a bridge nor a bridge port", l.name),
                ));
            }
            if pvid {
                for v in l.vlans.iter_mut().filter(|v| v.on_bridge == on_bridge) {
                    v.pvid = false;
                }
            }
            l.vlans
                .retain(|v| !(v.vid == vid && v.on_bridge == on_bridge));
            l.vlans.push(FakeVlan {
                vid,
                pvid,
                untagged,
                on_bridge,
            });
            Ok(())
        }

        pub fn bridge_vlan_del(&self, vid: u16, on_bridge: bool) -> Result<(), NetError> {
            let (mut st, ns, index) = self.start("bridge-vlan-del")?;
            let l = st.link_mut(ns, index)?;
            let before = l.vlans.len();
            l.vlans
                .retain(|v| !(v.vid == vid && v.on_bridge == on_bridge));
            if l.vlans.len() == before {
                return Err(not_found(format_args!("VLAN {vid} on {}", l.name)));
            }
            Ok(())
        }
    }

    /// The `files` import: the host's checks, minus symlinks (the fake has none).
    pub fn read(path: &str) -> Result<Vec<u8>, WitError> {
        fn glob(p: &[u8], t: &[u8]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some((b'*', rest)) => (0..=t.len()).any(|i| glob(rest, &t[i..])),
                Some((c, rest)) => t.first() == Some(c) && glob(rest, &t[1..]),
            }
        }
        let host = current();
        let mut st = host.borrow_mut();
        st.file_reads.push(path.into());
        let error = |code: u32, msg: String| WitError {
            code,
            msg,
            details: String::new(),
        };
        if let Some(msg) = st.denied("files", "file-read") {
            return Err(error(100, msg));
        }
        let granted = path.starts_with('/')
            && !path.split('/').any(|c| c == "..")
            && st
                .file_patterns
                .iter()
                .any(|p| glob(p.as_bytes(), path.as_bytes()));
        if !granted {
            return Err(error(
                100,
                format!(
                    "plugin {:?} may not read {path:?}: the node policy's `files` patterns {:?} do not match {path:?}; add it to `files` for this plugin (or under [defaults])",
                    st.plugin, st.file_patterns
                ),
            ));
        }
        st.files.get(path).cloned().ok_or_else(|| {
            error(
                codes::IO_FAILURE,
                format!("file {path}: No such file or directory (os error 2)"),
            )
        })
    }

    pub fn host_netns() -> Result<Netns, NetError> {
        let host = current();
        let id = {
            let mut st = host.borrow_mut();
            st.injected("host-netns")?;
            if let Some(msg) = st.denied("host-netns", "host-netns") {
                return Err(err(NetErrorKind::Denied, msg));
            }
            st.host
        };
        Ok(Netns { host, id })
    }

    pub fn delegate(
        plugin_type: &str,
        verb: Verb,
        config: &str,
    ) -> Result<Option<WitResult>, WitError> {
        let host = current();
        let mut st = host.borrow_mut();
        let verb = match verb {
            Verb::Add => IpamVerb::Add,
            Verb::Del => IpamVerb::Del,
            Verb::Check => IpamVerb::Check,
        };
        let wit_error = |e: CniError| WitError {
            code: e.code,
            msg: e.msg,
            details: e.details,
        };
        if let Some(msg) = st.denied("ipam", &format!("ipam {plugin_type}")) {
            return Err(wit_error(CniError::new(100, msg, "")));
        }
        st.ipam_calls.push(IpamCall {
            plugin_type: plugin_type.into(),
            verb,
            config: config.into(),
        });
        if let Some(e) = st.ipam_errors.get(&(plugin_type.to_string(), verb as u8)) {
            return Err(wit_error(e.clone()));
        }
        match verb {
            IpamVerb::Add => match st.ipam_results.get(plugin_type) {
                Some(r) => Ok(Some(crate::context::to_wit(r))),
                None => Err(wit_error(CniError::new(
                    codes::INTERNAL,
                    format!(
                        "FakeHost: no IPAM result for {plugin_type} (use FakeHost::set_ipam_result)"
                    ),
                    "",
                ))),
            },
            _ => Ok(None),
        }
    }

    fn firewall(call: FirewallCall) -> Result<(), String> {
        let host = current();
        let mut st = host.borrow_mut();
        if let Some(msg) = st.denied("firewall", "firewall") {
            return Err(msg);
        }
        st.firewall_calls.push(call.clone());
        if let Some(e) = &st.firewall_error {
            return Err(e.clone());
        }
        match call {
            FirewallCall::MasqueradeAdd {
                network,
                container_id,
                addresses,
                ..
            } => {
                st.masquerades.insert((network, container_id), addresses);
            }
            FirewallCall::MasqueradeDel {
                network,
                container_id,
                ..
            } => {
                st.masquerades.remove(&(network, container_id));
            }
            FirewallCall::MacSpoofCheckAdd {
                network,
                container_id,
                ifname,
                host_ifname,
                mac,
            } => {
                st.mac_spoof_checks.insert(
                    (container_id, ifname),
                    MacSpoofCheck {
                        network,
                        host_ifname,
                        mac,
                    },
                );
            }
            FirewallCall::MacSpoofCheckDel {
                container_id,
                ifname,
                ..
            } => {
                st.mac_spoof_checks.remove(&(container_id, ifname));
            }
        }
        Ok(())
    }

    pub fn masquerade_add(
        network: &str,
        container_id: &str,
        addresses: &[String],
        backend: &str,
    ) -> Result<(), String> {
        firewall(FirewallCall::MasqueradeAdd {
            network: network.into(),
            container_id: container_id.into(),
            addresses: addresses.to_vec(),
            backend: backend.into(),
        })
    }

    pub fn masquerade_del(network: &str, container_id: &str, backend: &str) -> Result<(), String> {
        firewall(FirewallCall::MasqueradeDel {
            network: network.into(),
            container_id: container_id.into(),
            backend: backend.into(),
        })
    }

    pub fn mac_spoof_check_add(
        network: &str,
        container_id: &str,
        ifname: &str,
        host_ifname: &str,
        mac: &str,
    ) -> Result<(), String> {
        firewall(FirewallCall::MacSpoofCheckAdd {
            network: network.into(),
            container_id: container_id.into(),
            ifname: ifname.into(),
            host_ifname: host_ifname.into(),
            mac: mac.into(),
        })
    }

    pub fn mac_spoof_check_del(
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<(), String> {
        firewall(FirewallCall::MacSpoofCheckDel {
            network: network.into(),
            container_id: container_id.into(),
            ifname: ifname.into(),
        })
    }

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Error => LogLevel::Error,
            Level::Warn => LogLevel::Warn,
            Level::Info => LogLevel::Info,
            Level::Debug => LogLevel::Debug,
        };
        // Shown by the test harness when the test fails.
        eprintln!("[plugin {level:?}] {message}");
        // Logging without a fake host is fine (a plugin may log from a helper under test).
        if let Some(host) = CURRENT.with(|c| c.borrow().clone()) {
            host.borrow_mut().logs.push(LogLine {
                level,
                message: message.into(),
            });
        }
    }

    /// The in-memory address store.
    pub struct Store(Shared);

    pub fn open() -> Result<Store, String> {
        let host = current();
        if let Some(msg) = host.borrow().denied("ip-store", "ip-store") {
            return Err(msg);
        }
        Ok(Store(host))
    }

    fn ip(s: &str) -> Result<IpAddr, String> {
        s.parse().map_err(|_| format!("invalid address {s:?}"))
    }

    impl Store {
        pub fn lock(&self) -> Result<(), String> {
            let mut st = self.0.borrow_mut();
            if st.store.locked {
                return Err(
                    "FakeHost: the store is locked already (a second lock would block forever)"
                        .into(),
                );
            }
            st.store.locked = true;
            Ok(())
        }

        pub fn unlock(&self) -> Result<(), String> {
            self.0.borrow_mut().store.locked = false;
            Ok(())
        }

        pub fn reserve(
            &self,
            ip_s: &str,
            container_id: &str,
            ifname: &str,
            range_id: &str,
        ) -> Result<bool, String> {
            let ip = ip(ip_s)?;
            let mut st = self.0.borrow_mut();
            if st.store.reservations.iter().any(|r| r.ip == ip) {
                return Ok(false);
            }
            st.store.reservations.push(Reservation {
                ip,
                container_id: container_id.into(),
                ifname: ifname.into(),
            });
            st.store.last.insert(range_id.into(), ip);
            Ok(true)
        }

        pub fn last_reserved_ip(&self, range_id: &str) -> Result<Option<String>, String> {
            Ok(self
                .0
                .borrow()
                .store
                .last
                .get(range_id)
                .map(|i| i.to_string()))
        }

        pub fn get_by_id(&self, container_id: &str, ifname: &str) -> Result<Vec<String>, String> {
            Ok(self
                .0
                .borrow()
                .store
                .reservations
                .iter()
                .filter(|r| r.container_id == container_id && r.ifname == ifname)
                .map(|r| r.ip.to_string())
                .collect())
        }

        pub fn release_by_id(&self, container_id: &str, ifname: &str) -> Result<(), String> {
            self.0
                .borrow_mut()
                .store
                .reservations
                .retain(|r| !(r.container_id == container_id && r.ifname == ifname));
            Ok(())
        }

        pub fn release(&self, ip_s: &str) -> Result<(), String> {
            let ip = ip(ip_s)?;
            self.0
                .borrow_mut()
                .store
                .reservations
                .retain(|r| r.ip != ip);
            Ok(())
        }

        pub fn reservations(&self) -> Result<Vec<WitReservation>, String> {
            Ok(self
                .0
                .borrow()
                .store
                .reservations
                .iter()
                .map(|r| WitReservation {
                    ip: r.ip.to_string(),
                    container_id: r.container_id.clone(),
                    ifname: r.ifname.clone(),
                })
                .collect())
        }
    }

    pub use crate::__private::bindings::wasm_cni::plugin::ip_store::Reservation as WitReservation;
}
