//! host-local, exec'd as a runtime execs it: differential tests against the Debian reference
//! (results, errors and the files of the store, on the same input), sharing one store with the
//! reference in both directions, and what the reference lacks (GC, STATUS).
//!
//! Every test works in its own data dir under /tmp, removed on drop (also when it panics).
//! host-local needs no netns for its own work, but ADD and CHECK require CNI_NETNS, so each
//! test creates a throwaway one.
//!
//! Where the reference breaks the spec, ours follows the spec:
//! - its error JSON carries no `cniVersion` (the spec asks for it): only code and msg are
//!   compared;
//! - it writes reservation files with mode 0644 (ours 0600, as upstream since v1.4): names and
//!   contents are compared, not modes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_cni_tests::{Cni, Exec, Netns, SHARED_VERSIONS};

const NET: &str = "hl-testnet";
const PLUGIN: &str = "host-local";

/// A data dir of its own, removed on drop.
struct DataDir {
    path: PathBuf,
}

impl DataDir {
    fn new() -> DataDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = PathBuf::from(format!(
            "/tmp/wcni-hl-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        DataDir { path }
    }

    fn store(&self) -> PathBuf {
        self.path.join(NET)
    }

    /// Every file of the network's store: name → content.
    fn files(&self) -> BTreeMap<String, String> {
        std::fs::read_dir(self.store())
            .map(|entries| {
                entries
                    .map(|e| {
                        let e = e.unwrap();
                        let content = std::fs::read_to_string(e.path()).unwrap();
                        (e.file_name().to_string_lossy().into_owned(), content)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The reservations only: address → content.
    fn reservations(&self) -> BTreeMap<String, String> {
        self.files()
            .into_iter()
            .filter(|(name, _)| name.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// Write a reservation file as another tool (or an old reference version) would.
    fn put(&self, ip: &str, content: &str) {
        std::fs::create_dir_all(self.store()).unwrap();
        std::fs::write(self.store().join(ip), content).unwrap();
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A network config for `dir` (`ipam`: the members of the ipam object after type and dataDir).
fn config(version: Option<&str>, dir: &DataDir, ipam: &str) -> String {
    config_at(version, &dir.path, ipam)
}

fn config_at(version: Option<&str>, data_dir: &std::path::Path, ipam: &str) -> String {
    let version = version
        .map(|v| format!(r#""cniVersion":"{v}","#))
        .unwrap_or_default();
    let sep = if ipam.is_empty() { "" } else { "," };
    format!(
        r#"{{{version}"name":"{NET}","type":"host-local","ipam":{{"type":"host-local","dataDir":"{}"{sep}{ipam}}}}}"#,
        data_dir.display()
    )
}

/// A request for container `id` on eth0.
fn cni(command: &str, ns: &Netns, id: &str) -> Cni {
    Cni::new(command, &ns.path()).set("CNI_CONTAINERID", id)
}

fn ours(command: &str, ns: &Netns, id: &str, config: &str) -> Exec {
    cni(command, ns, id).ours(PLUGIN, config)
}

fn reference(command: &str, ns: &Netns, id: &str, config: &str) -> Exec {
    cni(command, ns, id).reference(PLUGIN, config)
}

/// The addresses of an ADD result (1.x/0.3+ shape).
fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("no ips: {result}"))
        .iter()
        .map(|ip| ip["address"].as_str().unwrap().to_string())
        .collect()
}

fn ok(exec: &Exec) {
    assert_eq!((exec.status, exec.stdout.as_str()), (0, ""), "{exec:?}");
}

const DUAL: &str = r#""ranges":[[{"subnet":"10.22.0.0/24"}],[{"subnet":"fd00:22::/64","rangeStart":"fd00:22::10"}]],
    "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.22.0.254"},{"dst":"::/0"}]"#;

#[test]
fn add_matches_the_reference_in_every_shared_version() {
    let ns = Netns::new();
    for version in SHARED_VERSIONS.iter().map(|v| Some(*v)).chain([None]) {
        let (o, r) = (DataDir::new(), DataDir::new());
        // Two containers: the second shows the round-robin cursor at work.
        for id in ["c1", "c2"] {
            let mine = ours("ADD", &ns, id, &config(version, &o, DUAL)).ok_json();
            let theirs = reference("ADD", &ns, id, &config(version, &r, DUAL)).ok_json();
            assert_eq!(mine, theirs, "cniVersion {version:?}");
        }
        assert_eq!(o.files(), r.files(), "store, cniVersion {version:?}");
    }
    // 1.1.0, which the reference does not speak: its 1.0.0 answer with the version changed.
    let (o, r) = (DataDir::new(), DataDir::new());
    for id in ["c1", "c2"] {
        let mine = ours("ADD", &ns, id, &config(Some("1.1.0"), &o, DUAL)).ok_json();
        let mut theirs = reference("ADD", &ns, id, &config(Some("1.0.0"), &r, DUAL)).ok_json();
        theirs["cniVersion"] = "1.1.0".into();
        assert_eq!(mine, theirs);
    }
    assert_eq!(o.files(), r.files(), "store, cniVersion 1.1.0");

    let o = DataDir::new();
    let result = ours("ADD", &ns, "c1", &config(Some("1.0.0"), &o, DUAL)).ok_json();
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.0.0",
            "ips": [
                {"address": "10.22.0.2/24", "gateway": "10.22.0.1"},
                {"address": "fd00:22::10/64", "gateway": "fd00:22::1"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.22.0.254"}, {"dst": "::/0"}],
            "dns": {}
        })
    );
    assert_eq!(
        o.files(),
        BTreeMap::from([
            ("10.22.0.2".into(), "c1\r\neth0".into()),
            ("fd00:22::10".into(), "c1\r\neth0".into()),
            ("last_reserved_ip.0".into(), "10.22.0.2".into()),
            ("last_reserved_ip.1".into(), "fd00:22::10".into()),
            ("lock".into(), String::new()),
        ])
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(o.store()), 0o755);
    assert_eq!(mode(o.store().join("10.22.0.2")), 0o600);
}

#[test]
fn add_in_1_1_0_keeps_the_route_attributes() {
    let (ns, o) = (Netns::new(), DataDir::new());
    let ipam = r#""subnet":"10.23.0.0/24","routes":[{"dst":"10.99.0.0/16","gw":"10.23.0.9","mtu":1400,"priority":5,"table":100,"scope":0}]"#;
    let result = ours("ADD", &ns, "c1", &config(Some("1.1.0"), &o, ipam)).ok_json();
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.1.0",
            "ips": [{"address": "10.23.0.2/24", "gateway": "10.23.0.1"}],
            "routes": [{"dst": "10.99.0.0/16", "gw": "10.23.0.9", "mtu": 1400, "priority": 5, "table": 100, "scope": 0}],
            "dns": {}
        })
    );
}

#[test]
fn duplicate_attachment_is_refused_like_the_reference() {
    let (ns, o, r) = (Netns::new(), DataDir::new(), DataDir::new());
    let (co, cr) = (
        config(Some("1.0.0"), &o, DUAL),
        config(Some("1.0.0"), &r, DUAL),
    );
    ours("ADD", &ns, "c1", &co).ok_json();
    reference("ADD", &ns, "c1", &cr).ok_json();
    let mine = ours("ADD", &ns, "c1", &co).err();
    assert_eq!(mine, reference("ADD", &ns, "c1", &cr).err());
    assert_eq!(
        mine,
        (
            999,
            "failed to allocate for range 0: 10.22.0.2 has been allocated to c1, duplicate allocation is not allowed".into()
        )
    );
    // Another interface of the same container is another attachment.
    let second = cni("ADD", &ns, "c1").set("CNI_IFNAME", "net1");
    let mine = second.ours(PLUGIN, &co).ok_json();
    assert_eq!(mine, second.reference(PLUGIN, &cr).ok_json());
    assert_eq!(addresses(&mine), ["10.22.0.3/24", "fd00:22::11/64"]);
    assert_eq!(o.files(), r.files());
}

#[test]
fn round_robin_and_exhaustion_match_the_reference() {
    let (ns, o, r) = (Netns::new(), DataDir::new(), DataDir::new());
    // Two ranges in one set, the second with its own gateway inside the allocatable span.
    let ipam = r#""ranges":[[{"subnet":"10.24.0.0/29","rangeStart":"10.24.0.4"},{"subnet":"10.24.1.0/30","gateway":"10.24.1.2"}]]"#;
    let (co, cr) = (
        config(Some("0.4.0"), &o, ipam),
        config(Some("0.4.0"), &r, ipam),
    );
    let mut seen = Vec::new();
    for (i, step) in ["a", "b", "c", "-b", "d", "e"].iter().enumerate() {
        let (mine, theirs) = match step.strip_prefix('-') {
            Some(id) => (ours("DEL", &ns, id, &co), reference("DEL", &ns, id, &cr)),
            None => (
                ours("ADD", &ns, step, &co),
                reference("ADD", &ns, step, &cr),
            ),
        };
        assert_eq!(
            (mine.status, theirs.status),
            (0, 0),
            "step {i}: {mine:?} {theirs:?}"
        );
        if !step.starts_with('-') {
            assert_eq!(mine.json(), theirs.json(), "step {i}");
            seen.extend(addresses(&mine.json()));
        }
        assert_eq!(o.files(), r.files(), "step {i}");
    }
    // .1 of the first subnet is not in the range, 10.24.1.2 is the second range's gateway; b's
    // address comes back only after the whole set has been walked.
    assert_eq!(
        seen,
        [
            "10.24.0.4/29",
            "10.24.0.5/29",
            "10.24.0.6/29",
            "10.24.1.1/30",
            "10.24.0.5/29"
        ]
    );
    let mine = ours("ADD", &ns, "g", &co).err();
    assert_eq!(mine, reference("ADD", &ns, "g", &cr).err());
    assert_eq!(
        mine,
        (
            999,
            "failed to allocate for range 0: no IP addresses available in range set: 10.24.0.4-10.24.0.6,10.24.1.1-10.24.1.2"
                .into()
        )
    );
    assert_eq!(o.files(), r.files());
}

#[test]
fn del_check_and_unknown_attachments_match_the_reference() {
    let (ns, o, r) = (Netns::new(), DataDir::new(), DataDir::new());
    let (co, cr) = (
        config(Some("1.0.0"), &o, DUAL),
        config(Some("1.0.0"), &r, DUAL),
    );
    ours("ADD", &ns, "c1", &co).ok_json();
    reference("ADD", &ns, "c1", &cr).ok_json();
    ok(&ours("CHECK", &ns, "c1", &co));
    ok(&reference("CHECK", &ns, "c1", &cr));
    let mine = ours("CHECK", &ns, "nobody", &co).err();
    assert_eq!(mine, reference("CHECK", &ns, "nobody", &cr).err());
    assert_eq!(
        mine,
        (
            999,
            "host-local: Failed to find address added by container nobody".into()
        )
    );

    for _ in 0..2 {
        ok(&ours("DEL", &ns, "c1", &co));
        ok(&reference("DEL", &ns, "c1", &cr));
        assert!(o.reservations().is_empty(), "{:?}", o.files());
        assert_eq!(o.files(), r.files());
    }
    // DEL of an attachment never seen, and without a netns (already gone): success.
    ok(&ours("DEL", &ns, "never-added", &co));
    ok(&reference("DEL", &ns, "never-added", &cr));
    let gone = Cni::new("DEL", "/var/run/netns/wcni-t-already-gone").set("CNI_CONTAINERID", "c1");
    ok(&gone.ours(PLUGIN, &co));
    ok(&Cni::new("DEL", "").ours(PLUGIN, &co));
    // And in a store that does not exist yet.
    let fresh = DataDir::new();
    ok(&ours(
        "DEL",
        &ns,
        "c1",
        &config(Some("1.0.0"), &fresh, DUAL),
    ));
}

#[test]
fn requested_addresses_match_the_reference() {
    let (ns, o, r) = (Netns::new(), DataDir::new(), DataDir::new());
    let v = Some("1.0.0");
    let ipam = r#""ranges":[[{"subnet":"10.25.0.0/24"}],[{"subnet":"fd00:25::/64"}]]"#;
    let (co, cr) = (config(v, &o, ipam), config(v, &r, ipam));
    let with = |conf: &str, extra: Value| {
        let mut c: Value = serde_json::from_str(conf).unwrap();
        for (k, val) in extra.as_object().unwrap() {
            c[k] = val.clone();
        }
        c.to_string()
    };
    let both_json = |req: Cni, co: &str, cr: &str| {
        let mine = req.ours(PLUGIN, co);
        let theirs = req.reference(PLUGIN, cr);
        assert_eq!(mine.status, theirs.status, "{mine:?} {theirs:?}");
        if mine.status == 0 {
            assert_eq!(mine.json(), theirs.json());
            addresses(&mine.json())
        } else {
            assert_eq!(mine.err(), theirs.err());
            vec![mine.err().1]
        }
    };

    // CNI_ARGS (an address, or a CIDR whose address is meant), args.cni.ips, runtimeConfig.ips.
    let got = both_json(
        cni("ADD", &ns, "a").set("CNI_ARGS", "IP=10.25.0.50"),
        &co,
        &cr,
    );
    assert_eq!(got, ["10.25.0.50/24", "fd00:25::2/64"]);
    let got = both_json(
        cni("ADD", &ns, "b").set(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.25.0.51/24",
        ),
        &co,
        &cr,
    );
    assert_eq!(got, ["10.25.0.51/24", "fd00:25::3/64"]);
    let args = json!({"args": {"cni": {"ips": ["fd00:25::99"]}}});
    let got = both_json(
        cni("ADD", &ns, "c"),
        &with(&co, args.clone()),
        &with(&cr, args),
    );
    assert_eq!(got, ["10.25.0.52/24", "fd00:25::99/64"]);
    let rc = json!({"runtimeConfig": {"ips": ["10.25.0.60", "fd00:25::60"]}});
    let got = both_json(cni("ADD", &ns, "d"), &with(&co, rc.clone()), &with(&cr, rc));
    assert_eq!(got, ["10.25.0.60/24", "fd00:25::60/64"]);
    assert_eq!(o.files(), r.files());

    // Failures roll back what the ADD reserved (the round-robin cursors move on, in both).
    let before = o.reservations();
    for (id, args, msg) in [
        ("e", "IP=10.25.0.50", "failed to allocate for range 0: requested IP address 10.25.0.50 is not available in range set 10.25.0.1-10.25.0.254"),
        ("f", "IP=10.25.0.1", "failed to allocate for range 0: requested ip 10.25.0.1 is subnet's gateway"),
        ("g", "IP=192.168.7.7", "failed to allocate all requested IPs: 192.168.7.7"),
        ("h", "IP=nonsense", "ARGS: error parsing value of pair \"IP=nonsense\": invalid IP address nonsense"),
        ("i", "K8S_POD_NAME=web;IP=10.25.0.70", "ARGS: unknown args [\"K8S_POD_NAME=web\"]"),
        ("j", "IgnoreUnknown=maybe", "ARGS: error parsing value of pair \"IgnoreUnknown=maybe\": boolean unmarshal error: invalid input maybe"),
    ] {
        assert_eq!(both_json(cni("ADD", &ns, id).set("CNI_ARGS", args), &co, &cr), [msg], "{args}");
        assert_eq!(o.reservations(), before, "{args}");
        assert_eq!(o.files(), r.files(), "{args}");
    }

    // Beyond the reference: CNI_ARGS IP may name one address per family (the reference cannot
    // parse the list).
    let dual = cni("ADD", &ns, "k").set("CNI_ARGS", "IP=10.25.0.80,fd00:25::80");
    assert_eq!(
        addresses(&dual.ours(PLUGIN, &co).ok_json()),
        ["10.25.0.80/24", "fd00:25::80/64"]
    );
    assert_eq!(dual.reference(PLUGIN, &cr).err().0, 999);
}

#[test]
fn config_errors_match_the_reference() {
    let (ns, o, r) = (Netns::new(), DataDir::new(), DataDir::new());
    let cases: &[(Option<&str>, &str, &str)] = &[
        (Some("1.0.0"), "", "no IP ranges specified"),
        (Some("1.0.0"), r#""subnet":"10.26.0.0/31""#, "invalid range set 0: Network 10.26.0.0/31 too small to allocate from"),
        (Some("1.0.0"), r#""subnet":"fd00:26::/127""#, "invalid range set 0: Network fd00:26::/127 too small to allocate from"),
        (
            Some("1.0.0"),
            r#""subnet":"10.26.0.7/24""#,
            "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.26.0.0",
        ),
        (Some("1.0.0"), r#""subnet":"10.26.0.0/24","rangeStart":"10.26.1.1""#, "invalid range set 0: RangeStart 10.26.1.1 not in network 10.26.0.0/24"),
        (Some("1.0.0"), r#""subnet":"10.26.0.0/24","rangeEnd":"10.26.1.5""#, "invalid range set 0: RangeEnd 10.26.1.5 not in network 10.26.0.0/24"),
        (
            Some("1.0.0"),
            r#""subnet":"10.26.0.0/24","rangeStart":"10.26.0.50","rangeEnd":"10.26.0.40""#,
            "invalid range set 0: RangeStart 10.26.0.50 not in network 10.26.0.0/24",
        ),
        (Some("1.0.0"), r#""ranges":[[]]"#, "invalid range set 0: empty range set"),
        (Some("1.0.0"), r#""ranges":[[{"subnet":"10.26.0.0/24"},{"subnet":"fd00::/64"}]]"#, "invalid range set 0: mixed address families"),
        (
            Some("1.0.0"),
            r#""ranges":[[{"subnet":"10.26.0.0/24"},{"subnet":"10.26.0.128/25"}]]"#,
            "invalid range set 0: subnets 10.26.0.1-10.26.0.254 and 10.26.0.129-10.26.0.254 overlap",
        ),
        (Some("1.0.0"), r#""ranges":[[{"subnet":"10.26.0.0/16"}],[{"subnet":"10.26.5.0/24"}]]"#, "range set 0 overlaps with 1"),
        (
            Some("0.2.0"),
            r#""ranges":[[{"subnet":"10.26.0.0/24"}],[{"subnet":"10.27.0.0/24"}]]"#,
            "CNI version 0.2.0 does not support more than 1 address per family",
        ),
        (Some("1.0.0"), r#""subnet":"10.26.0.0""#, "invalid CIDR address: 10.26.0.0"),
        (Some("1.0.0"), r#""subnet":"10.26.0.0/24","gateway":"x""#, "invalid IP address: x"),
    ];
    for (version, ipam, msg) in cases {
        let mine = ours("ADD", &ns, "c1", &config(*version, &o, ipam)).err();
        let theirs = reference("ADD", &ns, "c1", &config(*version, &r, ipam)).err();
        assert_eq!(mine, theirs, "{ipam}");
        assert_eq!(mine, (999, msg.to_string()), "{ipam}");
    }
    let no_ipam = format!(r#"{{"cniVersion":"1.0.0","name":"{NET}","type":"host-local"}}"#);
    let mine = ours("ADD", &ns, "c1", &no_ipam).err();
    assert_eq!(mine, reference("ADD", &ns, "c1", &no_ipam).err());
    assert_eq!(mine, (999, "IPAM config missing 'ipam' key".into()));
    assert!(o.reservations().is_empty() && r.reservations().is_empty());
}

#[test]
fn store_is_shared_with_the_reference_both_ways() {
    let (ns, d) = (Netns::new(), DataDir::new());
    let conf = config(Some("1.0.0"), &d, r#""subnet":"10.28.0.0/24""#);
    let add = |who: &str, id: &str| {
        let exec = if who == "ours" {
            ours("ADD", &ns, id, &conf)
        } else {
            reference("ADD", &ns, id, &conf)
        };
        addresses(&exec.ok_json())[0].clone()
    };

    // The reference reserves; ours continues its round-robin, refuses its attachment a second
    // time and releases what it reserved.
    assert_eq!(add("reference", "r1"), "10.28.0.2/24");
    assert_eq!(add("reference", "r2"), "10.28.0.3/24");
    assert_eq!(add("ours", "o1"), "10.28.0.4/24");
    assert_eq!(
        ours("ADD", &ns, "r1", &conf).err().1,
        "failed to allocate for range 0: 10.28.0.2 has been allocated to r1, duplicate allocation is not allowed"
    );
    ok(&ours("DEL", &ns, "r2", &conf));
    ok(&ours("CHECK", &ns, "r1", &conf));

    // And the other way round.
    assert_eq!(add("reference", "r3"), "10.28.0.5/24");
    assert_eq!(
        reference("ADD", &ns, "o1", &conf).err().1,
        "failed to allocate for range 0: 10.28.0.4 has been allocated to o1, duplicate allocation is not allowed"
    );
    ok(&reference("DEL", &ns, "o1", &conf));
    ok(&reference("CHECK", &ns, "r1", &conf));
    assert_eq!(
        d.reservations(),
        BTreeMap::from([
            ("10.28.0.2".into(), "r1\r\neth0".into()),
            ("10.28.0.5".into(), "r3\r\neth0".into()),
        ])
    );
    assert_eq!(d.files()["last_reserved_ip.0"], "10.28.0.5");

    // Files of old reference versions hold the container id only: both treat them as the
    // container's, for duplicates, CHECK and DEL.
    d.put("10.28.0.77", "legacy-id");
    let dup = ours("ADD", &ns, "legacy-id", &conf).err();
    assert_eq!(dup, reference("ADD", &ns, "legacy-id", &conf).err());
    assert!(
        dup.1.contains("10.28.0.77 has been allocated to legacy-id"),
        "{dup:?}"
    );
    ok(&ours("CHECK", &ns, "legacy-id", &conf));
    ok(&ours("DEL", &ns, "legacy-id", &conf));
    assert!(!d.reservations().contains_key("10.28.0.77"));
}

/// The reference releases every address of the attachment when an ADD fails, also those of an
/// earlier, successful ADD (the container keeps using addresses the store no longer holds).
/// Ours releases only what the failed ADD reserved.
#[test]
fn a_failed_add_leaves_earlier_reservations_alone() {
    let (ns, o, r) = (Netns::new(), DataDir::new(), DataDir::new());
    let ipam = r#""ranges":[[{"subnet":"10.29.0.0/24"}],[{"subnet":"fd00:29::/64"}]]"#;
    let (co, cr) = (
        config(Some("1.0.0"), &o, ipam),
        config(Some("1.0.0"), &r, ipam),
    );
    ours("ADD", &ns, "c1", &co).ok_json();
    reference("ADD", &ns, "c1", &cr).ok_json();
    // A requested address skips the duplicate check of range set 0; range set 1 then refuses.
    let again = cni("ADD", &ns, "c1").set("CNI_ARGS", "IP=10.29.0.9");
    let (mine, theirs) = (
        again.ours(PLUGIN, &co).err(),
        again.reference(PLUGIN, &cr).err(),
    );
    assert_eq!(mine, theirs);
    assert!(
        mine.1.ends_with("duplicate allocation is not allowed"),
        "{mine:?}"
    );
    assert_eq!(
        o.reservations().len(),
        2,
        "ours keeps the first ADD's addresses"
    );
    assert_eq!(r.reservations().len(), 0, "the reference drops them");
}

#[test]
fn gc_releases_every_attachment_not_valid() {
    let (ns, d) = (Netns::new(), DataDir::new());
    let conf = config(Some("1.1.0"), &d, DUAL);
    for (id, ifname) in [("keep", "eth0"), ("keep", "net1"), ("drop", "eth0")] {
        cni("ADD", &ns, id)
            .set("CNI_IFNAME", ifname)
            .ours(PLUGIN, &conf)
            .ok_json();
    }
    // Written by the reference (1.0.0 config on the same store) and by an old version.
    reference("ADD", &ns, "ref-drop", &config(Some("1.0.0"), &d, DUAL)).ok_json();
    d.put("10.22.0.200", "legacy-keep");
    d.put("10.22.0.201", "legacy-drop");
    assert_eq!(d.reservations().len(), 10);

    let mut gc: Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": "keep", "ifname": "eth0"},
        {"containerID": "legacy-keep", "ifname": "eth0"},
        {"containerID": "not-there", "ifname": "eth0"},
    ]);
    let request = Cni::new("GC", "")
        .unset("CNI_CONTAINERID")
        .unset("CNI_IFNAME");
    ok(&request.ours(PLUGIN, &gc.to_string()));
    assert_eq!(
        d.reservations(),
        BTreeMap::from([
            ("10.22.0.2".into(), "keep\r\neth0".into()),
            ("10.22.0.200".into(), "legacy-keep".into()),
            ("fd00:22::10".into(), "keep\r\neth0".into()),
        ])
    );
    // The cursors stay: the next ADD continues the round-robin.
    let next = ours("ADD", &ns, "new", &conf).ok_json();
    assert_eq!(addresses(&next), ["10.22.0.6/24", "fd00:22::14/64"]);

    // Nothing valid: everything goes; GC on an empty store is fine too.
    gc["cni.dev/valid-attachments"] = json!([]);
    ok(&request.ours(PLUGIN, &gc.to_string()));
    assert!(d.reservations().is_empty(), "{:?}", d.files());
    ok(&request.ours(PLUGIN, &gc.to_string()));
}

#[test]
fn status_reports_whether_the_store_is_usable() {
    let d = DataDir::new();
    let request = Cni::new("STATUS", "")
        .unset("CNI_CONTAINERID")
        .unset("CNI_IFNAME");
    ok(&request.ours(PLUGIN, &config(Some("1.1.0"), &d, DUAL)));
    assert!(d.store().join("lock").exists());

    // A data dir below a regular file cannot be created.
    std::fs::write(d.path.join("file"), "").unwrap();
    let blocked = d.path.join("file").join("data");
    let (code, msg) = request
        .ours(PLUGIN, &config_at(Some("1.1.0"), &blocked, DUAL))
        .err();
    assert_eq!(code, 50, "{msg}");
    assert!(
        msg.contains("address store unavailable") && msg.contains("/file/data/"),
        "{msg}"
    );

    // STATUS needs 1.1.0, which the reference (CNI 1.0.0) does not speak.
    assert_eq!(
        request
            .ours(PLUGIN, &config(Some("1.0.0"), &d, DUAL))
            .err()
            .0,
        1
    );
}

/// A resolv.conf and a policy that grants `*.conf` in a data dir's directory.
struct ResolvConf {
    file: PathBuf,
    policy: PathBuf,
}

impl ResolvConf {
    fn new(d: &DataDir, text: &str) -> ResolvConf {
        std::fs::create_dir_all(&d.path).unwrap();
        let file = d.path.join("resolv.conf");
        std::fs::write(&file, text).unwrap();
        let policy = d.path.join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "[plugins.host-local]\nfiles = [\"{}/*.conf\"]\n",
                d.path.display()
            ),
        )
        .unwrap();
        ResolvConf { file, policy }
    }

    fn ipam(&self, subnet: &str, file: &std::path::Path) -> String {
        format!(r#""subnet":"{subnet}","resolvConf":"{}""#, file.display())
    }

    fn ours(&self, ns: &Netns, id: &str, config: &str) -> Exec {
        cni("ADD", ns, id)
            .set("WASM_CNI_POLICY", &self.policy.display().to_string())
            .ours(PLUGIN, config)
    }
}

const RESOLV_CONF: &str = "# generated by a test\n; another comment\n\nnameserver 10.32.0.53\n\
    nameserver fd00:32::53 ignored\n  domain first.example\ndomain example.com\n\
    search a.example b.example\nsearch c.example # trailing words stay\noptions ndots:2 edns0\n\
    options rotate\nsortlist 10.0.0.0/8\nnameserver\nbogus line here\n";

#[test]
fn resolv_conf_is_read_through_the_files_capability_like_the_reference() {
    let (ns, o, r) = (Netns::new(), DataDir::new(), DataDir::new());
    let rc = ResolvConf::new(&o, RESOLV_CONF);
    let ipam = rc.ipam("10.32.0.0/24", &rc.file);
    for version in SHARED_VERSIONS {
        let id = format!("c-{version}");
        let mine = rc
            .ours(&ns, &id, &config(Some(version), &o, &ipam))
            .ok_json();
        let theirs = reference("ADD", &ns, &id, &config(Some(version), &r, &ipam)).ok_json();
        assert_eq!(mine, theirs, "cniVersion {version}");
    }
    let mine = rc
        .ours(&ns, "c-last", &config(Some("1.0.0"), &o, &ipam))
        .ok_json();
    assert_eq!(
        mine["dns"],
        json!({
            "nameservers": ["10.32.0.53", "fd00:32::53"],
            "domain": "example.com",
            "search": ["a.example", "b.example", "c.example", "#", "trailing", "words", "stay"],
            "options": ["ndots:2", "edns0", "rotate"]
        })
    );
    assert_eq!(o.reservations().len(), r.reservations().len() + 1);
}

#[test]
fn resolv_conf_without_a_grant_is_denied_naming_the_path_and_the_policy_key() {
    let (ns, d) = (Netns::new(), DataDir::new());
    let rc = ResolvConf::new(&d, RESOLV_CONF);
    let conf = config(Some("1.0.0"), &d, &rc.ipam("10.30.0.0/24", &rc.file));
    // No policy file: a plugin reads no file at all.
    let out = ours("ADD", &ns, "c1", &conf);
    let (code, msg) = out.err();
    assert_eq!(code, 100, "{msg}");
    let path = rc.file.display().to_string();
    assert!(
        msg.contains("ipam.resolvConf") && msg.contains(&path) && msg.contains("`files`"),
        "{msg}"
    );
    assert!(
        out.stderr.contains(r#""op":"file-read""#) && out.stderr.contains(r#""outcome":"denied""#),
        "the denial is audited: {}",
        out.stderr
    );
    assert!(d.reservations().is_empty(), "nothing is allocated");
    // A granted file that does not exist is an I/O error naming it.
    let missing = d.path.join("missing.conf");
    let (code, msg) = rc
        .ours(
            &ns,
            "c1",
            &config(Some("1.0.0"), &d, &rc.ipam("10.30.0.0/24", &missing)),
        )
        .err();
    assert_eq!(code, 5, "{msg}");
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(d.reservations().is_empty());
    // The grant makes the same config work.
    let result = rc.ours(&ns, "c1", &conf).ok_json();
    assert_eq!(result["dns"]["domain"], "example.com");
}

#[test]
fn a_symlink_from_a_granted_path_to_another_file_is_denied() {
    let (ns, d) = (Netns::new(), DataDir::new());
    let rc = ResolvConf::new(&d, RESOLV_CONF);
    let secret = d.path.join("secret");
    std::fs::write(&secret, "nameserver 6.6.6.6\n").unwrap();
    let link = d.path.join("evil.conf");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let out = rc.ours(
        &ns,
        "c1",
        &config(Some("1.0.0"), &d, &rc.ipam("10.33.0.0/24", &link)),
    );
    let (code, msg) = out.err();
    assert_eq!(code, 100, "{msg}");
    assert!(
        msg.contains(&link.display().to_string())
            && msg.contains("resolves to")
            && msg.contains(&secret.display().to_string()),
        "{msg}"
    );
    assert!(!out.stdout.contains("6.6.6.6"));
    assert!(
        out.stderr.contains(r#""outcome":"denied""#),
        "{}",
        out.stderr
    );
    assert!(d.reservations().is_empty());
}

/// 32 ADDs at once, each its own process, on one network: all succeed with distinct addresses.
#[test]
fn parallel_adds_get_distinct_addresses() {
    let (ns, d) = (Netns::new(), DataDir::new());
    let conf = config(Some("1.0.0"), &d, r#""subnet":"10.31.0.0/24""#);
    let started = Instant::now();
    let results = parallel(32, |i| ours("ADD", &ns, &format!("par-{i}"), &conf));
    let elapsed = started.elapsed();
    let mut seen = BTreeSet::new();
    for (i, exec) in results.iter().enumerate() {
        let ip = addresses(&exec.ok_json()).remove(0);
        assert!(seen.insert(ip.clone()), "{ip} handed out twice");
        let file = ip.split('/').next().unwrap().to_string();
        assert_eq!(d.reservations()[&file], format!("par-{i}\r\neth0"));
    }
    assert_eq!(d.reservations().len(), 32);

    // The same with the reference, on a store of its own, for comparison: the same 32
    // addresses (which container gets which depends on the scheduling).
    let r = DataDir::new();
    let conf = config(Some("1.0.0"), &r, r#""subnet":"10.31.0.0/24""#);
    let started = Instant::now();
    let results = parallel(32, |i| reference("ADD", &ns, &format!("par-{i}"), &conf));
    let reference_elapsed = started.elapsed();
    assert!(results.iter().all(|e| e.status == 0), "{results:?}");
    let keys = |d: &DataDir| d.reservations().into_keys().collect::<Vec<_>>();
    assert_eq!(keys(&r), keys(&d));
    eprintln!(
        "32 parallel ADDs: ours {:.0} ms, reference {:.0} ms",
        elapsed.as_secs_f64() * 1000.0,
        reference_elapsed.as_secs_f64() * 1000.0
    );
}

/// Ours and the reference at once on the same store: the flock keeps them apart.
#[test]
fn parallel_adds_mixed_with_the_reference_share_the_lock() {
    let (ns, d) = (Netns::new(), DataDir::new());
    let conf = config(Some("1.0.0"), &d, r#""subnet":"10.32.0.0/24""#);
    let results = parallel(32, |i| {
        let id = format!("mix-{i}");
        if i % 2 == 0 {
            ours("ADD", &ns, &id, &conf)
        } else {
            reference("ADD", &ns, &id, &conf)
        }
    });
    let ips: BTreeSet<String> = results
        .iter()
        .map(|e| addresses(&e.ok_json()).remove(0))
        .collect();
    assert_eq!(ips.len(), 32);
    assert_eq!(d.reservations().len(), 32);
    // And all of them released at once.
    for exec in parallel(32, |i| {
        let id = format!("mix-{i}");
        if i % 2 == 1 {
            ours("DEL", &ns, &id, &conf)
        } else {
            reference("DEL", &ns, &id, &conf)
        }
    }) {
        assert_eq!(exec.status, 0, "{exec:?}");
    }
    assert!(d.reservations().is_empty(), "{:?}", d.files());
}

/// Run `n` execs at once, one thread each; results in index order.
fn parallel(n: usize, run: impl Fn(usize) -> Exec + Sync) -> Vec<Exec> {
    std::thread::scope(|s| {
        let run = &run;
        let handles: Vec<_> = (0..n).map(|i| s.spawn(move || run(i))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// One ADD+DEL cycle exec'd side by side, for the report (no bound asserted: machines differ).
#[test]
fn single_add_time_side_by_side() {
    let (ns, o, r) = (Netns::new(), DataDir::new(), DataDir::new());
    let (co, cr) = (
        config(Some("1.0.0"), &o, DUAL),
        config(Some("1.0.0"), &r, DUAL),
    );
    let time = |f: &dyn Fn() -> Exec| {
        let t = Instant::now();
        let exec = f();
        assert_eq!(exec.status, 0, "{exec:?}");
        t.elapsed()
    };
    let (mut mine, mut theirs): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for i in 0..15 {
        let id = format!("t{i}");
        mine.push(time(&|| ours("ADD", &ns, &id, &co)));
        theirs.push(time(&|| reference("ADD", &ns, &id, &cr)));
        time(&|| ours("DEL", &ns, &id, &co));
        time(&|| reference("DEL", &ns, &id, &cr));
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    eprintln!(
        "single ADD exec, median of 15: ours {:.1} ms, reference {:.1} ms",
        median(&mut mine),
        median(&mut theirs)
    );
    assert_eq!(o.files(), r.files());
}
