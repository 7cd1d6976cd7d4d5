//! host-device, run as a runtime would: a throwaway namespace plays the host (the plugin runs
//! inside it via `ip netns exec`) and holds the device, a veth end `hd0` (this kernel has no
//! `dummy` links); another throwaway namespace is the container. Ours and the Debian reference
//! (CNI up to 1.0.0) get the same inputs in separate namespace pairs, and their results and
//! the kernel state they leave are compared.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};
use wasm_cni_tests::{bin_dir, Cni, Exec, Netns, REFERENCE_DIR, SHARED_VERSIONS};

/// The device's MAC, the same in every host namespace so results compare directly.
const MAC: &str = "02:42:ac:11:00:07";

/// What the kernel says about one link.
#[derive(Debug, PartialEq)]
struct LinkState {
    up: bool,
    alias: String,
    mac: String,
}

fn link_state(ns: &Netns, name: &str) -> Option<LinkState> {
    let links = ns.ip_json(&["link", "show"]);
    let link = links.as_array()?.iter().find(|l| l["ifname"] == name)?;
    Some(LinkState {
        up: link["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "UP")),
        alias: link["ifalias"].as_str().unwrap_or_default().to_string(),
        mac: link["address"].as_str().unwrap_or_default().to_string(),
    })
}

/// The container's routes as (dst, gateway, dev), in both families.
fn routes(ns: &Netns) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for family in ["-4", "-6"] {
        for r in ns.ip_json(&[family, "route", "show"]).as_array().unwrap() {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            all.push((text("dst"), text("gateway"), text("dev")));
        }
    }
    all
}

/// The node policy our runs use: native IPAM plugins (the reference `static`) may be exec'd.
const POLICY: &str = "[plugins.host-device]\nnative-exec = true\n";

/// A host namespace holding `hd0` (up, with [`MAC`]) and an empty container namespace.
struct Pod {
    host: Netns,
    cont: Netns,
}

impl Pod {
    fn new() -> Pod {
        let host = Netns::new();
        host.ip(&[
            "link", "add", "hd0", "address", MAC, "type", "veth", "peer", "name", "hd0p",
        ]);
        host.ip(&["link", "set", "hd0", "up"]);
        Pod {
            host,
            cont: Netns::new(),
        }
    }

    fn cni(&self, command: &str) -> Cni {
        Cni::new(command, &self.cont.path()).with_host(&self.host)
    }

    /// Ours, with our plugins and then the reference ones in CNI_PATH (for IPAM).
    fn ours(&self, command: &str, config: &str) -> Exec {
        ours(self.cni(command), config)
    }

    fn reference(&self, command: &str, config: &str) -> Exec {
        self.cni(command).reference("host-device", config)
    }

    /// A result with this pod's netns path replaced by `NETNS`.
    fn normalized(&self, v: Value) -> Value {
        serde_json::from_str(&v.to_string().replace(&self.cont.path(), "NETNS")).unwrap()
    }

    /// The device is in the container as `eth0`, up, its host name kept as the alias.
    fn assert_moved_in(&self) {
        assert_eq!(
            link_state(&self.cont, "eth0"),
            Some(LinkState {
                up: true,
                alias: "hd0".into(),
                mac: MAC.into()
            })
        );
        assert_eq!(link_state(&self.host, "hd0"), None, "gone from the host");
    }

    /// [`Pod::assert_moved_in`] while another `hd0` has appeared in the host.
    fn assert_moved_in_besides_a_host_hd0(&self) {
        let cont = link_state(&self.cont, "eth0").expect("eth0 stays in the container");
        assert_eq!(
            (cont.up, cont.alias.as_str(), cont.mac.as_str()),
            (true, "hd0", MAC)
        );
        assert_ne!(link_state(&self.host, "hd0").unwrap().mac, MAC);
    }

    /// The device is back in the host under its own name.
    fn host_device(&self) -> LinkState {
        assert_eq!(
            link_state(&self.cont, "eth0"),
            None,
            "gone from the container"
        );
        link_state(&self.host, "hd0").expect("hd0 is back in the host")
    }
}

