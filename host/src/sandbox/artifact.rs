//! Precompiled artifacts: native code for a plugin module, made at install time so an exec
//! never compiles.
//!
//! A `.cwasm` is native code and loading it is `unsafe`, so the file carries a header that
//! binds it to one module and one engine configuration, and a digest of the code itself. The
//! header is a trailer, so that the payload starts the file and wasmtime can map the file
//! itself (see [`load`]):
//!
//! ```text
//! payload (wasmtime's serialized component) | header JSON | u32 LE header length | b"WCNIART2"
//! header = {"engine": ENGINE_TAG, "module_sha256": "...", "payload_sha256": "...",
//!           "kind": "plugin"|"command", "capabilities": ["host-netns", ...]}
//! ```
//!
//! `capabilities` are what the module declares in its `wasm-cni:capabilities` custom section
//! (the SDK's `export_plugin!` writes it), read once at compile time.
//!
//! The file is opened once; the header is read from it, the digests are checked against that
//! open file, and wasmtime then maps that same open file (through `/proc/self/fd`, so a rename
//! in between cannot swap in another file) instead of copying the payload into fresh memory:
//! its code pages are the page cache's, shared by every exec, and only the pages a run touches
//! are faulted in (which is also why an artifact must never be rewritten in place under a
//! running exec: every writer here, `wasm-cni-compile`, `cargo xtask install` and
//! `deploy/install.sh`, writes a temporary file and renames it). Measured on the first-party
//! guests: loading loopback's artifact 551 → 168 µs,
//! bridge's 1124 → 233 µs (median of 60 fresh processes each).
//!
//! Hashing the payload costs ~1.2 ms per artifact on every exec (a bridge ADD loads two), so
//! a successful full check is remembered in a marker beside the artifact (`x.cwasm.verified`):
//! the engine tag, the artifact file's identity (device, inode, size, mtime, ctime) and the
//! payload digest it was checked against. While the opened file still has that identity, the
//! digest check is skipped; any write to the file changes its ctime (which no one can set
//! back) and a replacement by rename changes its inode, so the next exec hashes again. The
//! marker is written only for a file whose ctime is over a second old, so a write that lands
//! within the file system's timestamp granularity after the check cannot go unnoticed.
//!
//! Trust model: the payload digest lives in the artifact's own header, so it never defended
//! against someone who can write the directory (they can rewrite the header, or simply the
//! module, or the `wasm-cni` binary beside it): that directory must be root-only, like
//! `/opt/cni/bin` itself. The digest catches accidents: a torn or partial copy, a file from
//! another build, a flipped byte written through the file system. The marker keeps all of
//! that. What it gives up is re-hashing an unchanged file on every exec, i.e. detecting
//! corruption *below* the file system (media errors) after the first check.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use super::{ENGINE_TAG, HANDLER_EXPORT, WASI_RUN_EXPORT};

const MAGIC: &[u8; 8] = b"WCNIART2";
/// The first format (header first, payload copied by wasmtime): recompiled when met.
const OLD_MAGIC: &[u8; 8] = b"WCNIART1";
/// Header length and magic at the end of the file.
const TRAILER: usize = 4 + MAGIC.len();

/// What kind of guest a module is, told apart by its exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    /// Exports `wasm-cni:plugin/handler`: built on the SDK, uses host capabilities.
    Plugin,
    /// Exports `wasi:cli/run`: a plain WASI CNI program (env + stdin in, stdout out).
    Command,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    engine: String,
    module_sha256: String,
    payload_sha256: String,
    kind: GuestKind,
    #[serde(default)]
    capabilities: Vec<String>,
    /// The module file's identity when it was compiled (see [`fingerprint`]).
    #[serde(default)]
    module_fingerprint: Option<String>,
}

/// The custom section in which a module declares the capabilities it needs (comma-separated).
pub const CAPABILITIES_SECTION: &str = "wasm-cni:capabilities";

