//! netavark's external plugin API (`plugin-API.md`, API version 1.0.0) as Podman 5 and
//! netavark 1.14 use it: the subcommands, the network object `create` receives and
//! answers, the setup/teardown request, the status block `setup` answers and the error
//! object. Pure data: nothing here touches a socket, Neutron or the kernel.
//!
//! netavark re-serializes the stored network for `setup`, so absent fields come as
//! `null`: every optional field reads `null` as absent. Fields kuryr does not know are
//! kept and written back, because Podman stores what `create` prints.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::wire::null_default;
use serde_json::{Map, Value};

/// The plugin API version kuryr speaks (`info`).
pub const API_VERSION: &str = "1.0.0";

/// One invocation: argv[1] and, for setup and teardown, the container's netns path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create,
    Setup(String),
    Teardown(String),
    Info,
}

impl Command {
    /// The command of `args` (argv without the program), or what is wrong with them.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let netns = |verb: &str| match args.get(1) {
            Some(ns) if !ns.is_empty() => Ok(ns.clone()),
            _ => Err(format!(
                "{verb} needs the container's network namespace path"
            )),
        };
        match args.first().map(String::as_str) {
            Some("create") => Ok(Command::Create),
            Some("setup") => netns("setup").map(Command::Setup),
            Some("teardown") => netns("teardown").map(Command::Teardown),
            Some("info") => Ok(Command::Info),
            Some(other) => Err(format!(
                "unknown command {other:?} (expected create, setup, teardown or info)"
            )),
            None => Err("no command (expected create, setup, teardown or info)".into()),
        }
    }
}

/// A network's address range (`--ip-range`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ip: Option<IpAddr>,
}

/// One subnet of a network; Podman fills the gateway after `create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub subnet: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_range: Option<LeaseRange>,
}

/// A Podman network of a plugin's driver, as `create` receives and answers it and as
/// `setup` and `teardown` carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub driver: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subnets: Vec<Subnet>,
    #[serde(default, deserialize_with = "null_default")]
    pub ipv6_enabled: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub internal: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub dns_enabled: bool,
    /// `-o key=value`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub options: BTreeMap<String, String>,
    /// What kuryr does not read (`created`, `labels`, `ipam_options`, `routes`, ...),
    /// kept as it came.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// What one container asks of one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkOptions {
    #[serde(default, deserialize_with = "null_default")]
    pub aliases: Vec<String>,
    pub interface_name: String,
    /// Podman's IPAM pick (or `--ip`) on a network with subnets; what `--ip` said,
    /// unchecked, on one without.
    #[serde(default, deserialize_with = "null_default")]
    pub static_ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_mac: Option<String>,
    /// Per-network `-o` of `--network net:key=value`.
    #[serde(default, deserialize_with = "null_default")]
    pub options: BTreeMap<String, String>,
}

/// A published port (`-p`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub container_port: u16,
    #[serde(default, deserialize_with = "null_default")]
    pub host_ip: String,
    pub host_port: u16,
    pub protocol: String,
    #[serde(default = "one")]
    pub range: u16,
}

fn one() -> u16 {
    1
}

/// The stdin of `setup` and of `teardown` (the same object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub container_id: String,
    /// The pod's name for a pod's infra container.
    #[serde(default, deserialize_with = "null_default")]
    pub container_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub port_mappings: Vec<PortMapping>,
    pub network: Network,
    pub network_options: NetworkOptions,
}

/// One address of an interface in the status block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetAddress {
    pub ipnet: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInterface {
    pub mac_address: String,
    #[serde(default, deserialize_with = "null_default")]
    pub subnets: Vec<NetAddress>,
}

/// `setup`'s answer: what Podman shows in `inspect` and writes into the container's
/// `/etc/hosts` and `resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusBlock {
    #[serde(default, deserialize_with = "null_default")]
    pub dns_search_domains: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub dns_server_ips: Vec<IpAddr>,
    #[serde(default, deserialize_with = "null_default")]
    pub interfaces: BTreeMap<String, NetInterface>,
}

