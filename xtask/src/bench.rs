//! `cargo xtask bench`: our plugins against Debian's reference plugins (`/usr/lib/cni`), exec'd
//! exactly as a runtime execs them (fork/exec of the plugin binary, CNI env, config on stdin),
//! the plugin process living in a throwaway host netns that the child enters between fork and
//! exec, interleaved (ours, reference, ours, …) so that load on the machine hits both alike.
//!
//! Everything runs in throwaway namespaces (a host netns, container netns) and a temp IPAM
//! store; all of it is removed on drop, also when a run fails. Every exec has a timeout. Timings
//! are reported, never asserted. See docs/bench.md.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
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

/// Set by SIGINT/SIGTERM: the loop stops and returns an error, so every guard still runs.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted; removing the namespaces and temp dirs");
    }
    Ok(())
}

/// The throwaway netns that plays the host: every measured process enters it in the child,
/// between fork and exec, like a plugin exec'd by a runtime in the host netns.
struct HostNs {
    /// `/var/run/netns/<name>`, opened `O_RDONLY | O_CLOEXEC` (std's default): the forked child
    /// uses it for `setns` before its exec, so no exec'd process inherits it. Held open for the
    /// whole bench; dropped before the [`Netns`] guard deletes the namespace.
    file: fs::File,
}

