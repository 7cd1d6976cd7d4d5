//! The fake host behaves like the real one where plugins can tell.

use wasm_cni_sdk::fake::{FakeHost, FakeLink, FirewallCall, IpamVerb, LogLevel};
use wasm_cni_sdk::store::Store;
use wasm_cni_sdk::{host_netns, ipam, CniError, CniResult, NetErrorKind, RouteSpec};

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

fn route(dst: &str, gw: Option<&str>) -> RouteSpec {
    RouteSpec {
        dst: dst.into(),
        gw: gw.map(Into::into),
        mtu: None,
        advmss: None,
        priority: None,
        table: None,
        scope: None,
    }
}

#[test]
fn a_new_netns_has_lo_down_and_up_brings_its_addresses() {
    let fake = FakeHost::new();
    let ns = fake.add_netns("c1");
    let lo = ns.require_link("lo").unwrap();
    let info = lo.info().unwrap();
    assert_eq!((info.index, info.up, info.kind.as_str()), (1, false, ""));
    assert!(lo.addresses().unwrap().is_empty());
    lo.set_up().unwrap();
    assert_eq!(
        lo.addresses().unwrap(),
        vec![net("127.0.0.1/8"), net("::1/128")]
    );
    lo.set_down().unwrap();
    assert_eq!(lo.addresses().unwrap(), vec![net("127.0.0.1/8")]);
    let missing = ns.require_link("eth0").err().unwrap();
    assert!(missing.is_not_found(), "{missing:?}");
    assert!(ns.link("eth0").unwrap().is_none());
}

#[test]
fn addresses_and_routes_report_exists_and_not_found() {
    let fake = FakeHost::new();
    let ns = fake.add_netns("c1");
    fake.add_link(&ns, FakeLink::new("eth0"));
    let eth0 = ns.require_link("eth0").unwrap();
    eth0.add_address(&net("10.0.0.5/24")).unwrap();
    let dup = eth0.add_address(&net("10.0.0.5/24")).unwrap_err();
    assert!(matches!(dup.kind, NetErrorKind::Exists));
    assert!(eth0
        .del_address(&net("10.9.9.9/24"))
        .unwrap_err()
        .is_not_found());
    // Routes need the link up and a reachable gateway.
    let down = eth0
        .add_route(&route("0.0.0.0/0", Some("10.0.0.1")))
        .unwrap_err();
    assert!(matches!(down.kind, NetErrorKind::Other), "{down:?}");
    eth0.set_up().unwrap();
    let far = eth0
        .add_route(&route("0.0.0.0/0", Some("192.168.1.1")))
        .unwrap_err();
    assert!(far.message.contains("unreachable"), "{far:?}");
    eth0.add_route(&route("0.0.0.0/0", Some("10.0.0.1")))
        .unwrap();
    assert!(matches!(
        eth0.add_route(&route("0.0.0.0/0", Some("10.0.0.1")))
            .unwrap_err()
            .kind,
        NetErrorKind::Exists
    ));
    let routes = ns.routes(false).unwrap();
    let dsts: Vec<_> = routes.iter().map(|r| r.dst.as_str()).collect();
    assert_eq!(dsts, ["10.0.0.0/24", "0.0.0.0/0"]);
    assert_eq!(routes[1].gw.as_deref(), Some("10.0.0.1"));
    // Down: the routes through the link go.
    eth0.set_down().unwrap();
    assert!(ns.routes(false).unwrap().is_empty());
    assert!(eth0
        .del_route(&route("0.0.0.0/0", None))
        .unwrap_err()
        .is_not_found());
}

#[test]
fn veth_pairs_span_namespaces_and_die_together() {
    let fake = FakeHost::new();
    let host = fake.host();
    let ns = fake.add_netns("c1");
    let (here, peer) = ns
        .create_veth(
            "eth0",
            "veth1234",
            &host,
            Some(1400),
            Some("0A:58:0A:00:00:05"),
        )
        .unwrap();
    let (a, b) = (here.info().unwrap(), peer.info().unwrap());
    assert_eq!(
        (a.kind.as_str(), a.mtu, a.mac.as_str()),
        ("veth", 1400, "0a:58:0a:00:00:05")
    );
    assert_eq!(a.peer, Some(b.index));
    assert_eq!(b.peer, Some(a.index));
    let snap = fake.link(&host, "veth1234").unwrap();
    assert_eq!(snap.peer_netns.as_deref(), Some("c1"));
    let again = ns
        .create_veth("eth0", "vethx", &host, None, None)
        .err()
        .unwrap();
    assert!(matches!(again.kind, NetErrorKind::Exists));
    let bad = ns
        .create_veth("a-name-far-too-long", "v", &host, None, None)
        .err()
        .unwrap();
    assert!(matches!(bad.kind, NetErrorKind::InvalidArgument));
    here.delete().unwrap();
    assert!(fake.link(&host, "veth1234").is_none(), "the peer went too");
    assert!(peer.info().unwrap_err().is_not_found());
}

