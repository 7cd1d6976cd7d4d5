//! `cargo xtask image`: the node installer image, built offline from `cargo xtask build`'s
//! outputs.
//!
//! `deploy/Containerfile` is the recipe for real CI: it builds everything in a Rust image and
//! copies the outputs into a Debian one, so it needs both base images from a registry. This
//! builds the same image content without pulling anything: the outputs of this checkout's
//! build are staged into a build context (`target/image/context`) and
//! `deploy/Containerfile.prebuilt` (`FROM scratch`, one `COPY`) turns it into
//! `localhost/wasm-cni:<version>`.
//!
//! The context holds what the node gets (`/wasm-cni/bin`, `/wasm-cni/plugins`,
//! `/wasm-cni/install.sh`, the same layout as the upstream image), a static busybox as `/bin/sh`
//! and the coreutils `install.sh` uses; no libraries: the two host binaries are static musl
//! executables (checked: no program interpreter), and `install.sh` runs `wasm-cni-compile`
//! inside the image as it is. Mount points of the DaemonSet's volumes exist as empty directories, so
//! the image also runs with a read-only root filesystem.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{output, run, Built, HOST_BINARIES};

/// The repository the image is tagged into locally.
pub const REPOSITORY: &str = "localhost/wasm-cni";
/// Where Debian's busybox-static puts its binary (`.ci/run` installs it).
const BUSYBOX: &str = "/bin/busybox";

/// `localhost/wasm-cni:<workspace version>`.
pub fn tag() -> String {
    format!("{REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// A podman configuration of its own under `dir` (storage, run root, temp dir, file locks),
/// so building and running the test image touches nothing of the machine's podman.
pub struct Podman {
    dir: Option<PathBuf>,
}

impl Podman {
    /// The machine's podman as configured (what an operator builds and pushes with).
    pub fn system() -> Podman {
        Podman { dir: None }
    }

    /// A private podman under `dir`: `containers.conf`, `storage.conf` (vfs, so nothing is
    /// mounted while no container runs) and their directories. The tests get the same files
    /// through `WASM_CNI_PODMAN_DIR`.
    pub fn private(dir: &Path) -> Result<Podman> {
        for d in ["root", "run", "tmp"] {
            fs::create_dir_all(dir.join(d))
                .with_context(|| format!("creating {}", dir.join(d).display()))?;
        }
        let d = |rel: &str| dir.join(rel).display().to_string();
        fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                d("run"),
                d("root")
            ),
        )?;
        // runc and cgroupfs: see ../shared/notes/podman.md (crun refuses this host's cgroup
        // layout, PID 1 is not systemd); podman's default nofile limit (1048576) exceeds what
        // a shell without CAP_SYS_RESOURCE may set, so containers get this process's hard limit.
        let nofile = hard_nofile_limit();
        fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=1024:1024\"]\n\
                 [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\nlock_type = \"file\"\ntmp_dir = \"{}\"\n\
                 volume_path = \"{}\"\n",
                d("tmp"),
                d("root/volumes")
            ),
        )?;
        Ok(Podman {
            dir: Some(dir.to_path_buf()),
        })
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        if let Some(dir) = &self.dir {
            c.env("CONTAINERS_CONF", dir.join("containers.conf"))
                .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"));
        }
        c.stdin(Stdio::null());
        c
    }

    /// Remove the image (and any container still using it), then whatever a private
    /// configuration left mounted under its directory. Errors are reported, not returned:
    /// this runs on the way out, also after a failure.
    pub fn remove_image(&self, tag: &str) {
        match self
            .cmd()
            .args(["rmi", "--force", "--ignore", tag])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: podman rmi {tag}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("warning: podman rmi {tag}: {e}"),
        }
        if let Some(dir) = &self.dir {
            unmount_under(dir);
        }
    }
}

/// This process's hard RLIMIT_NOFILE (what a container may be given without privileges).
fn hard_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_max > 0 {
        lim.rlim_max.min(1 << 20)
    } else {
        1024
    }
}

/// Lazily unmount everything mounted at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let prefix = dir.display().to_string();
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
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

