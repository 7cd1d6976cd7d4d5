//! Allocation over a locked store: round-robin from the range set's last reservation, the
//! reference's duplicate and exhaustion checks, requested addresses, release and GC.
//!
//! Everything here is plain Rust over the [`Reservations`] trait: the plugin hands it the
//! host's store, the tests an in-memory one.

use std::net::IpAddr;

use ipnet::IpNet;
use wasm_cni_sdk::cni_types::config::GcAttachment;
use wasm_cni_sdk::store::Reservation;
use wasm_cni_sdk::{CniError, IpConfig};

use crate::config::{failure, IpamConfig};
use crate::range::{next_ip, Range, RangeSet};

/// A network's reservations, locked for the duration of one verb.
pub trait Reservations {
    /// Reserve `ip` for (id, ifname) and make it `range_id`'s last reservation; false when
    /// it is taken.
    fn reserve(
        &mut self,
        ip: IpAddr,
        id: &str,
        ifname: &str,
        range_id: &str,
    ) -> Result<bool, CniError>;
    fn last_reserved_ip(&mut self, range_id: &str) -> Result<Option<IpAddr>, CniError>;
    fn get_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, CniError>;
    fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<(), CniError>;
    fn release(&mut self, ip: IpAddr) -> Result<(), CniError>;
    fn list(&mut self) -> Result<Vec<Reservation>, CniError>;
}

/// The reference's walk over a range set: start after the last reservation (when it is in the
/// set; else at the first range's start), go to the end of that range, continue with the next
/// range (wrapping around), stop on returning to the first candidate. Each range's gateway is
/// skipped.
pub struct RangeIter<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<IpAddr>,
    first: Option<IpAddr>,
}

impl<'a> RangeIter<'a> {
    pub fn new(set: &'a RangeSet, last_reserved: Option<IpAddr>) -> RangeIter<'a> {
        let resume = last_reserved.and_then(|ip| {
            let idx = set.ranges().iter().position(|r| r.contains(ip))?;
            Some((idx, ip.to_canonical()))
        });
        match resume {
            Some((idx, ip)) => RangeIter {
                set,
                idx,
                cur: Some(ip),
                first: None,
            },
            None => RangeIter {
                set,
                idx: 0,
                cur: None,
                first: Some(set.ranges()[0].start),
            },
        }
    }
}

impl<'a> Iterator for RangeIter<'a> {
    /// A candidate and the range it belongs to.
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        let ranges = self.set.ranges();
        loop {
            let mut r = &ranges[self.idx];
            let cur = match self.cur {
                None => {
                    self.first = Some(r.start);
                    r.start
                }
                Some(c) if c == r.end => {
                    self.idx = (self.idx + 1) % ranges.len();
                    r = &ranges[self.idx];
                    r.start
                }
                Some(c) => next_ip(c),
            };
            if self.cur.is_some() {
                match self.first {
                    None => self.first = Some(cur),
                    Some(first) if first == cur => return None,
                    Some(_) => {}
                }
            }
            self.cur = Some(cur);
            if cur != r.gateway {
                return Some((cur, r));
            }
        }
    }
}

fn ip_config(ip: IpAddr, r: &Range) -> IpConfig {
    IpConfig {
        address: IpNet::new(ip, r.prefix).expect("the prefix of a checked range"),
        gateway: Some(r.gateway),
        interface: None,
    }
}

/// Prefix a failure's message, keeping its code.
fn context(prefix: &str, e: CniError) -> CniError {
    CniError {
        msg: format!("{prefix}{}", e.msg),
        ..e
    }
}

