//! Logging into the host's log (one structured line per message, tagged with the plugin).

use crate::__private::bindings::wasm_cni::plugin::log::{log, Level};

pub fn error(message: &str) {
    log(Level::Error, message)
}

pub fn warn(message: &str) {
    log(Level::Warn, message)
}

pub fn info(message: &str) {
    log(Level::Info, message)
}

pub fn debug(message: &str) {
    log(Level::Debug, message)
}
