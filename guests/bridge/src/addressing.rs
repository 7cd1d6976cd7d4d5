//! Turning the IPAM result into what ADD configures: gateways, default routes, the bridge's
//! gateway addresses and the container's routes. Pure: the kernel work is in `iface` and
//! `links`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use wasm_cni_sdk::{CniResult, Route, RouteSpec};

/// The gateway addresses to put on the bridge, per family, in the order of the IPs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gateways {
    pub v4: Vec<IpNet>,
    pub v6: Vec<IpNet>,
}

/// The first address of a subnet after its network address (the reference's `calcGatewayIP`).
pub fn gateway_of(address: &IpNet) -> IpAddr {
    match address.trunc().network() {
        IpAddr::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n).wrapping_add(1))),
        IpAddr::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n).wrapping_add(1))),
    }
}

fn default_net(v4: bool) -> IpNet {
    if v4 {
        IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).expect("/0 is valid")
    } else {
        IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).expect("/0 is valid")
    }
}

/// The reference's `calcGateways`: every IP points at the container interface
/// (`container_index`); with `is_gateway`, an IP without a gateway gets its subnet's first
/// address; with `is_default_gateway`, a default route through that gateway is appended for
/// each family that has no default route with a gateway yet. Returns the bridge's addresses.
pub fn calc_gateways(
    result: &mut CniResult,
    is_gateway: bool,
    is_default_gateway: bool,
    container_index: u32,
) -> Gateways {
    let mut gws = Gateways::default();
    let mut default_found = [false, false];
    for i in 0..result.ips.len() {
        let ip = &mut result.ips[i];
        let v4 = ip.address.addr().is_ipv4();
        ip.interface = Some(container_index);
        if ip.gateway.is_none() && is_gateway {
            ip.gateway = Some(gateway_of(&ip.address));
        }
        let (address, gateway) = (ip.address, ip.gateway);
        let family = usize::from(!v4);
        if is_default_gateway && !default_found[family] {
            let default = default_net(v4);
            default_found[family] = result
                .routes
                .iter()
                .any(|r| r.gw.is_some() && r.dst == default);
            if !default_found[family] {
                result.routes.push(Route::new(default, gateway));
                default_found[family] = true;
            }
        }
        if is_gateway {
            if let Some(gw) = gateway {
                let net = IpNet::new(gw, address.prefix_len()).expect("same family and prefix");
                if v4 {
                    gws.v4.push(net);
                } else {
                    gws.v6.push(net);
                }
            }
        }
    }
    gws
}

/// What to do so that `want` is on the bridge (the reference's `ensureAddr`), given the
/// bridge's addresses of the same family in kernel order: addresses to remove first, and
/// whether `want` must still be added. Another IPv4 address, or an overlapping IPv6 one, is a
/// conflict unless `force`; the conflicting address is returned as the error.
pub fn plan_gateway_address(
    existing: &[IpNet],
    want: IpNet,
    force: bool,
) -> Result<(Vec<IpNet>, bool), IpNet> {
    let mut remove = Vec::new();
    for a in existing
        .iter()
        .filter(|a| a.addr().is_ipv4() == want.addr().is_ipv4())
    {
        if *a == want {
            return Ok((remove, false));
        }
        if want.addr().is_ipv4() || a.contains(&want.addr()) || want.contains(&a.addr()) {
            if !force {
                return Err(*a);
            }
            remove.push(*a);
        }
    }
    Ok((remove, true))
}

/// The default gateway of each family: the first IP's gateway of that family (routes
/// without a gateway go through it, as in the reference's `ConfigureIface`).
pub fn default_gateways(result: &CniResult) -> (Option<IpAddr>, Option<IpAddr>) {
    let v4 = result
        .ips
        .iter()
        .filter_map(|ip| ip.gateway)
        .find(IpAddr::is_ipv4);
    let v6 = result
        .ips
        .iter()
        .filter_map(|ip| ip.gateway)
        .find(IpAddr::is_ipv6);
    (v4, v6)
}