/// One address from range set `idx` for (id, ifname): `requested` when given (and free),
/// else the next free one round-robin.
pub fn allocate(
    store: &mut impl Reservations,
    set: &RangeSet,
    idx: usize,
    id: &str,
    ifname: &str,
    requested: Option<IpAddr>,
) -> Result<IpConfig, CniError> {
    let range_id = idx.to_string();
    if let Some(ip) = requested {
        let r = set
            .range_for(ip)
            .ok_or_else(|| failure(format!("{ip} not in range set {set}")))?;
        if ip == r.gateway {
            return Err(failure(format!("requested ip {ip} is subnet's gateway")));
        }
        if !store.reserve(ip, id, ifname, &range_id)? {
            return Err(failure(format!(
                "requested IP address {ip} is not available in range set {set}"
            )));
        }
        return Ok(ip_config(ip, r));
    }
    // The spec does not allow a second allocation for the same attachment.
    if let Some(ip) = store
        .get_by_id(id, ifname)?
        .into_iter()
        .find(|ip| set.contains(*ip))
    {
        return Err(failure(format!(
            "{ip} has been allocated to {id}, duplicate allocation is not allowed"
        )));
    }
    // A cursor that cannot be read only costs the round-robin this once, as in the reference.
    let last = store.last_reserved_ip(&range_id).unwrap_or_else(|e| {
        wasm_cni_sdk::log::warn(&format!("Error retrieving last reserved ip: {}", e.msg));
        None
    });
    for (ip, r) in RangeIter::new(set, last) {
        if store.reserve(ip, id, ifname, &range_id)? {
            return Ok(ip_config(ip, r));
        }
    }
    Err(failure(format!(
        "no IP addresses available in range set: {set}"
    )))
}

/// ADD: one address per range set, requested ones where they fit. On failure, whatever this
/// call reserved is released again (only that: unlike the reference, which releases every
/// address of the attachment, an earlier allocation is left alone).
pub fn allocate_all(
    store: &mut impl Reservations,
    conf: &IpamConfig,
    id: &str,
    ifname: &str,
) -> Result<Vec<IpConfig>, CniError> {
    let mut ips = Vec::new();
    if let Err(e) = allocate_each(store, conf, id, ifname, &mut ips) {
        for ip in &ips {
            // Best effort: the error that stopped the ADD is the one to report.
            let _ = store.release(ip.address.addr());
        }
        return Err(e);
    }
    Ok(ips)
}

/// The body of [`allocate_all`]: `ips` collects what has been reserved so far.
fn allocate_each(
    store: &mut impl Reservations,
    conf: &IpamConfig,
    id: &str,
    ifname: &str,
    ips: &mut Vec<IpConfig>,
) -> Result<(), CniError> {
    let mut requested = conf.requested.clone();
    for (idx, set) in conf.ranges.iter().enumerate() {
        let wanted = requested
            .iter()
            .position(|ip| set.contains(*ip))
            .map(|i| requested.remove(i));
        let ip = allocate(store, set, idx, id, ifname, wanted)
            .map_err(|e| context(&format!("failed to allocate for range {idx}: "), e))?;
        ips.push(ip);
    }
    if !requested.is_empty() {
        let left: Vec<String> = requested.iter().map(IpAddr::to_string).collect();
        return Err(failure(format!(
            "failed to allocate all requested IPs: {}",
            left.join(" ")
        )));
    }
    Ok(())
}

/// GC: release every reservation whose attachment is not among `valid`. A reservation in
/// the old format (container id only) is kept while any valid attachment has its container.
/// Returns what was released.
pub fn collect_garbage(
    store: &mut impl Reservations,
    valid: &[GcAttachment],
) -> Result<Vec<Reservation>, CniError> {
    let keep = |r: &Reservation| {
        valid.iter().any(|a| {
            a.container_id.trim() == r.container_id && (r.ifname.is_empty() || a.ifname == r.ifname)
        })
    };
    let mut released = Vec::new();
    for r in store.list()? {
        if !keep(&r) {
            store.release(r.ip)?;
            released.push(r);
        }
    }
    Ok(released)
}

#[cfg(test)]
pub mod fake {
    //! An in-memory store with the disk store's semantics.

    use std::collections::BTreeMap;

    use super::*;

    #[derive(Default, Debug)]
    pub struct FakeStore {
        /// address → file content, as the disk store writes it.
        pub files: BTreeMap<IpAddr, String>,
        pub last: BTreeMap<String, IpAddr>,
        /// Fail `reserve` after this many calls (to test rollback).
        pub fail_reserve_after: Option<usize>,
        pub reserve_calls: usize,
    }

