//! Capabilities the host hands to guests: network namespaces, links and logging.
//!
//! Every operation a guest asks for lands here, is checked against the [`Grants`] of this run
//! and is carried out by the host over netlink. A guest only ever holds resource handles that
//! point into [`Caps::table`].

pub mod netns;

use std::sync::Arc;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{self as nl_link, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::LinkUnspec;
use tokio::runtime::Runtime;
use wasmtime::component::{Resource, ResourceTable};

use crate::log::{Level, Logger};
use crate::policy::Grants;
use crate::sandbox::bindings::wasm_cni::plugin::{log as wit_log, network, types as wit_types};
use network::{ErrorKind, LinkInfo, NetError};

pub use netns::Netns;

/// The guest's view of a namespace.
pub struct NetnsRes(pub Arc<Netns>);

/// The guest's view of a link: its namespace and index.
pub struct LinkRes {
    ns: Arc<Netns>,
    index: u32,
}

/// Host state behind the `network` and `log` imports.
pub struct Caps {
    pub table: ResourceTable,
    rt: Arc<Runtime>,
    grants: Grants,
    logger: Logger,
}

impl Caps {
    pub fn new(rt: Arc<Runtime>, grants: Grants, logger: Logger) -> Caps {
        Caps {
            table: ResourceTable::new(),
            rt,
            grants,
            logger,
        }
    }

    /// Hand a namespace to the guest.
    pub fn grant_netns(&mut self, ns: Arc<Netns>) -> wasmtime::Result<Resource<NetnsRes>> {
        Ok(self.table.push(NetnsRes(ns))?)
    }

    fn netns(&self, res: &Resource<NetnsRes>) -> Result<Arc<Netns>, NetError> {
        self.table
            .get(res)
            .map(|n| n.0.clone())
            .map_err(|e| invalid(format!("bad netns handle: {e}")))
    }

    fn link(&self, res: &Resource<LinkRes>) -> Result<(Arc<Netns>, u32), NetError> {
        self.table
            .get(res)
            .map(|l| (l.ns.clone(), l.index))
            .map_err(|e| invalid(format!("bad link handle: {e}")))
    }

    fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }
}

fn invalid(message: String) -> NetError {
    NetError {
        kind: ErrorKind::InvalidArgument,
        message,
    }
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
    NetError {
        kind,
        message: format!("{what}: {detail}"),
    }
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
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => info.name = name.clone(),
            LinkAttribute::Address(mac) => info.mac = format_mac(mac),
            LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
            LinkAttribute::Controller(master) => info.master = Some(*master),
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

impl network::Host for Caps {
    fn host_netns(&mut self) -> Result<Resource<NetnsRes>, NetError> {
        if !self.grants.host_netns {
            self.logger.log(
                Level::Warn,
                "denied: host network namespace",
                &[("op", "host-netns".into()), ("outcome", "denied".into())],
            );
            return Err(NetError {
                kind: ErrorKind::Denied,
                message: format!(
                    "plugin {:?} is not granted the host network namespace",
                    self.logger.plugin
                ),
            });
        }
        let ns = Netns::host(&self.rt).map_err(|e| NetError {
            kind: ErrorKind::Other,
            message: format!("failed to open the host netns: {e}"),
        })?;
        self.table
            .push(NetnsRes(Arc::new(ns)))
            .map_err(|e| NetError {
                kind: ErrorKind::Other,
                message: e.to_string(),
            })
    }
}

impl network::HostNetns for Caps {
    fn link_by_name(
        &mut self,
        ns: Resource<NetnsRes>,
        name: String,
    ) -> Result<Option<Resource<LinkRes>>, NetError> {
        let ns = self.netns(&ns)?;
        if name.is_empty() || name.len() > 15 {
            return Err(invalid(format!("invalid link name {name:?}")));
        }
        let found = self.block_on(async {
            ns.handle()
                .link()
                .get()
                .match_name(name.clone())
                .execute()
                .try_next()
                .await
        });
        let msg = match found {
            Ok(Some(msg)) => msg,
            Ok(None) => return Ok(None),
            Err(e) => {
                let e = nl_error(&format!("look up link {name:?}"), e);
                return if e.kind == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                };
            }
        };
        let link = LinkRes {
            ns,
            index: msg.header.index,
        };
        self.table
            .push(link)
            .map(Some)
            .map_err(|e| invalid(e.to_string()))
    }

    fn links(&mut self, ns: Resource<NetnsRes>) -> Result<Vec<LinkInfo>, NetError> {
        let ns = self.netns(&ns)?;
        let msgs: Vec<LinkMessage> = self
            .block_on(ns.handle().link().get().execute().try_collect())
            .map_err(|e| nl_error("list links", e))?;
        Ok(msgs.iter().map(link_info).collect())
    }

    fn drop(&mut self, rep: Resource<NetnsRes>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl network::HostLink for Caps {
    fn info(&mut self, link: Resource<LinkRes>) -> Result<LinkInfo, NetError> {
        let (ns, index) = self.link(&link)?;
        let msg = self
            .block_on(async {
                ns.handle()
                    .link()
                    .get()
                    .match_index(index)
                    .execute()
                    .try_next()
                    .await
            })
            .map_err(|e| nl_error(&format!("get link #{index}"), e))?;
        msg.as_ref().map(link_info).ok_or_else(|| NetError {
            kind: ErrorKind::NotFound,
            message: format!("link #{index} is gone"),
        })
    }

    fn set_up(&mut self, link: Resource<LinkRes>, up: bool) -> Result<(), NetError> {
        let (ns, index) = self.link(&link)?;
        let builder = LinkUnspec::new_with_index(index);
        let msg = if up { builder.up() } else { builder.down() }.build();
        let state = if up { "up" } else { "down" };
        self.block_on(ns.handle().link().change(msg).execute())
            .map_err(|e| nl_error(&format!("set link #{index} {state}"), e))?;
        self.logger.log(
            Level::Info,
            "link set",
            &[
                ("op", format!("link-set-{state}").into()),
                ("netns", ns.path().display().to_string().into()),
                ("target", index.into()),
                ("outcome", "ok".into()),
            ],
        );
        Ok(())
    }

    fn addresses(&mut self, link: Resource<LinkRes>) -> Result<Vec<String>, NetError> {
        let (ns, index) = self.link(&link)?;
        let msgs: Vec<AddressMessage> = self
            .block_on(
                ns.handle()
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect(),
            )
            .map_err(|e| nl_error(&format!("list addresses of link #{index}"), e))?;
        let (v4, v6): (Vec<_>, Vec<_>) = msgs
            .iter()
            .partition(|m| m.header.family == netlink_packet_route::AddressFamily::Inet);
        Ok(v4.into_iter().chain(v6).filter_map(address_cidr).collect())
    }

    fn drop(&mut self, rep: Resource<LinkRes>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

/// `types` has no functions; the world imports it for its records.
impl wit_types::Host for Caps {}

impl wit_log::Host for Caps {
    fn log(&mut self, level: wit_log::Level, message: String) {
        let level = match level {
            wit_log::Level::Error => Level::Error,
            wit_log::Level::Warn => Level::Warn,
            wit_log::Level::Info => Level::Info,
            wit_log::Level::Debug => Level::Debug,
        };
        self.logger
            .log(level, &message, &[("source", "guest".into())]);
    }
}
