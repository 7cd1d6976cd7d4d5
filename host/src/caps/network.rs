//! The `network` interface: namespaces and links, over netlink, plus namespaced sysctls.
//!
//! A handle only reaches what it names: a link handle is (namespace, index), a namespace
//! handle is one the host opened. Every change is written to the audit log.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    self as nl_link, BridgeVlanInfoFlags, InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteScope,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{
    LinkBridge, LinkBridgePort, LinkBridgeVlan, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};
use wasmtime::component::Resource;

use super::{Caps, Netns};
use crate::policy::Capability;
use crate::sandbox::bindings::wasm_cni::plugin::network::{
    self, DeviceSelector, ErrorKind, LinkInfo, NetError, RouteInfo, RouteSpec,
};

/// The guest's view of a namespace.
pub struct NetnsRes(pub Arc<Netns>);

/// The guest's view of a link: its namespace and index (both follow a `move-to`), and its name
/// when the guest got the handle.
///
/// A handle stands for one kernel object (namespace + ifindex). In the host netns the policy
/// allows changes by link name (`host-links`, `host-devices`); they are checked against
/// `name`, the name the link had when the handle was made (a lookup, a creation) or that this
/// exec gave it (`rename`, `move-to`). The name is not read back before each change: a re-read
/// cannot make the check atomic (the link can be renamed between the read and the change), and
/// it cost a netlink round trip per change (4 of a bridge ADD's 19 requests). A link renamed
/// by someone else after the guest got it stays the link it was granted as. `epoch` tells a
/// handle whose link was deleted or moved away through another handle of this exec: it is
/// refused, also if the kernel has given its index to a new link since.
///
/// `seen` is the link as the kernel described it when the handle was made (the lookup's
/// answer, or the echo of its creation), with the run's count of changes then
/// (`Caps::changes`): `info` answers from it while the guest has changed nothing since,
/// instead of asking the kernel again. A bridge ADD looks its bridge up and reads it, creates
/// its veth and reads that: two GETLINK round trips (and their ~1.9 KB answers parsed) of its
/// thirteen requests. Any change the guest asks for, through any handle, makes every handle
/// read again (test: `a_links_attributes_are_read_again_once_the_guest_changed_something`).
pub struct LinkRes {
    ns: Arc<Netns>,
    index: u32,
    name: String,
    epoch: u32,
    seen: Option<(u64, LinkInfo)>,
}

type NetResult<T> = Result<T, NetError>;

fn error(kind: ErrorKind, message: String) -> NetError {
    NetError { kind, message }
}

fn invalid(message: String) -> NetError {
    error(ErrorKind::InvalidArgument, message)
}

/// A netlink failure, classified by errno so guests can tell "gone" from "broken".
fn nl_error(what: &str, err: rtnetlink::Error) -> NetError {
    let kind = match &err {
        rtnetlink::Error::NetlinkError(m) => match -m.raw_code() {
            libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL => ErrorKind::NotFound,
            libc::EEXIST => ErrorKind::Exists,
            libc::EINVAL | libc::ERANGE => ErrorKind::InvalidArgument,
            _ => ErrorKind::Other,
        },
        _ => ErrorKind::Other,
    };
    let detail = match &err {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    };
    error(kind, format!("{what}: {detail}"))
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        kind: String::new(),
        mac: String::new(),
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        peer: None,
        alias: String::new(),
        promisc: msg.header.flags.contains(LinkFlags::Promisc),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => info.name = name.clone(),
            LinkAttribute::Address(mac) => info.mac = format_mac(mac),
            LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
            LinkAttribute::Controller(master) => info.master = Some(*master),
            LinkAttribute::Link(peer) => info.peer = Some(*peer),
            LinkAttribute::IfAlias(alias) => info.alias = alias.clone(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let nl_link::LinkInfo::Kind(kind) = i {
                        info.kind = kind.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    info
}

fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(mac: &str) -> NetResult<Vec<u8>> {
    let bytes: Result<Vec<u8>, _> = mac.split(':').map(|b| u8::from_str_radix(b, 16)).collect();
    match bytes {
        Ok(b) if b.len() == 6 && mac.split(':').all(|p| p.len() == 2) => Ok(b),
        _ => Err(invalid(format!("invalid MAC address {mac:?}"))),
    }
}

fn parse_net(what: &str, s: &str) -> NetResult<IpNet> {
    s.parse()
        .map_err(|_| invalid(format!("invalid {what} {s:?} (want CIDR)")))
}

fn parse_ip(what: &str, s: &str) -> NetResult<IpAddr> {
    s.parse()
        .map_err(|_| invalid(format!("invalid {what} {s:?}")))
}

fn valid_name(name: &str) -> NetResult<()> {
    cni_types::validate::validate_interface_name(name)
        .map_err(|e| invalid(format!("link name {name:?}: {}", e.msg)))?;
    if name.contains('%') {
        // The kernel reads "eth%d" as a pattern and picks a name: the link would not be
        // called what the guest asked for.
        return Err(invalid(format!(
            "link name {name:?}: '%' makes the kernel pick the name"
        )));
    }
    Ok(())
}

/// The address of an RTM_NEWADDR message in CIDR form (IFA_LOCAL for IPv4, IFA_ADDRESS else).
fn address_cidr(msg: &AddressMessage) -> Option<String> {
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => address = Some(*ip),
            AddressAttribute::Address(ip) if address.is_none() => address = Some(*ip),
            _ => {}
        }
    }
    address.map(|ip| format!("{ip}/{}", msg.header.prefix_len))
}

