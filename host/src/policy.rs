//! What a guest may do and the limits it runs under.
//!
//! The host enforces every grant at the call, never the SDK: a guest only holds handles the
//! host gave it, and every capability beyond the container's netns goes through [`Grants`].
//! A module declares what it needs (a custom section, read at compile time into the
//! artifact's header); without an operator policy a module is granted what it declares.

use std::time::Duration;

/// A capability beyond the container's own namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    /// A handle to the host's network namespace (bridge, host-device).
    HostNetns,
    /// Delegating to an IPAM plugin (`ipam.type`).
    Ipam,
    /// The network's address store on disk (host-local).
    IpStore,
    /// Masquerade / firewall rules in the host.
    Firewall,
}

impl Capability {
    pub const ALL: [Capability; 4] = [
        Capability::HostNetns,
        Capability::Ipam,
        Capability::IpStore,
        Capability::Firewall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::HostNetns => "host-netns",
            Capability::Ipam => "ipam",
            Capability::IpStore => "ip-store",
            Capability::Firewall => "firewall",
        }
    }

    pub fn parse(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Capabilities granted to one plugin run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    granted: Vec<Capability>,
}

impl Grants {
    pub fn new(granted: impl IntoIterator<Item = Capability>) -> Grants {
        Grants {
            granted: granted.into_iter().collect(),
        }
    }

    /// What a module gets without an operator policy: what it declares.
    pub fn declared(names: &[String]) -> Result<Grants, String> {
        names
            .iter()
            .map(|n| Capability::parse(n).ok_or_else(|| format!("unknown capability {n:?}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Grants::new)
    }

    pub fn allows(&self, cap: Capability) -> bool {
        self.granted.contains(&cap)
    }
}

/// Resource limits for one guest run. A guest that exceeds one is stopped and the exec
/// ends with a CNI error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time the guest's own code may run (host calls are bounded separately).
    pub timeout: Duration,
    /// Linear memory a guest may grow to, in bytes.
    pub memory_bytes: usize,
    /// Bytes a plain WASI guest may write to stdout, and to stderr.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            memory_bytes: 64 << 20,
            output_bytes: 1 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_capabilities_are_granted_and_unknown_ones_refused() {
        let g = Grants::declared(&["host-netns".into(), "ipam".into()]).unwrap();
        assert!(g.allows(Capability::HostNetns) && g.allows(Capability::Ipam));
        assert!(!g.allows(Capability::Firewall) && !g.allows(Capability::IpStore));
        assert_eq!(
            Grants::declared(&["root".into()]).unwrap_err(),
            "unknown capability \"root\""
        );
        assert!(!Grants::default().allows(Capability::HostNetns));
    }
}
