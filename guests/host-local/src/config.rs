//! The host-local configuration, read as the reference reads it: the `ipam` section of the
//! network config (`ranges`, or the legacy top-level `subnet`/`rangeStart`/`rangeEnd`/
//! `gateway`), `routes`, `resolvConf`, plus the addresses a runtime may request (CNI_ARGS `IP`,
//! `args.cni.ips`, `runtimeConfig.ips`) and `runtimeConfig.ipRanges`.
//!
//! Keys are matched as Go's encoding/json matches them (exact, else in any letter case; the
//! last match wins), `null` reads as absent, and every check runs in the reference's order
//! with its message.

use std::net::IpAddr;

use serde_json::{Map, Value};
use wasm_cni_sdk::{codes, CniError, Route};

use crate::range::{RangeSet, RawRange};

/// A checked configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamConfig {
    /// One address is allocated from each range set, in order.
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<Route>,
    /// `resolvConf`, empty when not set.
    pub resolv_conf: String,
    /// Requested addresses, in the order given, without repeats.
    pub requested: Vec<IpAddr>,
}

/// A plugin failure with the reference's code (Go's skel reports plain errors as 999).
pub fn failure(msg: impl Into<String>) -> CniError {
    CniError::new(codes::INTERNAL, msg, "")
}

/// An object's member as encoding/json finds it; `null` is absent.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn mistyped(path: &str, v: &Value, want: &str) -> String {
    format!(
        "json: cannot unmarshal {} into {path} of type {want}",
        kind(v)
    )
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| mistyped(path, v, "object"))
}

fn array<'a>(v: &'a Value, path: &str) -> Result<&'a [Value], String> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| mistyped(path, v, "array"))
}

fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| mistyped(path, v, "string"))
}

/// An address member (Go's `net.IP`): an empty string is absent.
fn ip_field(obj: &Map<String, Value>, name: &str, path: &str) -> Result<Option<IpAddr>, String> {
    let Some(v) = field(obj, name) else {
        return Ok(None);
    };
    match string(v, &format!("{path}.{name}"))? {
        "" => Ok(None),
        s => s
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid IP address: {s}")),
    }
}

/// A CIDR (Go's `types.IPNet`): the address as written, host bits kept, and the prefix.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("invalid CIDR address: {s}");
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok((addr, p)),
        _ => Err(bad()),
    }
}

/// A requested address (Go's `ip.IP`): an address or a CIDR whose address is meant.
fn parse_requested(s: &str) -> Result<Option<IpAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let ip = if s.contains('/') {
        parse_cidr(s).map(|(ip, _)| ip).ok()
    } else {
        s.parse().ok()
    };
    ip.map(|ip| Some(ip.to_canonical()))
        .ok_or_else(|| format!("invalid IP address {s}"))
}

fn parse_range(v: &Value, path: &str) -> Result<RawRange, String> {
    let obj = object(v, path)?;
    let subnet = match field(obj, "subnet") {
        None => None,
        Some(v) => Some(parse_cidr(string(v, &format!("{path}.subnet"))?)?),
    };
    Ok(RawRange {
        subnet,
        range_start: ip_field(obj, "rangeStart", path)?,
        range_end: ip_field(obj, "rangeEnd", path)?,
        gateway: ip_field(obj, "gateway", path)?,
    })
}

/// `[[range, ...], ...]`.
fn parse_range_sets(v: &Value, path: &str) -> Result<Vec<Vec<RawRange>>, String> {
    array(v, path)?
        .iter()
        .map(|set| {
            array(set, path)?
                .iter()
                .map(|r| parse_range(r, path))
                .collect()
        })
        .collect()
}

fn parse_u32(obj: &Map<String, Value>, name: &str, path: &str) -> Result<Option<u32>, String> {
    let Some(v) = field(obj, name) else {
        return Ok(None);
    };
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| mistyped(&format!("{path}.{name}"), v, "int"))
}