fn route_info(msg: &RouteMessage) -> Option<RouteInfo> {
    let mut dst = None;
    let mut info = RouteInfo {
        dst: String::new(),
        gw: None,
        oif: None,
        priority: None,
        table: msg.header.table as u32,
        scope: msg.header.scope.into(),
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = route_ip(a),
            RouteAttribute::Gateway(a) => info.gw = route_ip(a).map(|g| g.to_string()),
            RouteAttribute::Oif(i) => info.oif = Some(*i),
            RouteAttribute::Priority(p) => info.priority = Some(*p),
            RouteAttribute::Table(t) => info.table = *t,
            _ => {}
        }
    }
    let dst = match (dst, msg.header.address_family) {
        (Some(ip), _) => ip,
        (None, AddressFamily::Inet6) => IpAddr::from([0u16; 8]),
        (None, _) => IpAddr::from([0u8; 4]),
    };
    info.dst = IpNet::new(dst, msg.header.destination_prefix_length)
        .ok()?
        .to_string();
    Some(info)
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// The route message for `spec` through link `index`.
fn route_message(index: u32, spec: &RouteSpec) -> NetResult<RouteMessage> {
    let dst = parse_net("route destination", &spec.dst)?;
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .map_err(|e| invalid(format!("route {}: {e}", spec.dst)))?
        .output_interface(index);
    if let Some(gw) = &spec.gw {
        b = b
            .gateway(parse_ip("route gateway", gw)?)
            .map_err(|e| invalid(format!("route {} via {gw}: {e}", spec.dst)))?;
    }
    if let Some(p) = spec.priority {
        b = b.priority(p);
    }
    if let Some(t) = spec.table {
        b = b.table_id(t);
    }
    if let Some(s) = spec.scope {
        b = b.scope(RouteScope::from(s));
    } else if spec.gw.is_none() {
        // A route without a gateway is on-link, as `ip route add … dev X` makes it.
        b = b.scope(RouteScope::Link);
    }
    let mut msg = b.build();
    let metrics: Vec<RouteMetric> = [
        spec.mtu.map(RouteMetric::Mtu),
        spec.advmss.map(RouteMetric::Advmss),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
    Ok(msg)
}

/// A sysctl key under `net.` as a path below /proc/sys. Dots or slashes separate components
/// (slashes allow interface names with dots: `net/ipv6/conf/eth0.100/accept_dad`).
fn sysctl_path(key: &str) -> NetResult<PathBuf> {
    let parts: Vec<&str> = if key.contains('/') {
        key.split('/').collect()
    } else {
        key.split('.').collect()
    };
    let ok = parts.len() >= 3
        && parts[0] == "net"
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c))
        });
    if !ok {
        return Err(invalid(format!("sysctl {key:?} is not a key under net.")));
    }
    Ok(Path::new("/proc/sys").join(parts.join("/")))
}

/// RTM_NEWLINK (create-exclusive) for `msg`, with NLM_F_ECHO: Linux ≥ 6.3 answers with the
/// new link as it describes it (index, name and, for a veth, its peer's index in the peer's
/// netns as IFLA_LINK), which saves looking it up; older kernels answer nothing (`None`).
pub async fn new_link(
    handle: &rtnetlink::Handle,
    msg: LinkMessage,
) -> Result<Option<LinkMessage>, rtnetlink::Error> {
    use futures::StreamExt;
    use netlink_packet_route::RouteNetlinkMessage;
    use rtnetlink::packet_core::{
        NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL,
        NLM_F_REQUEST,
    };
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewLink(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO;
    let mut responses = handle.clone().request(req)?;
    let mut created = None;
    while let Some(m) = responses.next().await {
        match m.payload {
            NetlinkPayload::Error(e) => return Err(rtnetlink::Error::NetlinkError(e)),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => created = Some(l),
            _ => {}
        }
    }
    Ok(created)
}

/// The peer's index a veth's link message names (IFLA_LINK).
pub fn peer_index(msg: &LinkMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) => Some(*i),
        _ => None,
    })
}

