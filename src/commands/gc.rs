//! `kuryr gc`: finds what kuryr left behind (a crash, a Docker that removed a network
//! whose deletion failed) and, with `--apply`, removes it. Only things this host owns are
//! touched: ports bound to this host, veths on this host.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::config::Config;
use crate::docker::Docker;
use crate::driver::nested::{NestedKind, PortDriver};
use crate::host::{Plumber, Plumbing};
use crate::names;
use crate::neutron::auth::parse_iso8601;
use crate::neutron::{
    Filters, FloatingIp, Network, Neutron, Port, SecurityGroup, Subnet, SubnetPool,
};

/// Something to remove, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leak {
    Port {
        id: String,
        why: String,
    },
    Veth {
        name: String,
        why: String,
    },
    /// An OVS port kuryr plugged (`owner=kuryr`) whose device or Neutron port is gone.
    OvsPort {
        name: String,
        why: String,
    },
    SecurityGroup {
        id: String,
        why: String,
    },
    Network {
        id: String,
        why: String,
    },
    Pool {
        id: String,
        why: String,
    },
    /// A nested container's address left in the VM port's allowed_address_pairs.
    VmPair {
        vm_port: String,
        ip: String,
        why: String,
    },
    /// A nested container's port left on the VM's trunk.
    Subport {
        trunk: String,
        port: String,
        why: String,
    },
    /// A floating IP kuryr allocated for an endpoint, left with no port.
    FloatingIp {
        id: String,
        why: String,
    },
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leak::Port { id, why } => write!(f, "port {id}: {why}"),
            Leak::Veth { name, why } | Leak::OvsPort { name, why } => {
                write!(f, "host interface {name}: {why}")
            }
            Leak::SecurityGroup { id, why } => write!(f, "security group {id}: {why}"),
            Leak::Network { id, why } => write!(f, "network {id}: {why}"),
            Leak::Pool { id, why } => write!(f, "subnetpool {id}: {why}"),
            Leak::VmPair { vm_port, ip, why } => {
                write!(f, "allowed address pair {ip} of VM port {vm_port}: {why}")
            }
            Leak::Subport { trunk, port, why } => {
                write!(f, "subport {port} of trunk {trunk}: {why}")
            }
            Leak::FloatingIp { id, why } => write!(f, "floating IP {id}: {why}"),
        }
    }
}

pub struct Options {
    /// Where `kuryr gc` asks Docker for its view.
    pub docker_socket: std::path::PathBuf,
    /// Unbound ports and empty pools younger than this are left alone: a container or
    /// network may be starting right now.
    pub grace: Duration,
}

fn age(created_at: &Value) -> Option<Duration> {
    let t = parse_iso8601(created_at.as_str()?)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(now.saturating_sub(t)))
}

/// What Docker has now: its networks and their endpoints.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub networks: HashSet<String>,
    pub endpoints: HashSet<String>,
}

impl Live {
    /// Asks the Docker engine at `socket`.
    pub async fn from_docker(socket: &std::path::Path) -> Result<Live, String> {
        let nets = Docker::new(socket).networks().await?;
        Ok(Live {
            networks: nets.iter().map(|(id, _)| id.clone()).collect(),
            endpoints: nets.into_iter().flat_map(|(_, eps)| eps).collect(),
        })
    }
}

fn neutron_err(e: crate::neutron::NeutronError) -> String {
    e.to_string()
}

/// One finder per kind of leak; `doomed` collects the ports found so far, which later
/// finders treat as gone (their veths, groups and networks go with them).
struct Finder<'a> {
    cfg: &'a Config,
    neutron: &'a Neutron,
    host: &'a dyn Plumbing,
    live: &'a Live,
    grace: Duration,
    doomed: HashSet<String>,
    leaks: Vec<Leak>,
}

/// Finds leaked resources, judged against Docker's view `live`.
pub async fn find(
    cfg: &Config,
    neutron: &Neutron,
    host: &dyn Plumbing,
    live: &Live,
    opts: &Options,
) -> Result<Vec<Leak>, String> {
    let mut f = Finder {
        cfg,
        neutron,
        host,
        live,
        grace: opts.grace,
        doomed: HashSet::new(),
        leaks: Vec::new(),
    };
    f.bound_ports().await?;
    f.cni_attachments().await?;
    f.stray_reservations().await?;
    f.nested().await?;
    let all_ports: Vec<Port> = neutron
        .list(&Filters::new().add("fields", "id"))
        .await
        .map_err(neutron_err)?;
    f.veths(&all_ports).await?;
    f.exposed_groups(&all_ports).await?;
    f.networks().await?;
    f.pools().await?;
    f.floating_ips().await?;
    Ok(f.leaks)
}

