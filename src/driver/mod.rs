//! The CNM-to-Neutron mapping: what each libnetwork call means in Neutron and on the host.
//! Handlers take typed requests and return typed answers; HTTP lives in `server`.

mod addresses;
mod background;
mod binder;
mod bookkeeping;
pub mod cache;
pub mod cni;
mod cni_add;
mod cni_target;
mod endpoint;
mod endpoint_plan;
mod endpoint_state;
mod exposed;
mod floating;
mod ipam;
pub mod nested;
mod network;
mod network_subnets;
pub mod port_pool;
mod sriov;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use thiserror::Error;

use crate::config::Config;
use crate::host::{HostError, Plumber, Plumbing};
use crate::names;
use crate::neutron::{
    Extensions, Filters, Network, NetworkId, Neutron, NeutronError, Port, PortId, Subnet,
};
use cache::{Cache, EndpointInfo, KeyedLocks, NetInfo};

#[derive(Debug, Error)]
pub enum DriverError {
    /// The request itself is wrong: nothing was changed.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Neutron(#[from] NeutronError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{0}")]
    Internal(String),
    /// The call ran out of time (CALL_DEADLINE).
    #[error("{0}")]
    Timeout(String),
    /// Not connected to Neutron yet.
    #[error("{0}")]
    Unavailable(String),
    /// A call failed, and undoing what it had done failed too: both are reported.
    #[error("{error} (and undoing it failed: {})", join(.failures))]
    RolledBack {
        #[source]
        error: Box<DriverError>,
        failures: Vec<DriverError>,
    },
    /// A teardown ran every step; these failed, in order (two or more; one alone is
    /// reported as itself).
    #[error("{}", join(.0))]
    Teardown(Vec<DriverError>),
}

/// What a teardown collects: every step runs, whatever failed before it.
#[derive(Default)]
pub(crate) struct Failures(Vec<DriverError>);

impl Failures {
    /// Keeps a step's error; its value when it worked.
    pub(crate) fn step<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub(crate) fn into_result(mut self) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(DriverError::Teardown(self.0)),
        }
    }
}

