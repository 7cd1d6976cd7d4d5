//! The result of an ADD, typed in the newest (1.x) shape, and its JSON in every spec version.
//!
//! [`CniResult::to_json`] and [`CniResult::from_json`] reproduce the reference Go library's
//! `types100`, `types040` and `types020` packages and the conversions between them:
//!
//! - **1.0.0, 1.1.0**: `cniVersion`, `interfaces`, `ips`, `routes`, `dns`; every field as Go's
//!   `omitempty` tags emit it (empty strings, empty lists, absent values and zero `mtu`,
//!   `advmss`, `priority` are left out; `table` and `scope` are kept when set, even to 0).
//! - **0.3.0, 0.3.1, 0.4.0**: the same lists, every ip with a leading `"version":"4"|"6"`, and
//!   interfaces without `mtu`, `socketPath` and `pciID`, which those versions lack.
//! - **0.1.0, 0.2.0**: `ip4` and `ip6` objects built from the first address of each family, each
//!   with the routes whose destination is of its family (`dst` and `gw` only); interfaces and
//!   further addresses are dropped. An empty `cni_version` means 0.1.0, as in Go.
//!
//! `dns` is always emitted, as `{}` when empty: that is what the reference plugins print in every
//! version. Unknown fields and `null` values in input are ignored; malformed input fails with code
//! 6 naming the offending field (e.g. `ips[1].address`), an unsupported version with code 1.

use std::fmt::Display;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{codes, CniError};
use crate::util::{go_quote, nullable};

/// The result of a plugin's ADD (or the `prevResult` it receives).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces the plugin created or configured; [`IpConfig::interface`] indexes this list.
    pub interfaces: Vec<Interface>,
    /// Addresses assigned to interfaces.
    pub ips: Vec<IpConfig>,
    /// Routes added in the container.
    pub routes: Vec<Route>,
    /// DNS settings for the container.
    pub dns: Dns,
}

