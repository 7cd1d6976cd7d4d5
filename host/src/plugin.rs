//! One CNI exec: find the plugin module, answer the protocol, run the guest, print the answer.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use cni_types::{codes, CniError, CniResult};
use wasmtime::Engine;

use crate::caps::netns::{Netns, OpenError, Opening};
use crate::caps::Caps;
use crate::cni::{self, Command, Output, Parsed, Request};
use crate::log::{trace, Level, Logger};
use crate::parallel::{self, Task};
use crate::policy::{self, Limits, Policy};
use crate::sandbox::{self, artifact, Artifact, GuestKind};

/// The name of the install-time compiler, installed beside `wasm-cni`.
pub const COMPILER: &str = "wasm-cni-compile";

/// A plugin: its type name and its module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plugin {
    pub name: String,
    pub module: PathBuf,
}

impl Plugin {
    /// The plugin a link runs: `/opt/cni/bin/loopback` → `/opt/cni/bin/loopback.wasm`. The
    /// module lies beside the link, not beside the binary the link points to.
    pub fn from_argv0(argv0: &str, cni_path: Option<&str>) -> Plugin {
        let path = Path::new(argv0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = if argv0.contains('/') {
            path.parent().map(Path::to_path_buf)
        } else {
            // Exec'd through a search path: the first CNI_PATH dir that has the link.
            cni_path
                .into_iter()
                .flat_map(|p| p.split(':'))
                .map(PathBuf::from)
                .find(|d| d.join(&name).exists())
        };
        let dir = dir.unwrap_or_else(|| PathBuf::from("."));
        Plugin {
            module: dir.join(format!("{name}.wasm")),
            name,
        }
    }

    /// A module given directly (`wasm-cni run module.wasm`).
    pub fn from_module(module: &Path) -> Plugin {
        Plugin {
            name: module
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            module: module.to_path_buf(),
        }
    }
}

/// Whether `path` runs wasm-cni: a symlink whose target is named `wasm-cni` (how plugins are
/// installed), or a hard link to the running binary. The runtime's IPAM delegation and
/// `wasm-cni validate` decide with this one test whether a type runs in a sandbox.
pub fn is_wasm_cni(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if std::fs::read_link(path).is_ok_and(|t| t.file_name().is_some_and(|n| n == "wasm-cni")) {
        return true;
    }
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| (a.dev(), a.ino()) == (b.dev(), b.ino());
    match (
        std::fs::metadata(path),
        std::env::current_exe().and_then(std::fs::metadata),
    ) {
        (Ok(a), Ok(b)) => same(&a, &b),
        _ => false,
    }
}

/// Run one CNI exec of `plugin` with this environment and stdin.
///
/// For a verb that runs a guest, the two longest pieces of work before the guest can start run
/// side by side: this thread loads the plugin's artifact at once (the longer of the two, so it
/// waits for no thread to start), while a helper reads and checks the request, loads the
/// policy, starts the netlink runtime, begins entering the container netns and links the
/// sandbox's interfaces ([`prepare`]). What the load found counts only once the request and
/// the policy have been checked. Measured on 2 cores against the artifact loading on the
/// helper while this thread did the rest: see docs/bench.md.
pub fn exec<E, R>(plugin: &Plugin, env: E, mut stdin: R) -> Output
where
    E: Fn(&str) -> Option<String> + Send + 'static,
    R: Read + Send + 'static,
{
    let runs_guest = env("CNI_COMMAND")
        .as_deref()
        .is_some_and(|c| c != "VERSION" && !c.is_empty());
    let (prepared, loaded) = if runs_guest {
        let name = plugin.name.clone();
        let since = trace::since();
        let helper = std::thread::Builder::new().name("wasm-cni-prepare".into());
        let task = parallel::task(helper, sandbox::is_one_shot(), move || {
            trace::start_at(since);
            warm_cpu_features();
            let prepared = prepare(&name, &env, &mut stdin);
            let phases = trace::phases();
            trace::stop();
            (prepared, phases)
        });
        let task = match task {
            Ok(task) => task,
            Err(e) => {
                let e = internal(format!("starting a thread: {e}"));
                return Output::error(&e, cni_types::CURRENT_VERSION);
            }
        };
        let loaded = preload(&plugin.module);
        trace::mark("load");
        let Some((prepared, phases)) = task.wait() else {
            let e = internal("preparing the request failed: its thread stopped".into());
            return Output::error(&e, cni_types::CURRENT_VERSION);
        };
        trace::mark("prepared");
        trace::adopt("ahead", phases);
        (prepared, loaded)
    } else {
        (prepare(&plugin.name, &env, &mut stdin), None)
    };
    let Prepared {
        req,
        policy,
        logger,
        netlink,
    } = match prepared {
        Ok(prepared) => prepared,
        Err(answer) => return answer,
    };
    let started = Instant::now();
    let (verb, version) = (req.command.as_str(), req.version.clone());
    let begun = Begun { netlink, loaded };
    let outcome = run(plugin, req, policy.as_ref(), &logger, begun);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    trace::mark("done");
    let mut fields: Vec<(&str, serde_json::Value)> =
        vec![("verb", verb.into()), ("ms", ms(elapsed_ms))];
    let (level, output) = match outcome {
        Ok(stdout) => {
            fields.push(("outcome", "ok".into()));
            (Level::Info, Output::success(stdout))
        }
        Err(e) => {
            fields.extend([
                ("outcome", "error".into()),
                ("code", e.code.into()),
                ("error", e.msg.clone().into()),
            ]);
            (Level::Error, Output::error(&e, &version))
        }
    };
    if let Some(phases) = trace::phases() {
        fields.push(("phases_us", phases));
    }
    logger.log(level, "invocation", &fields);
    output
}

/// Fill std's cache of the CPU's features now, on the prepare helper. The artifact load on
/// the main thread needs it a few tens of µs into the exec (`memchr` in wasmtime's ELF
/// parsing, the engine's check of the compiled code's ISA flags), and filling it is a series
/// of `cpuid` instructions, each a trap to the hypervisor in a VM: ~14 µs per exec on the main
/// thread in a profile of bridge ADDs. The cache is process-wide and filled once; should the
/// main thread get there first, it fills it itself, as before.
fn warm_cpu_features() {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = std::arch::is_x86_feature_detected!("avx2");
    }
}

