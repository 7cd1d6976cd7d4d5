//! The invocation as a plugin sees it, and the typed result's WIT form.

use serde::de::DeserializeOwned;

use crate::__private::bindings::wasm_cni::plugin::types as wit;
use crate::{codes, CniError, CniResult, NetConf};

/// Everything the runtime asked for, already validated by the host.
#[derive(Clone, Debug)]
pub struct Context {
    /// CNI_CONTAINERID (empty for STATUS and GC).
    pub container_id: String,
    /// CNI_IFNAME (empty for STATUS and GC).
    pub ifname: String,
    /// CNI_ARGS pairs, in order.
    pub args: Vec<(String, String)>,
    /// CNI_NETNS as given: for the `sandbox` field of results.
    pub netns_path: String,
    /// The network configuration, as received.
    pub config_json: String,
    prev_result: Option<CniResult>,
}

impl Context {
    pub(crate) fn from_invocation(
        inv: wit::Invocation,
        convert: fn(wit::CniResult) -> Result<CniResult, CniError>,
    ) -> Result<Context, CniError> {
        Ok(Context {
            container_id: inv.container_id,
            ifname: inv.ifname,
            args: inv.args,
            netns_path: inv.netns_path,
            config_json: inv.config,
            prev_result: inv.prev_result.map(convert).transpose()?,
        })
    }

    /// A context for unit tests of plugin logic.
    pub fn new(container_id: &str, ifname: &str, netns_path: &str, config_json: &str) -> Context {
        Context {
            container_id: container_id.into(),
            ifname: ifname.into(),
            args: Vec::new(),
            netns_path: netns_path.into(),
            config_json: config_json.into(),
            prev_result: None,
        }
    }

    /// The same context with a `prevResult` (as a chained plugin receives it), for tests.
    pub fn with_prev_result(mut self, prev_result: CniResult) -> Context {
        self.prev_result = Some(prev_result);
        self
    }

    /// The same context with CNI_ARGS pairs, for tests.
    pub fn with_args(mut self, args: &[(&str, &str)]) -> Context {
        self.args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    /// The config in the plugin's own type (unknown keys are tolerated by serde's default).
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, CniError> {
        serde_json::from_str(&self.config_json).map_err(|e| {
            CniError::new(
                codes::DECODING_FAILURE,
                format!("failed to load netconf: {e}"),
                "",
            )
        })
    }

    /// The common fields of the config.
    pub fn net_conf(&self) -> Result<NetConf, CniError> {
        NetConf::parse(self.config_json.as_bytes())
    }

    /// The previous plugin's result, when chained.
    pub fn prev_result(&self) -> Option<&CniResult> {
        self.prev_result.as_ref()
    }

    /// The value of a CNI_ARGS key.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) fn to_wit(r: &CniResult) -> wit::CniResult {
    wit::CniResult {
        interfaces: r
            .interfaces
            .iter()
            .map(|i| wit::Iface {
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
            .map(|ip| wit::IpConfig {
                address: ip.address.to_string(),
                gateway: ip.gateway.map(|g| g.to_string()),
                interface: ip.interface,
            })
            .collect(),
        routes: r
            .routes
            .iter()
            .map(|rt| wit::Route {
                dst: rt.dst.to_string(),
                gw: rt.gw.map(|g| g.to_string()),
                mtu: rt.mtu,
                advmss: rt.advmss,
                priority: rt.priority,
                table: rt.table,
                scope: rt.scope,
            })
            .collect(),
        dns: wit::Dns {
            nameservers: r.dns.nameservers.clone(),
            domain: r.dns.domain.clone(),
            search: r.dns.search.clone(),
            options: r.dns.options.clone(),
        },
    }
}

pub(crate) fn from_wit(r: wit::CniResult) -> Result<CniResult, CniError> {
    fn parse<T: std::str::FromStr>(s: &str) -> Result<T, CniError> {
        s.parse().map_err(|_| {
            CniError::new(
                codes::DECODING_FAILURE,
                format!("invalid address in prevResult: {s:?}"),
                "",
            )
        })
    }
    Ok(CniResult {
        interfaces: r
            .interfaces
            .into_iter()
            .map(|i| crate::Interface {
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
            .into_iter()
            .map(|ip| {
                Ok(crate::IpConfig {
                    address: parse(&ip.address)?,
                    gateway: ip.gateway.as_deref().map(parse).transpose()?,
                    interface: ip.interface,
                })
            })
            .collect::<Result<_, CniError>>()?,
        routes: r
            .routes
            .into_iter()
            .map(|rt| {
                Ok(crate::Route {
                    dst: parse(&rt.dst)?,
                    gw: rt.gw.as_deref().map(parse).transpose()?,
                    mtu: rt.mtu,
                    advmss: rt.advmss,
                    priority: rt.priority,
                    table: rt.table,
                    scope: rt.scope,
                })
            })
            .collect::<Result<_, CniError>>()?,
        dns: crate::Dns {
            nameservers: r.dns.nameservers,
            domain: r.dns.domain,
            search: r.dns.search,
            options: r.dns.options,
        },
    })
}
