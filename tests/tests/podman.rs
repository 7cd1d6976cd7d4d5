//! A real runtime end to end: podman 4.3 (CNI backend) runs busybox containers on networks of
//! our plugins, with everything it needs in files under a temp dir and its whole network world
//! inside a throwaway namespace.
//!
//! Isolation: podman runs as `nsenter --net=/run/netns/<ns> podman …`, so the bridge, the host
//! veth ends, ip_forward, the portmap/masquerade rules and the published ports all live in
//! that namespace; the real host network is never touched. `ip netns exec <ns> podman` does
//! not work: it also unshares the mount namespace and mounts a fresh sysfs on /sys, which
//! hides /sys/fs/cgroup, and runc then fails with "no cgroup mount found in mountinfo"
//! (network setup has already run by then, inside the namespace). `nsenter --net` enters only
//! the network namespace; the container netns bind mounts podman makes under /run/netns
//! (`netns-<uuid>`) stay visible to the next podman call, as they must.
//!
//! Nothing global: `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF` point at files written
//! here (network_config_dir, cni_plugin_dirs = [our install (for [`Kind::Ours`] a scratch copy
//! with the SDK example `sysctl-tuning` added), /usr/lib/cni], runroot,
//! graphroot, tmp_dir, file locks under tmp_dir), the root filesystem is a directory with
//! busybox-static and its applet links (`podman run --rootfs`), and IPAM's `dataDir` is ours.
//! The one thing podman 4.3 cannot be told is libcni's result cache: it writes
//! `/var/lib/cni/results/<network>-<container>-<ifname>`; the guard removes its network's files
//! (and `/var/lib/cni` when it created it).
//!
//! podman sends VERSION to every plugin of a network on each load; a plugin whose answer does
//! not list the conflist's `cniVersion` makes podman skip the network silently (`network not
//! found`): [`Pod::new`] checks the network is listed, so that failure says what it is.
//!
//! Needs `podman runc busybox-static` (`.ci/run` installs them). `WASM_CNI_SKIP_PODMAN=1`
//! skips these tests on a machine without them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_cni_tests::{bin_dir, Netns, ScratchInstall, REFERENCE_DIR};

const BUSYBOX: &str = "/bin/busybox";
const CNI_CACHE: &str = "/var/lib/cni";
/// What the example plugin (examples/sysctl-tuning) sets in each container of [`Kind::Ours`]:
/// (key, value, the same key under /proc/sys). tcp_keepalive_time is per network namespace
/// (default 7200), so the throwaway host namespace keeps its own value.
const EXAMPLE_SYSCTLS: &[(&str, &str, &str)] = &[
    (
        "net.ipv4.conf.eth0.rp_filter",
        "2",
        "/proc/sys/net/ipv4/conf/eth0/rp_filter",
    ),
    (
        "net.ipv4.tcp_keepalive_time",
        "600",
        "/proc/sys/net/ipv4/tcp_keepalive_time",
    ),
];

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether `/var/lib/cni` existed before the first network here (then it is never removed).
fn cache_existed() -> bool {
    static EXISTED: OnceLock<bool> = OnceLock::new();
    *EXISTED.get_or_init(|| Path::new(CNI_CACHE).exists())
}

/// false (with a note) when the tests are to be skipped on this machine.
fn available() -> bool {
    if std::env::var("WASM_CNI_SKIP_PODMAN").is_ok_and(|v| v == "1") {
        eprintln!("WASM_CNI_SKIP_PODMAN=1: skipping the podman tests");
        return false;
    }
    for need in [
        "/usr/bin/podman",
        "/usr/sbin/runc",
        BUSYBOX,
        "/usr/bin/nsenter",
    ] {
        assert!(
            Path::new(need).exists(),
            "{need} is missing: install podman runc busybox-static (see .ci/run), \
             or set WASM_CNI_SKIP_PODMAN=1"
        );
    }
    true
}