/// An exec's checked request with what its run needs besides the guest.
struct Prepared {
    req: Request,
    policy: Option<Policy>,
    logger: Logger,
    /// The netlink runtime, the container netns being entered: started ahead (see [`exec`]).
    netlink: Option<Netlink>,
}

/// A run's netlink runtime and the container netns its worker is entering.
type Netlink = (
    Arc<tokio::runtime::Runtime>,
    Result<Option<Opening>, OpenError>,
);

/// What an exec began for its run before the run itself (see [`exec`]): the netlink runtime
/// its helper started, the artifact its main thread loaded. A nested run begins with neither.
#[derive(Default)]
struct Begun {
    netlink: Option<Netlink>,
    loaded: Option<Loaded>,
}

/// Read and check the request, load the policy and set up the logger, then, for the guest that
/// will run, start the netlink runtime, begin entering the container netns and link the
/// sandbox's interfaces. `Err` is the exec's whole answer: VERSION's, the about text, or a
/// protocol or policy error.
fn prepare(
    name: &str,
    env: &impl Fn(&str) -> Option<String>,
    stdin: &mut impl Read,
) -> Result<Prepared, Output> {
    let req = match cni::parse(env, stdin) {
        Ok(Parsed::About) => {
            eprintln!("{}", cni::about(name));
            return Err(Output::success(String::new()));
        }
        Ok(Parsed::Version) => return Err(Output::success(cni_types::version_info_json())),
        Ok(Parsed::Request(req)) => *req,
        // Before a config is read there is no version to answer in: use the newest.
        Err(e) => return Err(Output::error(&e, cni_types::CURRENT_VERSION)),
    };
    trace::mark("protocol");
    let mut logger = Logger::new(name, &req.container_id);
    // A policy that exists but cannot be used fails closed: nothing runs.
    let policy = match Policy::load() {
        Ok(p) => p,
        Err(e) => {
            let e = CniError::new(
                sandbox::codes::DENIED,
                format!("{e}; no plugin runs until the policy is fixed"),
                "",
            );
            return Err(Output::error(&e, &req.version));
        }
    };
    logger.audit_file = policy.as_ref().and_then(|p| p.audit.file.clone());
    let log = policy.as_ref().map(|p| &p.log);
    logger.configure(
        log.and_then(|l| l.file.as_deref()),
        log.and_then(|l| l.level.as_deref()),
    );
    trace::mark("policy");
    // A runtime that does not start is reported by the run, which then tries again.
    let netlink = start_netlink(&req).ok();
    trace::mark("runtime");
    // Linking grants nothing (a guest reaches only what its component imports); an interface
    // that fails to link here is linked again, and its error reported, when the guest is
    // instantiated.
    if let Ok(engine) = sandbox::engine() {
        let _ = sandbox::component::link_all(&engine);
    }
    trace::mark("link-ahead");
    Ok(Prepared {
        req,
        policy,
        logger,
        netlink,
    })
}

