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
//!
//! MAC spoof check (bridge's `macspoofchk`), in the reference's layout so an operator sees the
//! familiar ruleset and either plugin's DEL removes the other's rules: table `bridge nat`, base
//! chain `PREROUTING` (filter, prerouting, priority -300) with one rule per container,
//! `iifname "<host veth>" jump cni-br-iface-<id>`, where `<id>` is `<container>-<ifname>`; that
//! chain jumps to `cni-br-iface-<id>-mac`, which returns for the container's source MAC and
//! drops everything else. Every rule is commented `macspoofchk-<id>`. Written as nft JSON
//! (no quoting of names), one transaction each way; the table and base chain stay on DEL.

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

/// The nftables table and base chain the reference's spoof check uses.
const SPOOF_TABLE: &str = "nat";
const SPOOF_BASE_CHAIN: &str = "PREROUTING";

/// Names of one container interface's spoof-check objects, as the reference names them.
struct SpoofCheck {
    /// `cni-br-iface-<container>-<ifname>`, jumped to from the base chain.
    iface_chain: String,
    /// `<iface_chain>-mac`: accepts the container's MAC, drops the rest.
    mac_chain: String,
    /// `macspoofchk-<container>-<ifname>` on every rule.
    comment: String,
}

impl SpoofCheck {
    fn new(container: &str, ifname: &str) -> SpoofCheck {
        let id = format!("{container}-{ifname}");
        let iface_chain = format!("cni-br-iface-{id}");
        SpoofCheck {
            mac_chain: format!("{iface_chain}-mac"),
            iface_chain,
            comment: format!("macspoofchk-{id}"),
        }
    }

    fn chain(name: &str) -> serde_json::Value {
        serde_json::json!({"chain": {"family": "bridge", "table": SPOOF_TABLE, "name": name}})
    }

    fn rule(&self, chain: &str, expr: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"add": {"rule": {"family": "bridge", "table": SPOOF_TABLE,
            "chain": chain, "comment": self.comment, "expr": expr}}})
    }

    /// Whether a base-chain rule belongs to this check: our comment, or a jump to our chain
    /// (which would keep the chain from being deleted).
    fn owns(&self, rule: &serde_json::Value) -> bool {
        rule["comment"] == self.comment.as_str()
            || rule["expr"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|x| x["jump"]["target"] == self.iface_chain.as_str())
            })
    }
}

/// What of a spoof check is in the `bridge nat` table now.
#[derive(Default)]
struct SpoofState {
    /// Handles of the base-chain rules that belong to the check.
    base_rules: Vec<u64>,
    iface_chain: bool,
    mac_chain: bool,
}

/// Read the `bridge nat` table; an absent table means nothing is installed.
fn spoof_state(sc: &SpoofCheck) -> Result<SpoofState, String> {
    let listing = match run("nft", &["-j", "list", "table", "bridge", SPOOF_TABLE], None) {
        Ok(l) => l,
        // nft's own answer for a missing table (not a missing nft binary).
        Err(e) if !e.starts_with("running ") && e.contains("No such file or directory") => {
            return Ok(SpoofState::default())
        }
        Err(e) => return Err(e),
    };
    let json: serde_json::Value =
        serde_json::from_str(&listing).map_err(|e| format!("parsing nft output: {e}"))?;
    let mut st = SpoofState::default();
    for item in json["nftables"].as_array().into_iter().flatten() {
        if let Some(chain) = item.get("chain") {
            st.iface_chain |= chain["name"] == sc.iface_chain.as_str();
            st.mac_chain |= chain["name"] == sc.mac_chain.as_str();
        } else if let Some(rule) = item.get("rule") {
            if rule["chain"] == SPOOF_BASE_CHAIN && sc.owns(rule) {
                st.base_rules.extend(rule["handle"].as_u64());
            }
        }
    }
    Ok(st)
}

fn delete_base_rules(handles: &[u64]) -> impl Iterator<Item = serde_json::Value> + '_ {
    handles.iter().map(|h| {
        serde_json::json!({"delete": {"rule": {"family": "bridge", "table": SPOOF_TABLE,
            "chain": SPOOF_BASE_CHAIN, "handle": h}}})
    })
}

