//! The configuration and the choice of device: pure logic, tested natively.

use serde::Deserialize;
use wasm_cni_sdk::{codes, CniError, Context, Dns};

/// A plugin failure, code 999 as in the reference.
pub fn fail(msg: impl Into<String>) -> CniError {
    CniError::new(codes::INTERNAL, msg, "")
}

/// The keys of the config this plugin reads (unknown keys are ignored; `null` reads as absent).
#[derive(Debug, Default, Deserialize)]
struct Raw {
    device: Option<String>,
    hwaddr: Option<String>,
    kernelpath: Option<String>,
    #[serde(rename = "pciBusID")]
    pci_bus_id: Option<String>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: Option<RuntimeConfig>,
    ipam: Option<Ipam>,
    dns: Option<Dns>,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(rename = "deviceID")]
    device_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Ipam {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// How the device is chosen in the host netns, first match of the reference's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Name(String),
    /// Normalised to lower-case hex with colons.
    Hwaddr(String),
    /// A validated `/sys/devices/...` path without a trailing slash.
    KernelPath(String),
    PciBusId(String),
}

/// What host-device needs from its config.
#[derive(Debug)]
pub struct Config {
    device: String,
    hwaddr: String,
    kernelpath: String,
    /// `pciBusID`, overridden by `runtimeConfig.deviceID` (the device plugin's choice).
    pci_bus_id: String,
    /// `ipam.type`, when an IPAM plugin is configured.
    pub ipam: Option<String>,
    /// The config's `dns`, which the reference reports instead of the IPAM plugin's.
    pub dns: Dns,
}

impl Config {
    pub fn load(ctx: &Context) -> Result<Config, CniError> {
        Config::parse(&ctx.config::<Raw>()?)
    }

    fn parse(raw: &Raw) -> Result<Config, CniError> {
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        let device_id = raw
            .runtime_config
            .as_ref()
            .map(|r| text(&r.device_id))
            .unwrap_or_default();
        let config = Config {
            device: text(&raw.device),
            hwaddr: text(&raw.hwaddr),
            kernelpath: text(&raw.kernelpath),
            pci_bus_id: if device_id.is_empty() {
                text(&raw.pci_bus_id)
            } else {
                device_id
            },
            ipam: raw
                .ipam
                .as_ref()
                .map(|i| text(&i.kind))
                .filter(|t| !t.is_empty()),
            dns: raw.dns.clone().unwrap_or_default(),
        };
        if [
            &config.device,
            &config.hwaddr,
            &config.kernelpath,
            &config.pci_bus_id,
        ]
        .iter()
        .all(|s| s.is_empty())
        {
            return Err(fail(
                r#"specify either "device", "hwaddr", "kernelpath" or "pciBusID""#,
            ));
        }
        Ok(config)
    }

    /// The selector in effect, validated (errors worded as the reference's).
    pub fn selector(&self) -> Result<Selector, CniError> {
        let not_found = |msg: String| fail(format!("failed to find host device: {msg}"));
        if !self.device.is_empty() {
            Ok(Selector::Name(self.device.clone()))
        } else if !self.hwaddr.is_empty() {
            parse_mac(&self.hwaddr).map(Selector::Hwaddr).map_err(|e| {
                not_found(format!(
                    "failed to parse MAC address {:?}: {e}",
                    self.hwaddr
                ))
            })
        } else if !self.kernelpath.is_empty() {
            let path = &self.kernelpath;
            if !path.starts_with("/sys/devices/") {
                return Err(not_found(format!(
                    "kernel device path {path:?} must be absolute and begin with /sys/devices/"
                )));
            }
            Ok(Selector::KernelPath(path.trim_end_matches('/').to_string()))
        } else {
            Ok(Selector::PciBusId(self.pci_bus_id.clone()))
        }
    }
}