impl Caps {
    fn netns(&self, res: &Resource<NetnsRes>) -> NetResult<Arc<Netns>> {
        self.table
            .get(res)
            .map(|n| n.0.clone())
            .map_err(|e| invalid(format!("bad netns handle: {e}")))
    }

    fn link_res(&self, res: &Resource<LinkRes>) -> NetResult<&LinkRes> {
        self.table
            .get(res)
            .map_err(|e| invalid(format!("bad link handle: {e}")))
    }

    fn link(&self, res: &Resource<LinkRes>) -> NetResult<(Arc<Netns>, u32)> {
        self.link_res(res).map(|l| (l.ns.clone(), l.index))
    }

    /// A handle for the link `msg` describes (its index and name) in `ns`; `msg` also answers
    /// the handle's `info` until the next change (see [`LinkRes`]).
    fn push_link(&mut self, ns: Arc<Netns>, msg: &LinkMessage) -> NetResult<Resource<LinkRes>> {
        let info = link_info(msg);
        self.push_link_named(ns, msg.header.index, info.name.clone(), Some(info))
    }

    /// A handle for link `index` of `ns` called `name`, with what the kernel said of it now
    /// (`seen`), if anything.
    fn push_link_named(
        &mut self,
        ns: Arc<Netns>,
        index: u32,
        name: String,
        seen: Option<LinkInfo>,
    ) -> NetResult<Resource<LinkRes>> {
        let epoch = self.link_epoch(&ns, index);
        let seen = seen.map(|info| (self.changes.get(), info));
        self.table
            .push(LinkRes {
                ns,
                index,
                name,
                epoch,
                seen,
            })
            .map_err(|e| invalid(e.to_string()))
    }

    fn link_epoch(&self, ns: &Netns, index: u32) -> u32 {
        let key = (ns.id().ok(), index);
        self.link_epochs.get(&key).copied().unwrap_or(0)
    }

    /// Link `index` of `ns` left its place (deleted, moved away): older handles are stale.
    fn retire_link(&mut self, ns: &Netns, index: u32) {
        *self.link_epochs.entry((ns.id().ok(), index)).or_default() += 1;
    }