/// Start a run's netlink runtime and begin entering its container netns.
fn start_netlink(req: &Request) -> Result<Netlink, CniError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| internal(format!("starting the netlink runtime: {e}")))?;
    let rt = Arc::new(rt);
    let opening = begin_netns(req, &rt);
    Ok((rt, opening))
}

fn ms(v: f64) -> serde_json::Value {
    serde_json::json!((v * 1000.0).round() / 1000.0)
}

fn run(
    plugin: &Plugin,
    req: Request,
    policy: Option<&Policy>,
    logger: &Logger,
    begun: Begun,
) -> Result<String, CniError> {
    let engine = sandbox::engine().map_err(|e| internal(format!("creating the engine: {e:#}")))?;
    trace::mark("engine");
    let version = req.version.clone();
    let req = Arc::new(req);
    Ok(
        match run_with(&engine, plugin, req, policy, logger, begun)? {
            Answer::Typed(result) => result.to_json(&version)?.to_string(),
            Answer::Text(text) => text,
            Answer::Nothing => String::new(),
        },
    )
}

/// What a guest answered.
pub enum Answer {
    /// A plugin component's result (ADD).
    Typed(CniResult),
    /// A WASI command's result as it printed it (ADD), already checked.
    Text(String),
    /// Every other verb.
    Nothing,
}

/// Run `plugin` for a validated request: the whole exec after the protocol checks, and also
/// how a wasm IPAM plugin runs in-process for its delegating plugin.
pub fn run_request(
    engine: &Engine,
    plugin: &Plugin,
    req: Arc<Request>,
    policy: Option<&Policy>,
    logger: &Logger,
) -> Result<Answer, CniError> {
    run_with(engine, plugin, req, policy, logger, Begun::default())
}

