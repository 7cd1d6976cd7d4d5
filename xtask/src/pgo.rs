//! Profile-guided optimization (PGO) of the binaries a node runs per container event.
//!
//! An exec of `wasm-cni` runs most of its code once: deserializing an artifact's metadata,
//! instantiating, the host calls, the netlink messages, the log lines. Nothing is warm, so
//! what counts is how straight that code runs and how little of it is touched. LLVM lays out
//! and optimizes code by how often it ran when it has a profile: hot paths inlined and
//! contiguous, the rest kept small and out of the way. Measured on this project's 2-core VM
//! (100 interleaved execs each, docs/bench.md): bridge ADD 2.94 → 2.68 ms, loopback ADD
//! 1.16 → 1.02 ms, the artifact load 671 → 515 µs.
//!
//! `cargo xtask build` (and so install, demo, test, bench and image) makes the profile:
//! 1. builds `wasm-cni` and `wasm-cni-compile` instrumented (`-Cprofile-generate`), in a target
//!    directory of their own (`target/pgo/instrumented`), never installed;
//! 2. installs them with the first-party plugins in a temp dir and runs the bench's operations
//!    (VERSION; loopback ADD, DEL; bridge with host-local ADD, CHECK, DEL; host-device ADD,
//!    DEL) in throwaway network namespaces (`bench::train_runtime`);
//! 3. merges the counts with `llvm-profdata` (rustup's `llvm-tools`, added when missing) into
//!    `target/pgo/wasm-cni.profdata`;
//! 4. builds the shipped binaries with `-Cprofile-use` of it.
//!
//! The profile is made again when what it was made from changed (a stamp beside it: the
//! toolchain, the instrumented binaries, the guests' modules, [`WORKLOAD`]). rustc counts the
//! profile as an input of every crate it builds, so a new profile rebuilds the shipped
//! binaries with all their dependencies: after each change to the host's code a root build
//! takes the instrumented build, ~10 s of training and a full release build.
//! `WASM_CNI_PGO=0 cargo xtask test` skips all of it while developing. A profile changes how
//! code is laid out and optimized, never what it does; every test runs against the binaries
//! built with it.
//!
//! Without root (the training needs network namespaces), where namespaces cannot be made (an
//! unprivileged container build), without `ip` or `llvm-profdata`, or with `WASM_CNI_PGO=0`,
//! the binaries are built without a profile and a note says why. A training that fails (an
//! exec that fails) fails the build: it is the build's own plugins failing.
//!
//! The bench's native floor gets the same treatment with its own workload (`floor`), so that
//! the sandbox's overhead (ours − floor) compares binaries built alike.

use std::env;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};

use crate::{
    bench, guest_module, host_build_with, node_triple, output, run, target_dir, TempDir,
    COMPILER_BUILD, RUNTIME_BUILD,
};

/// Rounds of the training workload: every path it takes runs many times over (a profile
/// needs proportions, not totals), and training takes seconds.
const ROUNDS: usize = 10;
/// The training workloads' version, part of a profile's stamp: bump it when
/// `bench::train_runtime` or `bench::train_floor` change what they run.
const WORKLOAD: u32 = 1;

/// The rustc flags that build with `profile`, if there is one.
///
/// LLVM optimizes the code a profile calls hot for speed, inlining into it whatever it calls,
/// however large (`opt-level = "z"` no longer holds it back). With its default cut-off (the
/// code that ran 99 % of the counts is hot) `wasm-cni`'s `.text` grew 2.30 → 3.10 MB, and since
/// an exec's whole executable mapping is resident, peak RSS with it: bridge DEL 4.38 → 4.75 MiB,
/// above the reference's 4.61. At 90 % `.text` is 2.52 MB, peak RSS as without a profile
/// (4.44 / 4.44 MiB for bridge ADD / DEL) and the time the same as at 99 % (100 interleaved
/// execs: bridge ADD 3.29 vs 3.22 ms, loopback 1.14 vs 1.17; 3.64 and 1.35 without a profile).
pub fn use_flags(profile: Option<&Path>) -> Vec<String> {
    profile
        .map(|p| {
            vec![
                format!("-Cprofile-use={}", p.display()),
                "-Cllvm-args=-profile-summary-cutoff-hot=900000".to_string(),
            ]
        })
        .unwrap_or_default()
}

/// The profile of `wasm-cni`, made unless the one there was made from the same inputs (see
/// [`profile`]). `None`: built without one (a note said why).
pub fn runtime(root: &Path, guest_dir: &Path, guests: &[String]) -> Result<Option<PathBuf>> {
    let builds = [RUNTIME_BUILD, COMPILER_BUILD];
    let modules: Vec<PathBuf> = guests.iter().map(|g| guest_module(guest_dir, g)).collect();
    let train = |bin_dir: &Path, discard: &Path| {
        // Installed like `cargo xtask install` does, from the instrumented binaries. The
        // compiler's own counts go elsewhere: it is not what an exec runs.
        let dir = TempDir::new("pgo-install")?;
        for bin in crate::HOST_BINARIES {
            fs::copy(bin_dir.join(bin), dir.0.join(bin))
                .with_context(|| format!("copying the instrumented {bin}"))?;
        }
        for (g, built) in guests.iter().zip(&modules) {
            let module = dir.0.join(format!("{g}.wasm"));
            fs::copy(built, &module).with_context(|| format!("copying {}", built.display()))?;
            run(Command::new(dir.0.join("wasm-cni-compile"))
                .arg(&module)
                .env("LLVM_PROFILE_FILE", discard.join("compile-%p.profraw"))
                .stdout(Stdio::null()))?;
            symlink("wasm-cni", dir.0.join(g)).context("linking a plugin to wasm-cni")?;
        }
        bench::train_runtime(&dir.0, ROUNDS)
    };
    profile(root, "wasm-cni", &builds, &["wasm-cni"], &modules, train)
}

