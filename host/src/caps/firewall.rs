//! The `firewall` interface: masquerade for a container's addresses (bridge's `ipMasq`).
//!
//! Rules are keyed by network and container so DEL removes exactly what ADD installed, also
//! when the container's netns is long gone:
//! - nftables (default): table `inet wasm_cni`, chain `postrouting` (nat), one rule per address
//!   with the comment `wasm-cni <network> <container>`.
//! - iptables (as the reference): chain `CNI-<24 hex of sha512(network + container)>` in the
//!   nat table, jumped to from POSTROUTING for each address.
//!
//! Traffic to the container's own subnet and to multicast is left alone, as the reference does.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use sha2::{Digest, Sha512};

use super::Caps;
use crate::policy::Capability;
use crate::sandbox::bindings::wasm_cni::plugin::firewall;

const NFT_TABLE: &str = "wasm_cni";

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {program}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("writing to {program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Names and comments only ever hold these characters (they end up in rule text).
fn check_token(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!("invalid {what} {s:?}"));
    }
    Ok(())
}

fn nft_comment(network: &str, container: &str) -> String {
    format!("wasm-cni {network} {container}")
}

/// The reference's chain name: `CNI-` and the first 24 hex digits of sha512(name + id).
pub fn iptables_chain(network: &str, container: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container}").as_bytes());
    format!("CNI-{}", &hex::encode(digest)[..24])
}

fn nft_add(network: &str, container: &str, addrs: &[IpNet]) -> Result<(), String> {
    let comment = nft_comment(network, container);
    let mut script = format!(
        "add table inet {NFT_TABLE}\nadd chain inet {NFT_TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n"
    );
    for a in addrs {
        let (fam, multicast) = if a.addr().is_ipv4() {
            ("ip", "224.0.0.0/4")
        } else {
            ("ip6", "ff00::/8")
        };
        script.push_str(&format!(
            "add rule inet {NFT_TABLE} postrouting {fam} saddr {} {fam} daddr != {{ {}, {multicast} }} masquerade comment \"{comment}\"\n",
            a.addr(),
            a.trunc()
        ));
    }
    // One transaction: all rules or none.
    run("nft", &["-f", "-"], Some(&script)).map(|_| ())
}

fn nft_del(network: &str, container: &str) -> Result<(), String> {
    let listing = match run(
        "nft",
        &["-j", "list", "chain", "inet", NFT_TABLE, "postrouting"],
        None,
    ) {
        Ok(l) => l,
        // No table or chain: nothing was ever installed.
        Err(e) if e.contains("No such file or directory") => return Ok(()),
        Err(e) => return Err(e),
    };
    let json: serde_json::Value =
        serde_json::from_str(&listing).map_err(|e| format!("parsing nft output: {e}"))?;
    let comment = nft_comment(network, container);
    let handles: Vec<u64> = json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("rule"))
        .filter(|rule| rule["comment"] == comment.as_str())
        .filter_map(|rule| rule["handle"].as_u64())
        .collect();
    if handles.is_empty() {
        return Ok(());
    }
    let script: String = handles
        .iter()
        .map(|h| format!("delete rule inet {NFT_TABLE} postrouting handle {h}\n"))
        .collect();
    run("nft", &["-f", "-"], Some(&script)).map(|_| ())
}

fn iptables_add(network: &str, container: &str, addrs: &[IpNet]) -> Result<(), String> {
    let chain = iptables_chain(network, container);
    let comment = format!("name: \"{network}\" id: \"{container}\"");
    for a in addrs {
        let (tool, multicast) = if a.addr().is_ipv4() {
            ("iptables", "224.0.0.0/4")
        } else {
            ("ip6tables", "ff00::/8")
        };
        // -N fails when the chain exists (a second address of the same family): fine.
        let _ = run(tool, &["-w", "-t", "nat", "-N", &chain], None);
        let subnet = a.trunc().to_string();
        let rules: [Vec<&str>; 2] = [
            vec![
                "-d",
                &subnet,
                "-j",
                "ACCEPT",
                "-m",
                "comment",
                "--comment",
                &comment,
            ],
            vec![
                "!",
                "-d",
                multicast,
                "-j",
                "MASQUERADE",
                "-m",
                "comment",
                "--comment",
                &comment,
            ],
        ];
        for rule in &rules {
            let exists = run(
                tool,
                &[&["-w", "-t", "nat", "-C", &chain][..], rule].concat(),
                None,
            )
            .is_ok();
            if !exists {
                run(
                    tool,
                    &[&["-w", "-t", "nat", "-A", &chain][..], rule].concat(),
                    None,
                )?;
            }
        }
        let src = a.addr().to_string();
        let jump = [
            "-s",
            src.as_str(),
            "-j",
            chain.as_str(),
            "-m",
            "comment",
            "--comment",
            comment.as_str(),
        ];
        if run(
            tool,
            &[&["-w", "-t", "nat", "-C", "POSTROUTING"][..], &jump].concat(),
            None,
        )
        .is_err()
        {
            run(
                tool,
                &[&["-w", "-t", "nat", "-A", "POSTROUTING"][..], &jump].concat(),
                None,
            )?;
        }
    }
    Ok(())
}

