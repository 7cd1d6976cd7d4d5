//! Capabilities the host hands to guests: network namespaces and links, IPAM delegation, the
//! address store, firewall rules, files the policy names, and logging.
//!
//! Every operation a guest asks for lands here, is checked against the [`Grants`] of this run
//! and is carried out by the host. A guest only ever holds resource handles that point into
//! [`Caps::table`]; one file per imported interface.

mod files;
mod firewall;
pub(crate) mod ipam;
pub mod netns;
mod network;
pub mod store;

pub use network::{new_link, peer_index};

use std::sync::Arc;

use tokio::runtime::Runtime;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::Engine;

use crate::cni::Request;
use crate::log::{Level, Logger};
use crate::policy::{Capability, Grants, Policy};
use crate::sandbox::bindings::wasm_cni::plugin::{log as wit_log, types as wit_types};

pub use netns::Netns;
pub use network::{LinkRes, NetnsRes};
pub use store::StoreRes;

/// Host state behind a plugin component's imports.
pub struct Caps {
    pub table: ResourceTable,
    rt: Arc<Runtime>,
    grants: Grants,
    logger: Logger,
    /// The request being served: IPAM delegation reuses its environment, the store is found
    /// from its config.
    req: Arc<Request>,
    /// The engine, for running a wasm IPAM plugin in-process.
    engine: Engine,
    /// The node policy, for the IPAM plugin this one delegates to.
    policy: Option<Policy>,
    /// (dev, inode) of the host netns: operations there are checked against the grants.
    host_id: Option<(u64, u64)>,
    /// How often a link (netns id, ifindex) left its place through one of this exec's handles
    /// (deleted, moved away): another handle made before is stale and refused, even if the
    /// kernel hands that index to a new link (network.rs, `LinkRes`).
    link_epochs: std::collections::HashMap<(Option<(u64, u64)>, u32), u32>,
    /// How many privileged operations this run has asked for (each is audited, see
    /// [`Caps::audit`]): a link's description taken when its handle was made answers `info`
    /// only while this has not moved (network.rs, `LinkRes::seen`).
    changes: std::cell::Cell<u64>,
}

impl Caps {
    pub fn new(
        rt: Arc<Runtime>,
        engine: Engine,
        req: Arc<Request>,
        policy: Option<Policy>,
        grants: Grants,
        logger: Logger,
    ) -> Caps {
        use std::os::unix::fs::MetadataExt;
        let host_id = std::fs::metadata("/proc/thread-self/ns/net")
            .ok()
            .map(|m| (m.dev(), m.ino()));
        Caps {
            table: ResourceTable::new(),
            rt,
            grants,
            logger,
            req,
            engine,
            policy,
            host_id,
            link_epochs: Default::default(),
            changes: Default::default(),
        }
    }

    /// Whether `ns` is the host's namespace.
    fn is_host(&self, ns: &Netns) -> bool {
        self.host_id.is_some() && ns.id().ok() == self.host_id
    }

    /// Denied unless `name` matches one of `patterns` (named `what` in the message); audited.
    fn require_match(
        &self,
        patterns: &[String],
        what: &str,
        name: &str,
        op: &str,
    ) -> Result<(), String> {
        if crate::policy::matches_any(patterns, name) {
            return Ok(());
        }
        self.audit(op, name, "denied");
        Err(format!(
            "plugin {:?} may not {op} {what} {name:?}: the node policy allows {patterns:?}",
            self.logger.plugin
        ))
    }

    /// Hand a namespace to the guest.
    pub fn grant_netns(&mut self, ns: Arc<Netns>) -> wasmtime::Result<Resource<NetnsRes>> {
        Ok(self.table.push(NetnsRes(ns))?)
    }

    fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    /// Check a grant; a refusal is logged (audit) and described in words an operator knows.
    fn require(&self, cap: Capability, op: &str) -> Result<(), String> {
        if self.grants.allows(cap) {
            return Ok(());
        }
        self.audit(op, "", "denied");
        Err(format!(
            "plugin {:?} is not granted the {} capability (needed for {op})",
            self.logger.plugin,
            cap.name()
        ))
    }

    /// One audit line per privileged operation: who, what, on what, and how it ended. Every
    /// change a guest asks for passes here (also a refused or failed one, and a delegation,
    /// whose plugin may change links with capabilities of its own), so it also counts them.
    fn audit(&self, op: &str, target: &str, outcome: &str) {
        self.changes.set(self.changes.get() + 1);
        self.logger.audit(op, target, outcome);
    }

    /// Audit the outcome of an operation and hand its result on.
    fn audited<T, E>(&self, op: &str, target: &str, r: Result<T, E>) -> Result<T, E> {
        self.audit(op, target, if r.is_ok() { "ok" } else { "error" });
        r
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
