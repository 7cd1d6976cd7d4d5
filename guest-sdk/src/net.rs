//! Typed handles to what the host granted: network namespaces and the links inside them.

use std::fmt;

use crate::__private::bindings::wasm_cni::plugin::network as wit;
use crate::{codes, CniError};

// The handles call the host's WIT imports on wasm32, and the in-memory fake host
// ([`crate::fake`]) everywhere else, so plugin logic unit-tests natively unchanged.
#[cfg(not(target_arch = "wasm32"))]
use crate::fake::backend::{host_netns as raw_host_netns, Link as RawLink, Netns as RawNetns};
#[cfg(target_arch = "wasm32")]
use wit::{host_netns as raw_host_netns, Link as RawLink, Netns as RawNetns};

pub use wit::DeviceSelector;
pub use wit::ErrorKind as NetErrorKind;
pub use wit::LinkInfo;
pub use wit::RouteInfo;
pub use wit::RouteSpec;

/// A failed network operation, as the host reported it.
#[derive(Clone, Debug)]
pub struct NetError {
    pub kind: NetErrorKind,
    pub message: String,
}

impl NetError {
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, NetErrorKind::NotFound)
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NetError {}

impl From<wit::NetError> for NetError {
    fn from(e: wit::NetError) -> NetError {
        NetError {
            kind: e.kind,
            message: e.message,
        }
    }
}

/// Host denials keep their own code (100) so an operator can tell them from plugin failures;
/// everything else is the generic plugin error, as in the Go plugins.
impl From<NetError> for CniError {
    fn from(e: NetError) -> CniError {
        let code = match e.kind {
            NetErrorKind::Denied => 100,
            _ => codes::INTERNAL,
        };
        CniError::new(code, e.message, "")
    }
}

/// A network namespace handle.
pub struct Netns(pub(crate) RawNetns);

impl Netns {
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_wit(ns: wit::Netns) -> Netns {
        Netns(ns)
    }

    /// Natively the exports are never called (there is no host to call them).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn from_wit(_ns: wit::Netns) -> Netns {
        unreachable!("host handles exist only on wasm32; use wasm_cni_sdk::fake natively")
    }

    /// The link named `name`, or `None`.
    pub fn link(&self, name: &str) -> Result<Option<Link>, NetError> {
        Ok(self.0.link_by_name(name)?.map(Link))
    }

    /// The link named `name`; a missing one is an error that names it.
    pub fn require_link(&self, name: &str) -> Result<Link, NetError> {
        self.link(name)?.ok_or_else(|| NetError {
            kind: NetErrorKind::NotFound,
            message: format!("Link not found: {name}"),
        })
    }

    pub fn links(&self) -> Result<Vec<LinkInfo>, NetError> {
        Ok(self.0.links()?)
    }

    pub fn link_by_index(&self, index: u32) -> Result<Option<Link>, NetError> {
        Ok(self.0.link_by_index(index)?.map(Link))
    }

    /// Find a device by name, MAC, sysfs path or PCI address.
    pub fn find_device(&self, selector: &DeviceSelector) -> Result<Option<Link>, NetError> {
        Ok(self.0.find_device(selector)?.map(Link))
    }

    /// Create a veth pair: `name` here and `peer_name` in `peer_ns`; returns (here, peer).
    pub fn create_veth(
        &self,
        name: &str,
        peer_name: &str,
        peer_ns: &Netns,
        mtu: Option<u32>,
        mac: Option<&str>,
    ) -> Result<(Link, Link), NetError> {
        let (a, b) = self.0.create_veth(name, peer_name, &peer_ns.0, mtu, mac)?;
        Ok((Link(a), Link(b)))
    }

    /// Create a bridge; [`NetErrorKind::Exists`] when a link of that name exists.
    pub fn create_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        vlan_filtering: bool,
    ) -> Result<Link, NetError> {
        Ok(Link(self.0.create_bridge(name, mtu, vlan_filtering)?))
    }

    /// Routes of the main table.
    pub fn routes(&self, ipv6: bool) -> Result<Vec<RouteInfo>, NetError> {
        Ok(self.0.routes(ipv6)?)
    }

    /// A sysctl under `net.` in this namespace (`net.ipv4.ip_forward`, or with slashes).
    pub fn sysctl(&self, key: &str) -> Result<String, NetError> {
        Ok(self.0.sysctl_get(key)?)
    }

    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
        Ok(self.0.sysctl_set(key, value)?)
    }
}

