//! Neutron v2.0 resources, with only the fields kuryr reads. Unknown fields are ignored;
//! absent or null ones take their default so an older or newer Neutron still parses.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub use super::ids::{NetworkId, PortId, SubnetId, SubnetPoolId};
use crate::wire::null_default;

fn ip_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// A Neutron collection: URL path segment and JSON keys.
pub trait Resource: DeserializeOwned + Send {
    /// URL segment under `/v2.0/`.
    const PATH: &'static str;
    /// JSON key of one object.
    const SINGULAR: &'static str;
    /// JSON key of a list.
    const PLURAL: &'static str;
}

macro_rules! resource {
    ($t:ty, $path:literal, $one:literal, $many:literal) => {
        impl Resource for $t {
            const PATH: &'static str = $path;
            const SINGULAR: &'static str = $one;
            const PLURAL: &'static str = $many;
        }
    };
}

pub use crate::vif::VifType;

/// A port's `status`, as Neutron's agents report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PortStatus {
    Active,
    #[default]
    Down,
    Build,
    Error,
    Other(String),
}

impl PortStatus {
    pub fn as_str(&self) -> &str {
        match self {
            PortStatus::Active => "ACTIVE",
            PortStatus::Down => "DOWN",
            PortStatus::Build => "BUILD",
            PortStatus::Error => "ERROR",
            PortStatus::Other(s) => s,
        }
    }
}

impl From<&str> for PortStatus {
    fn from(s: &str) -> Self {
        match s {
            "ACTIVE" => PortStatus::Active,
            "DOWN" | "" => PortStatus::Down,
            "BUILD" => PortStatus::Build,
            "ERROR" => PortStatus::Error,
            other => PortStatus::Other(other.to_string()),
        }
    }
}

crate::wire::wire_string!(PortStatus);

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct Network {
    pub id: NetworkId,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub shared: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default, deserialize_with = "null_default")]
    pub subnets: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    #[serde(default, deserialize_with = "null_default")]
    pub project_id: String,
    /// Admin-only; what SR-IOV VFs are mapped by.
    #[serde(
        rename = "provider:physical_network",
        default,
        deserialize_with = "null_default"
    )]
    pub physical_network: String,
    /// The QoS policy of the network's ports that have none of their own (`qos` extension).
    #[serde(default)]
    pub qos_policy_id: Option<String>,
    /// An external network: routers' gateways and floating IPs are on it.
    #[serde(rename = "router:external", default, deserialize_with = "null_default")]
    pub external: bool,
}
resource!(Network, "networks", "network", "networks");

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct HostRoute {
    pub destination: String,
    pub nexthop: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct Subnet {
    pub id: SubnetId,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    pub network_id: NetworkId,
    pub cidr: IpNet,
    #[serde(default)]
    pub ip_version: u8,
    /// None also when Neutron says `""` (no gateway).
    #[serde(default, deserialize_with = "ip_or_none")]
    pub gateway_ip: Option<IpAddr>,
    #[serde(default, deserialize_with = "null_default")]
    pub host_routes: Vec<HostRoute>,
    #[serde(default)]
    pub subnetpool_id: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub enable_dhcp: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub dns_nameservers: Vec<String>,
    /// IPv6: how ports get their addresses (`slaac`, `dhcpv6-stateful`, ...); None for v4.
    #[serde(default)]
    pub ipv6_address_mode: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
}
resource!(Subnet, "subnets", "subnet", "subnets");

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct SubnetPool {
    pub id: SubnetPoolId,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub default_prefixlen: Option<Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub shared: bool,
    #[serde(default)]
    pub ip_version: u8,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
}
resource!(SubnetPool, "subnetpools", "subnetpool", "subnetpools");

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct FixedIp {
    pub subnet_id: SubnetId,
    pub ip_address: IpAddr,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct AddressPair {
    pub ip_address: String,
    #[serde(default)]
    pub mac_address: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct Port {
    pub id: PortId,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub network_id: NetworkId,
    #[serde(default, deserialize_with = "null_default")]
    pub mac_address: String,
    #[serde(default, deserialize_with = "null_default")]
    pub fixed_ips: Vec<FixedIp>,
    #[serde(default, deserialize_with = "null_default")]
    pub device_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub device_owner: String,
    #[serde(default)]
    pub status: PortStatus,
    #[serde(default, deserialize_with = "null_default")]
    pub admin_state_up: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub security_groups: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub allowed_address_pairs: Vec<AddressPair>,
    #[serde(default, deserialize_with = "null_default")]
    pub project_id: String,
    #[serde(rename = "binding:host_id", default, deserialize_with = "null_default")]
    pub host_id: String,
    #[serde(rename = "binding:vif_type", default)]
    pub vif_type: VifType,
    #[serde(
        rename = "binding:vnic_type",
        default,
        deserialize_with = "null_default"
    )]
    pub vnic_type: String,
    #[serde(
        rename = "binding:vif_details",
        default,
        deserialize_with = "null_default"
    )]
    pub vif_details: Map<String, Value>,
    /// What the port's creator (Nova, or the user for SR-IOV) tells the mechanism
    /// driver: `pci_slot`, `physical_network`, ...
    #[serde(rename = "binding:profile", default, deserialize_with = "null_default")]
    pub profile: Map<String, Value>,
    #[serde(default)]
    pub trunk_details: Option<TrunkDetails>,
    /// The port's own QoS policy (`qos` extension); its network's applies when none.
    #[serde(default)]
    pub qos_policy_id: Option<String>,
}
resource!(Port, "ports", "port", "ports");

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct TrunkDetails {
    pub trunk_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub sub_ports: Vec<SubPort>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct SubPort {
    pub port_id: String,
    #[serde(default)]
    pub segmentation_id: Option<u32>,
    #[serde(default)]
    pub segmentation_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct Trunk {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    pub port_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub sub_ports: Vec<SubPort>,
}
resource!(Trunk, "trunks", "trunk", "trunks");

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct SecurityGroup {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "null_default")]
    pub security_group_rules: Vec<SecurityGroupRule>,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
}
resource!(
    SecurityGroup,
    "security-groups",
    "security_group",
    "security_groups"
);

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct SecurityGroupRule {
    pub id: String,
    pub security_group_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub direction: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub ethertype: Option<String>,
    #[serde(default)]
    pub port_range_min: Option<u16>,
    #[serde(default)]
    pub port_range_max: Option<u16>,
}
resource!(
    SecurityGroupRule,
    "security-group-rules",
    "security_group_rule",
    "security_group_rules"
);

/// A floating IP (`router` extension).
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct FloatingIp {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub floating_ip_address: String,
    #[serde(default)]
    pub port_id: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub floating_network_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
}
resource!(FloatingIp, "floatingips", "floatingip", "floatingips");

/// A QoS policy (`qos` extension); kuryr only looks them up by name.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct QosPolicy {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}
resource!(QosPolicy, "qos/policies", "policy", "policies");

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct Extension {
    pub alias: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}
resource!(Extension, "extensions", "extension", "extensions");

#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
pub struct Agent {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub agent_type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub host: String,
    #[serde(default, deserialize_with = "null_default")]
    pub alive: bool,
}
resource!(Agent, "agents", "agent", "agents");
