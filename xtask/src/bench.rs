//! `cargo xtask bench`: our plugins against Debian's reference plugins (`/usr/lib/cni`), exec'd
//! exactly as a runtime execs them (vfork/exec of the plugin binary, as Go's `os/exec` does for
//! libcni; CNI env, config on stdin), from a thread of the bench that entered a throwaway host
//! netns, interleaved (ours, reference, ours, …) so that load on the machine hits both alike.
//! Peak RSS comes from separate fork/exec runs (see [`Spawn`]).
//!
//! Everything runs in throwaway namespaces (a host netns, container netns) and a temp IPAM
//! store; all of it is removed on drop, also when a run fails. Every exec has a timeout. Timings
//! are reported, never asserted. See docs/bench.md.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{run, Netns, TempDir};

/// No exec may take longer than this (a cold start compiles the module: seconds, not minutes).
const TIMEOUT: Duration = Duration::from_secs(60);
/// The cniVersion both sides speak (Debian's reference plugins stop at 1.0.0).
const CNI_VERSION: &str = "1.0.0";
const REFERENCE_DIR: &str = "/usr/lib/cni";
const CONCURRENT: usize = 64;
/// Forked runs per operation for its peak RSS (see [`Spawn::Fork`]), after the timed runs.
const RSS_RUNS: usize = 10;

/// Set by SIGINT/SIGTERM: the loop stops and returns an error, so every guard still runs.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM caught while it lives (they set [`STOP`]), the previous handlers back
/// when dropped: the PGO training runs inside a longer command (`test`, `install`) that must
/// still die of a signal afterwards.
struct SignalsCaught([libc::sighandler_t; 2]);

impl SignalsCaught {
    fn new() -> SignalsCaught {
        let mut old = [libc::SIG_DFL; 2];
        for (i, sig) in [libc::SIGINT, libc::SIGTERM].into_iter().enumerate() {
            // SAFETY: the handler only stores to an atomic (async-signal-safe).
            old[i] = unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        }
        SignalsCaught(old)
    }
}

impl Drop for SignalsCaught {
    fn drop(&mut self) {
        for (i, sig) in [libc::SIGINT, libc::SIGTERM].into_iter().enumerate() {
            // SAFETY: restores the handler `signal` returned for this signal.
            unsafe { libc::signal(sig, self.0[i]) };
        }
    }
}

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted; removing the namespaces and temp dirs");
    }
    Ok(())
}

/// How an exec is spawned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Spawn {
    /// As a container runtime spawns a plugin: Go's `os/exec` (libcni, so containerd, CRI-O and
    /// podman) clones with `CLONE_VM | CLONE_VFORK` and execs; std does the same through glibc's
    /// `posix_spawn`. The child shares the bench's memory until its exec, so no page table is
    /// copied. The timed execs.
    Runtime,
    /// fork, then exec: the child has its own copy of the bench's (trimmed) memory map. Only for
    /// peak RSS: after a vfork the kernel records the *parent's* peak RSS in the child's
    /// `ru_maxrss` at exec, so a `Runtime` exec cannot tell the plugin's own.
    Fork,
}

/// The throwaway netns that plays the host. The bench's measuring thread enters it
/// ([`HostNs::enter`]) and every process it (or a thread it starts) spawns is born there, like
/// a plugin exec'd by a runtime in the host netns.
struct HostNs {
    /// `/var/run/netns/<name>`, opened `O_RDONLY | O_CLOEXEC` (std's default). Dropped before
    /// the [`Netns`] guard deletes the namespace.
    file: fs::File,
}

impl HostNs {
    fn open(ns: &Netns) -> Result<HostNs> {
        let path = ns.path();
        let file = fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        Ok(HostNs { file })
    }

    /// Moves the calling thread into this netns. Only for a thread of the bench's own that
    /// does nothing else (see [`bench`]): threads it starts and processes it spawns inherit it.
    fn enter(&self) -> Result<()> {
        // SAFETY: setns on an fd we hold open; it changes only the calling thread.
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "setns into the bench's host netns: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }
}

/// Returns the bench's free heap pages (the 64-way case leaves a malloc arena per thread) to the
/// kernel between runs: a forked child's peak RSS starts at the bench's RSS (see [`Exec`]).
fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
    unsafe { libc::malloc_trim(0) };
}