/// [`run_request`], with what the exec began for it (see [`exec`]).
fn run_with(
    engine: &Engine,
    plugin: &Plugin,
    req: Arc<Request>,
    policy: Option<&Policy>,
    logger: &Logger,
    begun: Begun,
) -> Result<Answer, CniError> {
    let _run = trace::enter();
    let outer = RUNNING.with(|r| r.borrow().clone());
    // A wasm IPAM plugin run in-process for a plugin of this exec, on the same thread: the
    // request names the same container netns (the delegating plugin passes its own
    // CNI_NETNS), so it gets the runtime and the netns handle already open instead of a second
    // runtime and a second thread that enters the netns. The handle grants nothing beyond
    // what a fresh one would.
    let nested = outer.filter(|(_, path, _)| *path == req.netns);
    // Otherwise the netlink runtime was started ahead (see [`exec`]), or starts now, and the
    // container netns's worker enters it meanwhile (the netns is opened, never changed, before
    // the policy has decided; its errors count only once the module turns out to be a plugin
    // component).
    let early = match (&nested, begun.netlink) {
        (Some(_), _) => None,
        (None, Some(netlink)) => Some(netlink),
        (None, None) => {
            let netlink = start_netlink(&req)?;
            trace::mark("runtime");
            Some(netlink)
        }
    };
    let (artifact, digest, ready) = load(engine, plugin, logger, begun.loaded)?;
    trace::mark("artifact");
    let decision = policy::decide(policy, &plugin.name, &digest, &artifact.capabilities);
    let (grants, limits) = decision.map_err(|refusal| {
        logger.audit("start", &plugin.name, "denied");
        CniError::new(sandbox::codes::DENIED, refusal, "")
    })?;
    let answer = match artifact.kind {
        GuestKind::Command => {
            let out = sandbox::run_command(engine, &artifact.component, &req, &limits, logger)?;
            out.map(Answer::Text).unwrap_or(Answer::Nothing)
        }
        GuestKind::Plugin => {
            let (rt, container) = match (nested, early) {
                (Some((rt, _, netns)), _) => (rt, ContainerNetns::Inherited(netns)),
                (None, Some((rt, opening))) => (rt, ContainerNetns::Opening(opening)),
                (None, None) => unreachable!("a run is either nested or starts its own runtime"),
            };
            // Called once the guest is instantiated: the worker entering the container netns
            // had the artifact load and the instantiation to get there. The IPAM plugin's
            // artifact starts loading on another thread now, while the guest runs until it
            // delegates. Started with the exec instead (on the main thread's CPU, idle while it
            // waits for its own artifact), 80 interleaved bridge ADDs took 3.63 ms instead of
            // 3.56: the two loads compete for the cores. (Measured when the allocator still had
            // one lock: the bridge's artifact load took 625 µs instead of 360.)
            let delegating = grants.clone();
            let running = std::cell::RefCell::new(None);
            let netns = || {
                let netns = match container {
                    ContainerNetns::Inherited(netns) => netns,
                    ContainerNetns::Opening(opening) => {
                        prefetch_ipam(engine, &req, &rt, policy, logger, &delegating);
                        finish_netns(&req, opening, &rt)?
                    }
                };
                trace::mark("netns");
                *running.borrow_mut() =
                    Some(Running::set(rt.clone(), req.netns.clone(), netns.clone()));
                Ok(netns)
            };
            let caps = Caps::new(
                rt.clone(),
                engine.clone(),
                req.clone(),
                policy.cloned(),
                grants,
                logger.clone(),
            );
            let result = match ready {
                // Made ready ahead under the same policy decision: it gets its capabilities now.
                Some((ready_limits, ready)) if ready_limits == limits => {
                    let ready = ready.hand_over(caps, &limits, logger)?;
                    sandbox::component::run_ready(ready, &req, netns, &limits, logger)?
                }
                _ => sandbox::run_component(
                    engine,
                    &artifact.component,
                    &req,
                    netns,
                    caps,
                    &limits,
                    logger,
                )?,
            };
            result.map(Answer::Typed).unwrap_or(Answer::Nothing)
        }
    };
    sandbox::retire(artifact);
    Ok(answer)
}

/// The container netns of a plugin run: the delegating run's, for a nested run, or its own,
/// still being entered.
enum ContainerNetns {
    Inherited(Option<Arc<Netns>>),
    Opening(Result<Option<Opening>, OpenError>),
}

type Shared = (
    Arc<tokio::runtime::Runtime>,
    String,
    Option<Arc<crate::caps::netns::Netns>>,
);

