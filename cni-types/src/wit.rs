//! The typed result's conversions to and from the WIT `cni-result` record.
//!
//! The host (wasmtime's `bindgen!`) and the SDK (wit-bindgen) each generate their own Rust
//! types for the same WIT records, with the same field names. [`wit_result_conversions!`]
//! writes the two conversions once for whichever generated module it is given.

/// Defines, in the calling module, for the generated WIT types module `$wit`:
///
/// - `fn to_wit(&CniResult) -> $wit::CniResult`
/// - `fn from_wit($wit::CniResult, invalid: impl Fn(&str, &str) -> CniError)
///   -> Result<CniResult, CniError>`: every address is parsed and every `ips[].interface`
///   must index `interfaces`; `invalid(what, value)` makes the error for one that is not.
#[macro_export]
macro_rules! wit_result_conversions {
    ($vis:vis $wit:ident) => {
        /// The typed result in its WIT form.
        $vis fn to_wit(r: &$crate::CniResult) -> $wit::CniResult {
            $wit::CniResult {
                interfaces: r
                    .interfaces
                    .iter()
                    .map(|i| $wit::Iface {
                        name: i.name.clone(),
                        mac: i.mac.clone(),
                        mtu: i.mtu,
                        sandbox: i.sandbox.clone(),
                        socket_path: i.socket_path.clone(),
                        pci_id: i.pci_id.clone(),
                    })
                    .collect(),
                ips: r
                    .ips
                    .iter()
                    .map(|ip| $wit::IpConfig {
                        address: ip.address.to_string(),
                        gateway: ip.gateway.map(|g| g.to_string()),
                        interface: ip.interface,
                    })
                    .collect(),
                routes: r
                    .routes
                    .iter()
                    .map(|rt| $wit::Route {
                        dst: rt.dst.to_string(),
                        gw: rt.gw.map(|g| g.to_string()),
                        mtu: rt.mtu,
                        advmss: rt.advmss,
                        priority: rt.priority,
                        table: rt.table,
                        scope: rt.scope,
                    })
                    .collect(),
                dns: $wit::Dns {
                    nameservers: r.dns.nameservers.clone(),
                    domain: r.dns.domain.clone(),
                    search: r.dns.search.clone(),
                    options: r.dns.options.clone(),
                },
            }
        }

        /// A WIT result into the typed result, checking every address and interface index.
        $vis fn from_wit(
            r: $wit::CniResult,
            invalid: impl Fn(&str, &str) -> $crate::CniError,
        ) -> Result<$crate::CniResult, $crate::CniError> {
            fn parse<T: ::core::str::FromStr>(
                invalid: &dyn Fn(&str, &str) -> $crate::CniError,
                what: &str,
                s: &str,
            ) -> Result<T, $crate::CniError> {
                s.parse().map_err(|_| invalid(what, s))
            }
            let interfaces = r.interfaces.len() as u32;
            Ok($crate::CniResult {
                interfaces: r
                    .interfaces
                    .into_iter()
                    .map(|i| $crate::Interface {
                        name: i.name,
                        mac: i.mac,
                        mtu: i.mtu,
                        sandbox: i.sandbox,
                        socket_path: i.socket_path,
                        pci_id: i.pci_id,
                    })
                    .collect(),
                ips: r
                    .ips
                    .iter()
                    .map(|ip| {
                        if let Some(i) = ip.interface.filter(|&i| i >= interfaces) {
                            return Err(invalid(
                                &format!("interface for ip {} (nonexistent interface index)", ip.address),
                                &i.to_string(),
                            ));
                        }
                        Ok($crate::IpConfig {
                            address: parse(&invalid, "address", &ip.address)?,
                            gateway: ip
                                .gateway
                                .as_deref()
                                .map(|g| parse(&invalid, "gateway", g))
                                .transpose()?,
                            interface: ip.interface,
                        })
                    })
                    .collect::<Result<_, $crate::CniError>>()?,
                routes: r
                    .routes
                    .iter()
                    .map(|rt| {
                        Ok($crate::Route {
                            dst: parse(&invalid, "route destination", &rt.dst)?,
                            gw: rt
                                .gw
                                .as_deref()
                                .map(|g| parse(&invalid, "route gateway", g))
                                .transpose()?,
                            mtu: rt.mtu,
                            advmss: rt.advmss,
                            priority: rt.priority,
                            table: rt.table,
                            scope: rt.scope,
                        })
                    })
                    .collect::<Result<_, $crate::CniError>>()?,
                dns: $crate::Dns {
                    nameservers: r.dns.nameservers,
                    domain: r.dns.domain,
                    search: r.dns.search,
                    options: r.dns.options,
                },
            })
        }
    };
}