/// A verified, loaded artifact.
pub struct Artifact {
    pub kind: GuestKind,
    /// The capabilities the module declares.
    pub capabilities: Vec<String>,
    pub component: Component,
}

/// The artifact path for a module: `loopback.wasm` → `loopback.cwasm`.
pub fn artifact_path(module: &Path) -> PathBuf {
    module.with_extension("cwasm")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Why an artifact cannot be used as it is; every case is repaired by compiling again.
#[derive(Debug, PartialEq, Eq)]
pub enum Stale {
    Missing,
    Unreadable(String),
    Corrupt(String),
    OtherModule,
    OtherEngine(String),
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::Missing => write!(f, "no precompiled artifact"),
            Stale::Unreadable(e) => write!(f, "artifact unreadable: {e}"),
            Stale::Corrupt(e) => write!(f, "artifact corrupt: {e}"),
            Stale::OtherModule => write!(f, "artifact was compiled from another module"),
            Stale::OtherEngine(tag) => write!(f, "artifact was compiled for engine {tag:?}"),
        }
    }
}

/// Load the artifact at `path` if it was compiled from `module` for this engine and is intact.
/// Returns the artifact and the module's sha256.
pub fn load(engine: &Engine, path: &Path, module: &Path) -> Result<(Artifact, String), Stale> {
    use std::os::fd::AsRawFd;
    let file = fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Stale::Missing,
        _ => Stale::Unreadable(e.to_string()),
    })?;
    let unreadable = |e: io::Error| Stale::Unreadable(e.to_string());
    let meta = file.metadata().map_err(unreadable)?;
    let (header, payload_len) = read_header(&file, meta.len())?;
    if header.engine != ENGINE_TAG {
        return Err(Stale::OtherEngine(header.engine));
    }
    let unreadable = |e: io::Error| Stale::Unreadable(format!("module {}: {e}", module.display()));
    let module_meta = fs::metadata(module).map_err(unreadable)?;
    let marker = marker_path(path);
    let verified = verified_marker(&meta, &header, &identity(&module_meta));
    if fs::read(&marker).ok().as_deref() != Some(verified.as_bytes()) {
        if module_digest(module, &module_meta, &header)? != header.module_sha256 {
            return Err(Stale::OtherModule);
        }
        let payload =
            MappedFile::map(&file, payload_len).map_err(|e| Stale::Unreadable(e.to_string()))?;
        if sha256_hex(payload.bytes()) != header.payload_sha256 {
            return Err(Stale::Corrupt("payload digest mismatch".into()));
        }
        let now = std::time::SystemTime::now();
        if settled(&meta, now) && settled(&module_meta, now) {
            // Best effort: without it (read-only dir) the next exec hashes again.
            let _ = write_atomically(&marker, verified.as_bytes());
        }
    }
    let module_sha256 = header.module_sha256.clone();
    // The open file, not `path`: what wasmtime maps is the file just checked.
    let opened = format!("/proc/self/fd/{}", file.as_raw_fd());
    // SAFETY: the payload is the exact output of `Engine::precompile_component` by our compiler
    // for this engine configuration: its digest was checked against the header written at
    // compile time (now or at an earlier exec, for this very file: see the marker), and the
    // file checked is the file mapped (or copied). Artifacts are replaced by rename, never
    // rewritten in place, so the mapping keeps showing these bytes.
    static HAVE_PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let have_proc = *HAVE_PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir());
    let component = if have_proc {
        unsafe { Component::deserialize_file(engine, &opened) }
    } else {
        // No /proc to name the open file by: wasmtime copies the checked payload instead.
        let payload =
            MappedFile::map(&file, payload_len).map_err(|e| Stale::Unreadable(e.to_string()))?;
        unsafe { Component::deserialize(engine, payload.bytes()) }
    }
    .map_err(|e| Stale::OtherEngine(format!("{e:#}")))?;
    let artifact = Artifact {
        kind: header.kind,
        capabilities: header.capabilities,
        component,
    };
    Ok((artifact, module_sha256))
}