/// The host's network namespace, when the operator's policy grants it.
pub fn host_netns() -> Result<Netns, NetError> {
    Ok(Netns(raw_host_netns()?))
}

/// A link handle.
pub struct Link(RawLink);

impl Link {
    pub fn info(&self) -> Result<LinkInfo, NetError> {
        Ok(self.0.info()?)
    }

    pub fn set_up(&self) -> Result<(), NetError> {
        Ok(self.0.set_up(true)?)
    }

    pub fn set_down(&self) -> Result<(), NetError> {
        Ok(self.0.set_up(false)?)
    }

    pub fn add_address(&self, address: &ipnet::IpNet) -> Result<(), NetError> {
        Ok(self.0.address_add(&address.to_string())?)
    }

    pub fn del_address(&self, address: &ipnet::IpNet) -> Result<(), NetError> {
        Ok(self.0.address_del(&address.to_string())?)
    }

    pub fn add_route(&self, route: &RouteSpec) -> Result<(), NetError> {
        Ok(self.0.route_add(route)?)
    }

    pub fn del_route(&self, route: &RouteSpec) -> Result<(), NetError> {
        Ok(self.0.route_del(route)?)
    }

    /// Enslave to `master` (a bridge), or release with `None`.
    pub fn set_master(&self, master: Option<&Link>) -> Result<(), NetError> {
        Ok(self.0.set_master(master.map(|m| &m.0))?)
    }

    pub fn set_mtu(&self, mtu: u32) -> Result<(), NetError> {
        Ok(self.0.set_mtu(mtu)?)
    }

    pub fn set_mac(&self, mac: &str) -> Result<(), NetError> {
        Ok(self.0.set_mac(mac)?)
    }

    pub fn set_promisc(&self, on: bool) -> Result<(), NetError> {
        Ok(self.0.set_promisc(on)?)
    }

    pub fn set_alias(&self, alias: &str) -> Result<(), NetError> {
        Ok(self.0.set_alias(alias)?)
    }

    /// Rename the link (it must be down).
    pub fn rename(&self, name: &str) -> Result<(), NetError> {
        Ok(self.0.rename(name)?)
    }

    /// Move into `ns` (renamed to `new_name` there when given), atomically; the handle follows.
    pub fn move_to(&self, ns: &Netns, new_name: Option<&str>) -> Result<(), NetError> {
        Ok(self.0.move_to(&ns.0, new_name)?)
    }

    pub fn delete(&self) -> Result<(), NetError> {
        Ok(self.0.delete()?)
    }

    /// Bridge port flags (the link must be enslaved to a bridge).
    pub fn set_bridge_port(
        &self,
        hairpin: Option<bool>,
        isolated: Option<bool>,
    ) -> Result<(), NetError> {
        Ok(self.0.set_bridge_port(hairpin, isolated)?)
    }

    pub fn add_bridge_vlan(
        &self,
        vid: u16,
        pvid: bool,
        untagged: bool,
        on_bridge: bool,
    ) -> Result<(), NetError> {
        Ok(self.0.bridge_vlan_add(vid, pvid, untagged, on_bridge)?)
    }

    pub fn del_bridge_vlan(&self, vid: u16, on_bridge: bool) -> Result<(), NetError> {
        Ok(self.0.bridge_vlan_del(vid, on_bridge)?)
    }

    /// The link's addresses (IPv4 first), with their prefix lengths.
    pub fn addresses(&self) -> Result<Vec<ipnet::IpNet>, NetError> {
        self.0
            .addresses()?
            .iter()
            .map(|a| {
                a.parse().map_err(|_| NetError {
                    kind: NetErrorKind::Other,
                    message: format!("host returned an invalid address {a:?}"),
                })
            })
            .collect()
    }
}