/// One finished exec.
struct Exec {
    spawn: Spawn,
    ms: f64,
    /// Peak resident set of the child (`ru_maxrss`, KiB); meaningful for [`Spawn::Fork`] only:
    /// the exec'd program itself (no wrapper), plus the pre-exec image's RSS, the pages the
    /// child got from the bench at fork (the `/bin/true` floor row).
    rss_kb: i64,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Spawns `prog` directly (no wrapper) as `spawn` says, from the calling thread (so in its
/// netns), with exactly `env` and `stdin`, bounded by [`TIMEOUT`]; wall time from spawn to reap,
/// peak RSS from `wait4`. The pipes are served by `poll` on this thread: no helper thread is
/// started per exec, so nothing of the bench's competes with the child for a core.
fn exec(
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
    spawn: Spawn,
) -> Result<Exec> {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if spawn == Spawn::Fork {
        // A pre-exec hook makes std fork instead of posix_spawn (vfork).
        // SAFETY: the hook does nothing.
        unsafe { cmd.pre_exec(|| Ok(())) };
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", prog.display()))?;
    let pid = child.id() as libc::pid_t;
    let pipes = [
        OwnedFd::from(child.stdin.take().expect("piped")),
        OwnedFd::from(child.stdout.take().expect("piped")),
        OwnedFd::from(child.stderr.take().expect("piped")),
    ];
    let io = communicate(pipes, stdin.as_bytes(), start + TIMEOUT);
    if !matches!(io, Ok(Some(_))) {
        // SAFETY: pid is our child, not reaped yet, so it cannot have been recycled.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: rusage is plain data; zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our child; status and usage are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4({pid}): {err}");
        }
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let Some([out, err]) = io? else {
        bail!("{} timed out after {TIMEOUT:?} (killed)", prog.display());
    };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    Ok(Exec {
        spawn,
        ms,
        rss_kb: usage.ru_maxrss,
        code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// Feeds `input` to the child's stdin (then closes it) and reads its stdout and stderr to their
/// ends, with one `poll` loop on the calling thread. `Ok(None)`: `deadline` passed first.
fn communicate(
    pipes: [OwnedFd; 3],
    input: &[u8],
    deadline: Instant,
) -> Result<Option<[Vec<u8>; 2]>> {
    // 0: the child's stdin (we write), 1 and 2: its stdout and stderr (we read); None once done.
    let mut ends: [Option<fs::File>; 3] = pipes.map(|fd| Some(fs::File::from(fd)));
    for f in ends.iter().flatten() {
        set_nonblocking(f)?;
    }
    if input.is_empty() {
        ends[0] = None;
    }
    let mut bufs = [Vec::new(), Vec::new()];
    let mut written = 0;
    loop {
        let open: Vec<usize> = (0..3).filter(|&i| ends[i].is_some()).collect();
        if !open.iter().any(|&i| i > 0) {
            return Ok(Some(bufs));
        }
        let mut pfds: Vec<libc::pollfd> = open
            .iter()
            .map(|&i| libc::pollfd {
                fd: ends[i].as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: if i == 0 { libc::POLLOUT } else { libc::POLLIN },
                revents: 0,
            })
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: pfds is a valid array of pollfd of that length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("poll: {e}");
        }
        for (&i, p) in open.iter().zip(&pfds) {
            if p.revents == 0 {
                continue;
            }
            let Some(f) = ends[i].as_mut() else { continue };
            let done = if i == 0 {
                match f.write(&input[written..]) {
                    Ok(k) => written += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // EPIPE: the child closed its stdin or exited; it reads no more.
                    Err(_) => written = input.len(),
                }
                written == input.len()
            } else {
                drain(f, &mut bufs[i - 1])?
            };
            if done {
                ends[i] = None;
            }
        }
    }
}

/// Reads what `f` has now into `buf`; true at its end.
fn drain(f: &mut fs::File, buf: &mut Vec<u8>) -> Result<bool> {
    let mut chunk = [0u8; 16384];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading a child's output"),
        }
    }
}

fn set_nonblocking(f: &fs::File) -> Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if !ok {
        bail!("O_NONBLOCK on a pipe: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Like [`exec`], but a failed exec is an error.
fn exec_ok(
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
    spawn: Spawn,
) -> Result<Exec> {
    check_stop()?;
    let e = exec(prog, args, env, stdin, spawn)?;
    if e.code != 0 {
        bail!(
            "{} exited {}: {}\n{}",
            prog.display(),
            e.code,
            e.stdout.trim(),
            e.stderr.trim()
        );
    }
    Ok(e)
}

/// Timings and peak RSS of one side of one operation.
#[derive(Default)]
struct Series {
    ms: Vec<f64>,
    rss_kb: Vec<i64>,
}

impl Series {
    /// A timed exec adds its time, a forked one its peak RSS.
    fn push(&mut self, e: &Exec) {
        match e.spawn {
            Spawn::Runtime => self.ms.push(e.ms),
            Spawn::Fork => self.rss_kb.push(e.rss_kb),
        }
    }

    fn pct(&self, p: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        // Nearest rank.
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    fn peak_mib(&self) -> f64 {
        self.rss_kb.iter().copied().max().unwrap_or(0) as f64 / 1024.0
    }
}

/// One row of the table: ours and (unless a floor) the reference.
struct Op {
    name: &'static str,
    ours: Series,
    reference: Option<Series>,
    /// The native floor (`wasm-cni-floor`: the same netlink work without wasm), where it exists.
    floor: Option<Series>,
}

impl Op {
    fn pair(name: &'static str) -> Op {
        Op {
            name,
            ours: Series::default(),
            reference: Some(Series::default()),
            floor: None,
        }
    }

    fn single(name: &'static str) -> Op {
        Op {
            name,
            ours: Series::default(),
            reference: None,
            floor: None,
        }
    }

    fn reference(&mut self) -> &mut Series {
        self.reference.as_mut().expect("a paired operation")
    }

    /// A paired operation that the native floor also does.
    fn with_floor(mut self) -> Op {
        self.floor = Some(Series::default());
        self
    }
}

/// Time per phase of our traced execs (`WASM_CNI_TRACE=1`), in first-seen order.
#[derive(Default)]
struct Phases {
    phases: Vec<(String, Vec<f64>)>,
}

impl Phases {
    fn add(&mut self, stderr: &str) -> Result<()> {
        let line = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["msg"] == "invocation")
            .context("no invocation line on our stderr")?;
        let phases = line["phases_us"]
            .as_object()
            .context("the invocation line has no phases_us (WASM_CNI_TRACE ignored?)")?;
        for (name, us) in phases {
            let us = us.as_f64().unwrap_or(0.0);
            match self.phases.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => v.push(us),
                None => self.phases.push((name.clone(), vec![us])),
            }
        }
        Ok(())
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The CNI environment of one call.
struct Call<'a> {
    command: &'a str,
    container: &'a str,
    netns: String,
    ifname: &'a str,
    cni_path: &'a Path,
    trace: bool,
}

impl Call<'_> {
    fn env(&self) -> Vec<(&str, String)> {
        let mut env = vec![
            ("CNI_COMMAND", self.command.to_string()),
            ("CNI_CONTAINERID", self.container.to_string()),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_IFNAME", self.ifname.to_string()),
            ("CNI_PATH", self.cni_path.display().to_string()),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
        ];
        if self.trace {
            env.push(("WASM_CNI_TRACE", "1".to_string()));
        }
        env
    }
}

/// Ours (0), the reference (1) or the native floor (2) of an operation.
fn side_of(op: &mut Op, n: usize) -> &mut Series {
    match n {
        0 => &mut op.ours,
        1 => op.reference(),
        _ => op.floor.as_mut().expect("an operation with a native floor"),
    }
}

/// One side of the comparison: where its plugins live.
struct Side<'a> {
    dir: &'a Path,
    ours: bool,
}

impl Side<'_> {
    /// VERSION to `loopback`: no netns, no container.
    fn version(&self, stdin: &str, spawn: Spawn) -> Result<Exec> {
        let cni_path = self.dir.display().to_string();
        let env = [("CNI_COMMAND", "VERSION"), ("CNI_PATH", cni_path.as_str())];
        exec_ok(&self.dir.join("loopback"), &[], &env, stdin, spawn)
    }

    fn call(&self, plugin: &str, call: &Call, conf: &Value, spawn: Spawn) -> Result<Exec> {
        let env = call.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        exec_ok(&self.dir.join(plugin), &[], &env, &conf.to_string(), spawn)
    }

    /// ADD, then DEL with the ADD's result as `prevResult` (as libcni passes it).
    fn add_del<'c>(
        &self,
        plugin: &str,
        call: impl Fn(&'c str) -> Call<'c>,
        conf: &Value,
        spawn: Spawn,
    ) -> Result<(Exec, Exec)> {
        let add = self.call(plugin, &call("ADD"), conf, spawn)?;
        let del = self.call(plugin, &call("DEL"), &with_prev(conf, &add.stdout)?, spawn)?;
        Ok((add, del))
    }
}

/// The stdin of a VERSION call.
fn version_stdin() -> String {
    json!({"cniVersion": CNI_VERSION}).to_string()
}

fn loopback_conf(name: &str) -> Value {
    json!({"cniVersion": CNI_VERSION, "name": name, "type": "loopback"})
}

fn host_device_conf(name: &str, device: &str) -> Value {
    json!({"cniVersion": CNI_VERSION, "name": name, "type": "host-device", "device": device})
}

/// An `isGateway` bridge with host-local IPAM on `subnet`, its store under `data`.
fn bridge_conf(name: &str, bridge: &str, subnet: &str, data: &Path) -> Value {
    json!({
        "cniVersion": CNI_VERSION,
        "name": name,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipam": {
            "type": "host-local",
            "dataDir": data.display().to_string(),
            "ranges": [[{"subnet": subnet}]],
        }
    })
}

/// The throwaway netns that plays the host made ready: `lo` up, and a veth pair per
/// `(device, peer)` whose first end a host-device call moves.
fn set_up_host(host: &Netns, veths: &[(&str, &str)]) -> Result<()> {
    run(Command::new("ip").args(["-n", &host.0, "link", "set", "lo", "up"]))?;
    for (dev, peer) in veths {
        run(Command::new("ip").args([
            "-n", &host.0, "link", "add", dev, "type", "veth", "peer", "name", peer,
        ]))?;
    }
    Ok(())
}

/// Execs the native floor for `call` with the part of its environment the floor reads
/// (VERSION: only the command and `CNI_PATH`).
fn floor_exec(floor: &Path, call: &Call, conf: &str, spawn: Spawn) -> Result<Exec> {
    let mut env = vec![
        ("CNI_COMMAND", call.command.to_string()),
        ("CNI_PATH", call.cni_path.display().to_string()),
    ];
    if call.command != "VERSION" {
        env.extend([
            ("CNI_CONTAINERID", call.container.to_string()),
            ("CNI_NETNS", call.netns.clone()),
            ("CNI_IFNAME", call.ifname.to_string()),
        ]);
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    exec_ok(floor, &[], &env, conf, spawn)
}

/// The native floor binary (`bench/native-floor`), built and linked like the host.
pub const FLOOR_BIN: &str = "wasm-cni-floor";
pub const FLOOR_BUILD: &[&str] = &["-p", "wasm-cni-native-floor"];

/// Builds the native floor like the runtime: with a profile of its own workload when one can
/// be made (the same conditions as the runtime's, see `pgo.rs`; the report says which got
/// one), in a target dir of its own then (other flags than the runtime's). Returns the binary
/// and whether it has a profile.
fn build_floor(root: &Path) -> Result<(std::path::PathBuf, bool)> {
    let Some(profile) = crate::pgo::floor(root)? else {
        run(&mut crate::host_build(FLOOR_BUILD)?)?;
        return Ok((crate::host_bin_dir(root)?.join(FLOOR_BIN), false));
    };
    let dir = crate::pgo::floor_target_dir(root);
    let flags = crate::pgo::use_flags(Some(&profile));
    run(&mut crate::host_build_with(
        FLOOR_BUILD,
        &flags,
        Some(&dir),
    )?)?;
    let bin = dir
        .join(crate::node_triple()?)
        .join("release")
        .join(FLOOR_BIN);
    Ok((bin, true))
}

fn with_prev(conf: &Value, prev: &str) -> Result<Value> {
    let mut conf = conf.clone();
    conf["prevResult"] = serde_json::from_str(prev).context("an ADD printed no JSON result")?;
    Ok(conf)
}

fn first_ip(result: &str) -> Option<String> {
    let v: Value = serde_json::from_str(result).ok()?;
    v["ips"][0]["address"].as_str().map(str::to_string)
}

/// `ours_pgo`: whether the installed `wasm-cni` was built with its profile (see `pgo.rs`).
pub fn bench(root: &Path, dir: &Path, runs: usize, ours_pgo: bool) -> Result<()> {
    let _signals = SignalsCaught::new();
    let (floor_bin, floor_pgo) = build_floor(root)?;
    let reference = Path::new(REFERENCE_DIR);
    let pid = std::process::id();
    let host = Netns::new(format!("wcni-bench-host-{pid}"))?;
    let ctr = [
        Netns::new(format!("wcni-bench-co-{pid}"))?,
        Netns::new(format!("wcni-bench-cr-{pid}"))?,
        Netns::new(format!("wcni-bench-cf-{pid}"))?,
    ];
    let many: Vec<Netns> = (0..CONCURRENT)
        .map(|i| Netns::new(format!("wcni-bench-m{i}-{pid}")))
        .collect::<Result<_>>()?;
    // Declared after the guards, so dropped (closed) before they delete the namespaces.
    let hns = HostNs::open(&host)?;
    let data = TempDir::new("bench-ipam")?;
    // A host device per side: one end of a veth pair in the host netns.
    set_up_host(&host, &[("wcbhdo0", "wcbhdo1"), ("wcbhdr0", "wcbhdr1")])?;
    let sides = [
        Side { dir, ours: true },
        Side {
            dir: reference,
            ours: false,
        },
    ];
    // Side 0 ours, 1 the reference, 2 the native floor: one bridge and subnet each.
    let bridge_conf_of = |n: usize| {
        let (tag, subnet) = [
            ("o", "10.98.0.0/24"),
            ("r", "10.98.1.0/24"),
            ("f", "10.98.2.0/24"),
        ][n];
        bridge_conf(
            &format!("bench-{tag}"),
            &format!("wcb-{tag}"),
            subnet,
            &data.0,
        )
    };
    let side_bridge_conf = |ours: bool| bridge_conf_of(if ours { 0 } else { 1 });
    let loopback_conf = loopback_conf("bench-lo");
    let hd_conf =
        |ours: bool| host_device_conf("bench-hd", if ours { "wcbhdo0" } else { "wcbhdr0" });
    let version_stdin = version_stdin();

    let mut version = Op::pair("VERSION").with_floor();
    let mut lo = Op::pair("loopback ADD (warm)").with_floor();
    let mut cold = Op::pair("loopback ADD (cold: .cwasm removed)");
    let mut br_add = Op::pair("bridge ADD (host-local)").with_floor();
    let mut br_del = Op::pair("bridge DEL (host-local)").with_floor();
    let mut hd_add = Op::pair("host-device ADD");
    let mut hd_del = Op::pair("host-device DEL");
    let mut conc = Op::pair("64 concurrent bridge ADDs (wall)");
    let mut true_floor = Op::single("floor: /bin/true exec");
    let mut version_floor = Op::single("floor: wasm-cni version exec");
    let mut traced: [(&str, Phases); 5] = [
        ("loopback ADD", Phases::default()),
        ("bridge ADD", Phases::default()),
        ("bridge DEL", Phases::default()),
        ("host-device ADD", Phases::default()),
        ("host-device DEL", Phases::default()),
    ];
    let artifact = dir.join("loopback.cwasm");

    // One run of every warm operation; `Spawn::Fork` runs collect peak RSS only.
    let mut round = |spawn: Spawn| -> Result<()> {
        check_stop()?;
        trim_heap();
        for (s, side) in sides.iter().enumerate() {
            let n = s;
            let cwd = ctr[n].path();
            let call = |command, ifname| Call {
                command,
                container: "bench",
                netns: cwd.clone(),
                ifname,
                cni_path: side.dir,
                trace: false,
            };
            side_of(&mut version, n).push(&side.version(&version_stdin, spawn)?);
            let e = side.call("loopback", &call("ADD", "lo"), &loopback_conf, spawn)?;
            side_of(&mut lo, n).push(&e);
            let conf = side_bridge_conf(side.ours);
            let (add, del) = side.add_del("bridge", |c| call(c, "eth0"), &conf, spawn)?;
            side_of(&mut br_add, n).push(&add);
            side_of(&mut br_del, n).push(&del);
            let conf = hd_conf(side.ours);
            let (add, del) = side.add_del("host-device", |c| call(c, "hd0"), &conf, spawn)?;
            side_of(&mut hd_add, n).push(&add);
            side_of(&mut hd_del, n).push(&del);
        }
        // The native floor: the same netlink work, no wasm (VERSION: process start only).
        {
            let cwd = ctr[2].path();
            let floor = |command: &str, ifname: &str, conf: &str| -> Result<Exec> {
                let call = Call {
                    command,
                    container: "bench",
                    netns: cwd.clone(),
                    ifname,
                    cni_path: dir,
                    trace: false,
                };
                floor_exec(&floor_bin, &call, conf, spawn)
            };
            side_of(&mut version, 2).push(&floor("VERSION", "", &version_stdin)?);
            side_of(&mut lo, 2).push(&floor("ADD", "lo", &loopback_conf.to_string())?);
            let conf = bridge_conf_of(2);
            let add = floor("ADD", "eth0", &conf.to_string())?;
            side_of(&mut br_add, 2).push(&add);
            let del = floor("DEL", "eth0", &with_prev(&conf, &add.stdout)?.to_string())?;
            side_of(&mut br_del, 2).push(&del);
        }
        // Process-start floors.
        true_floor
            .ours
            .push(&exec_ok(Path::new("/bin/true"), &[], &[], "", spawn)?);
        version_floor.ours.push(&exec_ok(
            &dir.join("wasm-cni"),
            &["version"],
            &[],
            "",
            spawn,
        )?);
        // Where our exec spends its time (timed runs only).
        if spawn == Spawn::Runtime {
            let ours = &sides[0];
            let traced_call = |command, ifname| Call {
                command,
                container: "bench-trace",
                netns: ctr[0].path(),
                ifname,
                cni_path: dir,
                trace: true,
            };
            let e = ours.call("loopback", &traced_call("ADD", "lo"), &loopback_conf, spawn)?;
            traced[0].1.add(&e.stderr)?;
            let conf = side_bridge_conf(true);
            let (add, del) = ours.add_del("bridge", |c| traced_call(c, "eth0"), &conf, spawn)?;
            traced[1].1.add(&add.stderr)?;
            traced[2].1.add(&del.stderr)?;
            let conf = hd_conf(true);
            let hd = |c| traced_call(c, "hd0");
            let (add, del) = ours.add_del("host-device", hd, &conf, spawn)?;
            traced[3].1.add(&add.stderr)?;
            traced[4].1.add(&del.stderr)?;
        }
        // 64 concurrent bridge ADDs onto one bridge, then DEL them all (untimed).
        for (s, side) in sides.iter().enumerate() {
            let conf = side_bridge_conf(side.ours);
            let calls: Vec<(String, Value)> = many
                .iter()
                .enumerate()
                .map(|(k, ns)| (format!("bench-m{k}"), ns.path().into()))
                .collect();
            let burst =
                |command: &'static str, prevs: Option<&[String]>| -> Result<(f64, Vec<Exec>)> {
                    let start = Instant::now();
                    let results: Vec<Result<Exec>> = thread::scope(|scope| {
                        let handles: Vec<_> = calls
                            .iter()
                            .enumerate()
                            .map(|(k, (cid, ns))| {
                                let conf = match prevs {
                                    Some(p) => with_prev(&conf, &p[k]),
                                    None => Ok(conf.clone()),
                                };
                                scope.spawn(move || {
                                    let call = Call {
                                        command,
                                        container: cid,
                                        netns: ns.as_str().unwrap_or_default().to_string(),
                                        ifname: "eth0",
                                        cni_path: side.dir,
                                        trace: false,
                                    };
                                    side.call("bridge", &call, &conf?, spawn)
                                })
                            })
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| h.join().unwrap_or_else(|_| bail!("a thread panicked")))
                            .collect()
                    });
                    let wall = start.elapsed().as_secs_f64() * 1000.0;
                    Ok((wall, results.into_iter().collect::<Result<_>>()?))
                };
            let (wall, adds) = burst("ADD", None)?;
            let ips: HashSet<String> = adds.iter().filter_map(|e| first_ip(&e.stdout)).collect();
            if ips.len() != CONCURRENT {
                bail!(
                    "{}: {CONCURRENT} concurrent ADDs gave {} distinct IPs",
                    if side.ours { "ours" } else { "reference" },
                    ips.len()
                );
            }
            let series = side_of(&mut conc, s);
            match spawn {
                Spawn::Runtime => series.ms.push(wall),
                Spawn::Fork => series
                    .rss_kb
                    .push(adds.iter().map(|e| e.rss_kb).max().unwrap_or(0)),
            }
            let prevs: Vec<String> = adds.into_iter().map(|e| e.stdout).collect();
            burst("DEL", Some(&prevs))?;
        }
        Ok(())
    };
    // Cold start, after all the warm runs: without the artifact the exec compiles the module
    // first and writes a fresh artifact, which the next exec would verify in full (a fresh
    // file gets no verified marker), so doing it inside the loop would tax the warm rows.
    let mut cold_round = |spawn: Spawn| -> Result<()> {
        check_stop()?;
        trim_heap();
        for (n, side) in sides.iter().enumerate() {
            let call = Call {
                command: "ADD",
                container: "bench",
                netns: ctr[n].path(),
                ifname: "lo",
                cni_path: side.dir,
                trace: false,
            };
            if side.ours {
                fs::remove_file(&artifact)
                    .with_context(|| format!("removing {}", artifact.display()))?;
            }
            let e = side.call("loopback", &call, &loopback_conf, spawn)?;
            side_of(&mut cold, n).push(&e);
            if side.ours && !artifact.exists() {
                bail!("the cold exec did not write {} back", artifact.display());
            }
        }
        Ok(())
    };

