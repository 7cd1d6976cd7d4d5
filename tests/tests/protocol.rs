//! The CNI protocol as the host speaks it, exec'd like a runtime would, and compared with the
//! reference loopback where the reference defines the behaviour.

use wasm_cni_tests::{conf, Cni, Netns};

#[test]
fn version_lists_every_version_up_to_1_1_0() {
    let out = Cni::new("VERSION", "").ours("loopback", "");
    let v = out.ok_json();
    assert_eq!(v["cniVersion"], "1.1.0");
    let versions: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    );
}

#[test]
fn about_text_when_command_is_unset() {
    let out = Cni::new("", "").unset("CNI_COMMAND").ours("loopback", "");
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("CNI loopback plugin"), "{out:?}");
    assert!(out.stderr.contains("1.1.0"), "{out:?}");
}

/// Same code and message as the reference for the errors skel produces.
fn same_error_as_reference(cni: &Cni, stdin: &str) -> (u64, String) {
    let ours = cni.ours("loopback", stdin).err();
    let reference = cni.reference("loopback", stdin).err();
    assert_eq!(ours, reference, "ours vs reference");
    ours
}

#[test]
fn missing_env_variables_are_reported_together() {
    let cni = Cni::new("ADD", "").unset("CNI_IFNAME");
    let (code, msg) = same_error_as_reference(&cni, &conf(Some("1.0.0"), "loopback"));
    assert_eq!(
        (code, msg.as_str()),
        (4, "required env variables [CNI_NETNS,CNI_IFNAME] missing")
    );
}

#[test]
fn malformed_json_is_a_decoding_error() {
    let ns = Netns::new();
    let ours = Cni::new("ADD", &ns.path()).ours("loopback", "{\"cniVersion\": ");
    let reference = Cni::new("ADD", &ns.path()).reference("loopback", "{\"cniVersion\": ");
    assert_eq!(ours.err().0, 6);
    assert_eq!(reference.err().0, 6);
    assert!(
        ours.err()
            .1
            .starts_with("error unmarshall network config: "),
        "{ours:?}"
    );
}

#[test]
fn interface_name_too_long() {
    let ns = Netns::new();
    let cni = Cni::new("ADD", &ns.path()).set("CNI_IFNAME", "a-very-long-ifname");
    let (code, msg) = same_error_as_reference(&cni, &conf(Some("1.0.0"), "loopback"));
    assert_eq!((code, msg.as_str()), (4, "interface name is too long"));
}

#[test]
fn interface_name_with_slash_or_dots() {
    let ns = Netns::new();
    for bad in ["a/b", "..", "a b"] {
        let cni = Cni::new("ADD", &ns.path()).set("CNI_IFNAME", bad);
        let (code, _) = same_error_as_reference(&cni, &conf(Some("1.0.0"), "loopback"));
        assert_eq!(code, 4, "{bad}");
    }
}

#[test]
fn invalid_container_id() {
    let ns = Netns::new();
    let cni = Cni::new("ADD", &ns.path()).set("CNI_CONTAINERID", "/etc/passwd");
    let (code, msg) = same_error_as_reference(&cni, &conf(Some("1.0.0"), "loopback"));
    assert_eq!(
        (code, msg.as_str()),
        (4, "invalid characters in containerID")
    );
}

#[test]
fn unsupported_version() {
    let ns = Netns::new();
    let cni = Cni::new("ADD", &ns.path());
    let (code, msg) = same_error_as_reference(&cni, &conf(Some("9.9.9"), "loopback"));
    assert_eq!((code, msg.as_str()), (1, "incompatible CNI versions"));
}

#[test]
fn check_needs_0_4_0() {
    let ns = Netns::new();
    let cni = Cni::new("CHECK", &ns.path());
    let (code, msg) = same_error_as_reference(&cni, &conf(Some("0.3.1"), "loopback"));
    assert_eq!(
        (code, msg.as_str()),
        (1, "config version does not allow CHECK")
    );
}

#[test]
fn unknown_command() {
    let ns = Netns::new();
    let cni = Cni::new("FROB", &ns.path());
    let (code, msg) = same_error_as_reference(&cni, &conf(Some("1.0.0"), "loopback"));
    assert_eq!((code, msg.as_str()), (4, "unknown CNI_COMMAND: FROB"));
}

#[test]
fn status_and_gc_need_1_1_0_and_work_with_it() {
    for verb in ["STATUS", "GC"] {
        let cni = Cni::new(verb, "")
            .unset("CNI_CONTAINERID")
            .unset("CNI_IFNAME");
        let (code, msg) = cni.ours("loopback", &conf(Some("1.0.0"), "loopback")).err();
        assert_eq!(
            (code, msg),
            (1, format!("config version does not allow {verb}"))
        );
        let out = cni.ours("loopback", &conf(Some("1.1.0"), "loopback"));
        assert_eq!(out.status, 0, "{verb}: {out:?}");
        assert!(out.stdout.is_empty(), "{verb}: {out:?}");
    }
}

#[test]
fn eight_mib_of_stdin_is_refused_cleanly() {
    let ns = Netns::new();
    let mut big = br#"{"cniVersion":"1.0.0","name":"n","type":"loopback","pad":""#.to_vec();
    big.resize(8 << 20, b'x');
    big.extend_from_slice(b"\"}");
    let out = Cni::new("ADD", &ns.path()).run_bytes(&wasm_cni_tests::bin_dir(), "loopback", &big);
    let (code, msg) = out.err();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("larger than"), "{msg}");
    // Nothing happened in the namespace.
    assert!(!ns.link_state("lo").0, "lo must still be down");
}

#[test]
fn add_into_a_missing_netns_fails_and_names_it() {
    let cni = Cni::new("ADD", "/var/run/netns/wcni-t-does-not-exist");
    let (code, msg) = cni.ours("loopback", &conf(Some("1.0.0"), "loopback")).err();
    assert_eq!(code, 999);
    assert!(msg.contains("wcni-t-does-not-exist"), "{msg}");
    // The reference fails the same way (code 999).
    assert_eq!(
        cni.reference("loopback", &conf(Some("1.0.0"), "loopback"))
            .err()
            .0,
        999
    );
}

#[test]
fn a_file_that_is_not_a_netns_is_refused() {
    let cni = Cni::new("ADD", "/etc/hostname");
    let (code, msg) = cni.ours("loopback", &conf(Some("1.0.0"), "loopback")).err();
    assert_eq!(code, 999);
    assert!(msg.contains("not a network namespace"), "{msg}");
}

/// The reference accepts its own netns as CNI_NETNS and changes the host's `lo` (its check
/// runs after the change, with a broken condition); we refuse before touching anything.
#[test]
fn the_plugins_own_netns_is_refused() {
    let cni = Cni::new("ADD", "/proc/self/ns/net");
    let (code, msg) = cni.ours("loopback", &conf(Some("1.0.0"), "loopback")).err();
    assert_eq!(code, 4);
    assert_eq!(
        msg,
        "plugin's netns and netns from CNI_NETNS should not be the same"
    );
}

#[test]
fn errors_carry_the_config_version() {
    let cni = Cni::new("ADD", "/var/run/netns/wcni-t-does-not-exist");
    let out = cni.ours("loopback", &conf(Some("0.4.0"), "loopback"));
    assert_eq!(out.json()["cniVersion"], "0.4.0");
}