/// An interface in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// The interface name (always emitted, even when empty).
    pub name: String,
    /// The hardware address.
    pub mac: String,
    /// The MTU (1.x only; `None` and 0 are not emitted).
    pub mtu: Option<u32>,
    /// The netns path of a container interface; empty for host interfaces.
    pub sandbox: String,
    /// The socket path of a userspace interface (1.x only).
    pub socket_path: String,
    /// The PCI id of a device interface (1.x only).
    pub pci_id: String,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address with its prefix length, host bits kept (`10.0.0.2/24`).
    pub address: IpNet,
    /// The default gateway for this subnet, if any.
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`] of the interface holding the address.
    pub interface: Option<u32>,
}

/// A route added in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination network.
    pub dst: IpNet,
    /// The next hop; `None` means the default gateway.
    pub gw: Option<IpAddr>,
    /// The route MTU (0 is not emitted, as in Go).
    pub mtu: Option<u32>,
    /// The advertised MSS (0 is not emitted, as in Go).
    pub advmss: Option<u32>,
    /// The route priority (0 is not emitted, as in Go).
    pub priority: Option<u32>,
    /// The routing table (emitted when set, even to 0).
    pub table: Option<u32>,
    /// The route scope (emitted when set, even to 0).
    pub scope: Option<u32>,
}

impl Route {
    /// A route to `dst` via `gw` (`None`: the default gateway), with no other attributes.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings, as results and network configurations carry them (`omitempty` fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Nameserver addresses, in priority order.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub nameservers: Vec<String>,
    /// The local domain for short hostname lookups.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub domain: String,
    /// Search domains, in priority order.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether no DNS setting is present.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The JSON layout of a spec version's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// 0.1.0 and 0.2.0: `ip4` and `ip6` objects.
    Legacy,
    /// 0.3.0 to 0.4.0: lists of interfaces, ips and routes; ips carry their IP version.
    Versioned,
    /// 1.0.0 and 1.1.0.
    Current,
}

impl Shape {
    /// The layout of `version`'s results, and the version to declare in them.
    fn of(version: &str) -> Result<(Shape, &str), CniError> {
        let shape = match version {
            "" | "0.1.0" | "0.2.0" => Shape::Legacy,
            "0.3.0" | "0.3.1" | "0.4.0" => Shape::Versioned,
            "1.0.0" | "1.1.0" => Shape::Current,
            _ => {
                return Err(CniError::new(
                    codes::INCOMPATIBLE_VERSION,
                    format!("unsupported CNI result version {}", go_quote(version)),
                    "",
                ))
            }
        };
        Ok((shape, if version.is_empty() { "0.1.0" } else { version }))
    }

    /// The versions a result of this layout may declare (Go's lists; `""` is "undeclared").
    fn versions(self) -> &'static [&'static str] {
        match self {
            Shape::Legacy => &["", "0.1.0", "0.2.0"],
            Shape::Versioned => &["0.3.0", "0.3.1", "0.4.0"],
            Shape::Current => &["1.0.0", "1.1.0"],
        }
    }

    /// Checks a result's own `cniVersion` against this layout; undeclared (empty) always passes.
    fn check_declared(self, declared: String) -> Result<(), CniError> {
        let versions = self.versions();
        if declared.is_empty() || versions.contains(&declared.as_str()) {
            return Ok(());
        }
        Err(CniError::new(
            codes::DECODING_FAILURE,
            format!(
                "result type supports [{}] but unmarshalled CNIVersion is {}",
                versions.join(" "),
                go_quote(&declared)
            ),
            "",
        ))
    }
}

impl CniResult {
    /// The result as a plugin prints it for `cni_version` (see the module documentation).
    pub fn to_json(&self, cni_version: &str) -> Result<Value, CniError> {
        let (shape, version) = Shape::of(cni_version)?;
        let mut out = Map::new();
        out.insert("cniVersion".into(), version.into());
        if shape == Shape::Legacy {
            self.encode_legacy(&mut out);
        } else {
            put_list(
                &mut out,
                "interfaces",
                self.interfaces.iter().map(|i| i.encode(shape)),
            );
            put_list(&mut out, "ips", self.ips.iter().map(|ip| ip.encode(shape)));
            put_list(&mut out, "routes", self.routes.iter().map(Route::encode));
        }
        let dns = serde_json::to_value(&self.dns).map_err(|e| {
            CniError::new(codes::INTERNAL, format!("could not encode dns: {e}"), "")
        })?;
        out.insert("dns".into(), dns);
        Ok(Value::Object(out))
    }

    /// Reads a result printed for `cni_version` (see the module documentation).
    ///
    /// The result's own `cniVersion`, when present, must belong to the same layout as
    /// `cni_version` (Go's check, with Go's message); absent or empty is accepted.
    pub fn from_json(value: &Value, cni_version: &str) -> Result<CniResult, CniError> {
        let (shape, _) = Shape::of(cni_version)?;
        let obj = Obj::new(value, String::new())?;
        shape.check_declared(obj.string("cniVersion")?)?;
        let mut result = if shape == Shape::Legacy {
            Self::decode_legacy(&obj)?
        } else {
            CniResult {
                interfaces: obj
                    .objects("interfaces")?
                    .iter()
                    .map(|i| Interface::decode(i, shape))
                    .collect::<Result<_, _>>()?,
                ips: obj
                    .objects("ips")?
                    .iter()
                    .map(IpConfig::decode)
                    .collect::<Result<_, _>>()?,
                routes: obj
                    .objects("routes")?
                    .iter()
                    .map(Route::decode)
                    .collect::<Result<_, _>>()?,
                dns: Dns::default(),
            }
        };
        if let Some(dns) = obj.get("dns") {
            result.dns = Dns::deserialize(dns).map_err(|e| invalid("dns", e))?;
        }
        Ok(result)
    }

    /// `ip4` and `ip6`: the first address of each family with the routes of its family.
    fn encode_legacy(&self, out: &mut Map<String, Value>) {
        for (key, v4) in [("ip4", true), ("ip6", false)] {
            let Some(ip) = self.ips.iter().find(|ip| is_v4(ip.address.addr()) == v4) else {
                continue;
            };
            let mut obj = Map::new();
            obj.insert("ip".into(), ip.address.to_string().into());
            put_ip(&mut obj, "gateway", ip.gateway);
            let routes = self
                .routes
                .iter()
                .filter(|r| is_v4(r.dst.addr()) == v4)
                .map(|r| {
                    let mut route = Map::new();
                    route.insert("dst".into(), r.dst.to_string().into());
                    put_ip(&mut route, "gw", r.gw);
                    Value::Object(route)
                });
            put_list(&mut obj, "routes", routes);
            out.insert(key.into(), Value::Object(obj));
        }
    }

    /// `ip4` then `ip6`, each followed by its routes (Go's up-conversion order).
    fn decode_legacy(obj: &Obj<'_>) -> Result<CniResult, CniError> {
        let mut result = CniResult::default();
        for key in ["ip4", "ip6"] {
            let Some(ip) = obj.object(key)? else { continue };
            result.ips.push(IpConfig {
                address: ip.cidr("ip")?,
                gateway: ip.ip("gateway")?,
                interface: None,
            });
            for route in ip.objects("routes")? {
                result.routes.push(Route::decode(&route)?);
            }
        }
        Ok(result)
    }
}

impl Interface {
    fn encode(&self, shape: Shape) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), self.name.clone().into());
        put_str(&mut out, "mac", &self.mac);
        if shape == Shape::Current {
            put_num(&mut out, "mtu", nonzero(self.mtu));
        }
        put_str(&mut out, "sandbox", &self.sandbox);
        if shape == Shape::Current {
            put_str(&mut out, "socketPath", &self.socket_path);
            put_str(&mut out, "pciID", &self.pci_id);
        }
        Value::Object(out)
    }

    fn decode(obj: &Obj<'_>, shape: Shape) -> Result<Interface, CniError> {
        let mut interface = Interface {
            name: obj.string("name")?,
            mac: obj.string("mac")?,
            sandbox: obj.string("sandbox")?,
            ..Default::default()
        };
        if shape == Shape::Current {
            interface.mtu = nonzero(obj.uint("mtu")?);
            interface.socket_path = obj.string("socketPath")?;
            interface.pci_id = obj.string("pciID")?;
        }
        Ok(interface)
    }
}

impl IpConfig {
    fn encode(&self, shape: Shape) -> Value {
        let mut out = Map::new();
        if shape == Shape::Versioned {
            let version = if is_v4(self.address.addr()) { "4" } else { "6" };
            out.insert("version".into(), version.into());
        }
        put_num(&mut out, "interface", self.interface);
        out.insert("address".into(), self.address.to_string().into());
        put_ip(&mut out, "gateway", self.gateway);
        Value::Object(out)
    }

    /// The `version` of 0.3.x/0.4.0 ips is not read: the address says it (as in Go).
    fn decode(obj: &Obj<'_>) -> Result<IpConfig, CniError> {
        Ok(IpConfig {
            address: obj.cidr("address")?,
            gateway: obj.ip("gateway")?,
            interface: obj.uint("interface")?,
        })
    }
}

impl Route {
    fn encode(&self) -> Value {
        let mut out = Map::new();
        out.insert("dst".into(), self.dst.to_string().into());
        put_ip(&mut out, "gw", self.gw);
        put_num(&mut out, "mtu", nonzero(self.mtu));
        put_num(&mut out, "advmss", nonzero(self.advmss));
        put_num(&mut out, "priority", nonzero(self.priority));
        put_num(&mut out, "table", self.table);
        put_num(&mut out, "scope", self.scope);
        Value::Object(out)
    }

    fn decode(obj: &Obj<'_>) -> Result<Route, CniError> {
        Ok(Route {
            dst: obj.cidr("dst")?,
            gw: obj.ip("gw")?,
            mtu: nonzero(obj.uint("mtu")?),
            advmss: nonzero(obj.uint("advmss")?),
            priority: nonzero(obj.uint("priority")?),
            table: obj.uint("table")?,
            scope: obj.uint("scope")?,
        })
    }
}

/// Whether Go counts `addr` as IPv4 (`To4() != nil`): IPv4 and IPv4-mapped IPv6 addresses.
fn is_v4(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    }
}

/// Go keeps these fields in plain `int`s, where 0 means unset.
fn nonzero(n: Option<u32>) -> Option<u32> {
    n.filter(|&n| n != 0)
}

fn put_str(out: &mut Map<String, Value>, key: &str, s: &str) {
    if !s.is_empty() {
        out.insert(key.into(), s.into());
    }
}

fn put_num(out: &mut Map<String, Value>, key: &str, n: Option<u32>) {
    if let Some(n) = n {
        out.insert(key.into(), n.into());
    }
}

fn put_ip(out: &mut Map<String, Value>, key: &str, ip: Option<IpAddr>) {
    if let Some(ip) = ip {
        out.insert(key.into(), ip.to_string().into());
    }
}

fn put_list(out: &mut Map<String, Value>, key: &str, items: impl Iterator<Item = Value>) {
    let items: Vec<Value> = items.collect();
    if !items.is_empty() {
        out.insert(key.into(), Value::Array(items));
    }
}

/// A decoding error naming the field at `path`.
fn invalid(path: &str, problem: impl Display) -> CniError {
    let at = if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    };
    CniError::new(
        codes::DECODING_FAILURE,
        format!("invalid CNI result: {at}{problem}"),
        "",
    )
}

/// A JSON object of the input, with its path for error messages; `null` members count as absent.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn new(value: &'a Value, path: String) -> Result<Self, CniError> {
        match value {
            Value::Object(map) => Ok(Obj { map, path }),
            _ => Err(invalid(&path, "expected a JSON object")),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A string member; absent means empty.
    fn string(&self, key: &str) -> Result<String, CniError> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(invalid(&self.path(key), "expected a string")),
        }
    }

    fn uint(&self, key: &str) -> Result<Option<u32>, CniError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    &self.path(key),
                    format!("expected an unsigned 32-bit integer, found {value}"),
                )
            })
    }

    /// An IP address member; absent or empty means none (Go's `net.IP`).
    fn ip(&self, key: &str) -> Result<Option<IpAddr>, CniError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
                invalid(
                    &self.path(key),
                    format!("invalid IP address {}", go_quote(s)),
                )
            }),
            Some(_) => Err(invalid(&self.path(key), "expected a string")),
        }
    }

    /// A required `address/prefix` member, host bits kept.
    fn cidr(&self, key: &str) -> Result<IpNet, CniError> {
        match self.get(key) {
            None => Err(invalid(&self.path(key), "missing")),
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| invalid(&self.path(key), format!("invalid CIDR address: {s}"))),
            Some(_) => Err(invalid(&self.path(key), "expected a string")),
        }
    }

    fn object(&self, key: &str) -> Result<Option<Obj<'a>>, CniError> {
        self.get(key)
            .map(|v| Obj::new(v, self.path(key)))
            .transpose()
    }

    /// A list of objects; absent means empty.
    fn objects(&self, key: &str) -> Result<Vec<Obj<'a>>, CniError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| Obj::new(v, format!("{}[{i}]", self.path(key))))
                .collect(),
            Some(_) => Err(invalid(&self.path(key), "expected a list")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn route(dst: &str, gw: Option<IpAddr>) -> Route {
        Route::new(net(dst), gw)
    }

    fn loopback() -> CniResult {
        let lo = Interface {
            name: "lo".into(),
            mac: "00:00:00:00:00:00".into(),
            sandbox: "/var/run/netns/x".into(),
            ..Default::default()
        };
        CniResult {
            interfaces: vec![lo],
            ips: vec![
                IpConfig {
                    address: net("127.0.0.1/8"),
                    gateway: None,
                    interface: Some(0),
                },
                IpConfig {
                    address: net("::1/128"),
                    gateway: None,
                    interface: Some(0),
                },
            ],
            ..Default::default()
        }
    }

    /// Bridge-like dual-stack result with every optional field in use.
    fn dual_stack() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: "0a:58:0a:01:00:01".into(),
                    mtu: Some(1450),
                    ..Default::default()
                },
                Interface {
                    name: "veth1a2b3c4d".into(),
                    mac: "de:ad:be:ef:00:01".into(),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "0a:58:0a:01:00:02".into(),
                    mtu: Some(1450),
                    sandbox: "/var/run/netns/ctypes".into(),
                    socket_path: "/run/vhost.sock".into(),
                    pci_id: "0000:00:1f.6".into(),
                },
            ],
            ips: vec![
                IpConfig {
                    address: net("10.1.0.2/24"),
                    gateway: ip("10.1.0.1"),
                    interface: Some(2),
                },
                IpConfig {
                    address: net("fd00::2/64"),
                    gateway: ip("fd00::1"),
                    interface: Some(2),
                },
                IpConfig {
                    address: net("10.2.0.7/16"),
                    gateway: None,
                    interface: None,
                },
                IpConfig {
                    address: net("fd01::7/64"),
                    gateway: None,
                    interface: Some(2),
                },
            ],
            routes: vec![
                route("0.0.0.0/0", ip("10.1.0.1")),
                Route {
                    mtu: Some(1400),
                    advmss: Some(1360),
                    priority: Some(100),
                    table: Some(0),
                    scope: Some(0),
                    ..route("::/0", ip("fd00::1"))
                },
                Route {
                    table: Some(100),
                    scope: Some(253),
                    ..route("192.168.0.0/16", None)
                },
            ],
            dns: Dns {
                nameservers: vec!["10.1.0.53".into(), "fd00::53".into()],
                domain: "example.com".into(),
                search: vec!["a.example".into(), "b.example".into()],
                options: vec!["ndots:2".into()],
            },
        }
    }

    fn dual_stack_dns() -> Value {
        json!({
            "nameservers": ["10.1.0.53", "fd00::53"],
            "domain": "example.com",
            "search": ["a.example", "b.example"],
            "options": ["ndots:2"]
        })
    }

    fn dual_stack_1x(version: &str) -> Value {
        json!({
            "cniVersion": version,
            "interfaces": [
                {"name": "cni0", "mac": "0a:58:0a:01:00:01", "mtu": 1450},
                {"name": "veth1a2b3c4d", "mac": "de:ad:be:ef:00:01"},
                {"name": "eth0", "mac": "0a:58:0a:01:00:02", "mtu": 1450, "sandbox": "/var/run/netns/ctypes",
                 "socketPath": "/run/vhost.sock", "pciID": "0000:00:1f.6"}
            ],
            "ips": [
                {"interface": 2, "address": "10.1.0.2/24", "gateway": "10.1.0.1"},
                {"interface": 2, "address": "fd00::2/64", "gateway": "fd00::1"},
                {"address": "10.2.0.7/16"},
                {"interface": 2, "address": "fd01::7/64"}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.1.0.1"},
                {"dst": "::/0", "gw": "fd00::1", "mtu": 1400, "advmss": 1360, "priority": 100, "table": 0, "scope": 0},
                {"dst": "192.168.0.0/16", "table": 100, "scope": 253}
            ],
            "dns": dual_stack_dns()
        })
    }

    fn dual_stack_04x(version: &str) -> Value {
        json!({
            "cniVersion": version,
            "interfaces": [
                {"name": "cni0", "mac": "0a:58:0a:01:00:01"},
                {"name": "veth1a2b3c4d", "mac": "de:ad:be:ef:00:01"},
                {"name": "eth0", "mac": "0a:58:0a:01:00:02", "sandbox": "/var/run/netns/ctypes"}
            ],
            "ips": [
                {"version": "4", "interface": 2, "address": "10.1.0.2/24", "gateway": "10.1.0.1"},
                {"version": "6", "interface": 2, "address": "fd00::2/64", "gateway": "fd00::1"},
                {"version": "4", "address": "10.2.0.7/16"},
                {"version": "6", "interface": 2, "address": "fd01::7/64"}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.1.0.1"},
                {"dst": "::/0", "gw": "fd00::1", "mtu": 1400, "advmss": 1360, "priority": 100, "table": 0, "scope": 0},
                {"dst": "192.168.0.0/16", "table": 100, "scope": 253}
            ],
            "dns": dual_stack_dns()
        })
    }

    fn dual_stack_02x(version: &str) -> Value {
        json!({
            "cniVersion": version,
            "ip4": {
                "ip": "10.1.0.2/24",
                "gateway": "10.1.0.1",
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "192.168.0.0/16"}]
            },
            "ip6": {
                "ip": "fd00::2/64",
                "gateway": "fd00::1",
                "routes": [{"dst": "::/0", "gw": "fd00::1"}]
            },
            "dns": dual_stack_dns()
        })
    }

    /// What survives a trip through 0.3.x/0.4.0: interfaces lose the 1.x-only fields.
    fn without_1x_interface_fields(mut r: CniResult) -> CniResult {
        for i in &mut r.interfaces {
            *i = Interface {
                name: i.name.clone(),
                mac: i.mac.clone(),
                sandbox: i.sandbox.clone(),
                ..Default::default()
            };
        }
        r
    }

    #[test]
    fn loopback_1_0_0_matches_reference_plugin() {
        // Output of Debian's /usr/lib/cni/loopback (containernetworking-plugins 1.1.1).
        let go = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/var/run/netns/x"}],
            "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}],
            "dns": {}
        });
        assert_eq!(loopback().to_json("1.0.0").unwrap(), go);
        let mut v110 = go.clone();
        v110["cniVersion"] = json!("1.1.0");
        assert_eq!(loopback().to_json("1.1.0").unwrap(), v110);
        assert_eq!(CniResult::from_json(&go, "1.0.0").unwrap(), loopback());
    }

    #[test]
    fn loopback_0_4_0_has_ip_versions() {
        let expected = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/var/run/netns/x"}],
            "ips": [
                {"version": "4", "interface": 0, "address": "127.0.0.1/8"},
                {"version": "6", "interface": 0, "address": "::1/128"}
            ],
            "dns": {}
        });
        assert_eq!(loopback().to_json("0.4.0").unwrap(), expected);
        assert_eq!(
            CniResult::from_json(&expected, "0.4.0").unwrap(),
            loopback()
        );
    }

    #[test]
    fn loopback_0_2_0_has_ip4_and_ip6() {
        // The reference loopback's output for a config without cniVersion, relabelled.
        let go = |v: &str| json!({"cniVersion": v, "ip4": {"ip": "127.0.0.1/8"}, "ip6": {"ip": "::1/128"}, "dns": {}});
        assert_eq!(loopback().to_json("0.2.0").unwrap(), go("0.2.0"));
        assert_eq!(loopback().to_json("0.1.0").unwrap(), go("0.1.0"));
        assert_eq!(loopback().to_json("").unwrap(), go("0.1.0"));
        let back = CniResult::from_json(&go("0.2.0"), "0.2.0").unwrap();
        assert_eq!(
            back.ips,
            [
                IpConfig {
                    address: net("127.0.0.1/8"),
                    gateway: None,
                    interface: None
                },
                IpConfig {
                    address: net("::1/128"),
                    gateway: None,
                    interface: None
                },
            ]
        );
        assert!(back.interfaces.is_empty() && back.routes.is_empty() && back.dns.is_empty());
    }

    #[test]
    fn dual_stack_1x_round_trips() {
        for v in ["1.1.0", "1.0.0"] {
            let json = dual_stack().to_json(v).unwrap();
            assert_eq!(json, dual_stack_1x(v), "{v}");
            assert_eq!(CniResult::from_json(&json, v).unwrap(), dual_stack(), "{v}");
        }
    }

    #[test]
    fn dual_stack_04x_round_trips() {
        for v in ["0.4.0", "0.3.1", "0.3.0"] {
            let json = dual_stack().to_json(v).unwrap();
            assert_eq!(json, dual_stack_04x(v), "{v}");
            let back = CniResult::from_json(&json, v).unwrap();
            assert_eq!(back, without_1x_interface_fields(dual_stack()), "{v}");
            assert_eq!(back.to_json(v).unwrap(), json, "{v}");
        }
    }

    #[test]
    fn dual_stack_02x_round_trips() {
        for v in ["0.2.0", "0.1.0"] {
            let json = dual_stack().to_json(v).unwrap();
            assert_eq!(json, dual_stack_02x(v), "{v}");
            let back = CniResult::from_json(&json, v).unwrap();
            let expected = CniResult {
                interfaces: vec![],
                ips: vec![
                    IpConfig {
                        address: net("10.1.0.2/24"),
                        gateway: ip("10.1.0.1"),
                        interface: None,
                    },
                    IpConfig {
                        address: net("fd00::2/64"),
                        gateway: ip("fd00::1"),
                        interface: None,
                    },
                ],
                routes: vec![
                    route("0.0.0.0/0", ip("10.1.0.1")),
                    route("192.168.0.0/16", None),
                    route("::/0", ip("fd00::1")),
                ],
                dns: dual_stack().dns,
            };
            assert_eq!(back, expected, "{v}");
            assert_eq!(back.to_json(v).unwrap(), json, "{v}");
        }
    }

    #[test]
    fn reads_reference_host_local_output() {
        // Debian's host-local, dual stack with routes and resolvConf, at 0.4.0 and 0.2.0.
        let go_040 = json!({"cniVersion": "0.4.0", "ips": [
            {"version": "4", "address": "10.1.0.2/24", "gateway": "10.1.0.1"},
            {"version": "6", "address": "fd00::2/64", "gateway": "fd00::1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}],
            "dns": {"nameservers": ["10.1.0.53"], "domain": "example.com", "search": ["a.example"], "options": ["rotate"]}});
        let go_020 = json!({"cniVersion": "0.2.0",
            "ip4": {"ip": "10.1.0.2/24", "gateway": "10.1.0.1",
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}]},
            "ip6": {"ip": "fd00::2/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
            "dns": {"nameservers": ["10.1.0.53"], "domain": "example.com", "search": ["a.example"], "options": ["rotate"]}});
        let r = CniResult::from_json(&go_040, "0.4.0").unwrap();
        assert_eq!(r.to_json("0.4.0").unwrap(), go_040);
        // Down-conversion reproduces what host-local prints for 0.2.0.
        assert_eq!(r.to_json("0.2.0").unwrap(), go_020);
        // Up-conversion from 0.2.0 (Go's convertFrom02x): ip4 and its routes, then ip6.
        let up = CniResult::from_json(&go_020, "0.2.0")
            .unwrap()
            .to_json("1.0.0")
            .unwrap();
        assert_eq!(
            up,
            json!({"cniVersion": "1.0.0",
            "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1"}, {"address": "fd00::2/64", "gateway": "fd00::1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}, {"dst": "::/0", "gw": "fd00::1"}],
            "dns": go_020["dns"]})
        );
    }

    #[test]
    fn empty_result_in_every_version() {
        let empty = CniResult::default();
        for v in [
            "1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0", "0.2.0", "0.1.0",
        ] {
            let json = empty.to_json(v).unwrap();
            assert_eq!(json, json!({"cniVersion": v, "dns": {}}), "{v}");
            assert_eq!(CniResult::from_json(&json, v).unwrap(), empty, "{v}");
            assert_eq!(CniResult::from_json(&json!({}), v).unwrap(), empty, "{v}");
        }
    }

    #[test]
    fn zero_values_follow_go() {
        let r = CniResult {
            interfaces: vec![Interface {
                mtu: Some(0),
                ..Default::default()
            }],
            routes: vec![Route {
                mtu: Some(0),
                advmss: Some(0),
                priority: Some(0),
                table: Some(0),
                ..route("10.0.0.0/8", None)
            }],
            ..Default::default()
        };
        let json = r.to_json("1.0.0").unwrap();
        assert_eq!(json["interfaces"], json!([{"name": ""}]));
        assert_eq!(json["routes"], json!([{"dst": "10.0.0.0/8", "table": 0}]));
        let back = CniResult::from_json(
            &json!({"interfaces": [{"name": "a", "mtu": 0}],
            "routes": [{"dst": "10.0.0.0/8", "mtu": 0, "priority": 0, "scope": 0}]}),
            "1.0.0",
        )
        .unwrap();
        assert_eq!(back.interfaces[0].mtu, None);
        assert_eq!(
            back.routes[0],
            Route {
                scope: Some(0),
                ..route("10.0.0.0/8", None)
            }
        );
    }

    #[test]
    fn legacy_conversion_drops_routes_without_an_address_of_their_family() {
        let r = CniResult {
            ips: vec![IpConfig {
                address: net("10.0.0.2/24"),
                gateway: None,
                interface: Some(0),
            }],
            routes: vec![route("0.0.0.0/0", ip("10.0.0.1")), route("::/0", None)],
            ..Default::default()
        };
        assert_eq!(
            r.to_json("0.2.0").unwrap(),
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]}, "dns": {}})
        );
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let r = CniResult {
            ips: vec![IpConfig {
                address: net("::ffff:10.0.0.2/120"),
                gateway: None,
                interface: None,
            }],
            ..Default::default()
        };
        assert_eq!(r.to_json("0.4.0").unwrap()["ips"][0]["version"], "4");
        assert!(r.to_json("0.2.0").unwrap().get("ip4").is_some());
    }

    #[test]
    fn ignores_unknown_fields_and_nulls() {
        let json = json!({
            "cniVersion": "1.0.0",
            "future": {"x": 1},
            "interfaces": [{"name": "eth0", "mac": null, "metadata": {"k": "v"}}],
            "ips": [{"address": "10.0.0.2/24", "gateway": null, "interface": null, "version": "4"}],
            "routes": null,
            "dns": {"nameservers": null, "extra": true}
        });
        let r = CniResult::from_json(&json, "1.1.0").unwrap();
        assert_eq!(
            r.interfaces,
            [Interface {
                name: "eth0".into(),
                ..Default::default()
            }]
        );
        assert_eq!(
            r.ips,
            [IpConfig {
                address: net("10.0.0.2/24"),
                gateway: None,
                interface: None
            }]
        );
        assert!(r.routes.is_empty() && r.dns.is_empty());
        // An empty gateway is no gateway, as for Go's net.IP.
        let r = CniResult::from_json(
            &json!({"ips": [{"address": "10.0.0.2/24", "gateway": ""}]}),
            "1.0.0",
        )
        .unwrap();
        assert_eq!(r.ips[0].gateway, None);
    }

    #[test]
    fn unsupported_versions_are_code_1() {
        for v in ["2.0.0", "1.0", "0.5.0"] {
            let e = CniResult::default().to_json(v).unwrap_err();
            assert_eq!(
                (e.code, e.msg),
                (
                    codes::INCOMPATIBLE_VERSION,
                    format!("unsupported CNI result version \"{v}\"")
                )
            );
            assert_eq!(
                CniResult::from_json(&json!({}), v).unwrap_err().code,
                codes::INCOMPATIBLE_VERSION
            );
        }
    }

    #[test]
    fn declared_version_must_match_the_layout() {
        // Versions of the same layout are accepted, like Go's creators do.
        CniResult::from_json(&json!({"cniVersion": "1.1.0"}), "1.0.0").unwrap();
        CniResult::from_json(&json!({"cniVersion": "0.3.1"}), "0.4.0").unwrap();
        CniResult::from_json(&json!({"cniVersion": ""}), "1.0.0").unwrap();
        let msg = |json: Value, v: &str| {
            let e = CniResult::from_json(&json, v).unwrap_err();
            assert_eq!(e.code, codes::DECODING_FAILURE);
            e.msg
        };
        assert_eq!(
            msg(json!({"cniVersion": "0.4.0"}), "1.0.0"),
            r#"result type supports [1.0.0 1.1.0] but unmarshalled CNIVersion is "0.4.0""#
        );
        assert_eq!(
            msg(json!({"cniVersion": "1.0.0"}), "0.3.0"),
            r#"result type supports [0.3.0 0.3.1 0.4.0] but unmarshalled CNIVersion is "1.0.0""#
        );
        assert_eq!(
            msg(json!({"cniVersion": "0.4.0"}), "0.2.0"),
            r#"result type supports [ 0.1.0 0.2.0] but unmarshalled CNIVersion is "0.4.0""#
        );
        assert_eq!(
            msg(json!({"cniVersion": 1}), "1.0.0"),
            "invalid CNI result: cniVersion: expected a string"
        );
    }

    #[test]
    fn malformed_input_names_the_field() {
        let cases = [
            (json!([]), "1.0.0", "invalid CNI result: expected a JSON object"),
            (json!({"interfaces": {}}), "1.0.0", "invalid CNI result: interfaces: expected a list"),
            (json!({"interfaces": ["eth0"]}), "1.0.0", "invalid CNI result: interfaces[0]: expected a JSON object"),
            (json!({"interfaces": [{"name": 1}]}), "0.4.0", "invalid CNI result: interfaces[0].name: expected a string"),
            (json!({"interfaces": [{"name": "a", "mtu": "1500"}]}), "1.0.0",
                "invalid CNI result: interfaces[0].mtu: expected an unsigned 32-bit integer, found \"1500\""),
            (json!({"ips": [{"address": "10.0.0.2/24"}, {"address": "10.0.0/24"}]}), "1.0.0",
                "invalid CNI result: ips[1].address: invalid CIDR address: 10.0.0/24"),
            (json!({"ips": [{"address": "10.0.0.2"}]}), "0.3.1", "invalid CNI result: ips[0].address: invalid CIDR address: 10.0.0.2"),
            (json!({"ips": [{}]}), "1.0.0", "invalid CNI result: ips[0].address: missing"),
            (json!({"ips": [{"address": "10.0.0.2/24", "interface": -1}]}), "1.0.0",
                "invalid CNI result: ips[0].interface: expected an unsigned 32-bit integer, found -1"),
            (json!({"ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.256"}]}), "1.0.0",
                "invalid CNI result: ips[0].gateway: invalid IP address \"10.0.0.256\""),
            (json!({"routes": [{"gw": "10.0.0.1"}]}), "1.0.0", "invalid CNI result: routes[0].dst: missing"),
            (json!({"routes": [{"dst": "0.0.0.0/0", "table": 1.5}]}), "0.4.0",
                "invalid CNI result: routes[0].table: expected an unsigned 32-bit integer, found 1.5"),
            (json!({"ip4": "10.0.0.2/24"}), "0.2.0", "invalid CNI result: ip4: expected a JSON object"),
            (json!({"ip6": {"ip": "fd00::2/64", "routes": [{"dst": "::/0", "gw": 6}]}}), "0.2.0",
                "invalid CNI result: ip6.routes[0].gw: expected a string"),
            (json!({"ip4": {"gateway": "10.0.0.1"}}), "0.1.0", "invalid CNI result: ip4.ip: missing"),
        ];
        for (json, version, msg) in cases {
            let e = CniResult::from_json(&json, version).unwrap_err();
            assert_eq!(
                (e.code, e.msg.as_str()),
                (codes::DECODING_FAILURE, msg),
                "{json}"
            );
        }
        let e = CniResult::from_json(&json!({"dns": {"nameservers": "10.0.0.53"}}), "1.0.0")
            .unwrap_err();
        assert_eq!(e.code, codes::DECODING_FAILURE);
        assert!(
            e.msg
                .starts_with("invalid CNI result: dns: invalid type: string"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn dns_serde_uses_cni_names_and_omits_empty() {
        assert_eq!(serde_json::to_value(Dns::default()).unwrap(), json!({}));
        assert!(Dns::default().is_empty());
        let dns = Dns {
            domain: "example.com".into(),
            ..Default::default()
        };
        assert!(!dns.is_empty());
        assert_eq!(
            serde_json::to_value(&dns).unwrap(),
            json!({"domain": "example.com"})
        );
        let full: Dns = serde_json::from_value(dual_stack_dns()).unwrap();
        assert_eq!(full, dual_stack().dns);
        assert_eq!(serde_json::to_value(&full).unwrap(), dual_stack_dns());
    }
}
