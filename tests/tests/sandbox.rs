//! The sandbox and the node policy hold: a guest that misbehaves is stopped with a CNI error,
//! what it may touch is what the policy grants, the host's network is untouched, and the next
//! invocation works. The hostile guest always runs with a throwaway namespace as its host.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasm_cni_tests::{Cni, Exec, Netns, ScratchInstall};

fn hostile(mode: &str) -> String {
    format!(r#"{{"cniVersion":"1.0.0","name":"testnet","type":"hostile","mode":"{mode}"}}"#)
}

/// A policy file, removed on drop.
struct PolicyFile(PathBuf);

impl PolicyFile {
    fn new(text: &str) -> PolicyFile {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("wcni-policy-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        PolicyFile(path)
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Setup {
    install: ScratchInstall,
    host: Netns,
}

impl Setup {
    fn new() -> Setup {
        let install = ScratchInstall::new();
        install.add_guest("hostile");
        Setup {
            install,
            host: Netns::new(),
        }
    }

    fn run(&self, mode: &str, policy: Option<&PolicyFile>) -> Exec {
        self.run_config(&hostile(mode), policy, &[])
    }

    fn run_config(&self, config: &str, policy: Option<&PolicyFile>, env: &[(&str, &str)]) -> Exec {
        let container = Netns::new();
        let mut cni = Cni::new("ADD", &container.path()).with_host(&self.host);
        if let Some(p) = policy {
            cni = cni.set("WASM_CNI_POLICY", &p.0.display().to_string());
        }
        for (k, v) in env {
            cni = cni.set(k, v);
        }
        cni.run_in(&self.install.dir, "hostile", config)
    }

    fn host_links(&self) -> Vec<String> {
        let links = self.host.ip_json(&["link", "show"]);
        links
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    fn next_invocation_works(&self, policy: Option<&PolicyFile>) {
        let out = self.run("ok", policy);
        assert_eq!(out.status, 0, "{out:?}");
    }
}

#[test]
fn a_declared_capability_is_granted_without_a_policy() {
    let s = Setup::new();
    let out = s.run("host-netns", None);
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        s.host_links().contains(&"pwned".to_string()),
        "{:?}",
        s.host_links()
    );
    assert!(
        out.stderr.contains(r#""op":"link-rename""#),
        "the change is audited: {}",
        out.stderr
    );
}

#[test]
fn a_policy_that_does_not_grant_a_declared_capability_refuses_the_module() {
    let s = Setup::new();
    let policy = PolicyFile::new("[plugins.hostile]\ncapabilities = [\"ipam\", \"files\"]\n");
    let (code, msg) = s.run("host-netns", Some(&policy)).err();
    assert_eq!(code, 100, "{msg}");
    assert_eq!(
        msg,
        "plugin hostile needs the host-netns capability, which the node policy does not grant"
    );
    assert!(s.host_links().contains(&"lo".to_string()));
}

#[test]
fn host_links_outside_the_allowed_patterns_are_denied_at_the_call() {
    let s = Setup::new();
    let audit = PolicyFile::new("");
    let policy = PolicyFile::new(&format!(
        "[audit]\nfile = \"{}\"\n[plugins.hostile]\ncapabilities = [\"host-netns\", \"ipam\", \"files\"]\nhost-links = [\"cni*\", \"veth*\"]\n",
        audit.0.display()
    ));
    let (code, msg) = s.run("host-netns", Some(&policy)).err();
    assert_eq!(code, 100, "{msg}");
    assert!(
        msg.contains(r#"may not link-set-alias"#) || msg.contains("may not link-rename"),
        "{msg}"
    );
    assert!(msg.contains(r#"host link "lo""#), "{msg}");
    assert_eq!(
        s.host_links(),
        vec!["lo".to_string()],
        "the host namespace is unchanged"
    );
    let log = std::fs::read_to_string(&audit.0).unwrap();
    assert!(
        log.contains(r#""outcome":"denied""#) && log.contains(r#""plugin":"hostile""#),
        "{log}"
    );
    s.next_invocation_works(Some(&policy));
}

#[test]
fn a_host_sysctl_outside_the_allowed_patterns_is_denied() {
    let s = Setup::new();
    let before = s.host.ip_json(&["netconf", "show"]);
    let policy = PolicyFile::new(
        "[plugins.hostile]\ncapabilities = [\"host-netns\", \"ipam\", \"files\"]\nsysctls = [\"net.ipv6.conf.*.accept_dad\"]\n",
    );
    let (code, msg) = s.run("host-sysctl", Some(&policy)).err();
    assert_eq!(code, 100, "{msg}");
    assert!(
        msg.contains(r#"host sysctl "net.ipv4.ip_forward""#),
        "{msg}"
    );
    let forwarding = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &s.host.name,
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&forwarding.stdout).trim(),
        "0",
        "ip_forward unchanged"
    );
    assert_eq!(s.host.ip_json(&["netconf", "show"]), before);
}

#[test]
fn a_host_device_that_is_not_granted_cannot_be_moved() {
    let s = Setup::new();
    s.host
        .ip(&["link", "add", "hd0", "type", "veth", "peer", "name", "hd0p"]);
    let policy = PolicyFile::new(
        "[plugins.hostile]\ncapabilities = [\"host-netns\", \"ipam\", \"files\"]\nhost-links = [\"veth*\"]\nhost-devices = [\"eth1\"]\n",
    );
    let (code, msg) = s.run("steal-device", Some(&policy)).err();
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains(r#"host device "hd0""#), "{msg}");
    assert!(
        s.host_links().contains(&"hd0".to_string()),
        "the device stayed in the host"
    );
}

#[test]
fn native_ipam_exec_is_denied_unless_the_policy_allows_it() {
    let s = Setup::new();
    let container = Netns::new();
    let path = format!(
        "{}:{}",
        s.install.dir.display(),
        wasm_cni_tests::REFERENCE_DIR
    );
    let run = |policy: Option<&PolicyFile>| {
        let mut cni = Cni::new("ADD", &container.path())
            .with_host(&s.host)
            .set("CNI_PATH", &path);
        if let Some(p) = policy {
            cni = cni.set("WASM_CNI_POLICY", &p.0.display().to_string());
        }
        cni.run_in(&s.install.dir, "hostile", &hostile("native-ipam"))
    };
    let (code, msg) = run(None).err();
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("may not exec the native IPAM plugin"), "{msg}");
    let allowed = PolicyFile::new("[plugins.hostile]\nnative-exec = true\n");
    let out = run(Some(&allowed));
    assert_eq!(out.ok_json()["ips"][0]["address"], "10.1.2.3/24");
}

#[test]
fn a_malformed_policy_fails_closed() {
    let s = Setup::new();
    let policy = PolicyFile::new("[plugins.hostile]\ncapabilities = \"all\"\n");
    let (code, msg) = s.run("ok", Some(&policy)).err();
    assert_eq!(code, 100, "{msg}");
    assert!(
        msg.contains(&policy.0.display().to_string()),
        "the message names the file: {msg}"
    );
    assert!(
        msg.contains("no plugin runs until the policy is fixed"),
        "{msg}"
    );
}

#[test]
fn a_links_attributes_are_read_again_once_the_guest_changed_something() {
    let s = Setup::new();
    let container = Netns::new();
    let lo_up = || {
        let lo = container.ip_json(&["link", "show", "lo"]);
        let flags = lo[0]["flags"].as_array().cloned().unwrap_or_default();
        flags.iter().any(|f| f == "UP")
    };
    // A new netns's `lo` is down; the guest flips it (up) and checks both handles read that.
    assert!(!lo_up(), "lo of a new netns is up");
    let out = Cni::new("ADD", &container.path())
        .with_host(&s.host)
        .run_in(&s.install.dir, "hostile", &hostile("info-after-change"));
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        lo_up(),
        "the guest read lo as flipped but the kernel has it down"
    );
}

#[test]
fn a_module_that_does_not_match_its_pin_is_refused() {
    let s = Setup::new();
    let policy = PolicyFile::new(&format!(
        "[plugins.hostile]\nsha256 = \"{}\"\n",
        "0".repeat(64)
    ));
    let (code, msg) = s.run("ok", Some(&policy)).err();
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("does not match the policy's pin"), "{msg}");
}

#[test]
fn an_infinite_loop_is_stopped_at_the_timeout() {
    let s = Setup::new();
    let policy = PolicyFile::new("[plugins.hostile]\ntimeout-ms = 300\n");
    let started = Instant::now();
    let (code, msg) = s.run("loop", Some(&policy)).err();
    assert_eq!(code, 102, "{msg}");
    assert!(msg.contains("exceeded its time limit of 300 ms"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped near the deadline"
    );
    s.next_invocation_works(Some(&policy));
}

/// Each run has its own deadline, also when one runs inside another (a plugin delegating to a
/// wasm IPAM plugin in-process): here the delegating run's 2 s pass while the nested run,
/// started 0.8 s in, is busy for 1.6 s. The nested run goes on to its end (its own deadline is
/// at ~2.8 s) and only the delegating run is stopped, when it resumes. (With one watchdog per
/// run bumping the shared epoch, the outer deadline used to stop the inner run too.) The
/// margins are 1.2 s before the outer deadline and 0.4 s before the inner one.
#[test]
fn a_nested_run_keeps_its_own_deadline_when_the_outer_one_passes() {
    let s = Setup::new();
    let policy = PolicyFile::new("[plugins.hostile]\ntimeout-ms = 2000\n");
    let out = s.run("outlive-outer", Some(&policy));
    assert_only_the_outer_run_was_stopped(&out);
    s.next_invocation_works(Some(&policy));
}

/// `outlive-outer` under a 2 s limit: the delegating run is stopped at its deadline, the
/// nested run finished its 1.6 s of work before.
fn assert_only_the_outer_run_was_stopped(out: &Exec) {
    let (code, msg) = out.err();
    assert_eq!(code, 102, "{msg}");
    assert!(msg.contains("exceeded its time limit of 2000 ms"), "{msg}");
    assert!(
        out.stderr.contains("inner run finished its 1600 ms"),
        "the nested run was stopped before its end: {out:?}"
    );
}

/// The same with the IPAM plugin named in the config (`ipam.type`): the host then makes it ready
/// ahead, instantiated while the delegating plugin runs (the trace shows no instantiation in
/// the nested run). Its time limit still starts when it is called: armed at its instantiation,
/// its 2 s would end at ~2 s, before its 1.6 s of work started at 0.8 s are done.
#[test]
fn an_ipam_plugin_made_ready_ahead_gets_its_whole_time_limit_from_the_delegation() {
    let s = Setup::new();
    let policy = PolicyFile::new("[plugins.hostile]\ntimeout-ms = 2000\n");
    let config = r#"{"cniVersion":"1.0.0","name":"testnet","type":"hostile",
        "mode":"outlive-outer","ipam":{"type":"hostile"}}"#;
    let out = s.run_config(config, Some(&policy), &[("WASM_CNI_TRACE", "1")]);
    assert_only_the_outer_run_was_stopped(&out);
    let invocation = out
        .stderr
        .lines()
        .find(|l| l.contains(r#""msg":"invocation""#))
        .unwrap_or_else(|| panic!("no invocation line: {out:?}"));
    assert!(
        invocation.contains(r#""ipam.call""#) && !invocation.contains(r#""ipam.instantiate""#),
        "the IPAM plugin was not made ready ahead: {invocation}"
    );
    s.next_invocation_works(Some(&policy));
}

#[test]
fn a_cpu_loop_is_stopped_by_its_fuel_budget_before_the_timeout() {
    let s = Setup::new();
    let policy = PolicyFile::new("[plugins.hostile]\nfuel = 20000000\ntimeout-ms = 60000\n");
    let started = Instant::now();
    let (code, msg) = s.run("loop", Some(&policy)).err();
    assert_eq!(code, 102, "{msg}");
    assert!(
        msg.contains("exceeded its instruction budget of 20000000 fuel") && msg.contains("`fuel`"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped by fuel, not by the 60 s timeout: {:?}",
        started.elapsed()
    );
    s.next_invocation_works(Some(&policy));
}

#[test]
fn reading_etc_shadow_through_the_files_capability_is_denied_and_audited() {
    let s = Setup::new();
    // No policy file: the capability is declared, but no file is readable.
    let out = s.run("read-shadow", None);
    let (code, msg) = out.err();
    assert_eq!(code, 100, "{msg}");
    assert!(
        msg.contains(r#"may not read "/etc/shadow""#) && msg.contains("`files`"),
        "{msg}"
    );
    assert!(
        out.stderr.contains(r#""op":"file-read""#)
            && out.stderr.contains(r#""target":"/etc/shadow""#)
            && out.stderr.contains(r#""outcome":"denied""#),
        "the attempt is audited: {}",
        out.stderr
    );
    s.next_invocation_works(None);
    // A policy that grants other files does not grant this one.
    let audit = PolicyFile::new("");
    let policy = PolicyFile::new(&format!(
        "[audit]\nfile = \"{}\"\n[plugins.hostile]\nfiles = [\"/etc/*.conf\", \"/run/cni/dns/*.conf\"]\n",
        audit.0.display()
    ));
    let (code, msg) = s.run("read-shadow", Some(&policy)).err();
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("/etc/shadow"), "{msg}");
    let log = std::fs::read_to_string(&audit.0).unwrap();
    assert!(
        log.contains(r#""op":"file-read""#) && log.contains(r#""outcome":"denied""#),
        "{log}"
    );
    s.next_invocation_works(Some(&policy));
}

/// The WASI filesystem is not linked at all (host/src/sandbox/wasi.rs): a component that
/// imports it does not instantiate. So a guest cannot even try it at run time — code that
/// touches `std::fs` makes the whole module unusable, which is why the hostile guest has no
/// such mode. What can be checked: the hostile guest (Rust std, like any plugin) imports no
/// filesystem or socket interface, and its one way to a file is the audited `files` import.
#[test]
fn the_guest_has_no_wasi_filesystem_and_reads_files_only_through_the_host() {
    let s = Setup::new();
    let out = wasm_cni_tests::exec_args(
        &s.install.dir.join("wasm-cni"),
        &["inspect", "hostile"],
        &[("CNI_PATH", &s.install.dir.display().to_string())],
        b"",
    );
    let info = out.ok_json();
    let imports: Vec<&str> = info["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasm-cni:plugin/files@")),
        "{imports:?}"
    );
    assert!(
        !imports
            .iter()
            .any(|i| i.starts_with("wasi:filesystem") || i.starts_with("wasi:sockets")),
        "{imports:?}"
    );
    assert_eq!(info["policy"]["files"], serde_json::json!([]), "{info}");
}

#[test]
fn deep_recursion_is_trapped() {
    let s = Setup::new();
    let (code, msg) = s.run("recurse", None).err();
    assert_eq!(code, 102, "{msg}");
    assert!(msg.contains("exhausted its stack"), "{msg}");
    assert!(msg.len() < 200, "the message is for operators: {msg}");
    s.next_invocation_works(None);
}

#[test]
fn a_memory_bomb_is_capped() {
    let s = Setup::new();
    let policy = PolicyFile::new("[plugins.hostile]\nmemory-mib = 32\n");
    let (code, msg) = s.run("alloc", Some(&policy)).err();
    assert_eq!(code, 102, "{msg}");
    assert!(msg.contains("exceeded its memory limit of 32 MiB"), "{msg}");
    s.next_invocation_works(Some(&policy));
}

#[test]
fn an_output_flood_is_capped() {
    let s = Setup::new();
    let policy = PolicyFile::new("[plugins.hostile]\noutput-kib = 64\n");
    let out = s.run("flood", Some(&policy));
    let (code, msg) = out.err();
    assert_eq!(code, 102, "{msg}");
    assert!(
        out.stderr.len() < 1 << 20,
        "the host log stays bounded: {} bytes",
        out.stderr.len()
    );
    s.next_invocation_works(Some(&policy));
}

#[test]
fn a_panic_is_a_cni_error_and_its_message_reaches_the_log() {
    let s = Setup::new();
    let out = s.run("panic", None);
    let (code, msg) = out.err();
    assert_eq!(code, 102, "{msg}");
    assert!(
        out.stderr.contains("hostile guest panics on purpose"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_result_that_breaks_the_protocol_is_refused() {
    let s = Setup::new();
    let (code, msg) = s.run("bad-result", None).err();
    assert_eq!(code, 103, "{msg}");
    assert!(msg.contains("nonexistent interface"), "{msg}");
}