    // Every measured process is spawned by this one thread of the bench, which entered the
    // host netns (or by the threads it starts for the 64-way case, which inherit it); the main
    // thread stays where it was. Timed runs first, then a few forked runs for peak RSS.
    let rss_runs = runs.min(RSS_RUNS);
    thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                hns.enter()?;
                for i in 0..runs {
                    eprint!("\rbench run {}/{runs}", i + 1);
                    round(Spawn::Runtime)?;
                }
                for i in 0..rss_runs {
                    eprint!(
                        "\rbench run {}/{runs}, peak RSS run {}/{rss_runs}",
                        runs,
                        i + 1
                    );
                    round(Spawn::Fork)?;
                }
                eprintln!();
                for i in 0..runs {
                    eprint!("\rcold run {}/{runs}", i + 1);
                    cold_round(Spawn::Runtime)?;
                }
                for i in 0..rss_runs {
                    eprint!(
                        "\rcold run {}/{runs}, peak RSS run {}/{rss_runs}",
                        runs,
                        i + 1
                    );
                    cold_round(Spawn::Fork)?;
                }
                eprintln!();
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| bail!("the bench thread panicked"))
    })?;

    let ops = [
        version,
        lo,
        cold,
        br_add,
        br_del,
        hd_add,
        hd_del,
        conc,
        true_floor,
        version_floor,
    ];
    let report = report(&ops, &traced, runs, [ours_pgo, floor_pgo])?;
    print!("{report}");
    let out = root.join("target").join("bench");
    fs::create_dir_all(&out)?;
    fs::write(out.join("results.md"), &report)?;
    fs::write(out.join("results.svg"), svg(&ops))?;
    eprintln!(
        "wrote {} and {}",
        out.join("results.md").display(),
        out.join("results.svg").display()
    );
    Ok(())
}