thread_local! {
    /// The netlink runtime and container netns of the plugin run in progress on this thread.
    static RUNNING: std::cell::RefCell<Option<Shared>> = const { std::cell::RefCell::new(None) };
}

/// Publishes a run's runtime and netns to runs nested in it; restores the outer value on drop.
struct Running(Option<Shared>);

impl Running {
    fn set(
        rt: Arc<tokio::runtime::Runtime>,
        path: String,
        netns: Option<Arc<crate::caps::netns::Netns>>,
    ) -> Running {
        Running(RUNNING.with(|r| r.borrow_mut().replace((rt, path, netns))))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let outer = self.0.take();
        RUNNING.with(|r| *r.borrow_mut() = outer);
    }
}

fn internal(msg: String) -> CniError {
    CniError::new(codes::INTERNAL, msg, "")
}

/// Start opening the container's namespace for this verb (see [`finish_netns`]).
fn begin_netns(req: &Request, rt: &tokio::runtime::Runtime) -> Result<Option<Opening>, OpenError> {
    let needed = matches!(req.command, Command::Add | Command::Check | Command::Del);
    if !needed || req.netns.is_empty() {
        return Ok(None);
    }
    Netns::begin_open(Path::new(&req.netns), rt).map(Some)
}

/// The container's namespace for this verb: required for ADD and CHECK; for DEL an empty or
/// vanished netns means "already gone", which DEL must accept.
fn finish_netns(
    req: &Request,
    opening: Result<Option<Opening>, OpenError>,
    rt: &tokio::runtime::Runtime,
) -> Result<Option<Arc<Netns>>, CniError> {
    let opened = opening.and_then(|o| o.map(|o| o.finish(rt)).transpose());
    let ns = match opened {
        Ok(Some(ns)) => ns,
        Ok(None) => return Ok(None),
        Err(OpenError::NotFound) if req.command == Command::Del => return Ok(None),
        Err(OpenError::NotFound) => {
            return Err(internal(format!(
                "failed to open netns {:?}: no such file or directory",
                req.netns
            )))
        }
        Err(OpenError::Other(msg)) => return Err(internal(msg)),
    };
    let own = std::fs::metadata("/proc/thread-self/ns/net").map(|m| {
        (
            std::os::unix::fs::MetadataExt::dev(&m),
            std::os::unix::fs::MetadataExt::ino(&m),
        )
    });
    if ns.id().ok() == own.ok() {
        return Err(CniError::new(
            codes::INVALID_ENVIRONMENT,
            "plugin's netns and netns from CNI_NETNS should not be the same",
            req.netns.clone(),
        ));
    }
    Ok(Some(Arc::new(ns)))
}

type Loaded = Result<(Artifact, String), artifact::Stale>;

/// What a helper thread did ahead for a plugin run: its artifact loaded and, for an IPAM
/// plugin, instantiated under the limits of its policy decision.
struct Fetched {
    loaded: Loaded,
    ready: Ahead,
}

/// A plugin instantiated ahead and the limits it was made under (see [`prefetch_ipam`]).
type Ahead = Option<(Limits, sandbox::component::Ready)>;

