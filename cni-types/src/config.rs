//! The network configuration a plugin receives on stdin.
//!
//! [`NetConf`] types the fields every plugin shares (Go's `types.PluginConf`) and keeps every other
//! key in [`NetConf::extra`], so plugin-specific settings and keys added by runtimes (such as
//! `cni.dev/valid-attachments` for GC) survive a parse and a re-serialization.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{codes, CniError};
use crate::result::{CniResult, Dns};
use crate::util::nullable;

/// The key under which GC receives the attachments to keep.
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";

/// A plugin's network configuration. `null` members read as absent; empty strings and absent
/// members are left out when serializing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetConf {
    /// The declared spec version; empty when absent (meaning 0.1.0, see [`NetConf::version`]).
    #[serde(
        rename = "cniVersion",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    /// The network name.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// The plugin to run (`type`).
    #[serde(
        rename = "type",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub plugin_type: String,
    /// The IPAM section, as given (its `type` names the IPAM plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Value>,
    /// DNS settings to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// The previous plugin's result in a chain, in the config's version (see
    /// [`NetConf::prev_result`]).
    #[serde(
        rename = "prevResult",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prev_result: Option<Value>,
    /// Capability arguments the runtime passes (`runtimeConfig`).
    #[serde(
        rename = "runtimeConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_config: Option<Value>,
    /// Extra arguments from the runtime (`args`, conventionally `{"cni": {…}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// Every other key, kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl NetConf {
    /// Parses a configuration; malformed JSON or a mistyped shared field fails with code 6
    /// `error unmarshall network config: …` (the reference's message).
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                codes::DECODING_FAILURE,
                format!("error unmarshall network config: {e}"),
                "",
            )
        })
    }

    /// The spec version the configuration means: its `cniVersion`, or `"0.1.0"` when absent.
    pub fn version(&self) -> &str {
        if self.cni_version.is_empty() {
            "0.1.0"
        } else {
            &self.cni_version
        }
    }

    /// The typed `prevResult`, read in the configuration's version; `None` when there is none.
    ///
    /// Errors are those of [`CniResult::from_json`], their message prefixed with
    /// `could not parse prevResult: ` as in Go.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        let Some(raw) = &self.prev_result else {
            return Ok(None);
        };
        CniResult::from_json(raw, self.version())
            .map(Some)
            .map_err(|e| CniError {
                msg: format!("could not parse prevResult: {}", e.msg),
                ..e
            })
    }
}

/// An attachment GC must keep: a container id and interface name pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    /// The container id (`containerID`).
    #[serde(rename = "containerID", default, deserialize_with = "nullable")]
    pub container_id: String,
    /// The interface name in the container.
    #[serde(default, deserialize_with = "nullable")]
    pub ifname: String,
}

