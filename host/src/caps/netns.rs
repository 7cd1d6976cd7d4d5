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
        let rt_handle = rt.handle().clone();
        let (file, conn, handle) = on_thread_in(Enter::New, move || {
            let file = File::open("/proc/thread-self/ns/net")?;
            let _guard = rt_handle.enter();
            let (conn, handle, _) = rtnetlink::new_connection()?;
            Ok((file, conn, handle))
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

/// Which namespace a dedicated thread enters.
pub enum Enter {
    /// An existing one (a namespace fd that stays open until the call returns).
    Fd(RawFd),
    /// A new, empty one.
    New,
}

/// Run `f` on a fresh thread that entered the namespace, and return its result as soon as it
/// has one. The thread is not joined: it exits on its own (a thread that changed namespace
/// can take a scheduler tick or an RCU grace period to be torn down, which an exec should not
/// wait for). Nothing else ever runs on that thread.
pub fn on_thread_in<T: Send + 'static>(
    enter: Enter,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("wasm-cni-netns".into())
        .stack_size(64 << 10)
        .spawn(move || {
            // SAFETY: setns/unshare on this dedicated thread only, which ends after `f`.
            let entered = match enter {
                Enter::Fd(fd) => unsafe { libc::setns(fd, libc::CLONE_NEWNET) },
                Enter::New => unsafe { libc::unshare(libc::CLONE_NEWNET) },
            };
            let result = if entered == 0 {
                f()
            } else {
                Err(io::Error::last_os_error())
            };
            let _ = tx.send(result);
        })?;
    rx.recv()
        .map_err(|_| io::Error::other("netns thread panicked"))?
}

/// Create a netlink connection inside the namespace `ns_fd`, on a dedicated thread, and
/// register it with the host's runtime.
fn connect_in(ns_fd: RawFd, rt: &Runtime) -> io::Result<rtnetlink::Handle> {
    let handle = rt.handle().clone();
    let (conn, nl) = on_thread_in(Enter::Fd(ns_fd), move || {
        let _guard = handle.enter();
        let (conn, nl, _) = rtnetlink::new_connection()?;
        Ok((conn, nl))
    })?;
    rt.spawn(conn);
    Ok(nl)
}