#[test]
fn move_to_renames_follows_the_handle_and_refuses_taken_names() {
    let fake = FakeHost::new();
    let host = fake.host();
    let ns = fake.add_netns("c1");
    fake.add_link(
        &host,
        FakeLink {
            pci_id: "0000:00:1f.6".into(),
            ..FakeLink::new("eth1")
        },
    );
    fake.add_link(&ns, FakeLink::new("taken"));
    let dev = host.require_link("eth1").unwrap();
    dev.add_address(&net("192.168.5.2/24")).unwrap();
    dev.set_up().unwrap();
    let clash = dev.move_to(&ns, Some("taken")).unwrap_err();
    assert!(matches!(clash.kind, NetErrorKind::Exists));
    assert!(fake.link(&host, "eth1").unwrap().up, "left where it was");
    dev.move_to(&ns, Some("net0")).unwrap();
    assert!(fake.link(&host, "eth1").is_none());
    let moved = fake.link(&ns, "net0").unwrap();
    assert_eq!(
        (moved.up, moved.addresses.len()),
        (false, 0),
        "down, flushed"
    );
    assert_eq!(dev.info().unwrap().name, "net0", "the handle follows");
    dev.set_alias("eth1").unwrap();
    // Rename needs the link down.
    dev.set_up().unwrap();
    assert!(matches!(
        dev.rename("x").unwrap_err().kind,
        NetErrorKind::Other
    ));
    // A removed netns gives plain devices back to the host.
    fake.remove_netns(&ns);
    let back = fake.link(&host, "net0").unwrap();
    assert_eq!(back.pci_id, "0000:00:1f.6");
    assert!(ns.links().unwrap_err().is_not_found());
    assert!(ns.link("lo").is_err());
}

#[test]
fn find_device_by_every_selector() {
    use wasm_cni_sdk::DeviceSelector as S;
    let fake = FakeHost::new();
    let host = fake.host();
    fake.add_link(
        &host,
        FakeLink {
            mac: "aa:bb:cc:dd:ee:01".into(),
            pci_id: "0000:03:00.0".into(),
            kernel_path: "/sys/devices/pci0000:00/0000:03:00.0/net/ens1f0".into(),
            ..FakeLink::new("ens1f0")
        },
    );
    let name = |s: S| {
        host.find_device(&s)
            .unwrap()
            .map(|l| l.info().unwrap().name)
    };
    let found = Some("ens1f0".to_string());
    assert_eq!(name(S::Name("ens1f0".into())), found);
    assert_eq!(name(S::Hwaddr("AA:BB:CC:DD:EE:01".into())), found);
    assert_eq!(name(S::PciBusId("0000:03:00.0".into())), found);
    assert_eq!(
        name(S::KernelPath(
            "/sys/devices/pci0000:00/0000:03:00.0/net".into()
        )),
        found
    );
    assert_eq!(name(S::Name("nope".into())), None);
}

#[test]
fn bridges_ports_and_vlans() {
    let fake = FakeHost::new();
    let host = fake.host();
    let br = host.create_bridge("cni0", Some(1450), true).unwrap();
    assert!(matches!(
        host.create_bridge("cni0", None, false).err().unwrap().kind,
        NetErrorKind::Exists
    ));
    let ns = fake.add_netns("c1");
    let (_, port) = ns.create_veth("eth0", "veth1", &host, None, None).unwrap();
    assert!(
        port.set_bridge_port(Some(true), None).is_err(),
        "not a port yet"
    );
    port.set_master(Some(&br)).unwrap();
    port.set_bridge_port(Some(true), None).unwrap();
    port.add_bridge_vlan(10, true, true, false).unwrap();
    assert!(port.del_bridge_vlan(11, false).unwrap_err().is_not_found());
    let snap = fake.link(&host, "veth1").unwrap();
    assert_eq!(snap.master, Some(br.info().unwrap().index));
    assert!(snap.hairpin);
    assert_eq!(snap.vlans[0].vid, 10);
    br.delete().unwrap();
    assert_eq!(fake.link(&host, "veth1").unwrap().master, None);
}

#[test]
fn host_netns_is_denied_until_granted() {
    let fake = FakeHost::new();
    fake.set_plugin_name("bridge");
    let denied = host_netns().err().unwrap();
    assert!(matches!(denied.kind, NetErrorKind::Denied));
    assert_eq!(
        denied.message,
        "plugin \"bridge\" is not granted the host-netns capability (needed for host-netns)"
    );
    assert_eq!(CniError::from(denied).code, 100);
    fake.grant("host-netns");
    let host = host_netns().unwrap();
    assert_eq!(fake.netns_name(&host), "host");
}

