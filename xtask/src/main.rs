//! Build orchestration: `cargo xtask <build|install|demo|test>`.
//!
//! Guests (wasm32-wasip2) and the host (native) have different targets and the host is built
//! twice: `wasm-cni` without a compiler (what runtimes exec) and `wasm-cni-compile` with
//! Cranelift (install time). Cargo cannot express that in one invocation, so it lives here.

use std::env;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

mod new_plugin;

mod bench;
mod demo;
mod image;
mod pgo;

const GUEST_TARGET: &str = "wasm32-wasip2";
/// The runtime and the install-time compiler: two invocations, because features unify within
/// one and the runtime must not link Cranelift.
const RUNTIME_BUILD: &[&str] = &["-p", "wasm-cni", "--bin", "wasm-cni"];
const COMPILER_BUILD: &[&str] = &[
    "-p",
    "wasm-cni",
    "--features",
    "compiler",
    "--bin",
    "wasm-cni-compile",
];
const HOST_BINARIES: &[&str] = &["wasm-cni", "wasm-cni-compile"];
/// Guests built for the tests only, never installed (the example plugins among them).
const TEST_GUESTS: &[&str] = &["hostile", "sysctl-tuning"];

const USAGE: &str = "usage: cargo xtask <command>
  build                   add the wasm32-wasip2 target if missing, build guests and host
  install --dir DIR [--replace]
                          install wasm-cni, wasm-cni-compile, one link + .wasm + .cwasm per plugin
                          (an existing file that is not our link is kept unless --replace)
  demo                    build, install to a temp dir, run loopback + logger in a throwaway netns
  bench [--runs N]        build, install to a temp dir, time our plugins against /usr/lib/cni
                          (interleaved, throwaway netns); writes target/bench/results.{md,svg}
  image [--storage DIR]   build, then the node installer image localhost/wasm-cni:<version> offline
                          (deploy/Containerfile.prebuilt); --storage: a private podman under DIR
  test                    every test: fmt, clippy, unit, integration and differential (as root)
  new-plugin NAME [--dir DIR]
                          generate a plugin crate (guests/NAME by default) from the SDK template";

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = workspace_root();
    env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("build") => build(&root).map(|_| ()),
        Some("install") => {
            let dir = flag_value(&args, "--dir").context("install needs --dir DIR")?;
            let built = build(&root)?;
            install(
                &built,
                Path::new(&dir),
                args.iter().any(|a| a == "--replace"),
            )
        }
        Some("demo") => demo(&root),
        Some("bench") => bench(&root, &args[1..]),
        Some("image") => {
            let built = build(&root)?;
            let podman = match flag_value(&args, "--storage") {
                Some(dir) => image::Podman::private(Path::new(&dir))?,
                None => image::Podman::system(),
            };
            image::build(&root, &built, &podman).map(|tag| println!("{tag}"))
        }
        Some("test") => test(&root),
        Some("new-plugin") => new_plugin::run(&root, &args[1..]),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2)
        }
    }
}

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first-party plugin types: one directory each under `guests/`.
fn guests(root: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(root.join("guests"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// What a build produced.
struct Built {
    bin_dir: PathBuf,
    guest_dir: PathBuf,
    guests: Vec<String>,
    /// Whether the host binaries were built with the runtime's profile (see `pgo.rs`).
    pgo: bool,
}

/// Add the guest target and the node target to the toolchain if they are missing, and check
/// for the C compiler the node target needs (wasmtime compiles a small C helper).
fn ensure_targets() -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    for target in [GUEST_TARGET.to_string(), node_triple()?] {
        if !installed.lines().any(|l| l.trim() == target) {
            run(Command::new("rustup").args(["target", "add", &target]))?;
        }
    }
    let musl_gcc = Command::new("musl-gcc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !musl_gcc.is_ok_and(|s| s.success()) {
        bail!("musl-gcc not found: the host binaries link musl (apt-get install musl-tools)");
    }
    Ok(())
}

fn build(root: &Path) -> Result<Built> {
    ensure_targets()?;
    let guests = guests(root)?;
    let mut guest_build = cargo();
    guest_build.args(["build", "--profile", "guest", "--target", GUEST_TARGET]);
    for g in guests
        .iter()
        .map(String::as_str)
        .chain(TEST_GUESTS.iter().copied())
    {
        guest_build.args(["-p", g]);
    }
    run(&mut guest_build)?;
    let guest_dir = target_dir(root).join(GUEST_TARGET).join("guest");
    // Both host binaries with the runtime's profile, when one can be made (pgo.rs): the same
    // flags for both, so they share their dependencies' builds.
    let profile = pgo::runtime(root, &guest_dir, &guests)?;
    let flags = pgo::use_flags(profile.as_deref());
    for build in [RUNTIME_BUILD, COMPILER_BUILD] {
        run(&mut host_build_with(build, &flags, None)?)?;
    }
    Ok(Built {
        bin_dir: host_bin_dir(root)?,
        guest_dir,
        guests,
        pgo: profile.is_some(),
    })
}

/// The workspace's target directory, absolute (a relative `CARGO_TARGET_DIR` is taken from the
/// workspace, as cargo takes it): paths under it end up in rustc flags, and cargo runs rustc
/// in each package's own directory.
fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"))
}

/// A guest's built module: `<name with _>.wasm` for a library guest, `<name>.wasm` for a
/// guest built as a program (a WASI command).
fn guest_module(guest_dir: &Path, guest: &str) -> PathBuf {
    let lib = guest_dir.join(format!("{}.wasm", guest.replace('-', "_")));
    if lib.exists() {
        lib
    } else {
        guest_dir.join(format!("{guest}.wasm"))
    }
}

/// The toolchain's rustc (`RUSTC`, as cargo sets it for us, else the one on `PATH`).
fn rustc() -> Command {
    Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
}

/// What `rustc -vV` says (the toolchain, its LLVM and host triple), asked once.
fn rustc_version() -> Result<String> {
    static INFO: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(info) = INFO.get() {
        return Ok(info.clone());
    }
    let info = output(rustc().arg("-vV"))?;
    Ok(INFO.get_or_init(|| info).clone())
}

/// The triple of the machine we build on (`rustc -vV`).
fn host_triple() -> Result<String> {
    rustc_version()?
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|t| t.trim().to_string())
        .context("rustc -vV names no host triple")
}

