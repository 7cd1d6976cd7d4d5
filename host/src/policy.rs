//! What a guest may do and the limits it runs under.
//!
//! The host enforces every grant at the call, never the SDK: a guest only holds handles the
//! host gave it, and asking for more (the host's netns) goes through [`Grants`].

use std::time::Duration;

/// Capabilities granted to one plugin run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// May obtain a handle to the host's network namespace.
    pub host_netns: bool,
}

/// Resource limits for one guest run. A guest that exceeds one is stopped and the exec
/// ends with a CNI error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time the guest's own code may run (host calls are bounded separately).
    pub timeout: Duration,
    /// Linear memory a guest may grow to, in bytes.
    pub memory_bytes: usize,
    /// Bytes a plain WASI guest may write to stdout, and to stderr.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            memory_bytes: 64 << 20,
            output_bytes: 1 << 20,
        }
    }
}
