//! Operator tooling: `wasm-cni inspect <plugin>` and `wasm-cni validate <conflist>`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::policy::{self, Policy};
use crate::sandbox::{self, artifact, GuestKind};

/// Where plugins are looked up when no directory is given: beside this binary.
fn default_dirs() -> Vec<PathBuf> {
    if let Ok(p) = std::env::var("CNI_PATH") {
        return p
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
    }
    let here = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    here.into_iter()
        .chain([PathBuf::from("/opt/cni/bin")])
        .collect()
}

/// The module of a plugin name (`bridge`) or path (`./bridge.wasm`).
fn module_path(arg: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    if arg.ends_with(".wasm") {
        return Some(PathBuf::from(arg));
    }
    dirs.iter()
        .map(|d| d.join(format!("{arg}.wasm")))
        .find(|p| p.exists())
}

/// Everything an operator wants to know about one plugin module.
pub fn inspect(arg: &str) -> Result<Value, String> {
    let module = module_path(arg, &default_dirs())
        .ok_or_else(|| format!("no module for {arg:?} in {:?}", default_dirs()))?;
    let bytes = std::fs::read(&module).map_err(|e| format!("{}: {e}", module.display()))?;
    let name = module
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let digest = artifact::sha256_hex(&bytes);
    let engine = sandbox::engine().map_err(|e| e.to_string())?;
    let art_path = artifact::artifact_path(&module);
    let mut out = json!({
        "plugin": name,
        "module": module.display().to_string(),
        "sha256": digest,
        "size": bytes.len(),
        "artifact": {"path": art_path.display().to_string()},
    });
    match artifact::load(&engine, &art_path, &module) {
        Ok((a, _)) => {
            out["artifact"]["status"] = "ok".into();
            out["kind"] = json!(a.kind);
            out["world"] = match a.kind {
                GuestKind::Plugin => "wasm-cni:plugin/plugin@0.1.0",
                GuestKind::Command => "wasi:cli/command (plain WASI CNI program)",
            }
            .into();
            let ty = a.component.component_type();
            out["imports"] = ty
                .imports(&engine)
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
                .into();
            out["exports"] = ty
                .exports(&engine)
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
                .into();
            out["capabilities"] = a.capabilities.clone().into();
            out["policy"] = match Policy::load() {
                Err(e) => json!({"error": e}),
                Ok(p) => match policy::decide(p.as_ref(), &name, &digest, &a.capabilities) {
                    Ok((g, l)) => json!({
                        "source": if p.is_some() { "policy file" } else { "no policy file: declared capabilities" },
                        "runs": true,
                        "granted": a.capabilities,
                        "host-links": g.host_links,
                        "host-devices": g.host_devices,
                        "sysctls": g.sysctls,
                        "ipam": g.ipam_types,
                        "native-exec": g.native_exec,
                        "files": g.files,
                        "timeout-ms": l.timeout.as_millis() as u64,
                        "memory-mib": l.memory_bytes >> 20,
                        "output-kib": l.output_bytes >> 10,
                        "fuel": l.fuel,
                    }),
                    Err(refusal) => json!({"runs": false, "refusal": refusal}),
                },
            };
        }
        Err(stale) => {
            out["artifact"]["status"] =
                format!("unusable: {stale} (the next exec recompiles it with wasm-cni-compile)")
                    .into();
        }
    }
    Ok(out)
}

/// One finding of `validate`.
fn finding(ok: bool, what: String) -> Value {
    json!({"ok": ok, "what": what})
}

/// Check a network configuration list the way a runtime would use it: every type resolves
/// (to `wasm-cni` and its module, or to a native plugin), the versions are supported, the node
/// policy lets each wasm plugin run and grants what its configuration reaches in the host.
pub fn validate(conflist: &Path) -> Result<(bool, Vec<Value>), String> {
    let text =
        std::fs::read_to_string(conflist).map_err(|e| format!("{}: {e}", conflist.display()))?;
    let conf: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not JSON: {e}", conflist.display()))?;
    let version = conf["cniVersion"].as_str().unwrap_or("0.1.0").to_string();
    let plugins: Vec<Value> = match conf.get("plugins") {
        Some(Value::Array(p)) => p.clone(),
        _ => vec![conf.clone()],
    };
    let dirs = default_dirs();
    let mut findings = vec![finding(
        cni_types::version::is_supported(&version),
        format!("cniVersion {version} is supported by wasm-cni"),
    )];
    if let Err(e) = Policy::load() {
        findings.push(finding(false, format!("node policy: {e}")));
    }
    let name = conf["name"].as_str().unwrap_or_default();
    findings.push(finding(
        cni_types::validate::validate_network_name(name).is_ok(),
        format!("network name {name:?} is valid"),
    ));
    for p in &plugins {
        let Some(ty) = p["type"].as_str() else {
            findings.push(finding(false, "a plugin has no type".into()));
            continue;
        };
        let (found, resolved) = check_type(ty, &version, &dirs);
        findings.extend(found);
        let ipam = p["ipam"]["type"].as_str();
        let ipam_resolved = ipam.map(|ipam| {
            let (found, resolved) = check_type(ipam, &version, &dirs);
            findings.extend(found);
            resolved
        });
        if let Resolved::Wasm(info) = &resolved {
            if info["policy"]["runs"] == true {
                findings.extend(config_grants(
                    ty,
                    p,
                    &info["policy"],
                    ipam,
                    ipam_resolved.as_ref(),
                ));
            }
        }
        if let (Some(ipam), Some(Resolved::Wasm(info))) = (ipam, &ipam_resolved) {
            if info["policy"]["runs"] == true {
                findings.extend(config_grants(ipam, &p["ipam"], &info["policy"], None, None));
            }
        }
    }
    Ok((findings.iter().all(|f| f["ok"] == true), findings))
}

