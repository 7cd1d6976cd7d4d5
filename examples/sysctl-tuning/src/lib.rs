//! sysctl-tuning: an example wasm-cni plugin, written only against the public SDK.
//!
//! A chained plugin (it runs after the plugin that created the interfaces) that sets
//! per-container sysctls inside the container's network namespace and passes the previous
//! result through unchanged:
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "mynet", "type": "sysctl-tuning",
//!  "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2", "net.ipv4.ip_forward": "1"}}
//! ```
//!
//! - ADD: every key must be under `net.` (the only sysctls a network namespace owns); they are
//!   written in key order, in the container netns only. The result is `prevResult`.
//! - DEL: nothing to undo (the values die with the namespace).
//! - CHECK: every key must have its configured value.
//!
//! Capabilities: none. The plugin touches only the container netns the host hands it, so
//! `export_plugin!` declares nothing and a node policy can grant it nothing (`capabilities = []`).

use std::collections::BTreeMap;

use serde::Deserialize;
use wasm_cni_sdk::{codes, CniError, CniResult, Context, NetError, Netns, Plugin};

/// The plugin's part of the network config (other keys are ignored).
#[derive(Debug, Default, Deserialize)]
struct Config {
    #[serde(default)]
    sysctl: BTreeMap<String, String>,
}

impl Config {
    fn load(ctx: &Context) -> Result<Config, CniError> {
        let conf: Config = ctx.config()?;
        for key in conf.sysctl.keys() {
            let dotted = key.replace('/', ".");
            if !dotted.starts_with("net.") || dotted.split('.').any(|p| p.is_empty() || p == "..") {
                return Err(CniError::new(
                    codes::INVALID_NETWORK_CONFIG,
                    format!(
                        "invalid sysctl key {key:?}: only keys under net. can be set per container"
                    ),
                    "",
                ));
            }
        }
        Ok(conf)
    }
}

fn chained(ctx: &Context) -> Result<&CniResult, CniError> {
    ctx.prev_result().ok_or_else(|| {
        CniError::new(
            codes::INVALID_NETWORK_CONFIG,
            "sysctl-tuning must be called as a chained plugin (no prevResult)",
            "",
        )
    })
}

/// A host error with the sysctl it was about (denials keep their code 100).
fn sysctl_error(key: &str, e: NetError) -> CniError {
    let mut err = CniError::from(e);
    err.msg = format!("sysctl {key}: {}", err.msg);
    err
}

pub struct SysctlTuning;

impl Plugin for SysctlTuning {
    fn add(ctx: &Context, netns: &Netns) -> Result<CniResult, CniError> {
        let conf = Config::load(ctx)?;
        let prev = chained(ctx)?;
        for (key, value) in &conf.sysctl {
            netns
                .set_sysctl(key, value)
                .map_err(|e| sysctl_error(key, e))?;
            wasm_cni_sdk::log::debug(&format!("set {key} = {value}"));
        }
        Ok(prev.clone())
    }

    fn del(_ctx: &Context, _netns: Option<&Netns>) -> Result<(), CniError> {
        Ok(())
    }

    fn check(ctx: &Context, netns: &Netns) -> Result<(), CniError> {
        let conf = Config::load(ctx)?;
        chained(ctx)?;
        for (key, want) in &conf.sysctl {
            let have = netns.sysctl(key).map_err(|e| sysctl_error(key, e))?;
            if have.trim() != want.trim() {
                return Err(CniError::new(
                    codes::INTERNAL,
                    format!("sysctl {key} is {:?}, expected {want:?}", have.trim()),
                    "",
                ));
            }
        }
        Ok(())
    }
}

// No capabilities beyond the container netns.
wasm_cni_sdk::export_plugin!(SysctlTuning);

#[cfg(test)]
mod tests {
    use super::SysctlTuning;
    use wasm_cni_sdk::fake::{FakeHost, FakeLink};
    use wasm_cni_sdk::{CniResult, Context, Interface, Netns, Plugin};

