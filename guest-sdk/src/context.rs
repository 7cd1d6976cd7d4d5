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

cni_types::wit_result_conversions!(pub(crate) wit);

/// A result the host handed over (prevResult, an IPAM plugin's result) into the typed one.
pub(crate) fn result_from_host(r: wit::CniResult) -> Result<CniResult, CniError> {
    from_wit(r, |what, s| {
        CniError::new(
            codes::DECODING_FAILURE,
            format!("invalid {what} in a result from the host: {s:?}"),
            "",
        )
    })
}
