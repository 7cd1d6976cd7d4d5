//! host-local: IPAM from address ranges, with reservations in the host's `ip-store` (the
//! reference's on-disk layout, shared with the Go plugin on the same node).
//!
//! ADD allocates one address per range set (round-robin, or the requested one), DEL releases
//! what the attachment holds, CHECK asks that it holds something. Beyond the reference: GC
//! releases every reservation whose attachment is not in `cni.dev/valid-attachments`, and
//! STATUS reports code 50 when the store cannot be opened and locked. With `ipam.resolvConf`
//! the result's `dns` comes from that file, read through the host's `files` capability (the
//! node policy must name the path).
//!
//! The logic is in [`allocator`], [`config`], [`dns`] and [`range`] (plain Rust, tested natively); this
//! file connects it to the SDK.

mod allocator;
mod config;
mod dns;
mod range;

use std::net::IpAddr;

use wasm_cni_sdk::cni_types::config::valid_attachments;
use wasm_cni_sdk::store::{Reservation, Store, StoreLock};
use wasm_cni_sdk::{codes, CniError, CniResult, Context, Netns, Plugin};

use allocator::Reservations;

/// The host's store, locked, as the allocator's store.
impl Reservations for StoreLock<'_> {
    fn reserve(
        &mut self,
        ip: IpAddr,
        id: &str,
        ifname: &str,
        range_id: &str,
    ) -> Result<bool, CniError> {
        Ok(StoreLock::reserve(self, ip, id, ifname, range_id)?)
    }
    fn last_reserved_ip(&mut self, range_id: &str) -> Result<Option<IpAddr>, CniError> {
        Ok(StoreLock::last_reserved_ip(self, range_id)?)
    }
    fn get_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
        Ok(StoreLock::get_by_id(self, id, ifname)?)
    }
    fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<(), CniError> {
        Ok(StoreLock::release_by_id(self, id, ifname)?)
    }
    fn release(&mut self, ip: IpAddr) -> Result<(), CniError> {
        Ok(StoreLock::release(self, ip)?)
    }
    fn list(&mut self) -> Result<Vec<Reservation>, CniError> {
        Ok(StoreLock::list(self)?)
    }
}

struct HostLocal;

impl Plugin for HostLocal {
    fn add(ctx: &Context, _netns: &Netns) -> Result<CniResult, CniError> {
        let conf = config::load(&ctx.config_json, &ctx.args)?;
        // As the reference: the file is read before anything is allocated.
        let dns = if conf.resolv_conf.is_empty() {
            Default::default()
        } else {
            dns::load(&conf.resolv_conf)?
        };
        let store = Store::open()?;
        let mut locked = store.lock()?;
        let ips = allocator::allocate_all(&mut locked, &conf, &ctx.container_id, &ctx.ifname)?;
        Ok(CniResult {
            ips,
            routes: conf.routes,
            dns,
            ..Default::default()
        })
    }

    /// Releases what the attachment holds; holding nothing is success.
    fn del(ctx: &Context, _netns: Option<&Netns>) -> Result<(), CniError> {
        config::load(&ctx.config_json, &ctx.args)?;
        let store = Store::open()?;
        let mut locked = store.lock()?;
        Reservations::release_by_id(&mut locked, &ctx.container_id, &ctx.ifname)
    }

    /// As the reference: the attachment holds at least one address.
    fn check(ctx: &Context, _netns: &Netns) -> Result<(), CniError> {
        config::load(&ctx.config_json, &ctx.args)?;
        let store = Store::open()?;
        let mut locked = store.lock()?;
        if Reservations::get_by_id(&mut locked, &ctx.container_id, &ctx.ifname)?.is_empty() {
            return Err(config::failure(format!(
                "host-local: Failed to find address added by container {}",
                ctx.container_id
            )));
        }
        Ok(())
    }

    /// Ready when the configuration is valid and the store can be opened and locked.
    fn status(ctx: &Context) -> Result<(), CniError> {
        config::load(&ctx.config_json, &ctx.args)?;
        let unavailable = |e: wasm_cni_sdk::store::StoreError| {
            CniError::new(
                codes::NOT_AVAILABLE,
                format!("address store unavailable: {e}"),
                "",
            )
        };
        let store = Store::open().map_err(unavailable)?;
        let locked = store.lock().map_err(unavailable)?;
        locked.unlock().map_err(unavailable)
    }

    fn gc(ctx: &Context) -> Result<(), CniError> {
        config::load(&ctx.config_json, &ctx.args)?;
        let valid = valid_attachments(&ctx.net_conf()?)?;
        let store = Store::open()?;
        let mut locked = store.lock()?;
        let released = allocator::collect_garbage(&mut locked, &valid)?;
        if !released.is_empty() {
            wasm_cni_sdk::log::info(&format!(
                "gc released {} address(es) of attachments no longer valid",
                released.len()
            ));
        }
        Ok(())
    }
}

wasm_cni_sdk::export_plugin!(HostLocal, capabilities = ["ip-store", "files"]);
