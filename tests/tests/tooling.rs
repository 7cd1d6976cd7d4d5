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
