//! The CNI protocol (containernetworking/cni SPEC.md 1.1): versions, error codes, the
//! network configuration kuryr reads, `CNI_ARGS`, and results. Pure data: nothing here
//! touches a socket, Neutron or the kernel.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The versions kuryr-cni answers VERSION with and accepts in a config.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// What a result is written as when the config names no version.
pub const DEFAULT_VERSION: &str = "1.1.0";
/// The daemon's CNI socket when the config names none.
pub const DEFAULT_SOCKET: &str = "/run/kuryr/cni.sock";

/// The spec's well-known error codes (100 and up are kuryr's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgain = 11,
    NotAvailable = 50,
    NotAvailableLimited = 51,
    /// Neutron refused or failed a request.
    Neutron = 100,
    /// The host plumbing (netlink, binding) failed.
    Host = 101,
}

/// A CNI error as the spec writes it: `{cniVersion, code, msg, details}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        CniError {
            code: code as u32,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The JSON the plugin prints on stdout.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

/// The network configuration (one plugin of a conflist, with `name` and `cniVersion`
/// copied in by the runtime). Unknown keys are ignored, as the spec asks of plugins.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub plugin_type: String,
    /// The Neutron network: its name or id.
    #[serde(default)]
    pub network: String,
    /// A subnet of it (name or id) to take addresses from; else every subnet (one per
    /// family).
    #[serde(default)]
    pub subnet: String,
    /// A CIDR: the network (by name) and a subnet of it are made when missing, as a
    /// Docker network's `--subnet` is.
    #[serde(default)]
    pub cidr: Option<String>,
    /// A subnetpool (name or id) to take the subnet from when the network has none of it.
    #[serde(default)]
    pub subnetpool: String,
    /// Security groups (names or ids) of the ports; else Neutron's default group.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// A QoS policy (name or id) of the ports; else the Neutron network's, if any.
    #[serde(default)]
    pub qos_policy: Option<String>,
    /// An external network (name or id) each attachment gets a floating IP from; else
    /// the one a Docker network on the same Neutron network asked for, if any.
    #[serde(default)]
    pub floating_network: Option<String>,
    /// MTU of the container interface; else the Neutron network's.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The kuryr daemon's CNI socket.
    #[serde(default)]
    pub socket: Option<String>,
    #[serde(default)]
    pub prev_result: Option<Value>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// GC: the attachments still in use.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// Capabilities a runtime may pass (`mac`, `ips`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

impl NetConf {
    /// Parses and checks a configuration from stdin.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let conf: NetConf = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(Code::Decode, "network configuration is not valid JSON")
                .with_details(e.to_string())
        })?;
        if !conf.cni_version.is_empty() && !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str())
        {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "cniVersion {} is not supported (supported: {})",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        if !valid_container_id(&conf.name) {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "network name {:?} is empty or not alphanumerics, '_', '.' and '-'",
                    conf.name
                ),
            ));
        }
        Ok(conf)
    }

    /// The version results are written in.
    pub fn version(&self) -> &str {
        if self.cni_version.is_empty() {
            DEFAULT_VERSION
        } else {
            &self.cni_version
        }
    }

    /// Checks what ADD and CHECK need beyond `parse`.
    pub fn require_network(&self) -> Result<(), CniError> {
        if self.network.trim().is_empty() {
            return Err(CniError::new(
                Code::InvalidConfig,
                "network configuration needs \"network\": the name or id of a Neutron network",
            ));
        }
        if let Some(c) = &self.cidr {
            if c.parse::<ipnet::IpNet>().is_err() {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    format!("cidr {c:?} is not a CIDR"),
                ));
            }
        }
        if let Some(m) = self.mtu {
            if !(68..=65535).contains(&m) {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    format!("mtu {m} is out of range (68 to 65535)"),
                ));
            }
        }
        Ok(())
    }
}

/// What a runtime asked for one container beyond the config: `CNI_ARGS` (`IP=`, `MAC=`)
/// and the `ips`/`mac` capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    pub ips: Vec<IpAddr>,
    pub mac: Option<String>,
    /// The Kubernetes pod (`namespace/name`) a CRI runtime names in `K8S_POD_NAMESPACE`
    /// and `K8S_POD_NAME`.
    pub pod: Option<String>,
}