thread_local! {
    /// Artifacts being loaded ahead of their run, by module path.
    static PREFETCHED: std::cell::RefCell<Vec<(PathBuf, Task<Option<Fetched>>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Load the artifact of `module` on this thread now, for the run (see [`exec`]): it only
/// opens, maps and verifies files and registers the code with the engine; it never compiles
/// and never runs anything, and what it finds (a stale or missing artifact too) counts only
/// once the request and the policy have been checked. None without an engine: the exec then
/// fails before it needs the artifact (`run`).
fn preload(module: &Path) -> Option<Loaded> {
    let engine = sandbox::engine().ok()?;
    Some(artifact::load(
        &engine,
        &artifact::artifact_path(module),
        module,
    ))
}

/// Run `work` for `module`'s run on a helper thread and remember it for [`prefetched`]; it
/// replaces work for the same module that was never picked up (an earlier exec in this process
/// that failed before it needed its artifact). Without a thread, nothing is done ahead.
fn fetch_ahead(
    thread: &str,
    module: &Path,
    work: impl FnOnce() -> Option<Fetched> + Send + 'static,
) {
    let builder = std::thread::Builder::new().name(thread.into());
    let Ok(task) = parallel::task(builder, sandbox::is_one_shot(), work) else {
        return;
    };
    PREFETCHED.with(|p| {
        let mut p = p.borrow_mut();
        p.retain(|(m, _)| m != module);
        p.push((module.to_path_buf(), task));
    });
}

/// When the config delegates to a wasm IPAM plugin (`ipam.type`) this plugin may delegate to
/// (`delegating`: its grants), make that plugin ready on another thread while this plugin's
/// guest runs: its artifact loaded and, when the policy lets it run, instantiated with no
/// capabilities yet (the delegation gives it its own and restarts its time limit, see
/// [`run_request`]). The delegation then finds it ready (see [`load`]). Never compiles, and
/// runs no more of the plugin than its instantiation.
fn prefetch_ipam(
    engine: &Engine,
    req: &Arc<Request>,
    rt: &Arc<tokio::runtime::Runtime>,
    policy: Option<&Policy>,
    logger: &Logger,
    delegating: &policy::Grants,
) {
    // Only the verbs that delegate (STATUS and GC do not).
    if !matches!(req.command, Command::Add | Command::Del | Command::Check) {
        return;
    }
    let ipam_type = req.config.ipam.as_ref().and_then(|i| i.get("type"));
    let Some(ipam_type) = ipam_type.and_then(|t| t.as_str()) else {
        return;
    };
    if !delegating.may_delegate(ipam_type) {
        return;
    }
    let Some(link) = crate::caps::ipam::find_wasm_plugin(&req.path, ipam_type) else {
        return;
    };
    let plugin = Plugin::from_argv0(&link.to_string_lossy(), None);
    let module = plugin.module.clone();
    let (engine, req, rt, policy) = (engine.clone(), req.clone(), rt.clone(), policy.cloned());
    let logger = Logger {
        plugin: plugin.name.clone(),
        ..logger.clone()
    };
    fetch_ahead("wasm-cni-prefetch", &module, move || {
        let path = &plugin.module;
        let loaded = artifact::load(&engine, &artifact::artifact_path(path), path);
        let ready = match &loaded {
            Ok((artifact, digest)) if artifact.kind == GuestKind::Plugin => {
                let decision = policy::decide(
                    policy.as_ref(),
                    &plugin.name,
                    digest,
                    &artifact.capabilities,
                );
                decision.ok().and_then(|(_, limits)| {
                    let none = policy::Grants::default();
                    let caps = Caps::new(rt, engine.clone(), req, policy, none, logger.clone());
                    let component = &artifact.component;
                    let ready =
                        sandbox::component::prepare(&engine, component, caps, &limits, &logger);
                    ready.ok().map(|r| (limits, r))
                })
            }
            _ => None,
        };
        Some(Fetched { loaded, ready })
    });
}

/// What loading `module`'s artifact ahead found, if a load was started (and did not panic).
fn prefetched(module: &Path) -> Option<Fetched> {
    let loading = PREFETCHED.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().position(|(m, _)| m == module)?;
        Some(p.swap_remove(i).1)
    })?;
    loading.wait().flatten()
}

