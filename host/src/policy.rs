//! The operator's policy: what each plugin may do and the limits it runs under.
//!
//! One file for the whole node, `/etc/wasm-cni/policy.toml` (override with
//! `WASM_CNI_POLICY`, e.g. in tests). The host enforces every grant at the call, never the
//! SDK: a guest only holds handles the host gave it, and every capability beyond the
//! container's netns goes through [`Grants`].
//!
//! A module declares what it needs (a custom section read at compile time into its artifact);
//! it is granted the intersection of that and the policy, and refused before it starts when it
//! declares something the policy does not grant, except `files`: that one is then granted with
//! no patterns (every read denied at the call), so a policy written before a module declared it
//! keeps the module running. Without a policy file a module gets what it
//! declares, with no file access (no `files` patterns) and no native exec. A policy that cannot be read or parsed fails
//! closed: no plugin runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the node's policy lives.
pub const DEFAULT_POLICY: &str = "/etc/wasm-cni/policy.toml";

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
    /// Reading the files the policy's `files` patterns name (host-local's `resolvConf`).
    Files,
}

impl Capability {
    pub const ALL: [Capability; 5] = [
        Capability::HostNetns,
        Capability::Ipam,
        Capability::IpStore,
        Capability::Firewall,
        Capability::Files,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::HostNetns => "host-netns",
            Capability::Ipam => "ipam",
            Capability::IpStore => "ip-store",
            Capability::Firewall => "firewall",
            Capability::Files => "files",
        }
    }

    pub fn parse(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
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
    /// Fuel (roughly, wasm instructions) the guest may burn in one invocation; unlimited when
    /// none. Deterministic, unlike the timeout: the same input stops at the same point.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            memory_bytes: 64 << 20,
            output_bytes: 1 << 20,
            fuel: None,
        }
    }
}

/// What one plugin run is granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grants {
    granted: Vec<Capability>,
    /// Link names it may create, change or delete in the host netns (`*` wildcards).
    pub host_links: Vec<String>,
    /// Host devices it may move into containers and back (host-device).
    pub host_devices: Vec<String>,
    /// Sysctls it may set in the host netns (container netns sysctls are the container's).
    pub sysctls: Vec<String>,
    /// IPAM types it may delegate to.
    pub ipam_types: Vec<String>,
    /// Whether a delegated IPAM plugin may be a native executable.
    pub native_exec: bool,
    /// Files it may read (`*` wildcards, matched against the path asked for and the path it
    /// resolves to). Empty unless the policy names some: no file access by default.
    pub files: Vec<String>,
}

impl Default for Grants {
    /// Nothing beyond the container netns.
    fn default() -> Self {
        Grants::new([])
    }
}

impl Grants {
    /// Exactly these capabilities, with no further restriction on what they reach.
    pub fn new(granted: impl IntoIterator<Item = Capability>) -> Grants {
        let any = || vec!["*".to_string()];
        Grants {
            granted: granted.into_iter().collect(),
            host_links: any(),
            host_devices: any(),
            sysctls: any(),
            ipam_types: any(),
            native_exec: false,
            files: Vec::new(),
        }
    }

    pub fn allows(&self, cap: Capability) -> bool {
        self.granted.contains(&cap)
    }

    /// Whether a plugin with these grants may delegate to the IPAM plugin `ipam_type`.
    pub fn may_delegate(&self, ipam_type: &str) -> bool {
        self.allows(Capability::Ipam) && matches_any(&self.ipam_types, ipam_type)
    }
}

/// Shell-style match with `*` (any run of characters, `/` included) only.
///
/// Iterative, without recursion: on a mismatch it backtracks only to the last `*` seen (which
/// then swallows one more byte), so the worst case is O(len(pattern) * len(text)) whatever the
/// number of stars. The text may be chosen by a guest (a path it asks for), and host calls are
/// bounded by neither the epoch timeout nor fuel.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // After the last `*` seen: the pattern index just past it, and the text index it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, ti));
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((after, matched)) => {
                    pi = after;
                    ti = matched + 1;
                    star = Some((after, ti));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// True when any pattern matches.
pub fn matches_any(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, text))
}