    fn conf(sysctl: &str) -> String {
        format!(r#"{{"cniVersion":"1.1.0","name":"net","type":"sysctl-tuning","sysctl":{sysctl}}}"#)
    }

    fn prev() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                sandbox: "/var/run/netns/c1".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A container netns with `eth0`, as the main plugin of the chain left it.
    fn setup(sysctl: &str) -> (FakeHost, Netns, Context) {
        let fake = FakeHost::new();
        let netns = fake.add_netns("c1");
        fake.add_link(&netns, FakeLink::new("eth0"));
        let ctx =
            Context::new("c1", "eth0", "/var/run/netns/c1", &conf(sysctl)).with_prev_result(prev());
        (fake, netns, ctx)
    }

    const TUNED: &str = r#"{"net.ipv4.conf.eth0.rp_filter":"2","net/ipv4/ip_forward":"1"}"#;

    #[test]
    fn add_sets_the_sysctls_in_the_container_only_and_passes_prev_result() {
        let (fake, netns, ctx) = setup(TUNED);
        let result = <SysctlTuning as Plugin>::add(&ctx, &netns).unwrap();
        assert_eq!(result, prev());
        assert_eq!(
            fake.sysctl(&netns, "net.ipv4.conf.eth0.rp_filter")
                .as_deref(),
            Some("2")
        );
        assert_eq!(
            fake.sysctl(&netns, "net.ipv4.ip_forward").as_deref(),
            Some("1")
        );
        assert_eq!(
            fake.sysctl(&fake.host(), "net.ipv4.ip_forward").as_deref(),
            Some("0")
        );
        assert_eq!(fake.logs().len(), 2);
    }

    #[test]
    fn check_verifies_every_value() {
        let (_fake, netns, ctx) = setup(TUNED);
        <SysctlTuning as Plugin>::add(&ctx, &netns).unwrap();
        <SysctlTuning as Plugin>::check(&ctx, &netns).unwrap();
        netns
            .set_sysctl("net.ipv4.conf.eth0.rp_filter", "0")
            .unwrap();
        let e = <SysctlTuning as Plugin>::check(&ctx, &netns).unwrap_err();
        assert_eq!(e.code, 999);
        assert_eq!(
            e.msg,
            r#"sysctl net.ipv4.conf.eth0.rp_filter is "0", expected "2""#
        );
    }

    #[test]
    fn keys_outside_net_are_invalid_config() {
        let (fake, netns, ctx) = setup(r#"{"kernel.hostname":"x"}"#);
        let e = <SysctlTuning as Plugin>::add(&ctx, &netns).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("kernel.hostname"), "{e:?}");
        assert_eq!(
            fake.sysctl(&netns, "net.ipv4.ip_forward").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn a_sysctl_of_a_missing_interface_fails_with_its_name() {
        let (_fake, netns, ctx) = setup(r#"{"net.ipv4.conf.eth9.rp_filter":"2"}"#);
        let e = <SysctlTuning as Plugin>::add(&ctx, &netns).unwrap_err();
        assert_eq!(e.code, 999);
        assert!(
            e.msg.starts_with("sysctl net.ipv4.conf.eth9.rp_filter:"),
            "{e:?}"
        );
    }

    #[test]
    fn without_prev_result_it_refuses() {
        let fake = FakeHost::new();
        let netns = fake.add_netns("c1");
        let ctx = Context::new("c1", "eth0", "/x", &conf(TUNED));
        assert_eq!(
            <SysctlTuning as Plugin>::add(&ctx, &netns)
                .unwrap_err()
                .code,
            7
        );
    }

    #[test]
    fn del_is_a_no_op_even_without_a_netns() {
        let (fake, netns, ctx) = setup(TUNED);
        <SysctlTuning as Plugin>::add(&ctx, &netns).unwrap();
        <SysctlTuning as Plugin>::del(&ctx, Some(&netns)).unwrap();
        <SysctlTuning as Plugin>::del(&ctx, None).unwrap();
        assert_eq!(
            fake.sysctl(&netns, "net.ipv4.ip_forward").as_deref(),
            Some("1")
        );
    }
}
