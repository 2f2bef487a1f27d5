//! NetworkDriver, network half: Docker networks are Neutron networks (new or adopted).

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::cache::NetInfo;
use super::{Driver, DriverError, Result};
use crate::names;
use crate::neutron::{Filters, Network, NetworkBody, NetworkId, Port, Subnet, SubnetId};
use crate::protocol::{validate, *};

/// Neutron's IPv6 address and RA modes (`ipv6_address_mode`, `ipv6_ra_mode`).
const IPV6_MODES: [&str; 3] = ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"];

/// One address family of a CreateNetwork request, validated.
pub(super) struct Family {
    pub(super) v6: bool,
    pub(super) pool: IpNet,
    /// The pool CIDR exactly as Docker sent it (the subnet's name carries it).
    pub(super) pool_text: String,
    pub(super) gateway: Option<std::net::IpAddr>,
}

/// The rollback record of CreateNetwork's steps: what to give back if a later one fails.
pub(super) enum NetUndo {
    /// Delete a network kuryr made.
    DeleteNetwork(NetworkId),
    /// Give an adopted network its tags back.
    RestoreTags(NetworkId, Vec<String>),
    DeleteSubnet(SubnetId),
    /// Take a pool's tag off an adopted subnet.
    UntagSubnet(SubnetId, String),
    /// Give IPAM back the network and subnet it made (their names and tags before).
    ReturnToIpam {
        net: (NetworkId, String, Vec<String>),
        subnet: (SubnetId, String, Vec<String>),
    },
}

/// Where CreateNetwork's Neutron network comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Origin {
    /// Made by this call.
    New,
    /// The user's, named by option: kept at removal.
    Adopted,
    /// The one kuryr's IPAM made to hold the pool's addresses before any network existed:
    /// a swarm manager allocates a service's addresses (RequestAddress) before a node
    /// creates the network. It becomes this Docker network's, addresses and all.
    FromIpam,
}

impl Driver {
    fn family(data: &[IpamData], v6: bool) -> Result<Option<Family>> {
        let Some(d) = data.first() else {
            return Ok(None);
        };
        if d.pool.is_empty() {
            return Ok(None);
        }
        let field = if v6 { "IPv6Data.Pool" } else { "IPv4Data.Pool" };
        let pool = validate::cidr(field, &d.pool)?;
        if pool.addr().is_ipv6() != v6 {
            return Err(super::bad(format!(
                "{field} {} is of the wrong IP version",
                d.pool
            )));
        }
        let gateway = if d.gateway.is_empty() {
            None
        } else {
            let (ip, _) = validate::ip_maybe_cidr("Gateway", &d.gateway)?;
            if !pool.contains(&ip) {
                return Err(super::bad(format!("Gateway {ip} is not in {}", d.pool)));
            }
            Some(ip)
        };
        Ok(Some(Family {
            v6,
            pool: pool.trunc(),
            pool_text: d.pool.clone(),
            gateway,
        }))
    }

