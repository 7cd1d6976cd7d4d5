//! CNI spec versions: which ones we support, how a config declares one, and version ordering.
//!
//! The rules are those of Go's `pkg/version`: a config without `cniVersion` means 0.1.0, versions
//! compare numerically, and an unsupported version is reported with the reconciler's exact text.

use std::fmt;
use std::num::IntErrorKind;

use serde::Serialize;
use serde_json::Value;

use crate::error::{codes, CniError};
use crate::util::go_quote;

/// Every spec version a plugin of this project accepts, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The spec version this crate implements (what VERSION reports as `cniVersion`).
pub const CURRENT_VERSION: &str = "1.1.0";

/// The version a config means when it declares none.
const DEFAULT_CONFIG_VERSION: &str = "0.1.0";

/// A parsed spec version, ordered numerically (`0.10.0 > 0.4.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
}

impl Version {
    /// The version `major.minor.patch`.
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses a version the way Go's `version.ParseVersion` does.
    ///
    /// Up to three dot-separated decimal numbers; missing parts are 0 (`"1"` is 1.0.0), and the
    /// empty string is 0.1.0 (no declared version). Errors have code 6 (decoding failure), the
    /// code Go's skel reports them with, and Go's wording.
    pub fn parse(s: &str) -> Result<Version, CniError> {
        if s.is_empty() {
            return Ok(Version::new(0, 1, 0));
        }
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() > 3 {
            return Err(decoding(format!(
                "invalid version {}: too many parts",
                go_quote(s)
            )));
        }
        let mut numbers = [0u64; 3];
        for ((number, part), name) in numbers
            .iter_mut()
            .zip(&parts)
            .zip(["major", "minor", "micro"])
        {
            *number = part.parse().map_err(|e: std::num::ParseIntError| {
                let why = match e.kind() {
                    IntErrorKind::PosOverflow => "value out of range",
                    _ => "invalid syntax",
                };
                let part = go_quote(part);
                decoding(format!(
                    "failed to convert {name} version part {part}: strconv.Atoi: parsing {part}: {why}"
                ))
            })?;
        }
        let [major, minor, patch] = numbers;
        Ok(Version::new(major, minor, patch))
    }

    /// The major version number.
    pub const fn major(self) -> u64 {
        self.major
    }

    /// The minor version number.
    pub const fn minor(self) -> u64 {
        self.minor
    }

