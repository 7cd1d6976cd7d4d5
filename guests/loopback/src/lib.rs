//! loopback: brings `lo` up in the container and reports its addresses (parity with the
//! reference loopback plugin; CNI_IFNAME is ignored, as there).

use wasm_cni_sdk::{codes, CniError, CniResult, Context, Interface, IpConfig, Netns, Plugin};

struct Loopback;

impl Plugin for Loopback {
    fn add(ctx: &Context, netns: &Netns) -> Result<CniResult, CniError> {
        let lo = netns.require_link("lo")?;
        lo.set_up()?;
        let addresses = lo.addresses()?;
        if let Some(bad) = addresses.iter().find(|a| !a.addr().is_loopback()) {
            return Err(CniError::new(
                codes::INTERNAL,
                format!(
                    "loopback interface found with non-loopback address \"{}\"",
                    bad.addr()
                ),
                "",
            ));
        }
        if let Some(prev) = ctx.prev_result() {
            return Ok(prev.clone());
        }
        let first = |v4: bool| addresses.iter().find(|a| a.addr().is_ipv4() == v4);
        Ok(CniResult {
            interfaces: vec![Interface {
                name: "lo".into(),
                mac: "00:00:00:00:00:00".into(),
                sandbox: ctx.netns_path.clone(),
                ..Default::default()
            }],
            ips: [first(true), first(false)]
                .into_iter()
                .flatten()
                .map(|a| IpConfig {
                    address: *a,
                    gateway: None,
                    interface: Some(0),
                })
                .collect(),
            ..Default::default()
        })
    }

    fn del(_ctx: &Context, netns: Option<&Netns>) -> Result<(), CniError> {
        // The netns is already gone (or was never given): nothing to undo.
        let Some(netns) = netns else { return Ok(()) };
        if let Some(lo) = netns.link("lo")? {
            lo.set_down()?;
        }
        Ok(())
    }

    fn check(_ctx: &Context, netns: &Netns) -> Result<(), CniError> {
        if !netns.require_link("lo")?.info()?.up {
            return Err(CniError::new(
                codes::INTERNAL,
                "loopback interface is down",
                "",
            ));
        }
        Ok(())
    }
}

wasm_cni_sdk::export_plugin!(Loopback);
