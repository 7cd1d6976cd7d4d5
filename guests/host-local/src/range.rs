//! Address ranges and range sets, checked and completed the way the reference host-local does
//! (same defaults, same order of checks, same messages).

use std::fmt;
use std::net::IpAddr;

/// A range as configured: every member optional until [`Range::canonicalize`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawRange {
    /// `subnet` as written: its address (host bits and all) and prefix length.
    pub subnet: Option<(IpAddr, u8)>,
    pub range_start: Option<IpAddr>,
    pub range_end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

/// A checked range: `start..=end` inside `network/prefix`, `gateway` never handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub network: IpAddr,
    pub prefix: u8,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

/// Address arithmetic on both families as integers.
pub fn to_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => v6.into(),
    }
}

/// The address `n` in the family of `like`.
pub fn from_int(n: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((n as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(n.into()),
    }
}

fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn host_mask(ip: IpAddr, prefix: u8) -> u128 {
    let width = u32::from(bits(ip) - prefix);
    1u128.checked_shl(width).map_or(u128::MAX, |v| v - 1)
}

/// The next address (callers never step past a range's end).
pub fn next_ip(ip: IpAddr) -> IpAddr {
    from_int(to_int(ip).wrapping_add(1), ip)
}

pub fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Whether `ip` lies in `network/prefix`.
fn in_subnet(network: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    same_family(ip, network) && to_int(ip) & !host_mask(ip, prefix) == to_int(network)
}

impl Range {
    /// Check a configured range and fill in what it leaves out: the gateway defaults to the
    /// subnet's first address, `rangeStart` to the first address after the network address,
    /// `rangeEnd` to the last address (IPv4: the one before the broadcast address).
    pub fn canonicalize(raw: &RawRange) -> Result<Range, String> {
        let Some((written, prefix)) = raw.subnet else {
            return Err("IP <nil> not v4 nor v6".into());
        };
        let addr = written.to_canonical();
        // The mask keeps the family the subnet was written in (`::ffff:a.b.c.d/n` is IPv6).
        let mask_bits = bits(written);
        if prefix > mask_bits - 2 {
            return Err(format!(
                "Network {addr}/{prefix} too small to allocate from"
            ));
        }
        if bits(addr) != mask_bits {
            return Err("IPNet IP and Mask version mismatch".into());
        }
        let network = from_int(to_int(addr) & !host_mask(addr, prefix), addr);
        if network != addr {
            return Err(format!(
                "Network has host bits set. For a subnet mask of length {prefix} the network address is {network}"
            ));
        }
        let canonical = |ip: Option<IpAddr>| ip.map(|ip| ip.to_canonical());
        let (start, end) = (canonical(raw.range_start), canonical(raw.range_end));
        let in_subnet = |ip: IpAddr| in_subnet(network, prefix, ip);
        let subnet = format!("{network}/{prefix}");
        // Each bound must lie in the subnet and on the right side of the other bound (when
        // that one is given and of the same family: a foreign one fails its own check).
        let start = match start {
            Some(s) if !in_subnet(s) || end.is_some_and(|e| same_family(s, e) && s > e) => {
                return Err(format!("RangeStart {s} not in network {subnet}"));
            }
            Some(s) => s,
            None => next_ip(network),
        };
        let end = match end {
            Some(e) if !in_subnet(e) || e < start => {
                return Err(format!("RangeEnd {e} not in network {subnet}"));
            }
            Some(e) => e,
            None => {
                let last = to_int(network) | host_mask(network, prefix);
                from_int(if network.is_ipv4() { last - 1 } else { last }, network)
            }
        };
        Ok(Range {
            network,
            prefix,
            start,
            end,
            gateway: canonical(raw.gateway).unwrap_or_else(|| next_ip(network)),
        })
    }

    /// Whether `ip` is one this range hands out (the gateway included).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        in_subnet(self.network, self.prefix, ip) && ip >= self.start && ip <= self.end
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        same_family(self.start, other.start)
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Ranges of one family that together yield one address per ADD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    pub fn canonicalize(raw: &[RawRange]) -> Result<RangeSet, String> {
        if raw.is_empty() {
            return Err("empty range set".into());
        }
        let mut ranges: Vec<Range> = Vec::with_capacity(raw.len());
        for r in raw {
            let r = Range::canonicalize(r)?;
            if ranges
                .first()
                .is_some_and(|first| !same_family(first.start, r.start))
            {
                return Err("mixed address families".into());
            }
            ranges.push(r);
        }
        for (i, a) in ranges.iter().enumerate() {
            if let Some(b) = ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(format!("subnets {a} and {b} overlap"));
            }
        }
        Ok(RangeSet(ranges))
    }

    pub fn ranges(&self) -> &[Range] {
        &self.0
    }

    /// The range handing out `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn is_ipv4(&self) -> bool {
        self.0[0].start.is_ipv4()
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn raw(subnet: &str) -> RawRange {
        let (a, p) = subnet.split_once('/').unwrap();
        RawRange {
            subnet: Some((ip(a), p.parse().unwrap())),
            ..Default::default()
        }
    }

    fn with(mut r: RawRange, start: Option<&str>, end: Option<&str>, gw: Option<&str>) -> RawRange {
        r.range_start = start.map(ip);
        r.range_end = end.map(ip);
        r.gateway = gw.map(ip);
        r
    }

    #[test]
    fn defaults_for_ipv4_and_ipv6() {
        let r = Range::canonicalize(&raw("10.1.2.0/24")).unwrap();
        assert_eq!(
            (r.network, r.prefix, r.start, r.end, r.gateway),
            (
                ip("10.1.2.0"),
                24,
                ip("10.1.2.1"),
                ip("10.1.2.254"),
                ip("10.1.2.1")
            )
        );
        assert_eq!(r.to_string(), "10.1.2.1-10.1.2.254");
        let r = Range::canonicalize(&raw("fd00:1::/120")).unwrap();
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("fd00:1::1"), ip("fd00:1::ff"), ip("fd00:1::1"))
        );
        let r = Range::canonicalize(&raw("10.0.0.0/30")).unwrap();
        assert_eq!((r.start, r.end), (ip("10.0.0.1"), ip("10.0.0.2")));
        Range::canonicalize(&raw("fd00::/126")).unwrap();
    }

    #[test]
    fn reference_errors() {
        let err = |r: RawRange| Range::canonicalize(&r).unwrap_err();
        assert_eq!(
            err(raw("10.0.0.0/31")),
            "Network 10.0.0.0/31 too small to allocate from"
        );
        assert_eq!(
            err(raw("10.0.0.1/32")),
            "Network 10.0.0.1/32 too small to allocate from"
        );
        assert_eq!(
            err(raw("fd00::/127")),
            "Network fd00::/127 too small to allocate from"
        );
        assert_eq!(
            err(raw("10.0.0.5/24")),
            "Network has host bits set. For a subnet mask of length 24 the network address is 10.0.0.0"
        );
        assert_eq!(
            err(raw("::ffff:10.0.0.0/120")),
            "IPNet IP and Mask version mismatch"
        );
        assert_eq!(err(RawRange::default()), "IP <nil> not v4 nor v6");
        assert_eq!(
            err(with(raw("10.0.0.0/24"), Some("10.0.1.5"), None, None)),
            "RangeStart 10.0.1.5 not in network 10.0.0.0/24"
        );
        assert_eq!(
            err(with(raw("10.0.0.0/24"), None, Some("fd00::1"), None)),
            "RangeEnd fd00::1 not in network 10.0.0.0/24"
        );
        // A start after the end fails on the start, as in the reference.
        assert_eq!(
            err(with(
                raw("10.0.0.0/24"),
                Some("10.0.0.9"),
                Some("10.0.0.5"),
                None
            )),
            "RangeStart 10.0.0.9 not in network 10.0.0.0/24"
        );
    }

    #[test]
    fn explicit_bounds_and_gateway() {
        let r = Range::canonicalize(&with(
            raw("10.0.0.0/24"),
            Some("10.0.0.10"),
            Some("10.0.0.20"),
            Some("10.0.0.254"),
        ))
        .unwrap();
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("10.0.0.10"), ip("10.0.0.20"), ip("10.0.0.254"))
        );
        assert!(r.contains(ip("10.0.0.10")) && r.contains(ip("10.0.0.20")));
        assert!(
            !r.contains(ip("10.0.0.9"))
                && !r.contains(ip("10.0.0.21"))
                && !r.contains(ip("fd00::1"))
        );
        assert!(r.contains(ip("::ffff:10.0.0.15")));
    }

    #[test]
    fn range_sets() {
        let set = RangeSet::canonicalize(&[raw("10.0.0.0/24"), raw("10.0.1.0/24")]).unwrap();
        assert_eq!(set.to_string(), "10.0.0.1-10.0.0.254,10.0.1.1-10.0.1.254");
        assert_eq!(
            set.range_for(ip("10.0.1.7")).unwrap().network,
            ip("10.0.1.0")
        );
        assert!(!set.contains(ip("10.0.2.1")));
        assert_eq!(RangeSet::canonicalize(&[]).unwrap_err(), "empty range set");
        assert_eq!(
            RangeSet::canonicalize(&[raw("10.0.0.0/24"), raw("fd00::/64")]).unwrap_err(),
            "mixed address families"
        );
        assert_eq!(
            RangeSet::canonicalize(&[raw("10.0.0.0/24"), raw("10.0.0.0/25")]).unwrap_err(),
            "subnets 10.0.0.1-10.0.0.254 and 10.0.0.1-10.0.0.126 overlap"
        );
        let a = RangeSet::canonicalize(&[raw("10.0.0.0/16")]).unwrap();
        let b = RangeSet::canonicalize(&[raw("10.0.5.0/24")]).unwrap();
        let c = RangeSet::canonicalize(&[raw("fd00::/64")]).unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a) && !a.overlaps(&c));
    }
}
