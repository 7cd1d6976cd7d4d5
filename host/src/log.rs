//! The host's log: one JSON object per line on stderr, so an operator can read it or ship it.
//! stdout belongs to the CNI result alone.

use std::io::Write;
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
}

impl Logger {
    pub fn new(plugin: &str, container_id: &str) -> Logger {
        Logger {
            plugin: plugin.to_string(),
            container_id: container_id.to_string(),
        }
    }

    /// One line: the message plus extra fields (`source` says whether the guest or the host wrote it).
    pub fn log(&self, level: Level, msg: &str, fields: &[(&str, Value)]) {
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
        // Logging must never fail a CNI operation.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}
