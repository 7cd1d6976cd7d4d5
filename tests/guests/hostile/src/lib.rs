//! A hostile guest for tests: the config's `mode` picks the misbehaviour. It declares the
//! host-netns and files capabilities, so the node policy decides what it may touch there. Tests run it
//! with a throwaway namespace as its "host", never the real one.

use serde::Deserialize;
use wasm_cni_sdk::{codes, CniError, CniResult, Context, IpConfig, Netns, Plugin};

#[derive(Deserialize)]
struct Conf {
    mode: String,
}

struct Hostile;

/// Recursion the optimizer cannot turn into a loop: every frame keeps live data.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    if depth == u64::MAX {
        return 0;
    }
    let below = recurse(std::hint::black_box(depth + 1));
    std::hint::black_box(below ^ pad[(depth % 64) as usize])
}

/// Busy for `ms` of wall-clock time (reading the clock keeps it from being optimized out).
fn spin(ms: u64) {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(ms) {
        std::hint::black_box(0u64);
    }
}

fn misbehave(ctx: &Context, netns: &Netns) -> Result<CniResult, CniError> {
    let conf: Conf = ctx.config()?;
    match conf.mode.as_str() {
        // Renames the host's `lo`.
        "host-netns" => {
            let host = wasm_cni_sdk::host_netns()?;
            host.require_link("lo")?.rename("pwned")?;
            Ok(CniResult::default())
        }
        // Turns on forwarding in the host.
        "host-sysctl" => {
            wasm_cni_sdk::host_netns()?.set_sysctl("net.ipv4.ip_forward", "1")?;
            Ok(CniResult::default())
        }
        // Takes the host's device `hd0` into the container.
        "steal-device" => {
            let host = wasm_cni_sdk::host_netns()?;
            host.require_link("hd0")?.move_to(netns, Some("stolen"))?;
            Ok(CniResult::default())
        }
        // Delegates to a native IPAM binary (the reference `static`, in CNI_PATH).
        "native-ipam" => {
            let conf = r#"{"cniVersion":"1.0.0","name":"testnet","type":"hostile",
                "ipam":{"type":"static","addresses":[{"address":"10.1.2.3/24"}]}}"#;
            wasm_cni_sdk::ipam::add("static", conf)
        }
        // Spins 800 ms, then delegates to itself as IPAM in `outlive-inner` mode (for the
        // time limits of nested runs: see tests/tests/sandbox.rs).
        "outlive-outer" => {
            spin(800);
            let inner = r#"{"cniVersion":"1.0.0","name":"testnet","type":"hostile",
                "mode":"outlive-inner"}"#;
            wasm_cni_sdk::ipam::add("hostile", inner)
        }
        // Spins 1600 ms, then says so in the log and succeeds.
        "outlive-inner" => {
            spin(1600);
            wasm_cni_sdk::log::warn("inner run finished its 1600 ms");
            Ok(CniResult::default())
        }
        "recurse" => Err(CniError::new(
            codes::INTERNAL,
            format!("{}", recurse(0)),
            "",
        )),
        "alloc" => {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                hog.push(vec![1u8; 16 << 20]);
            }
        }
        // Reads the host's password hashes through the files capability.
        "read-shadow" => {
            let bytes = wasm_cni_sdk::files::read("/etc/shadow")?;
            Err(CniError::new(
                codes::INTERNAL,
                format!("read {} bytes of /etc/shadow", bytes.len()),
                "",
            ))
        }
        "panic" => panic!("hostile guest panics on purpose"),
        "loop" => loop {
            std::hint::black_box(0u64);
        },
        "flood" => loop {
            eprintln!("{}", "flood ".repeat(1000));
        },
        "bad-result" => Ok(CniResult {
            ips: vec![IpConfig {
                address: "10.0.0.1/24".parse().unwrap(),
                gateway: None,
                interface: Some(7),
            }],
            ..Default::default()
        }),
        // Reads `lo` through two handles, flips it through one, reads both again: both see
        // the change (no handle answers from what it read before it).
        "info-after-change" => {
            let (a, b) = (netns.require_link("lo")?, netns.require_link("lo")?);
            let was = a.info()?.up;
            if was {
                a.set_down()?
            } else {
                a.set_up()?
            }
            let (now_a, now_b) = (a.info()?.up, b.info()?.up);
            if now_a == was || now_b == was {
                return Err(CniError::new(
                    codes::INTERNAL,
                    format!("lo was up={was}, flipped, then read up={now_a} and up={now_b}"),
                    "",
                ));
            }
            Ok(CniResult::default())
        }
        // Behaves: proves the next invocation after a failure works.
        "ok" => {
            netns.require_link("lo")?.set_up()?;
            Ok(CniResult::default())
        }
        other => Err(CniError::new(
            codes::INVALID_NETWORK_CONFIG,
            format!("unknown mode {other}"),
            "",
        )),
    }
}

impl Plugin for Hostile {
    fn add(ctx: &Context, netns: &Netns) -> Result<CniResult, CniError> {
        misbehave(ctx, netns)
    }

    fn del(_ctx: &Context, _netns: Option<&Netns>) -> Result<(), CniError> {
        Ok(())
    }

    fn check(_ctx: &Context, _netns: &Netns) -> Result<(), CniError> {
        Ok(())
    }
}

wasm_cni_sdk::export_plugin!(Hostile, capabilities = ["host-netns", "ipam", "files"]);
