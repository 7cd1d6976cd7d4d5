//! The address store of the invocation's network (the `ip-store` capability): reservations
//! the host keeps on disk in the reference host-local layout, so a plugin can share them with
//! the Go host-local on the same node.
//!
//! ```ignore
//! let store = Store::open()?;
//! let locked = store.lock()?;          // flock, held until `locked` is dropped
//! if locked.reserve(ip, &ctx.container_id, &ctx.ifname, "0")? { /* it is ours */ }
//! ```
//!
//! Every operation goes through [`StoreLock`]: the host only changes a store under its lock,
//! and reading under it gives a consistent view.

use std::fmt;
use std::net::IpAddr;

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::wasm_cni::plugin::ip_store as wit;
#[cfg(not(target_arch = "wasm32"))]
use crate::fake::backend as wit;
use crate::{codes, CniError};

/// A failed store operation, in the host's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    pub message: String,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

impl From<String> for StoreError {
    fn from(message: String) -> StoreError {
        StoreError { message }
    }
}

impl StoreError {
    /// Whether the host refused the capability (its fixed wording for a missing grant).
    pub fn is_denied(&self) -> bool {
        self.message
            .contains("is not granted the ip-store capability")
    }
}

/// A denial keeps the host's code (100), as network denials do; anything else is the generic
/// plugin error, as in the Go plugins.
impl From<StoreError> for CniError {
    fn from(e: StoreError) -> CniError {
        let code = if e.is_denied() { 100 } else { codes::INTERNAL };
        CniError::new(code, format!("address store: {}", e.message), "")
    }
}

/// One reservation: an address and the attachment holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub ip: IpAddr,
    pub container_id: String,
    /// Empty for reservations written by old versions of the reference (container id only).
    pub ifname: String,
}

/// The store of this invocation's network (`ipam.dataDir`/`name`; the plugin names no path).
pub struct Store(wit::Store);

impl Store {
    /// Open the network's store, creating it when missing.
    pub fn open() -> Result<Store, StoreError> {
        Ok(Store(wit::open()?))
    }

    /// Take the store's lock, waiting for other plugins (ours or the reference) to let go.
    /// The lock is released when the returned guard is dropped.
    pub fn lock(&self) -> Result<StoreLock<'_>, StoreError> {
        self.0.lock()?;
        Ok(StoreLock { store: self })
    }
}

/// The locked store: every operation lives here.
pub struct StoreLock<'a> {
    store: &'a Store,
}

fn parse_ip(s: &str) -> Result<IpAddr, StoreError> {
    s.parse()
        .map_err(|_| StoreError::from(format!("the host returned an invalid address {s:?}")))
}

impl StoreLock<'_> {
    fn wit(&self) -> &wit::Store {
        &self.store.0
    }

    /// Reserve `ip` for (container id, ifname) and make it `range_id`'s last reservation;
    /// false when it is already taken.
    pub fn reserve(
        &self,
        ip: IpAddr,
        container_id: &str,
        ifname: &str,
        range_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .wit()
            .reserve(&ip.to_string(), container_id, ifname, range_id)?)
    }

    /// The last address reserved in `range_id`, if any.
    pub fn last_reserved_ip(&self, range_id: &str) -> Result<Option<IpAddr>, StoreError> {
        self.wit()
            .last_reserved_ip(range_id)?
            .as_deref()
            .map(parse_ip)
            .transpose()
    }

    /// The addresses reserved for (container id, ifname).
    pub fn get_by_id(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, StoreError> {
        self.wit()
            .get_by_id(container_id, ifname)?
            .iter()
            .map(|s| parse_ip(s))
            .collect()
    }

    /// Release everything (container id, ifname) holds; nothing held is not an error.
    pub fn release_by_id(&self, container_id: &str, ifname: &str) -> Result<(), StoreError> {
        Ok(self.wit().release_by_id(container_id, ifname)?)
    }

    /// Release one address; a free one is not an error.
    pub fn release(&self, ip: IpAddr) -> Result<(), StoreError> {
        Ok(self.wit().release(&ip.to_string())?)
    }

    /// Every reservation in the store.
    pub fn list(&self) -> Result<Vec<Reservation>, StoreError> {
        self.wit()
            .reservations()?
            .into_iter()
            .map(|r| {
                Ok(Reservation {
                    ip: parse_ip(&r.ip)?,
                    container_id: r.container_id,
                    ifname: r.ifname,
                })
            })
            .collect()
    }

    /// Release the lock now, reporting a failure (dropping the guard ignores it).
    pub fn unlock(self) -> Result<(), StoreError> {
        let store = self.store;
        std::mem::forget(self);
        Ok(store.0.unlock()?)
    }
}

impl Drop for StoreLock<'_> {
    fn drop(&mut self) {
        let _ = self.store.0.unlock();
    }
}