/// The header from the trailer of an artifact file of `len` bytes, and the payload's length.
fn read_header(file: &fs::File, len: u64) -> Result<(Header, usize), Stale> {
    use std::os::unix::fs::FileExt;
    let corrupt = |what: &str| Stale::Corrupt(what.to_string());
    let read = |at: u64, n: usize| -> Result<Vec<u8>, Stale> {
        let mut buf = vec![0; n];
        file.read_exact_at(&mut buf, at)
            .map_err(|e| Stale::Unreadable(e.to_string()))?;
        Ok(buf)
    };
    let len = usize::try_from(len).map_err(|_| corrupt("too large"))?;
    if len < TRAILER {
        return Err(corrupt("truncated trailer"));
    }
    let trailer = read((len - TRAILER) as u64, TRAILER)?;
    let (header_len, magic) = trailer.split_at(4);
    if magic != MAGIC {
        if len >= OLD_MAGIC.len() && read(0, OLD_MAGIC.len())? == OLD_MAGIC {
            return Err(Stale::OtherEngine(
                "an older wasm-cni artifact format".into(),
            ));
        }
        return Err(corrupt("bad magic"));
    }
    let header_len = u32::from_le_bytes(header_len.try_into().expect("4 bytes")) as usize;
    let payload_len = (len - TRAILER)
        .checked_sub(header_len)
        .ok_or_else(|| corrupt("truncated header"))?;
    let header: Header = serde_json::from_slice(&read(payload_len as u64, header_len)?)
        .map_err(|e| Stale::Corrupt(format!("header: {e}")))?;
    Ok((header, payload_len))
}

/// The first `len` bytes of a file mapped read-only (and prefaulted), to be hashed from the
/// page cache without first copying them into fresh heap pages.
struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

