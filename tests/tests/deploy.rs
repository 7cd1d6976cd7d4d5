//! The Kubernetes deployment in `deploy/`, offline: the manifests parse and hang together,
//! the install script is valid POSIX sh, and run against temp dirs standing in for the host
//! paths it installs working plugins, keeps what is not ours, and is idempotent.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use wasm_cni_tests::{bin_dir, Cni, Netns, REFERENCE_DIR};

const CONFLIST: &str = "10-wasm-cni.conflist";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("deploy")
}

/// Every YAML document of the manifest, as JSON values.
fn documents() -> Vec<Value> {
    let text = fs::read_to_string(deploy_dir().join("daemonset.yaml")).unwrap();
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            if !current.trim().is_empty()
                && current
                    .lines()
                    .any(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            {
                let doc: Value = serde_norway::from_str(&current)
                    .unwrap_or_else(|e| panic!("YAML document does not parse: {e}\n{current}"));
                docs.push(doc);
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

fn by_kind(docs: &[Value], kind: &str) -> Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0].clone()
}

/// `registry/path:tag`, never `latest`, never a bare name.
fn check_image(image: &str) {
    let (name, tag) = image
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("image {image} has no tag"));
    assert!(
        !tag.is_empty() && tag != "latest" && !tag.contains('/'),
        "image {image}: tag"
    );
    let registry = name.split('/').next().unwrap();
    assert!(
        name.contains('/') && (registry.contains('.') || registry.contains(':')),
        "image {image} is not fully qualified (registry/name:tag)"
    );
}

fn config_map_data() -> BTreeMap<String, String> {
    let cm = by_kind(&documents(), "ConfigMap");
    cm["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn manifests_hang_together() {
    let docs = documents();
    let kinds: BTreeSet<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"])
    );
    for d in &docs {
        assert!(d["apiVersion"].is_string(), "no apiVersion: {d}");
        assert!(d["metadata"]["name"].is_string(), "no name: {d}");
    }
    let ns = by_kind(&docs, "Namespace")["metadata"]["name"].clone();
    for d in docs.iter().filter(|d| d["kind"] != "Namespace") {
        assert_eq!(d["metadata"]["namespace"], ns, "{} outside {ns}", d["kind"]);
    }

    let ds = by_kind(&docs, "DaemonSet");
    assert_eq!(ds["apiVersion"], "apps/v1");
    let spec = &ds["spec"];
    let pod = &spec["template"]["spec"];
    let labels = spec["template"]["metadata"]["labels"].as_object().unwrap();
    for (k, v) in spec["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            labels.get(k),
            Some(v),
            "selector {k} does not match the template"
        );
    }
    let sa = by_kind(&docs, "ServiceAccount")["metadata"]["name"].clone();
    assert_eq!(pod["serviceAccountName"], sa);
    assert_eq!(
        pod["hostNetwork"], true,
        "no pod network before the plugins exist"
    );
    assert!(
        pod["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
        "must tolerate every taint"
    );

    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let host_paths: BTreeSet<&str> = volumes
        .values()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    assert_eq!(
        host_paths,
        BTreeSet::from(["/etc/cni/net.d", "/etc/wasm-cni", "/opt/cni/bin"])
    );
    let cm_name = by_kind(&docs, "ConfigMap")["metadata"]["name"].clone();
    assert!(
        volumes.values().any(|v| v["configMap"]["name"] == cm_name),
        "the ConfigMap is not mounted"
    );

    let inits = pod["initContainers"].as_array().unwrap();
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(inits.len(), 1);
    assert!(
        containers
            .iter()
            .any(|c| c["image"].as_str().unwrap().contains("pause")),
        "a pause container keeps the pod running"
    );
    let mut mounted = BTreeMap::new();
    for c in inits.iter().chain(containers) {
        check_image(c["image"].as_str().unwrap());
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().unwrap();
            assert!(
                volumes.contains_key(name),
                "volumeMount {name} has no volume"
            );
            mounted.insert(
                m["mountPath"].as_str().unwrap().to_string(),
                name.to_string(),
            );
        }
    }
    let install = &inits[0];
    assert!(
        install["command"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().ends_with("install.sh")),
        "the init container runs install.sh"
    );
    // Where install.sh looks by default is where the manifest mounts the host paths.
    for (mount, path) in [
        ("/host/opt/cni/bin", "/opt/cni/bin"),
        ("/host/etc/cni/net.d", "/etc/cni/net.d"),
        ("/host/etc/wasm-cni", "/etc/wasm-cni"),
    ] {
        let volume = mounted
            .get(mount)
            .unwrap_or_else(|| panic!("nothing mounted at {mount}"));
        assert_eq!(volumes[volume.as_str()]["hostPath"]["path"], path);
    }
    assert!(mounted.contains_key("/config"), "the ConfigMap at /config");

    let data = config_map_data();
    assert!(data.contains_key("policy.toml"));
    let conflist: Value = serde_json::from_str(&data[CONFLIST]).expect("the conflist is JSON");
    assert!(conflist["cniVersion"].is_string() && conflist["name"].is_string());
    assert!(!conflist["plugins"].as_array().unwrap().is_empty());
}

