//! The bridge plugin, exec'd as a runtime execs it, with a throwaway namespace playing the host
//! (`ip netns exec`): bridges, host veth ends, sysctls and firewall rules live there, never on
//! the real host. Differential against the Debian reference (results, errors and kernel state
//! on the same input, `macspoofchk`'s nftables ruleset included), the spoof check on a real
//! kernel, plus what the reference does not do (rollback, DEL after the netns is gone removing
//! masquerade and spoof-check rules, concurrent ADDs onto a missing bridge).
//!
//! IPAM is our host-local when it is installed (else the reference's, exec'd natively, which
//! the test policy then allows), each test with its own data dir and its own private /24.
//! Set `WASM_CNI_BRIDGE_IPAM=reference` to use the reference host-local under ours.
//!
//! Known differences from the reference, by design or of the host:
//! - routes the host adds carry `proto static` (the reference's `proto boot`): routes are
//!   compared without their protocol;
//! - a failed ADD leaves nothing behind (the reference leaves the veth);
//! - a repeated spoof-check install replaces the container's base-chain rule (the reference
//!   adds a second one), and DEL removes the check also without the netns;
//! - the reference's CHECK fails for its own result when IPAM gives a route without a gateway
//!   (it looks for a gateway-less route where ADD installed one through the gateway); ours
//!   looks for the route ADD installed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};
use wasm_cni_tests::{bin_dir, Cni, Exec, Netns, REFERENCE_DIR, SHARED_VERSIONS};

/// The runtime's PATH: the host finds `nft` and `iptables` through it (so does the reference).
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
const BRIDGE: &str = "wcbr0";

/// Whether our host-local is installed beside the bridge (else the reference's is used).
fn our_ipam() -> bool {
    if std::env::var("WASM_CNI_BRIDGE_IPAM").is_ok_and(|v| v == "reference") {
        return false;
    }
    let link = bin_dir().join("host-local");
    std::fs::read_link(&link).is_ok_and(|t| t == Path::new("wasm-cni"))
        && bin_dir().join("host-local.wasm").exists()
}

/// A node policy that lets our bridge exec the reference host-local (only used without ours).
/// One fixed file, rewritten with the same content by every run (nothing accumulates in /tmp).
fn native_ipam_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let path = std::env::temp_dir().join("wcni-bridge-test-policy.toml");
        let tmp = path.with_extension(format!("{}", std::process::id()));
        std::fs::write(&tmp, "[defaults]\nnative-exec = true\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path.display().to_string()
    })
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One test's network: a throwaway host namespace, a private /24 of its own
/// (`10.<100 + pid % 100>.<n>.0/24`) and an IPAM data dir, removed on drop.
struct Net {
    host: Netns,
    prefix: String,
    data_dir: PathBuf,
    name: String,
}

impl Net {
    fn new() -> Net {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 250, "too many test networks for one /16");
        let pid = std::process::id();
        let data_dir = PathBuf::from(format!("/tmp/wcni-br-test-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        Net {
            host: Netns::new(),
            prefix: format!("10.{}.{}", 100 + pid % 100, n + 1),
            data_dir,
            name: format!("brnet{n}"),
        }
    }

    fn subnet(&self) -> String {
        format!("{}.0/24", self.prefix)
    }

    fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// `v` with this network's own addresses (`<prefix>.x`) written `NET.x`.
    fn unprefixed(&self, v: &Value) -> Value {
        let text = v.to_string().replace(&format!("{}.", self.prefix), "NET.");
        serde_json::from_str(&text).unwrap()
    }

    fn ipam(&self) -> Value {
        json!({"type": "host-local", "subnet": self.subnet(), "dataDir": self.data_dir})
    }

    /// A bridge config in `version`, `extra` merged over the defaults (bridge, ipam).
    fn config(&self, version: Option<&str>, extra: Value) -> String {
        let mut c =
            json!({"name": self.name, "type": "bridge", "bridge": BRIDGE, "ipam": self.ipam()});
        if let Some(v) = version {
            c["cniVersion"] = v.into();
        }
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c.to_string()
    }

    /// A request with this network's host namespace, for container `id` in `container`.
    fn cni(&self, command: &str, container: &str, id: &str) -> Cni {
        Cni::new(command, container)
            .with_host(&self.host)
            .set("CNI_CONTAINERID", id)
            .set("PATH", PATH)
    }

    fn ours_with(&self, cni: Cni, config: &str) -> Exec {
        let mut cni = cni;
        if our_ipam() {
            cni = cni.set("CNI_PATH", &bin_dir().display().to_string());
        } else {
            // The reference's directory first, so its host-local is found even when ours
            // is installed (forced with WASM_CNI_BRIDGE_IPAM=reference).
            cni = cni
                .set(
                    "CNI_PATH",
                    &format!("{REFERENCE_DIR}:{}", bin_dir().display()),
                )
                .set("WASM_CNI_POLICY", native_ipam_policy());
        }
        cni.ours("bridge", config)
    }

    fn ours(&self, command: &str, container: &Netns, config: &str) -> Exec {
        self.ours_with(self.cni(command, &container.path(), "c1"), config)
    }

    fn reference(&self, command: &str, container: &Netns, config: &str) -> Exec {
        self.cni(command, &container.path(), "c1")
            .set("CNI_PATH", REFERENCE_DIR)
            .reference("bridge", config)
    }

    /// The addresses host-local has reserved.
    fn reserved(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.data_dir.join(&self.name))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Links of the host namespace: (name, kind, master name).
    fn host_links(&self) -> Vec<(String, String, String)> {
        links(&self.host)
    }

    /// The host ends of veths: veth* links in the host namespace.
    fn host_veths(&self) -> Vec<String> {
        self.host_links()
            .into_iter()
            .filter(|(_, kind, _)| kind == "veth")
            .map(|(n, _, _)| n)
            .collect()
    }