/// Parses `CNI_ARGS` (`K=V;K=V`). Unknown keys are an error unless `IgnoreUnknown=1`
/// (or true) is among them, as the reference plugins do; `IP` and `MAC` are known.
pub fn parse_args(args: &str, rc: &RuntimeConfig) -> Result<Wanted, CniError> {
    let mut w = Wanted::default();
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    let (mut pod_ns, mut pod_name) = (None, None);
    for pair in args.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CniError::new(
                Code::InvalidEnv,
                format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
            ));
        };
        match k {
            "IgnoreUnknown" => ignore_unknown = matches!(v, "1" | "true" | "True"),
            "IP" => {
                for ip in v.split(',') {
                    w.ips.push(parse_ip(ip)?);
                }
            }
            "MAC" => w.mac = Some(parse_mac(v)?),
            "K8S_POD_NAMESPACE" if !v.is_empty() => pod_ns = Some(v),
            "K8S_POD_NAME" if !v.is_empty() => pod_name = Some(v),
            // CRI runtimes pass these (the sandbox id, the pod's uid) to every plugin.
            k if k.starts_with("K8S_") => {}
            k => unknown.push(k.to_string()),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(CniError::new(
            Code::InvalidEnv,
            format!(
                "CNI_ARGS: unknown keys {} (set IgnoreUnknown=1 to pass them)",
                unknown.join(", ")
            ),
        ));
    }
    if let (Some(ns), Some(name)) = (pod_ns, pod_name) {
        w.pod = Some(format!("{ns}/{name}"));
    }
    // Capabilities come after the args: a runtime that sends both means them.
    for ip in &rc.ips {
        let ip = parse_ip(ip)?;
        if !w.ips.contains(&ip) {
            w.ips.push(ip);
        }
    }
    if let Some(m) = &rc.mac {
        w.mac = Some(parse_mac(m)?);
    }
    Ok(w)
}

/// An address alone or with a prefix (`ips` capability entries carry one).
fn parse_ip(s: &str) -> Result<IpAddr, CniError> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<IpNet>().map(|n| n.addr()))
        .map_err(|_| CniError::new(Code::InvalidEnv, format!("IP {s:?} is not an IP address")))
}

/// A unicast MAC, written lower case.
fn parse_mac(s: &str) -> Result<String, CniError> {
    let parts: Vec<&str> = s.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    let first = parts
        .first()
        .and_then(|p| u8::from_str_radix(p, 16).ok())
        .unwrap_or(1);
    if !ok || first & 1 == 1 {
        return Err(CniError::new(
            Code::InvalidEnv,
            format!("MAC {s:?} is not a unicast MAC address"),
        ));
    }
    Ok(s.to_ascii_lowercase())
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
}

/// An ADD result (versions 1.x; `to_json` writes the older layouts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

impl CniResult {
    /// The result in `version`'s layout: before 1.0.0 each IP names its family.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
        v["cniVersion"] = json!(version);
        if version.starts_with("0.") {
            if let Some(ips) = v["ips"].as_array_mut() {
                for (ip, cfg) in ips.iter_mut().zip(&self.ips) {
                    ip["version"] = json!(if cfg.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    });
                }
            }
        }
        v
    }

    /// Reads a `prevResult` of any supported version.
    pub fn from_prev(v: &Value) -> Result<CniResult, CniError> {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("cniVersion");
            if let Some(ips) = o.get_mut("ips").and_then(Value::as_array_mut) {
                for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                    ip.remove("version");
                }
            }
        }
        serde_json::from_value(v).map_err(|e| {
            CniError::new(Code::Decode, "prevResult is not a CNI result")
                .with_details(e.to_string())
        })
    }
}

/// The VERSION answer.
pub fn version_info(version: &str) -> Value {
    json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS})
}

/// One command as the plugin forwards it to the daemon.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Call {
    pub command: String,
    #[serde(default)]
    pub container_id: String,
    #[serde(default)]
    pub netns: String,
    #[serde(default)]
    pub ifname: String,
    #[serde(default)]
    pub args: String,
    /// The network configuration as the runtime gave it.
    pub config: Map<String, Value>,
}

