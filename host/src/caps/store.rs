//! The `ip-store` interface. (Being written: see the host-local work.)

use wasmtime::component::Resource;

use super::Caps;
use crate::sandbox::bindings::wasm_cni::plugin::ip_store;

/// An open store (host side).
pub struct StoreRes;

impl ip_store::Host for Caps {
    fn open(&mut self) -> Result<Resource<StoreRes>, String> {
        Err("ip-store is not available yet".into())
    }
}

impl ip_store::HostStore for Caps {
    fn lock(&mut self, _s: Resource<StoreRes>) -> Result<(), String> {
        Err("ip-store is not available yet".into())
    }
    fn unlock(&mut self, _s: Resource<StoreRes>) -> Result<(), String> {
        Err("ip-store is not available yet".into())
    }
    fn reserve(
        &mut self,
        _s: Resource<StoreRes>,
        _ip: String,
        _id: String,
        _ifname: String,
        _range: String,
    ) -> Result<bool, String> {
        Err("ip-store is not available yet".into())
    }
    fn last_reserved_ip(
        &mut self,
        _s: Resource<StoreRes>,
        _range: String,
    ) -> Result<Option<String>, String> {
        Err("ip-store is not available yet".into())
    }
    fn get_by_id(
        &mut self,
        _s: Resource<StoreRes>,
        _id: String,
        _ifname: String,
    ) -> Result<Vec<String>, String> {
        Err("ip-store is not available yet".into())
    }
    fn release_by_id(
        &mut self,
        _s: Resource<StoreRes>,
        _id: String,
        _ifname: String,
    ) -> Result<(), String> {
        Err("ip-store is not available yet".into())
    }
    fn release(&mut self, _s: Resource<StoreRes>, _ip: String) -> Result<(), String> {
        Err("ip-store is not available yet".into())
    }
    fn reservations(
        &mut self,
        _s: Resource<StoreRes>,
    ) -> Result<Vec<ip_store::Reservation>, String> {
        Err("ip-store is not available yet".into())
    }
    fn drop(&mut self, rep: Resource<StoreRes>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}