    pub(super) fn net_option<'a>(opts: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
        opts.get(key).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub async fn create_network(&self, req: CreateNetworkRequest) -> Result<()> {
        let fams: Vec<Family> = [
            Self::family(&req.ipv4_data, false)?,
            Self::family(&req.ipv6_data, true)?,
        ]
        .into_iter()
        .flatten()
        .collect();
        let opts = generic_options(&req.options);
        let shared = Self::checked_options(&opts)?;
        let id = req.network_id.as_str();
        let _g = self.locks.lock(&format!("net:{id}")).await;
        // A retried call finds what the first one made.
        if self.net_info(id).await?.is_some() {
            return Ok(());
        }
        // Groups and pools first: nothing is created if one is missing.
        let ask = self.net_ask(&opts).await?;
        let mut pools = Vec::new();
        for f in &fams {
            pools.push(self.pool_for(f, &opts).await?);
        }
        let (net, origin, net_undo) = self.network_for(id, &opts, shared, &ask, &pools).await?;
        let adopted = origin == Origin::Adopted;
        crate::kill_point!("CreateNetwork.after_network");
        let subnets = match self.subnets_for(&net, origin, &fams, &pools, &opts).await {
            Ok(s) => s,
            Err(e) => return Err(self.undo_network(vec![net_undo], e).await),
        };
        let mut security_groups = names::sgs_from_tags(&net.tags);
        for g in ask.groups {
            if !security_groups.contains(&g) {
                security_groups.push(g);
            }
        }
        let info = NetInfo {
            security_groups,
            floating_network: ask.floating.or_else(|| names::fip_net_from_tags(&net.tags)),
            neutron_id: net.id,
            mtu: net.mtu,
            existing: adopted,
            project_id: net.project_id,
            physical_network: net.physical_network,
            subnets,
        };
        let kuryr_subnets: Vec<Subnet> = info
            .subnets
            .iter()
            .filter(|s| super::port_pool::eligible(s))
            .cloned()
            .collect();
        if self.nested().is_none() {
            let ask = super::port_pool::PoolAsk {
                subnets: &kuryr_subnets,
                groups: &info.security_groups,
            };
            self.port_pool.refill(&self.neutron, ask);
        }
        self.cache.networks.put(id.to_string(), info);
        Ok(())
    }

    /// `NetworkDriver.GwAllocCheck` (Docker 28+, before it reserves a new network's
    /// addresses). Neutron owns a subnet's gateway: a family is skipped when the options
    /// adopt an existing Neutron subnet that has none, so Docker records no gateway for
    /// it (rather than the `0.0.0.0/0` the reference's IPAM answers for one). Otherwise
    /// Docker reserves the gateway as before, and gets Neutron's (or, for a subnet kuryr
    /// makes, the one Neutron will give it): `docker network inspect` shows what
    /// Neutron has. Options naming no subnet cost no request.
    pub async fn gw_alloc_check(&self, req: GwAllocCheckRequest) -> Result<GwAllocCheckResponse> {
        let opts = generic_options(&req.options);
        Ok(GwAllocCheckResponse {
            skip_ipv4: self.adopted_without_gateway(&opts, false).await?,
            skip_ipv6: self.adopted_without_gateway(&opts, true).await?,
        })
    }

    /// Whether the options name an existing subnet of this family without a gateway.
    /// A subnet that does not exist is not skipped: CreateNetwork says it is missing.
    async fn adopted_without_gateway(
        &self,
        opts: &BTreeMap<String, String>,
        v6: bool,
    ) -> Result<bool> {
        let fam = if v6 { ".v6" } else { "" };
        let version = if v6 { 6 } else { 4 };
        let uuid_key = format!("neutron.subnet{fam}.uuid");
        let subnet = if let Some(id) = Self::net_option(opts, &uuid_key) {
            validate::uuid(&uuid_key, id)?;
            match self.neutron.get::<Subnet>(id).await {
                Ok(s) => Some(s),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            }
        } else if let Some(name) = Self::net_option(opts, &format!("neutron.subnet{fam}.name")) {
            let found: Vec<Subnet> = self
                .neutron
                .list(
                    &Filters::new()
                        .add("name", name)
                        .add("ip_version", version.to_string()),
                )
                .await?;
            // A name several subnets share names none of them.
            match <[Subnet; 1]>::try_from(found) {
                Ok([s]) => Some(s),
                Err(_) => None,
            }
        } else {
            None
        };
        Ok(subnet.is_some_and(|s| s.ip_version == version && s.gateway_ip.is_none()))
    }