/// One plugin's entry in the policy file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginPolicy {
    /// The module's sha256 (hex): a module with another digest is refused.
    pub sha256: Option<String>,
    /// Capabilities it may have (what it declares must be a subset).
    pub capabilities: Option<Vec<String>>,
    pub host_links: Option<Vec<String>>,
    pub host_devices: Option<Vec<String>>,
    pub sysctls: Option<Vec<String>>,
    pub ipam: Option<Vec<String>>,
    pub native_exec: Option<bool>,
    /// Files it may read (with the `files` capability); none when unset.
    pub files: Option<Vec<String>>,
    pub timeout_ms: Option<u64>,
    pub memory_mib: Option<usize>,
    pub output_kib: Option<usize>,
    /// The instruction budget of one invocation (wasmtime fuel); unlimited when unset.
    pub fuel: Option<u64>,
}

/// Where audit lines go.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditPolicy {
    /// A file to append audit lines to; stderr when absent.
    pub file: Option<PathBuf>,
}

/// Where the host's log goes and how much of it (the environment overrides both).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogPolicy {
    pub file: Option<PathBuf>,
    /// error, warn, info (default) or debug.
    pub level: Option<String>,
}

/// The policy file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Applies to plugins without an entry of their own, and fills in what an entry omits.
    #[serde(default)]
    pub defaults: PluginPolicy,
    /// Plugins with no entry are refused when this is true (a closed node).
    #[serde(default, rename = "require-entry")]
    pub require_entry: bool,
    #[serde(default)]
    pub audit: AuditPolicy,
    #[serde(default)]
    pub log: LogPolicy,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginPolicy>,
}

/// Why a plugin may not run (every message names the cause for an operator).
pub type Refusal = String;

impl Policy {
    /// The node's policy: `None` when there is no policy file (safe defaults apply), an error
    /// when it exists but cannot be used (fail closed).
    pub fn load() -> Result<Option<Policy>, String> {
        let path = std::env::var_os("WASM_CNI_POLICY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY));
        Policy::load_from(&path)
    }

    pub fn load_from(path: &Path) -> Result<Option<Policy>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("policy {}: {e}", path.display())),
        };
        Policy::parse(&text)
            .map(Some)
            .map_err(|e| format!("policy {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Policy, String> {
        let policy: Policy = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        if let Some(level) = &policy.log.level {
            if crate::log::Level::parse(level).is_none() {
                return Err(format!(
                    "[log]: unknown level {level:?} (error, warn, info or debug)"
                ));
            }
        }
        for (name, entry) in std::iter::once(("defaults", &policy.defaults))
            .chain(policy.plugins.iter().map(|(n, e)| (n.as_str(), e)))
        {
            for cap in entry.capabilities.iter().flatten() {
                if Capability::parse(cap).is_none() {
                    return Err(format!("[{name}]: unknown capability {cap:?}"));
                }
            }
            for pattern in entry.files.iter().flatten() {
                if !pattern.starts_with('/') || pattern.split('/').any(|c| c == "..") {
                    return Err(format!(
                        "[{name}]: files pattern {pattern:?} must be an absolute path without \"..\""
                    ));
                }
            }
            if entry.fuel == Some(0) {
                return Err(format!("[{name}]: fuel must be at least 1"));
            }
            if entry.timeout_ms == Some(0) {
                return Err(format!("[{name}]: timeout-ms must be at least 1"));
            }
            if let Some(sha) = &entry.sha256 {
                if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("[{name}]: sha256 must be 64 hex digits"));
                }
            }
        }
        Ok(policy)
    }

    /// The entry that applies to `plugin`, with the defaults filled in.
    fn entry(&self, plugin: &str) -> Option<PluginPolicy> {
        let d = &self.defaults;
        let Some(p) = self.plugins.get(plugin) else {
            return (!self.require_entry).then(|| d.clone());
        };
        Some(PluginPolicy {
            sha256: p.sha256.clone(),
            capabilities: p.capabilities.clone().or_else(|| d.capabilities.clone()),
            host_links: p.host_links.clone().or_else(|| d.host_links.clone()),
            host_devices: p.host_devices.clone().or_else(|| d.host_devices.clone()),
            sysctls: p.sysctls.clone().or_else(|| d.sysctls.clone()),
            ipam: p.ipam.clone().or_else(|| d.ipam.clone()),
            native_exec: p.native_exec.or(d.native_exec),
            files: p.files.clone().or_else(|| d.files.clone()),
            timeout_ms: p.timeout_ms.or(d.timeout_ms),
            memory_mib: p.memory_mib.or(d.memory_mib),
            output_kib: p.output_kib.or(d.output_kib),
            fuel: p.fuel.or(d.fuel),
        })
    }
}

