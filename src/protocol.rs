//! libnetwork remote driver protocol (NetworkDriver + IpamDriver): wire types only.
//!
//! Requests are parsed leniently (unknown fields ignored, `null` = absent) because Docker
//! versions add fields; semantic validation (ids, CIDRs, MACs) lives in [`validate`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Content type of every answer (success and error), as Docker's plugin client expects.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// The option Docker uses in `RequestAddress` for the gateway.
pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
pub const GATEWAY_ADDRESS_TYPE: &str = "com.docker.network.gateway";
pub const MAC_ADDRESS_OPTION: &str = "com.docker.network.endpoint.macaddress";
pub const GENERIC_OPTIONS: &str = "com.docker.network.generic";
pub const EXPOSED_PORTS_OPTION: &str = "com.docker.network.endpoint.exposedports";

/// The libnetwork calls kuryr serves, each `POST /<path>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Activate,
    NetworkCapabilities,
    CreateNetwork,
    DeleteNetwork,
    CreateEndpoint,
    EndpointOperInfo,
    DeleteEndpoint,
    Join,
    Leave,
    DiscoverNew,
    DiscoverDelete,
    ProgramExternalConnectivity,
    RevokeExternalConnectivity,
    AllocateNetwork,
    FreeNetwork,
    IpamCapabilities,
    DefaultAddressSpaces,
    RequestPool,
    ReleasePool,
    RequestAddress,
    ReleaseAddress,
    /// Docker 28+: whether to reserve the network's gateway addresses in IPAM.
    GwAllocCheck,
}

impl Method {
    /// Every method, in a fixed order (the fuzz input format selects by index).
    pub const ALL: [Method; 22] = [
        Method::Activate,
        Method::NetworkCapabilities,
        Method::CreateNetwork,
        Method::DeleteNetwork,
        Method::CreateEndpoint,
        Method::EndpointOperInfo,
        Method::DeleteEndpoint,
        Method::Join,
        Method::Leave,
        Method::DiscoverNew,
        Method::DiscoverDelete,
        Method::ProgramExternalConnectivity,
        Method::RevokeExternalConnectivity,
        Method::AllocateNetwork,
        Method::FreeNetwork,
        Method::IpamCapabilities,
        Method::DefaultAddressSpaces,
        Method::RequestPool,
        Method::ReleasePool,
        Method::RequestAddress,
        Method::ReleaseAddress,
        // Last: the fuzz corpus selects methods by index.
        Method::GwAllocCheck,
    ];

    /// The URL path, without the leading `/`.
    pub fn path(self) -> &'static str {
        match self {
            Method::Activate => "Plugin.Activate",
            Method::NetworkCapabilities => "NetworkDriver.GetCapabilities",
            Method::CreateNetwork => "NetworkDriver.CreateNetwork",
            Method::DeleteNetwork => "NetworkDriver.DeleteNetwork",
            Method::CreateEndpoint => "NetworkDriver.CreateEndpoint",
            Method::EndpointOperInfo => "NetworkDriver.EndpointOperInfo",
            Method::DeleteEndpoint => "NetworkDriver.DeleteEndpoint",
            Method::Join => "NetworkDriver.Join",
            Method::Leave => "NetworkDriver.Leave",
            Method::DiscoverNew => "NetworkDriver.DiscoverNew",
            Method::DiscoverDelete => "NetworkDriver.DiscoverDelete",
            Method::ProgramExternalConnectivity => "NetworkDriver.ProgramExternalConnectivity",
            Method::RevokeExternalConnectivity => "NetworkDriver.RevokeExternalConnectivity",
            Method::AllocateNetwork => "NetworkDriver.AllocateNetwork",
            Method::FreeNetwork => "NetworkDriver.FreeNetwork",
            Method::IpamCapabilities => "IpamDriver.GetCapabilities",
            Method::DefaultAddressSpaces => "IpamDriver.GetDefaultAddressSpaces",
            Method::RequestPool => "IpamDriver.RequestPool",
            Method::ReleasePool => "IpamDriver.ReleasePool",
            Method::RequestAddress => "IpamDriver.RequestAddress",
            Method::ReleaseAddress => "IpamDriver.ReleaseAddress",
            Method::GwAllocCheck => "NetworkDriver.GwAllocCheck",
        }
    }

    pub fn from_path(path: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.path() == path)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path())
    }
}

/// A Docker network id, checked when the request is parsed: 64 lowercase hex (local) or
/// 25 `[0-9a-z]` (swarm).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DockerNetworkId(String);

/// A Docker endpoint id, checked as a network id is; a type of its own so that one is
/// never passed for the other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(String);

/// A Neutron id (a UUID, as Neutron prints it), checked when the request is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NeutronId(String);