/// Stage the build context and build the image; returns its tag.
pub fn build(root: &Path, built: &Built, podman: &Podman) -> Result<String> {
    if !Path::new(BUSYBOX).exists() {
        bail!("{BUSYBOX} is missing: install busybox-static (the image's shell; see .ci/run)");
    }
    let context = crate::target_dir(root).join("image/context");
    stage(root, built, &context)?;
    let tag = tag();
    run(podman
        .cmd()
        .args([
            "build",
            "--pull=never",
            "--layers=false",
            "--no-cache",
            "--label",
            &format!(
                "org.opencontainers.image.version={}",
                env!("CARGO_PKG_VERSION")
            ),
            "-f",
        ])
        .arg(root.join("deploy/Containerfile.prebuilt"))
        .args(["-t", &tag])
        .arg(&context))
    .with_context(|| format!("building {tag} (podman build; see deploy/Containerfile.prebuilt)"))?;
    // A rebuild leaves the previous image of the tag dangling: drop dangling images of ours.
    let _ = podman
        .cmd()
        .args([
            "image",
            "prune",
            "--force",
            "--filter",
            "label=org.opencontainers.image.title=wasm-cni",
        ])
        .stdout(Stdio::null())
        .status();
    eprintln!("built {tag} from {}", context.display());
    Ok(tag)
}

/// Lay out the image's file system under `context` (replacing what was there).
fn stage(root: &Path, built: &Built, context: &Path) -> Result<()> {
    if context.exists() {
        fs::remove_dir_all(context).with_context(|| format!("clearing {}", context.display()))?;
    }
    let dir = |rel: &str| -> Result<PathBuf> {
        let d = context.join(rel);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    };
    // What the node gets: the upstream image's /wasm-cni.
    let bin = dir("wasm-cni/bin")?;
    for b in HOST_BINARIES {
        copy(&built.bin_dir.join(b), &bin.join(b), 0o755)?;
    }
    let plugins = dir("wasm-cni/plugins")?;
    for g in &built.guests {
        copy(
            &built
                .guest_dir
                .join(format!("{}.wasm", g.replace('-', "_"))),
            &plugins.join(format!("{g}.wasm")),
            0o644,
        )?;
    }
    copy(
        &root.join("deploy/install.sh"),
        &context.join("wasm-cni/install.sh"),
        0o755,
    )?;

    // The shell and tools install.sh runs: busybox and its applet links.
    let sbin = dir("bin")?;
    copy(Path::new(BUSYBOX), &sbin.join("busybox"), 0o755)?;
    let applets = output(Command::new(BUSYBOX).arg("--list"))?;
    for applet in applets.lines().map(str::trim) {
        if !applet.is_empty() && applet != "busybox" {
            symlink("busybox", sbin.join(applet))?;
        }
    }

    // No libraries: the host binaries are static (see `host_build`); make sure of it, since
    // the image has no loader or libc for a dynamic one.
    for b in HOST_BINARIES {
        let path = built.bin_dir.join(b);
        if let Some(interp) = program_interpreter(&path)? {
            bail!(
                "{} is dynamically linked (it asks for {interp}); the image ships no libraries",
                path.display()
            );
        }
    }

    // Mount points (the DaemonSet mounts the host paths and the ConfigMap; the runtime
    // bind-mounts /etc/hosts and friends) and an empty /tmp.
    for d in [
        "host/opt/cni/bin",
        "host/etc/cni/net.d",
        "host/etc/wasm-cni",
        "config",
        "etc",
        "tmp",
        "proc",
        "sys",
        "dev",
    ] {
        dir(d)?;
    }
    fs::set_permissions(context.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    Ok(())
}

/// Copy with `mode`, following symlinks (the loader and libraries are links on Debian).
fn copy(src: &Path, dest: &Path, mode: u32) -> Result<()> {
    fs::copy(src, dest)
        .with_context(|| format!("staging {} as {}", src.display(), dest.display()))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The program interpreter (dynamic loader) an ELF executable asks for, if any: the
/// `PT_INTERP` entry of its program headers (ELF64 little-endian, as we build).
fn program_interpreter(binary: &Path) -> Result<Option<String>> {
    let elf = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let bad = || anyhow::anyhow!("{} is not a 64-bit little-endian ELF", binary.display());
    if elf.get(..6) != Some(&b"\x7fELF\x02\x01"[..]) {
        return Err(bad());
    }
    let int = |at: usize, n: usize| -> Result<usize> {
        let b = elf.get(at..at + n).ok_or_else(bad)?;
        Ok(b.iter().rev().fold(0usize, |v, &x| (v << 8) | x as usize))
    };
    let (phoff, phentsize, phnum) = (int(0x20, 8)?, int(0x36, 2)?, int(0x38, 2)?);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        const PT_INTERP: usize = 3;
        if int(ph, 4)? == PT_INTERP {
            let (off, size) = (int(ph + 8, 8)?, int(ph + 32, 8)?);
            let name = elf.get(off..off + size).ok_or_else(bad)?;
            let name = String::from_utf8_lossy(name);
            return Ok(Some(name.trim_end_matches('\0').to_string()));
        }
    }
    Ok(None)
}