    fn sysctl(&self, key: &str) -> String {
        run(&["ip", "netns", "exec", &self.host.name, "sysctl", "-n", key])
            .trim()
            .to_string()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The VLANs of bridge port `veth` in `net`'s host netns (`bridge -j vlan show`).
fn port_vlans(net: &Net, veth: &str) -> Value {
    let shown = run(&[
        "ip",
        "netns",
        "exec",
        &net.host.name,
        "bridge",
        "-j",
        "vlan",
        "show",
        "dev",
        veth,
    ]);
    let v: Value = serde_json::from_str(&shown).unwrap();
    v[0]["vlans"].clone()
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn links(ns: &Netns) -> Vec<(String, String, String)> {
    ns.ip_json(&["-d", "link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap_or("").to_string(),
                l["linkinfo"]["info_kind"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                l["master"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// `ip -d -j link show dev <name>` in `ns`.
fn link(ns: &Netns, name: &str) -> Value {
    ns.ip_json(&["-d", "link", "show", "dev", name])[0].clone()
}

/// The global addresses of a link, as `a.b.c.d/len` (link-local IPv6 left out: random).
fn addrs(ns: &Netns, dev: &str) -> Vec<String> {
    ns.link_state(dev)
        .1
        .into_iter()
        .filter(|a| !a.starts_with("fe80:"))
        .collect()
}

/// The main-table routes of a namespace, both families, without link-local ones and without
/// the protocol (ours `static`, the reference's `boot`).
fn routes(ns: &Netns) -> Vec<Value> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        for mut r in ns
            .ip_json(&[family, "route", "show"])
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if r["dst"].as_str().is_some_and(|d| d.starts_with("fe80:")) {
                continue;
            }
            r.as_object_mut().unwrap().remove("protocol");
            out.push(r);
        }
    }
    out
}

/// Whether `to` answers any of three pings from `from` (one lost ARP or echo right after a
/// neighbour flush is not a failure to reach it).
fn ping(from: &Netns, to: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", &from.name, "ping", "-c3", "-i0.2", "-W1", to,
        ])
        .output()
        .expect("ping is not installed: apt-get install iputils-ping")
        .status
        .success()
}

fn is_mac(s: &str) -> bool {
    s.len() == 17
        && s.split(':')
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A result with what is random blanked: the netns path, the host veth's name, every MAC
/// (after checking each is one).
fn normalized(result: &Value, container: &Netns) -> Value {
    let mut v = result.clone();
    if let Some(ifs) = v["interfaces"].as_array_mut() {
        for (i, intf) in ifs.iter_mut().enumerate() {
            let mac = intf["mac"].as_str().unwrap_or_default();
            assert!(is_mac(mac), "interface {i} has no MAC: {result}");
            intf["mac"] = "MAC".into();
            if i == 1 {
                let name = intf["name"].as_str().unwrap();
                assert!(
                    name.len() == 12
                        && name.starts_with("veth")
                        && name[4..].chars().all(|c| c.is_ascii_hexdigit()),
                    "host veth name {name}"
                );
                intf["name"] = "VETH".into();
            }
        }
    }
    serde_json::from_str(&v.to_string().replace(&container.path(), "NETNS")).unwrap()
}

/// Kernel state after an ADD, comparable between two host/container pairs.
fn kernel_state(host: &Netns, container: &Netns) -> Value {
    let br = link(host, BRIDGE);
    let cont = link(container, "eth0");
    let veths: Vec<Value> = links(host)
        .into_iter()
        .filter(|(_, kind, _)| kind == "veth")
        .map(|(n, _, master)| {
            let l = link(host, &n);
            json!({"master": master, "up": l["flags"].as_array().unwrap().contains(&json!("UP")),
                   "mtu": l["mtu"], "hairpin": l["linkinfo"]["info_slave_data"]["hairpin"]})
        })
        .collect();
    json!({
        "bridge": {"addrs": addrs(host, BRIDGE), "mtu": br["mtu"],
                   "up": br["flags"].as_array().unwrap().contains(&json!("UP")),
                   "vlan_filtering": br["linkinfo"]["info_data"]["vlan_filtering"]},
        "veths": veths,
        "container": {"addrs": addrs(container, "eth0"), "mtu": cont["mtu"],
                      "up": cont["flags"].as_array().unwrap().contains(&json!("UP")),
                      "kind": cont["linkinfo"]["info_kind"], "routes": routes(container)},
        "ip_forward": run(&["ip", "netns", "exec", &host.name, "sysctl", "-n", "net.ipv4.ip_forward"]).trim(),
    })
}

/// The config with `prevResult` set.
fn with_prev(config: &str, prev: &Value) -> String {
    let mut c: Value = serde_json::from_str(config).unwrap();
    c["prevResult"] = prev.clone();
    c.to_string()
}

/// A cniVersion 1.0.0 config with `extra`, for any network.
fn v1(extra: Value) -> impl Fn(&Net) -> String {
    move |net| net.config(Some("1.0.0"), extra.clone())
}

/// Ours and the reference side by side on the same input: a network (host netns, subnet, IPAM
/// data dir) and a container netns each; requests are for container `c1`.
struct Pair {
    ours: Net,
    reference: Net,
    ours_c: Netns,
    ref_c: Netns,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            ours: Net::new(),
            reference: Net::new(),
            ours_c: Netns::new(),
            ref_c: Netns::new(),
        }
    }

    /// `command` on both, with the config `conf` builds for each network: (ours, reference).
    fn run(&self, command: &str, conf: impl Fn(&Net) -> String) -> (Exec, Exec) {
        (
            self.ours.ours(command, &self.ours_c, &conf(&self.ours)),
            self.reference
                .reference(command, &self.ref_c, &conf(&self.reference)),
        )
    }

    /// ADD on both: both succeed with the same result (random parts and each network's own
    /// default subnet blanked). The raw results, (ours, reference).
    fn add_same(&self, conf: impl Fn(&Net) -> String) -> (Value, Value) {
        let (ours, reference) = self.run("ADD", &conf);
        let (ours, reference) = (ours.ok_json(), reference.ok_json());
        assert_eq!(
            self.ours.unprefixed(&normalized(&ours, &self.ours_c)),
            self.reference
                .unprefixed(&normalized(&reference, &self.ref_c)),
            "ADD results for {}",
            conf(&self.ours)
        );
        (ours, reference)
    }

    /// ADD fails on both with the same (code, message), which is returned.
    fn add_err_same(&self, conf: impl Fn(&Net) -> String) -> (u64, String) {
        let (ours, reference) = self.run("ADD", &conf);
        let (ours, reference) = (ours.err(), reference.err());
        assert_eq!(ours, reference, "ADD errors for {}", conf(&self.ours));
        ours
    }

    fn assert_same_kernel_state(&self) {
        assert_eq!(
            self.ours
                .unprefixed(&kernel_state(&self.ours.host, &self.ours_c)),
            self.reference
                .unprefixed(&kernel_state(&self.reference.host, &self.ref_c)),
            "kernel state"
        );
    }
}

#[test]
fn add_matches_the_reference_in_every_shared_version() {
    for version in SHARED_VERSIONS.iter().map(|v| Some(*v)).chain([None]) {
        let pair = Pair::new();
        let (ours_net, ours_c) = (&pair.ours, &pair.ours_c);
        let (ours, _) = pair.add_same(|net: &Net| {
            net.config(version, json!({"isDefaultGateway": true, "dns": {"nameservers": ["10.0.0.53"], "search": ["example.org"]},
                   "ipam": {"type": "host-local", "dataDir": net.data_dir, "subnet": "10.77.0.0/24",
                            "routes": [{"dst": "10.99.0.0/16"}, {"dst": "10.98.0.0/16", "gw": "10.77.0.254"}]}}))
        });
        pair.assert_same_kernel_state();
        if ours.get("interfaces").is_some() {
            // The MACs are those of the links.
            let ifs = &ours["interfaces"];
            assert_eq!(ifs[0]["mac"], link(&ours_net.host, BRIDGE)["address"]);
            let veth = ifs[1]["name"].as_str().unwrap();
            assert_eq!(ifs[1]["mac"], link(&ours_net.host, veth)["address"]);
            assert_eq!(ifs[2]["mac"], link(ours_c, "eth0")["address"]);
            assert_eq!(ifs[2]["sandbox"], ours_c.path());
        }
    }
}

#[test]
fn dual_stack_matches_the_reference() {
    let pair = Pair::new();
    let (ours_net, ref_net, ours_c) = (&pair.ours, &pair.reference, &pair.ours_c);
    let conf = |net: &Net| {
        net.config(
            Some("1.0.0"),
            json!({"isDefaultGateway": true,
               "ipam": {"type": "host-local", "dataDir": net.data_dir,
                        "ranges": [[{"subnet": "10.80.0.0/24"}], [{"subnet": "fd00:80::/64"}]]}}),
        )
    };
    let (ours, _) = pair.add_same(conf);
    assert_eq!(ours["ips"][1]["gateway"], "fd00:80::1");
    pair.assert_same_kernel_state();
    assert_eq!(
        addrs(&ours_net.host, BRIDGE),
        vec!["10.80.0.1/24".to_string(), "fd00:80::1/64".to_string()]
    );
    for net in [ours_net, ref_net] {
        assert_eq!(net.sysctl("net.ipv6.conf.all.forwarding"), "1");
    }
    // CHECK sees both families.
    let check = ours_net.ours("CHECK", ours_c, &with_prev(&conf(ours_net), &ours));
    assert_eq!(check.status, 0, "{check:?}");
}

#[test]
fn kernel_state_and_connectivity_between_two_containers() {
    let net = Net::new();
    let config = net.config(Some("1.0.0"), json!({"isGateway": true}));
    let (c1, c2) = (Netns::new(), Netns::new());
    let r1 = net
        .ours_with(net.cni("ADD", &c1.path(), "c1"), &config)
        .ok_json();
    let r2 = net
        .ours_with(net.cni("ADD", &c2.path(), "c2"), &config)
        .ok_json();
    let ip1 = r1["ips"][0]["address"].as_str().unwrap().to_string();
    let ip2 = r2["ips"][0]["address"].as_str().unwrap().to_string();
    assert_ne!(ip1, ip2);
    assert_eq!(r1["ips"][0]["gateway"], net.ip(1));
    assert_eq!(r1["ips"][0]["interface"], 2);
    // The bridge holds the gateway; both host ends are its ports and up; forwarding is on.
    assert_eq!(addrs(&net.host, BRIDGE), vec![format!("{}/24", net.ip(1))]);
    let veths = net.host_veths();
    assert_eq!(veths.len(), 2, "{:?}", net.host_links());
    for (name, kind, master) in net.host_links() {
        if kind == "veth" {
            assert_eq!(master, BRIDGE, "{name}");
            assert!(net.host.link_state(&name).0, "{name} is up");
        }
    }
    assert_eq!(net.sysctl("net.ipv4.ip_forward"), "1");
    // The container: eth0 up with its address, the subnet route.
    assert!(c1.link_state("eth0").0, "eth0 is up");
    assert_eq!(addrs(&c1, "eth0"), vec![ip1.clone()]);
    assert_eq!(link(&c1, "eth0")["linkinfo"]["info_kind"], "veth");
    // The result's veth is the peer of the container's eth0.
    let peer_index = link(&c1, "eth0")["link_index"].clone();
    assert_eq!(
        link(&net.host, r1["interfaces"][1]["name"].as_str().unwrap())["ifindex"],
        peer_index
    );
    // Traffic: container to container, and to the gateway.
    let ip2_addr = ip2.split('/').next().unwrap();
    assert!(ping(&c1, ip2_addr), "c1 -> c2 ({ip2_addr})");
    assert!(ping(&c2, &net.ip(1)), "c2 -> gateway");
}

/// The two ends of the veth pair may get the same ifindex in their two namespaces: the host
/// end must be configured in the host netns by its index there (older kernels also leave the
/// peer's index out of the link's description then, and the host looks the peer up by name).
/// A fresh host netns gives the bridge index 2 and the host end 3; an ifb in the container
/// takes 2 there, so eth0 gets 3 too.
#[test]
fn veth_ends_with_the_same_index_in_both_namespaces() {
    let net = Net::new();
    let c = Netns::new();
    c.ip(&["link", "add", "ifb0", "type", "ifb"]);
    let r = net
        .ours(
            "ADD",
            &c,
            &net.config(Some("1.0.0"), json!({"isGateway": true})),
        )
        .ok_json();
    let veth = r["interfaces"][1]["name"].as_str().unwrap();
    let (host_end, eth0) = (link(&net.host, veth), link(&c, "eth0"));
    assert_eq!(
        host_end["ifindex"], eth0["ifindex"],
        "the case this test is about"
    );
    assert_eq!(host_end["master"], BRIDGE, "{host_end}");
    assert!(net.host.link_state(veth).0, "the host end is up");
    assert_eq!(r["interfaces"][1]["mac"], host_end["address"]);
    assert_eq!(r["interfaces"][2]["mac"], eth0["address"]);
    let ip = r["ips"][0]["address"].as_str().unwrap();
    assert_eq!(addrs(&c, "eth0"), vec![ip.to_string()]);
}

#[test]
fn del_removes_the_veth_releases_the_ip_and_is_idempotent() {
    let net = Net::new();
    let c = Netns::new();
    let config = net.config(Some("1.0.0"), json!({"isGateway": true}));
    let r = net.ours("ADD", &c, &config).ok_json();
    let ip = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(net.reserved(), BTreeSet::from([ip]));
    assert_eq!(net.host_veths().len(), 1);
    for round in 0..2 {
        let del = net.ours("DEL", &c, &config);
        assert_eq!(
            (del.status, del.stdout.as_str()),
            (0, ""),
            "round {round}: {del:?}"
        );
        assert!(net.reserved().is_empty(), "round {round}");
        assert!(
            net.host_veths().is_empty(),
            "round {round}: {:?}",
            net.host_links()
        );
        assert!(
            links(&c).iter().all(|(n, _, _)| n != "eth0"),
            "round {round}"
        );
        // The bridge stays.
        assert!(net
            .host_links()
            .iter()
            .any(|(n, k, _)| n == BRIDGE && k == "bridge"));
    }
}

#[test]
fn del_after_the_netns_is_gone_releases_the_ip_and_the_masquerade_rules() {
    let net = Net::new();
    let config = net.config(Some("1.0.0"), json!({"isGateway": true, "ipMasq": true}));
    let c = Netns::new();
    net.ours("ADD", &c, &config).ok_json();
    assert_eq!(net.reserved().len(), 1);
    assert!(nft_rules(&net.host).iter().any(|r| r.contains("c1")));
    let path = c.path();
    drop(c);
    let del = net.ours_with(net.cni("DEL", &path, "c1"), &config);
    assert_eq!(del.status, 0, "{del:?}");
    assert!(net.reserved().is_empty());
    assert!(
        nft_rules(&net.host).is_empty(),
        "{:?}",
        nft_rules(&net.host)
    );
    // Without any CNI_NETNS too.
    let del = net.ours_with(net.cni("DEL", "", "c1"), &config);
    assert_eq!(del.status, 0, "{del:?}");
}

#[test]
fn check_passes_after_add_and_fails_when_an_address_or_route_is_removed() {
    let pair = Pair::new();
    let (ours_net, ref_net) = (&pair.ours, &pair.reference);
    let (ours_c, ref_c) = (&pair.ours_c, &pair.ref_c);
    let conf = v1(json!({"isDefaultGateway": true}));
    let (ours_r, ref_r) = pair.add_same(&conf);
    let check = |net: &Net, c: &Netns, r: &Value, ours: bool| {
        let config = with_prev(&conf(net), r);
        if ours {
            net.ours("CHECK", c, &config)
        } else {
            net.reference("CHECK", c, &config)
        }
    };
    let ok = check(ours_net, ours_c, &ours_r, true);
    assert_eq!((ok.status, ok.stdout.as_str()), (0, ""), "{ok:?}");
    let ok = check(ref_net, ref_c, &ref_r, false);
    assert_eq!(ok.status, 0, "{ok:?}");

    // A removed default route: the same message (the gateway differs per network).
    for c in [ours_c, ref_c] {
        c.ip(&["route", "del", "default"]);
    }
    let ours_e = check(ours_net, ours_c, &ours_r, true).err();
    let ref_e = check(ref_net, ref_c, &ref_r, false).err();
    assert_eq!(
        ours_e.1.replace(&ours_net.prefix, "NET"),
        ref_e.1.replace(&ref_net.prefix, "NET")
    );
    assert!(
        ours_e
            .1
            .starts_with("Expected Route {Dst:{IP:0.0.0.0 Mask:00000000}"),
        "{ours_e:?}"
    );

    // A removed address: the same message.
    for (r, c) in [(&ours_r, ours_c), (&ref_r, ref_c)] {
        c.ip(&[
            "addr",
            "del",
            r["ips"][0]["address"].as_str().unwrap(),
            "dev",
            "eth0",
        ]);
    }
    let ours_e = check(ours_net, ours_c, &ours_r, true).err();
    let ref_e = check(ref_net, ref_c, &ref_r, false).err();
    assert_eq!(ours_e.0, ref_e.0);
    assert_eq!(
        ours_e.1.replace(&ours_net.prefix, "NET"),
        ref_e.1.replace(&ref_net.prefix, "NET")
    );
    assert!(ours_e.1.starts_with("Failed to match addr"), "{ours_e:?}");
}

#[test]
fn check_verifies_the_interfaces() {
    let net = Net::new();
    let c = Netns::new();
    let config = net.config(Some("1.0.0"), json!({"isGateway": true}));
    let r = net.ours("ADD", &c, &config).ok_json();
    // No prevResult.
    let e = net.ours("CHECK", &c, &config).err();
    assert_eq!(e.1, "Required prevResult missing");
    // A wrong MAC for the container interface.
    let mut bad = r.clone();
    bad["interfaces"][2]["mac"] = "02:00:00:00:00:99".into();
    let e = net.ours("CHECK", &c, &with_prev(&config, &bad)).err();
    assert!(
        e.1.starts_with("Interface eth0 Mac 02:00:00:00:00:99 doesn't match container Mac"),
        "{e:?}"
    );
    // The veth released from the bridge.
    let veth = r["interfaces"][1]["name"].as_str().unwrap();
    net.host.ip(&["link", "set", veth, "nomaster"]);
    let e = net.ours("CHECK", &c, &with_prev(&config, &r)).err();
    assert_eq!(
        e.1,
        format!("CNI veth created for bridge {BRIDGE} was not found")
    );
    // The container interface gone.
    c.ip(&["link", "del", "eth0"]);
    let e = net.ours("CHECK", &c, &with_prev(&config, &r)).err();
    assert_eq!(e.1, "Interface name eth0 not found");
}

#[test]
fn an_existing_ifname_fails_before_ipam_like_the_reference() {
    let pair = Pair::new();
    for c in [&pair.ours_c, &pair.ref_c] {
        c.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
        ]);
    }
    let ours = pair.add_err_same(v1(json!({})));
    assert_eq!(ours.1, "container veth name provided (eth0) already exists");
    assert!(pair.ours.reserved().is_empty(), "no address leaked");
    assert!(pair.ours.host_veths().is_empty());
    assert_eq!(
        link(&pair.ours_c, "eth0")["link"],
        "other0",
        "the existing eth0 is untouched"
    );
}

