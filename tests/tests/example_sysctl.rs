//! The example plugin (examples/sysctl-tuning), installed into a scratch dir beside our
//! loopback and run as the second plugin of a chain in a throwaway netns.

use std::process::Command;

use serde_json::Value;
use wasm_cni_tests::{Cni, Netns, ScratchInstall};

const TYPE: &str = "sysctl-tuning";

/// Install the example under its type name: `sysctl-tuning.wasm`, its artifact and the link.
fn install(scratch: &ScratchInstall) {
    scratch.add_guest_as("sysctl_tuning", TYPE);
}

fn sysctl(ns: &Netns, key: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sysctl", "-n", key])
        .output()
        .expect("running sysctl");
    assert!(out.status.success(), "sysctl -n {key}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn tuning_conf(sysctl: &str, prev: &Value) -> String {
    format!(
        r#"{{"cniVersion":"1.1.0","name":"testnet","type":"{TYPE}","sysctl":{sysctl},"prevResult":{prev}}}"#
    )
}

const SYSCTLS: &str = r#"{"net.ipv4.conf.eth0.rp_filter":"2","net.ipv4.ip_forward":"1"}"#;

#[test]
fn chained_after_loopback_it_sets_container_sysctls_and_passes_the_result_through() {
    let scratch = ScratchInstall::new();
    install(&scratch);
    let ns = Netns::new();
    // The interface the main plugin of a real chain would have created.
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let add = Cni::new("ADD", &ns.path());

    let lo = add
        .run_in(
            &scratch.dir,
            "loopback",
            r#"{"cniVersion":"1.1.0","name":"testnet","type":"loopback"}"#,
        )
        .ok_json();
    assert_eq!(sysctl(&ns, "net.ipv4.conf.eth0.rp_filter"), "0");
    let tuned = add
        .run_in(&scratch.dir, TYPE, &tuning_conf(SYSCTLS, &lo))
        .ok_json();
    assert_eq!(tuned, lo, "prevResult passes through unchanged");
    assert_eq!(tuned["interfaces"][0]["name"], "lo");
    assert_eq!(sysctl(&ns, "net.ipv4.conf.eth0.rp_filter"), "2");
    assert_eq!(sysctl(&ns, "net.ipv4.ip_forward"), "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward,
        "the host's own sysctl is untouched"
    );

    let check =
        Cni::new("CHECK", &ns.path()).run_in(&scratch.dir, TYPE, &tuning_conf(SYSCTLS, &lo));
    assert_eq!((check.status, check.stdout.as_str()), (0, ""), "{check:?}");
    ns.ip(&["link", "set", "eth0", "up"]);
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "sysctl",
            "-qw",
            "net.ipv4.conf.eth0.rp_filter=1",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let (code, msg) = Cni::new("CHECK", &ns.path())
        .run_in(&scratch.dir, TYPE, &tuning_conf(SYSCTLS, &lo))
        .err();
    assert_eq!(code, 999);
    assert_eq!(
        msg,
        r#"sysctl net.ipv4.conf.eth0.rp_filter is "1", expected "2""#
    );

    let del = Cni::new("DEL", &ns.path()).run_in(&scratch.dir, TYPE, &tuning_conf(SYSCTLS, &lo));
    assert_eq!((del.status, del.stdout.as_str()), (0, ""), "{del:?}");
    assert_eq!(sysctl(&ns, "net.ipv4.ip_forward"), "1", "DEL is a no-op");
}

#[test]
fn keys_outside_net_and_missing_interfaces_fail_cleanly() {
    let scratch = ScratchInstall::new();
    install(&scratch);
    let ns = Netns::new();
    let prev: Value = serde_json::json!({"cniVersion":"1.1.0","interfaces":[{"name":"lo"}]});
    let add = Cni::new("ADD", &ns.path());
    let (code, msg) = add
        .run_in(
            &scratch.dir,
            TYPE,
            &tuning_conf(r#"{"kernel.hostname":"x"}"#, &prev),
        )
        .err();
    assert_eq!(code, 7, "{msg}");
    let (code, msg) = add
        .run_in(
            &scratch.dir,
            TYPE,
            &tuning_conf(r#"{"net.ipv4.conf.eth9.rp_filter":"2"}"#, &prev),
        )
        .err();
    assert_eq!(code, 999);
    assert!(
        msg.starts_with("sysctl net.ipv4.conf.eth9.rp_filter"),
        "{msg}"
    );
    let (code, _) = add
        .run_in(
            &scratch.dir,
            TYPE,
            &format!(
                r#"{{"cniVersion":"1.1.0","name":"testnet","type":"{TYPE}","sysctl":{SYSCTLS}}}"#
            ),
        )
        .err();
    assert_eq!(code, 7, "not chained");
}