    impl FakeStore {
        pub fn owner(&self, ip: &str) -> Option<&str> {
            self.files
                .get(&ip.parse::<IpAddr>().unwrap())
                .map(String::as_str)
        }
    }

    impl Reservations for FakeStore {
        fn reserve(
            &mut self,
            ip: IpAddr,
            id: &str,
            ifname: &str,
            range_id: &str,
        ) -> Result<bool, CniError> {
            self.reserve_calls += 1;
            if self
                .fail_reserve_after
                .is_some_and(|n| self.reserve_calls > n)
            {
                return Err(failure("disk full"));
            }
            if self.files.contains_key(&ip) {
                return Ok(false);
            }
            self.files.insert(ip, format!("{}\r\n{ifname}", id.trim()));
            self.last.insert(range_id.to_string(), ip);
            Ok(true)
        }
        fn last_reserved_ip(&mut self, range_id: &str) -> Result<Option<IpAddr>, CniError> {
            Ok(self.last.get(range_id).copied())
        }
        fn get_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
            let (key, legacy) = (format!("{}\r\n{ifname}", id.trim()), id.trim().to_string());
            Ok(self
                .files
                .iter()
                .filter(|(_, c)| c.trim() == key || c.trim() == legacy)
                .map(|(ip, _)| *ip)
                .collect())
        }
        fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<(), CniError> {
            let key = format!("{}\r\n{ifname}", id.trim());
            let before = self.files.len();
            self.files.retain(|_, c| c.trim() != key);
            if self.files.len() == before {
                self.files.retain(|_, c| c.trim() != id.trim());
            }
            Ok(())
        }
        fn release(&mut self, ip: IpAddr) -> Result<(), CniError> {
            self.files.remove(&ip);
            Ok(())
        }
        fn list(&mut self) -> Result<Vec<Reservation>, CniError> {
            Ok(self
                .files
                .iter()
                .map(|(ip, c)| {
                    let (id, ifname) = c.trim().split_once("\r\n").unwrap_or((c.trim(), ""));
                    Reservation {
                        ip: *ip,
                        container_id: id.into(),
                        ifname: ifname.into(),
                    }
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeStore;
    use super::*;
    use crate::config::load;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn conf(ipam: &str) -> IpamConfig {
        load(
            &format!(r#"{{"cniVersion":"1.0.0","name":"n","ipam":{ipam}}}"#),
            &[],
        )
        .unwrap()
    }

    fn conf_args(ipam: &str, args: &[(&str, &str)]) -> IpamConfig {
        let args: Vec<(String, String)> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(
            &format!(r#"{{"cniVersion":"1.0.0","name":"n","ipam":{ipam}}}"#),
            &args,
        )
        .unwrap()
    }

    fn addrs(ips: &[IpConfig]) -> Vec<String> {
        ips.iter().map(|c| c.address.to_string()).collect()
    }

    fn walk(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        RangeIter::new(set, last.map(ip))
            .map(|(ip, _)| ip.to_string())
            .collect()
    }

    #[test]
    fn iteration_skips_the_gateway_and_wraps_from_the_last_reservation() {
        let c = conf(r#"{"subnet":"10.0.0.0/29"}"#);
        let set = &c.ranges[0];
        assert_eq!(
            walk(set, None),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        assert_eq!(
            walk(set, Some("10.0.0.4")),
            ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
        // A cursor outside the set (the ranges changed) starts over.
        assert_eq!(walk(set, Some("10.9.0.4")).len(), 5);
        assert_eq!(walk(set, Some("10.0.0.6"))[0], "10.0.0.2");

        let c = conf(
            r#"{"ranges":[[{"subnet":"10.0.0.0/30"},{"subnet":"10.0.1.0/30","gateway":"10.0.1.2"}]]}"#,
        );
        assert_eq!(walk(&c.ranges[0], None), ["10.0.0.2", "10.0.1.1"]);
        assert_eq!(
            walk(&c.ranges[0], Some("10.0.0.2")),
            ["10.0.1.1", "10.0.0.2"]
        );

        // A range that holds only its gateway yields nothing (and ends).
        let c = conf(r#"{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.1","rangeEnd":"10.0.0.1"}"#);
        assert!(walk(&c.ranges[0], None).is_empty());
        assert!(walk(&c.ranges[0], Some("10.0.0.1")).is_empty());

        let c = conf(r#"{"subnet":"fd00::/126"}"#);
        assert_eq!(walk(&c.ranges[0], None), ["fd00::2", "fd00::3"]);
    }

    #[test]
    fn round_robin_duplicates_and_exhaustion() {
        let c = conf(r#"{"subnet":"10.0.0.0/29","routes":[{"dst":"0.0.0.0/0"}]}"#);
        let mut s = FakeStore::default();
        let first = allocate_all(&mut s, &c, "c1", "eth0").unwrap();
        assert_eq!(addrs(&first), ["10.0.0.2/29"]);
        assert_eq!(first[0].gateway, Some(ip("10.0.0.1")));
        assert_eq!(first[0].interface, None);
        assert_eq!(s.owner("10.0.0.2"), Some("c1\r\neth0"));

        let e = allocate_all(&mut s, &c, "c1", "eth0").unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "failed to allocate for range 0: 10.0.0.2 has been allocated to c1, duplicate allocation is not allowed")
        );
        // Another interface of the same container is another attachment.
        assert_eq!(
            addrs(&allocate_all(&mut s, &c, "c1", "net1").unwrap()),
            ["10.0.0.3/29"]
        );

        // Released addresses are not reused before the range has been walked through.
        s.release_by_id("c1", "eth0").unwrap();
        for (i, want) in ["10.0.0.4/29", "10.0.0.5/29", "10.0.0.6/29", "10.0.0.2/29"]
            .iter()
            .enumerate()
        {
            assert_eq!(
                addrs(&allocate_all(&mut s, &c, &format!("x{i}"), "eth0").unwrap()),
                [*want]
            );
        }
        let e = allocate_all(&mut s, &c, "late", "eth0").unwrap_err();
        assert_eq!(e.msg, "failed to allocate for range 0: no IP addresses available in range set: 10.0.0.1-10.0.0.6");
        assert_eq!(s.files.len(), 5);
    }

    #[test]
    fn legacy_reservations_count_as_duplicates() {
        let c = conf(r#"{"subnet":"10.0.0.0/24"}"#);
        let mut s = FakeStore::default();
        s.files.insert(ip("10.0.0.9"), "old".into());
        let e = allocate_all(&mut s, &c, "old", "eth0").unwrap_err();
        assert!(e
            .msg
            .ends_with("10.0.0.9 has been allocated to old, duplicate allocation is not allowed"));
    }

    #[test]
    fn dual_stack_takes_one_address_per_range_set() {
        let c = conf(
            r#"{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64","rangeStart":"fd00::10"}]]}"#,
        );
        let mut s = FakeStore::default();
        let ips = allocate_all(&mut s, &c, "c1", "eth0").unwrap();
        assert_eq!(addrs(&ips), ["10.0.0.2/24", "fd00::10/64"]);
        assert_eq!(ips[1].gateway, Some(ip("fd00::1")));
        assert_eq!(s.last.get("0"), Some(&ip("10.0.0.2")));
        assert_eq!(s.last.get("1"), Some(&ip("fd00::10")));
    }

    #[test]
    fn requested_addresses() {
        let ipam = r#"{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64"}]]}"#;
        let mut s = FakeStore::default();
        let c = conf_args(ipam, &[("IP", "10.0.0.50")]);
        assert_eq!(
            addrs(&allocate_all(&mut s, &c, "c1", "eth0").unwrap()),
            ["10.0.0.50/24", "fd00::2/64"]
        );
        // Taken.
        let e = allocate_all(&mut s, &c, "c2", "eth0").unwrap_err();
        assert_eq!(
            e.msg,
            "failed to allocate for range 0: requested IP address 10.0.0.50 is not available in range set 10.0.0.1-10.0.0.254"
        );
        // The gateway.
        let e = allocate_all(
            &mut s,
            &conf_args(ipam, &[("IP", "10.0.0.1")]),
            "c3",
            "eth0",
        )
        .unwrap_err();
        assert_eq!(
            e.msg,
            "failed to allocate for range 0: requested ip 10.0.0.1 is subnet's gateway"
        );
        // Both families at once (beyond the reference: a comma-separated CNI_ARGS IP).
        let c = conf_args(ipam, &[("IP", "10.0.0.60,fd00::60")]);
        assert_eq!(
            addrs(&allocate_all(&mut s, &c, "c4", "eth0").unwrap()),
            ["10.0.0.60/24", "fd00::60/64"]
        );
        // Outside every range set: rolled back, the leftover named.
        let before = s.files.clone();
        let e = allocate_all(
            &mut s,
            &conf_args(ipam, &[("IP", "192.168.0.5")]),
            "c5",
            "eth0",
        )
        .unwrap_err();
        assert_eq!(e.msg, "failed to allocate all requested IPs: 192.168.0.5");
        assert_eq!(s.files, before);
        // Two in one range set: the second is left over.
        let e = allocate_all(
            &mut s,
            &conf_args(ipam, &[("IP", "10.0.0.70,10.0.0.71")]),
            "c6",
            "eth0",
        )
        .unwrap_err();
        assert_eq!(e.msg, "failed to allocate all requested IPs: 10.0.0.71");
        assert_eq!(s.files, before);
    }

    #[test]
    fn a_failed_add_releases_only_what_it_reserved() {
        let c = conf(r#"{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.1.0.0/30"}]]}"#);
        let mut s = FakeStore::default();
        s.files.insert(ip("10.1.0.2"), "other\r\neth0".into());
        s.files.insert(ip("10.0.0.200"), "c1\r\neth9".into());
        let e = allocate_all(&mut s, &c, "c1", "eth0").unwrap_err();
        assert_eq!(e.msg, "failed to allocate for range 1: no IP addresses available in range set: 10.1.0.1-10.1.0.2");
        assert_eq!(s.files.len(), 2, "{:?}", s.files);

        // A store failure keeps its code and is prefixed like the reference's.
        let mut s = FakeStore {
            fail_reserve_after: Some(1),
            ..Default::default()
        };
        let e = allocate_all(
            &mut s,
            &conf(r#"{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64"}]]}"#),
            "c1",
            "eth0",
        )
        .unwrap_err();
        assert_eq!(e.msg, "failed to allocate for range 1: disk full");
        assert!(s.files.is_empty());
    }

    #[test]
    fn gc_keeps_only_valid_attachments() {
        let mut s = FakeStore::default();
        let c = conf(r#"{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64"}]]}"#);
        for (id, ifname) in [("a", "eth0"), ("b", "eth0"), ("a", "net1")] {
            allocate_all(&mut s, &c, id, ifname).unwrap();
        }
        s.files.insert(ip("10.0.0.100"), "legacy".into());
        s.files.insert(ip("10.0.0.101"), "gone".into());
        let valid = [
            GcAttachment {
                container_id: "a".into(),
                ifname: "eth0".into(),
            },
            GcAttachment {
                container_id: "legacy".into(),
                ifname: "eth0".into(),
            },
        ];
        let released = collect_garbage(&mut s, &valid).unwrap();
        let gone: std::collections::BTreeSet<_> = released
            .iter()
            .map(|r| (r.container_id.as_str(), r.ifname.as_str()))
            .collect();
        assert_eq!(
            gone,
            [("a", "net1"), ("b", "eth0"), ("gone", "")]
                .into_iter()
                .collect()
        );
        assert_eq!(released.len(), 5);
        let left: Vec<_> = s
            .list()
            .unwrap()
            .into_iter()
            .map(|r| (r.ip.to_string(), r.container_id))
            .collect();
        assert_eq!(
            left,
            [
                ("10.0.0.2".to_string(), "a".to_string()),
                ("10.0.0.100".to_string(), "legacy".to_string()),
                ("fd00::2".to_string(), "a".to_string()),
            ]
        );
        // Nothing valid: everything goes.
        collect_garbage(&mut s, &[]).unwrap();
        assert!(s.files.is_empty());
    }
}