/// What a plugin type resolved to in CNI_PATH.
enum Resolved {
    Missing,
    /// A native executable (or a `.wasm` shadowed by one).
    Native,
    /// `wasm-cni` dispatching to `<type>.wasm`, with what `inspect` says of it.
    Wasm(Value),
}

/// The grants a plugin's own configuration needs, for the fields of the first-party plugins
/// that reach beyond the container: the bridge's and host-device's host links, the IPAM type
/// it delegates to (and whether that is a native executable), host-local's `resolvConf`.
/// What `validate` finds here would otherwise surface as a code-100 denial at ADD.
fn config_grants(
    ty: &str,
    conf: &Value,
    policy: &Value,
    ipam: Option<&str>,
    ipam_resolved: Option<&Resolved>,
) -> Vec<Value> {
    let list = |key: &str| -> Vec<String> {
        policy[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    let mut need = |key: &str, what: &str, name: &str| {
        let patterns = list(key);
        let ok = policy::matches_any(&patterns, name);
        out.push(finding(
            ok,
            if ok {
                format!("{ty}: the policy's `{key}` allows {what} {name:?}")
            } else {
                format!("{ty}: the policy's `{key}` {patterns:?} does not allow {what} {name:?}; ADD would be denied")
            },
        ));
    };
    match ty {
        "bridge" => {
            let bridge = conf["bridge"].as_str().unwrap_or("cni0");
            need("host-links", "the bridge", bridge);
            need("host-links", "host-side veths such as", "veth0a1b2c3d");
        }
        "host-device" => {
            if let Some(dev) = conf["device"].as_str() {
                need("host-devices", "the device", dev);
            }
        }
        "host-local" => {
            if let Some(path) = conf["resolvConf"].as_str().filter(|p| !p.is_empty()) {
                need("files", "reading", path);
            }
        }
        _ => {}
    }
    if let Some(ipam) = ipam {
        need("ipam", "delegating to IPAM type", ipam);
        if matches!(ipam_resolved, Some(Resolved::Native)) {
            let ok = policy["native-exec"] == true;
            out.push(finding(
                ok,
                if ok {
                    format!("{ty}: the policy allows exec'ing the native IPAM plugin {ipam:?}")
                } else {
                    format!("{ty}: IPAM {ipam:?} is a native executable and the policy does not set `native-exec = true`; ADD would be denied")
                },
            ));
        }
    }
    out
}

fn check_type(ty: &str, version: &str, dirs: &[PathBuf]) -> (Vec<Value>, Resolved) {
    let Some(path) = dirs.iter().map(|d| d.join(ty)).find(|p| p.exists()) else {
        return (
            vec![finding(
                false,
                format!("plugin type {ty:?} not found in {dirs:?}"),
            )],
            Resolved::Missing,
        );
    };
    let module = path.with_file_name(format!("{ty}.wasm"));
    let mut notes = Vec::new();
    if module.exists() && !crate::plugin::is_wasm_cni(&path) {
        notes.push(finding(
            true,
            format!(
                "{ty}: {} is a native executable, not a link to wasm-cni: the runtime runs it and {} is unused",
                path.display(),
                module.display()
            ),
        ));
    } else if module.exists() {
        return match inspect(&module.display().to_string()) {
            Err(e) => (
                vec![finding(false, format!("{ty}: {e}"))],
                Resolved::Missing,
            ),
            Ok(info) => {
                let runs = info["policy"]["runs"] == true;
                let why = info["policy"]["refusal"]
                    .as_str()
                    .or(info["policy"]["error"].as_str())
                    .unwrap_or("");
                let found = vec![
                    finding(
                        info["artifact"]["status"] == "ok",
                        format!(
                            "{ty}: artifact {}",
                            info["artifact"]["status"].as_str().unwrap_or("")
                        ),
                    ),
                    finding(
                        runs,
                        if runs {
                            format!("{ty}: the node policy lets it run")
                        } else {
                            format!("{ty}: refused: {why}")
                        },
                    ),
                ];
                (found, Resolved::Wasm(info))
            }
        };
    }
    // A native plugin: ask it which versions it speaks.
    let out = Command::new(&path)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let supported = out
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .map(|v| {
            v["supportedVersions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s == version))
        });
    notes.push(finding(
        supported == Some(true),
        format!(
            "{ty}: native plugin {} supports cniVersion {version}",
            path.display()
        ),
    ));
    (notes, Resolved::Native)
}