/// `info`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub version: String,
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_info: Option<String>,
}

impl Info {
    pub fn current() -> Self {
        Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_version: API_VERSION.to_string(),
            extra_info: None,
        }
    }
}

/// A failure as netavark reads it: this on stdout and a non-zero exit. netavark shows
/// the text to the user ("plugin \"kuryr\" failed: exit code 1, message: ...").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error}")]
pub struct PluginError {
    pub error: String,
}

impl PluginError {
    pub fn new(error: impl Into<String>) -> Self {
        PluginError {
            error: error.into(),
        }
    }
}

/// What `kuryr-netavark` sends the daemon (`POST /v1/netavark`): the command, for
/// setup and teardown the namespace path as netavark gave it and the plugin's pid (the
/// path is read in the plugin's mount namespace: the daemon opens it through
/// `/proc/<pid>/root`), and the plugin's stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub command: String,
    #[serde(default)]
    pub netns: String,
    #[serde(default)]
    pub pid: Option<u32>,
    pub request: Value,
}

/// The `-o` options of a kuryr network, as Docker's kuryr networks name them.
pub mod options {
    /// An existing Neutron network, by id or by name (`neutron.network` takes either).
    pub const NET_UUID: &str = "neutron.net.uuid";
    pub const NET_NAME: &str = "neutron.net.name";
    pub const NETWORK: &str = "neutron.network";
    pub const SUBNET_UUID: &str = "neutron.subnet.uuid";
    pub const SUBNET_NAME: &str = "neutron.subnet.name";
    pub const POOL_UUID: &str = "neutron.pool.uuid";
    pub const POOL_NAME: &str = "neutron.pool.name";
    /// Comma-separated groups, names or ids.
    pub const SECURITY_GROUPS: &str = "neutron.security_groups";
    pub const QOS_POLICY: &str = "neutron.qos_policy";
    pub const FLOATING_NETWORK: &str = "neutron.floating_network";
    pub const MTU: &str = "mtu";
    /// The daemon's socket, when not the default.
    pub const SOCKET: &str = "kuryr.socket";
    /// What a network may set.
    pub const NETWORK_OPTIONS: &[&str] = &[
        NET_UUID,
        NET_NAME,
        NETWORK,
        SUBNET_UUID,
        SUBNET_NAME,
        POOL_UUID,
        POOL_NAME,
        SECURITY_GROUPS,
        QOS_POLICY,
        FLOATING_NETWORK,
        MTU,
        SOCKET,
    ];
    /// What one container may set on its network (`--network net:key=value`).
    pub const CONTAINER_OPTIONS: &[&str] = &[SECURITY_GROUPS, QOS_POLICY, FLOATING_NETWORK];
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands_are_read_from_argv_and_a_setup_needs_its_netns() {
        assert_eq!(Command::parse(&args(&["create"])), Ok(Command::Create));
        assert_eq!(Command::parse(&args(&["info"])), Ok(Command::Info));
        assert_eq!(
            Command::parse(&args(&["setup", "/run/netns/netns-1"])),
            Ok(Command::Setup("/run/netns/netns-1".into()))
        );
        assert_eq!(
            Command::parse(&args(&["teardown", "/run/netns/netns-1"])),
            Ok(Command::Teardown("/run/netns/netns-1".into()))
        );
        assert!(Command::parse(&args(&["setup"])).is_err());
        assert!(Command::parse(&args(&["teardown", ""])).is_err());
        assert!(Command::parse(&args(&["gc"]))
            .unwrap_err()
            .contains("\"gc\""));
        assert!(Command::parse(&[]).is_err());
    }