/// Decide what `plugin` (module digest `sha256`, declaring `declared`) is granted and how it
/// is limited, or why it may not run at all.
pub fn decide(
    policy: Option<&Policy>,
    plugin: &str,
    sha256: &str,
    declared: &[String],
) -> Result<(Grants, Limits), Refusal> {
    let declared: Vec<Capability> = declared
        .iter()
        .map(|n| {
            Capability::parse(n)
                .ok_or_else(|| format!("plugin {plugin} declares unknown capability {n:?}"))
        })
        .collect::<Result<_, _>>()?;
    let Some(policy) = policy else {
        return Ok((Grants::new(declared), Limits::default()));
    };
    let entry = policy.entry(plugin).ok_or_else(|| {
        format!("plugin {plugin} has no entry in the node policy (require-entry is set)")
    })?;
    if let Some(pin) = &entry.sha256 {
        if !pin.eq_ignore_ascii_case(sha256) {
            return Err(format!("plugin {plugin}: module digest sha256:{sha256} does not match the policy's pin sha256:{pin}"));
        }
    }
    // `files` is granted as a list of patterns, and an empty list reads nothing: a module that
    // declares it where the entry's `capabilities` leave it out (a policy written before
    // host-local declared it) still runs, with no file access, and each read is denied at the
    // call naming the path and the policy key. Every other capability is refused up front.
    let mut files_withheld = false;
    if let Some(allowed) = &entry.capabilities {
        let granted = |c: &Capability| allowed.iter().any(|a| a == c.name());
        files_withheld = declared.contains(&Capability::Files) && !granted(&Capability::Files);
        if let Some(missing) = declared
            .iter()
            .find(|c| **c != Capability::Files && !granted(c))
        {
            return Err(format!(
                "plugin {plugin} needs the {} capability, which the node policy does not grant",
                missing.name()
            ));
        }
    }
    let defaults = Grants::new([]);
    let host_links = entry.host_links.unwrap_or(defaults.host_links);
    let grants = Grants {
        granted: declared,
        // Devices a plugin may move are links it may touch; unset, they are its host links.
        host_devices: entry.host_devices.unwrap_or_else(|| host_links.clone()),
        host_links,
        sysctls: entry.sysctls.unwrap_or(defaults.sysctls),
        ipam_types: entry.ipam.unwrap_or(defaults.ipam_types),
        native_exec: entry.native_exec.unwrap_or(false),
        files: if files_withheld {
            Vec::new()
        } else {
            entry.files.unwrap_or_default()
        },
    };
    let base = Limits::default();
    let limits = Limits {
        timeout: entry
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(base.timeout),
        memory_bytes: entry
            .memory_mib
            .map(|m| m << 20)
            .unwrap_or(base.memory_bytes),
        output_bytes: entry
            .output_kib
            .map(|k| k << 10)
            .unwrap_or(base.output_bytes),
        fuel: entry.fuel.or(base.fuel),
    };
    Ok((grants, limits))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn caps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn without_a_policy_a_module_gets_what_it_declares() {
        let (g, l) = decide(None, "bridge", SHA, &caps(&["host-netns", "ipam"])).unwrap();
        assert!(g.allows(Capability::HostNetns) && g.allows(Capability::Ipam));
        assert!(!g.allows(Capability::Firewall) && !g.allows(Capability::IpStore));
        assert!(!g.native_exec);
        assert_eq!(l, Limits::default());
        let e = decide(None, "x", SHA, &caps(&["root"])).unwrap_err();
        assert_eq!(e, "plugin x declares unknown capability \"root\"");
    }

    #[test]
    fn policy_grants_the_intersection_and_refuses_more() {
        let p = Policy::parse(
            r#"
            [defaults]
            capabilities = []
            timeout-ms = 500

            [plugins.bridge]
            capabilities = ["host-netns", "ipam", "firewall"]
            host-links = ["cni*", "veth*"]
            sysctls = ["net.ipv4.ip_forward"]
            ipam = ["host-local"]
            memory-mib = 32
            "#,
        )
        .unwrap();
        let (g, l) = decide(Some(&p), "bridge", SHA, &caps(&["host-netns", "ipam"])).unwrap();
        assert!(g.allows(Capability::HostNetns) && !g.allows(Capability::Firewall));
        assert_eq!(g.host_links, caps(&["cni*", "veth*"]));
        assert_eq!(
            g.host_devices, g.host_links,
            "unset host-devices follow host-links"
        );
        assert_eq!(g.ipam_types, caps(&["host-local"]));
        assert_eq!(l.timeout, Duration::from_millis(500));
        assert_eq!(l.memory_bytes, 32 << 20);
        let e = decide(Some(&p), "thirdparty", SHA, &caps(&["host-netns"])).unwrap_err();
        assert_eq!(e, "plugin thirdparty needs the host-netns capability, which the node policy does not grant");
        assert!(decide(Some(&p), "thirdparty", SHA, &[]).is_ok());
    }

    #[test]
    fn pins_and_required_entries() {
        let p = Policy::parse(&format!(
            "require-entry = true\n[plugins.loopback]\nsha256 = \"{SHA}\"\n"
        ))
        .unwrap();
        assert!(decide(Some(&p), "loopback", SHA, &[]).is_ok());
        let other = "b".repeat(64);
        let e = decide(Some(&p), "loopback", &other, &[]).unwrap_err();
        assert!(e.contains("does not match the policy's pin"), "{e}");
        let e = decide(Some(&p), "bridge", SHA, &[]).unwrap_err();
        assert!(e.contains("no entry in the node policy"), "{e}");
    }

    #[test]
    fn malformed_policies_are_errors() {
        assert!(Policy::parse("[plugins.x]\ncapabilities = [\"root\"]")
            .unwrap_err()
            .contains("unknown capability"));
        assert!(Policy::parse("[plugins.x]\nsha256 = \"abc\"")
            .unwrap_err()
            .contains("64 hex"));
        assert!(Policy::parse("[plugins.x]\nfrobnicate = 1")
            .unwrap_err()
            .contains("unknown field"));
        assert!(Policy::parse("this is not toml").is_err());
    }

    #[test]
    fn a_missing_file_means_no_policy_and_an_unreadable_one_is_an_error() {
        assert_eq!(
            Policy::load_from(Path::new("/nonexistent/policy.toml")),
            Ok(None)
        );
        assert!(
            Policy::load_from(Path::new("/proc/self/mem")).is_err()
                || Policy::load_from(Path::new("/")).is_err()
        );
    }

    #[test]
    fn files_and_fuel_come_from_the_entry_or_the_defaults() {
        let (g, l) = decide(None, "host-local", SHA, &caps(&["ip-store", "files"])).unwrap();
        assert!(g.allows(Capability::Files));
        assert!(g.files.is_empty(), "no file access without a policy");
        assert_eq!(l.fuel, None);
        let p = Policy::parse(
            r#"
            [defaults]
            files = ["/etc/resolv.conf"]
            fuel = 1000000

            [plugins.host-local]
            files = ["/etc/resolv.conf", "/run/cni/dns/*.conf"]
            fuel = 5000

            [plugins.bridge]
            capabilities = ["host-netns"]
            "#,
        )
        .unwrap();
        let (g, l) = decide(Some(&p), "host-local", SHA, &caps(&["files"])).unwrap();
        assert_eq!(g.files, caps(&["/etc/resolv.conf", "/run/cni/dns/*.conf"]));
        assert_eq!(l.fuel, Some(5000));
        let (g, l) = decide(Some(&p), "loopback", SHA, &[]).unwrap();
        assert_eq!(g.files, caps(&["/etc/resolv.conf"]));
        assert_eq!(l.fuel, Some(1_000_000));
        // `files` declared but left out of the entry's capabilities: it runs, reading nothing
        // (not even what [defaults] lists).
        let (g, _) = decide(Some(&p), "bridge", SHA, &caps(&["host-netns", "files"])).unwrap();
        assert!(g.allows(Capability::HostNetns) && g.allows(Capability::Files));
        assert!(g.files.is_empty(), "{:?}", g.files);
        for bad in [
            "[defaults]\nfiles = [\"etc/passwd\"]",
            "[defaults]\nfiles = [\"/etc/../etc/shadow\"]",
            "[plugins.x]\nfuel = 0",
            "[plugins.x]\nfuel = -1",
            "[plugins.x]\ntimeout-ms = 0",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_policy_from_before_host_local_declared_files_still_runs_it_without_file_access() {
        let p = Policy::parse(
            r#"
            require-entry = true

            [plugins.bridge]
            capabilities = ["host-netns", "ipam", "firewall"]
            ipam = ["host-local"]

            [plugins.host-local]
            capabilities = ["ip-store"]
            "#,
        )
        .unwrap();
        let (g, _) = decide(Some(&p), "host-local", SHA, &caps(&["ip-store", "files"])).unwrap();
        assert!(g.allows(Capability::IpStore) && g.allows(Capability::Files));
        assert!(g.files.is_empty(), "{:?}", g.files);
        assert!(decide(
            Some(&p),
            "bridge",
            SHA,
            &caps(&["host-netns", "ipam", "firewall"])
        )
        .is_ok());
        // Only `files` is let through: any other ungranted capability is still refused.
        let e = decide(
            Some(&p),
            "host-local",
            SHA,
            &caps(&["ip-store", "firewall"]),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "plugin host-local needs the firewall capability, which the node policy does not grant"
        );
        let e = decide(Some(&p), "host-local", SHA, &caps(&["files", "host-netns"])).unwrap_err();
        assert!(e.contains("needs the host-netns capability"), "{e}");
        // Granting it, with patterns, is what gives access.
        let p = Policy::parse(
            "[plugins.host-local]\ncapabilities = [\"ip-store\", \"files\"]\nfiles = [\"/etc/resolv.conf\"]\n",
        )
        .unwrap();
        let (g, _) = decide(Some(&p), "host-local", SHA, &caps(&["ip-store", "files"])).unwrap();
        assert_eq!(g.files, caps(&["/etc/resolv.conf"]));
    }

    #[test]
    fn globs() {
        assert!(glob_match("veth*", "veth1a2b3c4d"));
        assert!(glob_match("*", ""));
        assert!(glob_match(
            "net.ipv6.conf.*.accept_dad",
            "net.ipv6.conf.eth0.accept_dad"
        ));
        assert!(!glob_match("cni*", "eth0"));
        assert!(!glob_match("lo", "lo0"));
        for (pattern, text, want) in [
            ("", "", true),
            ("", "a", false),
            ("a", "", false),
            ("**", "", true),
            ("*", "/etc/resolv.conf", true),
            ("/run/cni/dns/*.conf", "/run/cni/dns/a.conf", true),
            ("/run/cni/dns/*.conf", "/run/cni/dns/sub/b.conf", true),
            ("/run/cni/dns/*.conf", "/run/cni/dns/a.conf.bak", false),
            ("/run/cni/dns/*.conf", "/run/cni/a.conf", false),
            ("/etc/resolv.conf", "/etc/resolv.conf", true),
            ("/etc/resolv.conf", "/etc/resolv.conf2", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyycz", false),
            ("a*b*c", "acb", false),
            ("*ab", "aab", true),
            ("*ab", "abab", true),
            ("*ab", "aba", false),
            ("a*", "a", true),
            ("*a", "", false),
            ("?", "x", false),
            ("[a]", "a", false),
            ("[a]", "[a]", true),
            ("é*ü", "éxyzü", true),
        ] {
            assert_eq!(glob_match(pattern, text), want, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn many_stars_against_a_long_text_do_not_backtrack_exponentially() {
        let text = "a".repeat(100_000);
        assert!(!glob_match("*a*a*a*a*a*a*b", &text));
        assert!(glob_match("*a*a*a*a*a*a*", &text));
        assert!(!matches_any(
            &["/*a*a*a*a*a*a*b".to_string()],
            &format!("/{text}")
        ));
    }
}