    /// Checks the options' ids and flags before anything is read; whether the network
    /// is to be shared.
    fn checked_options(opts: &BTreeMap<String, String>) -> Result<bool> {
        for k in [
            "neutron.net.uuid",
            "neutron.pool.uuid",
            "neutron.pool.v6.uuid",
            "neutron.subnet.uuid",
            "neutron.subnet.v6.uuid",
        ] {
            if let Some(v) = Self::net_option(opts, k) {
                validate::uuid(k, v)?;
            }
        }
        for k in [
            "neutron.subnet.v6.address_mode",
            "neutron.subnet.v6.ra_mode",
        ] {
            if let Some(v) = Self::net_option(opts, k) {
                if !IPV6_MODES.contains(&v) {
                    return Err(super::bad(format!(
                        "{k} {v:?} is not one of {}",
                        IPV6_MODES.join(", ")
                    )));
                }
            }
        }
        match opts.get("neutron.net.shared") {
            None => Ok(false),
            Some(v) => crate::config::parse_bool(v)
                .ok_or_else(|| super::bad(format!("neutron.net.shared {v:?} is not a boolean"))),
        }
    }

    /// The groups, QoS policy and external network the options name, as ids.
    async fn net_ask(&self, opts: &BTreeMap<String, String>) -> Result<NetAsk> {
        let groups = match opts.get(SECURITY_GROUPS_OPTION) {
            Some(v) => self.security_group_ids(&split_list(v)).await?,
            None => Vec::new(),
        };
        let qos = match opts.get(QOS_POLICY_OPTION) {
            Some(v) => Some(self.qos_policy_id(v).await?),
            None => None,
        };
        let floating = match opts.get(FLOATING_NETWORK_OPTION) {
            Some(v) => Some(self.external_network_id(v).await?),
            None => None,
        };
        Ok(NetAsk {
            groups,
            qos,
            floating,
        })
    }

    /// The Neutron network: the one named by option (adopted: tagged for this Docker
    /// network), else the one IPAM made for the pool (swarm), else a new one. Also: where
    /// it came from, and how to undo this step.
    async fn network_for(
        &self,
        id: &str,
        opts: &BTreeMap<String, String>,
        shared: bool,
        ask: &NetAsk,
        pools: &[Option<String>],
    ) -> Result<(Network, Origin, NetUndo)> {
        let qos = ask.qos.as_deref();
        let existing = match (
            Self::net_option(opts, "neutron.net.uuid"),
            Self::net_option(opts, "neutron.net.name"),
        ) {
            (Some(uuid), _) => Some(
                self.network_by(Filters::new().add("id", uuid), uuid)
                    .await?,
            ),
            (None, Some(name)) => Some(
                self.network_by(Filters::new().add("name", name), name)
                    .await?,
            ),
            (None, None) => None,
        };
        let mut id_tags = names::id_tags(id);
        id_tags.extend(names::sg_tags(&ask.groups));
        if let Some(f) = &ask.floating {
            id_tags.push(format!("{}{f}", names::TAG_FIP_NET));
        }
        let held = self.ipam_held(id, pools).await?;
        if let (Some(net), Some(h)) = (&existing, &held) {
            // The manager's reservations are ports of IPAM's network; a user's network
            // cannot take them over, and ports left there would leak.
            return Err(super::bad(format!(
                "swarm network {id}: its manager already reserved addresses of the pool on \
                 kuryr's network {}, which cannot move to Neutron network {}: name the \
                 network's subnet to the IPAM driver too (--ipam-opt \
                 neutron.subnet.uuid=<subnet>), so the manager reserves them there, or \
                 create the swarm network without neutron.net.uuid/neutron.net.name",
                h.network_id, net.id
            )));
        }
        let Some(net) = existing else {
            // Made (or taken over from IPAM) here: another host's `kuryr gc` leaves it.
            id_tags.push(names::host_tag(&self.cfg.host));
            if let Some(held) = held {
                let (net, undo) = self.take_from_ipam(id, held, &id_tags, qos, shared).await?;
                return Ok((net, Origin::FromIpam, undo));
            }
            let (net, undo) = self.new_network(id, shared, qos, &id_tags).await?;
            return Ok((net, Origin::New, undo));
        };
        if opts.contains_key("neutron.net.shared") && net.shared != shared {
            return Err(DriverError::Conflict(format!(
                "Neutron network {} has shared={} but neutron.net.shared={shared} was asked",
                net.id, net.shared
            )));
        }
        // A network kuryr did not make keeps its policy: kuryr would have to put the
        // user's back at removal, and other ports on it would change with it.
        if let Some(q) = qos {
            if net.qos_policy_id.as_deref() != Some(q) {
                return Err(DriverError::Conflict(format!(
                    "Neutron network {} is not kuryr's and its QoS policy is {}, not {q}: set \
                     its qos_policy_id in Neutron, or give the policy to each container \
                     (--driver-opt {QOS_POLICY_OPTION}=...)",
                    net.id,
                    net.qos_policy_id.as_deref().unwrap_or("none")
                )));
            }
        }
        id_tags.push(names::existing_net_tag(id));
        let mut tags = net.tags.clone();
        for t in &id_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        self.neutron.replace_tags::<Network>(&net.id, &tags).await?;
        let undo = NetUndo::RestoreTags(net.id.clone(), net.tags.clone());
        Ok((net, Origin::Adopted, undo))
    }