fn ours(cni: Cni, config: &str) -> Exec {
    static N: AtomicU32 = AtomicU32::new(0);
    let policy = std::env::temp_dir().join(format!(
        "wcni-hd-policy-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&policy, POLICY).unwrap();
    let path = format!("{}:{REFERENCE_DIR}", bin_dir().display());
    let out = cni
        .set("CNI_PATH", &path)
        .set("WASM_CNI_POLICY", &policy.display().to_string())
        .ours("host-device", config);
    let _ = std::fs::remove_file(&policy);
    out
}

fn config(version: Option<&str>, selector: &str) -> String {
    let mut c = json!({"name": "testnet", "type": "host-device"});
    if let Some(v) = version {
        c["cniVersion"] = v.into();
    }
    let selector: Value = serde_json::from_str(&format!("{{{selector}}}")).unwrap();
    for (k, v) in selector.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn device(version: &str) -> String {
    config(Some(version), r#""device":"hd0""#)
}

/// `device` with the reference `static` IPAM plugin: two addresses, three routes and a DNS
/// setting of the config's own (which the result reports, not the IPAM plugin's).
fn with_static_ipam(version: Option<&str>) -> String {
    let mut c: Value = serde_json::from_str(&config(version, r#""device":"hd0""#)).unwrap();
    c["dns"] = json!({"nameservers": ["10.9.0.53"]});
    c["ipam"] = json!({
        "type": "static",
        "addresses": [
            {"address": "10.9.0.5/24", "gateway": "10.9.0.1"},
            {"address": "fd00::5/64"}
        ],
        "routes": [
            {"dst": "10.10.0.0/16"},
            {"dst": "0.0.0.0/0"},
            {"dst": "10.11.0.0/16", "gw": "10.9.0.254"}
        ],
        "dns": {"nameservers": ["1.1.1.1"]}
    });
    c.to_string()
}

#[test]
fn add_moves_the_device_in_and_del_moves_it_back() {
    let pod = Pod::new();
    let result = pod.ours("ADD", &device("1.0.0")).ok_json();
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": MAC, "sandbox": pod.cont.path()}],
            "dns": {}
        })
    );
    pod.assert_moved_in();

    let del = pod.ours("DEL", &device("1.0.0"));
    assert_eq!((del.status, del.stdout.as_str()), (0, ""), "{del:?}");
    assert_eq!(
        pod.host_device(),
        LinkState {
            up: false,
            alias: String::new(),
            mac: MAC.into()
        },
        "back under its own name, down (its earlier state is unknown), alias cleared"
    );
}

/// The CNI spec requires DEL to succeed when called twice; the reference's second DEL fails.
#[test]
fn second_del_succeeds_where_the_reference_fails() {
    let (ours, reference) = (Pod::new(), Pod::new());
    ours.ours("ADD", &device("1.0.0")).ok_json();
    reference.reference("ADD", &device("1.0.0")).ok_json();
    for _ in 0..2 {
        let del = ours.ours("DEL", &device("1.0.0"));
        assert_eq!((del.status, del.stdout.as_str()), (0, ""), "{del:?}");
    }
    assert_eq!(ours.host_device().alias, "");
    assert_eq!(reference.reference("DEL", &device("1.0.0")).status, 0);
    assert_eq!(
        reference.reference("DEL", &device("1.0.0")).err(),
        (999, r#"failed to find "eth0": Link not found"#.to_string()),
        "the reference's second DEL (documented, not copied)"
    );
}

#[test]
fn del_after_the_container_netns_is_gone_succeeds() {
    let pod = Pod::new();
    pod.ours("ADD", &device("1.0.0")).ok_json();
    let gone = pod.cont.path();
    drop(pod.cont);
    // A veth dies with its namespace (a physical device would return to the initial netns).
    let del = ours(
        Cni::new("DEL", &gone).with_host(&pod.host),
        &device("1.0.0"),
    );
    assert_eq!((del.status, del.stdout.as_str()), (0, ""), "{del:?}");
    let del = ours(Cni::new("DEL", "").with_host(&pod.host), &device("1.0.0"));
    assert_eq!(del.status, 0, "no CNI_NETNS at all: {del:?}");
    let (code, msg) = Cni::new("DEL", &gone)
        .with_host(&pod.host)
        .reference("host-device", &device("1.0.0"))
        .err();
    assert_eq!(code, 999);
    assert!(
        msg.starts_with(&format!("failed to open netns \"{gone}\"")),
        "the reference fails (documented, not copied): {msg}"
    );
}

/// When the host has meanwhile given the device's name to another link, DEL fails and leaves
/// the device in the container as it was, so that a retried DEL can finish the job.
#[test]
fn del_blocked_by_a_name_clash_in_the_host_can_be_retried() {
    let pod = Pod::new();
    pod.ours("ADD", &device("1.0.0")).ok_json();
    pod.host.ip(&[
        "link", "add", "hd0", "type", "veth", "peer", "name", "blocker0",
    ]);
    let (code, msg) = pod.ours("DEL", &device("1.0.0")).err();
    assert_eq!(code, 999);
    assert!(
        msg.starts_with(r#"failed to restore "eth0" to original name "hd0": "#),
        "{msg}"
    );
    pod.assert_moved_in_besides_a_host_hd0();
    pod.host.ip(&["link", "del", "hd0"]);
    pod.ours("DEL", &device("1.0.0")).ok_json_or_empty();
    assert_eq!(pod.host_device().mac, MAC);
}

#[test]
fn hwaddr_selects_the_device_in_any_of_gos_forms() {
    for hwaddr in ["02:42:AC:11:00:07", "02-42-ac-11-00-07", "0242.ac11.0007"] {
        let pod = Pod::new();
        let selector = format!(r#""hwaddr":"{hwaddr}""#);
        let result = pod.ours("ADD", &config(Some("1.0.0"), &selector)).ok_json();
        assert_eq!(result["interfaces"][0]["mac"], MAC, "{hwaddr}");
        pod.assert_moved_in();
        pod.ours("DEL", &config(Some("1.0.0"), &selector))
            .ok_json_or_empty();
        assert!(!pod.host_device().up);
    }
}

/// `kernelpath` names a device and the reference takes the first (by name) network device
/// listed under `<kernelpath>/net`; for virtual devices that is `/sys/devices/virtual`, where
/// `hd0` sorts before `hd0p` and `lo`. Ours also takes the network device's own sysfs path,
/// which the reference refuses.
#[test]
fn kernelpath_selects_the_device() {
    let pod = Pod::new();
    let own_path = {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &pod.host.name,
                "readlink",
                "-f",
                "/sys/class/net/hd0",
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(own_path, "/sys/devices/virtual/net/hd0");
    let selector = format!(r#""kernelpath":"{own_path}""#);
    pod.ours("ADD", &config(Some("1.0.0"), &selector)).ok_json();
    pod.assert_moved_in();
    pod.ours("DEL", &config(Some("1.0.0"), &selector))
        .ok_json_or_empty();
    pod.host_device();
    let (code, msg) = pod
        .reference("ADD", &config(Some("1.0.0"), &selector))
        .err();
    assert_eq!(
        (code, msg.as_str()),
        (
            999,
            r#"failed to find host device: failed to find network devices at "/sys/devices/virtual/net/hd0/net""#
        )
    );

    let (ours, reference) = (Pod::new(), Pod::new());
    let parent = config(Some("1.0.0"), r#""kernelpath":"/sys/devices/virtual/""#);
    let a = ours.ours("ADD", &parent).ok_json();
    let b = reference.reference("ADD", &parent).ok_json();
    assert_eq!(ours.normalized(a), reference.normalized(b));
    ours.assert_moved_in();
    reference.assert_moved_in();
}

/// A PCI address the throwaway host namespace has no network device for: this machine's
/// NIC (if it has one on PCI) lives in the real host netns, which the tests never touch, so
/// only the failure is testable here (success needs a NIC the test may take away).
#[test]
fn pci_bus_id_without_a_device_in_the_host_netns_fails_like_the_reference() {
    let nic = std::fs::read_dir("/sys/bus/pci/devices")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.join("net").exists()
                || std::fs::read_dir(p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| {
                        e.file_name().to_string_lossy().starts_with("virtio")
                            && e.path().join("net").exists()
                    })
        });
    let Some(nic) = nic else {
        eprintln!("no PCI network device on this machine: pciBusID not exercised");
        return;
    };
    let id = nic.file_name().unwrap().to_string_lossy().into_owned();
    for selector in [
        format!(r#""pciBusID":"{id}""#),
        format!(r#""pciBusID":"0000:ff:1f.7","runtimeConfig":{{"deviceID":"{id}"}}"#),
    ] {
        let (ours, reference) = (Pod::new(), Pod::new());
        let conf = config(Some("1.0.0"), &selector);
        let e = ours.ours("ADD", &conf).err();
        assert_eq!(e, reference.reference("ADD", &conf).err(), "{selector}");
        assert_eq!(
            e.1,
            format!("failed to find host device: failed to find device name for pci address {id}")
        );
        assert!(link_state(&ours.host, "hd0").is_some());
    }
}

#[test]
fn selector_errors_match_the_reference() {
    for (selector, msg) in [
        (
            r#""device":"""#,
            r#"specify either "device", "hwaddr", "kernelpath" or "pciBusID""#,
        ),
        (
            r#""device":"nope0""#,
            "failed to find host device: Link not found",
        ),
        (
            r#""hwaddr":"02:00:00:00:00:99""#,
            "failed to find host device: failed to find physical interface",
        ),
        (
            r#""hwaddr":"zz""#,
            r#"failed to find host device: failed to parse MAC address "zz": address zz: invalid MAC address"#,
        ),
        (
            r#""kernelpath":"/sys/class/net/hd0""#,
            r#"failed to find host device: kernel device path "/sys/class/net/hd0" must be absolute and begin with /sys/devices/"#,
        ),
        (
            r#""kernelpath":"/sys/devices/nope""#,
            r#"failed to find host device: failed to find network devices at "/sys/devices/nope/net""#,
        ),
    ] {
        let (ours, reference) = (Pod::new(), Pod::new());
        let conf = config(Some("1.0.0"), selector);
        let e = ours.ours("ADD", &conf).err();
        assert_eq!(e, reference.reference("ADD", &conf).err(), "{selector}");
        assert_eq!(e, (999, msg.to_string()), "{selector}");
        assert!(link_state(&ours.host, "hd0").is_some(), "{selector}");
    }
}

/// The reference moves the device in and then fails to rename it, leaving it in the
/// container under its host name; ours checks first and moves nothing. The DEL a runtime
/// sends after the failed ADD leaves the container's own `eth0` alone (it has no alias, so
/// host-device did not put it there).
#[test]
fn existing_ifname_in_the_container_fails_before_anything_moves() {
    let pod = Pod::new();
    pod.cont.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    let before = link_state(&pod.cont, "eth0").unwrap();
    let (code, msg) = pod.ours("ADD", &device("1.0.0")).err();
    assert_eq!(
        (code, msg.as_str()),
        (
            999,
            r#"failed to move link: the container already has an interface named "eth0""#
        )
    );
    let host = link_state(&pod.host, "hd0").expect("hd0 never left the host");
    assert_eq!((host.up, host.alias.as_str()), (true, ""));
    assert_eq!(link_state(&pod.cont, "eth0").as_ref(), Some(&before));

    let del = pod.ours("DEL", &device("1.0.0"));
    assert_eq!((del.status, del.stdout.as_str()), (0, ""), "{del:?}");
    assert_eq!(link_state(&pod.cont, "eth0").as_ref(), Some(&before));
    assert!(link_state(&pod.host, "hd0").is_some());

    let reference = Pod::new();
    reference.cont.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    reference.reference("ADD", &device("1.0.0")).err();
    assert!(
        link_state(&reference.cont, "hd0").is_some(),
        "the reference leaves the device in the container (documented, not copied)"
    );
}

/// The device moves in one request that also names it: when the container already has a link
/// called like the device's host name, the kernel gives it `ifname` on the way in instead of
/// refusing the move. The reference (1.1.1) moves it under its host name first, so its ADD
/// fails on that clash.
#[test]
fn a_container_link_named_like_the_host_device_does_not_block_the_move() {
    let clash = |pod: &Pod| {
        pod.cont
            .ip(&["link", "add", "hd0", "type", "veth", "peer", "name", "hd0q"]);
        link_state(&pod.cont, "hd0").unwrap()
    };
    let pod = Pod::new();
    let before = clash(&pod);
    pod.ours("ADD", &device("1.0.0")).ok_json();
    pod.assert_moved_in();
    assert_eq!(link_state(&pod.cont, "hd0").as_ref(), Some(&before));
    let del = pod.ours("DEL", &device("1.0.0"));
    assert_eq!((del.status, del.stdout.as_str()), (0, ""), "{del:?}");
    assert_eq!(pod.host_device().mac, MAC);
    assert_eq!(link_state(&pod.cont, "hd0").as_ref(), Some(&before));

    let reference = Pod::new();
    clash(&reference);
    reference.reference("ADD", &device("1.0.0")).err();
    assert!(
        link_state(&reference.host, "hd0").is_some(),
        "the reference's move fails on the clash (documented, not copied)"
    );
}

/// An IPAM failure after the move puts the device back in the host as it was (name, up
/// state, no alias); the reference leaves it in the container.
#[test]
fn failed_add_rolls_back() {
    let missing_ipam = {
        let mut c: Value = serde_json::from_str(&device("1.0.0")).unwrap();
        c["ipam"] = json!({"type": "no-such-ipam"});
        c.to_string()
    };
    let no_addresses = {
        let mut c: Value = serde_json::from_str(&device("1.0.0")).unwrap();
        c["ipam"] = json!({"type": "static", "addresses": []});
        c.to_string()
    };
    for conf in [&missing_ipam, &no_addresses] {
        let pod = Pod::new();
        let (code, msg) = pod.ours("ADD", conf).err();
        assert!(code == 999, "{msg}");
        assert_eq!(
            pod.host_device(),
            LinkState {
                up: true,
                alias: String::new(),
                mac: MAC.into()
            },
            "{msg}"
        );
    }
    let pod = Pod::new();
    let (_, msg) = pod.ours("ADD", &no_addresses).err();
    assert_eq!(msg, "IPAM plugin returned missing IP config");

    let reference = Pod::new();
    reference.reference("ADD", &missing_ipam).err();
    assert!(
        link_state(&reference.cont, "eth0").is_some(),
        "the reference leaves the device in the container (documented, not copied)"
    );
}

#[test]
fn add_results_and_kernel_state_match_the_reference_in_every_shared_version() {
    for version in SHARED_VERSIONS.iter().map(|v| Some(*v)).chain([None]) {
        let conf = config(version, r#""device":"hd0""#);
        let (ours, reference) = (Pod::new(), Pod::new());
        let a = ours.normalized(ours.ours("ADD", &conf).ok_json());
        let b = reference.reference("ADD", &conf);
        match version {
            // A 0.1.0/0.2.0 result has no place for an interface without addresses: the
            // reference moves the device, then fails to print its result (leaving the device
            // in the container); ours prints the empty legacy result.
            None | Some("0.1.0" | "0.2.0") => {
                assert_eq!(
                    b.err(),
                    (999, "cannot convert: no valid IP addresses".to_string())
                );
                let v = version.unwrap_or("0.1.0");
                assert_eq!(a, json!({"cniVersion": v, "dns": {}}), "{version:?}");
            }
            _ => assert_eq!(a, reference.normalized(b.ok_json()), "{version:?}"),
        }
        ours.assert_moved_in();
        reference.assert_moved_in();

        ours.ours("DEL", &conf).ok_json_or_empty();
        assert_eq!(reference.reference("DEL", &conf).status, 0);
        let (a, b) = (ours.host_device(), reference.host_device());
        assert_eq!((a.up, &a.mac), (b.up, &b.mac), "{version:?}");
        // The reference (1.1.1) leaves the alias on the host device; upstream now clears it,
        // as we do.
        assert_eq!((a.alias.as_str(), b.alias.as_str()), ("", "hd0"));
    }
}

#[test]
fn static_ipam_matches_the_reference_in_every_shared_version() {
    for version in SHARED_VERSIONS.iter().map(|v| Some(*v)).chain([None]) {
        let conf = with_static_ipam(version);
        let (ours, reference) = (Pod::new(), Pod::new());
        let a = ours.normalized(ours.ours("ADD", &conf).ok_json());
        let b = reference.normalized(reference.reference("ADD", &conf).ok_json());
        assert_eq!(a, b, "{version:?}");
        assert_eq!(
            ours.cont.link_state("eth0"),
            reference.cont.link_state("eth0"),
            "{version:?}"
        );
        assert_eq!(routes(&ours.cont), routes(&reference.cont), "{version:?}");
        ours.ours("DEL", &conf).ok_json_or_empty();
        reference.reference("DEL", &conf).ok_json_or_empty();
        assert!(!ours.host_device().up);
        assert!(!reference.host_device().up);
    }
}

#[test]
fn static_ipam_applies_addresses_routes_and_the_configs_dns() {
    let pod = Pod::new();
    let result = pod.ours("ADD", &with_static_ipam(Some("1.0.0"))).ok_json();
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": MAC, "sandbox": pod.cont.path()}],
            "ips": [
                {"interface": 0, "address": "10.9.0.5/24", "gateway": "10.9.0.1"},
                {"interface": 0, "address": "fd00::5/64"}
            ],
            "routes": [
                {"dst": "10.10.0.0/16"},
                {"dst": "0.0.0.0/0"},
                {"dst": "10.11.0.0/16", "gw": "10.9.0.254"}
            ],
            "dns": {"nameservers": ["10.9.0.53"]}
        })
    );
    let (up, addresses) = pod.cont.link_state("eth0");
    assert!(up);
    assert!(
        addresses.contains(&"10.9.0.5/24".to_string()),
        "{addresses:?}"
    );
    assert!(
        addresses.contains(&"fd00::5/64".to_string()),
        "{addresses:?}"
    );
    let routes = routes(&pod.cont);
    for want in [
        ("default", "10.9.0.1"),
        ("10.10.0.0/16", "10.9.0.1"),
        ("10.11.0.0/16", "10.9.0.254"),
    ] {
        assert!(
            routes
                .iter()
                .any(|(dst, gw, dev)| (dst.as_str(), gw.as_str(), dev.as_str())
                    == (want.0, want.1, "eth0")),
            "{want:?} in {routes:?}"
        );
    }
    pod.ours("DEL", &with_static_ipam(Some("1.0.0")))
        .ok_json_or_empty();
    let host = pod.host_device();
    assert!(!host.up);
    assert_eq!(
        pod.host.link_state("hd0").1,
        Vec::<String>::new(),
        "addresses gone with the move"
    );
}

/// With `host-local` (ours when installed, else the reference found later in CNI_PATH) the
/// address is reserved by ADD and released by DEL, also when the container netns is gone.
#[test]
fn host_local_ipam_reserves_on_add_and_releases_on_del_even_without_the_netns() {
    let which = if bin_dir().join("host-local").exists() {
        "ours"
    } else {
        "the reference"
    };
    eprintln!("host-local: {which}");
    let data_dir = std::env::temp_dir().join(format!("wcni-hd-hl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let conf = {
        let mut c: Value = serde_json::from_str(&device("1.0.0")).unwrap();
        c["ipam"] = json!({
            "type": "host-local",
            "ranges": [[{"subnet": "10.77.0.0/24"}]],
            "dataDir": data_dir,
        });
        c.to_string()
    };
    let reserved = |dir: &PathBuf| -> Vec<String> {
        std::fs::read_dir(dir.join("testnet"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    };

    let pod = Pod::new();
    let result = pod.ours("ADD", &conf).ok_json();
    assert_eq!(result["ips"][0]["address"], "10.77.0.2/24", "{result}");
    assert_eq!(result["ips"][0]["interface"], 0);
    assert_eq!(reserved(&data_dir), ["10.77.0.2"]);
    assert!(pod
        .cont
        .link_state("eth0")
        .1
        .contains(&"10.77.0.2/24".to_string()));
    let check = {
        let mut c: Value = serde_json::from_str(&conf).unwrap();
        c["prevResult"] = result.clone();
        c.to_string()
    };
    let out = pod.ours("CHECK", &check);
    assert_eq!((out.status, out.stdout.as_str()), (0, ""), "{out:?}");

    let gone = pod.cont.path();
    drop(pod.cont);
    let del = ours(Cni::new("DEL", &gone).with_host(&pod.host), &conf);
    assert_eq!((del.status, del.stdout.as_str()), (0, ""), "{del:?}");
    assert_eq!(reserved(&data_dir), Vec::<String>::new(), "released");
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A change to a previous result.
type Edit = fn(&mut Value);

#[test]
fn check_passes_after_add_and_fails_like_the_reference() {
    let (ours, reference) = (Pod::new(), Pod::new());
    let conf = with_static_ipam(Some("1.0.0"));
    let a = ours.ours("ADD", &conf).ok_json();
    let b = reference.reference("ADD", &conf).ok_json();
    let with_prev = |prev: &Value, edit: &dyn Fn(&mut Value)| {
        let mut c: Value = serde_json::from_str(&conf).unwrap();
        let mut prev = prev.clone();
        edit(&mut prev);
        c["prevResult"] = prev;
        c.to_string()
    };
    let same = |_: &mut Value| {};
    let ok = ours.ours("CHECK", &with_prev(&a, &same));
    assert_eq!((ok.status, ok.stdout.as_str()), (0, ""), "{ok:?}");
    // The reference fails CHECK on its own result: `10.10.0.0/16` has no `gw` there but was
    // installed through the address's gateway, and it looks for a route without one
    // (documented, not copied). With the gateway spelled out, both pass.
    let (code, msg) = reference.reference("CHECK", &with_prev(&b, &same)).err();
    assert_eq!(code, 999);
    assert!(
        msg.starts_with("Expected Route {Dst:{IP:10.10.0.0 Mask:ffff0000} GW:"),
        "{msg}"
    );
    let explicit_gw = |p: &mut Value| p["routes"][0]["gw"] = "10.9.0.1".into();
    let ok = ours.ours("CHECK", &with_prev(&a, &explicit_gw));
    assert_eq!((ok.status, ok.stdout.as_str()), (0, ""), "{ok:?}");
    let ok = reference.reference("CHECK", &with_prev(&b, &explicit_gw));
    assert_eq!((ok.status, ok.stdout.as_str()), (0, ""), "{ok:?}");

    let cases: [(&str, Edit); 3] = [
        (
            "Interface eth0 Mac 02:00:00:00:00:01 doesn't match container Mac: 02:42:ac:11:00:07",
            |p| p["interfaces"][0]["mac"] = "02:00:00:00:00:01".into(),
        ),
        ("Failed to match addr 10.9.0.6/24 on interface eth0", |p| {
            p["ips"][0]["address"] = "10.9.0.6/24".into()
        }),
        (
            "Sandbox in prevResult  doesn't match configured netns: NETNS",
            |p| p["interfaces"][0]["name"] = "eth1".into(),
        ),
    ];
    for (msg, edit) in &cases {
        let e = ours.ours("CHECK", &with_prev(&a, edit)).err();
        let r = reference.reference("CHECK", &with_prev(&b, edit)).err();
        let e = (e.0, e.1.replace(&ours.cont.path(), "NETNS"));
        assert_eq!(e, (r.0, r.1.replace(&reference.cont.path(), "NETNS")));
        assert_eq!(e, (999, msg.to_string()));
    }

    // A route the container lacks (the reference words it with Go's struct dump).
    let missing_route = |p: &mut Value| p["routes"][0]["dst"] = "10.12.0.0/16".into();
    let (code, msg) = ours.ours("CHECK", &with_prev(&a, &missing_route)).err();
    assert_eq!(
        (code, msg.as_str()),
        (
            999,
            "Expected Route 10.12.0.0/16 via 10.9.0.1 not found in routing table"
        )
    );
    let (code, msg) = reference
        .reference("CHECK", &with_prev(&b, &missing_route))
        .err();
    assert!(
        code == 999
            && msg.starts_with("Expected Route")
            && msg.ends_with("not found in routing table"),
        "{msg}"
    );

    let mut no_prev: Value = serde_json::from_str(&conf).unwrap();
    no_prev.as_object_mut().unwrap().remove("prevResult");
    let e = ours.ours("CHECK", &no_prev.to_string()).err();
    assert_eq!(e, reference.reference("CHECK", &no_prev.to_string()).err());
    assert_eq!(e, (999, "Required prevResult missing".to_string()));

    ours.ours("DEL", &conf).ok_json_or_empty();
    reference.reference("DEL", &conf).ok_json_or_empty();
    let e = ours.ours("CHECK", &with_prev(&a, &same)).err();
    let r = reference.reference("CHECK", &with_prev(&b, &same)).err();
    assert_eq!(e, r);
    assert_eq!(
        e,
        (
            999,
            "Container Interface name in prevResult: eth0 not found".to_string()
        )
    );
}

/// `ok_json` for verbs whose success prints nothing.
trait OkEmpty {
    fn ok_json_or_empty(&self);
}

impl OkEmpty for Exec {
    fn ok_json_or_empty(&self) {
        assert_eq!((self.status, self.stdout.as_str()), (0, ""), "{self:?}");
    }
}
