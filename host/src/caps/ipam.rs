//! The `ipam` interface: delegating address management to the plugin named by `ipam.type`,
//! as the CNI spec describes. A wasm-cni plugin (a link to `wasm-cni` with its `.wasm` beside
//! it in CNI_PATH) runs in-process, in its own sandbox with its own grants; any other
//! executable is exec'd with the invocation's environment, the config on stdin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;

use cni_types::{codes, CniError, CniResult, NetConf};

use super::Caps;
use crate::cni::Command;
use crate::log::Logger;
use crate::plugin::{self, Answer, Plugin};
use crate::policy::Capability;
use crate::sandbox::bindings::wasm_cni::plugin::ipam::{self, Verb};
use crate::sandbox::bindings::wasm_cni::plugin::types as wit;
use crate::sandbox::component::to_wit;

/// Where the IPAM plugin of this type lives: the first CNI_PATH directory that has it.
fn find_plugin(cni_path: &str, plugin_type: &str) -> Option<PathBuf> {
    cni_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(plugin_type))
        .find(|p| p.exists())
}

/// The link of a wasm-cni IPAM plugin of this type in CNI_PATH, if that is what it is.
pub fn find_wasm_plugin(cni_path: &str, plugin_type: &str) -> Option<PathBuf> {
    if plugin_type.is_empty() || plugin_type.contains('/') || plugin_type.starts_with('.') {
        return None;
    }
    find_plugin(cni_path, plugin_type).filter(|p| is_wasm_cni_link(p))
}

/// A wasm-cni plugin: wasm-cni under the type's name (see [`plugin::is_wasm_cni`]) with
/// `<type>.wasm` beside it.
fn is_wasm_cni_link(path: &Path) -> bool {
    let module = path.with_file_name(format!(
        "{}.wasm",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    plugin::is_wasm_cni(path) && module.exists()
}

fn wit_error(e: CniError) -> wit::CniError {
    wit::CniError {
        code: e.code,
        msg: e.msg,
        details: e.details,
    }
}

impl Caps {
    fn delegate_to(
        &self,
        plugin_type: &str,
        verb: Verb,
        config: String,
    ) -> Result<Option<CniResult>, CniError> {
        let denied = |m: String| CniError::new(crate::sandbox::codes::DENIED, m, "");
        self.require(Capability::Ipam, "ipam-delegate")
            .map_err(denied)?;
        if plugin_type.is_empty() || plugin_type.contains('/') || plugin_type.starts_with('.') {
            return Err(CniError::new(
                codes::INVALID_NETWORK_CONFIG,
                format!("invalid IPAM type {plugin_type:?}"),
                "",
            ));
        }
        let command = match verb {
            Verb::Add => Command::Add,
            Verb::Del => Command::Del,
            Verb::Check => Command::Check,
        };
        if !self.grants.may_delegate(plugin_type) {
            self.audit("ipam-delegate", plugin_type, "denied");
            return Err(denied(format!(
                "plugin {:?} may not delegate to IPAM type {plugin_type:?}: the node policy allows {:?}",
                self.logger.plugin, self.grants.ipam_types
            )));
        }
        let path = find_plugin(&self.req.path, plugin_type).ok_or_else(|| {
            CniError::new(
                codes::INTERNAL,
                format!(
                    "failed to find plugin {plugin_type:?} in path [{}]",
                    self.req.path
                ),
                "",
            )
        })?;
        let conf = NetConf::parse(config.as_bytes())?;
        let target = format!("{plugin_type} {}", command.as_str());
        let result = if is_wasm_cni_link(&path) {
            let mut req = (*self.req).clone();
            req.command = command;
            req.config_bytes = config.into_bytes();
            req.version = conf.version().to_string();
            req.config = conf;
            let plugin = Plugin::from_argv0(&path.to_string_lossy(), None);
            let logger = Logger::new(&plugin.name, &req.container_id);
            let logger = Logger {
                plugin: logger.plugin,
                container_id: logger.container_id,
                ..self.logger.clone()
            };
            let answer = plugin::run_request(
                &self.engine,
                &plugin,
                Arc::new(req.clone()),
                self.policy.as_ref(),
                &logger,
            );
            match self.audited("ipam-delegate", &target, answer)? {
                Answer::Typed(r) => Some(r),
                Answer::Text(text) => Some(parse_result(&text, req.version.as_str())?),
                Answer::Nothing => None,
            }
        } else {
            if !self.grants.native_exec {
                self.audit("ipam-exec", &path.display().to_string(), "denied");
                return Err(denied(format!(
                    "plugin {:?} may not exec the native IPAM plugin {}: set native-exec = true for it in the node policy",
                    self.logger.plugin,
                    path.display()
                )));
            }
            let out = self.exec_native(&path, command, &config);
            let what = format!("{} {}", path.display(), command.as_str());
            let out = self.audited("ipam-exec", &what, out)?;
            match command {
                Command::Add => Some(parse_result(&out, conf.version())?),
                _ => None,
            }
        };
        Ok(result)
    }

    /// Exec a native IPAM plugin as the spec says: the invocation's environment with this
    /// verb, the config on stdin; its stdout is the result or a CNI error.
    fn exec_native(&self, path: &Path, command: Command, config: &str) -> Result<String, CniError> {
        let req = &self.req;
        let mut child = Process::new(path)
            .env_clear()
            .env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &req.container_id)
            .env("CNI_NETNS", &req.netns)
            .env("CNI_IFNAME", &req.ifname)
            .env("CNI_ARGS", &req.cni_args)
            .env("CNI_PATH", &req.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                CniError::new(
                    codes::INTERNAL,
                    format!("failed to exec {}: {e}", path.display()),
                    "",
                )
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(config.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| {
            CniError::new(
                codes::INTERNAL,
                format!("waiting for {}: {e}", path.display()),
                "",
            )
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() {
            return Ok(stdout);
        }
        Err(
            serde_json::from_str::<CniError>(&stdout).unwrap_or_else(|_| {
                CniError::new(
                    codes::INTERNAL,
                    format!(
                        "netplugin failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                    stdout,
                )
            }),
        )
    }
}

fn parse_result(text: &str, version: &str) -> Result<CniResult, CniError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        CniError::new(
            codes::DECODING_FAILURE,
            format!("failed to decode the IPAM result: {e}"),
            text.to_string(),
        )
    })?;
    CniResult::from_json(&value, version)
}

impl ipam::Host for Caps {
    fn delegate(
        &mut self,
        plugin_type: String,
        verb: Verb,
        config: String,
    ) -> Result<Option<wit::CniResult>, wit::CniError> {
        self.delegate_to(&plugin_type, verb, config)
            .map(|r| r.as_ref().map(to_wit))
            .map_err(wit_error)
    }
}