/// The target of the native binaries a node runs: this machine's architecture and OS, with
/// musl as the C library (`x86_64-unknown-linux-gnu` → `x86_64-unknown-linux-musl`).
fn node_triple() -> Result<String> {
    let host = host_triple()?;
    match host.strip_suffix("-gnu") {
        Some(base) if base.ends_with("-linux") => Ok(format!("{base}-musl")),
        _ if host.ends_with("-linux-musl") => Ok(host),
        _ => bail!("cannot build the host binaries on {host}: they target Linux (gnu or musl)"),
    }
}

/// `cargo build --release` of native binaries a node runs (the host, the compiler, the bench's
/// native floor): static musl executables. Static, because a binary exec'd per container
/// event should not map and relocate a dynamic loader, libc.so, libm and libgcc_s every time
/// (measured: a loopback ADD 2.11 → 1.71 ms, docs/bench.md), and it runs on any node whatever
/// its libc. musl rather than static glibc, because glibc's start-up reads the CPU's cache
/// topology with ~60 `cpuid` instructions, and in a VM each one traps to the hypervisor (5 µs
/// each here): a static glibc `int main(){}` costs 440 µs to exec, a raw `_start` 140 µs.
/// (musl's malloc is slow; the binaries bring their own allocator, host/src/main.rs.)
/// `--target` is explicit so that `+crt-static` reaches these binaries but not the build
/// scripts and proc macros cargo builds for itself.
fn host_build(args: &[&str]) -> Result<Command> {
    host_build_with(args, &[], None)
}

