//! The logger: a plain WASI CNI program in the sandbox, chained after loopback.

use serde_json::Value;
use wasm_cni_tests::{conf, Cni, Netns};

#[test]
fn logger_after_loopback_passes_the_result_through_unchanged() {
    let ns = Netns::new();
    let add = Cni::new("ADD", &ns.path()).set("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web");
    for version in ["0.2.0", "0.4.0", "1.0.0", "1.1.0"] {
        let lo = add
            .ours("loopback", &conf(Some(version), "loopback"))
            .ok_json();
        let mut config: Value = serde_json::from_str(&conf(Some(version), "logger")).unwrap();
        config["prevResult"] = lo.clone();
        let out = add.ours("logger", &config.to_string());
        assert_eq!(out.ok_json(), lo, "cniVersion {version}");
        // The guest's stderr reaches the host log, tagged with the plugin.
        assert!(out.stderr.contains("logger: command=ADD"), "{}", out.stderr);
        assert!(out.stderr.contains("K8S_POD_NAME=web"), "{}", out.stderr);
        assert!(
            out.stderr.contains(r#""plugin":"logger""#),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn logger_alone_returns_an_empty_result_of_the_requested_version() {
    let ns = Netns::new();
    let out = Cni::new("ADD", &ns.path())
        .ours("logger", &conf(Some("1.0.0"), "logger"))
        .ok_json();
    assert_eq!(out["cniVersion"], "1.0.0");
    assert!(out.get("ips").is_none(), "{out}");
}

#[test]
fn logger_del_and_check_print_nothing() {
    let ns = Netns::new();
    for verb in ["DEL", "CHECK"] {
        let out = Cni::new(verb, &ns.path()).ours("logger", &conf(Some("1.0.0"), "logger"));
        assert_eq!(
            (out.status, out.stdout.as_str()),
            (0, ""),
            "{verb}: {out:?}"
        );
    }
}

#[test]
fn logger_errors_pass_through_as_cni_errors() {
    let ns = Netns::new();
    // A prevResult that is not a result: the guest answers, the host checks it.
    let config =
        r#"{"cniVersion":"1.0.0","name":"testnet","type":"logger","prevResult":{"ips":"nope"}}"#;
    let (code, msg) = Cni::new("ADD", &ns.path()).ours("logger", config).err();
    assert_eq!(code, 103, "{msg}");
    assert!(msg.contains("invalid result"), "{msg}");
}
