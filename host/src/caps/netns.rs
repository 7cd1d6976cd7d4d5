//! Network namespaces held by the host, each with a netlink connection bound to it.
//!
//! `setns` changes only the calling thread, and a netlink socket stays bound to the netns it
//! was created in. So a socket for another namespace is created on a short-lived dedicated
//! thread that entered it; the thread exits right after, and the socket is driven from the
//! host's runtime like any other. No shared thread ever changes namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::runtime::Runtime;

/// `statfs` magic of nsfs (`/var/run/netns/*` bind mounts) and procfs (`/proc/<pid>/ns/net`).
const NSFS_MAGIC: i64 = 0x6e73_6673;
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Why a netns could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The path does not exist (a DEL after the container is gone is fine with that).
    NotFound,
    Other(String),
}

/// An open network namespace and a netlink handle inside it.
pub struct Netns {
    path: PathBuf,
    file: File,
    handle: rtnetlink::Handle,
}

impl Netns {
    /// Open the namespace at `path` and connect netlink inside it.
    pub fn open(path: &Path, rt: &Runtime) -> Result<Netns, OpenError> {
        let file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OpenError::NotFound,
            _ => OpenError::Other(format!("failed to open netns {:?}: {e}", path)),
        })?;
        check_is_netns(&file, path).map_err(OpenError::Other)?;
        let handle = connect_in(file.as_raw_fd(), rt)
            .map_err(|e| OpenError::Other(format!("failed to enter netns {:?}: {e}", path)))?;
        Ok(Netns {
            path: path.to_path_buf(),
            file,
            handle,
        })
    }

    /// The namespace the host itself runs in.
    pub fn host(rt: &Runtime) -> io::Result<Netns> {
        let path = Path::new("/proc/thread-self/ns/net");
        let file = File::open(path)?;
        // The calling thread never leaves the host netns, so the socket can be made here.
        let handle = {
            let _guard = rt.enter();
            let (conn, handle, _) = rtnetlink::new_connection()?;
            rt.spawn(conn);
            handle
        };
        Ok(Netns {
            path: path.to_path_buf(),
            file,
            handle,
        })
    }

    /// A fresh, empty namespace that lives as long as this handle (for moving a link while
    /// renaming it, so its name can clash with nothing on the way).
    pub fn temporary(rt: &Runtime) -> io::Result<Netns> {
        let (file, conn, handle) = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: unshare on this dedicated thread only; it ends when the closure returns.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                let file = File::open("/proc/thread-self/ns/net")?;
                let _guard = rt.enter();
                let (conn, handle, _) = rtnetlink::new_connection()?;
                Ok((file, conn, handle))
            })
            .join()
            .map_err(|_| io::Error::other("netns thread panicked"))?
        })?;
        rt.spawn(conn);
        Ok(Netns {
            path: PathBuf::from("(temporary netns)"),
            file,
            handle,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace file (for `setns` and IFLA_NET_NS_FD).
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// (device, inode) of the namespace: equal ids mean the same namespace.
    pub fn id(&self) -> io::Result<(u64, u64)> {
        let m = self.file.metadata()?;
        Ok((m.dev(), m.ino()))
    }
}

/// Refuse anything that is not a network-namespace file (Go's `ns.GetNS` does the same check).
fn check_is_netns(file: &File, path: &Path) -> Result<(), String> {
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes into `st`, a properly sized, owned statfs struct.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(format!(
            "failed to statfs {:?}: {}",
            path,
            io::Error::last_os_error()
        ));
    }
    let magic = st.f_type as i64;
    if magic != NSFS_MAGIC && magic != PROC_SUPER_MAGIC {
        return Err(format!(
            "{:?} is not a network namespace (fs magic {magic:x})",
            path
        ));
    }
    Ok(())
}

/// Create a netlink connection inside the namespace `ns_fd`, on a dedicated thread, and
/// register it with the host's runtime.
fn connect_in(ns_fd: RawFd, rt: &Runtime) -> io::Result<rtnetlink::Handle> {
    let (conn, handle) = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only; the thread ends when this closure returns.
            if unsafe { libc::setns(ns_fd, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let _guard = rt.enter();
            let (conn, handle, _) = rtnetlink::new_connection()?;
            Ok((conn, handle))
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    })?;
    rt.spawn(conn);
    Ok(handle)
}
