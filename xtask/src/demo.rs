//! `cargo xtask demo`: the main job, end to end. Two containers (throwaway namespaces) join a
//! bridge network served by our plugins, chained as a runtime chains them
//! (`[loopback, bridge(host-local), logger]`), ping each other and the gateway, and are torn
//! down again. A third throwaway namespace plays the host, so the demo never touches the real
//! host's network.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{run, Netns, TempDir};

/// Exec `plugin` from `dir` inside `host` as a runtime would: CNI env, config on stdin.
fn exec(
    dir: &Path,
    host: &Netns,
    plugin: &str,
    env: &[(&str, &str)],
    config: &Value,
) -> Result<String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &host.0])
        .arg(dir.join(plugin))
        .env_clear()
        .envs(env.iter().copied())
        .env("CNI_PATH", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {plugin}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(config.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        bail!(
            "{plugin} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// One plugin's config as libcni builds it from the list: name and version, the plugin's own
/// keys and the previous result.
fn plugin_conf(list: &Value, plugin: &Value, prev: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    conf
}

/// ADD through the chain, each plugin getting the previous result; the final result.
fn add(dir: &Path, host: &Netns, list: &Value, cid: &str, ns: &Netns) -> Result<Value> {
    let netns = ns.path();
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", &netns),
        ("CNI_IFNAME", "eth0"),
    ];
    let mut prev: Option<Value> = None;
    for plugin in list["plugins"].as_array().expect("plugins") {
        let out = exec(
            dir,
            host,
            plugin["type"].as_str().unwrap(),
            &env,
            &plugin_conf(list, plugin, prev.as_ref()),
        )?;
        prev = Some(serde_json::from_str(&out).context("a plugin printed no JSON result")?);
    }
    prev.context("empty chain")
}

/// DEL through the chain in reverse, each plugin getting the final ADD result.
fn del(
    dir: &Path,
    host: &Netns,
    list: &Value,
    cid: &str,
    ns: &Netns,
    result: &Value,
) -> Result<()> {
    let netns = ns.path();
    let env = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", &netns),
        ("CNI_IFNAME", "eth0"),
    ];
    for plugin in list["plugins"].as_array().expect("plugins").iter().rev() {
        exec(
            dir,
            host,
            plugin["type"].as_str().unwrap(),
            &env,
            &plugin_conf(list, plugin, Some(result)),
        )?;
    }
    Ok(())
}

fn container_ip(result: &Value) -> Result<String> {
    let addr = result["ips"][0]["address"]
        .as_str()
        .context("no address in the result")?;
    Ok(addr.split('/').next().unwrap_or_default().to_string())
}

fn section(title: &str) {
    println!("\n== {title}");
}

pub fn demo(dir: &Path) -> Result<()> {
    let pid = std::process::id();
    let host = Netns::new(format!("wcni-demo-host-{pid}"))?;
    let c1 = Netns::new(format!("wcni-demo-c1-{pid}"))?;
    let c2 = Netns::new(format!("wcni-demo-c2-{pid}"))?;
    let data = TempDir::new("demo-ipam")?;
    let list = json!({
        "cniVersion": "1.1.0",
        "name": "demo",
        "plugins": [
            {"type": "loopback"},
            {
                "type": "bridge",
                "bridge": "cni-demo0",
                "isGateway": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": data.0.display().to_string(),
                    "ranges": [[{"subnet": "10.99.0.0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "logger"}
        ]
    });
    section(&format!(
        "network list (the host is the throwaway namespace {})",
        host.0
    ));
    println!("{}", serde_json::to_string_pretty(&list)?);

    let r1 = add(dir, &host, &list, "demo-c1", &c1)?;
    section("ADD container 1: the chain's final result");
    println!("{}", serde_json::to_string_pretty(&r1)?);
    let r2 = add(dir, &host, &list, "demo-c2", &c2)?;
    let (ip1, ip2) = (container_ip(&r1)?, container_ip(&r2)?);
    section(&format!("ADD container 2: {ip2} (container 1 has {ip1})"));

    section("container 1: ip addr");
    run(Command::new("ip").args(["-n", &c1.0, "addr", "show"]))?;
    section("host: the bridge and its ports");
    run(Command::new("ip").args(["-n", &host.0, "-br", "link", "show", "master", "cni-demo0"]))?;
    run(Command::new("ip").args(["-n", &host.0, "-br", "addr", "show", "cni-demo0"]))?;

    section(&format!(
        "container 1 pings container 2 ({ip2}) and the gateway (10.99.0.1)"
    ));
    for target in [ip2.as_str(), "10.99.0.1"] {
        run(
            Command::new("ip").args(["netns", "exec", &c1.0, "ping", "-c", "2", "-W", "1", target])
        )?;
    }

    del(dir, &host, &list, "demo-c1", &c1, &r1)?;
    del(dir, &host, &list, "demo-c2", &c2, &r2)?;
    section("after DEL: no container veth on the bridge, no reservation left");
    run(Command::new("ip").args(["-n", &host.0, "-br", "link", "show", "master", "cni-demo0"]))?;
    let left: Vec<String> = std::fs::read_dir(data.0.join("demo"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    println!("store files: {left:?}");
    if left.iter().any(|f| f.starts_with("10.")) {
        bail!("reservations leaked: {left:?}");
    }
    println!(
        "\ndemo done: namespaces {}, {}, {} and {} are removed now",
        host.0,
        c1.0,
        c2.0,
        data.0.display()
    );
    Ok(())
}
