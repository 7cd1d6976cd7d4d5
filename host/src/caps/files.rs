//! The `files` interface: a guest reads a file the operator's policy names (host-local's
//! `ipam.resolvConf`).
//!
//! Nothing is readable unless the node policy's `files` patterns say so (there are none by
//! default). The path asked for must be absolute, at most [`MAX_PATH_BYTES`], without `..`,
//! and match a pattern; the path it resolves to (symlinks followed) must match one too, so a
//! symlink planted in a granted place cannot lead out of it. The host then takes a handle on
//! the resolved path without opening the file (`O_PATH|O_NOFOLLOW`), checks that it is a
//! regular file (a FIFO or a device is never opened, so opening one can neither hang nor have
//! side effects) and that it is still the path that was checked, and only then opens it for
//! reading through that handle, requiring the same file (device and inode). A file larger
//! than [`MAX_FILE_BYTES`] is refused. Every read is audited (`file-read`, with the resolved
//! path when it differs from the one asked for).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

use cni_types::codes::IO_FAILURE;

use super::Caps;
use crate::policy::{matches_any, Capability};
use crate::sandbox::bindings::wasm_cni::plugin::{files, types as wit};
use crate::sandbox::codes::DENIED;

/// The largest file a guest may read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The longest path a guest may ask for (Linux's `PATH_MAX`), checked before any matching.
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a read failed: the policy said no, or the file could not be read.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    Denied(String),
    Io(String),
}

/// The bytes of `path` if `patterns` grant it (see the module's documentation). `resolved` is
/// set to the path it resolves to as soon as that is known (for the audit line).
fn read_granted(
    patterns: &[String],
    path: &str,
    resolved: &mut Option<PathBuf>,
) -> Result<Vec<u8>, Failure> {
    if path.len() > MAX_PATH_BYTES {
        return Err(Failure::Denied(format!(
            "file path of {} bytes is longer than the {MAX_PATH_BYTES} bytes (PATH_MAX) a plugin may name",
            path.len()
        )));
    }
    let requested = Path::new(path);
    if !requested.is_absolute() || path.contains('\0') {
        return Err(Failure::Denied(format!(
            "file {path:?} is not an absolute path"
        )));
    }
    if requested.components().any(|c| c == Component::ParentDir) {
        return Err(Failure::Denied(format!(
            "file {path:?} contains \"..\"; name the file itself"
        )));
    }
    let not_granted = |p: &str| {
        let hint = if patterns.is_empty() {
            " (with \"files\" in its `capabilities` too, when they are listed)"
        } else {
            ""
        };
        format!("the node policy's `files` patterns {patterns:?} do not match {p:?}; add it to `files` for this plugin (or under [defaults]){hint}")
    };
    if !matches_any(patterns, path) {
        return Err(Failure::Denied(not_granted(path)));
    }
    let io = |what: &Path, e: std::io::Error| Failure::Io(format!("file {}: {e}", what.display()));
    let canonical = std::fs::canonicalize(requested).map_err(|e| io(requested, e))?;
    *resolved = Some(canonical.clone());
    let Some(canonical_str) = canonical.to_str() else {
        return Err(Failure::Denied(format!(
            "file {path:?} resolves to a path that is not UTF-8"
        )));
    };
    if !matches_any(patterns, canonical_str) {
        return Err(Failure::Denied(format!(
            "file {path:?} resolves to {canonical_str:?}, and {}",
            not_granted(canonical_str)
        )));
    }
    // A handle on the path, not an open file: nothing is opened yet (a device's or a FIFO's
    // open is never called), and a symlink swapped in at the last component is not followed.
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&canonical)
        .map_err(|e| io(&canonical, e))?;
    let meta = handle.metadata().map_err(|e| io(&canonical, e))?;
    if !meta.is_file() {
        return Err(not_regular(&canonical));
    }
    // A directory on the way may have been swapped for a symlink since it was resolved: what
    // the handle names must still be the path that was checked.
    let magic = format!("/proc/self/fd/{}", handle.as_raw_fd());
    let opened = std::fs::read_link(&magic).map_err(|e| io(&canonical, e))?;
    if opened != canonical {
        return Err(Failure::Denied(format!(
            "file {path:?} changed while it was opened (now {}); refusing it",
            opened.display()
        )));
    }
    // Open the checked file itself for reading, through the handle (the magic link leads to
    // the handle's file, so `O_NOFOLLOW` cannot be used here), and make sure it is that file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&magic)
        .map_err(|e| io(&canonical, e))?;
    let reopened = file.metadata().map_err(|e| io(&canonical, e))?;
    if (reopened.dev(), reopened.ino()) != (meta.dev(), meta.ino()) {
        return Err(Failure::Denied(format!(
            "file {path:?} changed while it was opened; refusing it"
        )));
    }
    read_regular(file, &canonical)
}

