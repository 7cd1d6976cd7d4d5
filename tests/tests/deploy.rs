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
    // The offline recipe (cargo xtask image) makes the same image: same entrypoint, no base.
    let prebuilt = fs::read_to_string(deploy_dir().join("Containerfile.prebuilt")).unwrap();
    let entrypoint = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("ENTRYPOINT"))
            .map(str::to_string)
    };
    assert!(entrypoint(&containerfile).is_some());
    assert_eq!(entrypoint(&prebuilt), entrypoint(&containerfile));
    assert!(prebuilt.lines().any(|l| l == "FROM scratch"));
}

/// A fake node: the image's /wasm-cni, the host's three dirs and the mounted ConfigMap.
struct Node {
    root: PathBuf,
}

impl Node {
    fn new() -> Node {
        // One per test: the tests of this file run in parallel.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("wcni-deploy-{}-{n}", std::process::id()));
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
                // A plugin's first exec records its artifact's verification beside it (once
                // the artifact is over a second old): a cache, not part of the install.
                if e.file_name().to_string_lossy().ends_with(".cwasm.verified") {
                    continue;
                }
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

    // An artifact the installed host does not accept (here another module's; likewise one
    // from another engine after a run interrupted between installing the binaries and
    // compiling) is rebuilt; the others are left alone.
    let artifact = bin.join("loopback.cwasm");
    let untouched = fs::metadata(bin.join("logger.cwasm"))
        .unwrap()
        .modified()
        .unwrap();
    fs::copy(bin.join("logger.cwasm"), &artifact).unwrap();
    node.install(false);
    let status = Command::new(bin.join("wasm-cni"))
        .args(["inspect", &bin.join("loopback.wasm").display().to_string()])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        info["artifact"]["status"], "ok",
        "a stale artifact was not rebuilt: {info}"
    );
    assert_eq!(
        fs::metadata(bin.join("logger.cwasm"))
            .unwrap()
            .modified()
            .unwrap(),
        untouched,
        "an artifact the host accepts was rebuilt"
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

/// The DaemonSet's init container, as podman arguments: its command as the entrypoint, its
/// env, securityContext, memory limit and volume mounts, every hostPath replaced by a dir
/// under `node` (`/opt/cni/bin` -> bin, `/etc/cni/net.d` -> net.d, `/etc/wasm-cni` -> etc)
/// and the ConfigMap by `node/config` (its keys as files, as the kubelet projects them).
fn init_container_args(node: &Node) -> Vec<String> {
    let docs = documents();
    let pod = by_kind(&docs, "DaemonSet")["spec"]["template"]["spec"].clone();
    let init = &pod["initContainers"][0];
    let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
    if pod["hostNetwork"] == true {
        args.extend(["--network".into(), "host".into()]);
    }
    args.extend([
        "--entrypoint".into(),
        serde_json::to_string(&init["command"]).unwrap(),
    ]);
    for e in init["env"].as_array().into_iter().flatten() {
        let (k, v) = (e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
        args.extend(["--env".into(), format!("{k}={v}")]);
    }
    let sc = &init["securityContext"];
    if let Some(uid) = sc["runAsUser"].as_u64() {
        args.extend(["--user".into(), uid.to_string()]);
    }
    if sc["readOnlyRootFilesystem"] == true {
        args.push("--read-only".into());
    }
    if sc["allowPrivilegeEscalation"] == false {
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    for cap in sc["capabilities"]["drop"].as_array().into_iter().flatten() {
        args.extend(["--cap-drop".into(), cap.as_str().unwrap().into()]);
    }
    for cap in sc["capabilities"]["add"].as_array().into_iter().flatten() {
        args.extend(["--cap-add".into(), cap.as_str().unwrap().into()]);
    }
    if let Some(mem) = init["resources"]["limits"]["memory"].as_str() {
        let mib = mem
            .strip_suffix("Mi")
            .unwrap_or_else(|| panic!("memory limit {mem}: the test knows Mi only"));
        args.extend(["--memory".into(), format!("{mib}m")]);
    }
    let volumes: BTreeMap<String, Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    for m in init["volumeMounts"].as_array().unwrap() {
        let volume = &volumes[m["name"].as_str().unwrap()];
        let local = if volume["configMap"].is_object() {
            node.root.join("config")
        } else {
            let host = volume["hostPath"]["path"].as_str().unwrap();
            node.root.join(match host {
                "/opt/cni/bin" => "bin",
                "/etc/cni/net.d" => "net.d",
                "/etc/wasm-cni" => "etc",
                other => panic!("hostPath {other}: no stand-in dir for it in this test"),
            })
        };
        let ro = if m["readOnly"] == true { ":ro" } else { "" };
        args.extend([
            "--volume".into(),
            format!(
                "{}:{}{ro}",
                local.display(),
                m["mountPath"].as_str().unwrap()
            ),
        ]);
    }
    args
}

/// The image `cargo xtask test` built (`cargo xtask image`) in a private podman storage;
/// removes this test's container on drop, also when the test fails. (xtask removes the image
/// and the storage after the integration tests.)
struct Installer {
    image: String,
    podman_dir: PathBuf,
    host: Netns,
    name: String,
}

impl Installer {
    fn new() -> Option<Installer> {
        if std::env::var("WASM_CNI_SKIP_PODMAN").is_ok_and(|v| v == "1") {
            eprintln!("WASM_CNI_SKIP_PODMAN=1: skipping the installer image test");
            return None;
        }
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| {
                panic!(
                    "{k} is not set: run through `cargo xtask test`, or build the image with \
                     `cargo xtask image --storage DIR` and set WASM_CNI_IMAGE=localhost/wasm-cni:<version> \
                     WASM_CNI_PODMAN_DIR=DIR (or WASM_CNI_SKIP_PODMAN=1)"
                )
            })
        };
        Some(Installer {
            image: var("WASM_CNI_IMAGE"),
            podman_dir: PathBuf::from(var("WASM_CNI_PODMAN_DIR")),
            host: Netns::new(),
            name: format!("wcni-deploy-installer-{}", std::process::id()),
        })
    }

    /// `podman <args>` with the private configuration, in a throwaway network namespace
    /// (the init container uses the host network: here, that namespace's).
    fn podman(&self, args: &[String]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.host.path()))
            .arg("podman")
            .args(args)
            .env("CONTAINERS_CONF", self.podman_dir.join("containers.conf"))
            .env(
                "CONTAINERS_STORAGE_CONF",
                self.podman_dir.join("storage.conf"),
            )
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running podman")
    }