    /// A network of kuryr's for Docker network `id`, tagged with `tags`.
    async fn new_network(
        &self,
        id: &str,
        shared: bool,
        qos: Option<&str>,
        tags: &[String],
    ) -> Result<(Network, NetUndo)> {
        let body = NetworkBody {
            shared: Some(shared),
            // On the network itself: Neutron applies it to every port without a policy
            // of its own, so a container start costs no request for it.
            qos_policy_id: qos.map(str::to_string),
            ..NetworkBody::named(names::network_name(id))
        };
        let net: Network = self.neutron.create(body).await?;
        let undo = NetUndo::DeleteNetwork(net.id.clone());
        if let Err(e) = self.neutron.replace_tags::<Network>(&net.id, tags).await {
            return Err(self.undo_network(vec![undo], e.into()).await);
        }
        Ok((net, undo))
    }

    /// Undoes CreateNetwork steps, last first; every one is tried, and what could not be
    /// undone is added to `error`, which is returned.
    pub(super) async fn undo_network(&self, undo: Vec<NetUndo>, error: DriverError) -> DriverError {
        crate::deadline::undo(self.undo_network_now(undo, error)).await
    }

    async fn undo_network_now(&self, undo: Vec<NetUndo>, error: DriverError) -> DriverError {
        let mut failures: Vec<DriverError> = Vec::new();
        for u in undo.into_iter().rev() {
            let r = match &u {
                NetUndo::DeleteNetwork(n) => self.neutron.delete_if_exists::<Network>(n).await,
                NetUndo::RestoreTags(n, tags) => {
                    self.neutron.replace_tags::<Network>(n, tags).await
                }
                NetUndo::DeleteSubnet(s) => self.neutron.delete_if_exists::<Subnet>(s).await,
                NetUndo::UntagSubnet(s, t) => self.neutron.remove_tag::<Subnet>(s, t).await,
                NetUndo::ReturnToIpam { net, subnet } => self.return_to_ipam(net, subnet).await,
            };
            if let Err(e) = r {
                failures.push(e.into());
            }
        }
        error.rolled_back_with(failures)
    }

    async fn network_by(&self, filters: Filters, what: &str) -> Result<Network> {
        let mut nets: Vec<Network> = self.neutron.list(&filters).await?;
        match nets.len() {
            0 => Err(DriverError::NotFound(format!(
                "Specified network id/name({what}) does not exist."
            ))),
            1 => Ok(nets.remove(0)),
            n => Err(DriverError::Conflict(format!(
                "{n} Neutron networks match {what}"
            ))),
        }
    }