macro_rules! id_type {
    ($t:ident, $check:path) => {
        impl $t {
            /// `field` names the value in the error.
            pub fn parse(field: &str, s: &str) -> Result<Self, validate::Invalid> {
                $check(field, s).map(|_| $t(s.to_string()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }
    };
}
id_type!(DockerNetworkId, validate::docker_id);
id_type!(EndpointId, validate::docker_id);
id_type!(NeutronId, validate::uuid);

/// Field deserializers that check a value as it is parsed, so a handler only ever sees
/// valid ids; the error names the field.
mod de {
    use serde::{Deserialize, Deserializer};

    use super::{DockerNetworkId, EndpointId, NeutronId};

    macro_rules! id_field {
        ($name:ident, $t:ty, $field:literal) => {
            pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::parse($field, &s).map_err(serde::de::Error::custom)
            }
        };
    }
    id_field!(network_id, DockerNetworkId, "NetworkID");
    id_field!(endpoint_id, EndpointId, "EndpointID");
    id_field!(pool_id, NeutronId, "PoolID");
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct IpamData {
    #[serde(rename = "AddressSpace", default, deserialize_with = "null_as_default")]
    pub address_space: String,
    #[serde(rename = "Pool", default, deserialize_with = "null_as_default")]
    pub pool: String,
    #[serde(rename = "Gateway", default, deserialize_with = "null_as_default")]
    pub gateway: String,
    #[serde(rename = "AuxAddresses", default, deserialize_with = "null_as_default")]
    pub aux_addresses: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct CreateNetworkRequest {
    #[serde(rename = "NetworkID", deserialize_with = "de::network_id")]
    pub network_id: DockerNetworkId,
    #[serde(rename = "IPv4Data", default, deserialize_with = "null_as_default")]
    pub ipv4_data: Vec<IpamData>,
    #[serde(rename = "IPv6Data", default, deserialize_with = "null_as_default")]
    pub ipv6_data: Vec<IpamData>,
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Map<String, Value>,
}

/// `NetworkDriver.GwAllocCheck` (Docker 28+, asked once before a network is made): its
/// options are CreateNetwork's.
#[derive(Debug, Deserialize)]
pub struct GwAllocCheckRequest {
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Map<String, Value>,
}

/// Which families' gateway Docker is not to reserve in IPAM (nor name in CreateNetwork).
#[derive(Debug, Serialize, Default, PartialEq, Eq)]
pub struct GwAllocCheckResponse {
    #[serde(rename = "SkipIPv4")]
    pub skip_ipv4: bool,
    #[serde(rename = "SkipIPv6")]
    pub skip_ipv6: bool,
}

#[derive(Debug, Deserialize)]
pub struct NetworkRequest {
    #[serde(rename = "NetworkID", deserialize_with = "de::network_id")]
    pub network_id: DockerNetworkId,
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct EndpointInterface {
    #[serde(rename = "Address", default, deserialize_with = "null_as_default")]
    pub address: String,
    #[serde(rename = "AddressIPv6", default, deserialize_with = "null_as_default")]
    pub address_ipv6: String,
    #[serde(rename = "MacAddress", default, deserialize_with = "null_as_default")]
    pub mac_address: String,
}

#[derive(Debug, Deserialize)]
pub struct CreateEndpointRequest {
    #[serde(rename = "NetworkID", deserialize_with = "de::network_id")]
    pub network_id: DockerNetworkId,
    #[serde(rename = "EndpointID", deserialize_with = "de::endpoint_id")]
    pub endpoint_id: EndpointId,
    #[serde(rename = "Interface", default, deserialize_with = "null_as_default")]
    pub interface: EndpointInterface,
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Map<String, Value>,
}

#[derive(Debug, Serialize, Default, PartialEq)]
pub struct EndpointInterfaceResponse {
    #[serde(rename = "Address", skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(rename = "AddressIPv6", skip_serializing_if = "String::is_empty")]
    pub address_ipv6: String,
    #[serde(rename = "MacAddress", skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CreateEndpointResponse {
    #[serde(rename = "Interface")]
    pub interface: EndpointInterfaceResponse,
}

#[derive(Debug, Deserialize)]
pub struct EndpointRequest {
    #[serde(rename = "NetworkID", deserialize_with = "de::network_id")]
    pub network_id: DockerNetworkId,
    #[serde(rename = "EndpointID", deserialize_with = "de::endpoint_id")]
    pub endpoint_id: EndpointId,
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct JoinRequest {
    #[serde(rename = "NetworkID", deserialize_with = "de::network_id")]
    pub network_id: DockerNetworkId,
    #[serde(rename = "EndpointID", deserialize_with = "de::endpoint_id")]
    pub endpoint_id: EndpointId,
    #[serde(rename = "SandboxKey", default, deserialize_with = "null_as_default")]
    pub sandbox_key: String,
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Map<String, Value>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct InterfaceName {
    #[serde(rename = "SrcName")]
    pub src_name: String,
    #[serde(rename = "DstPrefix")]
    pub dst_prefix: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct StaticRoute {
    #[serde(rename = "Destination")]
    pub destination: String,
    #[serde(rename = "RouteType")]
    pub route_type: u8,
    #[serde(rename = "NextHop", skip_serializing_if = "String::is_empty")]
    pub next_hop: String,
}

/// `NetworkDriver.EndpointOperInfo`'s answer: the port's status, once known.
#[derive(Debug, Serialize, Default, PartialEq)]
pub struct EndpointOperInfoResponse {
    #[serde(rename = "Value")]
    pub value: OperInfo,
}

#[derive(Debug, Serialize, Default, PartialEq)]
pub struct OperInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct JoinResponse {
    #[serde(rename = "InterfaceName")]
    pub interface_name: InterfaceName,
    #[serde(rename = "Gateway", skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "Option::is_none")]
    pub gateway_ipv6: Option<String>,
    #[serde(rename = "StaticRoutes")]
    pub static_routes: Vec<StaticRoute>,
    #[serde(rename = "DisableGatewayService")]
    pub disable_gateway_service: bool,
}

#[derive(Debug, Deserialize)]
pub struct RequestPoolRequest {
    #[serde(rename = "AddressSpace", default, deserialize_with = "null_as_default")]
    pub address_space: String,
    #[serde(rename = "Pool", default, deserialize_with = "null_as_default")]
    pub pool: String,
    #[serde(rename = "SubPool", default, deserialize_with = "null_as_default")]
    pub sub_pool: String,
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "V6", default, deserialize_with = "null_as_default")]
    pub v6: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct RequestPoolResponse {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(rename = "Pool")]
    pub pool: String,
    #[serde(rename = "Data")]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct ReleasePoolRequest {
    #[serde(rename = "PoolID", deserialize_with = "de::pool_id")]
    pub pool_id: NeutronId,
}

#[derive(Debug, Deserialize)]
pub struct RequestAddressRequest {
    #[serde(rename = "PoolID", deserialize_with = "de::pool_id")]
    pub pool_id: NeutronId,
    #[serde(rename = "Address", default, deserialize_with = "null_as_default")]
    pub address: String,
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct RequestAddressResponse {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Data")]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct ReleaseAddressRequest {
    #[serde(rename = "PoolID", deserialize_with = "de::pool_id")]
    pub pool_id: NeutronId,
    #[serde(rename = "Address")]
    pub address: String,
}

/// An exposed port from `com.docker.network.endpoint.exposedports`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExposedPort {
    #[serde(rename = "Proto")]
    pub proto: u8,
    #[serde(rename = "Port")]
    pub port: u16,
}

/// Semantic checks shared by the handlers; each error names the field.
/// A swarm object's id (25 `[0-9a-z]`), as a swarm network's: local ones are 64 hex.
pub fn is_swarm_id(id: &str) -> bool {
    id.len() == 25
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

pub mod validate {
    use super::*;

    /// A value of a request that is not what the field needs: a 400, nothing changed.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{0}")]
    pub struct Invalid(pub String);

    type Result<T> = std::result::Result<T, Invalid>;

    /// Docker ids: 64 lowercase hex (local) or 25 `[0-9a-z]` (swarm).
    pub fn docker_id(field: &str, id: &str) -> Result<()> {
        let ok = (id.len() == 64
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            || is_swarm_id(id);
        if ok {
            Ok(())
        } else {
            Err(Invalid(format!(
                "{field} {:?} is not a Docker id (64 hex characters)",
                truncate(id)
            )))
        }
    }

    /// A Linux interface name: 1-15 of `[A-Za-z0-9_.-]`, not `.` or `..`.
    pub fn ifname(field: &str, s: &str) -> Result<()> {
        let ok = !s.is_empty()
            && s.len() <= 15
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if ok {
            Ok(())
        } else {
            Err(Invalid(format!(
                "{field} {:?} is not an interface name (1-15 letters, digits, -, _ or .)",
                truncate(s)
            )))
        }
    }

    /// A Neutron id (UUID, as Neutron prints it).
    pub fn uuid(field: &str, id: &str) -> Result<()> {
        uuid::Uuid::parse_str(id)
            .map(|_| ())
            .map_err(|_| Invalid(format!("{field} {:?} is not a UUID", truncate(id))))
    }

    pub fn cidr(field: &str, s: &str) -> Result<IpNet> {
        s.parse::<IpNet>().map_err(|_| {
            Invalid(format!(
                "{field} {:?} is not a CIDR (e.g. 10.0.0.0/24)",
                truncate(s)
            ))
        })
    }

    pub fn ip(field: &str, s: &str) -> Result<IpAddr> {
        s.parse::<IpAddr>()
            .map_err(|_| Invalid(format!("{field} {:?} is not an IP address", truncate(s))))
    }

    /// An address that may carry a prefix length (`10.0.0.1/24` or `10.0.0.1`).
    pub fn ip_maybe_cidr(field: &str, s: &str) -> Result<(IpAddr, Option<u8>)> {
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok((net.addr(), Some(net.prefix_len())));
        }
        ip(field, s).map(|a| (a, None))
    }

    /// `xx:xx:xx:xx:xx:xx`; returns it lowercased.
    pub fn mac(field: &str, s: &str) -> Result<String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() == 6
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            Ok(s.to_ascii_lowercase())
        } else {
            Err(Invalid(format!(
                "{field} {:?} is not a MAC address (xx:xx:xx:xx:xx:xx)",
                truncate(s)
            )))
        }
    }

    fn truncate(s: &str) -> String {
        s.chars().take(80).collect()
    }
}

/// The user's `-o` options of a network (`com.docker.network.generic`), as strings.
pub fn generic_options(options: &Map<String, Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(m)) = options.get(GENERIC_OPTIONS) {
        for (k, v) in m {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            out.insert(k.clone(), s);
        }
    }
    out
}

/// Exposed ports of an endpoint, ignoring entries that are not `{Proto, Port}`.
pub fn exposed_ports(options: &Map<String, Value>) -> Vec<ExposedPort> {
    match options.get(EXPOSED_PORTS_OPTION) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| serde_json::from_value::<ExposedPort>(v.clone()).ok())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_network_parses_nulls_and_extra_fields() {
        let r: CreateNetworkRequest = serde_json::from_str(
            r#"{"NetworkID":"abababababababababababababababababababababababababababababababab","IPv4Data":[{"AddressSpace":"x","Pool":"10.0.0.0/24","Gateway":"10.0.0.1/24","AuxAddresses":null}],"IPv6Data":null,"Options":{"com.docker.network.generic":{"neutron.net.uuid":"u","n":5}},"New":1}"#,
        )
        .unwrap();
        assert_eq!(r.ipv4_data[0].gateway, "10.0.0.1/24");
        assert!(r.ipv6_data.is_empty());
        let g = generic_options(&r.options);
        assert_eq!(g["neutron.net.uuid"], "u");
        assert_eq!(g["n"], "5");
        // Ids are checked as the request is parsed, naming the field.
        let e = serde_json::from_str::<NetworkRequest>(r#"{"NetworkID":"ab"}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("NetworkID \"ab\" is not a Docker id"),
            "{e}"
        );
    }

    #[test]
    fn join_response_shape() {
        let j = JoinResponse {
            interface_name: InterfaceName {
                src_name: "t_c123".into(),
                dst_prefix: "eth".into(),
            },
            gateway: Some("10.0.0.1".into()),
            gateway_ipv6: None,
            static_routes: vec![],
            disable_gateway_service: true,
        };
        assert_eq!(
            serde_json::to_value(&j).unwrap(),
            serde_json::json!({"InterfaceName":{"SrcName":"t_c123","DstPrefix":"eth"},"Gateway":"10.0.0.1","StaticRoutes":[],"DisableGatewayService":true})
        );
    }

    #[test]
    fn validators() {
        use validate::*;
        assert!(docker_id("NetworkID", &"a".repeat(64)).is_ok());
        assert!(docker_id("NetworkID", "abcdefghijklmnopqrstuvwxy").is_ok());
        assert!(docker_id("NetworkID", &"A".repeat(64)).is_err());
        assert!(docker_id("NetworkID", "../../etc").is_err());
        assert!(cidr("Pool", "10.0.0.0/33").is_err());
        assert!(cidr("Pool", "fd00::/64").is_ok());
        assert_eq!(mac("m", "AA:bb:cc:dd:ee:ff").unwrap(), "aa:bb:cc:dd:ee:ff");
        assert!(mac("m", "aa:bb:cc:dd:ee").is_err());
        assert_eq!(
            ip_maybe_cidr("a", "10.0.0.5/24").unwrap(),
            ("10.0.0.5".parse().unwrap(), Some(24))
        );
    }

    #[test]
    fn exposed_ports_lenient() {
        let m: Map<String, Value> = serde_json::from_str(
            r#"{"com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80},{"bogus":1},{"Proto":17,"Port":53}]}"#,
        )
        .unwrap();
        assert_eq!(
            exposed_ports(&m),
            vec![
                ExposedPort { proto: 6, port: 80 },
                ExposedPort {
                    proto: 17,
                    port: 53
                }
            ]
        );
    }
}
