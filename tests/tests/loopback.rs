//! Differential tests of the loopback plugin: ours and the Debian reference on the same
//! input, in separate throwaway namespaces; results and kernel state must agree.

use serde_json::Value;
use wasm_cni_tests::{conf, Cni, Netns, SHARED_VERSIONS};

/// The result with the netns path (which differs between the two namespaces) blanked.
fn normalized(v: Value, ns: &Netns) -> Value {
    serde_json::from_str(&v.to_string().replace(&ns.path(), "NETNS")).unwrap()
}

/// Where the reference breaks the spec, bring its output to the spec's shape so the rest can
/// be compared with ours (which must have the spec's shape):
/// - 0.3.x/0.4.0 require `"version": "4"|"6"` on every ip; the reference loopback prints its
///   1.0-shaped result without it.
/// - 0.1.0/0.2.0 results are `ip4`/`ip6` objects without interfaces; the reference loopback
///   prints a 1.0-shaped result when 0.1.0/0.2.0 is explicit (and converts correctly only when
///   cniVersion is absent).
fn reference_as_spec(mut reference: Value, version: Option<&str>) -> Value {
    let family = |ip: &Value| {
        if ip["address"].as_str().unwrap().contains(':') {
            "6"
        } else {
            "4"
        }
    };
    match version {
        Some("0.3.0" | "0.3.1" | "0.4.0") => {
            for ip in reference["ips"].as_array_mut().unwrap() {
                ip["version"] = family(ip).into();
            }
            reference
        }
        Some("0.1.0" | "0.2.0") => {
            let mut spec = serde_json::json!({"cniVersion": reference["cniVersion"]});
            for ip in reference["ips"].as_array().unwrap() {
                let key = format!("ip{}", family(ip));
                if spec.get(&key).is_none() {
                    spec[key] = serde_json::json!({"ip": ip["address"]});
                }
            }
            spec["dns"] = reference["dns"].clone();
            spec
        }
        _ => reference,
    }
}

#[test]
fn add_matches_the_reference_in_every_shared_version() {
    for version in SHARED_VERSIONS.iter().map(|v| Some(*v)).chain([None]) {
        let (ours_ns, ref_ns) = (Netns::new(), Netns::new());
        let config = conf(version, "loopback");
        let ours = Cni::new("ADD", &ours_ns.path())
            .ours("loopback", &config)
            .ok_json();
        let reference = Cni::new("ADD", &ref_ns.path())
            .reference("loopback", &config)
            .ok_json();
        let reference = reference_as_spec(normalized(reference, &ref_ns), version);
        assert_eq!(
            normalized(ours, &ours_ns),
            reference,
            "cniVersion {version:?}"
        );
        let state = ours_ns.link_state("lo");
        assert_eq!(
            state,
            ref_ns.link_state("lo"),
            "kernel state, cniVersion {version:?}"
        );
        assert!(state.0, "lo is up");
        assert!(state.1.contains(&"127.0.0.1/8".to_string()), "{state:?}");
    }
}

#[test]
fn add_in_1_1_0_reports_lo_and_its_addresses() {
    let ns = Netns::new();
    assert!(!ns.link_state("lo").0, "a new netns starts with lo down");
    let result = Cni::new("ADD", &ns.path())
        .ours("loopback", &conf(Some("1.1.0"), "loopback"))
        .ok_json();
    assert_eq!(result["cniVersion"], "1.1.0");
    assert_eq!(result["interfaces"][0]["name"], "lo");
    assert_eq!(result["interfaces"][0]["mac"], "00:00:00:00:00:00");
    assert_eq!(result["interfaces"][0]["sandbox"], ns.path());
    assert_eq!(result["ips"][0]["address"], "127.0.0.1/8");
    assert_eq!(result["ips"][0]["interface"], 0);
    assert_eq!(result["ips"][1]["address"], "::1/128");
    assert_eq!(
        ns.link_state("lo"),
        (true, vec!["127.0.0.1/8".to_string(), "::1/128".to_string()])
    );
}

