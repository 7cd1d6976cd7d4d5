//! The host's log: one JSON object per line, so an operator can read it or ship it. stdout
//! belongs to the CNI result alone, so the log goes to stderr, or to a file.
//!
//! Where and how much: `WASM_CNI_LOG_FILE` / `WASM_CNI_LOG_LEVEL` (error, warn, info, debug),
//! else the node policy's `[log] file` / `level`, else stderr at `info`. Audit lines (one per
//! privileged operation or denial) always get written: to the policy's `[audit] file` when
//! set, else wherever the log goes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [Level::Error, Level::Warn, Level::Info, Level::Debug]
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Who is logging (the plugin and the container it works for) and where lines go.
#[derive(Clone, Debug)]
pub struct Logger {
    pub plugin: String,
    pub container_id: String,
    /// Lines above this level are dropped.
    pub level: Level,
    /// The log file; stderr when none.
    pub file: Option<PathBuf>,
    /// Where audit lines go; the log's destination when none.
    pub audit_file: Option<PathBuf>,
}

/// Append `line` to `path`; false when that failed (the caller falls back to stderr). The file
/// is opened once per process (`O_APPEND`: each line is one write at the end, whoever else
/// appends), not once per line: an exec writes a line per privileged operation.
fn append(path: &Path, line: &str) -> bool {
    static OPEN: std::sync::Mutex<Vec<(PathBuf, std::fs::File)>> =
        std::sync::Mutex::new(Vec::new());
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    let at = match open.iter().position(|(p, _)| p == path) {
        Some(at) => at,
        None => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => {
                open.push((path.to_path_buf(), f));
                open.len() - 1
            }
            Err(_) => return false,
        },
    };
    (&open[at].1).write_all(line.as_bytes()).is_ok()
}

impl Logger {
    pub fn new(plugin: &str, container_id: &str) -> Logger {
        Logger {
            plugin: plugin.to_string(),
            container_id: container_id.to_string(),
            level: Level::Info,
            file: None,
            audit_file: None,
        }
    }

    /// Apply the log settings: the environment wins over the policy's `[log]` section.
    pub fn configure(&mut self, policy_file: Option<&Path>, policy_level: Option<&str>) {
        self.file = std::env::var_os("WASM_CNI_LOG_FILE")
            .map(PathBuf::from)
            .or_else(|| policy_file.map(Path::to_path_buf));
        let level = std::env::var("WASM_CNI_LOG_LEVEL").ok();
        if let Some(l) = level.as_deref().or(policy_level).and_then(Level::parse) {
            self.level = l;
        }
    }