/// A CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    /// The command `CNI_COMMAND` names; the spec's error for anything else.
    pub fn parse(command: &str) -> Result<Command, CniError> {
        Ok(match command {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            "" => return Err(CniError::new(
                Code::InvalidEnv,
                "CNI_COMMAND is not set (kuryr-cni is a CNI plugin: a container runtime runs it)",
            )),
            c => {
                return Err(CniError::new(
                    Code::InvalidEnv,
                    format!("CNI_COMMAND {c:?} is not a CNI command"),
                ))
            }
        })
    }

    /// The command as the daemon's logs and per-call request counts name it.
    pub fn label(self) -> &'static str {
        match self {
            Command::Add => "CNI.ADD",
            Command::Del => "CNI.DEL",
            Command::Check => "CNI.CHECK",
            Command::Status => "CNI.STATUS",
            Command::Gc => "CNI.GC",
            Command::Version => "CNI.VERSION",
        }
    }

    /// What the command needs from the environment.
    pub fn required_env(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Status | Command::Gc | Command::Version => &[],
        }
    }
}

/// A container id as the spec allows: alphanumerics, `_`, `.`, `-`, starting with an
/// alphanumeric.
pub fn valid_container_id(id: &str) -> bool {
    let mut b = id.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        && id.len() <= 255
}

/// An interface name Linux takes: 1 to 15 bytes, no `/`, whitespace or `:`, not `.`/`..`.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_needs_a_name_and_a_known_version() {
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"2.0.0","name":"n"}"#)
                .unwrap_err()
                .code,
            Code::IncompatibleVersion as u32
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.0.0"}"#)
                .unwrap_err()
                .code,
            Code::InvalidConfig as u32
        );
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, Code::Decode as u32);
        let c = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"kuryr-cni","network":"net1","x":1,
                "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!((c.version(), c.network.as_str()), ("0.4.0", "net1"));
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "c1");
    }

    #[test]
    fn args_take_ip_and_mac_and_refuse_unknown_keys_unless_told() {
        let rc = RuntimeConfig::default();
        let w = parse_args(
            "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.0.0.5;MAC=02:AB:00:00:00:01;FOO=1",
            &rc,
        )
        .unwrap();
        assert_eq!(w.ips, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(w.mac.as_deref(), Some("02:ab:00:00:00:01"));
        assert_eq!(
            w.pod, None,
            "a pod's name without its namespace names no pod"
        );
        let w = parse_args("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web;K8S_POD_UID=1", &rc).unwrap();
        assert_eq!(w.pod.as_deref(), Some("shop/web"));
        assert_eq!(
            parse_args("FOO=1", &rc).unwrap_err().code,
            Code::InvalidEnv as u32
        );
        assert!(parse_args("IP=10.0.0.300", &rc).is_err());
        // A multicast MAC never works on a port.
        assert!(parse_args("MAC=01:00:00:00:00:01", &rc).is_err());
        assert!(parse_args("noequals", &rc).is_err());
        let rc = RuntimeConfig {
            mac: None,
            ips: vec!["10.0.0.6/24".into()],
        };
        assert_eq!(parse_args("", &rc).unwrap().ips.len(), 1);
    }

    #[test]
    fn results_before_1_0_name_the_ip_family_and_read_back() {
        let r = CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:01".into(),
                mtu: None,
                sandbox: "/run/netns/x".into(),
            }],
            ips: vec![IpConfig {
                address: "10.0.0.5/24".parse().unwrap(),
                gateway: Some("10.0.0.1".parse().unwrap()),
                interface: Some(0),
            }],
            routes: vec![],
            dns: Dns::default(),
        };
        let old = r.to_json("0.3.1");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["cniVersion"], "0.3.1");
        assert!(r.to_json("1.0.0")["ips"][0].get("version").is_none());
        assert_eq!(CniResult::from_prev(&old).unwrap(), r);
    }

    #[test]
    fn names_the_kernel_and_the_spec_refuse_are_refused() {
        assert!(valid_ifname("eth0"));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("0123456789abcdef"));
        assert!(!valid_ifname(".."));
        assert!(valid_container_id("3f2a-b_c.d"));
        assert!(!valid_container_id("-x"));
        assert!(!valid_container_id("a b"));
        assert_eq!(Command::parse("ADD").unwrap().required_env().len(), 3);
        assert_eq!(Command::parse("DEL").unwrap().required_env().len(), 2);
        assert!(Command::parse("PUT").is_err());
        assert!(Command::parse("")
            .unwrap_err()
            .msg
            .contains("CNI_COMMAND is not set"));
    }
}