    /// Run the image as the init container against `node`; returns its log (stderr).
    fn run(&self, node: &Node) -> String {
        let mut args = init_container_args(node);
        args.splice(2..2, ["--name".to_string(), self.name.clone()]);
        args.push(self.image.clone());
        let out = self.podman(&args);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "the init container failed ({}): podman {args:?}\n{}{log}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        log
    }
}

impl Drop for Installer {
    fn drop(&mut self) {
        let _ = self.podman(&[
            "rm".into(),
            "--force".into(),
            "--ignore".into(),
            self.name.clone(),
        ]);
    }
}

/// The installer image (built offline by `cargo xtask image` from deploy/Containerfile.prebuilt)
/// run exactly as deploy/daemonset.yaml's init container: it installs host, plugins,
/// artifacts compiled inside the image, policy and conflist; a second run changes nothing;
/// the installed plugins answer VERSION and do a loopback ADD under the installed policy.
#[test]
fn installer_image_runs_as_the_init_container() {
    let Some(installer) = Installer::new() else {
        return;
    };
    // The manifest deploys the release the image was built from.
    let docs = documents();
    let manifest_image = by_kind(&docs, "DaemonSet")["spec"]["template"]["spec"]["initContainers"]
        [0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        manifest_image.rsplit_once(':').map(|(_, t)| t),
        installer.image.rsplit_once(':').map(|(_, t)| t),
        "deploy/daemonset.yaml deploys {manifest_image}, the workspace builds {}",
        installer.image
    );

    let node = Node::new();
    for d in ["bin", "net.d", "etc"] {
        assert_eq!(
            fs::read_dir(node.root.join(d)).unwrap().count(),
            0,
            "{d} starts empty"
        );
    }
    let log = installer.run(&node);
    assert!(log.trim_end().ends_with("wasm-cni install: done"), "{log}");

    let bin = node.root.join("bin");
    let built = bin_dir();
    for b in ["wasm-cni", "wasm-cni-compile"] {
        assert_eq!(
            fs::read(bin.join(b)).unwrap(),
            fs::read(built.join(b)).unwrap(),
            "{b} is not the built binary"
        );
        assert_eq!(
            fs::metadata(bin.join(b)).unwrap().mode() & 0o777,
            0o755,
            "{b}"
        );
    }
    // Every plugin `cargo xtask install` installs is in the image and installed from it.
    let mut plugins: Vec<String> = fs::read_dir(&built)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".wasm").map(String::from)
        })
        .collect();
    plugins.sort();
    assert!(plugins.contains(&"loopback".to_string()), "{plugins:?}");
    for p in &plugins {
        assert_eq!(
            fs::read_link(bin.join(p)).ok().as_deref(),
            Some(Path::new("wasm-cni")),
            "{p} is not linked"
        );
        let module = bin.join(format!("{p}.wasm"));
        assert_eq!(
            fs::read(&module).unwrap(),
            fs::read(built.join(format!("{p}.wasm"))).unwrap(),
            "{p}.wasm is not the built module"
        );
        assert_eq!(fs::metadata(&module).unwrap().mode() & 0o777, 0o644);
        let artifact = bin.join(format!("{p}.cwasm"));
        assert!(
            artifact.is_file(),
            "{p}.cwasm was not compiled in the image"
        );
    }
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

    // The installed plugins work, under the installed policy, with the artifacts compiled in
    // the image: the host accepts them as they are (it would rebuild a stale one).
    let policy = node.root.join("etc/policy.toml").display().to_string();
    let version = Cni::new("VERSION", "")
        .set("WASM_CNI_POLICY", &policy)
        .run_in(&bin, "loopback", r#"{"cniVersion":"1.0.0"}"#)
        .ok_json();
    assert!(
        version["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v == "1.0.0")),
        "VERSION: {version}"
    );
    let ns = Netns::new();
    let result = Cni::new("ADD", &ns.path())
        .set("WASM_CNI_POLICY", &policy)
        .run_in(
            &bin,
            "loopback",
            r#"{"cniVersion":"1.0.0","name":"t","type":"loopback"}"#,
        )
        .ok_json();
    assert_eq!(result["interfaces"][0]["name"], "lo", "{result}");
    assert!(ns.link_state("lo").0, "lo is not up");
    assert_eq!(
        node.snapshot(),
        first,
        "running the installed plugins changed the install (an artifact was rebuilt?)"
    );

    // The pod restarts (node reboot, rollout of the same image): nothing changes.
    let log = installer.run(&node);
    assert_eq!(
        node.snapshot(),
        first,
        "a second run changed the node:\n{log}"
    );
}