/// A MAC address in any form Go's `net.ParseMAC` accepts (6, 8 or 20 bytes; `:` or `-`
/// between bytes, or `.` between groups of four digits), as lower-case hex with colons.
pub fn parse_mac(s: &str) -> Result<String, String> {
    let invalid = || format!("address {s}: invalid MAC address");
    let b = s.as_bytes();
    if b.len() < 14 {
        return Err(invalid());
    }
    let (group, sep) = match (b[2], b[4]) {
        (b':' | b'-', _) => (2, b[2]),
        (_, b'.') => (4, b'.'),
        _ => return Err(invalid()),
    };
    let groups: Vec<&str> = s.split(sep as char).collect();
    let bytes = groups.len() * group / 2;
    if !matches!(bytes, 6 | 8 | 20)
        || groups
            .iter()
            .any(|g| g.len() != group || !g.bytes().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(invalid());
    }
    let hex = groups.concat().to_ascii_lowercase();
    Ok((0..hex.len())
        .step_by(2)
        .map(|i| &hex[i..i + 2])
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<Config, CniError> {
        Config::load(&Context::new("c", "eth0", "/ns", json))
    }

    fn selector(json: &str) -> Result<Selector, String> {
        config(json).and_then(|c| c.selector()).map_err(|e| e.msg)
    }

    #[test]
    fn no_selector_is_the_references_error() {
        for json in [
            r#"{"name":"n","type":"host-device"}"#,
            r#"{"name":"n","type":"host-device","device":"","hwaddr":null}"#,
            r#"{"name":"n","type":"host-device","runtimeConfig":{}}"#,
        ] {
            let e = config(json).unwrap_err();
            assert_eq!(e.code, 999);
            assert_eq!(
                e.msg,
                r#"specify either "device", "hwaddr", "kernelpath" or "pciBusID""#
            );
        }
    }

    #[test]
    fn selectors_apply_in_the_references_order() {
        let all = r#"{"device":"d0","hwaddr":"02:00:00:00:00:01","kernelpath":"/sys/devices/x","pciBusID":"0000:00:01.0"}"#;
        assert_eq!(selector(all), Ok(Selector::Name("d0".into())));
        assert_eq!(
            selector(
                r#"{"hwaddr":"02:AB:00:00:00:01","kernelpath":"/sys/devices/x","pciBusID":"p"}"#
            ),
            Ok(Selector::Hwaddr("02:ab:00:00:00:01".into()))
        );
        assert_eq!(
            selector(r#"{"kernelpath":"/sys/devices/pci0000:00/0000:00:03.0/","pciBusID":"p"}"#),
            Ok(Selector::KernelPath(
                "/sys/devices/pci0000:00/0000:00:03.0".into()
            ))
        );
        assert_eq!(
            selector(r#"{"pciBusID":"0000:00:03.0"}"#),
            Ok(Selector::PciBusId("0000:00:03.0".into()))
        );
    }

    #[test]
    fn runtime_device_id_overrides_pci_bus_id() {
        assert_eq!(
            selector(r#"{"pciBusID":"0000:00:03.0","runtimeConfig":{"deviceID":"0000:00:04.0"}}"#),
            Ok(Selector::PciBusId("0000:00:04.0".into()))
        );
        assert_eq!(
            selector(r#"{"runtimeConfig":{"deviceID":"0000:00:04.0"}}"#),
            Ok(Selector::PciBusId("0000:00:04.0".into()))
        );
        // A name still wins over the PCI address, as in the reference.
        assert_eq!(
            selector(r#"{"device":"d0","runtimeConfig":{"deviceID":"0000:00:04.0"}}"#),
            Ok(Selector::Name("d0".into()))
        );
    }

    #[test]
    fn invalid_selectors_fail_with_the_references_messages() {
        assert_eq!(
            selector(r#"{"hwaddr":"zz"}"#),
            Err(r#"failed to find host device: failed to parse MAC address "zz": address zz: invalid MAC address"#.into())
        );
        for path in ["/foo", "sys/devices/x", "/sys/class/net/eth0"] {
            assert_eq!(
                selector(&format!(r#"{{"kernelpath":"{path}"}}"#)),
                Err(format!(
                    "failed to find host device: kernel device path \"{path}\" must be absolute and begin with /sys/devices/"
                ))
            );
        }
    }

    #[test]
    fn ipam_type_and_dns() {
        let c = config(
            r#"{"device":"d","ipam":{"type":"static"},"dns":{"nameservers":["10.0.0.53"]}}"#,
        )
        .unwrap();
        assert_eq!(c.ipam.as_deref(), Some("static"));
        assert_eq!(c.dns.nameservers, ["10.0.0.53"]);
        let c = config(r#"{"device":"d","ipam":{}}"#).unwrap();
        assert_eq!(c.ipam, None);
        assert!(c.dns.is_empty());
    }

    #[test]
    fn mistyped_fields_are_decoding_errors() {
        let e = config(r#"{"device":5}"#).unwrap_err();
        assert_eq!(e.code, 6);
        assert!(e.msg.starts_with("failed to load netconf: "), "{}", e.msg);
    }

    #[test]
    fn mac_addresses_parse_like_go() {
        for (input, want) in [
            ("00:00:5e:00:53:01", "00:00:5e:00:53:01"),
            ("02:00:5E:10:00:00:00:01", "02:00:5e:10:00:00:00:01"),
            (
                "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01",
                "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01",
            ),
            ("00-00-5e-00-53-01", "00:00:5e:00:53:01"),
            ("0000.5e00.5301", "00:00:5e:00:53:01"),
            ("0200.5e10.0000.0001", "02:00:5e:10:00:00:00:01"),
        ] {
            assert_eq!(parse_mac(input), Ok(want.to_string()), "{input}");
        }
        for bad in [
            "",
            "zz",
            "00:00:5e:00:53",
            "00:00:5e:00:53:01:",
            "00:00:5e-00:53:01",
            "00:00:5e:00:53:0g",
            "0:00:5e:00:53:001",
            "00:00:5e:00:53:01:02",
            "0000.5e00.530",
            "01.02.03.04.05.06",
        ] {
            assert_eq!(
                parse_mac(bad),
                Err(format!("address {bad}: invalid MAC address")),
                "{bad}"
            );
        }
    }
}
