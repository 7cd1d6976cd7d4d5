//! The host's log: one JSON object per line on stderr, so an operator can read it or ship it.
//! stdout belongs to the CNI result alone.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

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
}

/// Who is logging: the plugin and the container it works for.
#[derive(Clone, Debug, Default)]
pub struct Logger {
    pub plugin: String,
    pub container_id: String,
    /// Where audit lines go besides stderr (the policy's `[audit] file`).
    pub audit_file: Option<PathBuf>,
}

impl Logger {
    pub fn new(plugin: &str, container_id: &str) -> Logger {
        Logger {
            plugin: plugin.to_string(),
            container_id: container_id.to_string(),
            audit_file: None,
        }
    }

    /// An audit line: one privileged operation or denial (plugin, container, operation,
    /// target, outcome). Goes to the audit file when one is configured, else to stderr.
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
        let written = self.audit_file.as_ref().is_some_and(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .is_ok()
        });
        if !written {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    /// One line: the message plus extra fields (`source` says whether the guest or the host wrote it).
    pub fn log(&self, level: Level, msg: &str, fields: &[(&str, Value)]) {
        let text = self.line(level, msg, fields);
        // Logging must never fail a CNI operation.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    fn line(&self, level: Level, msg: &str, fields: &[(&str, Value)]) -> String {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let mut line = Map::new();
        line.insert("ts".into(), json!((ts * 1000.0).round() / 1000.0));
        line.insert("level".into(), json!(level.as_str()));
        line.insert("plugin".into(), json!(self.plugin));
        if !self.container_id.is_empty() {
            line.insert("container".into(), json!(self.container_id));
        }
        line.insert("msg".into(), json!(msg));
        for (k, v) in fields {
            line.insert((*k).into(), v.clone());
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        text
    }
}

/// Where an exec spends its time: with `WASM_CNI_TRACE=1` the host marks each phase and the
/// invocation line carries `phases_us` (microseconds per phase, in order). Off, a mark costs
/// one thread-local check.
pub mod trace {
    use std::cell::RefCell;
    use std::time::Instant;

    use serde_json::{Map, Value};

    thread_local! {
        static MARKS: RefCell<Option<Vec<(&'static str, Instant)>>> = const { RefCell::new(None) };
    }

    /// Start tracing this thread if `WASM_CNI_TRACE` is set.
    pub fn start() {
        if std::env::var_os("WASM_CNI_TRACE").is_some() {
            MARKS.with(|m| *m.borrow_mut() = Some(vec![("start", Instant::now())]));
        }
    }

    /// The phase `name` ended now.
    pub fn mark(name: &'static str) {
        MARKS.with(|m| {
            if let Some(v) = m.borrow_mut().as_mut() {
                v.push((name, Instant::now()));
            }
        });
    }

    /// The phases so far, each with its duration in microseconds.
    pub fn phases() -> Option<Value> {
        MARKS.with(|m| {
            let marks = m.borrow();
            let marks = marks.as_ref()?;
            let mut out = Map::new();
            for w in marks.windows(2) {
                let us = w[1].1.duration_since(w[0].1).as_micros() as u64;
                out.insert(w[1].0.to_string(), Value::from(us));
            }
            Some(Value::Object(out))
        })
    }
}