    pub async fn delete_network(&self, req: NetworkRequest) -> Result<()> {
        let id = req.network_id.as_str();
        let _g = self.locks.lock(&format!("net:{id}")).await;
        let Some(info) = self.net_info(id).await? else {
            tracing::warn!(network = %id, "DeleteNetwork: no Neutron network is tagged for it; nothing to do");
            return Ok(());
        };
        self.forget_network(id);
        let net: Network = match self.neutron.get(&info.neutron_id).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // A swarm network is one Docker network on every node: a node leaving it (its
        // tasks gone, drained) must not take what tasks on other nodes still use.
        if crate::protocol::is_swarm_id(id) && self.other_nodes_on(&net.id).await? {
            self.port_pool.drain(&self.neutron, &info.neutron_id).await;
            tracing::info!(network = %info.neutron_id, "swarm network: tasks of other nodes are still on it; kept for them");
            return Ok(());
        }
        // Docker networks on other hosts (or other Docker networks here) naming the same
        // Neutron network: it, its kuryr subnets and their ports stay theirs.
        let shared = names::used_by_other_docker_networks(&net.name, &net.tags, &[id.to_string()]);
        if info.existing || shared {
            self.leave_network(id, &info, net, shared).await?;
            return Ok(());
        }
        match self
            .neutron
            .add_tag::<Network>(&info.neutron_id, names::TAG_DELETING)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.port_pool.drain(&self.neutron, &info.neutron_id).await;
        self.remove_own_network(&info.neutron_id, &info.subnets)
            .await?;
        Ok(())
    }

    /// Whether a kuryr port on the Neutron network is bound to another host: on a swarm
    /// network, another node's task.
    pub(super) async fn other_nodes_on(&self, net_id: &str) -> Result<bool> {
        let ports: Vec<Port> = self
            .neutron
            .list(
                &Filters::new()
                    .add("network_id", net_id)
                    .add("device_owner", names::DEVICE_OWNER),
            )
            .await?;
        Ok(ports
            .iter()
            .any(|p| !p.host_id.is_empty() && p.host_id != self.cfg.host))
    }

    /// DeleteNetwork of a Neutron network kuryr adopted or another Docker network still
    /// uses: only this Docker network's subnets (when nobody else's) and tags go.
    async fn leave_network(
        &self,
        id: &str,
        info: &NetInfo,
        net: Network,
        shared: bool,
    ) -> Result<()> {
        if shared {
            tracing::info!(network = %info.neutron_id, "still used by another Docker network (another host?): only this network's tags go");
        }
        // Adopted: only our subnets and our tags go.
        let subnets: Vec<Subnet> = if shared {
            Vec::new()
        } else {
            self.neutron
                .list(&Filters::new().add("network_id", &info.neutron_id))
                .await?
        };
        // A swarm network on a user's subnet: kuryr's reservations on it (the manager's,
        // whose releases may come after this) go, as on a subnet of kuryr's.
        if crate::protocol::is_swarm_id(id) {
            for s in subnets
                .iter()
                .filter(|s| !s.name.starts_with(names::SUBNET_NAME_PREFIX))
            {
                self.sweep_ports(Filters::new().add("fixed_ips", format!("subnet_id={}", s.id)))
                    .await;
            }
        }
        for s in subnets
            .iter()
            .filter(|s| s.name.starts_with(names::SUBNET_NAME_PREFIX))
        {
            self.sweep_ports(Filters::new().add("fixed_ips", format!("subnet_id={}", s.id)))
                .await;
            if let Err(e) = self.neutron.delete_if_exists::<Subnet>(&s.id).await {
                tracing::warn!(subnet = %s.id, error = %e, "could not delete kuryr subnet of adopted network");
                continue;
            }
            // Docker released the pool before this call while the subnet was still
            // another host's: its kuryr pool, now empty, goes with the subnet.
            if let Some(pool_id) = s.subnetpool_id.as_deref() {
                self.delete_empty_kuryr_pool(pool_id).await;
            }
        }
        // Made by a Docker network (another host's) that has left: the last user
        // removes it, as its creator would have.
        if !shared
            && info.existing
            && names::is_kuryr_net_name(&net.name)
            && !names::creator_present(&net.name, &net.tags)
        {
            self.neutron
                .delete_if_exists::<Network>(&info.neutron_id)
                .await?;
            return Ok(());
        }
        let mut drop_tags = names::id_tags(id);
        drop_tags.push(names::existing_net_tag(id));
        // The groups go with the last Docker network on it (several hosts share them).
        let keep: Vec<String> = net
            .tags
            .into_iter()
            .filter(|t| {
                !drop_tags.contains(t)
                    && (shared
                        || !(t.starts_with(names::TAG_SG) || t.starts_with(names::TAG_FIP_NET)))
            })
            .collect();
        self.neutron
            .replace_tags::<Network>(&info.neutron_id, &keep)
            .await?;
        Ok(())
    }