/// The kernel route for a result route: its own gateway, else the family's default gateway;
/// universe scope unless the route says otherwise (the reference's `ip.AddRoute`).
pub fn route_spec(route: &Route, gateways: (Option<IpAddr>, Option<IpAddr>)) -> RouteSpec {
    let gw = route.gw.or(if route.dst.addr().is_ipv4() {
        gateways.0
    } else {
        gateways.1
    });
    RouteSpec {
        dst: route.dst.to_string(),
        gw: gw.map(|g| g.to_string()),
        mtu: route.mtu.filter(|m| *m > 0),
        advmss: route.advmss.filter(|m| *m > 0),
        priority: route.priority.filter(|p| *p > 0),
        table: route.table,
        scope: Some(route.scope.map_or(0, |s| s.min(255) as u8)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_cni_sdk::IpConfig;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(address: &str, gateway: Option<&str>) -> IpConfig {
        IpConfig {
            address: net(address),
            gateway: gateway.map(|g| g.parse().unwrap()),
            interface: None,
        }
    }

    fn route(dst: &str, gw: Option<&str>) -> Route {
        Route::new(net(dst), gw.map(|g| g.parse().unwrap()))
    }

    #[test]
    fn gateway_is_the_first_address_of_the_subnet() {
        assert_eq!(
            gateway_of(&net("10.1.2.77/24")),
            "10.1.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            gateway_of(&net("fd00:1::42/64")),
            "fd00:1::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ips_point_at_the_container_and_gateways_are_filled_in() {
        let mut r = CniResult {
            ips: vec![ip("10.1.2.5/24", None), ip("fd00::5/64", Some("fd00::fe"))],
            ..Default::default()
        };
        let gws = calc_gateways(&mut r, true, false, 2);
        assert!(r.ips.iter().all(|i| i.interface == Some(2)));
        assert_eq!(r.ips[0].gateway, Some("10.1.2.1".parse().unwrap()));
        assert_eq!(gws.v4, vec![net("10.1.2.1/24")]);
        assert_eq!(gws.v6, vec![net("fd00::fe/64")]);
        assert!(r.routes.is_empty());
    }

    #[test]
    fn without_gateway_mode_nothing_is_invented() {
        let mut r = CniResult {
            ips: vec![ip("10.1.2.5/24", None)],
            ..Default::default()
        };
        let gws = calc_gateways(&mut r, false, false, 2);
        assert_eq!(r.ips[0].gateway, None);
        assert_eq!(gws, Gateways::default());
    }

    #[test]
    fn default_routes_once_per_family() {
        let mut r = CniResult {
            ips: vec![
                ip("10.1.2.5/24", Some("10.1.2.1")),
                ip("10.9.0.5/16", None),
                ip("fd00::5/64", None),
            ],
            routes: vec![route("10.99.0.0/16", None)],
            ..Default::default()
        };
        calc_gateways(&mut r, true, true, 2);
        assert_eq!(
            r.routes,
            vec![
                route("10.99.0.0/16", None),
                route("0.0.0.0/0", Some("10.1.2.1")),
                route("::/0", Some("fd00::1")),
            ]
        );
    }

    #[test]
    fn an_ipam_default_route_with_a_gateway_is_kept() {
        let mut r = CniResult {
            ips: vec![ip("10.1.2.5/24", None)],
            routes: vec![route("0.0.0.0/0", Some("10.1.2.254"))],
            ..Default::default()
        };
        calc_gateways(&mut r, true, true, 2);
        assert_eq!(r.routes, vec![route("0.0.0.0/0", Some("10.1.2.254"))]);
        // Without a gateway it does not count: the reference appends its own.
        let mut r = CniResult {
            ips: vec![ip("10.1.2.5/24", None)],
            routes: vec![route("0.0.0.0/0", None)],
            ..Default::default()
        };
        calc_gateways(&mut r, true, true, 2);
        assert_eq!(r.routes.len(), 2);
    }

    #[test]
    fn gateway_address_plans() {
        let want = net("10.1.2.1/24");
        assert_eq!(plan_gateway_address(&[], want, false), Ok((vec![], true)));
        assert_eq!(
            plan_gateway_address(&[net("10.1.2.1/24")], want, false),
            Ok((vec![], false))
        );
        assert_eq!(
            plan_gateway_address(&[net("10.7.0.1/16")], want, false),
            Err(net("10.7.0.1/16"))
        );
        assert_eq!(
            plan_gateway_address(&[net("10.7.0.1/16")], want, true),
            Ok((vec![net("10.7.0.1/16")], true))
        );
        // IPv6: other subnets and link-local addresses may stay; overlapping ones may not.
        let want6 = net("fd00::1/64");
        let existing = [net("10.7.0.1/16"), net("fe80::1/64"), net("fd01::1/64")];
        assert_eq!(
            plan_gateway_address(&existing, want6, false),
            Ok((vec![], true))
        );
        assert_eq!(
            plan_gateway_address(&[net("fd00::2/64")], want6, false),
            Err(net("fd00::2/64"))
        );
    }

    #[test]
    fn routes_use_the_family_gateway() {
        let r = CniResult {
            ips: vec![
                ip("fd00::5/64", Some("fd00::1")),
                ip("10.1.2.5/24", Some("10.1.2.1")),
            ],
            ..Default::default()
        };
        let gws = default_gateways(&r);
        assert_eq!(gws.0, Some("10.1.2.1".parse().unwrap()));
        assert_eq!(gws.1, Some("fd00::1".parse().unwrap()));
        let spec = route_spec(&route("10.99.0.0/16", None), gws);
        assert_eq!(spec.gw.as_deref(), Some("10.1.2.1"));
        assert_eq!(spec.scope, Some(0));
        let spec = route_spec(&route("fd99::/48", Some("fd00::9")), gws);
        assert_eq!(spec.gw.as_deref(), Some("fd00::9"));
        let spec = route_spec(&route("10.99.0.0/16", None), (None, None));
        assert_eq!(spec.gw, None);
    }
}
