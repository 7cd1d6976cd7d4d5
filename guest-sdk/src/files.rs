//! Reading a file the operator's policy names, e.g. a `resolv.conf` for `ipam.resolvConf`.
//!
//! A plugin declares the `files` capability (`export_plugin!(P, capabilities = ["files"])`);
//! the node policy's `files` patterns then say which paths it may read — none by default. The
//! host resolves symlinks and requires the resolved path to be granted too, reads only regular
//! files of at most 1 MiB and audits every read. A denial is CNI code 100, a missing or
//! unreadable file code 5 ([`codes::IO_FAILURE`](crate::codes::IO_FAILURE)); both messages
//! name the path.

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::wasm_cni::plugin::files;
#[cfg(not(target_arch = "wasm32"))]
use crate::fake::backend as files;
use crate::CniError;

/// The whole content of the file at `path` (absolute).
pub fn read(path: &str) -> Result<Vec<u8>, CniError> {
    files::read(path).map_err(|e| CniError::new(e.code, e.msg, e.details))
}

/// The file at `path` as text; content that is not UTF-8 is a decoding failure (code 6).
pub fn read_to_string(path: &str) -> Result<String, CniError> {
    String::from_utf8(read(path)?).map_err(|e| {
        CniError::new(
            cni_types::codes::DECODING_FAILURE,
            format!("file {path:?} is not UTF-8 text: {e}"),
            "",
        )
    })
}