fn machine() -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores, load average {} (at the end), kernel {}",
        load.join(" "),
        kernel.trim()
    )
}

/// `pgo`: whether ours and the floor were built with a profile of their workload.
fn report(ops: &[Op], traced: &[(&str, Phases)], runs: usize, pgo: [bool; 2]) -> Result<String> {
    let mut r = String::new();
    writeln!(r, "# wasm-cni bench\n")?;
    let with = |on: bool| if on { "with" } else { "without" };
    writeln!(
        r,
        "{runs} runs per operation, interleaved ours/reference, cniVersion {CNI_VERSION}, every \
         exec a direct vfork/exec of the plugin binary as a Go runtime's `os/exec` does it, from \
         a bench thread in a throwaway host netns; peak RSS from {} more fork/exec runs per \
         operation. Ours built {} its profile (PGO), the native floor {} its own. Machine: {}.\n",
        runs.min(RSS_RUNS),
        with(pgo[0]),
        with(pgo[1]),
        machine()
    )?;
    writeln!(
        r,
        "| operation | ours p50 ms | ours p95 ms | ref p50 ms | ref p95 ms | ours/ref p50 | ours/ref p95 | ours peak RSS MiB | ref peak RSS MiB |"
    )?;
    writeln!(r, "|---|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    for op in ops {
        let o = &op.ours;
        match &op.reference {
            Some(f) => writeln!(
                r,
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
                op.name,
                o.pct(50.0),
                o.pct(95.0),
                f.pct(50.0),
                f.pct(95.0),
                o.pct(50.0) / f.pct(50.0),
                o.pct(95.0) / f.pct(95.0),
                o.peak_mib(),
                f.peak_mib()
            )?,
            None => writeln!(
                r,
                "| {} | {:.2} | {:.2} | | | | | {:.1} | |",
                op.name,
                o.pct(50.0),
                o.pct(95.0),
                o.peak_mib()
            )?,
        }
    }
    writeln!(
        r,
        "\nSandbox overhead per exec = ours − native floor (`wasm-cni-floor`: the same netlink \
         work and host-local store writes by a plain Rust program with the host's netns code, \
         no wasm), p50:\n"
    )?;
    writeln!(r, "| operation | ours p50 ms | native floor p50 ms | sandbox overhead ms | floor peak RSS MiB |")?;
    writeln!(r, "|---|--:|--:|--:|--:|")?;
    for op in ops {
        if let Some(f) = &op.floor {
            writeln!(
                r,
                "| {} | {:.2} | {:.2} | {:.2} | {:.1} |",
                op.name,
                op.ours.pct(50.0),
                f.pct(50.0),
                op.ours.pct(50.0) - f.pct(50.0),
                f.peak_mib()
            )?;
        }
    }
    writeln!(
        r,
        "\nPeak RSS is `ru_maxrss` of the exec'd plugin process itself (no wrapper), from the \
         fork/exec runs (after a vfork Linux records the parent's peak). Linux also counts the \
         child's resident pages before its exec (those it shares with the bench process after \
         the fork), so no row is below the `/bin/true` floor row.\n"
    )?;
    writeln!(
        r,
        "Where our exec spends its time (`WASM_CNI_TRACE=1`, {runs} separate traced execs, µs per \
         phase as mean (median), in-process only; process start is the floor rows):\n"
    )?;
    writeln!(r, "| exec | phases: mean (median) µs | sum of means µs |")?;
    writeln!(r, "|---|---|--:|")?;
    for (name, p) in traced {
        let parts: Vec<String> = p
            .phases
            .iter()
            .map(|(n, v)| format!("{n} {:.0} ({:.0})", mean(v), median(v)))
            .collect();
        let total: f64 = p.phases.iter().map(|(_, v)| mean(v)).sum();
        writeln!(r, "| {name} | {} | {total:.0} |", parts.join(", "))?;
    }
    Ok(r)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Horizontal bars, ours vs reference p50 per operation; each row is scaled to its own larger
/// value (the ops span 1 ms to seconds), the numbers are the p50s.
fn svg(ops: &[Op]) -> String {
    let (label_w, bar_w, row_h, top) = (330.0, 420.0, 44.0, 50.0);
    let width = label_w + bar_w + 110.0;
    let height = top + row_h * ops.len() as f64 + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">wasm-cni vs reference CNI plugins: p50 per exec (ms), each row scaled to its larger bar</text><rect x="10" y="30" width="12" height="10" fill="#3b7dd8"/><text x="26" y="39">ours</text><rect x="70" y="30" width="12" height="10" fill="#999"/><text x="86" y="39">reference (/usr/lib/cni)</text>"##
    );
    for (i, op) in ops.iter().enumerate() {
        let y = top + row_h * i as f64;
        let ours = op.ours.pct(50.0);
        let reference = op.reference.as_ref().map(|f| f.pct(50.0));
        let max = reference
            .map_or(ours, |f| f.max(ours))
            .max(f64::MIN_POSITIVE);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_w - 8.0,
            y + 20.0,
            esc(op.name)
        );
        if let Some(f) = reference {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#555">ours/ref {:.2}</text>"##,
                label_w - 8.0,
                y + 34.0,
                ours / f
            );
        }
        let bars = [(ours, "#3b7dd8", 0.0)]
            .into_iter()
            .chain(reference.map(|f| (f, "#999", 18.0)));
        for (v, color, dy) in bars {
            let w = (v / max * bar_w).max(1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{label_w}" y="{}" width="{w:.1}" height="16" fill="{color}"/><text x="{:.1}" y="{}">{v:.2}</text>"#,
                y + 4.0 + dy,
                label_w + w + 4.0,
                y + 16.0 + dy
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The runs requested with `--runs N` (default 30).
pub fn runs(args: &[String]) -> Result<usize> {
    match crate::flag_value(args, "--runs") {
        Some(n) => {
            let n: usize = n.parse().context("--runs needs a number")?;
            if n == 0 {
                bail!("--runs must be at least 1");
            }
            Ok(n)
        }
        None => Ok(30),
    }
}

/// The training workload of a profile of `wasm-cni` (see `pgo.rs`): the operations the bench
/// times, `rounds` times each, through the plugins installed in `dir`, in throwaway namespaces
/// of their own (tag `wcni-pgo-*`). Every exec must succeed: a failure is a broken build.
pub fn train_runtime(dir: &Path, rounds: usize) -> Result<()> {
    train(rounds, |ns, data| {
        let side = Side { dir, ours: true };
        let call = |command, ifname| Call {
            command,
            container: "pgo",
            netns: ns.clone(),
            ifname,
            cni_path: dir,
            trace: false,
        };
        let spawn = Spawn::Runtime;
        side.version(&version_stdin(), spawn)?;
        side.add_del(
            "loopback",
            |c| call(c, "lo"),
            &loopback_conf("pgo-lo"),
            spawn,
        )?;
        let bridge = train_bridge_conf(data);
        side.add_del("bridge", |c| call(c, "eth0"), &bridge, spawn)?;
        // And CHECK, which needs the container's interface: ADD, CHECK, DEL.
        let add = side.call("bridge", &call("ADD", "eth0"), &bridge, spawn)?;
        let prev = with_prev(&bridge, &add.stdout)?;
        side.call("bridge", &call("CHECK", "eth0"), &prev, spawn)?;
        side.call("bridge", &call("DEL", "eth0"), &prev, spawn)?;
        let hd = host_device_conf("pgo-hd", TRAIN_DEVICE);
        side.add_del("host-device", |c| call(c, "hd0"), &hd, spawn)?;
        Ok(())
    })
}

/// The training workload of the native floor's profile: its operations in the bench.
pub fn train_floor(floor: &Path, rounds: usize) -> Result<()> {
    let cni_path = floor.parent().unwrap_or(Path::new("/"));
    train(rounds, |ns, data| {
        let exec = |command, ifname, conf: &str| {
            let call = Call {
                command,
                container: "pgo",
                netns: ns.clone(),
                ifname,
                cni_path,
                trace: false,
            };
            floor_exec(floor, &call, conf, Spawn::Runtime)
        };
        exec("VERSION", "", &version_stdin())?;
        exec("ADD", "lo", &loopback_conf("pgo-lo").to_string())?;
        let bridge = train_bridge_conf(data);
        let add = exec("ADD", "eth0", &bridge.to_string())?;
        exec("DEL", "eth0", &with_prev(&bridge, &add.stdout)?.to_string())?;
        Ok(())
    })
}

/// The host device the runtime's training moves: a veth end in the training's host netns.
const TRAIN_DEVICE: &str = "wcpgohd0";
const TRAIN_DEVICE_PEER: &str = "wcpgohd1";

fn train_bridge_conf(data: &Path) -> Value {
    bridge_conf("pgo-br", "wcpgo-br", "10.98.40.0/24", data)
}

/// Runs `round(container netns path, IPAM data dir)` `rounds` times from a thread that entered
/// a throwaway host netns (with `lo` up and a veth pair for host-device), like the bench.
fn train(rounds: usize, round: impl Fn(String, &Path) -> Result<()> + Sync) -> Result<()> {
    // Ctrl-C stops the training at its next exec and the guards remove what it made.
    let _signals = SignalsCaught::new();
    let pid = std::process::id();
    let host = Netns::new(format!("wcni-pgo-host-{pid}"))?;
    let ctr = Netns::new(format!("wcni-pgo-c-{pid}"))?;
    let hns = HostNs::open(&host)?;
    let data = TempDir::new("pgo-ipam")?;
    set_up_host(&host, &[(TRAIN_DEVICE, TRAIN_DEVICE_PEER)])?;
    thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                hns.enter()?;
                for _ in 0..rounds {
                    round(ctr.path(), &data.0)?;
                }
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| bail!("the training thread panicked"))
    })
}