/// [`host_build`] with more rustc flags (PGO's, see `pgo.rs`), into another target directory
/// if `target_dir` is set (a binary built with other flags would otherwise replace the one in
/// the workspace's `release/`).
fn host_build_with(args: &[&str], extra: &[String], target_dir: Option<&Path>) -> Result<Command> {
    // getrandom's default Linux backend finds getrandom() with dlsym, which a static binary
    // cannot do: it then falls back to polling /dev/random and reading /dev/urandom (4
    // syscalls per process, for WASI's random seeds). musl has getrandom(): call it directly.
    //
    // The binaries are static-pie (ASLR kept), so every exec relocates itself first: its 5878
    // relative relocations took 140 KiB of RELA entries to read, ~35 page faults of a table
    // read once. RELR (`-z pack-relative-relocs`, binutils >= 2.38; musl's start-up applies
    // it) packs them into 1.7 KiB: loopback ADD 1.12 -> 1.06 ms p50 (400 interleaved execs),
    // the same gain as giving up PIE altogether (measured 1.10 vs 1.09).
    let ours = [
        "-C",
        "target-feature=+crt-static",
        "-C",
        "link-arg=-Wl,-z,pack-relative-relocs",
        "--cfg",
        r#"getrandom_backend="linux_getrandom""#,
    ];
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", &node_triple()?])
        .args(args);
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let ours: Vec<String> = ours
        .iter()
        .map(|f| f.to_string())
        .chain(extra.to_vec())
        .collect();
    let encoded = env::var("CARGO_ENCODED_RUSTFLAGS").ok();
    let plain = env::var("RUSTFLAGS").ok();
    let flags = encoded_rustflags(encoded, plain, &ours);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags);
    cmd.env_remove("RUSTFLAGS");
    Ok(cmd)
}

