//! The `ip-store` interface: the address reservations of one network, kept on disk in the
//! layout of the reference host-local plugin, so that plugin and ours can continue each other's
//! work on the same node:
//!
//! ```text
//! <dataDir>/<network>/          created 0755; dataDir defaults to /var/lib/cni/networks
//!     10.22.0.5                 one file per reserved address, named as Go prints it,
//!     fd00::5                   holding `<containerID>\r\n<ifname>` (older versions: the id only)
//!     last_reserved_ip.0        the last address reserved in range set 0 (round-robin cursor)
//!     lock                      flock(2)ed from `lock()` to `unlock()` (or the handle's drop)
//! ```
//!
//! The guest never names a path: the directory comes from the request's config (`ipam.dataDir`
//! and `name`), addresses are parsed and printed again before they become file names, and range
//! ids are restricted to a file-name-safe alphabet. Changes require the lock, so they are atomic
//! with respect to other plugins (ours or the reference) working on the same network.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;
use wasmtime::component::Resource;

use super::Caps;
use crate::policy::Capability;
use crate::sandbox::bindings::wasm_cni::plugin::ip_store;

/// Where stores live when the config names no `ipam.dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
/// Separates the container id from the interface name in a reservation file.
const LINE_BREAK: &str = "\r\n";
const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const LOCK_FILE: &str = "lock";
/// Reservation and cursor files (the reference's mode since v1.4; 0644 before).
const FILE_MODE: u32 = 0o600;
/// The lock file, created as the reference's file mutex creates it.
const LOCK_MODE: u32 = 0o750;

/// The store directory of a network: `<ipam.dataDir or the default>/<name>`.
///
/// `ipam.dataDir` is looked up the way Go's encoding/json does (an exact key, else any letter
/// case); an empty one means the default, as in the reference.
pub fn store_dir(network: &str, ipam: Option<&Value>) -> Result<PathBuf, String> {
    if network.is_empty() || network.contains('/') || network == "." || network == ".." {
        return Err(format!(
            "invalid network name {network:?} for an address store"
        ));
    }
    let data_dir = match ipam.and_then(|v| json_field(v, "dataDir")) {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("ipam.dataDir must be a string, not {other}")),
    };
    let data_dir = if data_dir.is_empty() {
        DEFAULT_DATA_DIR
    } else {
        data_dir
    };
    Ok(Path::new(data_dir).join(network))
}

/// An object's member as Go's encoding/json finds it: the last key equal to `name` ignoring
/// ASCII case.
fn json_field<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// One reservation file, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub ip: IpAddr,
    pub container_id: String,
    /// Empty for files written by old versions of the reference (container id only).
    pub ifname: String,
}

/// The store of one network on disk, with its lock file open.
#[derive(Debug)]
pub struct Disk {
    dir: PathBuf,
    lock: File,
}