    /// The patch version number.
    pub const fn patch(self) -> u64 {
        self.patch
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

fn decoding(msg: String) -> CniError {
    CniError::new(codes::DECODING_FAILURE, msg, "")
}

/// Whether `v` is one of [`SUPPORTED_VERSIONS`] (an exact string match, as in Go).
pub fn is_supported(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

/// The `cniVersion` a config declares; `"0.1.0"` when it is absent, `null` or empty.
///
/// A non-string `cniVersion` comes back as its JSON text (e.g. `1`), which no version matches,
/// so the request fails with [`incompatible_error`] instead of running under a guessed version.
pub fn config_version(config: &Value) -> String {
    match config.get("cniVersion") {
        None | Some(Value::Null) => DEFAULT_CONFIG_VERSION.to_string(),
        Some(Value::String(s)) if s.is_empty() => DEFAULT_CONFIG_VERSION.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The answer to the VERSION command:
/// `{"cniVersion":"1.1.0","supportedVersions":["0.1.0",…,"1.1.0"]}`.
pub fn version_info_json() -> String {
    #[derive(Serialize)]
    struct VersionInfo {
        #[serde(rename = "cniVersion")]
        cni_version: &'static str,
        #[serde(rename = "supportedVersions")]
        supported_versions: &'static [&'static str],
    }
    serde_json::to_string(&VersionInfo {
        cni_version: CURRENT_VERSION,
        supported_versions: SUPPORTED_VERSIONS,
    })
    .expect("static strings always serialize")
}

/// The error for a config whose version is not supported (code 1), with the details of Go's
/// version reconciler: `config is "X", plugin supports ["0.1.0" "0.2.0" …]`.
pub fn incompatible_error(config_version: &str) -> CniError {
    let supported: Vec<String> = SUPPORTED_VERSIONS.iter().map(|v| go_quote(v)).collect();
    CniError::new(
        codes::INCOMPATIBLE_VERSION,
        "incompatible CNI versions",
        format!(
            "config is {}, plugin supports [{}]",
            go_quote(config_version),
            supported.join(" ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_orders() {
        assert_eq!(Version::parse("1.1.0").unwrap(), Version::new(1, 1, 0));
        assert_eq!(Version::parse("0.3.1").unwrap().to_string(), "0.3.1");
        assert_eq!(Version::parse("").unwrap(), Version::new(0, 1, 0));
        assert_eq!(Version::parse("1").unwrap(), Version::new(1, 0, 0));
        assert_eq!(Version::parse("0.4").unwrap(), Version::new(0, 4, 0));
        let v = Version::parse("10.20.30").unwrap();
        assert_eq!((v.major(), v.minor(), v.patch()), (10, 20, 30));
        assert!(Version::parse("0.10.0").unwrap() > Version::parse("0.4.0").unwrap());
        assert!(Version::parse("1.0.0").unwrap() > Version::parse("0.4.0").unwrap());
        assert!(Version::parse("0.3.1").unwrap() < Version::parse("0.4.0").unwrap());
        let mut all: Vec<Version> = SUPPORTED_VERSIONS
            .iter()
            .rev()
            .map(|v| Version::parse(v).unwrap())
            .collect();
        all.sort();
        let printed: Vec<String> = all.iter().map(Version::to_string).collect();
        assert_eq!(printed, SUPPORTED_VERSIONS);
    }

    #[test]
    fn parse_errors_use_go_wording() {
        let e = Version::parse("1.2.3.4").unwrap_err();
        assert_eq!(e.code, codes::DECODING_FAILURE);
        assert_eq!(e.msg, r#"invalid version "1.2.3.4": too many parts"#);
        let e = Version::parse("x.1.0").unwrap_err();
        assert_eq!(
            e.msg,
            r#"failed to convert major version part "x": strconv.Atoi: parsing "x": invalid syntax"#
        );
        let e = Version::parse("1..0").unwrap_err();
        assert_eq!(
            e.msg,
            r#"failed to convert minor version part "": strconv.Atoi: parsing "": invalid syntax"#
        );
        let e = Version::parse("1.0.99999999999999999999").unwrap_err();
        assert_eq!(
            e.msg,
            r#"failed to convert micro version part "99999999999999999999": strconv.Atoi: parsing "99999999999999999999": value out of range"#
        );
        assert_eq!(
            Version::parse("1.0.0-rc1").unwrap_err().code,
            codes::DECODING_FAILURE
        );
    }

    #[test]
    fn supported_versions() {
        for v in SUPPORTED_VERSIONS {
            assert!(is_supported(v));
        }
        assert!(is_supported(CURRENT_VERSION));
        for v in ["", "0.5.0", "1.0", "2.0.0", "1.0.0 "] {
            assert!(!is_supported(v), "{v}");
        }
    }

    #[test]
    fn config_version_defaults_to_0_1_0() {
        assert_eq!(config_version(&json!({"cniVersion": "1.0.0"})), "1.0.0");
        assert_eq!(config_version(&json!({"cniVersion": "9.9.9"})), "9.9.9");
        assert_eq!(config_version(&json!({"name": "n"})), "0.1.0");
        assert_eq!(config_version(&json!({"cniVersion": ""})), "0.1.0");
        assert_eq!(config_version(&json!({"cniVersion": null})), "0.1.0");
        assert_eq!(config_version(&json!({"cniVersion": 1})), "1");
        assert!(!is_supported(&config_version(&json!({"cniVersion": 1}))));
    }

    #[test]
    fn version_info() {
        assert_eq!(
            version_info_json(),
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
        );
    }

    #[test]
    fn incompatible_details_match_go_reconciler() {
        let e = incompatible_error("9.9.9");
        assert_eq!(e.code, codes::INCOMPATIBLE_VERSION);
        assert_eq!(e.msg, "incompatible CNI versions");
        assert_eq!(
            e.details,
            r#"config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
        );
        assert!(incompatible_error("a\"b")
            .details
            .starts_with(r#"config is "a\"b", "#));
    }
}