    /// What Podman 5.4.2 sends to `create` (`--subnet 10.250.0.0/24 -o foo=bar`).
    #[test]
    fn create_reads_podmans_network_and_writes_back_what_it_does_not_know() {
        let sent = json!({"name":"probenet","id":"5d479fe4e1503f1c764930cd1f7657c6f97abf0267d713a3182cafb00be491be",
            "driver":"kuryr","created":"0001-01-01T00:00:00Z","subnets":[{"subnet":"10.250.0.0/24"}],
            "ipv6_enabled":false,"internal":false,"dns_enabled":true,"options":{"foo":"bar"},
            "labels":{"k":"v"}});
        let net: Network = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(
            net.subnets[0].subnet,
            "10.250.0.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(net.subnets[0].gateway, None);
        assert_eq!(net.options["foo"], "bar");
        assert!(net.dns_enabled);
        // Echoed unchanged: Podman stores what create prints.
        assert_eq!(serde_json::to_value(&net).unwrap(), sent);
        // Without --subnet there is no subnets key.
        let bare: Network =
            serde_json::from_value(json!({"name":"n","id":"1","driver":"kuryr"})).unwrap();
        assert!(bare.subnets.is_empty() && bare.options.is_empty());
    }

    /// What netavark 1.14 sends to `setup` (`--ip`, `--mac-address`, `-p`, an alias).
    #[test]
    fn setup_reads_netavarks_request_with_its_nulls() {
        let sent = json!({"container_id":"8addd8afa2f2aa","container_name":"c1",
            "port_mappings":[{"container_port":80,"host_ip":"","host_port":8080,"protocol":"tcp","range":1}],
            "network":{"dns_enabled":true,"driver":"kuryr","id":"5d47","internal":false,"ipv6_enabled":false,
                "name":"probenet","network_interface":null,"options":{"foo":"bar"},"ipam_options":null,
                "subnets":[{"gateway":"10.250.0.1","lease_range":null,"subnet":"10.250.0.0/24"}],
                "routes":null,"network_dns_servers":null},
            "network_options":{"aliases":["web1","8addd8afa2f2"],"interface_name":"eth0",
                "static_ips":["10.250.0.5"],"static_mac":"02:42:0a:fa:00:05","options":null}});
        let req: Request = serde_json::from_value(sent).unwrap();
        assert_eq!(req.network_options.interface_name, "eth0");
        assert_eq!(
            req.network_options.static_ips,
            vec!["10.250.0.5".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            req.network_options.static_mac.as_deref(),
            Some("02:42:0a:fa:00:05")
        );
        assert_eq!(req.port_mappings[0].host_port, 8080);
        assert_eq!(
            req.network.subnets[0].gateway,
            Some("10.250.0.1".parse().unwrap())
        );
        // A teardown of a container without -p or --ip: nulls everywhere.
        let td = json!({"container_id":"29fe","container_name":"c2","port_mappings":null,
            "network":{"name":"n","id":"1","driver":"kuryr","subnets":null,"options":null},
            "network_options":{"aliases":null,"interface_name":"eth0","static_ips":null,"static_mac":null,"options":null}});
        let req: Request = serde_json::from_value(td).unwrap();
        assert!(req.port_mappings.is_empty() && req.network_options.static_ips.is_empty());
    }

    #[test]
    fn the_status_block_and_the_error_are_written_as_podman_accepts_them() {
        let mut status = StatusBlock::default();
        status.interfaces.insert(
            "eth0".into(),
            NetInterface {
                mac_address: "02:42:0a:fa:00:05".into(),
                subnets: vec![NetAddress {
                    ipnet: "10.250.0.5/24".parse().unwrap(),
                    gateway: Some("10.250.0.1".parse().unwrap()),
                }],
            },
        );
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({"dns_search_domains":[],"dns_server_ips":[],"interfaces":{"eth0":{
                "mac_address":"02:42:0a:fa:00:05",
                "subnets":[{"ipnet":"10.250.0.5/24","gateway":"10.250.0.1"}]}}})
        );
        assert_eq!(
            serde_json::to_value(PluginError::new("boom")).unwrap(),
            json!({"error": "boom"})
        );
        assert_eq!(Info::current().api_version, "1.0.0");
    }
}