impl Disk {
    /// Open (creating it and its parents with mode 0755 when missing) the store at `dir`.
    pub fn open(dir: &Path) -> io::Result<Disk> {
        DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
        // Read-only with O_CREAT, as the reference opens it: flock needs no write access.
        let lock = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CREAT)
            .mode(LOCK_MODE)
            .open(dir.join(LOCK_FILE))?;
        Ok(Disk {
            dir: dir.to_path_buf(),
            lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Take the exclusive flock, blocking until other holders let go.
    pub fn lock(&self) -> io::Result<()> {
        self.lock.lock()
    }

    pub fn unlock(&self) -> io::Result<()> {
        self.lock.unlock()
    }

    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    fn last_reserved_path(&self, range_id: &str) -> PathBuf {
        self.dir.join(format!("{LAST_RESERVED_PREFIX}{range_id}"))
    }

    /// Reserve `ip` for (id, ifname): create its file exclusively (false when it exists), then
    /// remember it as range `range_id`'s last reservation.
    pub fn reserve(&self, ip: IpAddr, id: &str, ifname: &str, range_id: &str) -> io::Result<bool> {
        let path = self.ip_path(ip);
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        };
        if let Err(e) = file.write_all(owner_key(id, ifname).as_bytes()) {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.set_last_reserved(range_id, ip)?;
        Ok(true)
    }

    /// Overwrite range `range_id`'s cursor in place: written from its start, then cut to its
    /// length. Truncating it on open (`O_TRUNC`, as the reference's `os.WriteFile` does) frees
    /// its block and the write allocates another; on a filesystem mounted with `discard` (this
    /// project's CI machine, many cloud disks) freeing a block waits for the disk to discard it,
    /// ~0.1–0.2 ms of every ADD here (docs/bench.md). The cursor fits in its one block, so the
    /// cut never frees it. Readers hold the lock, so none sees it half written; an exec killed
    /// between write and cut can leave a wrong address or none, and the cursor is only where
    /// the next search starts (reservations are the files created exclusively).
    fn set_last_reserved(&self, range_id: &str, ip: IpAddr) -> io::Result<()> {
        let text = ip.to_string();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(self.last_reserved_path(range_id))?;
        file.write_all(text.as_bytes())?;
        file.set_len(text.len() as u64)
    }

    /// The last address reserved in `range_id`; none when there is no cursor file or it does
    /// not hold exactly an address (the reference then starts from the range's beginning).
    pub fn last_reserved_ip(&self, range_id: &str) -> io::Result<Option<IpAddr>> {
        match fs::read_to_string(self.last_reserved_path(range_id)) {
            Ok(text) => Ok(text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every reservation, in address order.
    pub fn reservations(&self) -> io::Result<Vec<Reservation>> {
        Ok(self
            .reservation_files()?
            .into_iter()
            .map(|(ip, content)| {
                let (container_id, ifname) = parse_owner(&content);
                Reservation {
                    ip,
                    container_id: container_id.to_string(),
                    ifname: ifname.to_string(),
                }
            })
            .collect())
    }

    /// The addresses reserved for (id, ifname), in either file format.
    pub fn get_by_id(&self, id: &str, ifname: &str) -> io::Result<Vec<IpAddr>> {
        let (key, legacy) = (owner_key(id, ifname), id.trim().to_string());
        Ok(self
            .reservation_files()?
            .into_iter()
            .filter(|(_, content)| content.trim() == key || content.trim() == legacy)
            .map(|(ip, _)| ip)
            .collect())
    }

    /// Release what (id, ifname) holds. Only when no file carries that pair are files holding
    /// the bare id (the format of old versions) released, as in the reference. Returns the
    /// released addresses.
    pub fn release_by_id(&self, id: &str, ifname: &str) -> io::Result<Vec<IpAddr>> {
        let files = self.reservation_files()?;
        let matching = |key: &str| -> Vec<IpAddr> {
            files
                .iter()
                .filter(|(_, content)| content.trim() == key)
                .map(|(ip, _)| *ip)
                .collect()
        };
        let mut owned = matching(&owner_key(id, ifname));
        if owned.is_empty() {
            owned = matching(id.trim());
        }
        let mut released = Vec::new();
        for ip in owned {
            match fs::remove_file(self.ip_path(ip)) {
                Ok(()) => released.push(ip),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }

    /// Release one address; releasing a free one is not an error.
    pub fn release(&self, ip: IpAddr) -> io::Result<()> {
        match fs::remove_file(self.ip_path(ip)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// (address, content) of every reservation file, in address order. Files whose name is
    /// not an address (`lock`, the cursors, strays) are not reservations; unreadable ones are
    /// skipped, as the reference skips them.
    fn reservation_files(&self) -> io::Result<Vec<(IpAddr, String)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            if let Ok(content) = fs::read_to_string(entry.path()) {
                files.push((ip, content));
            }
        }
        files.sort();
        Ok(files)
    }
}

/// What a reservation file holds for (id, ifname).
fn owner_key(id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", id.trim())
}

/// (container id, ifname) from a reservation file; the ifname is empty in the old format.
fn parse_owner(content: &str) -> (&str, &str) {
    let content = content.trim();
    content.split_once(LINE_BREAK).unwrap_or((content, ""))
}

/// An address as the guest sent it, in the form file names use (IPv4-mapped IPv6 addresses
/// become IPv4, as Go's `net.IP.String` prints them).
fn parse_ip(ip: &str) -> Result<IpAddr, String> {
    ip.parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| format!("invalid IP address {ip:?}"))
}

/// Range ids become part of a file name: letters, digits, `-` and `_` only.
fn check_range_id(range_id: &str) -> Result<(), String> {
    let ok = !range_id.is_empty()
        && range_id.len() <= 64
        && range_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid range id {range_id:?}"))
    }
}

/// Container ids and interface names are written into reservation files: no control
/// characters (which would break the `id\r\nifname` layout).
fn check_owner(id: &str, ifname: &str) -> Result<(), String> {
    for (what, s) in [("container id", id), ("interface name", ifname)] {
        if s.chars().any(char::is_control) {
            return Err(format!("invalid {what} {s:?}: control characters"));
        }
    }
    if id.trim().is_empty() {
        return Err("empty container id".into());
    }
    Ok(())
}

/// An open store (host side of the `store` resource).
#[derive(Debug)]
pub struct StoreRes {
    disk: Disk,
    locked: bool,
}

impl Caps {
    fn store(&self, res: &Resource<StoreRes>) -> Result<&StoreRes, String> {
        self.table
            .get(res)
            .map_err(|e| format!("invalid store handle: {e}"))
    }

    /// The open store, which must be locked: changes are only made under the lock.
    fn locked_store(&self, res: &Resource<StoreRes>, op: &str) -> Result<&Disk, String> {
        let store = self.store(res)?;
        if !store.locked {
            return Err(format!(
                "{op}: the address store {} is not locked",
                store.disk.dir().display()
            ));
        }
        Ok(&store.disk)
    }
}

fn io_error(op: &str, dir: &Path, e: io::Error) -> String {
    format!("{op} in address store {}: {e}", dir.display())
}

impl ip_store::Host for Caps {
    fn open(&mut self) -> Result<Resource<StoreRes>, String> {
        self.require(Capability::IpStore, "ip-store open")?;
        let dir = store_dir(&self.req.config.name, self.req.config.ipam.as_ref())?;
        let disk = Disk::open(&dir)
            .map_err(|e| format!("opening address store {}: {e}", dir.display()))?;
        self.table
            .push(StoreRes {
                disk,
                locked: false,
            })
            .map_err(|e| format!("opening address store {}: {e}", dir.display()))
    }
}

impl ip_store::HostStore for Caps {
    fn lock(&mut self, res: Resource<StoreRes>) -> Result<(), String> {
        let store = self
            .table
            .get_mut(&res)
            .map_err(|e| format!("invalid store handle: {e}"))?;
        store
            .disk
            .lock()
            .map_err(|e| io_error("lock", store.disk.dir(), e))?;
        store.locked = true;
        Ok(())
    }

    fn unlock(&mut self, res: Resource<StoreRes>) -> Result<(), String> {
        let store = self
            .table
            .get_mut(&res)
            .map_err(|e| format!("invalid store handle: {e}"))?;
        store.locked = false;
        store
            .disk
            .unlock()
            .map_err(|e| io_error("unlock", store.disk.dir(), e))
    }

    fn reserve(
        &mut self,
        res: Resource<StoreRes>,
        ip: String,
        container_id: String,
        ifname: String,
        range_id: String,
    ) -> Result<bool, String> {
        let ip = parse_ip(&ip)?;
        check_owner(&container_id, &ifname)?;
        check_range_id(&range_id)?;
        let disk = self.locked_store(&res, "reserve")?;
        let target = format!(
            "{}/{ip} for {}/{ifname}",
            disk.dir().display(),
            container_id.trim()
        );
        let r = disk.reserve(ip, &container_id, &ifname, &range_id);
        // A taken address changes nothing: not audited (a scan over a full range would flood
        // the log).
        match &r {
            Ok(true) => self.audit("ip-reserve", &target, "ok"),
            Ok(false) => {}
            Err(_) => self.audit("ip-reserve", &target, "error"),
        }
        r.map_err(|e| io_error(&format!("reserve {ip}"), disk.dir(), e))
    }

    fn last_reserved_ip(
        &mut self,
        res: Resource<StoreRes>,
        range_id: String,
    ) -> Result<Option<String>, String> {
        check_range_id(&range_id)?;
        let disk = &self.store(&res)?.disk;
        disk.last_reserved_ip(&range_id)
            .map(|ip| ip.map(|ip| ip.to_string()))
            .map_err(|e| {
                io_error(
                    &format!("read {LAST_RESERVED_PREFIX}{range_id}"),
                    disk.dir(),
                    e,
                )
            })
    }

    fn get_by_id(
        &mut self,
        res: Resource<StoreRes>,
        container_id: String,
        ifname: String,
    ) -> Result<Vec<String>, String> {
        let disk = &self.store(&res)?.disk;
        disk.get_by_id(&container_id, &ifname)
            .map(|ips| ips.iter().map(IpAddr::to_string).collect())
            .map_err(|e| io_error("list reservations", disk.dir(), e))
    }

    fn release_by_id(
        &mut self,
        res: Resource<StoreRes>,
        container_id: String,
        ifname: String,
    ) -> Result<(), String> {
        let disk = self.locked_store(&res, "release")?;
        let dir = disk.dir().display().to_string();
        match disk.release_by_id(&container_id, &ifname) {
            Ok(released) => {
                for ip in released {
                    self.audit(
                        "ip-release",
                        &format!("{dir}/{ip} of {}/{ifname}", container_id.trim()),
                        "ok",
                    );
                }
                Ok(())
            }
            Err(e) => {
                self.audit(
                    "ip-release",
                    &format!("{dir} of {}/{ifname}", container_id.trim()),
                    "error",
                );
                Err(format!(
                    "release the addresses of {}/{ifname} in address store {dir}: {e}",
                    container_id.trim()
                ))
            }
        }
    }

    fn release(&mut self, res: Resource<StoreRes>, ip: String) -> Result<(), String> {
        let ip = parse_ip(&ip)?;
        let disk = self.locked_store(&res, "release")?;
        let r = disk.release(ip);
        let r = self.audited("ip-release", &format!("{}/{ip}", disk.dir().display()), r);
        r.map_err(|e| io_error(&format!("release {ip}"), disk.dir(), e))
    }

    fn reservations(
        &mut self,
        res: Resource<StoreRes>,
    ) -> Result<Vec<ip_store::Reservation>, String> {
        let disk = &self.store(&res)?.disk;
        let list = disk
            .reservations()
            .map_err(|e| io_error("list reservations", disk.dir(), e))?;
        Ok(list
            .into_iter()
            .map(|r| ip_store::Reservation {
                ip: r.ip.to_string(),
                container_id: r.container_id,
                ifname: r.ifname,
            })
            .collect())
    }

    /// Dropping the handle closes the lock file, which releases the flock.
    fn drop(&mut self, res: Resource<StoreRes>) -> wasmtime::Result<()> {
        self.table.delete(res)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::atomic::{AtomicU32, Ordering};

    use serde_json::json;

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop (also on panic).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "wasm-cni-store-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn read(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn store_dir_comes_from_the_config() {
        let none = store_dir("net1", None).unwrap();
        assert_eq!(none, Path::new("/var/lib/cni/networks/net1"));
        let ipam = json!({"type": "host-local", "dataDir": "/run/ipam"});
        assert_eq!(
            store_dir("net1", Some(&ipam)).unwrap(),
            Path::new("/run/ipam/net1")
        );
        // Go's encoding/json matches keys in any letter case; the last match wins.
        let ipam = json!({"datadir": "/a", "DATADIR": "/b"});
        assert_eq!(store_dir("n", Some(&ipam)).unwrap(), Path::new("/b/n"));
        for empty in [json!({"dataDir": ""}), json!({"dataDir": null}), json!("x")] {
            assert_eq!(
                store_dir("n", Some(&empty)).unwrap(),
                Path::new("/var/lib/cni/networks/n")
            );
        }
        assert!(store_dir("n", Some(&json!({"dataDir": 5}))).is_err());
        for bad in ["", ".", "..", "a/b", "../etc"] {
            assert!(store_dir(bad, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn open_creates_the_directory_and_lock_file() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("data").join("net1");
        let disk = Disk::open(&dir).unwrap();
        assert_eq!(disk.dir(), dir);
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        // 0755 less the umask, as Go's MkdirAll.
        assert_eq!(mode & !0o755, 0, "{mode:o}");
        assert!(dir.join("lock").is_file());
        // Opening again reuses both.
        Disk::open(&dir).unwrap();
    }

    #[test]
    fn reserve_writes_the_reference_layout() {
        let tmp = TempDir::new();
        let disk = Disk::open(&tmp.0).unwrap();
        assert!(disk.reserve(ip("10.1.2.3"), " cid1 ", "eth0", "0").unwrap());
        assert_eq!(read(&tmp.0, "10.1.2.3"), "cid1\r\neth0");
        assert_eq!(read(&tmp.0, "last_reserved_ip.0"), "10.1.2.3");
        let mode = fs::metadata(tmp.0.join("10.1.2.3"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & !FILE_MODE, 0, "{mode:o}");

        // Taken: false, and neither the owner nor the cursor changes.
        assert!(!disk.reserve(ip("10.1.2.3"), "cid2", "eth0", "0").unwrap());
        assert_eq!(read(&tmp.0, "10.1.2.3"), "cid1\r\neth0");

        // IPv6 files are named as Go prints addresses (RFC 5952).
        assert!(disk
            .reserve(ip("fd00:0:0:0::0a"), "cid1", "eth0", "1")
            .unwrap());
        assert_eq!(read(&tmp.0, "fd00::a"), "cid1\r\neth0");
        assert_eq!(read(&tmp.0, "last_reserved_ip.1"), "fd00::a");
        assert_eq!(disk.last_reserved_ip("1").unwrap(), Some(ip("fd00::a")));
        assert_eq!(disk.last_reserved_ip("0").unwrap(), Some(ip("10.1.2.3")));
        assert_eq!(disk.last_reserved_ip("7").unwrap(), None);
        fs::write(tmp.0.join("last_reserved_ip.7"), "garbage").unwrap();
        assert_eq!(disk.last_reserved_ip("7").unwrap(), None);
    }

    #[test]
    fn the_cursor_is_rewritten_in_place_to_exactly_the_new_address() {
        let tmp = TempDir::new();
        let disk = Disk::open(&tmp.0).unwrap();
        assert!(disk.reserve(ip("10.1.2.255"), "a", "eth0", "0").unwrap());
        let inode = fs::metadata(tmp.0.join("last_reserved_ip.0"))
            .unwrap()
            .ino();
        // Shorter than what it overwrites: nothing of the old address may remain.
        assert!(disk.reserve(ip("10.1.2.3"), "b", "eth0", "0").unwrap());
        assert_eq!(read(&tmp.0, "last_reserved_ip.0"), "10.1.2.3");
        assert_eq!(disk.last_reserved_ip("0").unwrap(), Some(ip("10.1.2.3")));
        assert!(disk.reserve(ip("10.1.2.100"), "c", "eth0", "0").unwrap());
        assert_eq!(read(&tmp.0, "last_reserved_ip.0"), "10.1.2.100");
        let file = fs::metadata(tmp.0.join("last_reserved_ip.0")).unwrap();
        assert_eq!(
            file.ino(),
            inode,
            "the cursor file is overwritten, not replaced"
        );
        assert_eq!(file.permissions().mode() & 0o777 & !FILE_MODE, 0);
    }

    #[test]
    fn lookups_and_releases_match_the_reference() {
        let tmp = TempDir::new();
        let disk = Disk::open(&tmp.0).unwrap();
        disk.reserve(ip("10.0.0.2"), "a", "eth0", "0").unwrap();
        disk.reserve(ip("fd00::2"), "a", "eth0", "1").unwrap();
        disk.reserve(ip("10.0.0.3"), "a", "net1", "0").unwrap();
        disk.reserve(ip("10.0.0.4"), "b", "eth0", "0").unwrap();
        // The old format: the container id alone (trailing whitespace is trimmed).
        fs::write(tmp.0.join("10.0.0.9"), "old\n").unwrap();

        assert_eq!(
            disk.get_by_id("a", "eth0").unwrap(),
            [ip("10.0.0.2"), ip("fd00::2")]
        );
        assert_eq!(disk.get_by_id("old", "eth0").unwrap(), [ip("10.0.0.9")]);
        assert!(disk.get_by_id("c", "eth0").unwrap().is_empty());

        let all = disk.reservations().unwrap();
        let owners: Vec<_> = all
            .iter()
            .map(|r| (r.ip.to_string(), r.container_id.as_str(), r.ifname.as_str()))
            .collect();
        assert_eq!(
            owners,
            [
                ("10.0.0.2".to_string(), "a", "eth0"),
                ("10.0.0.3".to_string(), "a", "net1"),
                ("10.0.0.4".to_string(), "b", "eth0"),
                ("10.0.0.9".to_string(), "old", ""),
                ("fd00::2".to_string(), "a", "eth0"),
            ]
        );

        assert_eq!(
            disk.release_by_id("a", "eth0").unwrap(),
            [ip("10.0.0.2"), ip("fd00::2")]
        );
        assert!(tmp.0.join("10.0.0.3").exists() && tmp.0.join("10.0.0.4").exists());
        assert!(disk.release_by_id("a", "eth0").unwrap().is_empty());
        assert_eq!(disk.release_by_id("old", "eth0").unwrap(), [ip("10.0.0.9")]);
        disk.release(ip("10.0.0.4")).unwrap();
        disk.release(ip("10.0.0.4")).unwrap();
        assert!(!tmp.0.join("10.0.0.4").exists());
        // The cursors and the lock are untouched.
        assert!(tmp.0.join("lock").exists() && tmp.0.join("last_reserved_ip.0").exists());
    }

    #[test]
    fn legacy_files_are_released_only_when_no_pair_matches() {
        let tmp = TempDir::new();
        let disk = Disk::open(&tmp.0).unwrap();
        disk.reserve(ip("10.0.0.2"), "a", "eth0", "0").unwrap();
        fs::write(tmp.0.join("10.0.0.3"), "a").unwrap();
        assert_eq!(disk.release_by_id("a", "eth0").unwrap(), [ip("10.0.0.2")]);
        assert_eq!(disk.release_by_id("a", "eth0").unwrap(), [ip("10.0.0.3")]);
    }

    #[test]
    fn the_lock_excludes_other_holders_until_unlocked() {
        let tmp = TempDir::new();
        let disk = Disk::open(&tmp.0).unwrap();
        disk.lock().unwrap();
        // Another open file description (another process, or the reference plugin) is kept out.
        let other = File::open(tmp.0.join("lock")).unwrap();
        assert!(other.try_lock().is_err());
        disk.unlock().unwrap();
        other.try_lock().unwrap();
        other.unlock().unwrap();
        disk.lock().unwrap();
        drop(disk);
        // Closing the store releases its lock.
        other.try_lock().unwrap();
    }

    #[test]
    fn guest_input_is_checked_before_it_names_a_file() {
        assert_eq!(parse_ip("::ffff:10.0.0.1").unwrap(), ip("10.0.0.1"));
        assert_eq!(parse_ip("FD00::0001").unwrap().to_string(), "fd00::1");
        for bad in ["", "../lock", "10.0.0.1/24", "lock", "10.0.0.256"] {
            assert!(parse_ip(bad).is_err(), "{bad:?}");
        }
        for good in ["0", "12", "set-1_a"] {
            check_range_id(good).unwrap();
        }
        for bad in ["", "../x", "a/b", "a.b", "x y"] {
            assert!(check_range_id(bad).is_err(), "{bad:?}");
        }
        check_owner("cid", "eth0").unwrap();
        assert!(check_owner("c\r\nid", "eth0").is_err());
        assert!(check_owner("cid", "eth\n0").is_err());
        assert!(check_owner("  ", "eth0").is_err());
    }

    #[test]
    fn owner_format() {
        assert_eq!(owner_key(" a ", "eth0"), "a\r\neth0");
        assert_eq!(parse_owner("a\r\neth0"), ("a", "eth0"));
        assert_eq!(parse_owner("a\r\neth0\n"), ("a", "eth0"));
        assert_eq!(parse_owner(" a \n"), ("a", ""));
    }
}