/// Apply a list of nft JSON commands as one transaction.
fn nft_apply(commands: Vec<serde_json::Value>) -> Result<(), String> {
    let script = serde_json::json!({ "nftables": commands }).to_string();
    run("nft", &["-j", "-f", "-"], Some(&script)).map(|_| ())
}

fn spoof_check_add(
    container: &str,
    ifname: &str,
    host_ifname: &str,
    mac: &str,
) -> Result<(), String> {
    let sc = SpoofCheck::new(container, ifname);
    // A base-chain rule left by an earlier ADD of the same container is replaced, not doubled.
    let stale = spoof_state(&sc)?.base_rules;
    let mut cmds = vec![
        serde_json::json!({"add": {"table": {"family": "bridge", "name": SPOOF_TABLE}}}),
        serde_json::json!({"add": {"chain": {"family": "bridge", "table": SPOOF_TABLE,
            "name": SPOOF_BASE_CHAIN, "type": "filter", "hook": "prerouting", "prio": -300,
            "policy": "accept"}}}),
        serde_json::json!({"add": SpoofCheck::chain(&sc.iface_chain)}),
        serde_json::json!({"add": SpoofCheck::chain(&sc.mac_chain)}),
        serde_json::json!({"flush": SpoofCheck::chain(&sc.iface_chain)}),
        serde_json::json!({"flush": SpoofCheck::chain(&sc.mac_chain)}),
    ];
    cmds.extend(delete_base_rules(&stale));
    cmds.extend([
        sc.rule(
            SPOOF_BASE_CHAIN,
            serde_json::json!([
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": host_ifname}},
                {"jump": {"target": sc.iface_chain}}
            ]),
        ),
        sc.rule(
            &sc.iface_chain,
            serde_json::json!([{"jump": {"target": sc.mac_chain}}]),
        ),
        sc.rule(
            &sc.mac_chain,
            serde_json::json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}},
                           "right": mac}},
                {"return": null}
            ]),
        ),
        sc.rule(&sc.mac_chain, serde_json::json!([{"drop": null}])),
    ]);
    nft_apply(cmds)
}

fn spoof_check_del(container: &str, ifname: &str) -> Result<(), String> {
    let sc = SpoofCheck::new(container, ifname);
    let st = spoof_state(&sc)?;
    let mut cmds: Vec<_> = delete_base_rules(&st.base_rules).collect();
    // The iface chain jumps to the mac chain: both emptied before either is deleted.
    for (present, name) in [
        (st.iface_chain, &sc.iface_chain),
        (st.mac_chain, &sc.mac_chain),
    ] {
        if present {
            cmds.push(serde_json::json!({"flush": SpoofCheck::chain(name)}));
        }
    }
    for (present, name) in [
        (st.iface_chain, &sc.iface_chain),
        (st.mac_chain, &sc.mac_chain),
    ] {
        if present {
            cmds.push(serde_json::json!({"delete": SpoofCheck::chain(name)}));
        }
    }
    if cmds.is_empty() {
        return Ok(());
    }
    nft_apply(cmds)
}

/// An interface name as the kernel accepts it: 1-15 bytes, not `.`/`..`, no `/`, `:`,
/// whitespace, quotes or control characters.
fn check_ifname(what: &str, s: &str) -> Result<(), String> {
    let bad = |c: char| !c.is_ascii_graphic() || "/:\"\\'".contains(c);
    if s.is_empty() || s.len() > 15 || s == "." || s == ".." || s.chars().any(bad) {
        return Err(format!("invalid {what} {s:?}"));
    }
    Ok(())
}

/// A MAC address as `xx:xx:xx:xx:xx:xx`, lower-cased.
fn normalize_mac(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(format!("invalid MAC address {s:?}"));
    }
    Ok(s.to_ascii_lowercase())
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

