//! `ipam.resolvConf`: the DNS settings of the result, parsed from a resolv.conf the host lets
//! this plugin read (the `files` capability; the node policy names the readable paths).
//!
//! Parsed as the reference does: blank lines and lines starting with `#` or `;` are skipped,
//! as are lines with fewer than two fields and unknown keywords; `nameserver` adds its first
//! argument, `domain` sets the domain (the last one wins), `search` and `options` add all their
//! arguments (repeated lines accumulate). Trailing comments are not stripped.

use wasm_cni_sdk::{CniError, Dns};

/// The DNS settings in resolv.conf text.
pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 2 {
            continue;
        }
        let args = fields[1..].iter().map(|f| f.to_string());
        match fields[0] {
            "nameserver" => dns.nameservers.push(fields[1].to_string()),
            "domain" => dns.domain = fields[1].to_string(),
            "search" => dns.search.extend(args),
            "options" => dns.options.extend(args),
            _ => {}
        }
    }
    dns
}

/// Read `path` through the host and parse it. Bytes that are not UTF-8 are replaced rather
/// than refused, as the reference takes the file byte for byte.
pub fn load(path: &str) -> Result<Dns, CniError> {
    let bytes = wasm_cni_sdk::files::read(path).map_err(|mut e| {
        e.msg = format!("ipam.resolvConf: {}", e.msg);
        e
    })?;
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_cni_sdk::fake::FakeHost;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_like_the_reference() {
        let dns = parse(
            "# generated\n; also a comment\n\n  nameserver 10.0.0.1  \nnameserver\t192.0.2.53 extra\n\
             domain first.example\ndomain example.com\nsearch a.example b.example\nsearch c.example\n\
             options ndots:2 edns0\noptions rotate\nsortlist 10.0.0.0/8\nnameserver\n\
             search x.example # not a comment here\r\nlookup file bind\n",
        );
        assert_eq!(dns.nameservers, strings(&["10.0.0.1", "192.0.2.53"]));
        assert_eq!(dns.domain, "example.com");
        assert_eq!(
            dns.search,
            strings(&[
                "a.example",
                "b.example",
                "c.example",
                "x.example",
                "#",
                "not",
                "a",
                "comment",
                "here"
            ])
        );
        assert_eq!(dns.options, strings(&["ndots:2", "edns0", "rotate"]));
    }

    #[test]
    fn an_empty_file_gives_empty_settings() {
        assert_eq!(parse(""), Dns::default());
        assert_eq!(parse("# nothing\n\n"), Dns::default());
    }

    #[test]
    fn reads_through_the_files_capability() {
        let fake = FakeHost::new();
        fake.set_plugin_name("host-local");
        fake.add_file(
            "/etc/cni/resolv.conf",
            "nameserver 10.1.1.1\nsearch svc.local\n",
        );
        let e = load("/etc/cni/resolv.conf").unwrap_err();
        assert_eq!(e.code, 100, "{e:?}");
        assert!(
            e.msg.contains("ipam.resolvConf") && e.msg.contains("/etc/cni/resolv.conf"),
            "{e:?}"
        );
        fake.grant_files("/etc/cni/*.conf");
        let dns = load("/etc/cni/resolv.conf").unwrap();
        assert_eq!(dns.nameservers, strings(&["10.1.1.1"]));
        assert_eq!(dns.search, strings(&["svc.local"]));
        let e = load("/etc/cni/missing.conf").unwrap_err();
        assert_eq!(e.code, wasm_cni_sdk::codes::IO_FAILURE, "{e:?}");
        assert!(e.msg.contains("/etc/cni/missing.conf"), "{e:?}");
        fake.deny("files");
        assert_eq!(load("/etc/cni/resolv.conf").unwrap_err().code, 100);
    }
}