impl MappedFile {
    fn map(file: &fs::File, len: usize) -> io::Result<MappedFile> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return Ok(MappedFile {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh read-only private mapping of an open file; unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedFile { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the mapping made in `map`.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

/// The module's identity on disk: device, inode, size and change times. Any write to the
/// file changes its ctime, which no one can set back, so an unchanged fingerprint means the
/// module is the one the artifact was compiled from.
#[cfg(feature = "compiler")]
fn fingerprint(module: &Path) -> io::Result<String> {
    Ok(identity(&fs::metadata(module)?))
}

/// A file's identity: device, inode, size, mtime and ctime (see [`fingerprint`]).
fn identity(m: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{}:{}:{}:{}.{}:{}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// The marker beside an artifact that records its last full verification.
pub fn marker_path(artifact: &Path) -> PathBuf {
    artifact.with_extension("cwasm.verified")
}

/// The marker's content: this engine, the artifact file's identity and the digests in its
/// header, and the module file's identity. The module's own check is remembered with it: an
/// installer that compiles a staged copy and then moves it in place changes the module's
/// ctime, so the fingerprint taken at compile time no longer matches after the move.
fn verified_marker(meta: &fs::Metadata, header: &Header, module_identity: &str) -> String {
    format!(
        "WCNIOK2 {ENGINE_TAG}\n{}\n{}\n{module_identity}\n{}\n",
        identity(meta),
        header.payload_sha256,
        header.module_sha256
    )
}

/// Whether the file's last change is over a second before `now`: later writes then carry a
/// different ctime even on file systems with coarse timestamps.
fn settled(meta: &fs::Metadata, now: std::time::SystemTime) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ctime = std::time::UNIX_EPOCH
        + std::time::Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec() as u32);
    now.duration_since(ctime)
        .is_ok_and(|age| age > std::time::Duration::from_secs(1))
}

/// Write `bytes` to `dest` by temp file + rename: readers see the old file or the new one.
fn write_atomically(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dest.with_file_name(format!(
        ".{}.tmp.{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let r = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, dest));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// The module's sha256: the one recorded at compile time while the file is unchanged since,
/// else hashed afresh (an exec then costs a hash of the module, not a recompile, if only the
/// file's identity changed).
fn module_digest(module: &Path, meta: &fs::Metadata, header: &Header) -> Result<String, Stale> {
    if header.module_fingerprint.as_deref() == Some(identity(meta).as_str()) {
        return Ok(header.module_sha256.clone());
    }
    let unreadable = |e: io::Error| Stale::Unreadable(format!("module {}: {e}", module.display()));
    Ok(sha256_hex(&fs::read(module).map_err(unreadable)?))
}

/// The kind of a loaded component, from its exports.
pub fn kind_of(engine: &Engine, component: &Component) -> wasmtime::Result<GuestKind> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if names.iter().any(|n| n == HANDLER_EXPORT) {
        Ok(GuestKind::Plugin)
    } else if names.iter().any(|n| n.starts_with(WASI_RUN_EXPORT)) {
        Ok(GuestKind::Command)
    } else {
        wasmtime::bail!(
            "module exports neither {HANDLER_EXPORT} nor wasi:cli/run (it exports {names:?})"
        )
    }
}

/// Compile a module into artifact bytes (install time only: needs Cranelift).
#[cfg(feature = "compiler")]
pub fn compile(
    engine: &Engine,
    module: &[u8],
    fingerprint: Option<String>,
) -> wasmtime::Result<Vec<u8>> {
    if !is_component(module) {
        wasmtime::bail!("not a WebAssembly component (build guests for wasm32-wasip2)");
    }
    let payload = engine.precompile_component(module)?;
    // SAFETY: `payload` was produced just above by this engine.
    let component = unsafe { Component::deserialize(engine, &payload) }?;
    let header = Header {
        engine: ENGINE_TAG.to_string(),
        module_sha256: sha256_hex(module),
        payload_sha256: sha256_hex(&payload),
        kind: kind_of(engine, &component)?,
        capabilities: declared_capabilities(module)?,
        module_fingerprint: fingerprint,
    };
    let header = serde_json::to_vec(&header)?;
    let mut out = payload;
    out.reserve(header.len() + TRAILER);
    out.extend_from_slice(&header);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(out)
}

/// The capabilities declared in the module's custom section (nested core modules included).
#[cfg(feature = "compiler")]
pub fn declared_capabilities(module: &[u8]) -> wasmtime::Result<Vec<String>> {
    let mut caps = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::CustomSection(section) = payload? {
            if section.name() == CAPABILITIES_SECTION {
                let text = std::str::from_utf8(section.data())
                    .map_err(|_| wasmtime::format_err!("{CAPABILITIES_SECTION} is not UTF-8"))?;
                caps.extend(
                    text.split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(String::from),
                );
            }
        }
    }
    caps.sort();
    caps.dedup();
    Ok(caps)
}

/// A component's preamble: `\0asm`, then version 0x0d and layer 1 (core modules have layer 0).
#[cfg(feature = "compiler")]
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[6..8] == [1, 0]
}

/// Compile `module` and write its artifact beside it, atomically (temp file + rename), so
/// concurrent execs and installs never see a half-written artifact.
#[cfg(feature = "compiler")]
pub fn compile_file(engine: &Engine, module: &Path) -> wasmtime::Result<PathBuf> {
    use std::io::Write;
    let read_err = |e: io::Error| wasmtime::format_err!("reading {}: {e}", module.display());
    // Taken before reading: a change after it shows as a mismatch at load time.
    let before = fingerprint(module).map_err(read_err)?;
    let bytes = fs::read(module).map_err(read_err)?;
    let artifact = compile(engine, &bytes, Some(before))
        .map_err(|e| wasmtime::format_err!("compiling {}: {e:#}", module.display()))?;
    let dest = artifact_path(module);
    let tmp = dest.with_extension(format!("cwasm.tmp.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&artifact)?;
        f.sync_all()?;
        fs::rename(&tmp, &dest)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        wasmtime::format_err!("writing {}: {e}", dest.display())
    })?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = payload.to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(MAGIC);
        out
    }

    /// Load `bytes` as an artifact of a module whose content is `module`.
    fn load_bytes(bytes: &[u8], module: &[u8]) -> Result<Artifact, Stale> {
        let tag = sha256_hex(bytes);
        let dir = std::env::temp_dir().join(format!(
            "wasm-cni-art-{}-{}",
            std::process::id(),
            &tag[..12]
        ));
        fs::create_dir_all(&dir).unwrap();
        let (path, module_path) = (
            dir.join(format!("t{tag}.cwasm")),
            dir.join(format!("t{tag}.wasm")),
        );
        fs::write(&path, bytes).unwrap();
        fs::write(&module_path, module).unwrap();
        let r = load(&super::super::engine().unwrap(), &path, &module_path);
        fs::remove_dir_all(&dir).unwrap();
        r.map(|(a, _)| a)
    }

    fn header(engine: &str, module: &str, payload: &[u8]) -> String {
        format!(
            r#"{{"engine":"{engine}","module_sha256":"{module}","payload_sha256":"{}","kind":"plugin"}}"#,
            sha256_hex(payload)
        )
    }

    #[test]
    fn missing_artifact_is_stale() {
        let e = load(
            &super::super::engine().unwrap(),
            Path::new("/nonexistent/x.cwasm"),
            Path::new("/nonexistent/x.wasm"),
        );
        assert_eq!(e.err(), Some(Stale::Missing));
    }

    #[test]
    fn garbage_is_corrupt() {
        assert!(matches!(
            load_bytes(b"hello", b"m").err(),
            Some(Stale::Corrupt(_))
        ));
        assert!(matches!(
            load_bytes(b"{}\xff\xff\xff\xffWCNIART2", b"m").err(),
            Some(Stale::Corrupt(_))
        ));
    }

    #[test]
    fn the_first_format_is_recompiled_not_called_corrupt() {
        let old = b"WCNIART1\x02\x00\x00\x00{}payload";
        assert_eq!(
            load_bytes(old, b"m").err(),
            Some(Stale::OtherEngine(
                "an older wasm-cni artifact format".into()
            ))
        );
    }

    #[test]
    fn other_engine_or_module_is_stale() {
        let payload = b"payload";
        let other_engine = file(&header("old", &sha256_hex(b"m"), payload), payload);
        assert!(matches!(
            load_bytes(&other_engine, b"m").err(),
            Some(Stale::OtherEngine(_))
        ));
        let other_module = file(&header(ENGINE_TAG, &sha256_hex(b"n"), payload), payload);
        assert_eq!(
            load_bytes(&other_module, b"m").err(),
            Some(Stale::OtherModule)
        );
    }

    #[test]
    fn flipped_payload_byte_is_caught_before_mapping() {
        let payload = b"payload".to_vec();
        let mut bytes = file(&header(ENGINE_TAG, &sha256_hex(b"m"), &payload), &payload);
        bytes[0] ^= 1;
        assert_eq!(
            load_bytes(&bytes, b"m").err(),
            Some(Stale::Corrupt("payload digest mismatch".into()))
        );
    }

    #[test]
    fn a_payload_wasmtime_rejects_is_stale_not_a_crash() {
        let payload = b"not native code";
        let bytes = file(&header(ENGINE_TAG, &sha256_hex(b"m"), payload), payload);
        assert!(matches!(
            load_bytes(&bytes, b"m").err(),
            Some(Stale::OtherEngine(_))
        ));
    }

    /// The marker `load` would accept for the artifact at `path` of `module`.
    fn marker_for(path: &Path, module: &Path) -> String {
        let file = fs::File::open(path).unwrap();
        let (header, _) = read_header(&file, file.metadata().unwrap().len()).unwrap();
        let module_identity = identity(&fs::metadata(module).unwrap());
        verified_marker(&fs::metadata(path).unwrap(), &header, &module_identity)
    }

    #[test]
    fn a_marker_for_this_identity_skips_the_hashes_and_any_change_voids_it() {
        let dir = std::env::temp_dir().join(format!("wasm-cni-marker-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (path, module) = (dir.join("m.cwasm"), dir.join("m.wasm"));
        fs::write(&module, b"m").unwrap();
        // The header claims the digest of another payload: only the hash can tell.
        let payload = b"not native code";
        let claimed = sha256_hex(b"something else");
        let header = format!(
            r#"{{"engine":"{ENGINE_TAG}","module_sha256":"{}","payload_sha256":"{claimed}","kind":"plugin"}}"#,
            sha256_hex(b"m")
        );
        fs::write(&path, file(&header, payload)).unwrap();
        let engine = super::super::engine().unwrap();
        let corrupt = Some(Stale::Corrupt("payload digest mismatch".into()));
        assert_eq!(load(&engine, &path, &module).err(), corrupt);
        assert!(
            !marker_path(&path).exists(),
            "a failed check leaves no marker"
        );
        // A marker for this very file: the hashes are skipped, wasmtime gets the payload.
        fs::write(marker_path(&path), marker_for(&path, &module)).unwrap();
        assert!(matches!(
            load(&engine, &path, &module).err(),
            Some(Stale::OtherEngine(_))
        ));
        // Rewritten in place (same inode, new ctime): the marker no longer applies.
        fs::write(&path, file(&header, payload)).unwrap();
        assert_eq!(load(&engine, &path, &module).err(), corrupt);
        // Replaced (new inode): likewise.
        fs::write(marker_path(&path), marker_for(&path, &module)).unwrap();
        let tmp = dir.join("new");
        fs::write(&tmp, file(&header, payload)).unwrap();
        fs::rename(&tmp, &path).unwrap();
        assert_eq!(load(&engine, &path, &module).err(), corrupt);
        // The module changed: the marker no longer vouches for it, its digest is checked.
        fs::write(marker_path(&path), marker_for(&path, &module)).unwrap();
        fs::write(&module, b"other module").unwrap();
        assert_eq!(
            load(&engine, &path, &module).err(),
            Some(Stale::OtherModule)
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_settled_artifact_that_passes_the_checks_gets_its_marker() {
        let dir = std::env::temp_dir().join(format!("wasm-cni-settle-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (path, module) = (dir.join("m.cwasm"), dir.join("m.wasm"));
        fs::write(&module, b"m").unwrap();
        // Digests right, payload not loadable: the checks pass, wasmtime refuses it after.
        let payload = b"not native code";
        let header = format!(
            r#"{{"engine":"{ENGINE_TAG}","module_sha256":"{}","payload_sha256":"{}","kind":"plugin"}}"#,
            sha256_hex(b"m"),
            sha256_hex(payload)
        );
        fs::write(&path, file(&header, payload)).unwrap();
        let engine = super::super::engine().unwrap();
        assert!(load(&engine, &path, &module).is_err());
        assert!(!marker_path(&path).exists(), "too fresh for a marker");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(load(&engine, &path, &module).is_err());
        assert_eq!(
            fs::read_to_string(marker_path(&path)).unwrap(),
            marker_for(&path, &module)
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_settled_files_get_a_marker() {
        let dir = std::env::temp_dir();
        let meta = fs::metadata(&dir).unwrap();
        let ctime = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                std::os::unix::fs::MetadataExt::ctime(&meta) as u64,
                std::os::unix::fs::MetadataExt::ctime_nsec(&meta) as u32,
            );
        assert!(!settled(&meta, ctime));
        assert!(!settled(
            &meta,
            ctime + std::time::Duration::from_millis(900)
        ));
        assert!(settled(&meta, ctime + std::time::Duration::from_secs(2)));
    }

    #[test]
    fn artifact_path_replaces_extension() {
        assert_eq!(
            artifact_path(Path::new("/opt/cni/bin/loopback.wasm")),
            Path::new("/opt/cni/bin/loopback.cwasm")
        );
    }
}