#[test]
fn an_ipam_failure_leaves_no_veth() {
    let net = Net::new();
    let c = Netns::new();
    let config = net.config(
        Some("1.0.0"),
        json!({"ipam": {"type": "host-local", "dataDir": net.data_dir}}),
    );
    let (code, msg) = net.ours("ADD", &c, &config).err();
    assert_ne!(code, 0);
    assert!(!msg.is_empty());
    assert!(net.host_veths().is_empty(), "{:?}", net.host_links());
    assert!(links(&c).iter().all(|(n, _, _)| n != "eth0"));
    // An IPAM plugin that does not exist at all.
    let config = net.config(Some("1.0.0"), json!({"ipam": {"type": "no-such-ipam"}}));
    let (_, msg) = net.ours("ADD", &c, &config).err();
    assert!(msg.contains("no-such-ipam"), "{msg}");
    assert!(net.host_veths().is_empty());
    assert!(links(&c).iter().all(|(n, _, _)| n != "eth0"));
}

#[test]
fn a_failure_after_ipam_deletes_the_veth_and_releases_the_ip() {
    let net = Net::new();
    let c = Netns::new();
    // A route through a gateway outside every subnet of the container: the kernel refuses it.
    let mut ipam = net.ipam();
    ipam["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]);
    let config = net.config(Some("1.0.0"), json!({"ipam": ipam, "ipMasq": true}));
    let (code, msg) = net.ours("ADD", &c, &config).err();
    assert_eq!(code, 999);
    assert!(
        msg.starts_with("failed to add route '10.99.0.0/16 via 192.0.2.1 dev eth0'"),
        "{msg}"
    );
    assert!(net.reserved().is_empty(), "the address was released");
    assert!(net.host_veths().is_empty(), "{:?}", net.host_links());
    assert!(links(&c).iter().all(|(n, _, _)| n != "eth0"));
    assert!(nft_rules(&net.host).is_empty());

    // The bridge already holds another address: a conflict after IPAM, undone the same way.
    net.host
        .ip(&["addr", "add", "10.250.0.1/16", "dev", BRIDGE]);
    let config = net.config(Some("1.0.0"), json!({"isGateway": true}));
    let (_, msg) = net.ours("ADD", &c, &config).err();
    assert_eq!(
        msg,
        format!(
            "failed to set bridge addr: \"{BRIDGE}\" already has an IP address different from {}/24",
            net.ip(1)
        )
    );
    assert!(net.reserved().is_empty());
    assert!(net.host_veths().is_empty());
    // forceAddress replaces it.
    let config = net.config(
        Some("1.0.0"),
        json!({"isGateway": true, "forceAddress": true}),
    );
    net.ours("ADD", &c, &config).ok_json();
    assert_eq!(addrs(&net.host, BRIDGE), vec![format!("{}/24", net.ip(1))]);
}

/// The rules of our nftables table (empty when there is none).
fn nft_rules(host: &Netns) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &host.name, "nft", "-j", "list", "ruleset"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!({}));
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("rule"))
        .filter(|r| r["table"] == "wasm_cni")
        .map(|r| r.to_string())
        .collect()
}