fn not_regular(path: &Path) -> Failure {
    Failure::Io(format!("file {} is not a regular file", path.display()))
}

/// The content of an opened file that must be a regular one of at most [`MAX_FILE_BYTES`].
fn read_regular(file: File, path: &Path) -> Result<Vec<u8>, Failure> {
    let meta = file
        .metadata()
        .map_err(|e| Failure::Io(format!("file {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    let too_big = || {
        Failure::Io(format!(
            "file {} is larger than the {} KiB a plugin may read",
            path.display(),
            MAX_FILE_BYTES >> 10
        ))
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::Io(format!("file {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// The audit target of a read: the path asked for, and where it led when that differs.
fn audit_target(path: &str, resolved: Option<&Path>) -> String {
    match resolved {
        Some(r) if r != Path::new(path) => format!("{path} -> {}", r.display()),
        _ => path.to_string(),
    }
}

impl files::Host for Caps {
    fn read(&mut self, path: String) -> Result<Vec<u8>, wit::CniError> {
        let error = |code: u32, msg: String| wit::CniError {
            code,
            msg,
            details: String::new(),
        };
        self.require(Capability::Files, "file-read")
            .map_err(|m| error(DENIED, m))?;
        let mut resolved = None;
        let result = read_granted(&self.grants.files, &path, &mut resolved);
        let target = if path.len() > MAX_PATH_BYTES {
            // Do not copy an oversized guest string into the audit log.
            let head: String = path.chars().take(256).collect();
            format!("{head}... ({} bytes)", path.len())
        } else {
            audit_target(&path, resolved.as_deref())
        };
        match result {
            Ok(bytes) => {
                self.audit("file-read", &target, "ok");
                Ok(bytes)
            }
            Err(Failure::Denied(why)) => {
                self.audit("file-read", &target, "denied");
                let shown = if path.len() > MAX_PATH_BYTES {
                    &target
                } else {
                    &path
                };
                Err(error(
                    DENIED,
                    format!(
                        "plugin {:?} may not read {shown:?}: {why}",
                        self.logger.plugin
                    ),
                ))
            }
            Err(Failure::Io(why)) => {
                self.audit("file-read", &target, "error");
                Err(error(IO_FAILURE, why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("wcni-files-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(std::fs::canonicalize(d).unwrap())
        }
        fn path(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pats(p: &[String]) -> Vec<String> {
        p.to_vec()
    }

    fn read(patterns: &[String], path: &str) -> Result<Vec<u8>, Failure> {
        read_granted(patterns, path, &mut None)
    }

    #[test]
    fn a_granted_regular_file_is_read() {
        let d = Dir::new("ok");
        std::fs::write(d.path("resolv.conf"), "nameserver 10.0.0.1\n").unwrap();
        let p = pats(&[d.path("*.conf")]);
        assert_eq!(
            read(&p, &d.path("resolv.conf")).unwrap(),
            b"nameserver 10.0.0.1\n"
        );
    }

    #[test]
    fn nothing_is_granted_by_default_and_relative_or_dotdot_paths_are_denied() {
        let d = Dir::new("deny");
        std::fs::write(d.path("a.conf"), "x").unwrap();
        let e = read(&[], &d.path("a.conf")).unwrap_err();
        assert!(
            matches!(&e, Failure::Denied(m) if m.contains("`files`")),
            "{e:?}"
        );
        let p = pats(&[format!("{}/*", d.0.display())]);
        assert!(matches!(
            read(&p, "a.conf").unwrap_err(),
            Failure::Denied(_)
        ));
        assert!(matches!(
            read(&p, &format!("{}/../../etc/passwd", d.0.display())).unwrap_err(),
            Failure::Denied(m) if m.contains("..")
        ));
    }

    #[test]
    fn a_symlink_cannot_lead_out_of_the_grant() {
        let d = Dir::new("link");
        std::fs::write(d.path("secret"), "s3cret").unwrap();
        std::os::unix::fs::symlink(d.path("secret"), d.path("evil.conf")).unwrap();
        let p = pats(&[d.path("*.conf")]);
        let e = read(&p, &d.path("evil.conf")).unwrap_err();
        assert!(
            matches!(&e, Failure::Denied(m) if m.contains("resolves to") && m.contains("secret")),
            "{e:?}"
        );
        // A link to a granted file is fine.
        std::fs::write(d.path("real.conf"), "ok").unwrap();
        std::os::unix::fs::symlink(d.path("real.conf"), d.path("alias.conf")).unwrap();
        assert_eq!(read(&p, &d.path("alias.conf")).unwrap(), b"ok");
    }

    #[test]
    fn missing_big_and_special_files_are_io_errors() {
        let d = Dir::new("io");
        let p = pats(&[format!("{}/*", d.0.display())]);
        let e = read(&p, &d.path("missing")).unwrap_err();
        assert!(
            matches!(&e, Failure::Io(m) if m.contains("missing")),
            "{e:?}"
        );
        std::fs::create_dir(d.path("dir")).unwrap();
        let e = read(&p, &d.path("dir")).unwrap_err();
        assert!(
            matches!(&e, Failure::Io(m) if m.contains("not a regular file")),
            "{e:?}"
        );
        // Opening a FIFO for reading (without O_NONBLOCK) blocks until a writer comes: the read
        // must be refused from the O_PATH handle alone. Should it ever open the FIFO, the test
        // unblocks it by becoming its writer and fails instead of hanging.
        let fifo = std::ffi::CString::new(d.path("fifo")).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let (pp, fp) = (p.clone(), d.path("fifo"));
        let reader = std::thread::spawn(move || tx.send(read(&pp, &fp)).unwrap());
        let e = match rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(r) => r.unwrap_err(),
            Err(_) => {
                let w = unsafe { libc::open(fifo.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
                assert!(w >= 0, "blocked, but not in the FIFO's open");
                unsafe { libc::close(w) };
                panic!("the FIFO was opened for reading");
            }
        };
        reader.join().unwrap();
        assert!(
            matches!(&e, Failure::Io(m) if m.contains("not a regular file")),
            "{e:?}"
        );
        // And nothing holds it open for reading now: a non-blocking writer finds no reader.
        let w = unsafe { libc::open(fifo.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
        assert_eq!(w, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ENXIO)
        );
        std::fs::write(d.path("big"), vec![b'x'; (MAX_FILE_BYTES + 1) as usize]).unwrap();
        let e = read(&p, &d.path("big")).unwrap_err();
        assert!(
            matches!(&e, Failure::Io(m) if m.contains("1024 KiB")),
            "{e:?}"
        );
    }

    #[test]
    fn an_overlong_path_is_denied_before_any_matching() {
        let p = pats(&["/*a*a*a*a*a*a*b".to_string()]);
        let long = format!("/{}", "a".repeat(100_000));
        let e = read(&p, &long).unwrap_err();
        assert!(
            matches!(&e, Failure::Denied(m) if m.contains("PATH_MAX") && m.contains("4096")),
            "{e:?}"
        );
        let d = Dir::new("long");
        let p = pats(&[format!("{}/*", d.0.display())]);
        let exactly = format!("{}/{}", d.0.display(), "x".repeat(MAX_PATH_BYTES));
        let exactly = &exactly[..MAX_PATH_BYTES];
        assert!(
            !matches!(read(&p, exactly), Err(Failure::Denied(m)) if m.contains("PATH_MAX")),
            "4096 bytes is still allowed"
        );
    }

    #[test]
    fn the_resolved_path_is_reported_for_the_audit_line() {
        let d = Dir::new("audit");
        std::fs::write(d.path("real.conf"), "ok").unwrap();
        std::os::unix::fs::symlink(d.path("real.conf"), d.path("alias.conf")).unwrap();
        let p = pats(&[d.path("*.conf")]);
        let mut resolved = None;
        assert_eq!(
            read_granted(&p, &d.path("alias.conf"), &mut resolved).unwrap(),
            b"ok"
        );
        assert_eq!(
            audit_target(&d.path("alias.conf"), resolved.as_deref()),
            format!("{} -> {}", d.path("alias.conf"), d.path("real.conf"))
        );
        let mut resolved = None;
        read_granted(&p, &d.path("real.conf"), &mut resolved).unwrap();
        assert_eq!(
            audit_target(&d.path("real.conf"), resolved.as_deref()),
            d.path("real.conf")
        );
        assert_eq!(audit_target("/x", None), "/x");
    }
}
