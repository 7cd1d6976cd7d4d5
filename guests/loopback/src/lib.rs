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

#[cfg(test)]
mod tests {
    use super::Loopback;
    use wasm_cni_sdk::fake::FakeHost;
    use wasm_cni_sdk::{CniResult, Context, Netns, Plugin};

    const CONF: &str = r#"{"cniVersion":"1.1.0","name":"testnet","type":"loopback"}"#;

    fn setup() -> (FakeHost, Netns, Context) {
        let fake = FakeHost::new();
        let netns = fake.add_netns("c1");
        let ctx = Context::new("c1", "eth0", "/var/run/netns/c1", CONF);
        (fake, netns, ctx)
    }

    #[test]
    fn add_brings_lo_up_and_reports_its_addresses() {
        let (fake, netns, ctx) = setup();
        let result = <Loopback as Plugin>::add(&ctx, &netns).unwrap();
        let lo = fake.link(&netns, "lo").unwrap();
        assert!(lo.up);
        assert_eq!(result.interfaces[0].name, "lo");
        assert_eq!(result.interfaces[0].mac, "00:00:00:00:00:00");
        assert_eq!(result.interfaces[0].sandbox, "/var/run/netns/c1");
        let ips: Vec<String> = result.ips.iter().map(|i| i.address.to_string()).collect();
        assert_eq!(ips, ["127.0.0.1/8", "::1/128"]);
        assert!(result.ips.iter().all(|i| i.interface == Some(0)));
    }

    #[test]
    fn add_passes_prev_result_through() {
        let (_fake, netns, ctx) = setup();
        let prev = CniResult {
            interfaces: vec![wasm_cni_sdk::Interface {
                name: "eth0".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let ctx = ctx.with_prev_result(prev.clone());
        assert_eq!(<Loopback as Plugin>::add(&ctx, &netns).unwrap(), prev);
    }

    #[test]
    fn add_refuses_a_non_loopback_address_on_lo() {
        let (_fake, netns, ctx) = setup();
        let lo = netns.require_link("lo").unwrap();
        lo.add_address(&"10.0.0.1/8".parse().unwrap()).unwrap();
        let e = <Loopback as Plugin>::add(&ctx, &netns).unwrap_err();
        assert_eq!(e.code, 999);
        assert_eq!(
            e.msg,
            "loopback interface found with non-loopback address \"10.0.0.1\""
        );
    }

    #[test]
    fn add_fails_when_lo_is_missing_or_the_host_fails() {
        let (fake, netns, ctx) = setup();
        fake.fail_next(
            "set-up",
            wasm_cni_sdk::NetErrorKind::Other,
            "operation not permitted",
        );
        let e = <Loopback as Plugin>::add(&ctx, &netns).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (999, "operation not permitted"));
        // A fake netns without lo (a removed one): the lookup fails.
        fake.remove_netns(&netns);
        assert!(<Loopback as Plugin>::add(&ctx, &netns).is_err());
    }

    #[test]
    fn del_brings_lo_down_is_idempotent_and_tolerates_no_netns() {
        let (fake, netns, ctx) = setup();
        <Loopback as Plugin>::add(&ctx, &netns).unwrap();
        for _ in 0..2 {
            <Loopback as Plugin>::del(&ctx, Some(&netns)).unwrap();
            assert!(!fake.link(&netns, "lo").unwrap().up);
        }
        <Loopback as Plugin>::del(&ctx, None).unwrap();
    }

    #[test]
    fn check_passes_after_add_and_fails_when_lo_is_down() {
        let (_fake, netns, ctx) = setup();
        <Loopback as Plugin>::add(&ctx, &netns).unwrap();
        <Loopback as Plugin>::check(&ctx, &netns).unwrap();
        netns.require_link("lo").unwrap().set_down().unwrap();
        let e = <Loopback as Plugin>::check(&ctx, &netns).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "loopback interface is down")
        );
    }
}
