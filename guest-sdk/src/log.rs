//! Logging into the host's log (one structured line per message, tagged with the plugin).

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::wasm_cni::plugin::log::log;
use crate::__private::bindings::wasm_cni::plugin::log::Level;
#[cfg(not(target_arch = "wasm32"))]
use crate::fake::backend::log;

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
