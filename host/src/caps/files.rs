//! The `files` interface: a guest reads a file the operator's policy names (host-local's
//! `ipam.resolvConf`).
//!
//! Nothing is readable unless the node policy's `files` patterns say so (there are none by
//! default). The path asked for must be absolute, without `..`, and match a pattern; the path
//! it resolves to (symlinks followed) must match one too, so a symlink planted in a granted
//! place cannot lead out of it. The host opens the resolved path itself with `O_NOFOLLOW`,
//! checks that what it opened is still that path, that it is a regular file (never a FIFO or
//! a device: `O_NONBLOCK` keeps the open from hanging) and that it is at most
//! [`MAX_FILE_BYTES`]. Every read is audited (`file-read`).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path};

use cni_types::codes::IO_FAILURE;

use super::Caps;
use crate::policy::{matches_any, Capability};
use crate::sandbox::bindings::wasm_cni::plugin::{files, types as wit};
use crate::sandbox::codes::DENIED;

/// The largest file a guest may read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why a read failed: the policy said no, or the file could not be read.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    Denied(String),
    Io(String),
}

/// The bytes of `path` if `patterns` grant it (see the module's documentation).
fn read_granted(patterns: &[String], path: &str) -> Result<Vec<u8>, Failure> {
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
        format!("the node policy's `files` patterns {patterns:?} do not match {p:?}; add it to `files` for this plugin (or under [defaults])")
    };
    if !matches_any(patterns, path) {
        return Err(Failure::Denied(not_granted(path)));
    }
    let io = |what: &Path, e: std::io::Error| Failure::Io(format!("file {}: {e}", what.display()));
    let canonical = std::fs::canonicalize(requested).map_err(|e| io(requested, e))?;
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
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&canonical)
        .map_err(|e| io(&canonical, e))?;
    // A directory on the way may have been swapped for a symlink since it was resolved: what
    // was opened must still be the path that was checked.
    let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| io(&canonical, e))?;
    if opened != canonical {
        return Err(Failure::Denied(format!(
            "file {path:?} changed while it was opened (now {}); refusing it",
            opened.display()
        )));
    }
    read_regular(file, &canonical)
}

/// The content of an opened file that must be a regular one of at most [`MAX_FILE_BYTES`].
fn read_regular(file: File, path: &Path) -> Result<Vec<u8>, Failure> {
    let meta = file
        .metadata()
        .map_err(|e| Failure::Io(format!("file {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Failure::Io(format!(
            "file {} is not a regular file",
            path.display()
        )));
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

impl files::Host for Caps {
    fn read(&mut self, path: String) -> Result<Vec<u8>, wit::CniError> {
        let error = |code: u32, msg: String| wit::CniError {
            code,
            msg,
            details: String::new(),
        };
        self.require(Capability::Files, "file-read")
            .map_err(|m| error(DENIED, m))?;
        match read_granted(&self.grants.files, &path) {
            Ok(bytes) => {
                self.audit("file-read", &path, "ok");
                Ok(bytes)
            }
            Err(Failure::Denied(why)) => {
                self.audit("file-read", &path, "denied");
                Err(error(
                    DENIED,
                    format!(
                        "plugin {:?} may not read {path:?}: {why}",
                        self.logger.plugin
                    ),
                ))
            }
            Err(Failure::Io(why)) => {
                self.audit("file-read", &path, "error");
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

    #[test]
    fn a_granted_regular_file_is_read() {
        let d = Dir::new("ok");
        std::fs::write(d.path("resolv.conf"), "nameserver 10.0.0.1\n").unwrap();
        let p = pats(&[d.path("*.conf")]);
        assert_eq!(
            read_granted(&p, &d.path("resolv.conf")).unwrap(),
            b"nameserver 10.0.0.1\n"
        );
    }

    #[test]
    fn nothing_is_granted_by_default_and_relative_or_dotdot_paths_are_denied() {
        let d = Dir::new("deny");
        std::fs::write(d.path("a.conf"), "x").unwrap();
        let e = read_granted(&[], &d.path("a.conf")).unwrap_err();
        assert!(
            matches!(&e, Failure::Denied(m) if m.contains("`files`")),
            "{e:?}"
        );
        let p = pats(&[format!("{}/*", d.0.display())]);
        assert!(matches!(
            read_granted(&p, "a.conf").unwrap_err(),
            Failure::Denied(_)
        ));
        assert!(matches!(
            read_granted(&p, &format!("{}/../../etc/passwd", d.0.display())).unwrap_err(),
            Failure::Denied(m) if m.contains("..")
        ));
    }

    #[test]
    fn a_symlink_cannot_lead_out_of_the_grant() {
        let d = Dir::new("link");
        std::fs::write(d.path("secret"), "s3cret").unwrap();
        std::os::unix::fs::symlink(d.path("secret"), d.path("evil.conf")).unwrap();
        let p = pats(&[d.path("*.conf")]);
        let e = read_granted(&p, &d.path("evil.conf")).unwrap_err();
        assert!(
            matches!(&e, Failure::Denied(m) if m.contains("resolves to") && m.contains("secret")),
            "{e:?}"
        );
        // A link to a granted file is fine.
        std::fs::write(d.path("real.conf"), "ok").unwrap();
        std::os::unix::fs::symlink(d.path("real.conf"), d.path("alias.conf")).unwrap();
        assert_eq!(read_granted(&p, &d.path("alias.conf")).unwrap(), b"ok");
    }

    #[test]
    fn missing_big_and_special_files_are_io_errors() {
        let d = Dir::new("io");
        let p = pats(&[format!("{}/*", d.0.display())]);
        let e = read_granted(&p, &d.path("missing")).unwrap_err();
        assert!(
            matches!(&e, Failure::Io(m) if m.contains("missing")),
            "{e:?}"
        );
        std::fs::create_dir(d.path("dir")).unwrap();
        let e = read_granted(&p, &d.path("dir")).unwrap_err();
        assert!(
            matches!(&e, Failure::Io(m) if m.contains("not a regular file")),
            "{e:?}"
        );
        let fifo = std::ffi::CString::new(d.path("fifo")).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let e = read_granted(&p, &d.path("fifo")).unwrap_err();
        assert!(
            matches!(&e, Failure::Io(m) if m.contains("not a regular file")),
            "{e:?}"
        );
        std::fs::write(d.path("big"), vec![b'x'; (MAX_FILE_BYTES + 1) as usize]).unwrap();
        let e = read_granted(&p, &d.path("big")).unwrap_err();
        assert!(
            matches!(&e, Failure::Io(m) if m.contains("1024 KiB")),
            "{e:?}"
        );
    }
}
