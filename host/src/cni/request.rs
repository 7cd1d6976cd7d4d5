//! Reading a CNI request from the environment and stdin, with Go skel's order of checks and
//! its messages, so a runtime sees the same errors from us as from the reference plugins.

use std::io::Read;

use cni_types::{codes, validate, version, CniError, NetConf, Version};

/// Largest network configuration accepted on stdin. Real configurations (with a prevResult)
/// are a few KiB; anything past this is refused before it is parsed.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

/// The CNI verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// The lowest cniVersion a config must declare for this verb.
    fn min_version(self) -> Option<&'static str> {
        match self {
            Command::Check => Some("0.4.0"),
            Command::Status | Command::Gc => Some("1.1.0"),
            _ => None,
        }
    }
}

/// A validated request for a verb that needs a plugin.
#[derive(Clone, Debug)]
pub struct Request {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    /// CNI_ARGS as given (passed on unchanged to delegated plugins).
    pub cni_args: String,
    pub path: String,
    /// The config exactly as received.
    pub config_bytes: Vec<u8>,
    pub config: NetConf,
    /// The config's cniVersion ("0.1.0" when absent): results and errors are printed in it.
    pub version: String,
}

/// What the environment asks for.
#[derive(Debug)]
pub enum Parsed {
    /// CNI_COMMAND is unset: print the about text, exit 0.
    About,
    /// VERSION: answered by the host alone.
    Version,
    Request(Box<Request>),
}

/// The environment variables, in the order Go's skel reads them, and the verbs each is
/// required for.
const VARS: &[(&str, &[&str])] = &[
    ("CNI_COMMAND", &[]),
    ("CNI_CONTAINERID", &["ADD", "CHECK", "DEL"]),
    ("CNI_NETNS", &["ADD", "CHECK"]),
    ("CNI_IFNAME", &["ADD", "CHECK", "DEL"]),
    ("CNI_ARGS", &[]),
    ("CNI_PATH", &["ADD", "CHECK", "DEL", "GC", "STATUS"]),
];

/// Read and validate a request. `env` returns a variable's value (None when unset).
pub fn parse(
    env: impl Fn(&str) -> Option<String>,
    stdin: &mut impl Read,
) -> Result<Parsed, CniError> {
    let get = |name: &str| env(name).unwrap_or_default();
    let cmd = get("CNI_COMMAND");
    let missing: Vec<&str> = VARS
        .iter()
        .filter(|(name, required_for)| {
            get(name).is_empty() && (*name == "CNI_COMMAND" || required_for.contains(&cmd.as_str()))
        })
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        if cmd.is_empty() {
            return Ok(Parsed::About);
        }
        return Err(CniError::new(
            codes::INVALID_ENVIRONMENT,
            format!("required env variables [{}] missing", missing.join(",")),
            "",
        ));
    }
    if cmd == "VERSION" {
        return Ok(Parsed::Version);
    }

    let config_bytes = read_config(stdin)?;
    let config = NetConf::parse(&config_bytes)?;
    if config.name.is_empty() {
        return Err(CniError::new(
            codes::INVALID_NETWORK_CONFIG,
            "missing network name",
            "",
        ));
    }
    validate::validate_network_name(&config.name)?;

    let container_id = get("CNI_CONTAINERID");
    let ifname = get("CNI_IFNAME");
    if !matches!(cmd.as_str(), "GC" | "STATUS") {
        validate::validate_container_id(&container_id)?;
        validate::validate_interface_name(&ifname)?;
    }
    let command = Command::parse(&cmd).ok_or_else(|| {
        CniError::new(
            codes::INVALID_ENVIRONMENT,
            format!("unknown CNI_COMMAND: {cmd}"),
            "",
        )
    })?;

    let version = config.version().to_string();
    check_version(command, &version)?;

    Ok(Parsed::Request(Box::new(Request {
        command,
        container_id,
        netns: get("CNI_NETNS"),
        ifname,
        args: cni_types::args::parse_cni_args(&get("CNI_ARGS"))?,
        cni_args: get("CNI_ARGS"),
        path: get("CNI_PATH"),
        config_bytes,
        config,
        version,
    })))
}

