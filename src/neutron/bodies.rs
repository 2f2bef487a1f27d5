//! The request bodies kuryr sends to Neutron, typed: a field left `None` is not sent,
//! so an update changes only what it names.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};

use super::ids::{NetworkId, PortId, SubnetId, SubnetPoolId};
use super::types::AddressPair;

/// An address a new port asks for: one from the subnet, or this one of it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FixedIpAsk {
    pub subnet_id: SubnetId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<IpAddr>,
}

/// The port attributes kuryr writes, in a create ([`NewPort`]) or an update.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PortBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_state_up: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "binding:host_id", skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    #[serde(rename = "binding:profile", skip_serializing_if = "Option::is_none")]
    pub profile: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_ips: Option<Vec<FixedIpAsk>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<String>>,
    /// `Some(None)` clears the port's policy (sent as null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos_policy_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_address_pairs: Option<Vec<AddressPair>>,
    /// In a create only, where Neutron keeps them (`tag-ports-during-bulk-creation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl PortBody {
    /// Sets the port's security groups.
    pub fn groups(groups: Vec<String>) -> Self {
        PortBody {
            security_groups: Some(groups),
            ..Self::default()
        }
    }

    /// Unbinds the port (no host): Neutron then takes a new MAC or profile.
    pub fn unbind() -> Self {
        PortBody {
            host_id: Some(String::new()),
            ..Self::default()
        }
    }
}

/// A port kuryr creates: its network and what it sets of the rest.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NewPort {
    pub network_id: NetworkId,
    #[serde(flatten)]
    pub port: PortBody,
}

/// A network kuryr creates, or the attributes it changes of one.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NetworkBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_state_up: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos_policy_id: Option<String>,
}

impl NetworkBody {
    /// A new network, up, named `name`.
    pub fn named(name: impl Into<String>) -> Self {
        NetworkBody {
            name: Some(name.into()),
            admin_state_up: Some(true),
            ..Self::default()
        }
    }
}

/// A subnet kuryr creates; Neutron picks what is left out (a pool's next prefix, the
/// first address as gateway).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NewSubnet {
    pub network_id: NetworkId,
    pub name: String,
    pub ip_version: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnetpool_id: Option<SubnetPoolId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_dhcp: Option<bool>,
    /// IPv6 only: how ports get their addresses (`slaac`, `dhcpv6-stateful`,
    /// `dhcpv6-stateless`) and what the router advertises.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_ra_mode: Option<String>,
}

/// A new name, the only attribute kuryr changes of a subnet.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rename {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewSubnetPool {
    pub name: String,
    pub prefixes: Vec<String>,
    pub default_prefixlen: u8,
    pub shared: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewSecurityGroup {
    pub name: String,
    pub description: String,
}

/// An ingress rule of a group kuryr makes (`--expose`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewSecurityGroupRule {
    pub security_group_id: String,
    pub direction: &'static str,
    pub protocol: String,
    pub ethertype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range_min: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range_max: Option<u16>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewFloatingIp {
    pub floating_network_id: String,
    pub port_id: PortId,
    pub description: String,
}

/// A floating IP's association: to a port, or (`None`, sent as null) to none.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FloatingIpPort {
    pub port_id: Option<PortId>,
}

/// A trunk's subport in `add_subports` (with its VLAN) or `remove_subports` (without).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubportAsk {
    pub port_id: PortId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segmentation_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segmentation_id: Option<u16>,
}

impl SubportAsk {
    /// Port `port_id` as the trunk's subport on VLAN `id`.
    pub fn vlan(port_id: impl Into<PortId>, id: u16) -> Self {
        SubportAsk {
            port_id: port_id.into(),
            segmentation_type: Some("vlan"),
            segmentation_id: Some(id),
        }
    }

    /// Port `port_id`, to be taken off the trunk.
    pub fn remove(port_id: impl Into<PortId>) -> Self {
        SubportAsk {
            port_id: port_id.into(),
            segmentation_type: None,
            segmentation_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_update_sends_only_what_it_sets_and_a_cleared_policy_as_null() {
        let body = PortBody {
            host_id: Some(String::new()),
            qos_policy_id: Some(None),
            ..PortBody::default()
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"binding:host_id": "", "qos_policy_id": null})
        );
        assert_eq!(
            serde_json::to_value(PortBody::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn a_new_port_is_its_network_and_its_fields_at_one_level() {
        let body = NewPort {
            network_id: NetworkId::from("n"),
            port: PortBody {
                name: Some("p".into()),
                fixed_ips: Some(vec![FixedIpAsk {
                    subnet_id: SubnetId::from("s"),
                    ip_address: None,
                }]),
                ..PortBody::default()
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"network_id": "n", "name": "p", "fixed_ips": [{"subnet_id": "s"}]})
        );
    }

    #[test]
    fn a_floating_ip_let_go_sends_a_null_port() {
        assert_eq!(
            serde_json::to_value(FloatingIpPort { port_id: None }).unwrap(),
            json!({"port_id": null})
        );
    }
}