#[test]
fn del_brings_lo_down_like_the_reference_and_is_idempotent() {
    let (ours_ns, ref_ns) = (Netns::new(), Netns::new());
    let config = conf(Some("1.0.0"), "loopback");
    Cni::new("ADD", &ours_ns.path())
        .ours("loopback", &config)
        .ok_json();
    Cni::new("ADD", &ref_ns.path())
        .reference("loopback", &config)
        .ok_json();
    for _ in 0..2 {
        let ours = Cni::new("DEL", &ours_ns.path()).ours("loopback", &config);
        let reference = Cni::new("DEL", &ref_ns.path()).reference("loopback", &config);
        assert_eq!((ours.status, ours.stdout.as_str()), (0, ""), "{ours:?}");
        assert_eq!(reference.status, 0, "{reference:?}");
        assert_eq!(ours_ns.link_state("lo"), ref_ns.link_state("lo"));
        assert!(!ours_ns.link_state("lo").0, "lo is down after DEL");
    }
}

#[test]
fn del_without_a_netns_succeeds() {
    let config = conf(Some("1.0.0"), "loopback");
    let gone = Cni::new("DEL", "/var/run/netns/wcni-t-already-gone");
    assert_eq!(gone.ours("loopback", &config).status, 0);
    assert_eq!(gone.reference("loopback", &config).status, 0);
    let none = Cni::new("DEL", "");
    assert_eq!(none.ours("loopback", &config).status, 0);
    assert_eq!(none.reference("loopback", &config).status, 0);
}

#[test]
fn check_passes_after_add_and_fails_when_lo_is_down() {
    let (ours_ns, ref_ns) = (Netns::new(), Netns::new());
    let config = conf(Some("1.0.0"), "loopback");
    let result = Cni::new("ADD", &ours_ns.path())
        .ours("loopback", &config)
        .ok_json();
    Cni::new("ADD", &ref_ns.path())
        .reference("loopback", &config)
        .ok_json();
    let with_prev = |ns: &Netns| {
        let mut c: Value = serde_json::from_str(&config).unwrap();
        c["prevResult"] =
            serde_json::from_str(&result.to_string().replace(&ours_ns.path(), &ns.path())).unwrap();
        c.to_string()
    };
    let ours = Cni::new("CHECK", &ours_ns.path()).ours("loopback", &with_prev(&ours_ns));
    assert_eq!((ours.status, ours.stdout.as_str()), (0, ""), "{ours:?}");
    ours_ns.ip(&["link", "set", "lo", "down"]);
    ref_ns.ip(&["link", "set", "lo", "down"]);
    let ours = Cni::new("CHECK", &ours_ns.path())
        .ours("loopback", &with_prev(&ours_ns))
        .err();
    let reference = Cni::new("CHECK", &ref_ns.path())
        .reference("loopback", &with_prev(&ref_ns))
        .err();
    assert_eq!(ours, reference);
    assert_eq!(ours.1, "loopback interface is down");
}

/// A spec-valid prevResult comes back unchanged from both. (Given a 0.4.0 prevResult whose
/// ips lack `version`, the reference echoes `"version": ""`, which the spec does not allow;
/// ours fills in the family.)
#[test]
fn prev_result_is_passed_through_like_the_reference() {
    for version in ["0.4.0", "1.0.0"] {
        let ip_version = if version == "0.4.0" {
            r#""version":"4","#
        } else {
            ""
        };
        let prev = format!(
            r#"{{"cniVersion":"{version}","interfaces":[{{"name":"eth0","mac":"0a:58:0a:00:00:05","sandbox":"/x"}}],
            "ips":[{{{ip_version}"address":"10.0.0.5/24","gateway":"10.0.0.1","interface":0}}],
            "routes":[{{"dst":"0.0.0.0/0","gw":"10.0.0.1"}}],"dns":{{"nameservers":["10.0.0.53"]}}}}"#
        );
        let config = format!(
            r#"{{"cniVersion":"{version}","name":"testnet","type":"loopback","prevResult":{prev}}}"#
        );
        let (ours_ns, ref_ns) = (Netns::new(), Netns::new());
        let ours = Cni::new("ADD", &ours_ns.path())
            .ours("loopback", &config)
            .ok_json();
        let reference = Cni::new("ADD", &ref_ns.path())
            .reference("loopback", &config)
            .ok_json();
        assert_eq!(ours, reference, "cniVersion {version}");
        assert_eq!(ours["ips"][0]["address"], "10.0.0.5/24");
        assert!(ours_ns.link_state("lo").0);
    }
}
