//! `CNI_ARGS` parsing: `K1=V1;K2=V2`, as Go's `types.LoadArgs` reads it.
//!
//! Which keys a plugin knows is up to the plugin; [`ignore_unknown`] says whether the runtime asked
//! for unknown keys to be tolerated (`IgnoreUnknown=1`).

use crate::error::{codes, CniError};
use crate::util::go_quote;

/// Splits `CNI_ARGS` into `(key, value)` pairs, in order.
///
/// The empty string has no pairs. Each `;`-separated pair splits at its first `=`, so a value may
/// itself contain `=` (Go rejects that; nothing is lost by accepting it). A pair without `=`,
/// including an empty one from a stray `;`, fails with Go's message `ARGS: invalid pair "…"` and
/// code 999, the code the reference plugins report it with.
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(';')
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    CniError::new(
                        codes::INTERNAL,
                        format!("ARGS: invalid pair {}", go_quote(pair)),
                        "",
                    )
                })
        })
        .collect()
}

/// Whether the pairs carry `IgnoreUnknown` set to true: `1` or `true` in any letter case, as
/// Go's `UnmarshallableBool` reads it. The last occurrence wins; any other value means false.
pub fn ignore_unknown(pairs: &[(String, String)]) -> bool {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "IgnoreUnknown")
        .is_some_and(|(_, v)| v == "1" || v.eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_has_no_pairs() {
        assert_eq!(parse_cni_args("").unwrap(), vec![]);
    }

    #[test]
    fn parses_pairs_in_order() {
        assert_eq!(
            parse_cni_args(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IP=10.0.0.5"
            )
            .unwrap(),
            pairs(&[
                ("IgnoreUnknown", "1"),
                ("K8S_POD_NAMESPACE", "default"),
                ("K8S_POD_NAME", "web-0"),
                ("IP", "10.0.0.5")
            ])
        );
        assert_eq!(parse_cni_args("A=").unwrap(), pairs(&[("A", "")]));
        assert_eq!(parse_cni_args("=v").unwrap(), pairs(&[("", "v")]));
        assert_eq!(parse_cni_args("A=b=c").unwrap(), pairs(&[("A", "b=c")]));
    }

    #[test]
    fn invalid_pairs_use_go_message() {
        let e = parse_cni_args("bad").unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (codes::INTERNAL, r#"ARGS: invalid pair "bad""#)
        );
        assert_eq!(
            parse_cni_args("A=1;").unwrap_err().msg,
            r#"ARGS: invalid pair """#
        );
        assert_eq!(
            parse_cni_args("a;B=1").unwrap_err().msg,
            r#"ARGS: invalid pair "a""#
        );
    }

    #[test]
    fn ignore_unknown_values() {
        for yes in ["1", "true", "True", "TRUE"] {
            assert!(
                ignore_unknown(&pairs(&[("IgnoreUnknown", yes), ("Foo", "bar")])),
                "{yes}"
            );
        }
        for no in ["0", "false", "False", "yes", ""] {
            assert!(!ignore_unknown(&pairs(&[("IgnoreUnknown", no)])), "{no}");
        }
        assert!(!ignore_unknown(&[]));
        assert!(!ignore_unknown(&pairs(&[("ignoreunknown", "1")])));
        assert!(!ignore_unknown(&pairs(&[
            ("IgnoreUnknown", "1"),
            ("IgnoreUnknown", "0")
        ])));
        assert!(ignore_unknown(
            &parse_cni_args("IgnoreUnknown=true;X=1").unwrap()
        ));
    }
}
