//! Typed handles to what the host granted: network namespaces and the links inside them.

use std::fmt;

use crate::__private::bindings::wasm_cni::plugin::network as wit;
use crate::{codes, CniError};

pub use wit::ErrorKind as NetErrorKind;
pub use wit::LinkInfo;

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
pub struct Netns(wit::Netns);

impl Netns {
    pub(crate) fn from_wit(ns: wit::Netns) -> Netns {
        Netns(ns)
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
}

/// The host's network namespace, when the operator's policy grants it.
pub fn host_netns() -> Result<Netns, NetError> {
    Ok(Netns(wit::host_netns()?))
}

/// A link handle.
pub struct Link(wit::Link);

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
