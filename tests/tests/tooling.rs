//! Operator tooling: `wasm-cni inspect` and `wasm-cni validate`.

use serde_json::Value;
use wasm_cni_tests::{bin_dir, exec_args, Exec, ScratchInstall, REFERENCE_DIR};

fn tool(args: &[&str], cni_path: &str) -> Exec {
    exec_args(
        &bin_dir().join("wasm-cni"),
        args,
        &[("CNI_PATH", cni_path)],
        b"",
    )
}

#[test]
fn inspect_shows_world_capabilities_digest_and_artifact() {
    let dir = bin_dir().display().to_string();
    let out = tool(&["inspect", "loopback"], &dir);
    let info: Value = out.ok_json();
    assert_eq!(info["plugin"], "loopback");
    assert_eq!(info["kind"], "plugin");
    assert_eq!(info["world"], "wasm-cni:plugin/plugin@0.1.0");
    assert_eq!(info["artifact"]["status"], "ok");
    assert_eq!(
        info["exports"],
        serde_json::json!(["wasm-cni:plugin/handler@0.1.0"])
    );
    assert_eq!(info["capabilities"], serde_json::json!([]));
    let module = std::fs::read(bin_dir().join("loopback.wasm")).unwrap();
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(info["size"], module.len());
    let logger = tool(&["inspect", "logger"], &dir).ok_json();
    assert_eq!(logger["kind"], "command");
}

#[test]
fn inspect_reports_a_stale_artifact() {
    let s = ScratchInstall::new();
    std::fs::remove_file(s.dir.join("loopback.cwasm")).unwrap();
    let module = s.dir.join("loopback.wasm").display().to_string();
    let info = tool(&["inspect", &module], "").ok_json();
    let status = info["artifact"]["status"].as_str().unwrap();
    assert!(
        status.starts_with("unusable: no precompiled artifact"),
        "{status}"
    );
}

#[test]
fn validate_accepts_a_chain_of_ours_and_native_plugins() {
    let path = format!("{}:{REFERENCE_DIR}", bin_dir().display());
    let list = std::env::temp_dir().join(format!("wcni-validate-{}.conflist", std::process::id()));
    std::fs::write(
        &list,
        r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"loopback"},{"type":"portmap"},{"type":"logger"}]}"#,
    )
    .unwrap();
    let out = tool(&["validate", &list.display().to_string()], &path);
    let findings = out.json();
    assert_eq!(out.status, 0, "{findings:#}");
    assert!(findings.as_array().unwrap().len() >= 6);
    std::fs::write(
        &list,
        r#"{"cniVersion":"1.1.0","name":"net","plugins":[{"type":"portmap"},{"type":"nosuch"}]}"#,
    )
    .unwrap();
    let out = tool(&["validate", &list.display().to_string()], &path);
    let text = out.stdout.clone();
    std::fs::remove_file(&list).unwrap();
    assert_eq!(out.status, 1, "{text}");
    assert!(
        text.contains(r#"plugin type \"nosuch\" not found"#),
        "{text}"
    );
    // The reference (CNI 1.0.0) does not speak 1.1.0.
    assert!(text.contains("portmap: native plugin"), "{text}");
}

#[test]
fn the_log_goes_to_a_file_when_configured_one_line_per_invocation() {
    let ns = wasm_cni_tests::Netns::new();
    let log = std::env::temp_dir().join(format!("wcni-log-{}.jsonl", std::process::id()));
    let log_path = log.display().to_string();
    let out = wasm_cni_tests::Cni::new("ADD", &ns.path())
        .set("WASM_CNI_LOG_FILE", &log_path)
        .set("WASM_CNI_LOG_LEVEL", "info")
        .ours("loopback", &wasm_cni_tests::conf(Some("1.0.0"), "loopback"));
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stderr.is_empty(), "nothing on stderr: {}", out.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let invocation = lines
        .iter()
        .find(|l| l["msg"] == "invocation")
        .expect("an invocation line");
    assert_eq!(invocation["verb"], "ADD");
    assert_eq!(invocation["container"], "test-container");
    assert_eq!(invocation["outcome"], "ok");
    assert!(invocation["ms"].as_f64().unwrap() > 0.0);
    assert!(
        lines
            .iter()
            .any(|l| l["msg"] == "audit" && l["op"] == "link-set-up"),
        "{text}"
    );
}