impl Caps {
    /// Firewall rules are keyed by network, container and interface: a plugin may only name
    /// the ones of the invocation it runs for, so it can neither filter nor unfilter another
    /// container's traffic.
    fn own_rules(
        &self,
        op: &str,
        network: &str,
        container_id: &str,
        ifname: Option<&str>,
    ) -> Result<(), String> {
        let own = network == self.req.config.name
            && container_id == self.req.container_id
            && ifname.is_none_or(|i| i == self.req.ifname);
        if own {
            return Ok(());
        }
        let target = format!("{network}/{container_id}/{}", ifname.unwrap_or(""));
        self.audit(op, &target, "denied");
        Err(format!(
            "plugin {:?} may only change the firewall rules of its own invocation (network {:?}, container {:?}, interface {:?}), not {target:?}",
            self.logger.plugin, self.req.config.name, self.req.container_id, self.req.ifname
        ))
    }
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
        self.own_rules("masquerade-add", &network, &container_id, None)?;
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
        self.own_rules("masquerade-del", &network, &container_id, None)?;
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

    fn mac_spoof_check_add(
        &mut self,
        network: String,
        container_id: String,
        ifname: String,
        host_ifname: String,
        mac: String,
    ) -> Result<(), String> {
        self.require(Capability::Firewall, "mac-spoof-check-add")?;
        check_token("network name", &network)?;
        check_token("container id", &container_id)?;
        check_ifname("interface name", &ifname)?;
        self.own_rules(
            "mac-spoof-check-add",
            &network,
            &container_id,
            Some(&ifname),
        )?;
        check_ifname("host interface name", &host_ifname)?;
        let mac = normalize_mac(&mac)?;
        // The rules filter a host link: the policy's host-links must cover it.
        self.require_match(
            &self.grants.host_links,
            "host link",
            &host_ifname,
            "mac-spoof-check-add",
        )?;
        let r = spoof_check_add(&container_id, &ifname, &host_ifname, &mac)
            .map_err(|e| format!("failed to setup spoof-check: {e}"));
        self.audited(
            "mac-spoof-check-add",
            &format!("{network}/{container_id}/{ifname} {host_ifname} {mac}"),
            r,
        )
    }

    fn mac_spoof_check_del(
        &mut self,
        network: String,
        container_id: String,
        ifname: String,
    ) -> Result<(), String> {
        self.require(Capability::Firewall, "mac-spoof-check-del")?;
        check_token("network name", &network)?;
        check_token("container id", &container_id)?;
        check_ifname("interface name", &ifname)?;
        self.own_rules(
            "mac-spoof-check-del",
            &network,
            &container_id,
            Some(&ifname),
        )?;
        let r = spoof_check_del(&container_id, &ifname)
            .map_err(|e| format!("failed to teardown spoof-check: {e}"));
        self.audited(
            "mac-spoof-check-del",
            &format!("{network}/{container_id}/{ifname}"),
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
    fn spoof_check_names_follow_the_reference() {
        let sc = SpoofCheck::new("abc123", "eth0");
        assert_eq!(sc.iface_chain, "cni-br-iface-abc123-eth0");
        assert_eq!(sc.mac_chain, "cni-br-iface-abc123-eth0-mac");
        assert_eq!(sc.comment, "macspoofchk-abc123-eth0");
        // Base-chain rules are ours by comment or by their jump target.
        assert!(sc.owns(&serde_json::json!({"comment": "macspoofchk-abc123-eth0"})));
        assert!(sc.owns(
            &serde_json::json!({"expr": [{"jump": {"target": "cni-br-iface-abc123-eth0"}}]})
        ));
        assert!(
            !sc.owns(&serde_json::json!({"comment": "macspoofchk-abc123-eth1",
            "expr": [{"jump": {"target": "cni-br-iface-abc123-eth1"}}]}))
        );
    }

    #[test]
    fn interface_names_and_macs_are_checked() {
        for ok in ["eth0", "veth0123abcd", "net1.100", "a-b_c"] {
            assert!(check_ifname("x", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\"b",
            "sixteen-chars-xx",
            "é",
        ] {
            assert!(check_ifname("x", bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_mac("0A:58:0a:00:00:07").unwrap(),
            "0a:58:0a:00:00:07"
        );
        for bad in [
            "",
            "0a:58:0a:00:00",
            "0a-58-0a-00-00-07",
            "0a:58:0a:00:00:0g",
            "0a:58:0a:00:00:007",
        ] {
            assert!(normalize_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_cannot_inject_rule_text() {
        assert!(check_token("network name", "net-1_a.b").is_ok());
        for bad in ["", "a b", "a\"b", "a;b", "a}b"] {
            assert!(check_token("x", bad).is_err(), "{bad}");
        }
    }
}