/// The network a test runs its containers on.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// [bridge (ours) + host-local (ours), portmap (reference), tuning (reference),
    /// sysctl-tuning (the SDK example, [`EXAMPLE_SYSCTLS`]), logger (ours)]
    Ours,
    /// The same network of reference plugins only (the oracle, and the timing baseline).
    Reference,
    /// [loopback, logger], ours: the harness without the bridge.
    LoopbackLogger,
    /// [host-device (ours) + host-local (ours), logger (ours)] with device `hd0`.
    HostDevice,
}

/// One test's podman world: a throwaway host namespace, a temp dir with podman's config,
/// storage, root filesystem, network config and IPAM store, a private /24. Dropping it
/// removes every container (same config), libcni's cache files of the network, the temp dir
/// and the namespace — also when the test panics.
struct Pod {
    host: Netns,
    /// [`Kind::Ours`]: the installed plugins plus the example (`cargo xtask install` leaves
    /// examples out), the network's plugin dir; removed after the containers.
    plugins: Option<ScratchInstall>,
    dir: PathBuf,
    network: String,
    /// `10.a.b` of the network's /24.
    prefix: String,
    bridge: String,
}

impl Pod {
    fn new(kind: Kind) -> Pod {
        cache_existed();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("wcni-pod-{pid}-{n}"));
        let _ = fs::remove_dir_all(&dir);
        let plugins = (kind == Kind::Ours).then(|| {
            let scratch = ScratchInstall::new();
            scratch.add_guest_as("sysctl_tuning", "sysctl-tuning");
            scratch
        });
        let pod = Pod {
            host: Netns::new(),
            plugins,
            network: format!("wcpod{}n{n}", pid % 100_000),
            prefix: format!("10.{}.{}", 200 + pid % 50, n + 1),
            bridge: format!("wcpbr{n}"),
            dir,
        };
        pod.host.ip(&["link", "set", "lo", "up"]);
        pod.write_files(kind);
        if kind == Kind::HostDevice {
            pod.host
                .ip(&["link", "add", "hd0", "type", "veth", "peer", "name", "hd0p"]);
            pod.host.ip(&[
                "addr",
                "add",
                &format!("{}.1/24", pod.prefix),
                "dev",
                "hd0p",
            ]);
            pod.host.ip(&["link", "set", "hd0p", "up"]);
        }
        // podman skips a network one of whose plugins does not list its cniVersion.
        let listed = pod.ok(&["network", "ls", "--format", "{{.Name}}"]);
        assert!(
            listed.lines().any(|l| l == pod.network),
            "podman does not list network {} (a plugin's VERSION lacks the conflist's \
             cniVersion, or a plugin is missing): {listed}",
            pod.network
        );
        pod
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn ipam_dir(&self) -> PathBuf {
        self.path("ipam")
    }

    fn ipam(&self) -> Value {
        json!({
            "type": "host-local",
            "dataDir": self.ipam_dir(),
            "ranges": [[{"subnet": format!("{}.0/24", self.prefix),
                         "rangeStart": format!("{}.10", self.prefix),
                         "gateway": format!("{}.1", self.prefix)}]],
            "routes": [{"dst": "0.0.0.0/0"}]
        })
    }