    fn write(&self, line: &str, file: Option<&PathBuf>) {
        // Logging must never fail a CNI operation.
        if !file.is_some_and(|f| append(f, line)) {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    /// An audit line: one privileged operation or denial (plugin, container, operation,
    /// target, outcome). Never filtered by level.
    pub fn audit(&self, op: &str, target: &str, outcome: &str) {
        let level = if outcome == "ok" {
            Level::Info
        } else {
            Level::Warn
        };
        let fields = [
            ("op", op.into()),
            ("target", target.into()),
            ("outcome", outcome.into()),
        ];
        let line = self.line(level, "audit", &fields);
        self.write(&line, self.audit_file.as_ref().or(self.file.as_ref()));
    }

    /// One line: the message plus extra fields (`source` says whether the guest or the host wrote it).
    pub fn log(&self, level: Level, msg: &str, fields: &[(&str, Value)]) {
        if level > self.level {
            return;
        }
        let line = self.line(level, msg, fields);
        self.write(&line, self.file.as_ref());
    }

    /// Written out directly rather than built as a `serde_json::Map` first: an exec writes a
    /// line per privileged operation, and the map (ordered, each key and value allocated) was
    /// ~7 µs of each.
    fn line(&self, level: Level, msg: &str, fields: &[(&str, Value)]) -> String {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(192);
        let mut put = |key: &str, value: &dyn erased::Json| {
            out.push(if out.is_empty() { b'{' } else { b',' });
            erased::write(&mut out, &key);
            out.push(b':');
            value.write_to(&mut out);
        };
        put("ts", &((ts * 1000.0).round() / 1000.0));
        put("level", &level.as_str());
        put("plugin", &self.plugin.as_str());
        if !self.container_id.is_empty() {
            put("container", &self.container_id.as_str());
        }
        put("msg", &msg);
        for (k, v) in fields {
            put(k, v);
        }
        out.extend_from_slice(b"}\n");
        // serde_json writes valid UTF-8 only.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// JSON values of different types through one writer.
mod erased {
    use serde::Serialize;

    pub trait Json {
        fn write_to(&self, out: &mut Vec<u8>);
    }

    impl<T: Serialize> Json for T {
        fn write_to(&self, out: &mut Vec<u8>) {
            write(out, self);
        }
    }

    pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
        // Writing a string, a number or a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// Where an exec spends its time: with `WASM_CNI_TRACE=1` the host marks each phase and the
/// invocation line carries `phases_us` (microseconds per phase, in order). Off, a mark costs
/// one thread-local check.
pub mod trace {
    use std::cell::{Cell, RefCell};
    use std::time::Instant;

    use serde_json::{Map, Value};

    /// (nesting level, phase, when it ended)
    type Mark = (u8, &'static str, Instant);

    thread_local! {
        static MARKS: RefCell<Option<Vec<Mark>>> = const { RefCell::new(None) };
        static DEPTH: Cell<u8> = const { Cell::new(0) };
        /// Phases a helper thread traced for this one, by prefix (see [`adopt`]).
        static ADOPTED: RefCell<Vec<(&'static str, Map<String, Value>)>> =
            const { RefCell::new(Vec::new()) };
    }

    /// Start tracing this thread if `WASM_CNI_TRACE` is set.
    pub fn start() {
        if std::env::var_os("WASM_CNI_TRACE").is_some() {
            start_at(Some(Instant::now()));
        }
    }

    /// When this thread's trace started; none when it is not traced.
    pub fn since() -> Option<Instant> {
        MARKS.with(|m| m.borrow().as_ref().and_then(|v| v.first().map(|f| f.2)))
    }

    /// Trace this thread, a helper of a traced one, from `since` (that thread's [`since`]: the
    /// helper's first phase then includes its own start). Nothing when `since` is none.
    pub fn start_at(since: Option<Instant>) {
        if let Some(at) = since {
            MARKS.with(|m| *m.borrow_mut() = Some(vec![(0, "start", at)]));
        }
    }

    /// Stop tracing this thread: a helper that reported its phases and may take other work
    /// (`parallel::task`) marks nothing more.
    pub fn stop() {
        MARKS.with(|m| *m.borrow_mut() = None);
    }

    /// Report a helper's [`phases`] with this thread's, each named `<prefix>.<phase>`.
    pub fn adopt(prefix: &'static str, phases: Option<Value>) {
        if let Some(Value::Object(map)) = phases {
            ADOPTED.with(|a| a.borrow_mut().push((prefix, map)));
        }
    }

    /// The phase `name` ended now.
    pub fn mark(name: &'static str) {
        MARKS.with(|m| {
            if let Some(v) = m.borrow_mut().as_mut() {
                let level = DEPTH.with(|d| d.get()).saturating_sub(1);
                v.push((level, name, Instant::now()));
            }
        });
    }

    /// Marks one plugin run (the exec's own, or a wasm IPAM plugin run in-process for it) until
    /// the guard drops. A nested run first ends the outer guest's phase `guest` (its work until
    /// it delegated), and its own phases are reported as `ipam.<phase>`, so they neither
    /// overwrite the outer run's phases nor hide the outer guest's time in them.
    pub fn enter() -> Run {
        if DEPTH.with(|d| d.get()) > 0 {
            mark("guest");
        }
        DEPTH.with(|d| d.set(d.get().saturating_add(1)));
        Run(())
    }

    /// See [`enter`].
    pub struct Run(());

    impl Drop for Run {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }

    /// The phases so far, each with its duration in microseconds. A phase that recurs (a
    /// second IPAM call, e.g. a rollback) gets `#2`, `#3`, … instead of replacing the first.
    pub fn phases() -> Option<Value> {
        MARKS.with(|m| {
            let marks = m.borrow();
            let marks = marks.as_ref()?;
            let mut out = Map::new();
            for w in marks.windows(2) {
                let (level, name, end) = w[1];
                let us = end.duration_since(w[0].2).as_micros() as u64;
                let base = match level {
                    0 => name.to_string(),
                    _ => format!("{}{name}", "ipam.".repeat(level as usize)),
                };
                let mut key = base.clone();
                let mut n = 1;
                while out.contains_key(&key) {
                    n += 1;
                    key = format!("{base}#{n}");
                }
                out.insert(key, Value::from(us));
            }
            ADOPTED.with(|a| {
                for (prefix, phases) in a.borrow().iter() {
                    for (name, us) in phases {
                        out.insert(format!("{prefix}.{name}"), us.clone());
                    }
                }
            });
            Some(Value::Object(out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_filter_and_files_receive_lines() {
        let dir = std::env::temp_dir().join(format!("wasm-cni-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (log, audit) = (dir.join("log"), dir.join("audit"));
        let mut l = Logger::new("p", "c");
        l.level = Level::Warn;
        l.file = Some(log.clone());
        l.log(Level::Info, "dropped", &[]);
        l.log(Level::Error, "kept", &[("verb", "ADD".into())]);
        l.audit("link-set-up", "eth0", "ok");
        l.audit_file = Some(audit.clone());
        l.audit("host-netns", "", "denied");
        let log_text = std::fs::read_to_string(&log).unwrap();
        let audit_text = std::fs::read_to_string(&audit).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!log_text.contains("dropped"));
        let lines: Vec<Value> = log_text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{log_text}");
        assert_eq!(lines[0]["msg"], "kept");
        assert_eq!(lines[0]["verb"], "ADD");
        assert_eq!(lines[0]["plugin"], "p");
        assert_eq!(
            lines[1]["op"], "link-set-up",
            "audit lines are never filtered"
        );
        assert!(audit_text.contains(r#""outcome":"denied""#));
        assert_eq!(Level::parse("WARN"), Some(Level::Warn));
        assert_eq!(Level::parse("loud"), None);
    }

    #[test]
    fn a_line_is_one_json_object_in_a_fixed_key_order() {
        let l = Logger::new("br\"idge", "c\n1");
        let line = l.line(
            Level::Warn,
            "msg with \"quotes\"",
            &[("n", 3.into()), ("v", serde_json::json!({"a": [1, "x"]}))],
        );
        assert!(
            line.ends_with("}\n") && line.matches('\n').count() == 1,
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["ts", "level", "plugin", "container", "msg", "n", "v"]
        );
        assert_eq!(v["plugin"], "br\"idge");
        assert_eq!(v["container"], "c\n1");
        assert_eq!(v["msg"], "msg with \"quotes\"");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["v"]["a"][1], "x");
        assert!(v["ts"].as_f64().unwrap() > 1.6e9);
        let anonymous = Logger::new("p", "").line(Level::Info, "m", &[]);
        let v: Value = serde_json::from_str(&anonymous).unwrap();
        assert!(v.get("container").is_none(), "{anonymous}");
    }
}