fn iptables_nat(host: &Netns) -> Vec<String> {
    run(&[
        "ip", "netns", "exec", &host.name, "iptables", "-t", "nat", "-S",
    ])
    .lines()
    .filter(|l| l.contains("CNI-"))
    .map(String::from)
    .collect()
}

#[test]
fn ip_masq_with_nftables() {
    let net = Net::new();
    let c = Netns::new();
    let config = net.config(
        Some("1.0.0"),
        json!({"isGateway": true, "ipMasq": true, "ipMasqBackend": "nftables"}),
    );
    let r = net.ours("ADD", &c, &config).ok_json();
    let ip = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let rules = nft_rules(&net.host);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(
        rules[0].contains(&ip) && rules[0].contains("masquerade"),
        "{rules:?}"
    );
    assert!(
        rules[0].contains(&format!("wasm-cni {} c1", net.name)),
        "{rules:?}"
    );
    assert!(iptables_nat(&net.host).is_empty());
    let del = net.ours("DEL", &c, &config);
    assert_eq!(del.status, 0, "{del:?}");
    assert!(nft_rules(&net.host).is_empty());
}

#[test]
fn ip_masq_with_iptables_like_the_reference() {
    let pair = Pair::new();
    let (ours_net, ref_net) = (&pair.ours, &pair.reference);
    let (ours_c, ref_c) = (&pair.ours_c, &pair.ref_c);
    let conf = |net: &Net, backend: bool| {
        // One network name for both: the chain name derives from it and the container id.
        let mut extra = json!({"name": "masqnet", "isGateway": true, "ipMasq": true,
                                "ipam": {"type": "host-local", "dataDir": net.data_dir, "subnet": "10.78.0.0/24"}});
        if backend {
            extra["ipMasqBackend"] = "iptables".into();
        }
        net.config(Some("1.0.0"), extra)
    };
    ours_net
        .ours("ADD", ours_c, &conf(ours_net, true))
        .ok_json();
    // The reference (1.1.1) only knows iptables and has no ipMasqBackend.
    ref_net
        .reference("ADD", ref_c, &conf(ref_net, false))
        .ok_json();
    let ours = iptables_nat(&ours_net.host);
    assert!(!ours.is_empty());
    assert_eq!(ours, iptables_nat(&ref_net.host));
    assert!(nft_rules(&ours_net.host).is_empty());
    let del = ours_net.ours("DEL", ours_c, &conf(ours_net, true));
    assert_eq!(del.status, 0, "{del:?}");
    assert!(
        iptables_nat(&ours_net.host).is_empty(),
        "{:?}",
        iptables_nat(&ours_net.host)
    );
}