/// The native floor's profile (`bench/native-floor`), made like the runtime's.
pub fn floor(root: &Path) -> Result<Option<PathBuf>> {
    let bin = bench::FLOOR_BIN;
    profile(
        root,
        "floor",
        &[bench::FLOOR_BUILD],
        &[bin],
        &[],
        |bin_dir, _| bench::train_floor(&bin_dir.join(bin), ROUNDS),
    )
}

/// Where the floor is built with its profile (flags other than the runtime's).
pub fn floor_target_dir(root: &Path) -> PathBuf {
    pgo_dir(root).join("floor")
}

/// Where profiles, counts and instrumented builds live.
fn pgo_dir(root: &Path) -> PathBuf {
    target_dir(root).join("pgo")
}

/// Build `builds` instrumented, and unless `<name>.profdata` was made from the same inputs
/// (its stamp: the toolchain, the instrumented `bins`, the `modules` the training runs,
/// [`WORKLOAD`]), run `train(instrumented bin dir, dir for counts to drop)` and merge every
/// count the instrumented binaries wrote into it.
fn profile(
    root: &Path,
    name: &str,
    builds: &[&[&str]],
    bins: &[&str],
    modules: &[PathBuf],
    train: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<Option<PathBuf>> {
    if let Some(why) = unavailable() {
        eprintln!("note: building {name} without a profile (PGO): {why}");
        return Ok(None);
    }
    let profdata = match llvm_profdata() {
        Ok(tool) => tool,
        Err(e) => {
            eprintln!("note: building {name} without a profile (PGO): {e:#}");
            return Ok(None);
        }
    };
    let dir = pgo_dir(root);
    // One directory for every instrumented binary's counts (the flag is part of the build:
    // one value for all keeps them in one target dir without rebuilding each other).
    let raw = dir.join("raw");
    let generate = vec![format!("-Cprofile-generate={}", raw.display())];
    let instrumented = dir.join("instrumented");
    let hint = "WASM_CNI_PGO=0 builds without a profile";
    for build in builds {
        run(&mut host_build_with(build, &generate, Some(&instrumented))?)
            .with_context(|| format!("the instrumented build of {name} ({hint})"))?;
    }
    let bin_dir = instrumented.join(node_triple()?).join("release");
    let out = dir.join(format!("{name}.profdata"));
    let stamp_path = dir.join(format!("{name}.profdata.stamp"));
    let inputs: Vec<PathBuf> = bins
        .iter()
        .map(|b| bin_dir.join(b))
        .chain(modules.iter().cloned())
        .collect();
    let stamp = stamp(&inputs)?;
    if out.exists() && fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(Some(out));
    }
    let discard = dir.join("discard");
    for d in [&raw, &discard] {
        let _ = fs::remove_dir_all(d);
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    eprintln!("training {name} for its profile (PGO)");
    train(&bin_dir, &discard)
        .with_context(|| format!("training {name} for its profile ({hint})"))?;
    let counts: Vec<PathBuf> = fs::read_dir(&raw)
        .with_context(|| format!("reading {}", raw.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "profraw"))
        .collect();
    if counts.is_empty() {
        bail!("training {name} wrote no counts into {}", raw.display());
    }
    let tmp = out.with_extension("profdata.tmp");
    let merged = run(Command::new(&profdata)
        .arg("merge")
        .arg("-o")
        .arg(&tmp)
        .args(&counts));
    if let Err(e) = merged {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    fs::write(&stamp_path, stamp).with_context(|| format!("writing {}", stamp_path.display()))?;
    let _ = fs::remove_dir_all(&discard);
    Ok(Some(out))
}

/// What a profile is made from: the toolchain (`rustc -vV`: its LLVM reads the profile), the
/// workload's version and each input file's path, size and modification time.
fn stamp(inputs: &[PathBuf]) -> Result<String> {
    let mut stamp = crate::rustc_version()?;
    stamp.push_str(&format!("workload {WORKLOAD}\n"));
    for input in inputs {
        let meta = fs::metadata(input).with_context(|| format!("reading {}", input.display()))?;
        let mtime = meta.modified()?.duration_since(UNIX_EPOCH)?.as_nanos();
        stamp.push_str(&format!("{} {} {mtime}\n", input.display(), meta.len()));
    }
    Ok(stamp)
}

/// Why no profile can be made here, if so.
fn unavailable() -> Option<String> {
    if env::var("WASM_CNI_PGO").is_ok_and(|v| v == "0") {
        return Some("WASM_CNI_PGO=0".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (its training runs plugins in network namespaces)".into());
    }
    let name = format!("wcni-pgo-probe-{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match made {
        Ok(s) if s.success() => {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
            None
        }
        Ok(_) => Some("cannot create network namespaces here (`ip netns add` failed)".into()),
        Err(e) => Some(format!("cannot run `ip` (iproute2): {e}")),
    }
}

/// rustup's `llvm-profdata` for this toolchain, the component added if missing.
fn llvm_profdata() -> Result<PathBuf> {
    let sysroot = output(crate::rustc().args(["--print", "sysroot"]))?;
    let tool = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(crate::host_triple()?)
        .join("bin/llvm-profdata");
    if !tool.exists() {
        let added = Command::new("rustup")
            .args(["component", "add", "llvm-tools"])
            .status();
        if !added.is_ok_and(|s| s.success()) || !tool.exists() {
            bail!("no {} (rustup component add llvm-tools)", tool.display());
        }
    }
    Ok(tool)
}
