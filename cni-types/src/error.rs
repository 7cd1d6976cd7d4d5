//! The CNI error type, as plugins report it on stdout, and the spec's well-known error codes.
//!
//! [`CniError`] serializes as `{"code":N,"msg":"…","details":"…"}` (`details` left out when
//! empty), like Go's `types.Error`; [`CniError::to_json`] adds the `cniVersion` the spec asks for.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Well-known error codes (CNI spec, "Error" section; Go's `types.Err*` constants).
///
/// Codes 1–99 are reserved by the spec; plugins use 100 and above for their own errors.
pub mod codes {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables, like `CNI_COMMAND` or `CNI_CONTAINERID`.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure, e.g. reading the configuration from stdin.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content, e.g. the configuration or a result.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// Invalid network namespace (Go's `ErrInvalidNetNS`).
    pub const INVALID_NETNS: u32 = 8;
    /// Try again later: the plugin holds a resource that may free up.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available and cannot service ADD requests.
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: the plugin can service ADD requests, with limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Any other failure (what Go's skel reports for a plugin's plain errors).
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: a code, a short message and optional details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    /// One of [`codes`], or a plugin-specific code ≥ 100.
    pub code: u32,
    /// A short description of the error.
    #[serde(default)]
    pub msg: String,
    /// Longer details; left out of the JSON when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

/// The error on the wire: the spec's `cniVersion` first, then the error's own fields.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "cniVersion", skip_serializing_if = "str::is_empty")]
    cni_version: &'a str,
    #[serde(flatten)]
    error: &'a CniError,
}

impl CniError {
    /// An error with the given code, message and details (empty details are left out).
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error as a plugin prints it: `{"cniVersion":"…","code":N,"msg":"…","details":"…"}`.
    ///
    /// `details` is left out when empty, and so is `cniVersion` when `cni_version` is empty
    /// (for an error raised before any version is known).
    pub fn to_json(&self, cni_version: &str) -> String {
        serde_json::to_string(&Envelope {
            cni_version,
            error: self,
        })
        .expect("an error of strings and an integer always serializes")
    }
}

impl fmt::Display for CniError {
    /// `msg`, followed by `; details` when there are details (Go's `Error()`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if !self.details.is_empty() {
            write!(f, "; {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_version_first() {
        let e = CniError::new(
            codes::INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            "why",
        );
        assert_eq!(
            e.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":1,"msg":"incompatible CNI versions","details":"why"}"#
        );
    }

    #[test]
    fn json_omits_empty_details_and_version() {
        let e = CniError::new(codes::INTERNAL, "boom \"quoted\"", "");
        assert_eq!(
            e.to_json("0.4.0"),
            r#"{"cniVersion":"0.4.0","code":999,"msg":"boom \"quoted\""}"#
        );
        assert_eq!(e.to_json(""), r#"{"code":999,"msg":"boom \"quoted\""}"#);
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":999,"msg":"boom \"quoted\""}"#
        );
    }

    #[test]
    fn deserializes_plugin_output() {
        let e: CniError = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"very","extra":true}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            CniError::new(codes::INVALID_NETWORK_CONFIG, "bad", "very")
        );
        let e: CniError = serde_json::from_str(r#"{"code":5,"msg":"io"}"#).unwrap();
        assert_eq!(e, CniError::new(codes::IO_FAILURE, "io", ""));
    }

    #[test]
    fn display_like_go() {
        assert_eq!(
            CniError::new(4, "interface name is empty", "").to_string(),
            "interface name is empty"
        );
        assert_eq!(
            CniError::new(1, "incompatible", "details").to_string(),
            "incompatible; details"
        );
    }

    #[test]
    fn spec_codes() {
        use codes::*;
        let all = [
            INCOMPATIBLE_VERSION,
            UNSUPPORTED_FIELD,
            UNKNOWN_CONTAINER,
            INVALID_ENVIRONMENT,
            IO_FAILURE,
            DECODING_FAILURE,
            INVALID_NETWORK_CONFIG,
            INVALID_NETNS,
            TRY_AGAIN_LATER,
            NOT_AVAILABLE,
            LIMITED_CONNECTIVITY,
            INTERNAL,
        ];
        assert_eq!(all, [1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51, 999]);
    }
}