#[test]
fn concurrent_adds_onto_a_missing_bridge_all_succeed() {
    let net = Net::new();
    let config = net.config(Some("1.0.0"), json!({"isGateway": true, "ipMasq": true}));
    let containers: Vec<Netns> = (0..16).map(|_| Netns::new()).collect();
    let results: Vec<Exec> = std::thread::scope(|s| {
        let handles: Vec<_> = containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (net, config) = (&net, &config);
                s.spawn(move || net.ours_with(net.cni("ADD", &c.path(), &format!("c{i}")), config))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips = BTreeSet::new();
    for r in &results {
        let v = r.ok_json();
        ips.insert(v["ips"][0]["address"].as_str().unwrap().to_string());
    }
    assert_eq!(ips.len(), 16, "distinct addresses: {ips:?}");
    assert_eq!(net.reserved().len(), 16);
    let links = net.host_links();
    assert_eq!(links.iter().filter(|(_, k, _)| k == "bridge").count(), 1);
    assert_eq!(
        links
            .iter()
            .filter(|(_, k, m)| k == "veth" && m == BRIDGE)
            .count(),
        16,
        "{links:?}"
    );
    assert_eq!(addrs(&net.host, BRIDGE), vec![format!("{}/24", net.ip(1))]);
    assert_eq!(nft_rules(&net.host).len(), 16);
    // And they all go away again.
    std::thread::scope(|s| {
        for (i, c) in containers.iter().enumerate() {
            let (net, config) = (&net, &config);
            s.spawn(move || {
                let del = net.ours_with(net.cni("DEL", &c.path(), &format!("c{i}")), config);
                assert_eq!(del.status, 0, "{del:?}");
            });
        }
    });
    assert!(net.reserved().is_empty());
    assert!(net.host_veths().is_empty());
    assert!(nft_rules(&net.host).is_empty());
}

#[test]
fn chained_with_logger_the_result_comes_back_unchanged() {
    let net = Net::new();
    let c = Netns::new();
    let config = net.config(Some("1.0.0"), json!({"isDefaultGateway": true}));
    let result = net.ours("ADD", &c, &config).ok_json();
    let logger_conf =
        json!({"cniVersion": "1.0.0", "name": net.name, "type": "logger", "prevResult": result});
    let out = Cni::new("ADD", &c.path())
        .set("CNI_CONTAINERID", "c1")
        .ours("logger", &logger_conf.to_string())
        .ok_json();
    assert_eq!(out, result);
    // DEL in reverse order, each with the final result.
    let del = Cni::new("DEL", &c.path())
        .set("CNI_CONTAINERID", "c1")
        .ours("logger", &logger_conf.to_string());
    assert_eq!(del.status, 0, "{del:?}");
    let del = net.ours("DEL", &c, &with_prev(&config, &out));
    assert_eq!(del.status, 0, "{del:?}");
    assert!(net.reserved().is_empty());
}

#[test]
fn config_errors_match_the_reference() {
    for extra in [
        json!({"hairpinMode": true, "promiscMode": true}),
        json!({"vlan": 4095}),
        json!({"vlan": -1}),
    ] {
        let pair = Pair::new();
        pair.add_err_same(v1(extra));
        assert!(pair.ours.host_veths().is_empty());
    }
    // A link of the bridge's name that is not a bridge.
    let pair = Pair::new();
    for net in [&pair.ours, &pair.reference] {
        net.host.ip(&[
            "link",
            "add",
            BRIDGE,
            "type",
            "veth",
            "peer",
            "name",
            "notabridge",
        ]);
    }
    let ours = pair.add_err_same(v1(json!({})));
    assert_eq!(
        ours.1,
        format!(
            "failed to create bridge \"{BRIDGE}\": \"{BRIDGE}\" already exists but is not a bridge"
        )
    );
    assert!(pair.ours.reserved().is_empty());
}

#[test]
fn options_ours_alone_supports_fail_clearly_or_work() {
    let net = Net::new();
    let c = Netns::new();
    // disableContainerInterface with IPAM is an error; without, eth0 stays down.
    let (_, msg) = net
        .ours(
            "ADD",
            &c,
            &net.config(Some("1.0.0"), json!({"disableContainerInterface": true})),
        )
        .err();
    assert_eq!(
        msg,
        "cannot use IPAM when DisableContainerInterface flag is set"
    );
    let r = net
        .ours(
            "ADD",
            &c,
            &net.config(
                Some("1.0.0"),
                json!({"disableContainerInterface": true, "ipam": null}),
            ),
        )
        .ok_json();
    assert!(r.get("ips").is_none(), "{r}");
    assert!(!c.link_state("eth0").0, "eth0 is down");
    // Unknown masquerade backends.
    let c2 = Netns::new();
    let (_, msg) = net
        .ours(
            "ADD",
            &c2,
            &net.config(
                Some("1.0.0"),
                json!({"ipMasq": true, "ipMasqBackend": "pf"}),
            ),
        )
        .err();
    assert_eq!(msg, "unknown ipmasq backend \"pf\"");
}

#[test]
fn layer2_only_matches_the_reference() {
    let pair = Pair::new();
    pair.add_same(v1(json!({"ipam": null, "mtu": 1400, "hairpinMode": true})));
    pair.assert_same_kernel_state();
    let state = kernel_state(&pair.ours.host, &pair.ours_c);
    assert_eq!(state["container"]["mtu"], 1400);
    assert_eq!(state["container"]["up"], true);
    assert_eq!(state["veths"][0]["hairpin"], true);
    assert_eq!(state["bridge"]["mtu"], 1400);
}

#[test]
fn mac_from_runtime_config_wins() {
    let net = Net::new();
    let c = Netns::new();
    let config = net.config(
        Some("1.0.0"),
        json!({"runtimeConfig": {"mac": "0A:58:0A:00:00:07"}, "args": {"cni": {"mac": "0a:58:0a:00:00:08"}}}),
    );
    let r = net
        .ours_with(
            net.cni("ADD", &c.path(), "c1")
                .set("CNI_ARGS", "IgnoreUnknown=1;MAC=0a:58:0a:00:00:09"),
            &config,
        )
        .ok_json();
    assert_eq!(r["interfaces"][2]["mac"], "0a:58:0a:00:00:07");
    assert_eq!(link(&c, "eth0")["address"], "0a:58:0a:00:00:07");
    // CNI_ARGS alone, and unknown keys without IgnoreUnknown fail as in the reference.
    let c2 = Netns::new();
    let config = net.config(Some("1.0.0"), json!({}));
    let r = net
        .ours_with(
            net.cni("ADD", &c2.path(), "c2")
                .set("CNI_ARGS", "IgnoreUnknown=1;MAC=0a:58:0a:00:00:09"),
            &config,
        )
        .ok_json();
    assert_eq!(r["interfaces"][2]["mac"], "0a:58:0a:00:00:09");
    let c3 = Netns::new();
    let e = net
        .ours_with(
            net.cni("ADD", &c3.path(), "c3").set("CNI_ARGS", "FOO=bar"),
            &config,
        )
        .err();
    let reference = net
        .cni("ADD", &c3.path(), "c3")
        .set("CNI_ARGS", "FOO=bar")
        .set("CNI_PATH", REFERENCE_DIR)
        .reference("bridge", &config)
        .err();
    assert_eq!(e, reference);
}

/// Whether this kernel has bridge vlan filtering (CONFIG_BRIDGE_VLAN_FILTERING).
fn vlan_filtering_supported() -> bool {
    let ns = Netns::new();
    Command::new("ip")
        .args([
            "-n",
            &ns.name,
            "link",
            "add",
            "vf0",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .output()
        .unwrap()
        .status
        .success()
}

/// Without vlan filtering in the kernel, a vlan config fails at the bridge in both plugins,
/// and ours leaves nothing behind.
fn vlan_unsupported_fails_like_the_reference(extra: Value) {
    let pair = Pair::new();
    let (ours, reference) = pair.run("ADD", v1(extra));
    let (ours, reference) = (ours.err(), reference.err());
    let ours_net = &pair.ours;
    let prefix = format!("failed to create bridge \"{BRIDGE}\": could not add \"{BRIDGE}\": ");
    assert!(ours.1.starts_with(&prefix), "{ours:?}");
    assert!(reference.1.starts_with(&prefix), "{reference:?}");
    assert!(ours_net.reserved().is_empty() && ours_net.host_veths().is_empty());
    eprintln!("note: this kernel has no bridge vlan filtering: only the failure was compared");
}

#[test]
fn vlan_access_port_like_the_reference() {
    let extra = json!({"vlan": 100});
    if !vlan_filtering_supported() {
        return vlan_unsupported_fails_like_the_reference(extra);
    }
    let pair = Pair::new();
    let (ours_net, ref_net) = (&pair.ours, &pair.reference);
    let (ours, reference) = pair.add_same(v1(extra));
    let ours_vlans = port_vlans(ours_net, ours["interfaces"][1]["name"].as_str().unwrap());
    assert_eq!(
        ours_vlans,
        port_vlans(
            ref_net,
            reference["interfaces"][1]["name"].as_str().unwrap()
        )
    );
    assert!(
        ours_vlans
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["vlan"] == 100
                && v["flags"].as_array().is_some_and(
                    |f| f.contains(&json!("PVID")) && f.contains(&json!("Egress Untagged"))
                )),
        "{ours_vlans}"
    );
    assert_eq!(
        kernel_state(&ours_net.host, &pair.ours_c)["bridge"]["vlan_filtering"],
        1
    );
}

#[test]
fn port_isolation() {
    let net = Net::new();
    let c = Netns::new();
    let config = net.config(Some("1.0.0"), json!({"portIsolation": true}));
    let r = net.ours("ADD", &c, &config).ok_json();
    let veth = r["interfaces"][1]["name"].as_str().unwrap();
    assert_eq!(
        link(&net.host, veth)["linkinfo"]["info_slave_data"]["isolated"],
        true
    );
}

#[test]
fn vlan_trunk_and_default_vlan() {
    let trunk = json!([{"minID": 200, "maxID": 202}, {"id": 300}]);
    if !vlan_filtering_supported() {
        let (net, c) = (Net::new(), Netns::new());
        let e = net
            .ours(
                "ADD",
                &c,
                &net.config(Some("1.0.0"), json!({"vlanTrunk": trunk})),
            )
            .err();
        assert!(e.1.contains("could not add"), "{e:?}");
        assert!(net.reserved().is_empty() && net.host_veths().is_empty());
        eprintln!("note: this kernel has no bridge vlan filtering: only the failure was checked");
        return;
    }
    let net = Net::new();
    let c = Netns::new();
    let config = net.config(
        Some("1.0.0"),
        json!({"vlanTrunk": trunk, "preserveDefaultVlan": false, "ipam": null}),
    );
    let r = net.ours("ADD", &c, &config).ok_json();
    let veth = r["interfaces"][1]["name"].as_str().unwrap();
    let v = port_vlans(&net, veth);
    let vids: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| {
            let start = v["vlan"].as_u64().unwrap();
            let end = v["vlanEnd"].as_u64().unwrap_or(start);
            start..=end
        })
        .collect();
    assert_eq!(vids, vec![200, 201, 202, 300], "{v}");
}

#[test]
fn gateway_on_a_vlan_interface_like_the_reference() {
    if !vlan_filtering_supported() {
        return vlan_unsupported_fails_like_the_reference(json!({"vlan": 42, "isGateway": true}));
    }
    let pair = Pair::new();
    let (ours_net, ref_net) = (&pair.ours, &pair.reference);
    pair.add_same(|net: &Net| {
        net.config(
            Some("1.0.0"),
            json!({"vlan": 42, "isGateway": true,
               "ipam": {"type": "host-local", "dataDir": net.data_dir, "subnet": "10.79.0.0/24"}}),
        )
    });
    let gw = format!("{BRIDGE}.42");
    assert_eq!(addrs(&ours_net.host, &gw), addrs(&ref_net.host, &gw));
    assert_eq!(addrs(&ours_net.host, &gw), vec!["10.79.0.1/24".to_string()]);
    assert!(addrs(&ours_net.host, BRIDGE).is_empty());
}

#[test]
fn enabledad_and_promisc_mode() {
    let net = Net::new();
    let (c1, c2) = (Netns::new(), Netns::new());
    let sysctl = |c: &Netns| {
        run(&[
            "ip",
            "netns",
            "exec",
            &c.name,
            "sysctl",
            "-n",
            "net.ipv6.conf.eth0.accept_dad",
        ])
        .trim()
        .to_string()
    };
    net.ours_with(
        net.cni("ADD", &c1.path(), "c1"),
        &net.config(Some("1.0.0"), json!({"enabledad": true})),
    )
    .ok_json();
    assert_eq!(sysctl(&c1), "1");
    net.ours_with(
        net.cni("ADD", &c2.path(), "c2"),
        &net.config(Some("1.0.0"), json!({"promiscMode": true})),
    )
    .ok_json();
    assert_eq!(sysctl(&c2), "0");
    let br = link(&net.host, BRIDGE);
    assert!(
        br["flags"].as_array().unwrap().contains(&json!("PROMISC")),
        "{br}"
    );
}

/// The `bridge nat` table (the spoof check's) as nft JSON objects, handles dropped and what
/// legitimately differs between two runs blanked: the host veth's name and the container MAC.
/// Empty when there is no table.
fn spoof_ruleset(host: &Netns, veth: &str, mac: &str) -> Vec<Value> {
    let out = Command::new("ip")
        .args(["netns", "exec", &host.name, "nft", "-j"])
        .args(["list", "table", "bridge", "nat"])
        .output()
        .unwrap();
    if !out.status.success() {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&out.stdout)
        .replace(&format!("\"{veth}\""), "\"VETH\"")
        .replace(&format!("\"{mac}\""), "\"MAC\"");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item.get("metainfo").is_none())
        .map(|item| {
            let mut item = item.clone();
            for obj in item.as_object_mut().unwrap().values_mut() {
                obj.as_object_mut().unwrap().remove("handle");
            }
            item
        })
        .collect()
}

/// (chain names, rule count) of a spoof ruleset.
fn spoof_shape(ruleset: &[Value]) -> (Vec<String>, usize) {
    let chains = ruleset
        .iter()
        .filter_map(|i| i.get("chain"))
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    (
        chains,
        ruleset.iter().filter(|i| i.get("rule").is_some()).count(),
    )
}

/// The host veth and the container MAC of an ADD result.
fn veth_and_mac(r: &Value) -> (String, String) {
    let s = |v: &Value| v.as_str().unwrap().to_string();
    (
        s(&r["interfaces"][1]["name"]),
        s(&r["interfaces"][2]["mac"]),
    )
}

#[test]
fn macspoofchk_rules_match_the_reference_and_del_removes_them() {
    let pair = Pair::new();
    let conf = v1(json!({"macspoofchk": true}));
    let (ours, reference) = pair.add_same(&conf);
    pair.assert_same_kernel_state();
    let (ours_veth, ours_mac) = veth_and_mac(&ours);
    let (ref_veth, ref_mac) = veth_and_mac(&reference);
    let ours_rules = spoof_ruleset(&pair.ours.host, &ours_veth, &ours_mac);
    let ref_rules = spoof_ruleset(&pair.reference.host, &ref_veth, &ref_mac);
    assert_eq!(ours_rules, ref_rules);
    // Table `bridge nat`, the base chain, the container's two chains, four rules; the MAC is
    // the container's and the base chain matches the container's host veth.
    assert_eq!(
        spoof_shape(&ours_rules),
        (
            vec![
                "PREROUTING".to_string(),
                "cni-br-iface-c1-eth0".into(),
                "cni-br-iface-c1-eth0-mac".into()
            ],
            4
        )
    );
    let text = serde_json::to_string(&ours_rules).unwrap();
    assert!(
        text.contains(r#""right":"MAC""#) && text.contains(r#""right":"VETH""#),
        "{text}"
    );
    assert_eq!(link(&pair.ours_c, "eth0")["address"], ours_mac.as_str());

    // DEL: the container's chains and rules go, the table and base chain stay, in both.
    let (o, r) = pair.run("DEL", &conf);
    assert_eq!((o.status, r.status), (0, 0), "{o:?} {r:?}");
    let ours_rules = spoof_ruleset(&pair.ours.host, &ours_veth, &ours_mac);
    assert_eq!(
        ours_rules,
        spoof_ruleset(&pair.reference.host, &ref_veth, &ref_mac)
    );
    assert_eq!(
        spoof_shape(&ours_rules),
        (vec!["PREROUTING".to_string()], 0)
    );
    // A second DEL is fine.
    let del = pair.ours.ours("DEL", &pair.ours_c, &conf(&pair.ours));
    assert_eq!(del.status, 0, "{del:?}");

    // The same layout both ways: our DEL removes what the reference installed.
    let again = pair
        .reference
        .reference("ADD", &pair.ref_c, &conf(&pair.reference))
        .ok_json();
    let (veth, mac) = veth_and_mac(&again);
    assert_eq!(
        spoof_shape(&spoof_ruleset(&pair.reference.host, &veth, &mac)).1,
        4
    );
    let del = pair
        .reference
        .ours("DEL", &pair.ref_c, &conf(&pair.reference));
    assert_eq!(del.status, 0, "{del:?}");
    assert_eq!(
        spoof_shape(&spoof_ruleset(&pair.reference.host, &veth, &mac)),
        (vec!["PREROUTING".to_string()], 0)
    );
}

#[test]
fn macspoofchk_drops_frames_with_a_changed_mac() {
    let net = Net::new();
    let spoof = net.config(
        Some("1.0.0"),
        json!({"isGateway": true, "macspoofchk": true}),
    );
    let plain = net.config(Some("1.0.0"), json!({"isGateway": true}));
    let (a, b, c) = (Netns::new(), Netns::new(), Netns::new());
    let add = |ns: &Netns, id: &str, config: &str| {
        net.ours_with(net.cni("ADD", &ns.path(), id), config)
            .ok_json()
    };
    let ra = add(&a, "a", &spoof);
    let rb = add(&b, "b", &spoof);
    add(&c, "c", &plain);
    let ip_b = rb["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let gw = net.ip(1);
    assert!(ping(&a, &ip_b), "a -> b with its own MAC");
    assert!(ping(&a, &gw), "a -> gateway with its own MAC");
    // A (checked) and C (not checked) take another MAC inside their netns; every neighbour
    // cache forgets the old ones.
    let set_mac = |ns: &Netns, mac: &str| {
        ns.ip(&["link", "set", "eth0", "address", mac]);
        for n in [&net.host, &a, &b, &c] {
            n.ip(&["neigh", "flush", "all"]);
        }
    };
    set_mac(&a, "0a:58:0a:ff:00:0a");
    set_mac(&c, "0a:58:0a:ff:00:0c");
    assert!(
        !ping(&a, &ip_b),
        "a -> b with a spoofed MAC must be dropped"
    );
    assert!(
        !ping(&a, &gw),
        "a -> gateway with a spoofed MAC must be dropped"
    );
    assert!(ping(&b, &gw), "b is unaffected");
    assert!(ping(&c, &gw), "c has no spoof check: its new MAC passes");
    // Back to the MAC it was given, A passes again.
    set_mac(&a, ra["interfaces"][2]["mac"].as_str().unwrap());
    assert!(ping(&a, &ip_b), "a -> b with its own MAC again");
}

#[test]
fn a_failed_add_after_the_spoof_check_leaves_no_rules() {
    let net = Net::new();
    let c = Netns::new();
    // A route through a gateway outside every subnet of the container: the kernel refuses it,
    // after the spoof check was installed (before IPAM).
    let mut ipam = net.ipam();
    ipam["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]);
    let config = net.config(Some("1.0.0"), json!({"ipam": ipam, "macspoofchk": true}));
    let add = net.ours("ADD", &c, &config);
    let (code, msg) = add.err();
    assert_eq!(code, 999);
    assert!(msg.starts_with("failed to add route"), "{msg}");
    for op in ["mac-spoof-check-add", "mac-spoof-check-del"] {
        assert!(
            add.stderr
                .lines()
                .any(|l| l.contains(&format!(r#""op":"{op}""#)) && l.contains(r#""outcome":"ok""#)),
            "{op} in the audit log: {}",
            add.stderr
        );
    }
    assert_eq!(
        spoof_shape(&spoof_ruleset(&net.host, "-", "-")),
        (vec!["PREROUTING".to_string()], 0)
    );
    assert!(net.reserved().is_empty());
    assert!(net.host_veths().is_empty(), "{:?}", net.host_links());

    // DEL after the netns is gone still removes the check (the reference leaves it). Layer 2
    // only, so the same container can be added twice below.
    let config = net.config(Some("1.0.0"), json!({"macspoofchk": true, "ipam": null}));
    let c2 = Netns::new();
    let r = net
        .ours_with(net.cni("ADD", &c2.path(), "c2"), &config)
        .ok_json();
    let (veth, mac) = veth_and_mac(&r);
    assert_eq!(spoof_shape(&spoof_ruleset(&net.host, &veth, &mac)).1, 4);
    // The container's interface vanished without a DEL and it is added again: its check is
    // replaced (one base-chain rule, for the new veth), not doubled.
    c2.ip(&["link", "del", "eth0"]);
    let r = net
        .ours_with(net.cni("ADD", &c2.path(), "c2"), &config)
        .ok_json();
    let (new_veth, new_mac) = veth_and_mac(&r);
    assert_ne!(new_veth, veth);
    let rules = spoof_ruleset(&net.host, &new_veth, &new_mac);
    assert_eq!(spoof_shape(&rules).1, 4, "{rules:?}");
    let text = serde_json::to_string(&rules).unwrap();
    assert!(
        text.contains(r#""right":"VETH""#) && text.contains(r#""right":"MAC""#),
        "{text}"
    );
    let path = c2.path();
    drop(c2);
    let del = net.ours_with(net.cni("DEL", &path, "c2"), &config);
    assert_eq!(del.status, 0, "{del:?}");
    assert_eq!(
        spoof_shape(&spoof_ruleset(&net.host, &new_veth, &new_mac)),
        (vec!["PREROUTING".to_string()], 0)
    );
}
