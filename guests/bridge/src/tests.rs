//! ADD, DEL and CHECK end to end against the SDK's in-memory fake host: the flows, rollback
//! and the vlan paths (which the integration tests can only run on kernels with bridge vlan
//! filtering).

use wasm_cni_sdk::fake::{FakeHost, FakeLink, FirewallCall, IpamVerb};
use wasm_cni_sdk::{CniError, CniResult, Context, IpConfig, NetErrorKind, Netns, Plugin, Route};

use crate::Bridge;

const NETNS: &str = "/var/run/netns/c1";

fn ip(address: &str, gateway: Option<&str>) -> IpConfig {
    IpConfig {
        address: address.parse().unwrap(),
        gateway: gateway.map(|g| g.parse().unwrap()),
        interface: None,
    }
}

fn route(dst: &str, gw: Option<&str>) -> Route {
    Route::new(dst.parse().unwrap(), gw.map(|g| g.parse().unwrap()))
}

/// A fake host with the host netns granted, a container netns, and host-local answering
/// 10.1.0.5/24 (gateway 10.1.0.1) with a route to 10.99.0.0/16.
fn setup() -> (FakeHost, Netns) {
    let fake = FakeHost::new();
    fake.grant("host-netns");
    let c = fake.add_netns("c1");
    fake.set_ipam_result(
        "host-local",
        CniResult {
            ips: vec![ip("10.1.0.5/24", Some("10.1.0.1"))],
            routes: vec![route("10.99.0.0/16", None)],
            ..Default::default()
        },
    );
    (fake, c)
}

fn config(extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(
        r#"{{"cniVersion":"1.0.0","name":"net1","type":"bridge","bridge":"br0","ipam":{{"type":"host-local"}}{extra}}}"#
    )
}

fn ctx(extra: &str) -> Context {
    Context::new("cid", "eth0", NETNS, &config(extra))
}

fn add(extra: &str, c: &Netns) -> Result<CniResult, CniError> {
    Bridge::add(&ctx(extra), c)
}

#[test]
fn add_builds_the_bridge_the_veth_and_the_container_config() {
    let (fake, c) = setup();
    let r = add(r#""isDefaultGateway":true,"ipMasq":true"#, &c).unwrap();
    let host = fake.host();
    let br = fake.link(&host, "br0").unwrap();
    assert_eq!(br.kind, "bridge");
    assert!(br.up);
    assert_eq!(br.addresses, vec!["10.1.0.1/24".parse().unwrap()]);
    let veth_name = &r.interfaces[1].name;
    let veth = fake.link(&host, veth_name).unwrap();
    assert_eq!(veth.master, Some(br.index));
    assert!(veth.up && !veth.hairpin && !veth.isolated);
    let eth0 = fake.link(&c, "eth0").unwrap();
    assert_eq!((eth0.kind.as_str(), eth0.up), ("veth", true));
    assert_eq!(eth0.peer, Some(veth.index));
    assert_eq!(eth0.addresses, vec!["10.1.0.5/24".parse().unwrap()]);
    // Routes: the IPAM one through the gateway, and the default route.
    let routes = fake.routes(&c);
    for (dst, gw) in [("10.99.0.0/16", "10.1.0.1"), ("0.0.0.0/0", "10.1.0.1")] {
        assert!(
            routes
                .iter()
                .any(|r| r.dst.to_string() == dst
                    && r.gw.map(|g| g.to_string()).as_deref() == Some(gw)),
            "{dst} via {gw}: {routes:?}"
        );
    }
    assert_eq!(
        fake.sysctl(&host, "net.ipv4.ip_forward").as_deref(),
        Some("1")
    );
    assert_eq!(
        fake.sysctl(&c, "net.ipv6.conf.eth0.accept_dad").as_deref(),
        Some("0")
    );
    // The result, as the reference builds it.
    let names: Vec<&str> = r.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["br0", veth_name.as_str(), "eth0"]);
    assert_eq!(r.interfaces[0].mac, br.mac);
    assert_eq!(r.interfaces[1].mac, veth.mac);
    assert_eq!(r.interfaces[2].mac, eth0.mac);
    assert_eq!(r.interfaces[2].sandbox, NETNS);
    assert_eq!(r.ips[0].interface, Some(2));
    assert_eq!(
        r.routes,
        vec![
            route("10.99.0.0/16", None),
            route("0.0.0.0/0", Some("10.1.0.1"))
        ]
    );
    // IPAM got the whole config; the masquerade is keyed by network and container.
    let calls = fake.ipam_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].verb, calls[0].config.as_str()),
        (
            IpamVerb::Add,
            config(r#""isDefaultGateway":true,"ipMasq":true"#).as_str()
        )
    );
    assert_eq!(
        fake.masquerades()
            .get(&("net1".to_string(), "cid".to_string())),
        Some(&vec!["10.1.0.5/24".to_string()])
    );
}