/// `ours` added to the caller's rustc flags, taken as cargo takes them (`CARGO_ENCODED_RUSTFLAGS`
/// when set, even empty, else `RUSTFLAGS`), encoded for `CARGO_ENCODED_RUSTFLAGS`: one flag per
/// `\x1f`-separated field, so that a flag with a space in it (a profile's path) stays one flag.
fn encoded_rustflags(encoded: Option<String>, plain: Option<String>, ours: &[String]) -> String {
    let callers: Vec<String> = match (encoded, plain) {
        (Some(encoded), _) if encoded.is_empty() => Vec::new(),
        (Some(encoded), _) => encoded.split('\x1f').map(String::from).collect(),
        (None, plain) => plain
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    callers
        .into_iter()
        .chain(ours.iter().cloned())
        .collect::<Vec<_>>()
        .join("\x1f")
}

/// Where [`host_build`] puts its binaries.
fn host_bin_dir(root: &Path) -> Result<PathBuf> {
    Ok(target_dir(root).join(node_triple()?).join("release"))
}

/// Copy `src` to `dest` atomically: a reader sees the old file or the new one, never a mix.
fn install_file(src: &Path, dest: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = dest.with_extension(format!("xtask-tmp.{}", std::process::id()));
    fs::copy(src, &tmp)
        .with_context(|| format!("copying {} to {}", src.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, dest).with_context(|| format!("installing {}", dest.display()))?;
    Ok(())
}

fn install(built: &Built, dir: &Path, replace: bool) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for bin in HOST_BINARIES {
        install_file(&built.bin_dir.join(bin), &dir.join(bin), 0o755)?;
    }
    for g in &built.guests {
        let link = dir.join(g);
        if let Ok(meta) = fs::symlink_metadata(&link) {
            let ours = meta.file_type().is_symlink()
                && fs::read_link(&link)?.as_path() == Path::new("wasm-cni");
            if !ours && !replace {
                eprintln!(
                    "keeping {} (not a wasm-cni link; use --replace to take it over)",
                    link.display()
                );
                continue;
            }
        }
        let module = dir.join(format!("{g}.wasm"));
        install_file(&guest_module(&built.guest_dir, g), &module, 0o644)?;
        run(Command::new(dir.join("wasm-cni-compile"))
            .arg(&module)
            .stdout(Stdio::null()))?;
        let tmp = dir.join(format!(".{g}.link.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        symlink("wasm-cni", &tmp)?;
        fs::rename(&tmp, &link)?;
    }
    eprintln!(
        "installed wasm-cni and {} plugin(s) into {}",
        built.guests.len(),
        dir.display()
    );
    Ok(())
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        let dir = env::temp_dir().join(format!("wasm-cni-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A throwaway network namespace, deleted on drop (also when the demo fails).
struct Netns(String);

impl Netns {
    fn new(name: String) -> Result<Netns> {
        run(Command::new("ip").args(["netns", "add", &name]))?;
        Ok(Netns(name))
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (network namespaces and netlink)");
    }
    Ok(())
}

fn demo(root: &Path) -> Result<()> {
    require_root("the demo")?;
    let built = build(root)?;
    let dir = TempDir::new("demo")?;
    install(&built, &dir.0, false)?;
    demo::demo(&dir.0)
}

fn bench(root: &Path, args: &[String]) -> Result<()> {
    require_root("the bench")?;
    let runs = bench::runs(args)?;
    ensure_reference_plugins()?;
    let built = build(root)?;
    let dir = TempDir::new("bench")?;
    install(&built, &dir.0, false)?;
    bench::bench(root, &dir.0, runs, built.pgo)
}

fn ensure_reference_plugins() -> Result<()> {
    if Path::new("/usr/lib/cni/loopback").exists() {
        return Ok(());
    }
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "containernetworking-plugins"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn test(root: &Path) -> Result<()> {
    require_root("the integration tests")?;
    ensure_reference_plugins()?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Unit tests (pure logic), release profile to share the build's deps: the host, the
    // types, the SDK and every guest's logic natively against the SDK's fake host.
    let mut unit = cargo();
    unit.args(["test", "--release"]);
    for p in [
        "wasm-cni-types",
        "wasm-cni",
        "wasm-cni-sdk",
        "xtask",
        "sysctl-tuning",
    ] {
        unit.args(["-p", p]);
    }
    for g in guests(root)? {
        unit.args(["-p", &g]);
    }
    run(&mut unit)?;
    let built = build(root)?;
    let dir = TempDir::new("test")?;
    install(&built, &dir.0, false)?;
    // The installer image (tests/tests/deploy.rs runs it as the DaemonSet would), in a
    // private podman storage that goes away with the temp dir.
    let skip_podman = env::var("WASM_CNI_SKIP_PODMAN").is_ok_and(|v| v == "1");
    let podman_dir = TempDir::new("image")?;
    let podman = image::Podman::private(&podman_dir.0)?;
    let image = if skip_podman {
        None
    } else {
        Some(image::build(root, &built, &podman)?)
    };
    // Integration and differential tests: the installed links, exec'd as a runtime does.
    let mut integration = cargo();
    integration
        .args(["test", "--release", "-p", "wasm-cni-tests"])
        .env("WASM_CNI_BIN_DIR", &dir.0)
        .env("WASM_CNI_GUEST_DIR", &built.guest_dir);
    if let Some(tag) = &image {
        integration
            .env("WASM_CNI_IMAGE", tag)
            .env("WASM_CNI_PODMAN_DIR", &podman_dir.0);
    }
    let result = run(&mut integration);
    if let Some(tag) = &image {
        podman.remove_image(tag);
    }
    result?;
    eprintln!("all tests passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::encoded_rustflags;

    fn flags(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_profile_path_with_a_space_stays_one_flag_after_the_callers_flags() {
        let ours = flags(&[
            "-C",
            "target-feature=+crt-static",
            "-Cprofile-use=/a b/x.profdata",
        ]);
        let plain = Some("-C  opt-level=2 ".to_string());
        let got = encoded_rustflags(None, plain, &ours);
        let fields: Vec<&str> = got.split('\x1f').collect();
        assert_eq!(
            fields,
            [
                "-C",
                "opt-level=2",
                "-C",
                "target-feature=+crt-static",
                "-Cprofile-use=/a b/x.profdata"
            ]
        );
    }

    #[test]
    fn encoded_flags_are_kept_as_they_are_and_preferred_over_rustflags() {
        let encoded = Some("--cfg\x1fx=\"a b\"".to_string());
        let plain = Some("-Cignored".to_string());
        let got = encoded_rustflags(encoded, plain, &flags(&["-Cours"]));
        assert_eq!(got, "--cfg\x1fx=\"a b\"\x1f-Cours");
        // Set but empty, it still wins (no flags), as cargo reads it.
        let got = encoded_rustflags(Some(String::new()), Some("-Ca".into()), &flags(&["-Cb"]));
        assert_eq!(got, "-Cb");
        let got = encoded_rustflags(None, Some("-Ca".into()), &flags(&["-Cb"]));
        assert_eq!(got, "-Ca\x1f-Cb");
    }
}
