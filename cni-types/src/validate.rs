//! Validation of container ids, network names and interface names (Go's `pkg/utils`).
//!
//! Codes and messages are the reference library's, so errors read the same as the Go plugins'.

use crate::error::{codes, CniError};

/// The longest interface name the kernel accepts (`IFNAMSIZ - 1`).
const MAX_INTERFACE_NAME_LENGTH: usize = 15;

/// Whether `s` matches `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the rule for container ids and network
/// names. The empty string matches (as it does in Go); callers report it separately.
fn valid_name_chars(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        None => true,
        Some(first) => {
            first.is_ascii_alphanumeric()
                && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        }
    }
}

/// Checks `CNI_CONTAINERID`: non-empty (code 3 `missing containerID`, as in Go) and made of
/// `[A-Za-z0-9_.-]`, starting with a letter or digit (code 4, with the id as details).
pub fn validate_container_id(container_id: &str) -> Result<(), CniError> {
    if container_id.is_empty() {
        return Err(CniError::new(
            codes::UNKNOWN_CONTAINER,
            "missing containerID",
            "",
        ));
    }
    if !valid_name_chars(container_id) {
        return Err(CniError::new(
            codes::INVALID_ENVIRONMENT,
            "invalid characters in containerID",
            container_id,
        ));
    }
    Ok(())
}

/// Checks a network's `name`: non-empty and made of the container-id characters (code 7 both).
pub fn validate_network_name(network_name: &str) -> Result<(), CniError> {
    if network_name.is_empty() {
        return Err(CniError::new(
            codes::INVALID_NETWORK_CONFIG,
            "missing network name:",
            "",
        ));
    }
    if !valid_name_chars(network_name) {
        return Err(CniError::new(
            codes::INVALID_NETWORK_CONFIG,
            "invalid characters found in network name",
            network_name,
        ));
    }
    Ok(())
}

/// Checks `CNI_IFNAME` against the kernel's rules (all code 4): not empty, at most 15 bytes, not
/// `.` or `..`, and free of `/`, `:` and whitespace.
pub fn validate_interface_name(ifname: &str) -> Result<(), CniError> {
    let invalid =
        |msg: &str, details: String| Err(CniError::new(codes::INVALID_ENVIRONMENT, msg, details));
    if ifname.is_empty() {
        return invalid("interface name is empty", String::new());
    }
    if ifname.len() > MAX_INTERFACE_NAME_LENGTH {
        return invalid(
            "interface name is too long",
            format!(
                "interface name should be less than {} characters",
                MAX_INTERFACE_NAME_LENGTH + 1
            ),
        );
    }
    if ifname == "." || ifname == ".." {
        return invalid("interface name is . or ..", String::new());
    }
    if ifname
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return invalid(
            "interface name contains / or : or whitespace characters",
            String::new(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<(), CniError>) -> (u32, String, String) {
        let e = r.unwrap_err();
        (e.code, e.msg, e.details)
    }

    #[test]
    fn container_ids() {
        for ok in ["a", "0", "abc-123_x.y", "A.-_", "3f8a9c0e1d2b"] {
            validate_container_id(ok).unwrap();
        }
        assert_eq!(
            err(validate_container_id("")),
            (3, "missing containerID".into(), String::new())
        );
        for bad in ["-a", "_a", ".a", "a b", "a/b", "a:b", "é", "a\n"] {
            assert_eq!(
                err(validate_container_id(bad)),
                (
                    4,
                    "invalid characters in containerID".into(),
                    bad.to_string()
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn network_names() {
        for ok in ["net1", "my-net.v2_x", "0"] {
            validate_network_name(ok).unwrap();
        }
        assert_eq!(
            err(validate_network_name("")),
            (7, "missing network name:".into(), String::new())
        );
        for bad in ["a b", "-net", "net/1", "ñet"] {
            assert_eq!(
                err(validate_network_name(bad)),
                (
                    7,
                    "invalid characters found in network name".into(),
                    bad.to_string()
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn interface_names() {
        for ok in [
            "eth0",
            "lo",
            "a",
            "123456789012345",
            "veth.1-x_y",
            "...",
            "é",
        ] {
            validate_interface_name(ok).unwrap();
        }
        assert_eq!(
            err(validate_interface_name("")),
            (4, "interface name is empty".into(), String::new())
        );
        assert_eq!(
            err(validate_interface_name("1234567890123456")),
            (
                4,
                "interface name is too long".into(),
                "interface name should be less than 16 characters".into()
            )
        );
        // The limit counts bytes, not characters.
        assert_eq!(
            err(validate_interface_name("éééééééé")).1,
            "interface name is too long"
        );
        for dots in [".", ".."] {
            assert_eq!(
                err(validate_interface_name(dots)),
                (4, "interface name is . or ..".into(), String::new())
            );
        }
        for bad in [
            "eth/0",
            "eth:0",
            "eth 0",
            "eth\t0",
            "\n",
            "a\u{a0}b",
            "a\u{3000}b",
        ] {
            assert_eq!(
                err(validate_interface_name(bad)),
                (
                    4,
                    "interface name contains / or : or whitespace characters".into(),
                    String::new()
                ),
                "{bad:?}"
            );
        }
    }
}