#[test]
fn install_script_is_posix_sh() {
    let script = deploy_dir().join("install.sh");
    for shell in ["sh", "dash", "bash"] {
        if shell != "sh"
            && Command::new("which")
                .arg(shell)
                .output()
                .is_ok_and(|o| !o.status.success())
        {
            continue;
        }
        let out = Command::new(shell).arg("-n").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "{shell} -n install.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mode = fs::metadata(&script).unwrap().mode();
    assert!(mode & 0o111 != 0, "install.sh is not executable");
    let containerfile = fs::read_to_string(deploy_dir().join("Containerfile")).unwrap();
    assert!(containerfile.contains("cargo xtask build"));
    assert!(containerfile.contains("deploy/install.sh"));
}

/// A fake node: the image's /wasm-cni, the host's three dirs and the mounted ConfigMap.
struct Node {
    root: PathBuf,
}

impl Node {
    fn new() -> Node {
        let root = std::env::temp_dir().join(format!("wcni-deploy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for d in ["src/bin", "src/plugins", "bin", "net.d", "etc", "config"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for b in ["wasm-cni", "wasm-cni-compile"] {
            // Hard links: a copy open for writing while another test forks gives ETXTBSY.
            fs::hard_link(bin_dir().join(b), root.join("src/bin").join(b)).unwrap();
        }
        for e in fs::read_dir(bin_dir()).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wasm") {
                fs::copy(e.path(), root.join("src/plugins").join(&name)).unwrap();
            }
        }
        for (k, v) in config_map_data() {
            fs::write(root.join("config").join(k), v).unwrap();
        }
        Node { root }
    }

    fn install(&self, replace: bool) {
        let r = |d: &str| self.root.join(d);
        let out = Command::new("sh")
            .arg(deploy_dir().join("install.sh"))
            .env("WASM_CNI_SRC", r("src"))
            .env("CNI_BIN_DIR", r("bin"))
            .env("CNI_CONF_DIR", r("net.d"))
            .env("WASM_CNI_ETC", r("etc"))
            .env("WASM_CNI_CONFIG", r("config"))
            .env("WASM_CNI_REPLACE", if replace { "true" } else { "false" })
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "install.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every entry of the host dirs: name -> (kind, link target or content, mtime, mode).
    fn snapshot(&self) -> BTreeMap<String, (String, Vec<u8>, i64, u32)> {
        let mut all = BTreeMap::new();
        for d in ["bin", "net.d", "etc"] {
            for e in fs::read_dir(self.root.join(d)).unwrap() {
                let e = e.unwrap();
                let meta = fs::symlink_metadata(e.path()).unwrap();
                let (kind, content) = if meta.file_type().is_symlink() {
                    (
                        "link",
                        fs::read_link(e.path())
                            .unwrap()
                            .display()
                            .to_string()
                            .into_bytes(),
                    )
                } else {
                    ("file", fs::read(e.path()).unwrap())
                };
                all.insert(
                    format!("{d}/{}", e.file_name().to_string_lossy()),
                    (
                        kind.to_string(),
                        content,
                        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
                        meta.mode(),
                    ),
                );
            }
        }
        all
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[test]
fn install_script_installs_keeps_and_is_idempotent() {
    let node = Node::new();
    let bin = node.root.join("bin");
    // A reference bridge already on the node.
    let reference = Path::new(REFERENCE_DIR).join("bridge");
    let reference_bytes = fs::read(&reference).unwrap_or_else(|_| b"#!/bin/sh\nexit 0\n".to_vec());
    fs::write(bin.join("bridge"), &reference_bytes).unwrap();

    node.install(false);
    let plugins: Vec<String> = fs::read_dir(node.root.join("src/plugins"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".wasm")
                .to_string()
        })
        .collect();
    assert!(
        plugins.iter().any(|p| p == "loopback"),
        "plugins: {plugins:?}"
    );
    for p in &plugins {
        if p == "bridge" {
            continue;
        }
        assert_eq!(
            fs::read_link(bin.join(p)).ok().as_deref(),
            Some(Path::new("wasm-cni")),
            "{p} is not linked"
        );
        assert!(bin.join(format!("{p}.cwasm")).exists(), "{p}.cwasm missing");
    }
    assert_eq!(
        fs::read(bin.join("bridge")).unwrap(),
        reference_bytes,
        "reference bridge replaced"
    );
    assert!(
        !bin.join("bridge.wasm").exists(),
        "bridge.wasm installed beside the reference"
    );
    let data = config_map_data();
    assert_eq!(
        fs::read_to_string(node.root.join("etc/policy.toml")).unwrap(),
        data["policy.toml"]
    );
    assert_eq!(
        fs::read_to_string(node.root.join("net.d").join(CONFLIST)).unwrap(),
        data[CONFLIST]
    );
    let first = node.snapshot();
    assert!(
        first.keys().all(|k| !k.contains("/.wasm-cni")),
        "temp files left: {:?}",
        first.keys().collect::<Vec<_>>()
    );

    // Again: nothing rewritten (content and mtimes the same).
    node.install(false);
    assert_eq!(node.snapshot(), first, "a second run changed the node");

    // A run interrupted after installing the engine (artifacts older than it) recompiles.
    let artifact = bin.join("loopback.cwasm");
    let before = fs::metadata(&artifact).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(Command::new("touch")
        .arg(bin.join("wasm-cni"))
        .status()
        .unwrap()
        .success());
    node.install(false);
    assert!(
        fs::metadata(&artifact).unwrap().modified().unwrap() > before,
        "a stale artifact was not rebuilt"
    );

    // The operator's policy is theirs.
    fs::write(node.root.join("etc/policy.toml"), "# mine\n").unwrap();
    node.install(false);
    assert_eq!(
        fs::read_to_string(node.root.join("etc/policy.toml")).unwrap(),
        "# mine\n"
    );

    // The installed plugins work from there, under the ConfigMap's policy.
    fs::write(node.root.join("etc/policy.toml"), &data["policy.toml"]).unwrap();
    let ns = Netns::new();
    let policy = node.root.join("etc/policy.toml").display().to_string();
    let out = Cni::new("ADD", &ns.path())
        .set("WASM_CNI_POLICY", &policy)
        .run_in(
            &bin,
            "loopback",
            r#"{"cniVersion":"1.0.0","name":"t","type":"loopback"}"#,
        );
    out.ok_json();
    assert!(ns.link_state("lo").0, "lo is not up");

    // Asked to, it takes the name over.
    node.install(true);
    assert_eq!(
        fs::read_link(bin.join("bridge")).ok().as_deref(),
        Some(Path::new("wasm-cni"))
    );
    assert!(bin.join("bridge.cwasm").exists());
}