impl Finder<'_> {
    /// Floating IPs kuryr allocated (its description) whose port is gone: Neutron took
    /// them off the port, kuryr's release never came. A user's are never touched.
    async fn floating_ips(&mut self) -> Result<(), String> {
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

    fn doom_port(&mut self, id: String, why: String) {
        self.doomed.insert(id.clone());
        self.leaks.push(Leak::Port { id, why });
    }

    /// Ports bound to this host whose Docker endpoint is gone.
    async fn bound_ports(&mut self) -> Result<(), String> {
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
    async fn cni_attachments(&mut self) -> Result<(), String> {
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
    fn recent(&self, raw: &Value) -> bool {
        let changed = raw.get("updated_at").or_else(|| raw.get("created_at"));
        changed.and_then(age).is_some_and(|a| a < self.grace)
    }

    /// IPAM's reservations that never became an endpoint (a crash in between).
    async fn stray_reservations(&mut self) -> Result<(), String> {
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
    async fn nested(&mut self) -> Result<(), String> {
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

    /// Veths `tap<port[0:11]>` / `t_c<port[0:11]>` with no port behind them.
    async fn veths(&mut self, all_ports: &[Port]) -> Result<(), String> {
        let prefixes: HashSet<String> = all_ports
            .iter()
            .filter(|p| !self.doomed.contains(&p.id))
            .map(|p| p.id.chars().take(11).collect())
            .collect();
        // Hybrid plug's bridge and veth pair (qbr, qvb, qvo) are named after the port too.
        for prefix in [
            names::HOST_VETH_PREFIX,
            names::CONTAINER_VETH_PREFIX,
            "qbr",
            "qvb",
            "qvo",
        ] {
            let links = self
                .host
                .links_with_prefix(prefix)
                .await
                .map_err(|e| e.to_string())?;
            for name in links {
                let short = &name[prefix.len()..];
                if short.len() == 11 && !prefixes.contains(short) {
                    self.leaks.push(Leak::Veth {
                        name,
                        why: "no Neutron port behind it".into(),
                    });
                }
            }
        }
        // OVS ports kuryr plugged outlive their veth (the veth deleted behind kuryr's
        // back, or with a container's namespace): one whose device is gone, or whose
        // port is, goes. One whose veth is a leak already goes with it.
        let live: HashSet<&str> = all_ports
            .iter()
            .filter(|p| !self.doomed.contains(&p.id))
            .map(|p| p.id.as_str())
            .collect();
        let ovs = self
            .host
            .ovs_interfaces()
            .await
            .map_err(|e| e.to_string())?;
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

    /// Exposed-port groups whose port is gone.
    async fn exposed_groups(&mut self, all_ports: &[Port]) -> Result<(), String> {
        let groups: Vec<SecurityGroup> = self
            .neutron
            .list(&Filters::new().add("description", names::SG_DESCRIPTION))
            .await
            .map_err(neutron_err)?;
        let port_ids: HashSet<&str> = all_ports.iter().map(|p| p.id.as_str()).collect();
        for g in groups {
            if let Some(port) = g.name.strip_suffix("-exposed_ports") {
                if !port_ids.contains(port) || self.doomed.contains(port) {
                    self.leaks.push(Leak::SecurityGroup {
                        id: g.id,
                        why: format!("port {port} is gone"),
                    });
                }
            }
        }
        Ok(())
    }

    /// kuryr networks (not adopted ones) whose Docker network is gone; only those without
    /// ports bound elsewhere, since another host may use them.
    async fn networks(&mut self) -> Result<(), String> {
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
                let pooled = p.name == crate::driver::port_pool::POOL_PORT_NAME
                    && p.device_id.is_empty()
                    && (p.host_id.is_empty() || p.host_id == self.cfg.host);
                if pooled && !self.doomed.contains(&p.id) {
                    self.doom_port(p.id.clone(), "pool port of a network Docker removed".into());
                }
            }
            if in_use.iter().all(|p| self.doomed.contains(&p.id)) {
                self.leaks.push(Leak::Network {
                    id: n.id,
                    why: format!(
                        "Docker network {} is gone",
                        &docker_id[..12.min(docker_id.len())]
                    ),
                });
            }
        }
        Ok(())
    }

    /// kuryr pools with no subnet, older than the grace period.
    async fn pools(&mut self) -> Result<(), String> {
        let pools: Vec<Value> = self
            .neutron
            .list_raw("subnetpools", &Filters::new())
            .await
            .map_err(neutron_err)?;
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
            if subnets.is_empty() {
                self.leaks.push(Leak::Pool {
                    id: pool.id,
                    why: "kuryr pool without a subnet".into(),
                });
            }
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
        let why = format!("endpoint {} is not in Docker", &ep[..12.min(ep.len())]);
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

/// Takes one address off the VM port's pairs, read fresh (the driver may be changing
/// them too; Neutron has no atomic update of one pair).
async fn remove_vm_pair(neutron: &Neutron, vm_port: &str, ip: &str) -> Result<(), String> {
    let vm: Port = neutron.get(vm_port).await.map_err(|e| e.to_string())?;
    let pairs: Vec<_> = vm
        .allowed_address_pairs
        .iter()
        .filter(|p| p.ip_address != ip)
        .cloned()
        .collect();
    if pairs.len() == vm.allowed_address_pairs.len() {
        return Ok(());
    }
    neutron
        .update::<Port>(vm_port, serde_json::json!({"allowed_address_pairs": pairs}))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Removes leaks; keeps going after a failure and reports every one.
pub async fn apply(neutron: &Neutron, host: &dyn Plumbing, leaks: &[Leak]) -> Vec<String> {
    let mut errors = Vec::new();
    // Order: a port comes off the VM port / trunk before it is deleted (Neutron refuses
    // to delete a subport); ports and groups before the networks and pools they keep busy.
    let rank = |l: &Leak| match l {
        Leak::Veth { .. } | Leak::OvsPort { .. } => 0,
        Leak::VmPair { .. } | Leak::Subport { .. } | Leak::FloatingIp { .. } => 1,
        Leak::Port { .. } => 2,
        Leak::SecurityGroup { .. } => 3,
        Leak::Network { .. } => 4,
        Leak::Pool { .. } => 5,
    };
    let mut sorted: Vec<&Leak> = leaks.iter().collect();
    sorted.sort_by_key(|l| rank(l));
    for l in sorted {
        let r = match l {
            Leak::Veth { name, .. } => host
                .delete_link(name)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Leak::OvsPort { name, .. } => host
                .delete_ovs_port(name)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Leak::Port { id, .. } => neutron
                .delete_if_exists::<Port>(id)
                .await
                .map_err(|e| e.to_string()),
            Leak::SecurityGroup { id, .. } => neutron
                .delete_if_exists::<SecurityGroup>(id)
                .await
                .map_err(|e| e.to_string()),
            Leak::Network { id, .. } => neutron
                .delete_if_exists::<Network>(id)
                .await
                .map_err(|e| e.to_string()),
            Leak::Pool { id, .. } => neutron
                .delete_if_exists::<SubnetPool>(id)
                .await
                .map_err(|e| e.to_string()),
            Leak::VmPair { vm_port, ip, .. } => remove_vm_pair(neutron, vm_port, ip).await,
            Leak::FloatingIp { id, .. } => neutron
                .delete_if_exists::<FloatingIp>(id)
                .await
                .map_err(|e| e.to_string()),
            Leak::Subport { trunk, port, .. } => {
                match neutron
                    .trunk_subports(trunk, false, serde_json::json!([{"port_id": port}]))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        if let Err(e) = r {
            errors.push(format!("{l}: {e}"));
        }
    }
    errors
}

pub fn run(cfg: &Config, opts: Options, do_apply: bool) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let neutron = Neutron::new(&cfg.neutron)?;
        let host = Plumber::new(cfg.bindir.clone(), cfg.host.clone())?;
        let live = Live::from_docker(&opts.docker_socket)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let leaks = find(cfg, &neutron, &host, &live, &opts)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        if leaks.is_empty() {
            println!("nothing to collect");
            return Ok(true);
        }
        for l in &leaks {
            println!("{}{l}", if do_apply { "removing " } else { "" });
        }
        if !do_apply {
            println!(
                "{} leaked resource(s); run with --apply to remove them",
                leaks.len()
            );
            return Ok(true);
        }
        let errors = apply(&neutron, &host, &leaks).await;
        for e in &errors {
            eprintln!("failed: {e}");
        }
        println!("removed {} of {}", leaks.len() - errors.len(), leaks.len());
        Ok(errors.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestDriver;
    use serde_json::json;

    const NET: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const EP: &str = "e1e2e3e4e5e6e7e8e9f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405ab";

    /// A network and an endpoint made through the driver, its bookkeeping written.
    async fn endpoint() -> (TestDriver, String) {
        let t = TestDriver::new("").await;
        let pool = t
            .ok("IpamDriver.RequestPool", &json!({"Pool": "10.10.0.0/24"}))
            .await;
        t.ok(
            "NetworkDriver.CreateNetwork",
            &json!({"NetworkID": NET, "IPv4Data": [{"Pool": "10.10.0.0/24", "Gateway": "10.10.0.1/24"}]}),
        )
        .await;
        let a = t
            .ok(
                "IpamDriver.RequestAddress",
                &json!({"PoolID": pool["PoolID"], "Address": ""}),
            )
            .await;
        t.ok(
            "NetworkDriver.CreateEndpoint",
            &json!({"NetworkID": NET, "EndpointID": EP, "Interface": {"Address": a["Address"]}}),
        )
        .await;
        t.driver.flush().await;
        let port = t.neutron.all("ports")[0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (t, port)
    }

    fn opts(grace: u64) -> Options {
        Options {
            docker_socket: "/nonexistent".into(),
            grace: Duration::from_secs(grace),
        }
    }

    #[tokio::test]
    async fn what_docker_may_be_creating_is_left_alone_for_the_grace_period() {
        let (t, port) = endpoint().await;
        // Docker's view has neither the endpoint nor the network (yet, or any more).
        let live = Live::default();
        let cfg = &t.driver.cfg;
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(600))
            .await
            .unwrap();
        assert!(
            !leaks
                .iter()
                .any(|l| matches!(l, Leak::Port { id, .. } if *id == port)),
            "a port changed a moment ago was collected: {leaks:?}"
        );
        assert!(
            !leaks.iter().any(|l| matches!(l, Leak::Network { .. })),
            "{leaks:?}"
        );
        // Past the grace period it is a leak, with its veth and its network.
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(0))
            .await
            .unwrap();
        assert!(
            leaks
                .iter()
                .any(|l| matches!(l, Leak::Port { id, .. } if *id == port)),
            "{leaks:?}"
        );
        assert!(
            leaks.iter().any(|l| matches!(l, Leak::Veth { .. })),
            "{leaks:?}"
        );
        assert!(
            leaks.iter().any(|l| matches!(l, Leak::Network { .. })),
            "{leaks:?}"
        );
        // With Docker knowing the endpoint and network, nothing is a leak.
        let live = Live {
            networks: [NET.to_string()].into(),
            endpoints: [EP.to_string()].into(),
        };
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(0))
            .await
            .unwrap();
        assert!(leaks.is_empty(), "{leaks:?}");
        // Applying removes the port and its veth.
        let live = Live::default();
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(0))
            .await
            .unwrap();
        let errors = apply(t.driver.neutron(), &t.host, &leaks).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert!(t.host.links().is_empty());
        assert_eq!(t.neutron.count("networks"), 0);
    }

    #[tokio::test]
    async fn kuryrs_floating_ips_left_without_a_port_are_released_a_users_never() {
        let (t, port) = endpoint().await;
        let public = t.neutron.seed(
            "networks",
            json!({"name": "public", "router:external": true}),
        );
        let fip = |desc: &str, port: Option<&str>| {
            t.neutron.seed(
                "floatingips",
                json!({"floating_network_id": public["id"], "description": desc,
                    "port_id": port}),
            )
        };
        let left = fip(&names::fip_description(EP), None);
        let users = fip("", None);
        let live_one = fip(&names::fip_description(EP), Some(&port));
        let live = Live {
            networks: [NET.to_string()].into(),
            endpoints: [EP.to_string()].into(),
        };
        let cfg = &t.driver.cfg;
        let leaks = find(cfg, t.driver.neutron(), &t.host, &live, &opts(0))
            .await
            .unwrap();
        let fips: Vec<&Leak> = leaks
            .iter()
            .filter(|l| matches!(l, Leak::FloatingIp { .. }))
            .collect();
        assert_eq!(
            fips,
            vec![&Leak::FloatingIp {
                id: left["id"].as_str().unwrap().to_string(),
                why: "kuryr allocated it for an endpoint; its port is gone".into()
            }],
            "{leaks:?}"
        );
        assert!(apply(t.driver.neutron(), &t.host, &leaks).await.is_empty());
        let ids: Vec<Value> = t
            .neutron
            .all("floatingips")
            .iter()
            .map(|f| f["id"].clone())
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&users["id"]) && ids.contains(&live_one["id"]));
    }
}