fn parse_route(v: &Value, path: &str) -> Result<Route, String> {
    let obj = object(v, path)?;
    let dst = field(obj, "dst").ok_or_else(|| format!("{path}: a route needs \"dst\""))?;
    let (addr, prefix) = parse_cidr(string(dst, &format!("{path}.dst"))?)?;
    Ok(Route {
        dst: ipnet::IpNet::new(addr, prefix).map_err(|e| e.to_string())?,
        gw: ip_field(obj, "gw", path)?,
        // Kept for 1.1.0 results (the reference, on CNI 1.0, drops them).
        mtu: parse_u32(obj, "mtu", path)?.filter(|&n| n != 0),
        advmss: parse_u32(obj, "advmss", path)?.filter(|&n| n != 0),
        priority: parse_u32(obj, "priority", path)?.filter(|&n| n != 0),
        table: parse_u32(obj, "table", path)?,
        scope: parse_u32(obj, "scope", path)?,
    })
}

/// A list of requested addresses (`args.cni.ips`, `runtimeConfig.ips`).
fn requested_list(v: &Value, path: &str) -> Result<Vec<Option<IpAddr>>, String> {
    array(v, path)?
        .iter()
        .map(|ip| parse_requested(string(ip, path)?))
        .collect()
}

/// CNI_ARGS as the reference reads them (`types.LoadArgs` into `IP` and `IgnoreUnknown`):
/// unknown keys fail unless `IgnoreUnknown` is true. Beyond the reference, `IP` may list
/// several addresses separated by commas (one per range set, e.g. for dual stack).
pub fn env_requested(args: &[(String, String)]) -> Result<Vec<IpAddr>, String> {
    let mut ips = Vec::new();
    let mut ignore_unknown = false;
    let mut unknown = Vec::new();
    for (key, value) in args {
        let pair = format!("{key}={value}");
        let invalid = |e: String| format!("ARGS: error parsing value of pair {pair:?}: {e}");
        match key.as_str() {
            // The last `IP` wins, as the reference overwrites its field.
            "IP" => {
                ips = value
                    .split(',')
                    .map(|s| parse_requested(s.trim()).map_err(invalid))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .flatten()
                    .collect();
            }
            "IgnoreUnknown" => {
                ignore_unknown = match value.to_ascii_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    other => {
                        return Err(invalid(format!(
                            "boolean unmarshal error: invalid input {other}"
                        )))
                    }
                }
            }
            _ => unknown.push(pair),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        let quoted: Vec<String> = unknown.iter().map(|p| format!("{p:?}")).collect();
        return Err(format!("ARGS: unknown args [{}]", quoted.join(" ")));
    }
    Ok(ips)
}

/// Whether a cniVersion predates 0.3.0 (one address per family); an absent or unreadable one
/// counts as old, as in the reference.
fn before_0_3_0(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) < (0, 3),
        _ => true,
    }
}

/// Read and check the configuration (the whole network config, as given on stdin) and the
/// CNI_ARGS pairs.
pub fn load(config_json: &str, args: &[(String, String)]) -> Result<IpamConfig, CniError> {
    load_inner(config_json, args).map_err(failure)
}

