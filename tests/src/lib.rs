//! The harness of the integration tests: run installed plugins exactly as a runtime does
//! (a separate process, CNI_* env, config on stdin) in throwaway network namespaces, and read
//! the kernel state back with iproute2.
//!
//! `cargo xtask test` installs everything into a temp dir and points `WASM_CNI_BIN_DIR` at it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// Where Debian's reference plugins (the oracle of the differential tests) live.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// The directory our plugins were installed into.
pub fn bin_dir() -> PathBuf {
    PathBuf::from(std::env::var("WASM_CNI_BIN_DIR").expect(
        "WASM_CNI_BIN_DIR is not set: run the integration tests through `cargo xtask test`",
    ))
}

/// The built (not installed) guest modules.
pub fn guest_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("WASM_CNI_GUEST_DIR")
            .expect("WASM_CNI_GUEST_DIR is not set: use `cargo xtask test`"),
    )
}

/// What one exec gave back.
#[derive(Debug)]
pub struct Exec {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Exec {
    /// stdout as JSON (panics with the whole exec when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Assert success and return the JSON result.
    pub fn ok_json(&self) -> Value {
        assert_eq!(self.status, 0, "plugin failed: {self:?}");
        self.json()
    }

    /// Assert failure and return the CNI error's (code, msg).
    pub fn err(&self) -> (u64, String) {
        assert_eq!(self.status, 1, "expected a CNI error: {self:?}");
        let e = self.json();
        (
            e["code"]
                .as_u64()
                .unwrap_or_else(|| panic!("no code: {self:?}")),
            e["msg"].as_str().unwrap_or_default().to_string(),
        )
    }
}

/// Exec `program` with exactly these CNI variables (nothing inherited) and `stdin`.
pub fn exec(program: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Exec {
    exec_args(program, &[], env, stdin)
}

/// [`exec`] with command-line arguments.
pub fn exec_args(program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Exec {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
    let mut pipe = child.stdin.take().expect("piped stdin");
    // A plugin may answer (and exit) before reading all of stdin: a broken pipe is fine.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    let out = child.wait_with_output().expect("waiting for the plugin");
    Exec {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A CNI request, built up and exec'd against ours or the reference.
#[derive(Clone, Debug)]
pub struct Cni {
    pub vars: Vec<(String, String)>,
    /// Run the plugin inside this namespace (`ip netns exec`), which is then the plugin's
    /// "host" namespace: tests of bridge and host-device never touch the real host's network.
    pub host_netns: Option<String>,
}

impl Cni {
    pub fn new(command: &str, netns: &str) -> Cni {
        let mut vars = vec![
            ("CNI_COMMAND".to_string(), command.to_string()),
            ("CNI_CONTAINERID".to_string(), "test-container".to_string()),
            ("CNI_IFNAME".to_string(), "eth0".to_string()),
        ];
        if !netns.is_empty() {
            vars.push(("CNI_NETNS".to_string(), netns.to_string()));
        }
        Cni {
            vars,
            host_netns: None,
        }
    }

    /// Run the plugin with `ns` as its host namespace.
    pub fn with_host(mut self, ns: &Netns) -> Cni {
        self.host_netns = Some(ns.name.clone());
        self
    }

    pub fn set(mut self, k: &str, v: &str) -> Cni {
        self.vars.retain(|(name, _)| name != k);
        self.vars.push((k.to_string(), v.to_string()));
        self
    }

    pub fn unset(mut self, k: &str) -> Cni {
        self.vars.retain(|(name, _)| name != k);
        self
    }

    /// Run the plugin `name` from `dir` with CNI_PATH = dir.
    pub fn run_in(&self, dir: &Path, name: &str, stdin: &str) -> Exec {
        self.run_bytes(dir, name, stdin.as_bytes())
    }

    pub fn run_bytes(&self, dir: &Path, name: &str, stdin: &[u8]) -> Exec {
        let path = dir.display().to_string();
        let mut env: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if !env.iter().any(|(k, _)| *k == "CNI_PATH") {
            env.push(("CNI_PATH", &path));
        }
        let program = dir.join(name);
        match &self.host_netns {
            None => exec(&program, &env, stdin),
            Some(host) => {
                let program = program.display().to_string();
                exec_args(
                    &ip_binary(),
                    &["netns", "exec", host, &program],
                    &env,
                    stdin,
                )
            }
        }
    }

    /// Ours: the installed link.
    pub fn ours(&self, name: &str, stdin: &str) -> Exec {
        self.run_in(&bin_dir(), name, stdin)
    }

    /// The reference plugin of the same name.
    pub fn reference(&self, name: &str, stdin: &str) -> Exec {
        self.run_in(Path::new(REFERENCE_DIR), name, stdin)
    }
}

/// The absolute path of `ip` (execs run with an empty environment, so no PATH lookup there).
pub fn ip_binary() -> PathBuf {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("iproute2's ip is installed")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A throwaway network namespace with a unique `wcni-t-` name, deleted on drop (also when the
/// test panics).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = format!(
            "wcni-t-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(
            st.success(),
            "ip netns add {name} failed (are the tests running as root?)"
        );
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// `ip -j <args>` inside the namespace.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-j"])
            .args(args)
            .output()
            .expect("running ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("ip -j prints JSON")
    }

    /// Run `ip <args>` inside the namespace and assert it worked.
    pub fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .status()
            .expect("running ip");
        assert!(st.success(), "ip -n {} {args:?} failed", self.name);
    }

    /// The kernel's view of a link: up (IFF_UP) and its addresses in CIDR form.
    pub fn link_state(&self, name: &str) -> (bool, Vec<String>) {
        let info = self.ip_json(&["addr", "show", "dev", name]);
        let link = &info[0];
        let up = link["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "UP"));
        let addrs = link["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default();
        (up, addrs)
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A copy of the installed plugin directory that a test may break (remove or corrupt files),
/// removed on drop.
pub struct ScratchInstall {
    pub dir: PathBuf,
}

impl ScratchInstall {
    pub fn new() -> ScratchInstall {
        let dir = std::env::temp_dir().join(format!(
            "wcni-scratch-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("creating scratch dir");
        for entry in std::fs::read_dir(bin_dir()).expect("reading bin dir") {
            let entry = entry.expect("dir entry");
            let dest = dir.join(entry.file_name());
            let ty = entry.file_type().expect("file type");
            if ty.is_symlink() {
                let target = std::fs::read_link(entry.path()).expect("read link");
                std::os::unix::fs::symlink(target, &dest).expect("symlink");
            } else if entry.file_name().to_string_lossy().starts_with("wasm-cni") {
                // Hard links, not copies: a copy is open for writing while parallel tests
                // fork, and exec'ing it then fails with ETXTBSY.
                std::fs::hard_link(entry.path(), &dest).expect("hard link");
            } else {
                std::fs::copy(entry.path(), &dest).expect("copy");
            }
        }
        ScratchInstall { dir }
    }
}

impl ScratchInstall {
    /// Install a built guest (e.g. a test-only one) here: module, artifact and link.
    pub fn add_guest(&self, name: &str) {
        self.add_guest_as(name, name);
    }

    /// Install the built guest `<built>.wasm` under the plugin type `name` (e.g. the example
    /// `sysctl_tuning.wasm` as `sysctl-tuning`): module, artifact and link.
    pub fn add_guest_as(&self, built: &str, name: &str) {
        let module = self.dir.join(format!("{name}.wasm"));
        std::fs::copy(guest_dir().join(format!("{built}.wasm")), &module).unwrap_or_else(|e| {
            panic!("copying {built}.wasm (built by `cargo xtask build`/`install`): {e}")
        });
        let st = Command::new(self.dir.join("wasm-cni-compile"))
            .arg(&module)
            .stdout(Stdio::null())
            .status()
            .expect("running wasm-cni-compile");
        assert!(st.success(), "compiling {name}");
        std::os::unix::fs::symlink("wasm-cni", self.dir.join(name)).expect("linking the guest");
    }
}

impl Default for ScratchInstall {
    fn default() -> Self {
        ScratchInstall::new()
    }
}

impl Drop for ScratchInstall {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A network config for `plugin` in `version` (None: no cniVersion key at all).
pub fn conf(version: Option<&str>, plugin: &str) -> String {
    match version {
        Some(v) => format!(r#"{{"cniVersion":"{v}","name":"testnet","type":"{plugin}"}}"#),
        None => format!(r#"{{"name":"testnet","type":"{plugin}"}}"#),
    }
}

/// The versions both we and the Debian reference (CNI 1.0.0) support.
pub const SHARED_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];