/// The attachments GC must keep, from the config's `cni.dev/valid-attachments`; empty when the key
/// is absent or `null` (GC may then release everything).
///
/// A malformed list is an error (code 6) rather than an empty list: GC releases whatever is not
/// listed, so reading garbage as "keep nothing" would tear down live attachments.
pub fn valid_attachments(conf: &NetConf) -> Result<Vec<GcAttachment>, CniError> {
    match conf.extra.get(VALID_ATTACHMENTS_KEY) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(list) => Vec::<GcAttachment>::deserialize(list).map_err(|e| {
            CniError::new(
                codes::DECODING_FAILURE,
                format!("error unmarshall network config: {VALID_ATTACHMENTS_KEY}: {e}"),
                "",
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::IpConfig;
    use serde_json::json;

    #[test]
    fn parses_shared_fields_and_keeps_the_rest() {
        let conf = NetConf::parse(
            br#"{
                "cniVersion": "1.0.0", "name": "net1", "type": "bridge", "bridge": "cni0", "isGateway": true,
                "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"},
                "dns": {"nameservers": ["10.1.0.53"]},
                "runtimeConfig": {"mac": "0a:58:0a:01:00:09"},
                "args": {"cni": {"ips": ["10.1.0.9"]}}
            }"#,
        )
        .unwrap();
        assert_eq!(conf.cni_version, "1.0.0");
        assert_eq!(conf.version(), "1.0.0");
        assert_eq!(conf.name, "net1");
        assert_eq!(conf.plugin_type, "bridge");
        assert_eq!(conf.ipam.as_ref().unwrap()["type"], "host-local");
        assert_eq!(conf.dns.as_ref().unwrap().nameservers, ["10.1.0.53"]);
        assert_eq!(
            conf.runtime_config,
            Some(json!({"mac": "0a:58:0a:01:00:09"}))
        );
        assert_eq!(conf.args, Some(json!({"cni": {"ips": ["10.1.0.9"]}})));
        assert_eq!(conf.prev_result, None);
        assert_eq!(conf.extra.len(), 2);
        assert_eq!(conf.extra["bridge"], "cni0");
        assert_eq!(conf.extra["isGateway"], true);
    }

    #[test]
    fn serializes_back_without_absent_fields() {
        let text =
            r#"{"cniVersion":"0.4.0","name":"n","type":"tuning","mtu":1400,"sysctl":{"a":"1"}}"#;
        let conf = NetConf::parse(text.as_bytes()).unwrap();
        let value = serde_json::to_value(&conf).unwrap();
        assert_eq!(value, serde_json::from_str::<Value>(text).unwrap());
        assert_eq!(serde_json::to_value(NetConf::default()).unwrap(), json!({}));
    }

    #[test]
    fn absent_and_null_fields() {
        let conf =
            NetConf::parse(br#"{"name":"n","type":null,"ipam":null,"prevResult":null}"#).unwrap();
        assert_eq!(conf.cni_version, "");
        assert_eq!(conf.version(), "0.1.0");
        assert_eq!(conf.plugin_type, "");
        assert!(conf.ipam.is_none() && conf.prev_result.is_none() && conf.extra.is_empty());
        assert_eq!(conf.prev_result().unwrap(), None);
    }

    #[test]
    fn decode_errors_are_code_6() {
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{\"name\": 5}",
            b"{\"dns\": {\"domain\": []}}",
            b"",
        ] {
            let e = NetConf::parse(bad).unwrap_err();
            assert_eq!(e.code, codes::DECODING_FAILURE);
            assert!(
                e.msg.starts_with("error unmarshall network config: "),
                "{}",
                e.msg
            );
        }
    }

    #[test]
    fn prev_result_in_the_config_version() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"x","prevResult":{"cniVersion":"0.4.0",
                "ips":[{"version":"4","address":"10.0.0.2/24","gateway":"10.0.0.1"}],"dns":{}}}"#,
        )
        .unwrap();
        let prev = conf.prev_result().unwrap().unwrap();
        assert_eq!(
            prev.ips,
            [IpConfig {
                address: "10.0.0.2/24".parse().unwrap(),
                gateway: Some("10.0.0.1".parse().unwrap()),
                interface: None
            }]
        );

        // No cniVersion: a 0.1.0 (ip4/ip6) prevResult.
        let conf =
            NetConf::parse(br#"{"name":"n","prevResult":{"ip4":{"ip":"10.0.0.2/24"}}}"#).unwrap();
        assert_eq!(conf.prev_result().unwrap().unwrap().ips.len(), 1);

        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"x"}]}}"#,
        )
        .unwrap();
        let e = conf.prev_result().unwrap_err();
        assert_eq!(e.code, codes::DECODING_FAILURE);
        assert_eq!(e.msg, "could not parse prevResult: invalid CNI result: ips[0].address: invalid CIDR address: x");

        let conf = NetConf::parse(br#"{"cniVersion":"7.0.0","name":"n","prevResult":{}}"#).unwrap();
        let e = conf.prev_result().unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (
                codes::INCOMPATIBLE_VERSION,
                r#"could not parse prevResult: unsupported CNI result version "7.0.0""#
            )
        );
    }

    #[test]
    fn gc_valid_attachments() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"host-local",
                "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"net1"}],
                "cni.dev/attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(
            valid_attachments(&conf).unwrap(),
            [
                GcAttachment {
                    container_id: "c1".into(),
                    ifname: "eth0".into()
                },
                GcAttachment {
                    container_id: "c2".into(),
                    ifname: "net1".into()
                },
            ]
        );
        assert_eq!(
            serde_json::to_value(&valid_attachments(&conf).unwrap()[0]).unwrap(),
            json!({"containerID": "c1", "ifname": "eth0"})
        );

        for none in [
            &br#"{"name":"n"}"#[..],
            br#"{"name":"n","cni.dev/valid-attachments":null}"#,
            br#"{"name":"n","cni.dev/valid-attachments":[]}"#,
        ] {
            assert_eq!(
                valid_attachments(&NetConf::parse(none).unwrap()).unwrap(),
                []
            );
        }

        let conf =
            NetConf::parse(br#"{"name":"n","cni.dev/valid-attachments":{"containerID":"c1"}}"#)
                .unwrap();
        let e = valid_attachments(&conf).unwrap_err();
        assert_eq!(e.code, codes::DECODING_FAILURE);
        assert!(
            e.msg
                .starts_with("error unmarshall network config: cni.dev/valid-attachments: "),
            "{}",
            e.msg
        );
    }
}
