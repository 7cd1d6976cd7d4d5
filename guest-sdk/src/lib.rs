//! The wasm-cni guest SDK: write a CNI plugin in plain Rust, build it for `wasm32-wasip2`, and
//! the `wasm-cni` host runs it in a sandbox.
//!
//! ```ignore
//! use wasm_cni_sdk::{Context, CniError, CniResult, Netns, Plugin};
//!
//! struct MyPlugin;
//!
//! impl Plugin for MyPlugin {
//!     fn add(ctx: &Context, netns: &Netns) -> Result<CniResult, CniError> { /* ... */ }
//!     fn del(ctx: &Context, netns: Option<&Netns>) -> Result<(), CniError> { Ok(()) }
//!     fn check(ctx: &Context, netns: &Netns) -> Result<(), CniError> { Ok(()) }
//! }
//!
//! wasm_cni_sdk::export_plugin!(MyPlugin);
//! ```
//!
//! The host has already validated the CNI environment, the config's name and cniVersion, and
//! converts the result to the cniVersion the runtime asked for. A plugin only ever holds the
//! handles the host gave it ([`Netns`], [`Link`]); every operation is checked by the host.

mod context;
#[cfg(not(target_arch = "wasm32"))]
pub mod fake;
pub mod files;
pub mod firewall;
pub mod ipam;
pub mod log;
mod net;
pub mod store;

pub use cni_types::{self, codes, CniError, CniResult, Dns, Interface, IpConfig, NetConf, Route};
pub use context::Context;
pub use net::{
    host_netns, DeviceSelector, Link, LinkInfo, NetError, NetErrorKind, Netns, RouteInfo, RouteSpec,
};

/// A CNI plugin. `status` and `gc` default to "ready" and "nothing to collect".
pub trait Plugin {
    fn add(ctx: &Context, netns: &Netns) -> Result<CniResult, CniError>;
    /// `netns` is `None` when the runtime gave none or it no longer exists: DEL must still
    /// release what it can and succeed.
    fn del(ctx: &Context, netns: Option<&Netns>) -> Result<(), CniError>;
    fn check(ctx: &Context, netns: &Netns) -> Result<(), CniError>;
    fn status(_ctx: &Context) -> Result<(), CniError> {
        Ok(())
    }
    fn gc(_ctx: &Context) -> Result<(), CniError> {
        Ok(())
    }
}

/// Export a [`Plugin`] implementation as this component's CNI handler, optionally declaring
/// the capabilities it needs beyond the container's netns (`"host-netns"`, `"ipam"`,
/// `"ip-store"`, `"firewall"`, `"files"`). The host reads the declaration at install time; a call to a
/// capability that was not declared (or that policy does not grant) is denied.
///
/// ```ignore
/// wasm_cni_sdk::export_plugin!(Bridge, capabilities = ["host-netns", "ipam", "firewall"]);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty, capabilities = [$($cap:literal),* $(,)?]) => {
        $crate::export_plugin!($plugin);
        const _: () = {
            const CAPS: &str = concat!($($cap, ","),*);
            #[used]
            #[link_section = "wasm-cni:capabilities"]
            static DECLARED: [u8; CAPS.len()] = $crate::__private::bytes(CAPS);
        };
    };
    ($plugin:ty) => {
        const _: () = {
            struct WasmCniExport;
            impl $crate::__private::Guest for WasmCniExport {
                fn add(
                    inv: $crate::__private::Invocation,
                    netns: $crate::__private::WitNetns,
                ) -> ::core::result::Result<$crate::__private::WitResult, $crate::__private::WitError> {
                    $crate::__private::add::<$plugin>(inv, netns)
                }
                fn check(
                    inv: $crate::__private::Invocation,
                    netns: $crate::__private::WitNetns,
                ) -> ::core::result::Result<(), $crate::__private::WitError> {
                    $crate::__private::check::<$plugin>(inv, netns)
                }
                fn del(
                    inv: $crate::__private::Invocation,
                    netns: ::core::option::Option<$crate::__private::WitNetns>,
                ) -> ::core::result::Result<(), $crate::__private::WitError> {
                    $crate::__private::del::<$plugin>(inv, netns)
                }
                fn status(
                    inv: $crate::__private::Invocation,
                ) -> ::core::result::Result<(), $crate::__private::WitError> {
                    $crate::__private::status::<$plugin>(inv)
                }
                fn gc(
                    inv: $crate::__private::Invocation,
                ) -> ::core::result::Result<(), $crate::__private::WitError> {
                    $crate::__private::gc::<$plugin>(inv)
                }
            }
            $crate::__export_plugin_impl!(WasmCniExport with_types_in $crate::__private::bindings);
        };
    };
}

/// What `export_plugin!` expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "plugin",
            pub_export_macro: true,
            default_bindings_module: "wasm_cni_sdk::__private::bindings",
        });
    }

    pub use bindings::exports::wasm_cni::plugin::handler::Guest;
    pub use bindings::wasm_cni::plugin::network::Netns as WitNetns;
    pub use bindings::wasm_cni::plugin::types::{
        CniError as WitError, CniResult as WitResult, Invocation,
    };

    use crate::context::{result_from_host, to_wit};

    /// A string's bytes as an array (for the capabilities custom section).
    pub const fn bytes<const N: usize>(s: &str) -> [u8; N] {
        let b = s.as_bytes();
        let mut out = [0u8; N];
        let mut i = 0;
        while i < N {
            out[i] = b[i];
            i += 1;
        }
        out
    }
    use crate::{CniError, Context, Netns, Plugin};

    fn wit_error(e: CniError) -> WitError {
        WitError {
            code: e.code,
            msg: e.msg,
            details: e.details,
        }
    }

    fn context(inv: Invocation) -> Result<Context, WitError> {
        Context::from_invocation(inv, result_from_host).map_err(wit_error)
    }

    pub fn add<P: Plugin>(inv: Invocation, netns: WitNetns) -> Result<WitResult, WitError> {
        let ctx = context(inv)?;
        P::add(&ctx, &Netns::from_wit(netns))
            .map(|r| to_wit(&r))
            .map_err(wit_error)
    }

    pub fn check<P: Plugin>(inv: Invocation, netns: WitNetns) -> Result<(), WitError> {
        let ctx = context(inv)?;
        P::check(&ctx, &Netns::from_wit(netns)).map_err(wit_error)
    }

    pub fn del<P: Plugin>(inv: Invocation, netns: Option<WitNetns>) -> Result<(), WitError> {
        let ctx = context(inv)?;
        let netns = netns.map(Netns::from_wit);
        P::del(&ctx, netns.as_ref()).map_err(wit_error)
    }

    pub fn status<P: Plugin>(inv: Invocation) -> Result<(), WitError> {
        P::status(&context(inv)?).map_err(wit_error)
    }

    pub fn gc<P: Plugin>(inv: Invocation) -> Result<(), WitError> {
        P::gc(&context(inv)?).map_err(wit_error)
    }
}