#[test]
fn dns_from_the_config_replaces_the_ipam_one() {
    let (_fake, c) = setup();
    let r = add(r#""dns":{"nameservers":["10.0.0.53"]}"#, &c).unwrap();
    assert_eq!(r.dns.nameservers, vec!["10.0.0.53"]);
}

#[test]
fn an_existing_bridge_is_reused_and_a_lost_create_race_is_fine() {
    let (fake, c) = setup();
    // Another ADD created it between our lookup and our create.
    fake.fail_next("create-bridge", NetErrorKind::Exists, "File exists");
    add("", &c).unwrap();
    assert_eq!(
        fake.links(&fake.host())
            .iter()
            .filter(|l| l.kind == "bridge")
            .count(),
        1
    );
}

#[test]
fn a_gateway_address_added_concurrently_is_fine() {
    let (fake, _c) = setup();
    let host = fake.host();
    let br = host.create_bridge("br0", None, false).unwrap();
    // Another ADD put it there between our listing and our add.
    fake.fail_next("address-add", NetErrorKind::Exists, "File exists");
    crate::links::ensure_gateway_address(&br, "br0", "10.1.0.1/24".parse().unwrap(), false)
        .unwrap();
}

#[test]
fn a_link_that_is_not_a_bridge_is_refused() {
    let (fake, c) = setup();
    fake.add_link(&fake.host(), FakeLink::new("br0"));
    let e = add("", &c).unwrap_err();
    assert_eq!(
        e.msg,
        r#"failed to create bridge "br0": "br0" already exists but is not a bridge"#
    );
    assert!(fake.ipam_calls().is_empty());
}

#[test]
fn an_existing_ifname_fails_before_anything_is_created() {
    let (fake, c) = setup();
    fake.add_link(&c, FakeLink::new("eth0"));
    let e = add("", &c).unwrap_err();
    assert_eq!(e.msg, "container veth name provided (eth0) already exists");
    assert!(fake.ipam_calls().is_empty());
    assert!(fake.link(&fake.host(), "br0").is_none());
}

#[test]
fn without_the_host_netns_the_error_is_a_denial() {
    let (fake, c) = setup();
    fake.deny("host-netns");
    let e = add("", &c).unwrap_err();
    assert_eq!(e.code, 100);
    assert!(e.msg.contains("host-netns"), "{e:?}");
}

/// Nothing of the container is left: no veth on either side, the IP released, no masquerade,
/// no spoof check.
fn assert_rolled_back(fake: &FakeHost, c: &Netns) {
    assert_rolled_back_with(fake, c, 0);
}

/// [`assert_rolled_back`] with `others` host veths of other containers.
fn assert_rolled_back_with(fake: &FakeHost, c: &Netns, others: usize) {
    assert!(fake.link(c, "eth0").is_none());
    assert_eq!(
        fake.links(&fake.host())
            .iter()
            .filter(|l| l.kind == "veth")
            .count(),
        others
    );
    assert!(fake.masquerades().is_empty());
    assert!(fake.mac_spoof_checks().is_empty());
    let verbs: Vec<IpamVerb> = fake.ipam_calls().iter().map(|c| c.verb).collect();
    if verbs.contains(&IpamVerb::Add) {
        assert_eq!(
            verbs.last(),
            Some(&IpamVerb::Del),
            "the address was released"
        );
    }
}

#[test]
fn failures_after_the_veth_roll_everything_back() {
    // Before IPAM (enslaving), and after it (the container's address, a route).
    for op in ["set-master", "address-add", "route-add"] {
        let (fake, c) = setup();
        fake.fail_next(op, NetErrorKind::Other, "boom");
        let e = add(r#""ipMasq":true"#, &c).unwrap_err();
        assert!(e.msg.contains("boom"), "{op}: {e:?}");
        assert_rolled_back(&fake, &c);
    }
}

#[test]
fn a_masquerade_failure_rolls_back_too() {
    let (fake, c) = setup();
    fake.set_firewall_error(Some("nft: no such table"));
    let e = add(r#""ipMasq":true"#, &c).unwrap_err();
    assert!(e.msg.contains("nft"), "{e:?}");
    fake.set_firewall_error(None);
    assert!(fake.link(&c, "eth0").is_none());
    assert_eq!(fake.ipam_calls().last().unwrap().verb, IpamVerb::Del);
    // The rollback tried to remove what may have been half installed.
    assert!(matches!(
        fake.firewall_calls().last(),
        Some(FirewallCall::MasqueradeDel { .. })
    ));
}

#[test]
fn an_ipam_failure_leaves_no_veth_and_nothing_to_release() {
    let (fake, c) = setup();
    fake.set_ipam_error(
        "host-local",
        IpamVerb::Add,
        CniError::new(999, "no IP addresses available", ""),
    );
    let e = add("", &c).unwrap_err();
    assert_eq!(e.msg, "no IP addresses available");
    assert!(fake.link(&c, "eth0").is_none());
    assert!(fake.links(&fake.host()).iter().all(|l| l.kind != "veth"));
    assert_eq!(fake.ipam_calls().len(), 1, "no DEL for an ADD that failed");
}

#[test]
fn a_gateway_address_conflict_is_an_error_unless_forced() {
    let (fake, c) = setup();
    add(r#""isGateway":true"#, &c).unwrap();
    let host = fake.host();
    // Renumber the bridge behind the plugin's back.
    let br = fake.link(&host, "br0").unwrap();
    let other = host.link("br0").unwrap().unwrap();
    other.del_address(&br.addresses[0]).unwrap();
    other.add_address(&"10.7.0.1/16".parse().unwrap()).unwrap();
    let c2 = fake.add_netns("c2");
    let ctx2 = |extra: &str| Context::new("cid2", "eth0", "/var/run/netns/c2", &config(extra));
    let e = Bridge::add(&ctx2(r#""isGateway":true"#), &c2).unwrap_err();
    assert_eq!(
        e.msg,
        r#"failed to set bridge addr: "br0" already has an IP address different from 10.1.0.1/24"#
    );
    assert_rolled_back_with(&fake, &c2, 1);
    Bridge::add(&ctx2(r#""isGateway":true,"forceAddress":true"#), &c2).unwrap();
    assert_eq!(
        fake.link(&host, "br0").unwrap().addresses,
        vec!["10.1.0.1/24".parse().unwrap()]
    );
}

#[test]
fn port_flags_mtu_and_mac() {
    let (fake, c) = setup();
    let r = add(
        r#""hairpinMode":true,"portIsolation":true,"mtu":1400,"runtimeConfig":{"mac":"0a:58:0a:01:00:05"}"#,
        &c,
    )
    .unwrap();
    let veth = fake.link(&fake.host(), &r.interfaces[1].name).unwrap();
    assert!(veth.hairpin && veth.isolated);
    assert_eq!(veth.mtu, 1400);
    let eth0 = fake.link(&c, "eth0").unwrap();
    assert_eq!((eth0.mtu, eth0.mac.as_str()), (1400, "0a:58:0a:01:00:05"));
    assert_eq!(fake.link(&fake.host(), "br0").unwrap().mtu, 1400);
}

#[test]
fn vlan_access_port() {
    let (fake, c) = setup();
    let r = add(r#""vlan":100"#, &c).unwrap();
    let host = fake.host();
    assert!(fake.link(&host, "br0").unwrap().vlan_filtering);
    let veth = fake.link(&host, &r.interfaces[1].name).unwrap();
    let vlans: Vec<(u16, bool, bool)> = veth
        .vlans
        .iter()
        .map(|v| (v.vid, v.pvid, v.untagged))
        .collect();
    assert_eq!(vlans, vec![(100, true, true)]);
}

#[test]
fn vlan_trunk_tagged_and_the_default_vlan_removed_unless_preserved() {
    for preserve in [true, false] {
        let (fake, c) = setup();
        // (The fake gives new ports no default vlan 1, so its removal is not observable here.)
        let r = add(
            &format!(r#""vlanTrunk":[{{"minID":200,"maxID":201}},{{"id":300}}],"preserveDefaultVlan":{preserve}"#),
            &c,
        )
        .unwrap();
        let veth = fake.link(&fake.host(), &r.interfaces[1].name).unwrap();
        let vlans: Vec<(u16, bool, bool)> = veth
            .vlans
            .iter()
            .map(|v| (v.vid, v.pvid, v.untagged))
            .collect();
        assert_eq!(
            vlans,
            vec![
                (200, false, false),
                (201, false, false),
                (300, false, false)
            ]
        );
    }
}

#[test]
fn a_vlan_gateway_gets_its_own_interface() {
    let (fake, c) = setup();
    let r = add(r#""vlan":42,"isGateway":true"#, &c).unwrap();
    let host = fake.host();
    let gw = fake.link(&host, "br0.42").unwrap();
    assert_eq!(gw.kind, "veth");
    assert!(gw.up);
    assert_eq!(gw.addresses, vec!["10.1.0.1/24".parse().unwrap()]);
    assert!(fake.link(&host, "br0").unwrap().addresses.is_empty());
    // Its peer is a port of the bridge in the vlan.
    let port = fake
        .links(&host)
        .into_iter()
        .find(|l| Some(l.index) == gw.peer)
        .unwrap();
    assert_eq!(port.master, Some(fake.link(&host, "br0").unwrap().index));
    assert_eq!(
        port.vlans
            .iter()
            .map(|v| (v.vid, v.pvid, v.untagged))
            .collect::<Vec<_>>(),
        vec![(42, true, true)]
    );
    assert_eq!(r.interfaces.len(), 4);
    assert_eq!(
        (r.interfaces[3].name.as_str(), r.interfaces[3].mac.as_str()),
        ("br0.42", gw.mac.as_str())
    );
    // A second container reuses it.
    let c2 = fake.add_netns("c2");
    let ctx2 = Context::new(
        "cid2",
        "eth0",
        "/var/run/netns/c2",
        &config(r#""vlan":42,"isGateway":true"#),
    );
    let r2 = Bridge::add(&ctx2, &c2).unwrap();
    assert_eq!(r2.interfaces[3].name, "br0.42");
    assert_eq!(
        fake.links(&host)
            .iter()
            .filter(|l| l.name.starts_with("br0."))
            .count(),
        1
    );
}

#[test]
fn layer2_only_brings_the_interface_up_unless_disabled() {
    for (disable, up) in [(false, true), (true, false)] {
        let fake = FakeHost::new();
        fake.grant("host-netns");
        let c = fake.add_netns("c1");
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"bridge","disableContainerInterface":{disable}}}"#
        );
        let r = Bridge::add(&Context::new("cid", "eth0", NETNS, &conf), &c).unwrap();
        assert!(r.ips.is_empty());
        assert_eq!(fake.link(&c, "eth0").unwrap().up, up);
        assert!(
            fake.link(&fake.host(), "cni0").is_some(),
            "the default bridge name"
        );
        assert!(fake.ipam_calls().is_empty());
    }
}

#[test]
fn enabledad_sets_the_sysctls() {
    let (fake, c) = setup();
    add(r#""enabledad":true"#, &c).unwrap();
    assert_eq!(
        fake.sysctl(&c, "net.ipv6.conf.eth0.accept_dad").as_deref(),
        Some("1")
    );
}

#[test]
fn del_removes_the_veth_releases_and_unmasquerades_and_is_idempotent() {
    let (fake, c) = setup();
    add(r#""ipMasq":true,"ipMasqBackend":"iptables""#, &c).unwrap();
    let ctx = ctx(r#""ipMasq":true,"ipMasqBackend":"iptables""#);
    for _ in 0..2 {
        Bridge::del(&ctx, Some(&c)).unwrap();
        assert!(fake.link(&c, "eth0").is_none());
        assert!(fake.links(&fake.host()).iter().all(|l| l.kind != "veth"));
        assert!(fake.link(&fake.host(), "br0").is_some(), "the bridge stays");
        assert!(fake.masquerades().is_empty());
        assert_eq!(fake.ipam_calls().last().unwrap().verb, IpamVerb::Del);
        assert!(matches!(
            fake.firewall_calls().last(),
            Some(FirewallCall::MasqueradeDel { backend, .. }) if backend == "iptables"
        ));
    }
    // Without a netns: IPAM DEL and masquerade removal still happen.
    let n = fake.ipam_calls().len();
    Bridge::del(&ctx, None).unwrap();
    assert_eq!(fake.ipam_calls().len(), n + 1);
}

#[test]
fn check_passes_and_notices_what_is_gone() {
    let (fake, c) = setup();
    let extra = r#""isDefaultGateway":true"#;
    let r = add(extra, &c).unwrap();
    let check_ctx = || ctx(extra).with_prev_result(r.clone());
    Bridge::check(&check_ctx(), &c).unwrap();
    assert_eq!(fake.ipam_calls().last().unwrap().verb, IpamVerb::Check);
    // Without prevResult.
    assert_eq!(
        Bridge::check(&ctx(extra), &c).unwrap_err().msg,
        "Required prevResult missing"
    );
    // A route gone.
    let eth0 = c.link("eth0").unwrap().unwrap();
    eth0.del_route(&crate::addressing::route_spec(
        &route("10.99.0.0/16", None),
        (Some("10.1.0.1".parse().unwrap()), None),
    ))
    .unwrap();
    assert_eq!(
        Bridge::check(&check_ctx(), &c).unwrap_err().msg,
        "Expected Route {Dst:{IP:10.99.0.0 Mask:ffff0000} GW:<nil>} not found in routing table"
    );
    // The address gone.
    eth0.del_address(&"10.1.0.5/24".parse().unwrap()).unwrap();
    assert_eq!(
        Bridge::check(&check_ctx(), &c).unwrap_err().msg,
        "Failed to match addr 10.1.0.5/24 on interface eth0"
    );
    // The veth off the bridge.
    let veth = fake.host().link(&r.interfaces[1].name).unwrap().unwrap();
    veth.set_master(None).unwrap();
    assert_eq!(
        Bridge::check(&check_ctx(), &c).unwrap_err().msg,
        "CNI veth created for bridge br0 was not found"
    );
    // Another MAC in prevResult.
    let mut other = r.clone();
    other.interfaces[2].mac = "02:00:00:00:00:01".into();
    let e = Bridge::check(&ctx(extra).with_prev_result(other), &c).unwrap_err();
    assert!(
        e.msg
            .starts_with("Interface eth0 Mac 02:00:00:00:00:01 doesn't match container Mac"),
        "{e:?}"
    );
}

#[test]
fn cni_args_mac_and_unknown_args() {
    let (fake, c) = setup();
    let r = Bridge::add(
        &ctx("").with_args(&[("IgnoreUnknown", "1"), ("MAC", "0a:58:0a:01:00:09")]),
        &c,
    )
    .unwrap();
    assert_eq!(r.interfaces[2].mac, "0a:58:0a:01:00:09");
    let c2 = fake.add_netns("c2");
    let e = Bridge::add(&ctx("").with_args(&[("K8S_POD_NAME", "web")]), &c2).unwrap_err();
    assert_eq!(e.msg, r#"ARGS: unknown args ["K8S_POD_NAME=web"]"#);
}

#[test]
fn macspoofchk_pins_the_container_mac_on_its_host_veth() {
    let (fake, c) = setup();
    let r = add(
        r#""macspoofchk":true,"runtimeConfig":{"mac":"0a:58:0a:01:00:05"}"#,
        &c,
    )
    .unwrap();
    let checks = fake.mac_spoof_checks();
    assert_eq!(checks.len(), 1, "{checks:?}");
    let check = &checks[&("cid".to_string(), "eth0".to_string())];
    assert_eq!(check.network, "net1");
    assert_eq!(check.host_ifname, r.interfaces[1].name);
    assert_eq!(check.mac, "0a:58:0a:01:00:05");
    assert_eq!(check.mac, r.interfaces[2].mac);
    // Installed before IPAM, as the reference does.
    assert!(matches!(
        fake.firewall_calls().first(),
        Some(FirewallCall::MacSpoofCheckAdd { .. })
    ));
    // Without the option nothing is installed, on a layer-2 network too.
    let (fake, c) = setup();
    add("", &c).unwrap();
    assert!(fake.firewall_calls().is_empty());
    let (fake, c) = setup();
    let l2 =
        r#"{"cniVersion":"1.0.0","name":"net1","type":"bridge","bridge":"br0","macspoofchk":true}"#;
    let r = Bridge::add(&Context::new("cid", "eth0", NETNS, l2), &c).unwrap();
    assert_eq!(
        fake.mac_spoof_checks()[&("cid".to_string(), "eth0".to_string())].host_ifname,
        r.interfaces[1].name
    );
    Bridge::del(&Context::new("cid", "eth0", NETNS, l2), Some(&c)).unwrap();
    assert!(fake.mac_spoof_checks().is_empty());
}

#[test]
fn a_failure_after_the_spoof_check_removes_it() {
    // IPAM fails after the check was installed; so does the container's route.
    let (fake, c) = setup();
    fake.set_ipam_error(
        "host-local",
        IpamVerb::Add,
        CniError::new(999, "no IP addresses available", ""),
    );
    let e = add(r#""macspoofchk":true"#, &c).unwrap_err();
    assert_eq!(e.msg, "no IP addresses available");
    assert!(fake.mac_spoof_checks().is_empty());
    assert!(matches!(
        fake.firewall_calls().last(),
        Some(FirewallCall::MacSpoofCheckDel { container_id, ifname, .. })
            if container_id == "cid" && ifname == "eth0"
    ));
    assert!(fake.link(&c, "eth0").is_none());
    assert!(fake.links(&fake.host()).iter().all(|l| l.kind != "veth"));
    let (fake, c) = setup();
    fake.fail_next("route-add", NetErrorKind::Other, "boom");
    add(r#""macspoofchk":true,"ipMasq":true"#, &c).unwrap_err();
    assert!(fake.mac_spoof_checks().is_empty());
    assert_rolled_back(&fake, &c);
}

#[test]
fn a_spoof_check_failure_fails_the_add_before_ipam() {
    let (fake, c) = setup();
    fake.set_firewall_error(Some("nft: Could not process rule"));
    let e = add(r#""macspoofchk":true"#, &c).unwrap_err();
    assert!(e.msg.contains("nft"), "{e:?}");
    fake.set_firewall_error(None);
    assert!(fake.ipam_calls().is_empty(), "no address was taken");
    assert_rolled_back(&fake, &c);
    // The rollback tried to remove what may have been half installed.
    assert!(matches!(
        fake.firewall_calls().last(),
        Some(FirewallCall::MacSpoofCheckDel { .. })
    ));
}

#[test]
fn del_removes_the_spoof_check_also_without_a_netns_and_is_idempotent() {
    let (fake, c) = setup();
    let extra = r#""macspoofchk":true,"ipMasq":true"#;
    add(extra, &c).unwrap();
    assert_eq!(fake.mac_spoof_checks().len(), 1);
    assert_eq!(fake.masquerades().len(), 1);
    for netns in [None, Some(&c), None] {
        Bridge::del(&ctx(extra), netns).unwrap();
        assert!(fake.mac_spoof_checks().is_empty());
        assert!(fake.masquerades().is_empty());
    }
    let dels = fake
        .firewall_calls()
        .iter()
        .filter(|call| matches!(call, FirewallCall::MacSpoofCheckDel { .. }))
        .count();
    assert_eq!(dels, 3);
    // A failing removal is the DEL's error (the runtime retries).
    fake.set_firewall_error(Some("nft: Operation not permitted"));
    let e = Bridge::del(&ctx(extra), Some(&c)).unwrap_err();
    assert!(e.msg.contains("Operation not permitted"), "{e:?}");
}
