//! Network namespaces held by the host, each with a netlink connection bound to it.
//!
//! `setns` changes only the calling thread, and a netlink socket stays bound to the netns it
//! was created in. So each namespace other than the host's gets one dedicated worker thread
//! that entered it when the namespace was opened: it creates the netlink socket there (the
//! socket is then driven from the host's runtime like any other) and runs the few things that
//! follow the calling thread's namespace, such as opening `/proc/sys/net`. Nothing else ever
//! runs on a worker, and no shared thread ever changes namespace. The host's own namespace
//! needs no worker: every other thread of the process is in it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
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
    /// (device, inode) of `file`, read once: an open namespace file never changes identity.
    id: Option<(u64, u64)>,
    handle: rtnetlink::Handle,
    /// The thread inside the namespace; `None` for the host's own namespace.
    worker: Option<Worker>,
}

impl Netns {
    /// Open the namespace at `path` and connect netlink inside it.
    pub fn open(path: &Path, rt: &Runtime) -> Result<Netns, OpenError> {
        Netns::begin_open(path, rt)?.finish(rt)
    }

    /// Start opening the namespace at `path`: the file is opened and checked here, its worker
    /// enters it and creates the netlink socket in the background while the caller goes on
    /// (e.g. loading the plugin's artifact); [`Opening::finish`] waits for it.
    pub fn begin_open(path: &Path, rt: &Runtime) -> Result<Opening, OpenError> {
        let file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OpenError::NotFound,
            _ => OpenError::Other(format!("failed to open netns {:?}: {e}", path)),
        })?;
        check_is_netns(&file, path).map_err(OpenError::Other)?;
        let enter_failed = |e| OpenError::Other(format!("failed to enter netns {:?}: {e}", path));
        let fd = file.try_clone().map_err(enter_failed)?;
        let worker = Worker::spawn(fd.into()).map_err(enter_failed)?;
        let connecting = begin_connect(&worker, rt);
        Ok(Opening {
            path: path.to_path_buf(),
            file,
            worker,
            connecting,
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
            id: file_id(&file),
            file,
            handle,
            worker: None,
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

    /// Run `f` inside the namespace (for what follows the calling thread's namespace, such as
    /// opening `/proc/sys/net`): on its worker, or right here for the host's namespace.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        match &self.worker {
            Some(worker) => worker.run(f),
            None => f(),
        }
    }

    /// (device, inode) of the namespace: equal ids mean the same namespace.
    pub fn id(&self) -> io::Result<(u64, u64)> {
        self.id
            .ok_or_else(|| io::Error::other("the netns file could not be stat'ed"))
    }
}

fn file_id(file: &File) -> Option<(u64, u64)> {
    file.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// A namespace being opened (see [`Netns::begin_open`]).
pub struct Opening {
    path: PathBuf,
    file: File,
    worker: Worker,
    connecting: Connecting,
}

impl Opening {
    /// Wait until the worker is inside the namespace with its netlink socket.
    pub fn finish(self, rt: &Runtime) -> Result<Netns, OpenError> {
        let handle = finish_connect(self.connecting, rt)
            .map_err(|e| OpenError::Other(format!("failed to enter netns {:?}: {e}", self.path)))?;
        Ok(Netns {
            path: self.path,
            id: file_id(&self.file),
            file: self.file,
            handle,
            worker: Some(self.worker),
        })
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

/// A job for a worker; it gets the error when the worker could not enter its namespace.
type Job = Box<dyn FnOnce(Option<&io::Error>) + Send>;

/// A dedicated thread inside one namespace that runs jobs one at a time. It is not joined: it
/// ends when its [`Netns`] is dropped (a thread that changed namespace can take a scheduler
/// tick or an RCU grace period to be torn down, which an exec should not wait for).
struct Worker {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Worker {
    /// Start the thread; it enters the namespace while the caller goes on. A job submitted
    /// to a worker that failed to enter fails with that error.
    fn spawn(netns: std::os::fd::OwnedFd) -> io::Result<Worker> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let builder = std::thread::Builder::new()
            .name("wasm-cni-netns".into())
            .stack_size(256 << 10);
        // It enters the netns while the caller waits for the artifact (see crate::parallel).
        crate::parallel::spawn_here(builder, move || {
            // SAFETY: setns on this dedicated thread only; nothing but this worker's jobs
            // ever runs on it. The thread owns the fd it enters.
            let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            let failed = (entered != 0).then(io::Error::last_os_error);
            while let Ok(job) = queue.recv() {
                job(failed.as_ref());
            }
        })?;
        Ok(Worker { jobs })
    }

    /// Queue `f` on the worker; the receiver gets its result.
    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> std::sync::mpsc::Receiver<io::Result<T>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let _ = self.jobs.send(Box::new(move |failed: Option<&io::Error>| {
            let _ = tx.send(match failed {
                Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
                None => f(),
            });
        }));
        rx
    }

    /// Run `f` on the worker and wait for its result.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        wait(self.submit(f))
    }
}

fn wait<T>(rx: std::sync::mpsc::Receiver<io::Result<T>>) -> io::Result<T> {
    rx.recv()
        .map_err(|_| io::Error::other("netns thread ended without an answer"))?
}

type Connection = rtnetlink::proto::Connection<rtnetlink::packet_route::RouteNetlinkMessage>;
type Connecting = std::sync::mpsc::Receiver<io::Result<(Connection, rtnetlink::Handle)>>;

/// Start creating a netlink connection on `worker` (so its socket lives in the worker's
/// namespace).
fn begin_connect(worker: &Worker, rt: &Runtime) -> Connecting {
    let handle = rt.handle().clone();
    worker.submit(move || {
        let _guard = handle.enter();
        let (conn, nl, _) = rtnetlink::new_connection()?;
        Ok((conn, nl))
    })
}

/// Wait for the connection and register it with the host's runtime.
fn finish_connect(connecting: Connecting, rt: &Runtime) -> io::Result<rtnetlink::Handle> {
    let (conn, nl) = wait(connecting)?;
    rt.spawn(conn);
    Ok(nl)
}