impl HostNs {
    fn open(ns: &Netns) -> Result<HostNs> {
        let path = ns.path();
        let file = fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        Ok(HostNs { file })
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
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
    ms: f64,
    /// Peak resident set of the child (`ru_maxrss`, KiB), the exec'd program itself (no
    /// wrapper). Linux also records the pre-exec image's RSS here: the pages the child got from
    /// the bench at fork, the `/bin/true` floor row.
    rss_kb: i64,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Fork/exec `prog` directly (no wrapper), the child entering the netns `host` before its exec,
/// with exactly `env` and `stdin`, bounded by [`TIMEOUT`]; wall time from spawn to reap, peak
/// RSS from `wait4`.
fn exec(
    host: &HostNs,
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> Result<Exec> {
    let fd = host.fd();
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs in the forked child before exec; it only calls setns (async-signal-safe) on
    // an fd the parent keeps open and reads errno, allocating nothing and taking no locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", prog.display()))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || match rx.recv_timeout(TIMEOUT) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            // SAFETY: pid is our unreaped child (the reaper holds the channel until wait4
            // returned), so it cannot have been recycled.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            true
        }
        _ => false,
    });
    let mut sin = child.stdin.take().expect("piped");
    let input = stdin.as_bytes().to_vec();
    let writer = thread::spawn(move || {
        let _ = sin.write_all(&input);
    });
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .map(|r| {
        let mut r = r.expect("piped");
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
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
            drop(tx);
            bail!("wait4({pid}): {err}");
        }
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    drop(tx);
    let killed = watchdog.join().unwrap_or(false);
    let _ = writer.join();
    let [out, err] = readers.map(|h| h.join().unwrap_or_default());
    if killed {
        bail!(
            "{} timed out after {TIMEOUT:?} (killed)\n{err}",
            prog.display()
        );
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    Ok(Exec {
        ms,
        rss_kb: usage.ru_maxrss,
        code,
        stdout: out,
        stderr: err,
    })
}

/// Like [`exec`], but a failed exec is an error.
fn exec_ok(
    host: &HostNs,
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> Result<Exec> {
    check_stop()?;
    let e = exec(host, prog, args, env, stdin)?;
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
    fn push(&mut self, e: &Exec) {
        self.ms.push(e.ms);
        self.rss_kb.push(e.rss_kb);
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
    fn call(&self, host: &HostNs, plugin: &str, call: &Call, conf: &Value) -> Result<Exec> {
        let env = call.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        exec_ok(host, &self.dir.join(plugin), &[], &env, &conf.to_string())
    }
}

/// The native floor binary (`bench/native-floor`), built and linked like the host.
const FLOOR_BIN: &str = "wasm-cni-floor";

fn build_floor(root: &Path) -> Result<std::path::PathBuf> {
    run(&mut crate::host_build(&["-p", "wasm-cni-native-floor"])?)?;
    Ok(crate::host_bin_dir(root)?.join(FLOOR_BIN))
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

pub fn bench(root: &Path, dir: &Path, runs: usize) -> Result<()> {
    catch_signals();
    let floor_bin = build_floor(root)?;
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
    run(Command::new("ip").args(["-n", &host.0, "link", "set", "lo", "up"]))?;
    // A host device per side: one end of a veth pair in the host netns.
    for (dev, peer) in [("wcbhdo0", "wcbhdo1"), ("wcbhdr0", "wcbhdr1")] {
        run(Command::new("ip").args([
            "-n", &host.0, "link", "add", dev, "type", "veth", "peer", "name", peer,
        ]))?;
    }
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
        json!({
            "cniVersion": CNI_VERSION,
            "name": format!("bench-{tag}"),
            "type": "bridge",
            "bridge": format!("wcb-{tag}"),
            "isGateway": true,
            "ipam": {
                "type": "host-local",
                "dataDir": data.0.display().to_string(),
                "ranges": [[{"subnet": subnet}]],
            }
        })
    };
    let bridge_conf = |ours: bool| bridge_conf_of(if ours { 0 } else { 1 });
    let loopback_conf = json!({"cniVersion": CNI_VERSION, "name": "bench-lo", "type": "loopback"});
    let hd_conf = |ours: bool| {
        json!({
            "cniVersion": CNI_VERSION,
            "name": "bench-hd",
            "type": "host-device",
            "device": if ours { "wcbhdo0" } else { "wcbhdr0" },
        })
    };
    let version_stdin = json!({"cniVersion": CNI_VERSION}).to_string();

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

    for i in 0..runs {
        check_stop()?;
        trim_heap();
        eprint!("\rbench run {}/{runs}", i + 1);
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
            // VERSION: no netns, no container.
            let v = exec_ok(
                &hns,
                &side.dir.join("loopback"),
                &[],
                &[
                    ("CNI_COMMAND", "VERSION"),
                    ("CNI_PATH", &side.dir.display().to_string()),
                ],
                &version_stdin,
            )?;
            side_of(&mut version, n).push(&v);
            let e = side.call(&hns, "loopback", &call("ADD", "lo"), &loopback_conf)?;
            side_of(&mut lo, n).push(&e);
            let conf = bridge_conf(side.ours);
            let add = side.call(&hns, "bridge", &call("ADD", "eth0"), &conf)?;
            side_of(&mut br_add, n).push(&add);
            let del = side.call(
                &hns,
                "bridge",
                &call("DEL", "eth0"),
                &with_prev(&conf, &add.stdout)?,
            )?;
            side_of(&mut br_del, n).push(&del);
            let conf = hd_conf(side.ours);
            let add = side.call(&hns, "host-device", &call("ADD", "hd0"), &conf)?;
            side_of(&mut hd_add, n).push(&add);
            let del = side.call(
                &hns,
                "host-device",
                &call("DEL", "hd0"),
                &with_prev(&conf, &add.stdout)?,
            )?;
            side_of(&mut hd_del, n).push(&del);
        }
        // The native floor: the same netlink work, no wasm (VERSION: process start only).
        {
            let cwd = ctr[2].path();
            let env = |command: &str, ifname: &str| {
                let mut env = vec![
                    ("CNI_COMMAND", command.to_string()),
                    ("CNI_PATH", dir.display().to_string()),
                ];
                if command != "VERSION" {
                    env.extend([
                        ("CNI_CONTAINERID", "bench".to_string()),
                        ("CNI_NETNS", cwd.clone()),
                        ("CNI_IFNAME", ifname.to_string()),
                    ]);
                }
                env
            };
            let floor = |command: &str, ifname: &str, conf: &str| -> Result<Exec> {
                let env = env(command, ifname);
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                exec_ok(&hns, &floor_bin, &[], &env, conf)
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
            .push(&exec_ok(&hns, Path::new("/bin/true"), &[], &[], "")?);
        version_floor.ours.push(&exec_ok(
            &hns,
            &dir.join("wasm-cni"),
            &["version"],
            &[],
            "",
        )?);
        // Where our exec spends its time.
        let ours = &sides[0];
        let traced_call = |command, ifname| Call {
            command,
            container: "bench-trace",
            netns: ctr[0].path(),
            ifname,
            cni_path: dir,
            trace: true,
        };
        let e = ours.call(&hns, "loopback", &traced_call("ADD", "lo"), &loopback_conf)?;
        traced[0].1.add(&e.stderr)?;
        let conf = bridge_conf(true);
        let add = ours.call(&hns, "bridge", &traced_call("ADD", "eth0"), &conf)?;
        traced[1].1.add(&add.stderr)?;
        let del = ours.call(
            &hns,
            "bridge",
            &traced_call("DEL", "eth0"),
            &with_prev(&conf, &add.stdout)?,
        )?;
        traced[2].1.add(&del.stderr)?;
        let conf = hd_conf(true);
        let add = ours.call(&hns, "host-device", &traced_call("ADD", "hd0"), &conf)?;
        traced[3].1.add(&add.stderr)?;
        let del = ours.call(
            &hns,
            "host-device",
            &traced_call("DEL", "hd0"),
            &with_prev(&conf, &add.stdout)?,
        )?;
        traced[4].1.add(&del.stderr)?;
        // 64 concurrent bridge ADDs onto one bridge, then DEL them all (untimed).
        for (s, side) in sides.iter().enumerate() {
            let conf = bridge_conf(side.ours);
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
                                let host = &hns;
                                scope.spawn(move || {
                                    let call = Call {
                                        command,
                                        container: cid,
                                        netns: ns.as_str().unwrap_or_default().to_string(),
                                        ifname: "eth0",
                                        cni_path: side.dir,
                                        trace: false,
                                    };
                                    side.call(host, "bridge", &call, &conf?)
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
            let peak = adds.iter().map(|e| e.rss_kb).max().unwrap_or(0);
            let s_ = side_of(&mut conc, s);
            s_.ms.push(wall);
            s_.rss_kb.push(peak);
            let prevs: Vec<String> = adds.into_iter().map(|e| e.stdout).collect();
            burst("DEL", Some(&prevs))?;
        }
    }
    eprintln!();
    // Cold start, after all the warm runs: without the artifact the exec compiles the module
    // first and writes a fresh artifact, which the next exec would verify in full (a fresh
    // file gets no verified marker), so doing it inside the loop would tax the warm rows.
    for i in 0..runs {
        check_stop()?;
        trim_heap();
        eprint!("\rcold run {}/{runs}", i + 1);
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
            let e = side.call(&hns, "loopback", &call, &loopback_conf)?;
            side_of(&mut cold, n).push(&e);
            if side.ours && !artifact.exists() {
                bail!("the cold exec did not write {} back", artifact.display());
            }
        }
    }
    eprintln!();

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
    let report = report(&ops, &traced, runs)?;
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

fn report(ops: &[Op], traced: &[(&str, Phases)], runs: usize) -> Result<String> {
    let mut r = String::new();
    writeln!(r, "# wasm-cni bench\n")?;
    writeln!(
        r,
        "{runs} runs per operation, interleaved ours/reference, cniVersion {CNI_VERSION}, every \
         exec a direct fork/exec of the plugin binary whose child enters a throwaway host netns \
         (`setns`) before its exec. Machine: {}.\n",
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
        "\nPeak RSS is `ru_maxrss` of the exec'd plugin process itself (no wrapper). Linux also \
         counts the child's resident pages before its exec (those it shares with the bench \
         process after the fork), so no row is below the `/bin/true` floor row.\n"
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