    fn conflist(&self, kind: Kind) -> Value {
        let bridge = json!({
            "type": "bridge", "bridge": self.bridge, "isGateway": true, "ipMasq": true,
            "hairpinMode": true, "ipam": self.ipam()
        });
        let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let tuning = json!({"type": "tuning"});
        let logger = json!({"type": "logger"});
        let sysctl: serde_json::Map<String, Value> = EXAMPLE_SYSCTLS
            .iter()
            .map(|(k, v, _)| (k.to_string(), json!(v)))
            .collect();
        let example = json!({"type": "sysctl-tuning", "sysctl": sysctl});
        let plugins = match kind {
            Kind::Ours => json!([bridge, portmap, tuning, example, logger]),
            Kind::Reference => json!([bridge, portmap, tuning]),
            Kind::LoopbackLogger => json!([{"type": "loopback"}, logger]),
            Kind::HostDevice => {
                let mut ipam = self.ipam();
                ipam["ranges"][0][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("gateway");
                ipam["routes"] = json!([]);
                json!([{"type": "host-device", "device": "hd0", "ipam": ipam}, logger])
            }
        };
        json!({"cniVersion": "1.0.0", "name": self.network, "plugins": plugins})
    }

    fn write_files(&self, kind: Kind) {
        for d in ["net.d", "rootfs/bin", "run", "root", "tmp", "ipam"] {
            fs::create_dir_all(self.path(d)).unwrap();
        }
        fs::copy(BUSYBOX, self.path("rootfs/bin/busybox")).unwrap();
        let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" && !applet.is_empty() {
                std::os::unix::fs::symlink("busybox", self.path("rootfs/bin").join(applet))
                    .unwrap();
            }
        }
        let ours = match &self.plugins {
            Some(scratch) => scratch.dir.clone(),
            None => bin_dir(),
        };
        let dirs: Vec<String> = match kind {
            Kind::Reference => vec![REFERENCE_DIR.into()],
            _ => vec![ours.display().to_string(), REFERENCE_DIR.into()],
        };
        let ulimit = Command::new("sh")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap();
        let nofile = String::from_utf8_lossy(&ulimit.stdout).trim().to_string();
        let nofile = if nofile.parse::<u64>().is_ok() {
            nofile
        } else {
            "1024".into()
        };
        let d = |rel: &str| self.path(rel).display().to_string();
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=1024:1024\"]\n\
             [network]\n\
             network_backend = \"cni\"\n\
             cni_plugin_dirs = {dirs:?}\n\
             network_config_dir = \"{}\"\n\
             default_network = \"{}\"\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             lock_type = \"file\"\n\
             tmp_dir = \"{}\"\n\
             volume_path = \"{}\"\n",
            d("net.d"),
            self.network,
            d("tmp"),
            d("root/volumes"),
        );
        fs::write(self.path("containers.conf"), conf).unwrap();
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            d("run"),
            d("root")
        );
        fs::write(self.path("storage.conf"), storage).unwrap();
        fs::write(
            self.path(&format!("net.d/{}.conflist", self.network)),
            serde_json::to_string_pretty(&self.conflist(kind)).unwrap(),
        )
        .unwrap();
    }

    /// `podman <args>` inside the host namespace with this config.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.host.path()))
            .arg("podman")
            .args(args)
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .stdin(Stdio::null());
        c
    }

    fn podman(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running podman")
    }

    /// Run podman, assert success, return stdout trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `podman run -d` a busybox command; extra podman flags before the rootfs.
    fn start(&self, name: &str, flags: &[&str], command: &[&str]) -> String {
        let rootfs = self.path("rootfs").display().to_string();
        let mut args = vec!["run", "-d", "--name", name, "--hostname", name];
        args.extend_from_slice(&["--network", &self.network]);
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--rootfs", &rootfs]);
        args.extend_from_slice(command);
        self.ok(&args)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, name])
    }

    fn ip_of(&self, name: &str) -> String {
        self.inspect(
            name,
            &format!(
                "{{{{.NetworkSettings.Networks.{}.IPAddress}}}}",
                self.network
            ),
        )
    }

    /// Exec in a container; (success, stdout + stderr).
    fn exec(&self, name: &str, command: &[&str]) -> (bool, String) {
        let mut args = vec!["exec", name];
        args.extend_from_slice(command);
        let out = self.podman(&args);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The example plugin's sysctls are in force inside the running container `name` (read
    /// through its own /proc/sys), and not in the namespace that plays the host.
    fn assert_example_sysctls(&self, name: &str) {
        for (key, want, proc) in EXAMPLE_SYSCTLS {
            let (ok, got) = self.exec(name, &["cat", proc]);
            assert!(
                ok && got.trim() == *want,
                "{key} in container {name}: {got:?}, sysctl-tuning set {want}"
            );
        }
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.host.name,
                "cat",
                EXAMPLE_SYSCTLS[1].2,
            ])
            .output()
            .expect("reading the host namespace's sysctl");
        let host = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && host != EXAMPLE_SYSCTLS[1].1,
            "{} in the host namespace: {host:?} (the example must set it in the container only)",
            EXAMPLE_SYSCTLS[1].0
        );
    }

    fn ping(&self, from: &str, to: &str) {
        let (ok, out) = self.exec(from, &["ping", "-c", "1", "-W", "3", to]);
        assert!(ok, "{from} cannot ping {to}: {out}");
    }

    /// The veths in the host namespace.
    fn veths(&self) -> Vec<String> {
        self.host
            .ip_json(&["link", "show", "type", "veth"])
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .collect()
    }

    /// Reservations in the IPAM store (files named after an address).
    fn reservations(&self) -> Vec<String> {
        let store = self.ipam_dir().join(&self.network);
        fs::read_dir(&store)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// libcni's cached results of this network.
    fn cached_results(&self) -> Vec<String> {
        fs::read_dir(Path::new(CNI_CACHE).join("results"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&format!("{}-", self.network)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The namespace's firewall: `nft list ruleset` with counters and handles stripped.
    fn ruleset(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.host.name, "nft", "list", "ruleset"])
            .output()
            .expect("running nft");
        assert!(out.status.success(), "nft list ruleset failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines: Vec<String> = text
            .lines()
            .map(|l| {
                let mut words: Vec<&str> = l.split_whitespace().collect();
                while let Some(i) = words.iter().position(|w| *w == "packets") {
                    words.drain(i..(i + 4).min(words.len()));
                }
                words.join(" ")
            })
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        lines.sort();
        lines.join("\n")
    }

    /// GET /hostname of a busybox httpd through `host_ip:port`, from the host namespace.
    fn http_get(&self, host_ip: &str, port: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("nsenter")
                .arg(format!("--net={}", self.host.path()))
                .args([BUSYBOX, "sh", "-c"])
                .arg(format!(
                    "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | {BUSYBOX} timeout 5 {BUSYBOX} nc {host_ip} {port}"
                ))
                .output()
                .expect("running nc");
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            if body.contains("200 OK") || Instant::now() > deadline {
                return body;
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// `podman run --rm … /bin/true`, `n` times: each run's wall time.
    fn time_runs(&self, n: usize) -> Vec<Duration> {
        let rootfs = self.path("rootfs").display().to_string();
        (0..n)
            .map(|_| {
                let t = Instant::now();
                self.ok(&[
                    "run",
                    "--rm",
                    "--network",
                    &self.network,
                    "--rootfs",
                    &rootfs,
                    "/bin/true",
                ]);
                t.elapsed()
            })
            .collect()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "-af", "-t", "0"]).output();
        for f in self.cached_results() {
            let _ = fs::remove_file(Path::new(CNI_CACHE).join("results").join(f));
        }
        if !cache_existed() {
            let _ = fs::remove_dir(Path::new(CNI_CACHE).join("results"));
            let _ = fs::remove_dir(CNI_CACHE);
        }
        // Anything podman left mounted under the temp dir goes before the dir itself.
        let prefix = self.dir.display().to_string();
        if let Ok(info) = fs::read_to_string("/proc/self/mountinfo") {
            let mut mounts: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&prefix))
                .collect();
            mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in mounts {
                let _ = Command::new("umount").args(["-l", m]).status();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
        // `host` (the namespace) is deleted when the fields drop, after this.
    }
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// Two containers on a bridge network: addresses, reachability, a published port, and what
/// `podman rm` must leave behind (nothing but the bridge and the network's base rules).
fn bridge_end_to_end(kind: Kind) {
    let pod = Pod::new(kind);
    let t0 = Instant::now();
    pod.start(
        "web",
        &["-p", "8080:80"],
        &["/bin/httpd", "-f", "-p", "80", "-h", "/etc"],
    );
    let first = t0.elapsed();
    pod.start("client", &[], &["/bin/sleep", "600"]);
    let (web, client) = (pod.ip_of("web"), pod.ip_of("client"));
    let gateway = format!("{}.1", pod.prefix);
    assert_ne!(web, client, "two containers, one address");
    for ip in [&web, &client] {
        assert!(
            ip.starts_with(&format!("{}.", pod.prefix)),
            "{ip} outside {}.0/24",
            pod.prefix
        );
    }
    let mut held = pod.reservations();
    held.sort();
    let mut want = vec![web.clone(), client.clone()];
    want.sort();
    assert_eq!(held, want, "the IPAM store holds exactly the two addresses");
    assert_eq!(pod.veths().len(), 2, "one host veth per container");
    let sandboxes = [
        pod.inspect("web", "{{.NetworkSettings.SandboxKey}}"),
        pod.inspect("client", "{{.NetworkSettings.SandboxKey}}"),
    ];
    // Which bridge plugin ran shows in the container's default route: ours installs it with
    // `proto static`, the reference with `proto boot`.
    let netns = Path::new(&sandboxes[1])
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let routes = Command::new("ip")
        .args(["-n", &netns, "-j", "route", "show", "default"])
        .output()
        .unwrap();
    let routes: Value = serde_json::from_slice(&routes.stdout).unwrap_or(Value::Null);
    let want_proto = if kind == Kind::Ours { "static" } else { "boot" };
    // `ip -j` leaves out the default protocol (boot).
    assert_eq!(
        routes[0]["protocol"].as_str().unwrap_or("boot"),
        want_proto,
        "default route of client ({kind:?} bridge): {routes}"
    );
    // The real host has none of it.
    let host_links = Command::new("ip").args(["-br", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&host_links.stdout).contains(&pod.bridge),
        "the bridge leaked into the real host"
    );

    if kind == Kind::Ours {
        pod.assert_example_sysctls("web");
        pod.assert_example_sysctls("client");
    }
    pod.ping("client", &web);
    pod.ping("web", &client);
    pod.ping("client", &gateway);
    let (_, addr) = pod.exec("client", &["ip", "-4", "addr", "show", "eth0"]);
    assert!(
        addr.contains(&format!("{client}/24")),
        "eth0 of client: {addr}"
    );

    // The published port, from the (namespace) host: through the bridge's address.
    let body = pod.http_get(&gateway, 8080);
    assert!(
        body.contains("200 OK") && body.contains("web"),
        "published port 8080 -> web:80 did not answer with web's hostname: {body:?}"
    );
    assert!(
        pod.ruleset().contains(&web),
        "no DNAT/masquerade rule for {web}"
    );

    let t = Instant::now();
    pod.ok(&["rm", "-f", "-t", "0", "web", "client"]);
    let rm = t.elapsed();
    assert_eq!(pod.reservations(), Vec::<String>::new(), "IPs not released");
    assert_eq!(pod.veths(), Vec::<String>::new(), "veths left behind");
    assert_eq!(
        pod.cached_results(),
        Vec::<String>::new(),
        "libcni cache left"
    );
    for s in &sandboxes {
        assert!(!Path::new(s).exists(), "container netns {s} left behind");
    }
    let rules = pod.ruleset();
    for ip in [&web, &client] {
        assert!(
            !rules.contains(ip.as_str()),
            "a rule for {ip} survived rm:\n{rules}"
        );
    }
    let runs = pod.time_runs(5);
    eprintln!(
        "podman on {kind:?} network: first run -d {first:?}, rm of two {rm:?}, \
         run --rm /bin/true median {:?} (of {runs:?})",
        median(runs.clone())
    );
}

#[test]
fn our_bridge_network_end_to_end() {
    if !available() {
        return;
    }
    let bridge = bin_dir().join("bridge");
    assert!(
        fs::read_link(&bridge).is_ok_and(|t| t == Path::new("wasm-cni")),
        "{} is not our link: `cargo xtask install` did not install the bridge",
        bridge.display()
    );
    bridge_end_to_end(Kind::Ours);
}

/// The same scenario on reference plugins only: checks the harness against the oracle and
/// gives the timing baseline.
#[test]
fn reference_bridge_network_end_to_end() {
    if !available() {
        return;
    }
    bridge_end_to_end(Kind::Reference);
}

/// 20 create/remove cycles: afterwards no veth, no reservation, no cache file, and the
/// firewall exactly as after the first cycle (the network's own base chains only).
fn leaks_nothing_over_20_cycles(kind: Kind) {
    let pod = Pod::new(kind);
    let cycle = |i: usize| {
        let name = format!("cycle{i}");
        pod.start(&name, &["-p", "9090:80"], &["/bin/sleep", "600"]);
        let ip = pod.ip_of(&name);
        if kind == Kind::Ours && (i == 0 || i == 20) {
            pod.assert_example_sysctls(&name);
        }
        pod.ok(&["rm", "-f", "-t", "0", &name]);
        ip
    };
    let mut ips = vec![cycle(0)];
    let baseline = pod.ruleset();
    let t = Instant::now();
    for i in 1..=20 {
        ips.push(cycle(i));
    }
    let took = t.elapsed();
    assert_eq!(pod.veths(), Vec::<String>::new(), "veths left behind");
    assert_eq!(
        pod.reservations(),
        Vec::<String>::new(),
        "IPs left reserved"
    );
    assert_eq!(
        pod.cached_results(),
        Vec::<String>::new(),
        "libcni cache left"
    );
    assert_eq!(pod.ok(&["ps", "-aq"]), "", "containers left");
    assert_eq!(
        pod.ruleset(),
        baseline,
        "the firewall changed over 20 cycles"
    );
    for ip in &ips {
        assert!(
            !baseline.contains(&format!("{ip} ")) && !baseline.contains(&format!("{ip}:")),
            "a rule for {ip} survived its container:\n{baseline}"
        );
    }
    eprintln!("20 create/remove cycles on the {kind:?} network: {took:?}");
}

#[test]
fn our_bridge_network_leaks_nothing_over_20_cycles() {
    if available() {
        leaks_nothing_over_20_cycles(Kind::Ours);
    }
}

/// The oracle: the reference plugins pass the same leak check (and give the baseline time).
#[test]
fn reference_bridge_network_leaks_nothing_over_20_cycles() {
    if available() {
        leaks_nothing_over_20_cycles(Kind::Reference);
    }
}

/// The harness without the bridge: [loopback, logger] (ours), a container runs and exits.
#[test]
fn loopback_logger_network() {
    if !available() {
        return;
    }
    let pod = Pod::new(Kind::LoopbackLogger);
    let rootfs = pod.path("rootfs").display().to_string();
    let out = pod.ok(&[
        "run",
        "--rm",
        "--network",
        &pod.network,
        "--rootfs",
        &rootfs,
        "/bin/ip",
        "-o",
        "addr",
        "show",
        "lo",
    ]);
    assert!(out.contains("127.0.0.1/8"), "lo in the container: {out}");
    assert_eq!(
        pod.cached_results(),
        Vec::<String>::new(),
        "libcni cache left"
    );
}

/// host-device (ours): a veth end created in the throwaway host namespace moves into the
/// container with an address, answers its peer, and goes back on `podman rm`.
#[test]
fn our_host_device_network() {
    if !available() {
        return;
    }
    let pod = Pod::new(Kind::HostDevice);
    pod.start("dev", &[], &["/bin/sleep", "600"]);
    let ip = pod.ip_of("dev");
    assert!(ip.starts_with(&format!("{}.", pod.prefix)), "address {ip}");
    let links = pod.host.ip_json(&["link", "show"]);
    assert!(
        !links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ifname"] == "hd0"),
        "hd0 is still in the host namespace"
    );
    pod.ping("dev", &format!("{}.1", pod.prefix));
    pod.ok(&["rm", "-f", "-t", "0", "dev"]);
    let links = pod.host.ip_json(&["link", "show"]);
    assert!(
        links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ifname"] == "hd0"),
        "hd0 did not come back to the host namespace: {links}"
    );
    assert_eq!(
        pod.reservations(),
        Vec::<String>::new(),
        "IPs left reserved"
    );
}
