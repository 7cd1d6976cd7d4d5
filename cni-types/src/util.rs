//! Small helpers shared by the modules: Go-compatible string quoting and lenient JSON nulls.

use std::fmt::Write as _;

use serde::{Deserialize, Deserializer};

/// Quotes `s` the way Go's `%q` verb does, so messages match the reference plugins byte for byte.
///
/// Printable characters are kept as they are; quotes, backslashes, control characters and
/// non-ASCII spaces are escaped. (Go also escapes a few other unprintable Unicode categories,
/// such as format characters, which never occur in CNI versions, names or arguments.)
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            ' ' => out.push(' '),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() || c.is_whitespace() => {
                let code = u32::from(c);
                let _ = if code < 0x10000 {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Deserializes a JSON `null` as the type's default value, as Go's `encoding/json` does.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("1.0.0"), r#""1.0.0""#);
        assert_eq!(go_quote(""), r#""""#);
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("a\nb\tc\0"), r#""a\nb\tc\x00""#);
        assert_eq!(go_quote("é ü\u{a0}"), "\"é ü\\u00a0\"");
    }

    #[test]
    fn null_is_default() {
        #[derive(Deserialize)]
        struct S {
            #[serde(default, deserialize_with = "nullable")]
            v: Vec<String>,
        }
        let s: S = serde_json::from_str(r#"{"v":null}"#).unwrap();
        assert!(s.v.is_empty());
        let s: S = serde_json::from_str(r#"{}"#).unwrap();
        assert!(s.v.is_empty());
        let s: S = serde_json::from_str(r#"{"v":["x"]}"#).unwrap();
        assert_eq!(s.v, ["x"]);
    }
}