fn load_inner(config_json: &str, args: &[(String, String)]) -> Result<IpamConfig, String> {
    let net: Value = serde_json::from_str(config_json).map_err(|e| e.to_string())?;
    let net = object(&net, "network config")?;
    let ipam = field(net, "ipam").ok_or("IPAM config missing 'ipam' key")?;
    let ipam = object(ipam, "ipam")?;
    let version = match field(net, "cniVersion") {
        Some(v) => string(v, "cniVersion")?,
        None => "",
    };
    let runtime = field(net, "runtimeConfig")
        .map(|v| object(v, "runtimeConfig"))
        .transpose()?;

    // Requested addresses: CNI_ARGS first, then `args.cni.ips`, then `runtimeConfig.ips`.
    let mut requested: Vec<Option<IpAddr>> = env_requested(args)?.into_iter().map(Some).collect();
    if let Some(cni) = field(net, "args")
        .map(|a| object(a, "args"))
        .transpose()?
        .and_then(|a| field(a, "cni"))
    {
        if let Some(ips) = field(object(cni, "args.cni")?, "ips") {
            requested.extend(requested_list(ips, "args.cni.ips")?);
        }
    }
    if let Some(ips) = runtime.and_then(|r| field(r, "ips")) {
        requested.extend(requested_list(ips, "runtimeConfig.ips")?);
    }
    let mut wanted: Vec<IpAddr> = Vec::new();
    for ip in requested {
        let ip = ip.ok_or("cannot understand ip: IP <nil> not v4 nor v6")?;
        if !wanted.contains(&ip) {
            wanted.push(ip);
        }
    }

    // Range sets: `runtimeConfig.ipRanges`, then the legacy top-level range, then `ranges`.
    let mut raw_sets = Vec::new();
    if let Some(r) = runtime.and_then(|r| field(r, "ipRanges")) {
        raw_sets.extend(parse_range_sets(r, "runtimeConfig.ipRanges")?);
    }
    let legacy = parse_range(&Value::Object(ipam.clone()), "ipam")?;
    if legacy.subnet.is_some() {
        raw_sets.push(vec![legacy]);
    }
    if let Some(r) = field(ipam, "ranges") {
        raw_sets.extend(parse_range_sets(r, "ipam.ranges")?);
    }
    if raw_sets.is_empty() {
        return Err("no IP ranges specified".into());
    }
    let mut ranges: Vec<RangeSet> = Vec::with_capacity(raw_sets.len());
    for (i, raw) in raw_sets.iter().enumerate() {
        ranges
            .push(RangeSet::canonicalize(raw).map_err(|e| format!("invalid range set {i}: {e}"))?);
    }
    let v4 = ranges.iter().filter(|s| s.is_ipv4()).count();
    if (v4 > 1 || ranges.len() - v4 > 1) && before_0_3_0(version) {
        return Err(format!(
            "CNI version {version} does not support more than 1 address per family"
        ));
    }
    for (i, a) in ranges.iter().enumerate() {
        if let Some(j) = ranges[i + 1..].iter().position(|b| a.overlaps(b)) {
            return Err(format!("range set {i} overlaps with {}", i + j + 1));
        }
    }

    let routes = match field(ipam, "routes") {
        Some(v) => array(v, "ipam.routes")?
            .iter()
            .enumerate()
            .map(|(i, r)| parse_route(r, &format!("ipam.routes[{i}]")))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let resolv_conf = match field(ipam, "resolvConf") {
        Some(v) => string(v, "ipam.resolvConf")?.to_string(),
        None => String::new(),
    };
    Ok(IpamConfig {
        ranges,
        routes,
        resolv_conf,
        requested: wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn net(ipam: &str) -> String {
        format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{ipam}}}"#)
    }

    fn err(config: &str, args: &[(&str, &str)]) -> String {
        let e = load(config, &pairs(args)).unwrap_err();
        assert_eq!(e.code, 999);
        e.msg
    }

    #[test]
    fn ranges_legacy_and_runtime_ranges_in_order() {
        let config = r#"{"cniVersion":"0.4.0","name":"n",
            "runtimeConfig":{"ipRanges":[[{"subnet":"10.9.0.0/24"}]]},
            "ipam":{"type":"host-local","subnet":"10.1.0.0/24","rangeStart":"10.1.0.10","gateway":"10.1.0.254",
                "ranges":[[{"subnet":"10.2.0.0/24"},{"subnet":"10.3.0.0/24"}],[{"subnet":"fd00::/120"}]],
                "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.1.0.5"},{"dst":"3ffe:ffff:0:01ff::1/64"}],
                "dataDir":"/tmp/x"}}"#;
        let c = load(config, &[]).unwrap();
        let sets: Vec<String> = c.ranges.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            sets,
            [
                "10.9.0.1-10.9.0.254",
                "10.1.0.10-10.1.0.254",
                "10.2.0.1-10.2.0.254,10.3.0.1-10.3.0.254",
                "fd00::1-fd00::ff"
            ]
        );
        assert_eq!(c.ranges[1].ranges()[0].gateway, ip("10.1.0.254"));
        assert_eq!(c.routes.len(), 3);
        assert_eq!(c.routes[1].gw, Some(ip("10.1.0.5")));
        assert_eq!(c.routes[2].dst.to_string(), "3ffe:ffff:0:1ff::1/64");
        assert!(c.requested.is_empty() && c.resolv_conf.is_empty());
    }

    #[test]
    fn keys_match_in_any_case_and_null_is_absent() {
        let c = load(
            &net(r#"{"Ranges":[[{"SUBNET":"10.0.0.0/24","rangestart":"10.0.0.5","gateway":null}]],"routes":null}"#),
            &[],
        )
        .unwrap();
        assert_eq!(c.ranges[0].to_string(), "10.0.0.5-10.0.0.254");
        assert!(c.routes.is_empty());
    }

    #[test]
    fn reference_errors() {
        assert_eq!(
            err(r#"{"cniVersion":"1.0.0","name":"n"}"#, &[]),
            "IPAM config missing 'ipam' key"
        );
        assert_eq!(
            err(r#"{"name":"n","ipam":null}"#, &[]),
            "IPAM config missing 'ipam' key"
        );
        assert_eq!(
            err(&net(r#"{"type":"host-local"}"#), &[]),
            "no IP ranges specified"
        );
        assert_eq!(
            err(&net(r#"{"subnet":"10.0.0.0/31"}"#), &[]),
            "invalid range set 0: Network 10.0.0.0/31 too small to allocate from"
        );
        assert_eq!(
            err(&net(r#"{"subnet":"fd00::/127"}"#), &[]),
            "invalid range set 0: Network fd00::/127 too small to allocate from"
        );
        assert_eq!(
            err(&net(r#"{"ranges":[[]]}"#), &[]),
            "invalid range set 0: empty range set"
        );
        assert_eq!(
            err(&net(r#"{"ranges":[[{"gateway":"10.0.0.1"}]]}"#), &[]),
            "invalid range set 0: IP <nil> not v4 nor v6"
        );
        assert_eq!(
            err(&net(r#"{"subnet":"10.0.0.0/33"}"#), &[]),
            "invalid CIDR address: 10.0.0.0/33"
        );
        assert_eq!(
            err(&net(r#"{"subnet":"10.0.0.0/24","rangeStart":"x"}"#), &[]),
            "invalid IP address: x"
        );
        assert_eq!(
            err(
                &net(r#"{"ranges":[[{"subnet":"10.0.0.0/16"}],[{"subnet":"10.0.3.0/24"}]]}"#),
                &[]
            ),
            "range set 0 overlaps with 1"
        );
        let two_v4 = r#"{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.1.0.0/24"}]]}"#;
        assert_eq!(
            err(
                &format!(r#"{{"cniVersion":"0.2.0","name":"n","ipam":{two_v4}}}"#),
                &[]
            ),
            "CNI version 0.2.0 does not support more than 1 address per family"
        );
        assert_eq!(
            err(&format!(r#"{{"name":"n","ipam":{two_v4}}}"#), &[]),
            "CNI version  does not support more than 1 address per family"
        );
        load(
            &format!(r#"{{"cniVersion":"0.3.0","name":"n","ipam":{two_v4}}}"#),
            &[],
        )
        .unwrap();
        let dual = r#"{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64"}]]}"#;
        load(
            &format!(r#"{{"cniVersion":"0.2.0","name":"n","ipam":{dual}}}"#),
            &[],
        )
        .unwrap();
        assert!(err(&net(r#"{"ranges":{"subnet":"10.0.0.0/24"}}"#), &[])
            .contains("cannot unmarshal object"));
    }

    #[test]
    fn requested_addresses_from_all_three_sources() {
        let config = r#"{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.0/24"},
            "args":{"cni":{"ips":["10.0.0.7","10.0.0.5/24"]}},"runtimeConfig":{"ips":["fd00::9","10.0.0.7"]}}"#;
        let c = load(config, &pairs(&[("IP", "10.0.0.5")])).unwrap();
        assert_eq!(c.requested, [ip("10.0.0.5"), ip("10.0.0.7"), ip("fd00::9")]);
        let e = err(
            r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24"},"args":{"cni":{"ips":["nope"]}}}"#,
            &[],
        );
        assert_eq!(e, "invalid IP address nope");
        let e = err(
            r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24"},"runtimeConfig":{"ips":[""]}}"#,
            &[],
        );
        assert_eq!(e, "cannot understand ip: IP <nil> not v4 nor v6");
    }

    #[test]
    fn cni_args_like_load_args() {
        let ips = |args: &[(&str, &str)]| env_requested(&pairs(args));
        assert!(ips(&[]).unwrap().is_empty());
        assert_eq!(ips(&[("IP", "10.0.0.5")]).unwrap(), [ip("10.0.0.5")]);
        assert_eq!(ips(&[("IP", "10.0.0.5/24")]).unwrap(), [ip("10.0.0.5")]);
        assert!(ips(&[("IP", "")]).unwrap().is_empty());
        assert_eq!(
            ips(&[("IP", "10.0.0.5,fd00::5")]).unwrap(),
            [ip("10.0.0.5"), ip("fd00::5")]
        );
        assert_eq!(
            ips(&[("IP", "10.0.0.5"), ("IP", "10.0.0.6")]).unwrap(),
            [ip("10.0.0.6")]
        );
        assert_eq!(
            ips(&[("IP", "10.0.0.500")]).unwrap_err(),
            r#"ARGS: error parsing value of pair "IP=10.0.0.500": invalid IP address 10.0.0.500"#
        );
        assert_eq!(
            ips(&[("K8S_POD_NAME", "web"), ("FOO", "1"), ("IP", "10.0.0.5")]).unwrap_err(),
            r#"ARGS: unknown args ["K8S_POD_NAME=web" "FOO=1"]"#
        );
        assert_eq!(
            ips(&[
                ("K8S_POD_NAME", "web"),
                ("IgnoreUnknown", "1"),
                ("IP", "10.0.0.5")
            ])
            .unwrap(),
            [ip("10.0.0.5")]
        );
        assert!(ips(&[("IgnoreUnknown", "True"), ("X", "y")])
            .unwrap()
            .is_empty());
        assert!(ips(&[("IgnoreUnknown", "0"), ("X", "y")]).is_err());
        assert_eq!(
            ips(&[("IgnoreUnknown", "yes")]).unwrap_err(),
            r#"ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes"#
        );
        // Keys are matched exactly, as Go's FieldByName does.
        assert!(ips(&[("ip", "10.0.0.5")]).is_err());
    }

    #[test]
    fn routes_and_resolv_conf() {
        let c = load(
            &net(r#"{"subnet":"10.0.0.0/24","resolvConf":"/etc/resolv.conf",
                "routes":[{"dst":"10.10.0.0/16","gw":"10.0.0.9","mtu":1400,"table":0}]}"#),
            &[],
        )
        .unwrap();
        assert_eq!(c.resolv_conf, "/etc/resolv.conf");
        let r = &c.routes[0];
        assert_eq!(
            (r.dst.to_string(), r.gw, r.mtu, r.table),
            (
                "10.10.0.0/16".into(),
                Some(ip("10.0.0.9")),
                Some(1400),
                Some(0)
            )
        );
        assert_eq!(
            err(
                &net(r#"{"subnet":"10.0.0.0/24","routes":[{"dst":"x"}]}"#),
                &[]
            ),
            "invalid CIDR address: x"
        );
        assert!(err(
            &net(r#"{"subnet":"10.0.0.0/24","routes":[{"gw":"10.0.0.1"}]}"#),
            &[]
        )
        .contains("dst"));
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("10.0.0.5/24").unwrap(), (ip("10.0.0.5"), 24));
        assert_eq!(parse_cidr("fd00::/64").unwrap(), (ip("fd00::"), 64));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "fd00::/129",
            "x/8",
            "",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad:?}");
        }
    }
}