fn read_config(stdin: &mut impl Read) -> Result<Vec<u8>, CniError> {
    let mut bytes = Vec::new();
    stdin
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            CniError::new(
                codes::IO_FAILURE,
                format!("error reading from stdin: {e}"),
                "",
            )
        })?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(CniError::new(
            codes::INVALID_NETWORK_CONFIG,
            format!("network config on stdin is larger than {MAX_CONFIG_BYTES} bytes"),
            "",
        ));
    }
    Ok(bytes)
}

/// The spec's version rules: a supported version, and a new enough one for CHECK, GC, STATUS.
fn check_version(command: Command, config_version: &str) -> Result<(), CniError> {
    let parsed = Version::parse(config_version)?;
    if let Some(min) = command.min_version() {
        if parsed < Version::parse(min)? {
            return Err(CniError::new(
                codes::INCOMPATIBLE_VERSION,
                format!("config version does not allow {}", command.as_str()),
                "",
            ));
        }
    }
    if !version::is_supported(config_version) {
        return Err(version::incompatible_error(config_version));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"net1","type":"loopback"}"#;

    fn run(vars: &[(&str, &str)], stdin: &str) -> Result<Parsed, CniError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(|k| map.get(k).cloned(), &mut stdin.as_bytes())
    }

    fn add_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
    }

    fn with(
        mut env: Vec<(&'static str, &'static str)>,
        k: &'static str,
        v: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
        env
    }

    fn err(r: Result<Parsed, CniError>) -> CniError {
        match r {
            Err(e) => e,
            Ok(p) => panic!("expected an error, got {p:?}"),
        }
    }

    fn request(r: Result<Parsed, CniError>) -> Request {
        match r {
            Ok(Parsed::Request(req)) => *req,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn unset_command_prints_about() {
        assert!(matches!(run(&[], ""), Ok(Parsed::About)));
        // Even with other variables set.
        assert!(matches!(run(&[("CNI_PATH", "/x")], ""), Ok(Parsed::About)));
    }

    #[test]
    fn version_needs_nothing_and_ignores_stdin() {
        assert!(matches!(
            run(&[("CNI_COMMAND", "VERSION")], "not json"),
            Ok(Parsed::Version)
        ));
    }

    #[test]
    fn missing_variables_are_reported_together_in_order() {
        let e = err(run(
            &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c")],
            CONF,
        ));
        assert_eq!(e.code, 4);
        assert_eq!(
            e.msg,
            "required env variables [CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
        );
        let e = err(run(&[("CNI_COMMAND", "DEL")], CONF));
        assert_eq!(
            e.msg,
            "required env variables [CNI_CONTAINERID,CNI_IFNAME,CNI_PATH] missing"
        );
        let e = err(run(&[("CNI_COMMAND", "GC")], CONF));
        assert_eq!(e.msg, "required env variables [CNI_PATH] missing");
    }

    #[test]
    fn empty_counts_as_missing() {
        let e = err(run(&with(add_env(), "CNI_NETNS", ""), CONF));
        assert_eq!(e.msg, "required env variables [CNI_NETNS] missing");
    }

    #[test]
    fn del_does_not_need_a_netns() {
        let env = with(with(add_env(), "CNI_COMMAND", "DEL"), "CNI_NETNS", "");
        let req = request(run(&env, CONF));
        assert_eq!(req.command, Command::Del);
        assert_eq!(req.netns, "");
    }

    #[test]
    fn malformed_json_is_a_decoding_error() {
        let e = err(run(&add_env(), "{not json"));
        assert_eq!(e.code, 6);
        assert!(
            e.msg.starts_with("error unmarshall network config: "),
            "{}",
            e.msg
        );
    }

    #[test]
    fn missing_or_invalid_network_name() {
        let e = err(run(&add_env(), r#"{"cniVersion":"1.0.0","type":"x"}"#));
        assert_eq!((e.code, e.msg.as_str()), (7, "missing network name"));
        let e = err(run(
            &add_env(),
            r#"{"cniVersion":"1.0.0","name":"a b","type":"x"}"#,
        ));
        assert_eq!(
            (e.code, e.msg.as_str()),
            (7, "invalid characters found in network name")
        );
    }

    #[test]
    fn container_id_and_ifname_are_validated() {
        let e = err(run(&with(add_env(), "CNI_CONTAINERID", "-bad"), CONF));
        assert_eq!(
            (e.code, e.msg.as_str()),
            (4, "invalid characters in containerID")
        );
        let e = err(run(
            &with(add_env(), "CNI_IFNAME", "0123456789abcdef"),
            CONF,
        ));
        assert_eq!((e.code, e.msg.as_str()), (4, "interface name is too long"));
        for bad in ["a/b", "a:b", "a b", ".", ".."] {
            let env = with(
                add_env(),
                "CNI_IFNAME",
                Box::leak(bad.to_string().into_boxed_str()),
            );
            assert_eq!(err(run(&env, CONF)).code, 4, "{bad}");
        }
    }

    #[test]
    fn unknown_command() {
        let e = err(run(&with(add_env(), "CNI_COMMAND", "FROB"), CONF));
        assert_eq!((e.code, e.msg.as_str()), (4, "unknown CNI_COMMAND: FROB"));
    }

    #[test]
    fn absent_version_means_0_1_0() {
        let req = request(run(&add_env(), r#"{"name":"n","type":"x"}"#));
        assert_eq!(req.version, "0.1.0");
    }

    #[test]
    fn unsupported_version() {
        let e = err(run(
            &add_env(),
            r#"{"cniVersion":"9.9.9","name":"n","type":"x"}"#,
        ));
        assert_eq!((e.code, e.msg.as_str()), (1, "incompatible CNI versions"));
        assert!(e.details.contains("9.9.9"), "{}", e.details);
    }

    #[test]
    fn check_needs_0_4_0_and_gc_status_need_1_1_0() {
        let conf = r#"{"cniVersion":"0.3.1","name":"n","type":"x"}"#;
        let e = err(run(&with(add_env(), "CNI_COMMAND", "CHECK"), conf));
        assert_eq!(
            (e.code, e.msg.as_str()),
            (1, "config version does not allow CHECK")
        );
        let gc = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")];
        let e = err(run(&gc, CONF));
        assert_eq!(
            (e.code, e.msg.as_str()),
            (1, "config version does not allow GC")
        );
        let status = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")];
        let e = err(run(&status, CONF));
        assert_eq!(
            (e.code, e.msg.as_str()),
            (1, "config version does not allow STATUS")
        );
        let conf11 = r#"{"cniVersion":"1.1.0","name":"n","type":"x"}"#;
        assert_eq!(request(run(&gc, conf11)).command, Command::Gc);
        assert_eq!(request(run(&status, conf11)).command, Command::Status);
    }

    #[test]
    fn cni_args_are_parsed_in_order() {
        let env = with(
            add_env(),
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.5",
        );
        let req = request(run(&env, CONF));
        assert_eq!(req.args[1], ("K8S_POD_NAME".to_string(), "web".to_string()));
        assert_eq!(req.args.len(), 3);
    }

    #[test]
    fn oversized_stdin_is_refused_without_reading_it_all() {
        let big = vec![b' '; 8 << 20];
        let map: HashMap<String, String> = add_env()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut reader = &big[..];
        let e = err(parse(|k| map.get(k).cloned(), &mut reader));
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("larger than"), "{}", e.msg);
        // Only the limit (plus one byte) was consumed.
        assert_eq!(reader.len(), big.len() - MAX_CONFIG_BYTES - 1);
    }

    #[test]
    fn request_keeps_the_config_bytes_and_version() {
        let req = request(run(&add_env(), CONF));
        assert_eq!(req.config_bytes, CONF.as_bytes());
        assert_eq!(req.version, "1.0.0");
        assert_eq!(req.config.name, "net1");
    }
}
