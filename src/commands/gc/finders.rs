//! The finders of `kuryr gc`, one per kind of leak: ports bound here, CNI attachments,
//! stray reservations, what a nested kuryr left on its VM port, veths, exposed groups,
//! networks, pools and floating IPs.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::driver::nested::{NestedKind, PortDriver};
use crate::host::Plumbing;
use crate::names;
use crate::neutron::{
    Filters, FloatingIp, Network, NetworkId, Neutron, Port, PortId, SecurityGroup, Subnet,
    SubnetPool,
};

use super::{age, neutron_err, Leak, Live};

/// One finder per kind of leak; `doomed` collects the ports found so far, which later
/// finders treat as gone (their veths, groups and networks go with them).
pub(super) struct Finder<'a> {
    pub(super) cfg: &'a Config,
    pub(super) neutron: &'a Neutron,
    pub(super) host: &'a dyn Plumbing,
    pub(super) live: &'a Live,
    pub(super) grace: Duration,
    pub(super) doomed: HashSet<PortId>,
    pub(super) leaks: Vec<Leak>,
}

impl Finder<'_> {
    /// Floating IPs kuryr allocated (its description) whose port is gone: Neutron took
    /// them off the port, kuryr's release never came. A user's are never touched.
    pub(super) async fn floating_ips(&mut self) -> Result<(), String> {
        let ext = self.neutron.extensions().await.map_err(neutron_err)?;
        if !ext.has("router") {
            return Ok(());
        }
        let fips: Vec<FloatingIp> = self
            .neutron
            .list(&Filters::new())
            .await
            .map_err(neutron_err)?;
        for f in fips {
            if !f.description.starts_with(names::FIP_DESCRIPTION_PREFIX) {
                continue;
            }
            let why = match f.port_id.as_deref() {
                None => "kuryr allocated it for an endpoint; its port is gone".to_string(),
                Some(p) if self.doomed.contains(p) => format!("its port {p} is removed"),
                Some(_) => continue,
            };
            self.leaks.push(Leak::FloatingIp { id: f.id, why });
        }
        Ok(())
    }

    pub(super) fn doom_port(&mut self, id: PortId, why: String) {
        self.doomed.insert(id.clone());
        self.leaks.push(Leak::Port { id, why });
    }

    /// Ports bound to this host whose Docker endpoint is gone.
    pub(super) async fn bound_ports(&mut self) -> Result<(), String> {
        // Raw JSON for updated_at, which the typed Port does not keep.
        let ports: Vec<Value> = self
            .neutron
            .list_raw(
                "ports",
                &Filters::new()
                    .add("device_owner", names::DEVICE_OWNER)
                    .add("binding:host_id", self.cfg.host.as_str()),
            )
            .await
            .map_err(neutron_err)?;
        for raw in ports {
            let Ok(port) = serde_json::from_value::<Port>(raw.clone()) else {
                continue;
            };
            // A port changed within the grace period may be an endpoint Docker is creating
            // right now (not in its view yet).
            if self.recent(&raw) {
                continue;
            }
            // A CNI attachment: Docker does not know it (`cni_attachments` judges it).
            if port.tags.iter().any(|t| t == names::TAG_CNI) {
                continue;
            }
            let ep = names::id_from_tags(&port.tags);
            let gone = match &ep {
                Some(ep) => !self.live.endpoints.contains(ep),
                None => {
                    port.device_id.len() == 64 && !self.live.endpoints.contains(&port.device_id)
                }
            };
            if gone && crate::driver::kuryr_made(&port) {
                let why = format!(
                    "endpoint {} is not in Docker",
                    ep.unwrap_or(port.device_id.clone())
                );
                self.doom_port(port.id, why);
            }
        }
        Ok(())
    }

    /// CNI attachments of this host whose container is gone without a DEL: the kernel
    /// deletes a veth whose namespace ends, so a port whose host veth is gone serves
    /// nobody. (Docker does not know these containers; the runtime's CNI GC removes the
    /// others it no longer has.)
    pub(super) async fn cni_attachments(&mut self) -> Result<(), String> {
        let ports: Vec<Value> = self
            .neutron
            .list_raw(
                "ports",
                &Filters::new()
                    .add("binding:host_id", self.cfg.host.as_str())
                    .tags(&[names::TAG_CNI]),
            )
            .await
            .map_err(neutron_err)?;
        for raw in ports {
            let Ok(port) = serde_json::from_value::<Port>(raw.clone()) else {
                continue;
            };
            // An ADD under way has made its port and not its veth yet.
            if self.recent(&raw) {
                continue;
            }
            let veth = names::host_veth(&port.id);
            let gone = self
                .host
                .link_mac(&veth)
                .await
                .map_err(|e| e.to_string())?
                .is_none();
            if gone {
                let why = format!(
                    "CNI attachment of container {}: its interface {veth} is gone (the container ended without a CNI DEL)",
                    port.device_id
                );
                self.doom_port(port.id, why);
            }
        }
        Ok(())
    }

    /// Created or changed within the grace period.
    pub(super) fn recent(&self, raw: &Value) -> bool {
        let changed = raw.get("updated_at").or_else(|| raw.get("created_at"));
        changed.and_then(age).is_some_and(|a| a < self.grace)
    }

    /// IPAM's reservations that never became an endpoint (a crash in between).
    pub(super) async fn stray_reservations(&mut self) -> Result<(), String> {
        // Raw JSON for created_at, which the typed Port does not keep.
        let unbound: Vec<Value> = self
            .neutron
            .list_raw(
                "ports",
                &Filters::new().add("name", names::UNBOUND_PORT_NAME),
            )
            .await
            .map_err(neutron_err)?;
        for p in &unbound {
            let Ok(port) = serde_json::from_value::<Port>(p.clone()) else {
                continue;
            };
            // RequestAddress binds kuryr's ports to this host ahead of CreateEndpoint: one
            // with no endpoint is stray only once no veth of it is here either.
            let other_host = !port.host_id.is_empty() && port.host_id != self.cfg.host;
            let plugged = !port.host_id.is_empty()
                && self
                    .host
                    .link_mac(&names::host_veth(&port.id))
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some();
            if !port.device_id.is_empty()
                || other_host
                || plugged
                || port.tags.iter().any(|t| t == names::TAG_PORT_EXISTING)
                || age(&p["created_at"]).is_none_or(|a| a <= self.grace)
                || names::id_from_tags(&port.tags).is_some()
            {
                continue;
            }
            // Under Docker's own bridge driver IPAM ports never get an endpoint: only
            // those on networks kuryr's driver made are known to be stray.
            let on_kuryr_net = match self.neutron.get::<Network>(&port.network_id).await {
                Ok(n) => names::id_from_tags(&n.tags).is_some(),
                Err(_) => false,
            };
            if on_kuryr_net {
                let why = format!(
                    "address reserved more than {} s ago, never bound",
                    self.grace.as_secs()
                );
                self.doom_port(port.id, why);
            }
        }
        Ok(())
    }

    /// Nested (kuryr in a VM): container ports are never bound; they hang off the VM's
    /// port as address pairs (macvlan/ipvlan) or trunk subports (vlan).
    pub(super) async fn nested(&mut self) -> Result<(), String> {
        let PortDriver::Nested { link_iface, kind } =
            crate::driver::nested::port_driver(self.cfg).map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let found = nested_leaks(
            self.neutron,
            self.host,
            &link_iface,
            kind,
            &self.live.endpoints,
        )
        .await?;
        for l in &found {
            if let Leak::Port { id, .. } = l {
                self.doomed.insert(id.clone());
            }
        }
        self.leaks.extend(found);
        Ok(())
    }

    /// Veths `tap<port[0:11]>` / `t_c<port[0:11]>` with no port behind them, and OVS
    /// ports kuryr plugged whose port or device is gone. Asks Neutron for this host's
    /// ports only: the cloud's whole port list is read only when a veth here matches none
    /// of them (Neutron has no filter by id prefix), so the cost follows this host.
    pub(super) async fn veths(&mut self) -> Result<(), String> {
        // (interface, the port id prefix in its name)
        let mut links: Vec<(String, String)> = Vec::new();
        // Hybrid plug's bridge and veth pair (qbr, qvb, qvo) are named after the port too.
        for prefix in [
            names::HOST_VETH_PREFIX,
            names::CONTAINER_VETH_PREFIX,
            "qbr",
            "qvb",
            "qvo",
        ] {
            let found = self
                .host
                .links_with_prefix(prefix)
                .await
                .map_err(|e| e.to_string())?;
            for name in found {
                let short = name[prefix.len()..].to_string();
                if short.len() == 11 {
                    links.push((name, short));
                }
            }
        }
        let ovs = self
            .host
            .ovs_interfaces()
            .await
            .map_err(|e| e.to_string())?;
        if links.is_empty() && ovs.is_empty() {
            return Ok(());
        }
        // A doomed port's veth goes with it.
        let mut live: HashSet<PortId> = self.port_ids(self.here()).await?;
        live.retain(|id| !self.doomed.contains(id));
        let short = |id: &str| id.chars().take(11).collect::<String>();
        let mut prefixes: HashSet<String> = live.iter().map(|id| short(id)).collect();
        // A veth of a port bound elsewhere or not yet bound (an endpoint being made).
        if links.iter().any(|(_, s)| !prefixes.contains(s)) {
            let all = self.port_ids(Filters::new()).await?;
            prefixes.extend(
                all.iter()
                    .filter(|id| !self.doomed.contains(*id))
                    .map(|id| short(id)),
            );
            live.extend(all.into_iter().filter(|id| !self.doomed.contains(id)));
        }
        for (name, short) in links {
            if !prefixes.contains(&short) {
                self.leaks.push(Leak::Veth {
                    name,
                    why: "no Neutron port behind it".into(),
                });
            }
        }
        // OVS ports kuryr plugged outlive their veth (the veth deleted behind kuryr's
        // back, or with a container's namespace): one whose device is gone, or whose
        // port is, goes. One whose veth is a leak already goes with it. They name their
        // whole port id, so the ports not bound here are asked by id.
        let unknown: Vec<&str> = ovs
            .iter()
            .map(|(i, _)| i.port_id.as_str())
            .filter(|id| !live.contains(*id))
            .collect();
        let found = self.existing_ports(&unknown).await?;
        live.extend(found.into_iter().filter(|id| !self.doomed.contains(id)));
        for (iface, exists) in ovs {
            let why = if !live.contains(iface.port_id.as_str()) {
                "an OVS port of kuryr's with no Neutron port behind it"
            } else if !exists {
                "an OVS port of kuryr's whose device is gone"
            } else {
                continue;
            };
            if !self
                .leaks
                .iter()
                .any(|l| matches!(l, Leak::Veth { name, .. } if *name == iface.name))
            {
                self.leaks.push(Leak::OvsPort {
                    name: iface.name,
                    why: why.into(),
                });
            }
        }
        Ok(())
    }

    /// Exposed-port groups whose port is gone. The ports the groups name are asked by
    /// id, not found in a list of the cloud's ports.
    pub(super) async fn exposed_groups(&mut self) -> Result<(), String> {
        let groups: Vec<SecurityGroup> = self
            .neutron
            .list(&Filters::new().add("description", names::SG_DESCRIPTION))
            .await
            .map_err(neutron_err)?;
        let named: Vec<(SecurityGroup, String)> = groups
            .into_iter()
            .filter_map(|g| {
                let port = g.name.strip_suffix("-exposed_ports")?.to_string();
                Some((g, port))
            })
            .collect();
        let asked: Vec<&str> = named.iter().map(|(_, p)| p.as_str()).collect();
        let existing = self.existing_ports(&asked).await?;
        for (g, port) in named {
            if !existing.contains(port.as_str()) || self.doomed.contains(port.as_str()) {
                self.leaks.push(Leak::SecurityGroup {
                    id: g.id,
                    why: format!("port {port} is gone"),
                });
            }
        }
        Ok(())
    }

    /// Filters for this host's ports.
    fn here(&self) -> Filters {
        Filters::new().add("binding:host_id", self.cfg.host.as_str())
    }

    /// The ids of the ports `filters` select (ids only: the answer stays small).
    async fn port_ids(&self, filters: Filters) -> Result<HashSet<PortId>, String> {
        let ports: Vec<Port> = self
            .neutron
            .list(&filters.add("fields", "id"))
            .await
            .map_err(neutron_err)?;
        Ok(ports.into_iter().map(|p| p.id).collect())
    }

    /// Which of `ids` Neutron has: asked by id, in batches that keep the request line
    /// short, so the cost follows the ids asked and not the cloud.
    async fn existing_ports(&self, ids: &[&str]) -> Result<HashSet<PortId>, String> {
        const BATCH: usize = 40;
        let mut out = HashSet::new();
        let unique: Vec<&str> = ids
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in unique.chunks(BATCH) {
            let f = chunk.iter().fold(Filters::new(), |f, id| f.add("id", *id));
            out.extend(self.port_ids(f).await?);
        }
        Ok(out)
    }

    /// kuryr networks (not adopted ones) whose Docker network is gone; only those without
    /// ports bound elsewhere, since another host may use them.
    pub(super) async fn networks(&mut self) -> Result<(), String> {
        let all_nets: Vec<Value> = self
            .neutron
            .list_raw("networks", &Filters::new())
            .await
            .map_err(neutron_err)?;
        for raw in all_nets {
            let Ok(n) = serde_json::from_value::<Network>(raw.clone()) else {
                continue;
            };
            // Docker may be creating it right now (CreateNetwork not answered yet).
            if self.recent(&raw) {
                continue;
            }
            let Some(docker_id) = names::id_from_tags(&n.tags) else {
                continue;
            };
            let adopted = n
                .tags
                .iter()
                .any(|t| t.starts_with(names::TAG_NET_EXISTING));
            if adopted
                || !n.name.starts_with(names::NET_NAME_PREFIX)
                || self.live.networks.contains(&docker_id)
            {
                continue;
            }
            // Only this host's: a network another host's kuryr made serves that host's
            // Docker, which this one cannot see. One that names no host (made by the
            // Python reference or a kuryr before the tag) is left too: it may be either.
            let here = names::host_tag(&self.cfg.host);
            if !n.tags.contains(&here) {
                if !n.tags.iter().any(|t| t.starts_with(names::TAG_HOST)) {
                    tracing::info!(network = %n.id, "not this host's Docker network, but no kuryr.host tag says which host made it: left alone (delete it yourself if no host uses it)");
                }
                continue;
            }
            let in_use: Vec<Port> = self
                .neutron
                .list(
                    &Filters::new()
                        .add("network_id", &n.id)
                        .add("device_owner", names::DEVICE_OWNER),
                )
                .await
                .map_err(neutron_err)?;
            // Pool ports (no endpoint) of a network Docker no longer has go with it.
            for p in &in_use {
                let pooled = crate::driver::port_pool::is_free_pool_port(p)
                    && (p.host_id.is_empty() || p.host_id == self.cfg.host);
                if pooled && !self.doomed.contains(&p.id) {
                    self.doom_port(p.id.clone(), "pool port of a network Docker removed".into());
                }
            }
            if in_use.iter().all(|p| self.doomed.contains(&p.id)) {
                self.leaks.push(Leak::Network {
                    id: n.id,
                    why: format!("Docker network {} is gone", names::short_id(&docker_id)),
                });
            }
        }
        Ok(())
    }

    /// kuryr pools older than the grace period with no subnet, or whose only subnets are
    /// on networks this pass removes (Neutron deletes those subnets with their network,
    /// and `apply` orders pools after networks): one pass, such as `reconcile_on_start`'s,
    /// takes the pool with its network.
    pub(super) async fn pools(&mut self) -> Result<(), String> {
        let pools: Vec<Value> = self
            .neutron
            .list_raw("subnetpools", &Filters::new())
            .await
            .map_err(neutron_err)?;
        let leaked_nets: HashSet<NetworkId> = self
            .leaks
            .iter()
            .filter_map(|l| match l {
                Leak::Network { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        let prefix = format!("{}-", self.cfg.subnetpool_name_prefix);
        for p in pools {
            let Ok(pool) = serde_json::from_value::<SubnetPool>(p.clone()) else {
                continue;
            };
            if !pool.name.starts_with(&prefix)
                || pool.tags.iter().any(|t| t == names::TAG_POOL_EXISTING)
                || age(&p["created_at"]).is_none_or(|a| a <= self.grace)
            {
                continue;
            }
            let subnets: Vec<Subnet> = self
                .neutron
                .list(&Filters::new().add("subnetpool_id", &pool.id))
                .await
                .map_err(neutron_err)?;
            let why = if subnets.is_empty() {
                "kuryr pool without a subnet"
            } else if subnets.iter().all(|s| leaked_nets.contains(&s.network_id)) {
                "kuryr pool whose subnets go with their leaked network"
            } else {
                continue;
            };
            self.leaks.push(Leak::Pool {
                id: pool.id,
                why: why.into(),
            });
        }
        Ok(())
    }
}

/// What a nested endpoint whose Docker endpoint is gone left on the VM's port: its pairs
/// or its subport, and its port when kuryr made it. Only ports tagged for an endpoint
/// are looked at: the VM's own pairs (a VIP, say) are never touched.
async fn nested_leaks(
    neutron: &Neutron,
    host: &dyn Plumbing,
    link_iface: &str,
    kind: NestedKind,
    live_eps: &HashSet<String>,
) -> Result<Vec<Leak>, String> {
    let e = |e: crate::neutron::NeutronError| e.to_string();
    let vm = crate::driver::nested::find_vm_port(neutron, host, link_iface)
        .await
        .map_err(|e| e.to_string())?;
    // (container port, what it is attached by)
    let mut attached: Vec<(Port, Leak)> = Vec::new();
    match kind {
        NestedKind::Vlan => {
            let Some(details) = &vm.trunk_details else {
                return Ok(Vec::new());
            };
            for sp in &details.sub_ports {
                match neutron.get::<Port>(&sp.port_id).await {
                    Ok(p) => attached.push((
                        p,
                        Leak::Subport {
                            trunk: details.trunk_id.clone(),
                            port: sp.port_id.clone(),
                            why: String::new(),
                        },
                    )),
                    Err(err) if err.is_not_found() => {}
                    Err(err) => return Err(err.to_string()),
                }
            }
        }
        NestedKind::Macvlan | NestedKind::Ipvlan => {
            for pair in &vm.allowed_address_pairs {
                let holders: Vec<Port> = neutron
                    .list(
                        &Filters::new()
                            .add("network_id", &vm.network_id)
                            .add("fixed_ips", format!("ip_address={}", pair.ip_address)),
                    )
                    .await
                    .map_err(e)?;
                for p in holders {
                    attached.push((
                        p,
                        Leak::VmPair {
                            vm_port: vm.id.clone(),
                            ip: pair.ip_address.clone(),
                            why: String::new(),
                        },
                    ));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (port, mut leak) in attached {
        let Some(ep) = names::id_from_tags(&port.tags) else {
            continue;
        };
        if live_eps.contains(&ep) {
            continue;
        }
        let why = format!("endpoint {} is not in Docker", names::short_id(&ep));
        match &mut leak {
            Leak::VmPair { why: w, .. } | Leak::Subport { why: w, .. } => *w = why.clone(),
            _ => {}
        }
        out.push(leak);
        if crate::driver::kuryr_made(&port)
            && !out
                .iter()
                .any(|l| matches!(l, Leak::Port { id, .. } if *id == port.id))
        {
            out.push(Leak::Port { id: port.id, why });
        }
    }
    Ok(out)
}