/// Runs `validate` on `conflist` under `policy` (TOML) with our install and the reference in
/// CNI_PATH; returns the exit status and the findings' texts, each prefixed by ok/FAIL.
fn validate_under(policy: &str, conflist: &str) -> (i32, Vec<String>) {
    let tag = format!("{}-{}", std::process::id(), conflist.len());
    let dir = std::env::temp_dir().join(format!("wcni-validate-policy-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (pol, list) = (dir.join("policy.toml"), dir.join("net.conflist"));
    std::fs::write(&pol, policy).unwrap();
    std::fs::write(&list, conflist).unwrap();
    let path = format!("{}:{REFERENCE_DIR}", bin_dir().display());
    let out = exec_args(
        &bin_dir().join("wasm-cni"),
        &["validate", &list.display().to_string()],
        &[
            ("CNI_PATH", &path),
            ("WASM_CNI_POLICY", &pol.display().to_string()),
        ],
        b"",
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let findings = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let mark = if f["ok"] == true { "ok" } else { "FAIL" };
            format!("{mark} {}", f["what"].as_str().unwrap())
        })
        .collect();
    (out.status, findings)
}

#[test]
fn validate_checks_what_each_plugins_configuration_needs_from_the_policy() {
    let policy = r#"
[plugins.bridge]
capabilities = ["host-netns", "ipam", "firewall"]
host-links = ["cni-*", "veth*"]
ipam = ["host-local"]
[plugins.host-local]
capabilities = ["ip-store", "files"]
files = ["/etc/wcni-test/*.conf"]
"#;
    let good = r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge","bridge":"cni-good",
        "ipam":{"type":"host-local","subnet":"10.99.0.0/24","resolvConf":"/etc/wcni-test/dns.conf"}}]}"#;
    let (status, found) = validate_under(policy, good);
    assert_eq!(status, 0, "{found:#?}");
    for want in [
        r#"ok bridge: the policy's `host-links` allows the bridge "cni-good""#,
        r#"ok bridge: the policy's `ipam` allows delegating to IPAM type "host-local""#,
        r#"ok host-local: the policy's `files` allows reading "/etc/wcni-test/dns.conf""#,
    ] {
        assert!(found.iter().any(|f| f == want), "{want} in {found:#?}");
    }

    // A bridge name outside host-links, a file outside `files`, and a native IPAM without
    // native-exec: each would be a code-100 denial at ADD, so validate says so now.
    let bad = r#"{"cniVersion":"1.0.0","name":"net","plugins":[
        {"type":"bridge","bridge":"br0","ipam":{"type":"host-local","subnet":"10.99.0.0/24","resolvConf":"/etc/resolv.conf"}},
        {"type":"bridge","bridge":"cni-x","ipam":{"type":"static"}}]}"#;
    let (status, found) = validate_under(policy, bad);
    assert_eq!(status, 1, "{found:#?}");
    let fails: Vec<&String> = found.iter().filter(|f| f.starts_with("FAIL")).collect();
    for want in [
        r#"`host-links` ["cni-*", "veth*"] does not allow the bridge "br0""#,
        r#"`files` ["/etc/wcni-test/*.conf"] does not allow reading "/etc/resolv.conf""#,
        r#"`ipam` ["host-local"] does not allow delegating to IPAM type "static""#,
        r#"IPAM "static" is a native executable and the policy does not set `native-exec = true`"#,
    ] {
        assert!(
            fails.iter().any(|f| f.contains(want)),
            "{want} in {fails:#?}"
        );
    }
    assert_eq!(fails.len(), 4, "{fails:#?}");
}

#[test]
fn validate_sees_a_native_binary_that_shadows_a_module() {
    let s = ScratchInstall::new();
    // The runtime execs `<dir>/loopback`: when that is not wasm-cni, the module beside it is unused.
    std::fs::remove_file(s.dir.join("loopback")).unwrap();
    std::fs::copy(format!("{REFERENCE_DIR}/loopback"), s.dir.join("loopback")).unwrap();
    let list = s.dir.join("lo.conflist");
    std::fs::write(
        &list,
        r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"loopback"}]}"#,
    )
    .unwrap();
    let out = exec_args(
        &s.dir.join("wasm-cni"),
        &["validate", &list.display().to_string()],
        &[("CNI_PATH", &s.dir.display().to_string())],
        b"",
    );
    let text = out.stdout.clone();
    assert_eq!(out.status, 0, "{text}");
    assert!(
        text.contains("is a native executable, not a link to wasm-cni"),
        "{text}"
    );
    assert!(text.contains("loopback: native plugin"), "{text}");
    assert!(!text.contains("loopback: artifact"), "{text}");
}
