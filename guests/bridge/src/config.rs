//! The bridge network configuration: parsing, defaults and validation, as the reference's
//! `loadNetConf` and the checks at the top of its `cmdAdd` do them. Everything here is pure.
//!
//! Keys are matched the way Go's `encoding/json` matches them: exactly or, failing that,
//! ignoring ASCII case (`"IsGateway"` sets `isGateway`); for a key given twice the last wins.
//! Unknown keys are ignored.

use serde::Deserialize;
use serde_json::{Map, Value};
use wasm_cni_sdk::{codes, CniError, Dns};

pub const DEFAULT_BRIDGE: &str = "cni0";

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The network name (`name`): masquerade rules are keyed by it.
    pub name: String,
    pub bridge: String,
    /// `isGateway`, or implied by `isDefaultGateway`.
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub force_address: bool,
    pub ip_masq: bool,
    /// `ipMasqBackend` as given (`None`: the host's default).
    pub ip_masq_backend: Option<String>,
    /// `mtu`; absent, zero or negative leave the kernel's default.
    pub mtu: Option<u32>,
    pub hairpin_mode: bool,
    pub promisc_mode: bool,
    /// `vlan` (0: none).
    pub vlan: u16,
    /// `vlanTrunk`, expanded, sorted and deduplicated.
    pub vlan_trunk: Vec<u16>,
    /// Whether `vlanTrunk` was present at all (even empty, it turns on vlan filtering).
    pub vlan_trunk_given: bool,
    /// `preserveDefaultVlan` (default true).
    pub preserve_default_vlan: bool,
    /// `macspoofchk`: frames from the container's veth enter the bridge only with its MAC.
    pub mac_spoof_check: bool,
    pub enable_dad: bool,
    pub disable_container_interface: bool,
    pub port_isolation: bool,
    /// `ipam.type`; empty for a layer-2 only network.
    pub ipam_type: String,
    /// The top-level `dns`, when it is set in the reference's sense (any list present, even
    /// empty, or a domain): it then replaces the IPAM plugin's.
    pub dns: Option<Dns>,
    /// The container interface's MAC: `runtimeConfig.mac` > `args.cni.mac` > CNI_ARGS `MAC`,
    /// normalized to lower-case colon form.
    pub mac: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    name: Option<String>,
    bridge: Option<String>,
    #[serde(rename = "isGateway")]
    is_gateway: Option<bool>,
    #[serde(rename = "isDefaultGateway")]
    is_default_gateway: Option<bool>,
    #[serde(rename = "forceAddress")]
    force_address: Option<bool>,
    #[serde(rename = "ipMasq")]
    ip_masq: Option<bool>,
    #[serde(rename = "ipMasqBackend")]
    ip_masq_backend: Option<String>,
    mtu: Option<i64>,
    #[serde(rename = "hairpinMode")]
    hairpin_mode: Option<bool>,
    #[serde(rename = "promiscMode")]
    promisc_mode: Option<bool>,
    vlan: Option<i64>,
    #[serde(rename = "vlanTrunk")]
    vlan_trunk: Option<Vec<Option<TrunkItem>>>,
    #[serde(rename = "preserveDefaultVlan")]
    preserve_default_vlan: Option<bool>,
    macspoofchk: Option<bool>,
    enabledad: Option<bool>,
    #[serde(rename = "disableContainerInterface")]
    disable_container_interface: Option<bool>,
    #[serde(rename = "portIsolation")]
    port_isolation: Option<bool>,
    ipam: Option<RawIpam>,
    dns: Option<RawDns>,
    args: Option<RawArgs>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: Option<RawMac>,
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct TrunkItem {
    #[serde(rename = "minID")]
    pub min_id: Option<i64>,
    #[serde(rename = "maxID")]
    pub max_id: Option<i64>,
    pub id: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawIpam {
    #[serde(rename = "type")]
    plugin_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDns {
    nameservers: Option<Vec<String>>,
    domain: Option<String>,
    search: Option<Vec<String>>,
    options: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawArgs {
    cni: Option<RawMac>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMac {
    mac: Option<String>,
}

/// A plain failure, reported with the generic code as the reference's errors are.
pub fn error(msg: impl Into<String>) -> CniError {
    CniError::new(codes::INTERNAL, msg, "")
}

/// Renames the keys of `v` (an object) that match one of `names` ignoring ASCII case to that
/// name, keeping the last value for a name given more than once (Go's field matching).
fn canonicalize(v: &mut Value, names: &[&str]) {
    let Value::Object(obj) = v else { return };
    if obj
        .keys()
        .all(|k| names.contains(&k.as_str()) || !names.iter().any(|n| n.eq_ignore_ascii_case(k)))
    {
        return;
    }
    let mut out = Map::new();
    for (k, val) in std::mem::take(obj) {
        let key = names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&k))
            .map_or(k, |n| n.to_string());
        out.insert(key, val);
    }
    *obj = out;
}

const TOP_LEVEL: &[&str] = &[
    "name",
    "bridge",
    "isGateway",
    "isDefaultGateway",
    "forceAddress",
    "ipMasq",
    "ipMasqBackend",
    "mtu",
    "hairpinMode",
    "promiscMode",
    "vlan",
    "vlanTrunk",
    "preserveDefaultVlan",
    "macspoofchk",
    "enabledad",
    "disableContainerInterface",
    "portIsolation",
    "ipam",
    "dns",
    "args",
    "runtimeConfig",
];

fn canonical_config(json: &str) -> Result<Value, CniError> {
    let mut v: Value =
        serde_json::from_str(json).map_err(|e| error(format!("failed to load netconf: {e}")))?;
    canonicalize(&mut v, TOP_LEVEL);
    if let Value::Object(obj) = &mut v {
        if let Some(ipam) = obj.get_mut("ipam") {
            canonicalize(ipam, &["type"]);
        }
        if let Some(dns) = obj.get_mut("dns") {
            canonicalize(dns, &["nameservers", "domain", "search", "options"]);
        }
        if let Some(args) = obj.get_mut("args") {
            canonicalize(args, &["cni"]);
            if let Some(cni) = args.get_mut("cni") {
                canonicalize(cni, &["mac"]);
            }
        }
        if let Some(rc) = obj.get_mut("runtimeConfig") {
            canonicalize(rc, &["mac"]);
        }
        if let Some(Value::Array(items)) = obj.get_mut("vlanTrunk") {
            for item in items {
                canonicalize(item, &["minID", "maxID", "id"]);
            }
        }
    }
    Ok(v)
}

impl Config {
    /// Parse and validate (the reference's `loadNetConf`): `config` is the network config as
    /// received, `args` the CNI_ARGS pairs.
    pub fn parse(config: &str, args: &[(String, String)]) -> Result<Config, CniError> {
        let raw: Raw = serde_json::from_value(canonical_config(config)?)
            .map_err(|e| error(format!("failed to load netconf: {e}")))?;
        let vlan = raw.vlan.unwrap_or(0);
        if !(0..=4094).contains(&vlan) {
            return Err(error(format!(
                "invalid VLAN ID {vlan} (must be between 0 and 4094)"
            )));
        }
        let vlan_trunk_given = raw.vlan_trunk.is_some();
        let trunk: Vec<TrunkItem> = raw
            .vlan_trunk
            .unwrap_or_default()
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let vlan_trunk = collect_vlan_trunk(&trunk)?;
        if vlan > 0 && !vlan_trunk.is_empty() {
            return Err(error("cannot set vlan and vlanTrunk at the same time"));
        }
        let mut mac = mac_from_cni_args(args)?;
        if let Some(m) = raw.args.and_then(|a| a.cni).and_then(|c| c.mac) {
            if !m.is_empty() {
                mac = Some(m);
            }
        }
        if let Some(m) = raw.runtime_config.and_then(|r| r.mac) {
            if !m.is_empty() {
                mac = Some(m);
            }
        }
        let mac = mac
            .map(|m| {
                normalize_mac(&m).ok_or_else(|| {
                    error(format!(
                        "failed to make veth pair: address {m}: invalid MAC address"
                    ))
                })
            })
            .transpose()?;
        let dns = raw.dns.and_then(|d| {
            let set = d.nameservers.is_some()
                || d.search.is_some()
                || d.options.is_some()
                || d.domain.as_deref().is_some_and(|s| !s.is_empty());
            set.then(|| Dns {
                nameservers: d.nameservers.unwrap_or_default(),
                domain: d.domain.unwrap_or_default(),
                search: d.search.unwrap_or_default(),
                options: d.options.unwrap_or_default(),
            })
        });
        let is_default_gateway = raw.is_default_gateway.unwrap_or(false);
        Ok(Config {
            name: raw.name.unwrap_or_default(),
            bridge: raw.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string()),
            is_gateway: raw.is_gateway.unwrap_or(false) || is_default_gateway,
            is_default_gateway,
            force_address: raw.force_address.unwrap_or(false),
            ip_masq: raw.ip_masq.unwrap_or(false),
            ip_masq_backend: raw.ip_masq_backend,
            mtu: raw
                .mtu
                .filter(|m| *m > 0)
                .map(|m| u32::try_from(m).map_err(|_| error(format!("invalid MTU {m}"))))
                .transpose()?,
            hairpin_mode: raw.hairpin_mode.unwrap_or(false),
            promisc_mode: raw.promisc_mode.unwrap_or(false),
            vlan: vlan as u16,
            vlan_trunk,
            vlan_trunk_given,
            preserve_default_vlan: raw.preserve_default_vlan.unwrap_or(true),
            mac_spoof_check: raw.macspoofchk.unwrap_or(false),
            enable_dad: raw.enabledad.unwrap_or(false),
            disable_container_interface: raw.disable_container_interface.unwrap_or(false),
            port_isolation: raw.port_isolation.unwrap_or(false),
            ipam_type: raw.ipam.and_then(|i| i.plugin_type).unwrap_or_default(),
            dns,
            mac,
        })
    }

    /// Whether an IPAM plugin assigns addresses (layer 3) or the network is layer 2 only.
    pub fn is_layer3(&self) -> bool {
        !self.ipam_type.is_empty()
    }

    /// Whether the bridge needs vlan filtering.
    pub fn vlan_filtering(&self) -> bool {
        self.vlan != 0 || self.vlan_trunk_given
    }

    /// The checks ADD makes before it changes anything, in the reference's order.
    pub fn check_for_add(&self) -> Result<(), CniError> {
        if self.is_layer3() && self.disable_container_interface {
            return Err(error(
                "cannot use IPAM when DisableContainerInterface flag is set",
            ));
        }
        if self.hairpin_mode && self.promisc_mode {
            // With the final period, as the reference release we compare against prints it.
            return Err(error(
                "cannot set hairpin mode and promiscuous mode at the same time.",
            ));
        }
        if self.ip_masq && self.is_layer3() {
            if let Some(b) = &self.ip_masq_backend {
                if b != "iptables" && b != "nftables" {
                    return Err(error(format!("unknown ipmasq backend {b:?}")));
                }
            }
        }
        Ok(())
    }
}

/// The reference's `collectVlanTrunk`: ranges and single ids, 1-4094, sorted and unique.
pub fn collect_vlan_trunk(items: &[TrunkItem]) -> Result<Vec<u16>, CniError> {
    let valid = |v: i64| (1..=4094).contains(&v);
    let mut vlans = std::collections::BTreeSet::new();
    for item in items {
        match (item.min_id, item.max_id) {
            (Some(min), Some(max)) => {
                if !valid(min) {
                    return Err(error("incorrect trunk minID parameter"));
                }
                if !valid(max) {
                    return Err(error("incorrect trunk maxID parameter"));
                }
                if max < min {
                    return Err(error("minID is greater than maxID in trunk parameter"));
                }
                vlans.extend((min..=max).map(|v| v as u16));
            }
            (None, Some(_)) => {
                return Err(error(
                    "minID and maxID should be configured simultaneously, minID is missing",
                ))
            }
            (Some(_), None) => {
                return Err(error(
                    "minID and maxID should be configured simultaneously, maxID is missing",
                ))
            }
            (None, None) => {}
        }
        if let Some(id) = item.id {
            if !valid(id) {
                return Err(error("incorrect trunk id parameter"));
            }
            vlans.insert(id as u16);
        }
    }
    Ok(vlans.into_iter().collect())
}

/// `MAC` from CNI_ARGS, read as Go's `types.LoadArgs` reads the reference's `MacEnvArgs`:
/// known keys are `IgnoreUnknown` and `MAC`; anything else fails unless `IgnoreUnknown` is
/// true.
pub fn mac_from_cni_args(args: &[(String, String)]) -> Result<Option<String>, CniError> {
    let mut mac = None;
    let mut ignore_unknown = false;
    let mut unknown = Vec::new();
    for (k, v) in args {
        match k.as_str() {
            "MAC" => mac = Some(v.clone()),
            "IgnoreUnknown" => {
                ignore_unknown = match v.to_ascii_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => {
                        return Err(error(format!(
                            "ARGS: error parsing value of pair \"{k}={v}\": boolean unmarshal error: invalid input {v}"
                        )))
                    }
                }
            }
            _ => unknown.push(format!("{k}={v}")),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        let list: Vec<String> = unknown.iter().map(|u| format!("{u:?}")).collect();
        return Err(error(format!("ARGS: unknown args [{}]", list.join(" "))));
    }
    Ok(mac.filter(|m| !m.is_empty()))
}

/// A 6-byte MAC in any notation Go's `net.ParseMAC` reads (`aa:bb:..`, `aa-bb-..`,
/// `aabb.ccdd.eeff`), as lower-case colon-separated hex.
pub fn normalize_mac(mac: &str) -> Option<String> {
    let hex_byte = |s: &str| {
        (s.len() == 2 && s.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u8::from_str_radix(s, 16).ok())
            .flatten()
    };
    let bytes: Vec<u8> = if mac.len() == 17 && (mac.contains(':') || mac.contains('-')) {
        let sep = if mac.contains(':') { ':' } else { '-' };
        mac.split(sep).map(hex_byte).collect::<Option<_>>()?
    } else if mac.len() == 14 && mac.matches('.').count() == 2 {
        let mut out = Vec::new();
        for group in mac.split('.') {
            if group.len() != 4 {
                return None;
            }
            out.push(hex_byte(&group[..2])?);
            out.push(hex_byte(&group[2..])?);
        }
        out
    } else {
        return None;
    };
    (bytes.len() == 6).then(|| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, CniError> {
        Config::parse(json, &[])
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"name":"n","type":"bridge"}"#).unwrap();
        assert_eq!(c.bridge, "cni0");
        assert!(!c.is_gateway && !c.is_default_gateway && !c.ip_masq);
        assert!(c.preserve_default_vlan);
        assert_eq!(c.mtu, None);
        assert_eq!(c.vlan, 0);
        assert!(!c.vlan_filtering());
        assert!(!c.is_layer3());
        assert_eq!(c.dns, None);
        assert_eq!(c.mac, None);
    }

    #[test]
    fn default_gateway_implies_gateway_and_unknown_keys_pass() {
        let c = parse(
            r#"{"name":"n","bridge":"br9","isDefaultGateway":true,"mtu":1400,"frobnicate":[1],
                "ipam":{"type":"host-local","subnet":"10.1.0.0/24"}}"#,
        )
        .unwrap();
        assert!(c.is_gateway && c.is_default_gateway);
        assert_eq!(c.bridge, "br9");
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.ipam_type, "host-local");
        assert!(c.is_layer3());
    }

    #[test]
    fn keys_match_ignoring_case_like_go() {
        let c = parse(r#"{"IsGateway":true,"BRIDGE":"x","ipmasq":true,"IPAM":{"Type":"static"}}"#)
            .unwrap();
        assert!(c.is_gateway && c.ip_masq);
        assert_eq!(c.bridge, "x");
        assert_eq!(c.ipam_type, "static");
        // The last of two spellings wins.
        let c = parse(r#"{"bridge":"a","Bridge":"b"}"#).unwrap();
        assert_eq!(c.bridge, "b");
    }

    #[test]
    fn nulls_are_absent() {
        let c = parse(r#"{"bridge":null,"isGateway":null,"mtu":null,"vlanTrunk":null}"#).unwrap();
        assert_eq!(c.bridge, "cni0");
        assert!(!c.vlan_trunk_given);
    }

    #[test]
    fn bad_types_fail_to_load() {
        let e = parse(r#"{"isGateway":"yes"}"#).unwrap_err();
        assert!(e.msg.starts_with("failed to load netconf: "), "{e:?}");
        assert_eq!(e.code, 999);
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"vlan":1.5}"#).is_err());
    }

    #[test]
    fn vlan_range() {
        for bad in ["-1", "4095"] {
            let e = parse(&format!(r#"{{"vlan":{bad}}}"#)).unwrap_err();
            assert_eq!(
                e.msg,
                format!("invalid VLAN ID {bad} (must be between 0 and 4094)")
            );
        }
        let c = parse(r#"{"vlan":4094}"#).unwrap();
        assert_eq!(c.vlan, 4094);
        assert!(c.vlan_filtering());
    }

    #[test]
    fn vlan_trunks() {
        let c = parse(r#"{"vlanTrunk":[{"minID":10,"maxID":12},{"id":11},{"ID":5}]}"#).unwrap();
        assert_eq!(c.vlan_trunk, vec![5, 10, 11, 12]);
        assert!(c.vlan_filtering());
        let c = parse(r#"{"vlanTrunk":[]}"#).unwrap();
        assert!(c.vlan_trunk.is_empty() && c.vlan_filtering());
        for (conf, msg) in [
            (
                r#"[{"minID":0,"maxID":3}]"#,
                "incorrect trunk minID parameter",
            ),
            (
                r#"[{"minID":1,"maxID":4095}]"#,
                "incorrect trunk maxID parameter",
            ),
            (
                r#"[{"minID":5,"maxID":3}]"#,
                "minID is greater than maxID in trunk parameter",
            ),
            (
                r#"[{"maxID":3}]"#,
                "minID and maxID should be configured simultaneously, minID is missing",
            ),
            (
                r#"[{"minID":3}]"#,
                "minID and maxID should be configured simultaneously, maxID is missing",
            ),
            (r#"[{"id":0}]"#, "incorrect trunk id parameter"),
        ] {
            let e = parse(&format!(r#"{{"vlanTrunk":{conf}}}"#)).unwrap_err();
            assert_eq!(e.msg, msg, "{conf}");
        }
        let e = parse(r#"{"vlan":3,"vlanTrunk":[{"id":4}]}"#).unwrap_err();
        assert_eq!(e.msg, "cannot set vlan and vlanTrunk at the same time");
        // An empty trunk does not conflict (the reference compares the collected list).
        assert!(parse(r#"{"vlan":3,"vlanTrunk":[]}"#).is_ok());
    }

    #[test]
    fn mac_precedence() {
        let env = pairs(&[("IgnoreUnknown", "1"), ("MAC", "0a:00:00:00:00:01")]);
        let c = Config::parse("{}", &env).unwrap();
        assert_eq!(c.mac.as_deref(), Some("0a:00:00:00:00:01"));
        let c = Config::parse(r#"{"args":{"cni":{"mac":"0A-00-00-00-00-02"}}}"#, &env).unwrap();
        assert_eq!(c.mac.as_deref(), Some("0a:00:00:00:00:02"));
        let c = Config::parse(
            r#"{"args":{"cni":{"mac":"0a:00:00:00:00:02"}},"runtimeConfig":{"mac":"0a00.0000.0003"}}"#,
            &env,
        )
        .unwrap();
        assert_eq!(c.mac.as_deref(), Some("0a:00:00:00:00:03"));
        let e = Config::parse(r#"{"runtimeConfig":{"mac":"zz"}}"#, &[]).unwrap_err();
        assert_eq!(
            e.msg,
            "failed to make veth pair: address zz: invalid MAC address"
        );
    }

    #[test]
    fn cni_args_like_go() {
        let e = mac_from_cni_args(&pairs(&[("K8S_POD_NAME", "x")])).unwrap_err();
        assert_eq!(e.msg, r#"ARGS: unknown args ["K8S_POD_NAME=x"]"#);
        assert_eq!(
            mac_from_cni_args(&pairs(&[("K8S_POD_NAME", "x"), ("IgnoreUnknown", "true")])).unwrap(),
            None
        );
        let e = mac_from_cni_args(&pairs(&[("IgnoreUnknown", "maybe")])).unwrap_err();
        assert!(e.msg.contains("boolean unmarshal error"), "{e:?}");
        assert_eq!(mac_from_cni_args(&[]).unwrap(), None);
    }

    #[test]
    fn macs() {
        assert_eq!(
            normalize_mac("AA:bb:cc:dd:ee:ff").as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:fg",
            "aabb.ccdd.eef",
            "a:bb:cc:dd:ee:ff0",
        ] {
            assert_eq!(normalize_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn dns_set_like_the_reference() {
        assert_eq!(parse(r#"{"dns":{}}"#).unwrap().dns, None);
        assert_eq!(parse(r#"{"dns":{"domain":""}}"#).unwrap().dns, None);
        let d = parse(r#"{"dns":{"nameservers":[]}}"#).unwrap().dns.unwrap();
        assert!(d.nameservers.is_empty());
        let d = parse(r#"{"dns":{"nameservers":["10.0.0.53"],"search":["a"]}}"#)
            .unwrap()
            .dns
            .unwrap();
        assert_eq!(d.nameservers, vec!["10.0.0.53"]);
        assert_eq!(d.search, vec!["a"]);
    }

    #[test]
    fn add_checks_in_reference_order() {
        let e = parse(r#"{"ipam":{"type":"host-local"},"disableContainerInterface":true,"hairpinMode":true,"promiscMode":true}"#)
            .unwrap()
            .check_for_add()
            .unwrap_err();
        assert_eq!(
            e.msg,
            "cannot use IPAM when DisableContainerInterface flag is set"
        );
        let e = parse(r#"{"hairpinMode":true,"promiscMode":true}"#)
            .unwrap()
            .check_for_add()
            .unwrap_err();
        assert_eq!(
            e.msg,
            "cannot set hairpin mode and promiscuous mode at the same time."
        );
        let spoof = parse(r#"{"macspoofchk":true}"#).unwrap();
        assert!(spoof.mac_spoof_check);
        assert!(spoof.check_for_add().is_ok());
        let e = parse(r#"{"ipMasq":true,"ipMasqBackend":"pf","ipam":{"type":"x"}}"#)
            .unwrap()
            .check_for_add()
            .unwrap_err();
        assert_eq!(e.msg, r#"unknown ipmasq backend "pf""#);
        assert!(parse(r#"{"disableContainerInterface":true}"#)
            .unwrap()
            .check_for_add()
            .is_ok());
    }
}