fn iptables_del(network: &str, container: &str) -> Result<(), String> {
    let chain = iptables_chain(network, container);
    for tool in ["iptables", "ip6tables"] {
        let Ok(rules) = run(tool, &["-w", "-t", "nat", "-S", "POSTROUTING"], None) else {
            continue;
        };
        for rule in rules
            .lines()
            .filter(|r| r.split_whitespace().any(|w| w == chain))
        {
            // `-A POSTROUTING …` → `-D POSTROUTING …`, argument by argument (quotes kept intact).
            let args = shell_words(rule.trim_start_matches("-A "));
            let mut del = vec!["-w".to_string(), "-t".into(), "nat".into(), "-D".into()];
            del.extend(args);
            let del: Vec<&str> = del.iter().map(String::as_str).collect();
            run(tool, &del, None)?;
        }
        if run(tool, &["-w", "-t", "nat", "-F", &chain], None).is_ok() {
            run(tool, &["-w", "-t", "nat", "-X", &chain], None)?;
        }
    }
    Ok(())
}

/// Split an `iptables -S` line into arguments, honouring double quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped, mut any) = (false, false, false);
    for c in line.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
}

impl firewall::Host for Caps {
    fn masquerade_add(
        &mut self,
        network: String,
        container_id: String,
        addresses: Vec<String>,
        backend: String,
    ) -> Result<(), String> {
        self.require(Capability::Firewall, "masquerade-add")?;
        check_token("network name", &network)?;
        check_token("container id", &container_id)?;
        let addrs = addresses
            .iter()
            .map(|a| {
                a.parse::<IpNet>()
                    .map_err(|_| format!("invalid address {a:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let r = match backend.as_str() {
            "" | "nftables" => nft_add(&network, &container_id, &addrs),
            "iptables" => iptables_add(&network, &container_id, &addrs),
            other => Err(format!(
                "unknown ipMasqBackend {other:?} (want iptables or nftables)"
            )),
        };
        self.audited(
            "masquerade-add",
            &format!("{network}/{container_id} {addresses:?} {backend}"),
            r,
        )
    }

    fn masquerade_del(
        &mut self,
        network: String,
        container_id: String,
        backend: String,
    ) -> Result<(), String> {
        self.require(Capability::Firewall, "masquerade-del")?;
        check_token("network name", &network)?;
        check_token("container id", &container_id)?;
        let r = match backend.as_str() {
            "" | "nftables" => nft_del(&network, &container_id),
            "iptables" => iptables_del(&network, &container_id),
            other => Err(format!(
                "unknown ipMasqBackend {other:?} (want iptables or nftables)"
            )),
        };
        self.audited(
            "masquerade-del",
            &format!("{network}/{container_id} {backend}"),
            r,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_name_matches_the_reference_scheme() {
        let c = iptables_chain("mynet", "abc");
        assert!(c.starts_with("CNI-") && c.len() == 28, "{c}");
        assert_eq!(c, iptables_chain("mynet", "abc"));
        assert_ne!(c, iptables_chain("mynet", "abd"));
    }

    #[test]
    fn iptables_rules_split_like_a_shell() {
        assert_eq!(
            shell_words(
                r#"POSTROUTING -s 10.0.0.5/32 -m comment --comment "name: \"n\" id: \"c\"" -j CNI-x"#
            ),
            [
                "POSTROUTING",
                "-s",
                "10.0.0.5/32",
                "-m",
                "comment",
                "--comment",
                r#"name: "n" id: "c""#,
                "-j",
                "CNI-x"
            ]
        );
    }

    #[test]
    fn tokens_cannot_inject_rule_text() {
        assert!(check_token("network name", "net-1_a.b").is_ok());
        for bad in ["", "a b", "a\"b", "a;b", "a}b"] {
            assert!(check_token("x", bad).is_err(), "{bad}");
        }
    }
}