fn join(errors: &[DriverError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl DriverError {
    /// Neutron answered 404 for something: an object kuryr may remember is gone.
    pub fn neutron_not_found(&self) -> bool {
        match self {
            DriverError::Neutron(e) => e.is_not_found(),
            DriverError::RolledBack { error, .. } => error.neutron_not_found(),
            DriverError::Teardown(all) => all.iter().all(DriverError::neutron_not_found),
            _ => false,
        }
    }

    /// HTTP status for Docker: 400 for bad input, Neutron's own for Neutron errors.
    pub fn status(&self) -> u16 {
        match self {
            DriverError::BadRequest(_) => 400,
            DriverError::NotFound(_) => 404,
            DriverError::Conflict(_) => 409,
            DriverError::Neutron(e) => e.http_status(),
            DriverError::Host(_) | DriverError::Internal(_) => 500,
            DriverError::Timeout(_) => 504,
            DriverError::Unavailable(_) => 503,
            DriverError::RolledBack { error, .. } => error.status(),
            DriverError::Teardown(all) => all.first().map_or(500, DriverError::status),
        }
    }

    /// This error, with its rollback's failure if the rollback failed.
    pub fn after_undo<E: Into<DriverError>>(self, undo: std::result::Result<(), E>) -> DriverError {
        match undo {
            Ok(()) => self,
            Err(u) => self.rolled_back_with(vec![u.into()]),
        }
    }

    /// This error, with what its rollback could not undo.
    pub fn rolled_back_with(self, failures: Vec<DriverError>) -> DriverError {
        if failures.is_empty() {
            return self;
        }
        DriverError::RolledBack {
            error: Box::new(self),
            failures,
        }
    }
}

pub type Result<T> = std::result::Result<T, DriverError>;

/// Neutron's extension (ML2 `tag_ports_during_bulk_creation`) that keeps the tags given
/// when ports are created; without it they are written by a request of their own.
pub const TAG_AT_CREATE: &str = "tag-ports-during-bulk-creation";

/// Whether Neutron keeps tags given in a port's create although it does not list
/// [`TAG_AT_CREATE`]: ML2/OVN loads the extension driver yet filters the alias out of
/// its list (its supported-extensions table lacks it, Neutron 21 to 26). One request,
/// which creates nothing: a port on a network that does not exist, with tags. Neutron
/// checks the attributes first ("Attribute 'tags' not allowed in POST", 400, when the
/// driver is not loaded), then the network (404). Anything else reads as "no".
async fn tags_at_create_unlisted(neutron: &Neutron) -> bool {
    let body = crate::neutron::NewPort {
        network_id: "00000000-0000-4000-8000-00000000dead".into(),
        port: crate::neutron::PortBody {
            name: Some("kuryr-probe-tags-at-create".into()),
            tags: Some(vec![names::TAG_KURYR_PORT.to_string()]),
            ..Default::default()
        },
    };
    match neutron.create::<crate::neutron::Port>(body).await {
        Err(e) if e.is_not_found() => true,
        Ok(p) => {
            // Cannot happen (no such network); if it did, nothing is left behind.
            let _ = neutron
                .delete_if_exists::<crate::neutron::Port>(&p.id)
                .await;
            p.tags.iter().any(|t| t == names::TAG_KURYR_PORT)
        }
        Err(e) => {
            tracing::debug!(error = %e, "Neutron does not keep tags given at a port's create");
            false
        }
    }
}

/// A request value `protocol::validate` refused: a bad request.
impl From<crate::protocol::validate::Invalid> for DriverError {
    fn from(e: crate::protocol::validate::Invalid) -> Self {
        DriverError::BadRequest(e.0)
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> DriverError {
    DriverError::BadRequest(msg.into())
}

pub struct Driver {
    pub(crate) cfg: Arc<Config>,
    pub(crate) neutron: Neutron,
    pub(crate) ext: Extensions,
    pub(crate) plumber: Arc<dyn Plumbing>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) locks: KeyedLocks,
    pub(crate) port_pool: Arc<port_pool::PortPool>,
    /// Per-port work that follows a call's answer (bookkeeping, scrubbing).
    pub(crate) background: Arc<background::Background>,
    /// Network -> the port RequestAddress gave one family of an endpoint, which also holds
    /// its address of the other family (dual stack: the second RequestAddress of the same
    /// endpoint comes next, under Docker's per-network lock).
    pub(crate) companion: std::sync::Mutex<std::collections::HashMap<NetworkId, Port>>,
    /// Port id -> the port as it still is in Neutron, while its endpoint's bookkeeping is
    /// not written (it follows CreateEndpoint's answer after a delay, and is skipped when
    /// the endpoint goes first).
    pub(crate) unwritten: Arc<std::sync::Mutex<std::collections::HashMap<PortId, Port>>>,
    /// Port id -> how many RequestAddress calls of this process handed it out and were
    /// not released yet: after dockerd restarts, a container started with `--ip` can get
    /// its address (the same port) again before the endpoint of before is released.
    pub(crate) grants: std::sync::Mutex<std::collections::HashMap<PortId, u32>>,
    pub(crate) port_driver: nested::PortDriver,
    /// The VM's trunk (vlan port driver only).
    pub(crate) trunk: Option<nested::TrunkIds>,
    /// Neutron keeps the tags a port is created with ([`TAG_AT_CREATE`], listed or not).
    pub(crate) tags_at_create: bool,
}

impl Driver {
    /// The driver of `kuryr serve`: this host's netlink, sysfs and binding programs.
    pub async fn on_host(cfg: Arc<Config>, neutron: Neutron) -> Result<Self> {
        let plumber = Plumber::new(cfg.bindir.clone(), cfg.host.clone())?;
        Self::new(cfg, neutron, Arc::new(plumber)).await
    }

    /// A driver on this Neutron and this host plumbing (detects Neutron's extensions).
    pub async fn new(
        cfg: Arc<Config>,
        neutron: Neutron,
        plumber: Arc<dyn Plumbing>,
    ) -> Result<Self> {
        let ext = neutron.extensions().await?;
        if !ext.has("subnet_allocation") {
            return Err(DriverError::Internal(
                "Neutron lacks the mandatory extension subnet_allocation (subnetpools)".into(),
            ));
        }
        if !ext.tags() {
            return Err(DriverError::Internal(
                "Neutron lacks tag support (standard-attr-tag): kuryr needs tags on networks, subnets, pools and ports".into(),
            ));
        }
        let port_driver = nested::port_driver(&cfg).map_err(DriverError::Internal)?;
        if let nested::PortDriver::Nested { link_iface, .. } = &port_driver {
            if plumber.link_mac(link_iface).await?.is_none() {
                return Err(DriverError::Internal(format!(
                    "[binding] link_iface {link_iface} does not exist on this host"
                )));
            }
        }
        let tags_at_create = ext.has(TAG_AT_CREATE) || tags_at_create_unlisted(&neutron).await;
        let pool_host = port_pool::PoolHost {
            host: cfg.host.clone(),
            tags_at_create,
            // Pool ports are plugged ahead: the agent or ovn-controller binds and filters
            // each before a start takes it, so a pooled container is filtered from its
            // first packet, a secure start's wait for ACTIVE is paid ahead, and on ML2/OVN
            // the start does not race the port's status write with its bookkeeping.
            plug_ahead: matches!(port_driver, nested::PortDriver::Veth),
            plumbing: plumber.clone(),
        };
        let mut d = Driver {
            cfg: cfg.clone(),
            neutron,
            ext,
            plumber,
            cache: Arc::default(),
            locks: KeyedLocks::default(),
            port_pool: port_pool::PortPool::new(
                cfg.port_pool_size,
                cfg.port_pool_ceiling(),
                pool_host,
            ),
            background: Arc::default(),
            companion: Default::default(),
            unwritten: Default::default(),
            grants: Default::default(),
            port_driver,
            trunk: None,
            tags_at_create,
        };
        if let Some((link, nested::NestedKind::Vlan)) = d.nested() {
            let link = link.to_string();
            d.trunk = Some(d.load_trunk(&link).await?);
        }
        Ok(d)
    }

    pub fn neutron(&self) -> &Neutron {
        &self.neutron
    }

    /// The host plumbing this driver uses (gc and reconcile share it).
    pub fn plumbing(&self) -> &dyn Plumbing {
        self.plumber.as_ref()
    }

    /// Writes what waits in the background (endpoint bookkeeping) now, and waits for it:
    /// at shutdown, so the next process (or the Python plugin) finds every endpoint's port
    /// by its tags.
    pub async fn flush(&self) {
        self.background.flush().await;
    }

    /// Ports with background work (bookkeeping, scrubbing) queued or running.
    pub fn background_pending(&self) -> usize {
        self.background.pending()
    }

    pub fn extensions(&self) -> &Extensions {
        &self.ext
    }

    /// The Neutron network behind a Docker network: cache, else by its two id tags.
    pub(crate) async fn net_info(&self, docker_net_id: &str) -> Result<Option<NetInfo>> {
        if let Some(n) = self.cache.networks.get(&docker_net_id.to_string()) {
            return Ok(Some(n));
        }
        let nets: Vec<Network> = self
            .neutron
            .list(&Filters::new().tags(&names::id_tags(docker_net_id)))
            .await?;
        let net = match nets.len() {
            0 => return Ok(None),
            1 => nets.into_iter().next(),
            n => {
                return Err(DriverError::Conflict(format!(
                    "{n} Neutron networks are tagged for Docker network {docker_net_id}"
                )))
            }
        };
        let Some(net) = net else { return Ok(None) };
        let subnets: Vec<Subnet> = self
            .neutron
            .list(&Filters::new().add("network_id", &net.id))
            .await?;
        let info = NetInfo {
            existing: net.tags.contains(&names::existing_net_tag(docker_net_id)),
            security_groups: names::sgs_from_tags(&net.tags),
            floating_network: names::fip_net_from_tags(&net.tags),
            neutron_id: net.id,
            mtu: net.mtu,
            project_id: net.project_id,
            physical_network: net.physical_network,
            subnets,
        };
        self.cache
            .networks
            .put(docker_net_id.to_string(), info.clone());
        Ok(Some(info))
    }

    /// Security groups by id or name (an id costs nothing, a name one request); an
    /// unknown or ambiguous name is a bad request, found before anything is made.
    pub(crate) async fn security_group_ids(&self, want: &[String]) -> Result<Vec<String>> {
        let mut ids: Vec<String> = Vec::new();
        for g in want.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
            let id = self
                .id_by_name::<crate::neutron::SecurityGroup>("security group", g, |x| &x.id)
                .await?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// An external network (for floating IPs) by id or name; a network that is not
    /// external is a bad request.
    pub(crate) async fn external_network_id(&self, want: &str) -> Result<String> {
        let want = want.trim();
        let by = if uuid::Uuid::parse_str(want).is_ok() {
            "id"
        } else {
            "name"
        };
        let found: Vec<crate::neutron::Network> =
            self.neutron.list(&Filters::new().add(by, want)).await?;
        match found.as_slice() {
            [one] if one.external => Ok(one.id.to_string()),
            [one] => Err(DriverError::BadRequest(format!(
                "network {want:?} ({}) is not external (router:external): no floating IP comes from it",
                one.id
            ))),
            [] => Err(DriverError::BadRequest(format!(
                "no external network is named {want:?}"
            ))),
            _ => Err(DriverError::BadRequest(format!(
                "several networks are named {want:?}: give its id instead"
            ))),
        }
    }

    /// A QoS policy by id or name, as `security_group_ids`.
    pub(crate) async fn qos_policy_id(&self, want: &str) -> Result<String> {
        self.id_by_name::<crate::neutron::QosPolicy>("QoS policy", want.trim(), |x| &x.id)
            .await
    }

    async fn id_by_name<T: crate::neutron::Resource>(
        &self,
        what: &str,
        g: &str,
        id: fn(&T) -> &String,
    ) -> Result<String> {
        if g.is_empty() {
            return Err(DriverError::BadRequest(format!("an empty {what} name")));
        }
        if uuid::Uuid::parse_str(g).is_ok() {
            return Ok(g.to_string());
        }
        let found: Vec<T> = self.neutron.list(&Filters::new().add("name", g)).await?;
        match found.as_slice() {
            [one] => Ok(id(one).clone()),
            [] => Err(DriverError::BadRequest(format!("no {what} is named {g:?}"))),
            _ => Err(DriverError::BadRequest(format!(
                "several {what}s are named {g:?}: give its id instead"
            ))),
        }
    }

    /// The port of an endpoint: cache, else by the endpoint's id tags.
    pub(crate) async fn endpoint_info(
        &self,
        docker_net_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<EndpointInfo>> {
        if let Some(e) = self.cache.endpoints.get(&endpoint_id.to_string()) {
            return Ok(Some(e));
        }
        let ports: Vec<Port> = self
            .neutron
            .list(&Filters::new().tags(&names::id_tags(endpoint_id)))
            .await?;
        match ports.len() {
            0 => self.endpoint_by_veth(docker_net_id, endpoint_id).await,
            1 => {
                let port = ports.into_iter().next().ok_or_else(|| {
                    DriverError::Internal("port list changed while reading".into())
                })?;
                Ok(Some(self.remember_found_endpoint(
                    docker_net_id,
                    endpoint_id,
                    port,
                )))
            }
            n => Err(DriverError::Conflict(format!(
                "{n} Neutron ports are tagged for endpoint {endpoint_id}"
            ))),
        }
    }

    /// An endpoint whose port is not tagged yet: its bookkeeping was to follow the
    /// CreateEndpoint answer when kuryr stopped. The host veth's alias names the endpoint
    /// and its name the port; the bookkeeping is written now.
    async fn endpoint_by_veth(
        &self,
        docker_net_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<EndpointInfo>> {
        let Some(veth) = self.plumber.veth_of_endpoint(endpoint_id).await? else {
            return Ok(None);
        };
        let short = &veth[names::HOST_VETH_PREFIX.len()..];
        let ports: Vec<Port> = self
            .neutron
            .list(
                &Filters::new()
                    .add("binding:host_id", self.cfg.host.as_str())
                    .add("device_owner", names::DEVICE_OWNER),
            )
            .await?;
        let Some(port) = ports
            .into_iter()
            // device_id already the endpoint's: the bookkeeping stopped between its update
            // and its tags.
            .find(|p| {
                p.id.starts_with(short) && (p.device_id.is_empty() || p.device_id == endpoint_id)
            })
        else {
            return Ok(None);
        };
        tracing::info!(endpoint = %endpoint_id, port = %port.id, "endpoint found by its veth: writing its bookkeeping");
        let mut tags = port.tags.clone();
        for t in names::id_tags(endpoint_id)
            .into_iter()
            .chain([names::TAG_KURYR_PORT.to_string()])
        {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let body = crate::neutron::PortBody {
            device_id: Some(endpoint_id.to_string()),
            name: Some(names::endpoint_port_name(endpoint_id)),
            ..Default::default()
        };
        let port = self
            .neutron
            .update_port_then_tags(&port.id, body, Some(&tags))
            .await
            .map_err(|f| f.error)?;
        Ok(Some(self.remember_found_endpoint(
            docker_net_id,
            endpoint_id,
            port,
        )))
    }

    /// An endpoint found in Neutron (not made by this process): whether it has an
    /// exposed-ports group is not known.
    fn remember_found_endpoint(
        &self,
        docker_net_id: &str,
        endpoint_id: &str,
        port: Port,
    ) -> EndpointInfo {
        let info = EndpointInfo {
            port,
            network_id: docker_net_id.to_string(),
            no_exposed_group: false,
            status_read_at: None,
        };
        self.cache
            .endpoints
            .put(endpoint_id.to_string(), info.clone());
        info
    }

    /// Drops cached facts about a Docker network.
    pub(crate) fn forget_network(&self, docker_net_id: &str) {
        self.cache.networks.remove(&docker_net_id.to_string());
    }
}

/// The subnet of `subnets` that contains `ip`.
pub(crate) fn subnet_for_ip(subnets: &[Subnet], ip: std::net::IpAddr) -> Option<&Subnet> {
    subnets.iter().find(|s| s.cidr.contains(&ip))
}

/// Whether a port was made by kuryr (ours to delete) rather than adopted.
pub fn kuryr_made(port: &Port) -> bool {
    if port.tags.iter().any(|t| t == names::TAG_PORT_EXISTING) {
        return false;
    }
    port.tags.iter().any(|t| t == names::TAG_KURYR_PORT)
        || port.name == names::UNBOUND_PORT_NAME
        || port.name == port_pool::POOL_PORT_NAME
        || (!port.device_id.is_empty() && port.name == names::endpoint_port_name(&port.device_id))
}

#[cfg(test)]
mod unit {
    use super::*;

    fn port(name: &str, tags: &[&str], device_id: &str) -> Port {
        Port {
            id: "p".into(),
            name: name.into(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            device_id: device_id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn ownership_of_ports() {
        assert!(kuryr_made(&port("kuryr-unbound-port", &[], "")));
        assert!(kuryr_made(&port("x", &["compute:kuryr"], "")));
        assert!(kuryr_made(&port("ep-port", &[], "ep")));
        assert!(!kuryr_made(&port("web-1", &[], "vm-uuid")));
        assert!(!kuryr_made(&port(
            "kuryr-unbound-port",
            &["compute:kuryr", "kuryr.port.existing"],
            ""
        )));
    }

    #[test]
    fn statuses() {
        assert_eq!(bad("x").status(), 400);
        assert_eq!(
            DriverError::from(NeutronError::Conflict("c".into())).status(),
            409
        );
        assert_eq!(DriverError::Internal("x".into()).status(), 500);
    }

    #[test]
    fn subnet_lookup_by_ip() {
        let s = vec![
            Subnet {
                id: "a".into(),
                cidr: "10.0.0.0/24".parse().unwrap(),
                ..Default::default()
            },
            Subnet {
                id: "b".into(),
                cidr: "fd00::/64".parse().unwrap(),
                ..Default::default()
            },
        ];
        assert_eq!(
            subnet_for_ip(&s, "fd00::5".parse().unwrap()).unwrap().id,
            "b"
        );
        assert_eq!(
            subnet_for_ip(&s, "10.0.0.9".parse().unwrap()).unwrap().id,
            "a"
        );
        assert!(subnet_for_ip(&s, "10.0.1.9".parse().unwrap()).is_none());
    }
}