    /// The end of a DeleteNetwork of a network kuryr made: its ports, the network (Neutron
    /// deletes its subnets and DHCP ports with it) and its emptied kuryr pools.
    async fn remove_own_network(&self, neutron_id: &str, subnets: &[Subnet]) -> Result<()> {
        self.sweep_ports(Filters::new().add("network_id", neutron_id))
            .await;
        crate::kill_point!("DeleteNetwork.after_ports");
        self.neutron.delete_if_exists::<Network>(neutron_id).await?;
        // Docker calls ReleasePool first; a pool it kept then (its subnet was still there,
        // e.g. a restarted kuryr could not tell whose Docker network used it) is empty now.
        for pool_id in subnets.iter().filter_map(|s| s.subnetpool_id.as_deref()) {
            self.delete_empty_kuryr_pool(pool_id).await;
        }
        Ok(())
    }

    /// The networks whose DeleteNetwork a killed kuryr left half-done (marked
    /// `kuryr.net.deleting`). Looked for once at start.
    pub async fn interrupted_deletes(&self) -> Vec<Network> {
        match self
            .neutron
            .list(&Filters::new().tags(&[names::TAG_DELETING]))
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for interrupted network deletes");
                Vec::new()
            }
        }
    }

    /// Finishes those deletes.
    pub async fn finish_deletes(&self, nets: Vec<Network>) {
        for net in nets {
            let subnets: Vec<Subnet> = match self
                .neutron
                .list(&Filters::new().add("network_id", &net.id))
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(network = %net.id, error = %e, "cannot finish its delete");
                    continue;
                }
            };
            tracing::info!(network = %net.id, "finishing a network delete a previous kuryr left half-done");
            if let Err(e) = self.remove_own_network(&net.id, &subnets).await {
                tracing::warn!(network = %net.id, error = %e, "cannot finish its delete");
            }
        }
    }
}

/// CreateNetwork and CreateEndpoint option: security groups (names or ids, comma
/// separated) of the ports; a container's replace its network's.
pub(crate) const SECURITY_GROUPS_OPTION: &str = "neutron.security_groups";

/// Network and endpoint option: the external network (name or id) each container gets a
/// floating IP from; kuryr allocates it and releases it with the container.
pub(crate) const FLOATING_NETWORK_OPTION: &str = "neutron.floating_network";
/// Endpoint option: a floating IP (its address) the user allocated, associated with the
/// container's port and only disassociated at its removal.
pub(crate) const FLOATING_IP_OPTION: &str = "neutron.floating_ip";

/// What a CreateNetwork's options ask of Neutron beyond the network: resolved before
/// anything is made.
struct NetAsk {
    groups: Vec<String>,
    qos: Option<String>,
    floating: Option<String>,
}

/// Network and endpoint option: a QoS policy (name or id). On a network kuryr makes it is
/// the network's `qos_policy_id`; on a container, its port's (which Neutron puts first).
pub(crate) const QOS_POLICY_OPTION: &str = "neutron.qos_policy";

/// `a, b,c d` -> `[a, b, c, d]`: commas or spaces (the docker CLI splits a
/// `--driver-opt` value at its commas, so a container's list needs spaces).
pub(crate) fn split_list(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}