    fn get_link(
        &self,
        ns: &Netns,
        index: Option<u32>,
        name: Option<&str>,
    ) -> NetResult<Option<LinkMessage>> {
        let mut req = ns.handle().link().get();
        if let Some(i) = index {
            req = req.match_index(i);
        }
        if let Some(n) = name {
            req = req.match_name(n.to_string());
        }
        match self.block_on(async { req.execute().try_next().await }) {
            Ok(msg) => Ok(msg),
            Err(e) => {
                let what = match (index, name) {
                    (_, Some(n)) => format!("look up link {n:?}"),
                    (i, None) => format!("look up link #{}", i.unwrap_or_default()),
                };
                let e = nl_error(&what, e);
                if e.kind == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Create a link in `ns` ([`new_link`]), audited as `op` on `target`, and return the
    /// kernel's description of it; when the kernel echoes nothing (Linux < 6.3), the link
    /// called `name` is looked up.
    fn add_link(
        &self,
        ns: &Netns,
        msg: LinkMessage,
        (op, target): (&str, &str),
        name: &str,
    ) -> NetResult<LinkMessage> {
        let r = self
            .block_on(new_link(ns.handle(), msg))
            .map_err(|e| nl_error(&format!("{op} {target}"), e));
        match self.audited(op, target, r)? {
            Some(m) => Ok(m),
            None => self
                .get_link(ns, None, Some(name))?
                .ok_or_else(|| error(ErrorKind::Other, format!("{name} vanished after {op}"))),
        }
    }

    /// In the host netns a link may only be touched when its name matches the policy's
    /// `host-links` or `host-devices`; the container's own links are the plugin's to change.
    fn guard_name(&self, ns: &Netns, name: &str, op: &str) -> NetResult<()> {
        if !self.is_host(ns) {
            return Ok(());
        }
        let mut patterns = self.grants.host_links.clone();
        patterns.extend(
            self.grants
                .host_devices
                .iter()
                .filter(|d| !self.grants.host_links.contains(d))
                .cloned(),
        );
        self.require_match(&patterns, "host link", name, op)
            .map_err(|m| error(ErrorKind::Denied, m))
    }

    /// [`Self::guard_name`] for a link handle, by the name it was granted under (see [`LinkRes`]).
    fn guard_link(&self, res: &Resource<LinkRes>, op: &str) -> NetResult<()> {
        let link = self.link_res(res)?;
        if link.epoch != self.link_epoch(&link.ns, link.index) {
            return Err(error(
                ErrorKind::NotFound,
                format!(
                    "link #{} was deleted or moved through another handle",
                    link.index
                ),
            ));
        }
        self.guard_name(&link.ns, &link.name, op)
    }

    /// Move link `index` named `current` from `from` into `target` as `name`, in one request:
    /// RTM_SETLINK with the target's fd and the new name. The kernel moves the link and, when
    /// `current` is taken in `target`, gives it `name` on the way in (on a clash with that too
    /// nothing moves); otherwise it moves it under `current` and renames it inside `target`.
    /// Only that rename can fail after the link moved (`name` taken since the caller found it
    /// free): the link then goes back where it was, under its name. One namespace move per
    /// ADD or DEL, where moving through a temporary netns (the newer reference's way) costs
    /// two moves and making and tearing down a namespace. Returns the link's new index.
    fn move_link(
        &self,
        from: &Netns,
        (index, current, mac): (u32, &str, &str),
        target: &Netns,
        name: &str,
    ) -> NetResult<u32> {
        use std::os::fd::AsRawFd;
        let set = |ns: &Netns, msg: LinkMessage, what: &str| {
            self.block_on(ns.handle().link().change(msg).execute())
                .map_err(|e| nl_error(what, e))
        };
        let mut msg = LinkUnspec::new_with_index(index).setns_by_fd(target.file().as_raw_fd());
        if name != current {
            msg = msg.name(name.to_string());
        }
        if let Err(e) = set(from, msg.build(), &format!("move {current} as {name}")) {
            // Moved but not renamed: it is in `target` under `current`. Only a link that left
            // `from` and carries its MAC there is ours: anything else called `current` in
            // `target` stays where it is.
            let left = matches!(self.get_link(from, Some(index), None), Ok(None));
            let stray = match self.get_link(target, None, Some(current)) {
                Ok(Some(m)) if left && name != current && !mac.is_empty() => {
                    (link_info(&m).mac == mac).then_some(m.header.index)
                }
                _ => None,
            };
            if let Some(stray) = stray {
                let back = LinkUnspec::new_with_index(stray)
                    .setns_by_fd(from.file().as_raw_fd())
                    .build();
                let _ = set(target, back, "move back");
            }
            return Err(e);
        }
        self.get_link(target, None, Some(name))?
            .map(|m| m.header.index)
            .ok_or_else(|| {
                error(
                    ErrorKind::Other,
                    format!("link {name} lost during the move"),
                )
            })
    }

    /// Add or delete a route through a link, checked and audited.
    fn route_change(
        &self,
        link: &Resource<LinkRes>,
        route: &RouteSpec,
        delete: bool,
    ) -> NetResult<()> {
        let op = if delete { "route-del" } else { "route-add" };
        self.guard_link(link, op)?;
        let (ns, index) = self.link(link)?;
        let msg = route_message(index, route)?;
        let what = format!(
            "{} via {}",
            route.dst,
            route.gw.as_deref().unwrap_or("link")
        );
        let routes = ns.handle().route();
        let r = if delete {
            self.block_on(routes.del(msg).execute())
        } else {
            self.block_on(routes.add(msg).execute())
        };
        let r = r.map_err(|e| nl_error(&format!("{op} {what}"), e));
        self.audited(op, &format!("#{index} {what}"), r)
    }

    fn all_links(&self, ns: &Netns) -> NetResult<Vec<LinkMessage>> {
        self.block_on(ns.handle().link().get().execute().try_collect())
            .map_err(|e| nl_error("list links", e))
    }

    /// Apply an RTM_NEWLINK change to a link and audit it.
    fn change(
        &self,
        res: &Resource<LinkRes>,
        op: &str,
        build: impl FnOnce(LinkMessageBuilder<LinkUnspec>) -> LinkMessageBuilder<LinkUnspec>,
    ) -> NetResult<()> {
        self.guard_link(res, op)?;
        let (ns, index) = self.link(res)?;
        let msg = build(LinkUnspec::new_with_index(index)).build();
        let target = format!("{}#{index}", ns.path().display());
        let r = self
            .block_on(ns.handle().link().change(msg).execute())
            .map_err(|e| nl_error(&format!("{op} link #{index}"), e));
        self.audited(op, &target, r)
    }

    fn addresses_of(&self, ns: &Netns, index: u32) -> NetResult<Vec<AddressMessage>> {
        self.block_on(
            ns.handle()
                .address()
                .get()
                .set_link_index_filter(index)
                .execute()
                .try_collect(),
        )
        .map_err(|e| nl_error(&format!("list addresses of link #{index}"), e))
    }

    /// Run `f` inside `ns` (for /proc/sys/net, which follows the calling thread).
    fn in_netns<T: Send + 'static>(
        &self,
        ns: &Netns,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        ns.run(f)
    }
}

impl network::Host for Caps {
    fn host_netns(&mut self) -> NetResult<Resource<NetnsRes>> {
        self.require(Capability::HostNetns, "host-netns")
            .map_err(|m| error(ErrorKind::Denied, m))?;
        let ns = Netns::host(&self.rt).map_err(|e| {
            error(
                ErrorKind::Other,
                format!("failed to open the host netns: {e}"),
            )
        })?;
        self.table
            .push(NetnsRes(Arc::new(ns)))
            .map_err(|e| error(ErrorKind::Other, e.to_string()))
    }
}

impl network::HostNetns for Caps {
    fn link_by_name(
        &mut self,
        ns: Resource<NetnsRes>,
        name: String,
    ) -> NetResult<Option<Resource<LinkRes>>> {
        let ns = self.netns(&ns)?;
        valid_name(&name)?;
        match self.get_link(&ns, None, Some(&name))? {
            Some(msg) => self.push_link(ns, &msg).map(Some),
            None => Ok(None),
        }
    }

    fn links(&mut self, ns: Resource<NetnsRes>) -> NetResult<Vec<LinkInfo>> {
        let ns = self.netns(&ns)?;
        Ok(self.all_links(&ns)?.iter().map(link_info).collect())
    }

    fn link_by_index(
        &mut self,
        ns: Resource<NetnsRes>,
        index: u32,
    ) -> NetResult<Option<Resource<LinkRes>>> {
        let ns = self.netns(&ns)?;
        match self.get_link(&ns, Some(index), None)? {
            Some(msg) => self.push_link(ns, &msg).map(Some),
            None => Ok(None),
        }
    }

    fn find_device(
        &mut self,
        ns: Resource<NetnsRes>,
        selector: DeviceSelector,
    ) -> NetResult<Option<Resource<LinkRes>>> {
        let ns = self.netns(&ns)?;
        let links = self.all_links(&ns)?;
        let name_of = |m: &LinkMessage| link_info(m).name;
        let found = match &selector {
            DeviceSelector::Name(name) => links.iter().find(|m| name_of(m) == *name),
            DeviceSelector::Hwaddr(mac) => {
                let want = parse_mac(mac)?;
                links.iter().find(|m| link_info(m).mac == format_mac(&want))
            }
            DeviceSelector::KernelPath(path) => {
                if !path.starts_with("/sys/") || path.contains("..") {
                    return Err(invalid(format!("kernel path {path:?} is not a sysfs path")));
                }
                // The device whose /sys/class/net entry resolves below the path (as the reference).
                links.iter().find(|m| {
                    std::fs::canonicalize(format!("/sys/class/net/{}", name_of(m)))
                        .is_ok_and(|p| p.starts_with(path))
                })
            }
            DeviceSelector::PciBusId(id) => {
                if id.is_empty()
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                {
                    return Err(invalid(format!("invalid PCI address {id:?}")));
                }
                let names: Vec<String> =
                    std::fs::read_dir(format!("/sys/bus/pci/devices/{id}/net"))
                        .map(|d| {
                            d.filter_map(|e| e.ok())
                                .map(|e| e.file_name().to_string_lossy().into_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                links.iter().find(|m| names.contains(&name_of(m)))
            }
        };
        match found {
            Some(m) => self.push_link(ns, m).map(Some),
            None => Ok(None),
        }
    }

    fn create_veth(
        &mut self,
        ns: Resource<NetnsRes>,
        name: String,
        peer_name: String,
        peer_ns: Resource<NetnsRes>,
        mtu: Option<u32>,
        mac: Option<String>,
    ) -> NetResult<(Resource<LinkRes>, Resource<LinkRes>)> {
        {
            let (here, there) = (self.netns(&ns)?, self.netns(&peer_ns)?);
            self.guard_name(&here, &name, "veth-create")?;
            self.guard_name(&there, &peer_name, "veth-create")?;
        }
        use std::os::fd::AsRawFd;
        let (ns, peer_ns) = (self.netns(&ns)?, self.netns(&peer_ns)?);
        valid_name(&name)?;
        valid_name(&peer_name)?;
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new().name(peer_name.clone());
        let mut b = LinkVeth::new(&name, &peer_name);
        if let Some(mtu) = mtu {
            peer = peer.mtu(mtu);
            b = b.mtu(mtu);
        }
        if let Some(mac) = &mac {
            b = b.address(parse_mac(mac)?);
        }
        let same = ns.id().ok() == peer_ns.id().ok();
        if !same {
            peer = peer.setns_by_fd(peer_ns.file().as_raw_fd());
        }
        let msg = b
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        let target = format!("{name}<->{peer_name}");
        let created = self.add_link(&ns, msg, ("veth-create", &target), &name)?;
        // The peer's index (IFLA_LINK, also in a looked-up message). Older kernels leave it
        // out when both ends have the same index (in two namespaces; `ip` then shows no
        // `@ifN`): the peer is looked up by name.
        let there = match peer_index(&created) {
            Some(index) => self.push_link_named(peer_ns, index, peer_name, None)?,
            None => {
                let m = self.get_link(&peer_ns, None, Some(&peer_name))?;
                let m = m.ok_or_else(|| {
                    error(ErrorKind::Other, format!("veth peer {peer_name} vanished"))
                })?;
                self.push_link(peer_ns, &m)?
            }
        };
        Ok((self.push_link(ns, &created)?, there))
    }

    fn create_bridge(
        &mut self,
        ns: Resource<NetnsRes>,
        name: String,
        mtu: Option<u32>,
        vlan_filtering: bool,
    ) -> NetResult<Resource<LinkRes>> {
        {
            let here = self.netns(&ns)?;
            self.guard_name(&here, &name, "bridge-create")?;
        }
        let ns = self.netns(&ns)?;
        valid_name(&name)?;
        let mut b = LinkBridge::new(&name);
        if vlan_filtering {
            b = b.vlan_filtering(true);
        }
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        let created = self.add_link(&ns, b.build(), ("bridge-create", &name), &name)?;
        self.push_link(ns, &created)
    }

    fn routes(&mut self, ns: Resource<NetnsRes>, ipv6: bool) -> NetResult<Vec<RouteInfo>> {
        let ns = self.netns(&ns)?;
        let query = if ipv6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
        };
        let msgs: Vec<RouteMessage> = self
            .block_on(ns.handle().route().get(query).execute().try_collect())
            .map_err(|e| nl_error("list routes", e))?;
        Ok(msgs
            .iter()
            .filter_map(route_info)
            .filter(|r| r.table == 254)
            .collect())
    }

    fn sysctl_get(&mut self, ns: Resource<NetnsRes>, key: String) -> NetResult<String> {
        let ns = self.netns(&ns)?;
        let path = sysctl_path(&key)?;
        self.in_netns(&ns, move || std::fs::read_to_string(&path))
            .map(|v| v.trim().to_string())
            .map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::NotFound {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::Other
                };
                error(kind, format!("read sysctl {key}: {e}"))
            })
    }

    fn sysctl_set(&mut self, ns: Resource<NetnsRes>, key: String, value: String) -> NetResult<()> {
        {
            let here = self.netns(&ns)?;
            if self.is_host(&here) {
                let dotted = key.replace('/', ".");
                let sysctls = self.grants.sysctls.clone();
                self.require_match(&sysctls, "host sysctl", &dotted, "sysctl-set")
                    .map_err(|m| error(ErrorKind::Denied, m))?;
            }
        }
        let ns = self.netns(&ns)?;
        let path = sysctl_path(&key)?;
        if value.contains('\n') || value.len() > 64 {
            return Err(invalid(format!("invalid value for sysctl {key}")));
        }
        let bytes = value.clone().into_bytes();
        let r = self.in_netns(&ns, move || std::fs::write(&path, bytes));
        let r = self.audited(
            "sysctl-set",
            &format!("{}:{key}={value}", ns.path().display()),
            r,
        );
        r.map_err(|e| error(ErrorKind::Other, format!("write sysctl {key}: {e}")))
    }

    fn drop(&mut self, rep: Resource<NetnsRes>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl network::HostLink for Caps {
    fn info(&mut self, link: Resource<LinkRes>) -> NetResult<LinkInfo> {
        let res = self.link_res(&link)?;
        if let Some((at, info)) = &res.seen {
            if *at == self.changes.get() {
                return Ok(info.clone());
            }
        }
        let (ns, index) = (res.ns.clone(), res.index);
        self.get_link(&ns, Some(index), None)?
            .as_ref()
            .map(link_info)
            .ok_or_else(|| error(ErrorKind::NotFound, format!("link #{index} is gone")))
    }

    fn set_up(&mut self, link: Resource<LinkRes>, up: bool) -> NetResult<()> {
        let op = if up { "link-set-up" } else { "link-set-down" };
        self.change(&link, op, |b| if up { b.up() } else { b.down() })
    }

    fn addresses(&mut self, link: Resource<LinkRes>) -> NetResult<Vec<String>> {
        let (ns, index) = self.link(&link)?;
        let msgs = self.addresses_of(&ns, index)?;
        let (v4, v6): (Vec<_>, Vec<_>) = msgs
            .iter()
            .partition(|m| m.header.family == AddressFamily::Inet);
        Ok(v4.into_iter().chain(v6).filter_map(address_cidr).collect())
    }

    fn address_add(&mut self, link: Resource<LinkRes>, address: String) -> NetResult<()> {
        self.guard_link(&link, "address-add")?;
        let (ns, index) = self.link(&link)?;
        let net = parse_net("address", &address)?;
        let r = self
            .block_on(
                ns.handle()
                    .address()
                    .add(index, net.addr(), net.prefix_len())
                    .execute(),
            )
            .map_err(|e| nl_error(&format!("add address {address} to link #{index}"), e));
        self.audited("address-add", &format!("#{index} {address}"), r)
    }

    fn address_del(&mut self, link: Resource<LinkRes>, address: String) -> NetResult<()> {
        self.guard_link(&link, "address-del")?;
        let (ns, index) = self.link(&link)?;
        parse_net("address", &address)?;
        let msg = self
            .addresses_of(&ns, index)?
            .into_iter()
            .find(|m| address_cidr(m).as_deref() == Some(address.as_str()))
            .ok_or_else(|| {
                error(
                    ErrorKind::NotFound,
                    format!("address {address} is not on link #{index}"),
                )
            })?;
        let r = self
            .block_on(ns.handle().address().del(msg).execute())
            .map_err(|e| nl_error(&format!("delete address {address}"), e));
        self.audited("address-del", &format!("#{index} {address}"), r)
    }

    fn route_add(&mut self, link: Resource<LinkRes>, route: RouteSpec) -> NetResult<()> {
        self.route_change(&link, &route, false)
    }

    fn route_del(&mut self, link: Resource<LinkRes>, route: RouteSpec) -> NetResult<()> {
        self.route_change(&link, &route, true)
    }

    fn set_master(
        &mut self,
        link: Resource<LinkRes>,
        master: Option<Resource<LinkRes>>,
    ) -> NetResult<()> {
        let master = match &master {
            Some(m) => {
                let (mns, mindex) = self.link(m)?;
                let (ns, _) = self.link(&link)?;
                if mns.id().ok() != ns.id().ok() {
                    return Err(invalid("a master must be in the link's namespace".into()));
                }
                Some(mindex)
            }
            None => None,
        };
        self.change(&link, "link-set-master", |b| match master {
            Some(m) => b.controller(m),
            None => b.nocontroller(),
        })
    }

    fn set_mtu(&mut self, link: Resource<LinkRes>, mtu: u32) -> NetResult<()> {
        self.change(&link, "link-set-mtu", |b| b.mtu(mtu))
    }

    fn set_mac(&mut self, link: Resource<LinkRes>, mac: String) -> NetResult<()> {
        let mac = parse_mac(&mac)?;
        self.change(&link, "link-set-mac", |b| b.address(mac))
    }

    fn set_promisc(&mut self, link: Resource<LinkRes>, on: bool) -> NetResult<()> {
        self.change(&link, "link-set-promisc", |b| b.promiscuous(on))
    }

    fn set_alias(&mut self, link: Resource<LinkRes>, alias: String) -> NetResult<()> {
        if alias.len() > 255 {
            return Err(invalid("alias longer than 255 bytes".into()));
        }
        self.change(&link, "link-set-alias", |b| b.alias(alias))
    }

    fn rename(&mut self, link: Resource<LinkRes>, name: String) -> NetResult<()> {
        self.guard_link(&link, "link-rename")?;
        let (ns, _) = self.link(&link)?;
        self.guard_name(&ns, &name, "link-rename")?;
        valid_name(&name)?;
        self.change(&link, "link-rename", |b| b.name(name.clone()))?;
        if let Ok(res) = self.table.get_mut(&link) {
            res.name = name;
        }
        Ok(())
    }

    fn move_to(
        &mut self,
        link: Resource<LinkRes>,
        ns: Resource<NetnsRes>,
        new_name: Option<String>,
    ) -> NetResult<()> {
        let target = self.netns(&ns)?;
        let (from, index) = self.link(&link)?;
        let LinkInfo {
            name: current, mac, ..
        } = self
            .get_link(&from, Some(index), None)?
            .map(|m| link_info(&m))
            .ok_or_else(|| error(ErrorKind::NotFound, format!("link #{index} is gone")))?;
        let name = new_name.unwrap_or_else(|| current.clone());
        valid_name(&name)?;
        let devices = self.grants.host_devices.clone();
        let denied = |m: String| error(ErrorKind::Denied, m);
        if self.is_host(&from) {
            self.require_match(&devices, "host device", &current, "move")
                .map_err(denied)?;
        }
        if self.is_host(&target) {
            self.require_match(&devices, "host device", &name, "move")
                .map_err(denied)?;
        }
        if self.get_link(&target, None, Some(&name))?.is_some() {
            return Err(error(
                ErrorKind::Exists,
                format!(
                    "cannot move {current}: a link named {name} already exists in {}",
                    target.path().display()
                ),
            ));
        }
        let what = format!("{current} -> {}:{name}", target.path().display());
        let moved = self.move_link(&from, (index, &current, &mac), &target, &name);
        let moved = self.audited("link-move", &what, moved);
        let new_index = moved?;
        self.retire_link(&from, index);
        let epoch = self.link_epoch(&target, new_index);
        let res = self
            .table
            .get_mut(&link)
            .map_err(|e| invalid(e.to_string()))?;
        res.ns = target;
        res.index = new_index;
        res.name = name;
        res.epoch = epoch;
        Ok(())
    }

    fn delete(&mut self, link: Resource<LinkRes>) -> NetResult<()> {
        self.guard_link(&link, "link-delete")?;
        let (ns, index) = self.link(&link)?;
        let r = self
            .block_on(ns.handle().link().del(index).execute())
            .map_err(|e| nl_error(&format!("delete link #{index}"), e));
        let r = self.audited(
            "link-delete",
            &format!("{}#{index}", ns.path().display()),
            r,
        );
        if r.is_ok() {
            self.retire_link(&ns, index);
        }
        r
    }

    fn set_bridge_port(
        &mut self,
        link: Resource<LinkRes>,
        hairpin: Option<bool>,
        isolated: Option<bool>,
    ) -> NetResult<()> {
        self.guard_link(&link, "bridge-port-set")?;
        let (ns, index) = self.link(&link)?;
        let mut b = LinkBridgePort::new(index);
        if let Some(h) = hairpin {
            b = b.hairpin(h);
        }
        if let Some(i) = isolated {
            b = b.isolated(i);
        }
        let r = self
            .block_on(ns.handle().link().set_port(b.build()).execute())
            .map_err(|e| nl_error(&format!("set bridge port #{index}"), e));
        self.audited("bridge-port-set", &format!("#{index}"), r)
    }

    fn bridge_vlan_add(
        &mut self,
        link: Resource<LinkRes>,
        vid: u16,
        pvid: bool,
        untagged: bool,
        on_bridge: bool,
    ) -> NetResult<()> {
        self.guard_link(&link, "bridge-vlan-add")?;
        let (ns, index) = self.link(&link)?;
        let mut flags = BridgeVlanInfoFlags::empty();
        if pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        let mut b = LinkBridgeVlan::new(index).vlan(vid, flags);
        if on_bridge {
            b = b.bridge_self();
        }
        let r = self
            .block_on(ns.handle().link().set_port(b.build()).execute())
            .map_err(|e| nl_error(&format!("add vlan {vid} to #{index}"), e));
        self.audited("bridge-vlan-add", &format!("#{index} vid {vid}"), r)
    }

    fn bridge_vlan_del(
        &mut self,
        link: Resource<LinkRes>,
        vid: u16,
        on_bridge: bool,
    ) -> NetResult<()> {
        self.guard_link(&link, "bridge-vlan-del")?;
        let (ns, index) = self.link(&link)?;
        let mut b = LinkBridgeVlan::new(index).vlan(vid, BridgeVlanInfoFlags::empty());
        if on_bridge {
            b = b.bridge_self();
        }
        let r = self
            .block_on(ns.handle().link().del_with_message(b.build()).execute())
            .map_err(|e| nl_error(&format!("delete vlan {vid} from #{index}"), e));
        self.audited("bridge-vlan-del", &format!("#{index} vid {vid}"), r)
    }

    fn drop(&mut self, rep: Resource<LinkRes>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys_stay_under_net() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv6/conf/eth0.100/accept_dad").unwrap(),
            Path::new("/proc/sys/net/ipv6/conf/eth0.100/accept_dad")
        );
        for bad in [
            "kernel.core_pattern",
            "net",
            "net..x",
            "net/../../etc/passwd",
            "net/ipv4/a b",
            "/net/ipv4/x",
        ] {
            assert!(sysctl_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn link_names_are_names_not_kernel_patterns() {
        assert!(valid_name("eth0").is_ok());
        assert!(valid_name("net1.100").is_ok());
        for bad in ["", "eth%d", "a/b", "a:b", "a b", "0123456789abcdefg"] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(
            parse_mac("0a:58:0A:00:00:05").unwrap(),
            vec![0x0a, 0x58, 0x0a, 0, 0, 5]
        );
        for bad in [
            "0a:58:0a:00:00",
            "0a:58:0a:00:00:05:06",
            "a:58:0a:00:00:05",
            "zz:58:0a:00:00:05",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_without_gateway_are_on_link() {
        let spec = RouteSpec {
            dst: "10.1.0.0/16".into(),
            gw: None,
            mtu: Some(1400),
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        };
        let msg = route_message(7, &spec).unwrap();
        assert_eq!(msg.header.scope, RouteScope::Link);
        assert_eq!(msg.header.destination_prefix_length, 16);
        assert!(msg.attributes.contains(&RouteAttribute::Oif(7)));
        assert!(msg
            .attributes
            .contains(&RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)])));
    }
}