#[test]
fn sysctls_are_per_namespace_and_per_device_keys_need_the_device() {
    let fake = FakeHost::new();
    let ns = fake.add_netns("c1");
    assert_eq!(ns.sysctl("net.ipv4.ip_forward").unwrap(), "0");
    ns.set_sysctl("net/ipv4/ip_forward", "1").unwrap();
    assert_eq!(
        fake.sysctl(&ns, "net.ipv4.ip_forward").as_deref(),
        Some("1")
    );
    assert_eq!(
        fake.sysctl(&fake.host(), "net.ipv4.ip_forward").as_deref(),
        Some("0")
    );
    let no_dev = ns
        .set_sysctl("net.ipv4.conf.eth0.rp_filter", "2")
        .unwrap_err();
    assert!(no_dev.is_not_found(), "{no_dev:?}");
    fake.add_link(&ns, FakeLink::new("eth0"));
    assert_eq!(ns.sysctl("net.ipv4.conf.eth0.rp_filter").unwrap(), "0");
    ns.set_sysctl("net.ipv4.conf.eth0.rp_filter", "2").unwrap();
    assert_eq!(ns.sysctl("net.ipv4.conf.eth0.rp_filter").unwrap(), "2");
    assert!(matches!(
        ns.set_sysctl("net.ipv4.conf.eth0.rp_filter", "x")
            .unwrap_err()
            .kind,
        NetErrorKind::InvalidArgument
    ));
    assert!(matches!(
        ns.set_sysctl("kernel.hostname", "x").unwrap_err().kind,
        NetErrorKind::InvalidArgument
    ));
    assert!(ns
        .sysctl("net.ipv4.no_such_thing")
        .unwrap_err()
        .is_not_found());
}

#[test]
fn injected_failures_hit_the_next_call_only() {
    let fake = FakeHost::new();
    let ns = fake.add_netns("c1");
    fake.fail_next("set-up", NetErrorKind::Other, "boom");
    let lo = ns.require_link("lo").unwrap();
    assert_eq!(lo.set_up().unwrap_err().message, "boom");
    lo.set_up().unwrap();
}

#[test]
fn ipam_firewall_store_and_log_are_recorded() {
    let fake = FakeHost::new();
    let result = CniResult {
        ips: vec![wasm_cni_sdk::IpConfig {
            address: net("10.1.0.7/16"),
            gateway: None,
            interface: None,
        }],
        ..Default::default()
    };
    fake.set_ipam_result("host-local", result.clone());
    assert_eq!(ipam::add("host-local", "{}").unwrap(), result);
    ipam::del("host-local", "{}").unwrap();
    assert!(ipam::add("dhcp", "{}").is_err(), "nothing configured");
    fake.set_ipam_error("host-local", IpamVerb::Check, CniError::new(7, "bad", ""));
    assert_eq!(ipam::check("host-local", "{}").unwrap_err().code, 7);
    let verbs: Vec<_> = fake.ipam_calls().iter().map(|c| c.verb).collect();
    assert_eq!(
        verbs,
        [IpamVerb::Add, IpamVerb::Del, IpamVerb::Add, IpamVerb::Check]
    );
    fake.deny("ipam");
    assert_eq!(ipam::del("host-local", "{}").unwrap_err().code, 100);

    wasm_cni_sdk::firewall::masquerade_add("net1", "c1", &[net("10.1.0.7/16")], "").unwrap();
    assert_eq!(fake.masquerades().len(), 1);
    wasm_cni_sdk::firewall::masquerade_del("net1", "c1", "").unwrap();
    assert!(fake.masquerades().is_empty());
    assert!(matches!(
        fake.firewall_calls()[0],
        FirewallCall::MasqueradeAdd { .. }
    ));

    let store = Store::open().unwrap();
    {
        let locked = store.lock().unwrap();
        assert!(fake.store_locked());
        let ip = "10.1.0.7".parse().unwrap();
        assert!(locked.reserve(ip, "c1", "eth0", "0").unwrap());
        assert!(!locked.reserve(ip, "c2", "eth0", "0").unwrap());
        assert_eq!(locked.get_by_id("c1", "eth0").unwrap(), vec![ip]);
        assert_eq!(locked.last_reserved_ip("0").unwrap(), Some(ip));
    }
    assert!(!fake.store_locked(), "dropping the guard unlocks");
    assert_eq!(fake.reservations().len(), 1);
    fake.deny("ip-store");
    let denied = Store::open().err().unwrap();
    assert!(denied.is_denied());

    wasm_cni_sdk::log::warn("careful");
    assert_eq!(fake.logs()[0].level, LogLevel::Warn);
    assert_eq!(fake.logs()[0].message, "careful");
}

#[test]
fn each_thread_has_its_own_host() {
    let fake = FakeHost::new();
    fake.grant("host-netns");
    std::thread::spawn(|| {
        let _other = FakeHost::new();
        assert!(host_netns().is_err(), "not granted on this thread's host");
    })
    .join()
    .unwrap();
    assert!(host_netns().is_ok());
}