/// Load the plugin's precompiled artifact (unless `loaded` already, by the exec's main thread,
/// or ahead on a helper); when it is missing or stale, compile it with the compiler installed
/// beside us and try once more.
/// Returns the artifact and the module's sha256.
/// Also the plugin made ready ahead, if it was (see [`prefetch_ipam`]).
fn load(
    engine: &Engine,
    plugin: &Plugin,
    logger: &Logger,
    loaded: Option<Loaded>,
) -> Result<(Artifact, String, Ahead), CniError> {
    let unavailable = |msg: String| CniError::new(sandbox::codes::MODULE_UNAVAILABLE, msg, "");
    let path = artifact::artifact_path(&plugin.module);
    let fetched = loaded
        .map(|loaded| Fetched {
            loaded,
            ready: None,
        })
        .or_else(|| prefetched(&plugin.module));
    let (loaded, ready) = match fetched {
        Some(Fetched { loaded, ready }) => (loaded, ready),
        None => (artifact::load(engine, &path, &plugin.module), None),
    };
    let stale = match loaded {
        Ok((artifact, digest)) => return Ok((artifact, digest, ready)),
        Err(stale) => stale,
    };
    // A load that succeeded has read the module's metadata (its identity vouches for the
    // artifact); one that failed may have failed for want of the module itself.
    std::fs::metadata(&plugin.module).map_err(|e| {
        unavailable(format!(
            "cannot read plugin module {}: {e}",
            plugin.module.display()
        ))
    })?;
    logger.log(
        Level::Warn,
        "recompiling artifact",
        &[
            ("artifact", path.display().to_string().into()),
            ("reason", stale.to_string().into()),
        ],
    );
    compile(&plugin.module).map_err(|e| {
        unavailable(format!(
            "plugin {}: {stale} at {} and it could not be rebuilt: {e}",
            plugin.name,
            path.display()
        ))
    })?;
    let (artifact, digest) = artifact::load(engine, &path, &plugin.module).map_err(|again| {
        unavailable(format!(
            "plugin {}: artifact {} unusable after recompiling: {again}",
            plugin.name,
            path.display()
        ))
    })?;
    Ok((artifact, digest, None))
}

/// Run the compiler installed beside this binary on `module`.
fn compile(module: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating {COMPILER}: {e}"))?;
    let compiler = exe.with_file_name(COMPILER);
    if !compiler.exists() {
        return Err(format!("{} is not installed", compiler.display()));
    }
    let out = std::process::Command::new(&compiler)
        .arg(module)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running {}: {e}", compiler.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lies_beside_the_link() {
        let p = Plugin::from_argv0("/opt/cni/bin/loopback", None);
        assert_eq!(p.name, "loopback");
        assert_eq!(p.module, Path::new("/opt/cni/bin/loopback.wasm"));
    }

    #[test]
    fn bare_argv0_is_found_in_cni_path() {
        let dir = std::env::temp_dir().join(format!("wasm-cni-argv0-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("frob"), b"").unwrap();
        let path = format!("/nonexistent:{}", dir.display());
        let p = Plugin::from_argv0("frob", Some(&path));
        assert_eq!(p.module, dir.join("frob.wasm"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn run_names_the_plugin_after_the_module() {
        let p = Plugin::from_module(Path::new("/tmp/x/logger.wasm"));
        assert_eq!(p.name, "logger");
    }

    #[test]
    fn missing_module_is_a_clear_error() {
        let p = Plugin::from_module(Path::new("/nonexistent/ghost.wasm"));
        let env = |k: &str| {
            Some(
                match k {
                    "CNI_COMMAND" => "ADD",
                    "CNI_CONTAINERID" => "c",
                    "CNI_NETNS" => "/var/run/netns/none",
                    "CNI_IFNAME" => "eth0",
                    "CNI_PATH" => "/opt/cni/bin",
                    _ => return None,
                }
                .to_string(),
            )
        };
        let out = exec(
            &p,
            env,
            &br#"{"cniVersion":"1.0.0","name":"n","type":"ghost"}"#[..],
        );
        assert_eq!(out.status, 1);
        let err: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(err["code"], 101);
        assert_eq!(err["cniVersion"], "1.0.0");
        assert!(
            err["msg"]
                .as_str()
                .unwrap()
                .contains("/nonexistent/ghost.wasm"),
            "{err}"
        );
    }
}
