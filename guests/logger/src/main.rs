//! logger: a plain WASI CNI program (no SDK, no host capabilities). It logs the invocation to
//! stderr, which the host forwards to its log, and on ADD passes `prevResult` through
//! unchanged (or an empty result of the requested version), so it can sit anywhere in a chain.

use std::io::Read;

use cni_types::{codes, version, CniError, CniResult};
use serde_json::Value;

fn main() {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let command = env("CNI_COMMAND");
    let mut stdin = String::new();
    if command != "VERSION" {
        if let Err(e) = std::io::stdin().read_to_string(&mut stdin) {
            fail(
                CniError::new(
                    codes::IO_FAILURE,
                    format!("error reading from stdin: {e}"),
                    "",
                ),
                "",
            );
        }
    }
    eprintln!(
        "logger: command={command} container={} netns={} ifname={} args={} path={} config={}",
        env("CNI_CONTAINERID"),
        env("CNI_NETNS"),
        env("CNI_IFNAME"),
        env("CNI_ARGS"),
        env("CNI_PATH"),
        stdin.trim()
    );
    match command.as_str() {
        "VERSION" => println!("{}", version::version_info_json()),
        "ADD" => match add(&stdin) {
            Ok(out) => println!("{out}"),
            Err((e, v)) => fail(e, &v),
        },
        // DEL, CHECK, STATUS and GC: nothing to do, nothing to print.
        _ => {}
    }
}

/// The result to print for ADD: the prevResult as given, or an empty result.
fn add(config: &str) -> Result<String, (CniError, String)> {
    let conf: Value = serde_json::from_str(config).map_err(|e| {
        let e = CniError::new(
            codes::DECODING_FAILURE,
            format!("error unmarshall network config: {e}"),
            "",
        );
        (e, version::CURRENT_VERSION.to_string())
    })?;
    let cni_version = version::config_version(&conf);
    match conf.get("prevResult") {
        Some(Value::Object(prev)) => {
            let mut prev = prev.clone();
            prev.insert("cniVersion".into(), Value::String(cni_version));
            Ok(Value::Object(prev).to_string())
        }
        _ => CniResult::default()
            .to_json(&cni_version)
            .map(|v| v.to_string())
            .map_err(|e| (e, cni_version.clone())),
    }
}

fn fail(e: CniError, cni_version: &str) -> ! {
    let v = if cni_version.is_empty() {
        version::CURRENT_VERSION
    } else {
        cni_version
    };
    println!("{}", e.to_json(v));
    std::process::exit(1)
}
