//! The CNI front-end's mapping onto Neutron and the host: one port per attachment
//! (container id + interface name), made, bound and wired into the container's namespace
//! by ADD, found again by its tags after any restart, removed by DEL and GC.
//!
//! Typed requests in, typed results out: the CNI wire format lives in `crate::cni`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{json, Value};

use super::endpoint::bind_context;
use super::{Driver, DriverError, Result};
use crate::host::netns::NsInterface;
use crate::host::PlugRequest;
use crate::names;
use crate::neutron::{Filters, Network, Port, Subnet};

/// One attachment as ADD, DEL and CHECK name it.
#[derive(Debug, Clone)]
pub struct Attach {
    pub container_id: String,
    pub ifname: String,
    /// The namespace (`CNI_NETNS`); DEL may come without one.
    pub netns: Option<PathBuf>,
    /// The network config's `name`.
    pub conf_name: String,
}

/// What the network config asks of Neutron.
#[derive(Debug, Clone, Default)]
pub struct Wiring {
    /// Neutron network, name or id.
    pub network: String,
    /// Subnet, name or id; empty: one subnet per family.
    pub subnet: String,
    /// A CIDR: the network (by name) and a subnet of this CIDR are made when missing.
    pub cidr: Option<ipnet::IpNet>,
    /// A subnetpool (name or id): a subnet is taken from it when the network has none
    /// of it (and the network, by name, made when missing).
    pub subnetpool: String,
    pub security_groups: Vec<String>,
    /// QoS policy, name or id.
    pub qos_policy: Option<String>,
    /// External network (name or id) of the attachment's floating IP.
    pub floating_network: Option<String>,
    pub mtu: Option<u32>,
    /// Specific addresses (`IP=`, `ips`) and MAC (`MAC=`, `mac`).
    pub ips: Vec<IpAddr>,
    pub mac: Option<String>,
}

/// What ADD made, for the CNI result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub host_ifname: String,
    pub mac: String,
    pub mtu: Option<u32>,
    /// Address (with the subnet's prefix) and the subnet's gateway.
    pub ips: Vec<(IpNet, Option<IpAddr>)>,
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
    pub nameservers: Vec<String>,
}

/// An attachment kuryr holds on this host, as GC and doctor see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub port_id: String,
    pub container_id: String,
    pub ifname: String,
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

impl Driver {
    /// The Neutron network of a config: by id, else by name (exactly one).
    async fn cni_network(&self, want: &str) -> Result<Network> {
        if is_uuid(want) {
            return match self.neutron.get::<Network>(want).await {
                Ok(n) => Ok(n),
                Err(e) if e.is_not_found() => Err(DriverError::NotFound(format!(
                    "Neutron network {want} does not exist"
                ))),
                Err(e) => Err(e.into()),
            };
        }
        let mut found: Vec<Network> = self.neutron.list(&Filters::new().add("name", want)).await?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(DriverError::NotFound(format!(
                "no Neutron network is named {want:?}"
            ))),
            n => Err(DriverError::BadRequest(format!(
                "{n} Neutron networks are named {want:?}: give its id instead"
            ))),
        }
    }

    /// The network and the subnets addresses come from; with `cidr` or `subnetpool`,
    /// what is missing of them is made first (once: concurrent ADDs wait for it).
    async fn cni_network_and_subnets(&self, w: &Wiring) -> Result<(Network, Vec<Subnet>)> {
        if w.cidr.is_none() && w.subnetpool.is_empty() {
            let net = self.cni_network(&w.network).await?;
            let subnets = self.cni_subnets(&net, &w.subnet).await?;
            return Ok((net, subnets));
        }
        let _g = self.locks.lock(&format!("cni-net:{}", w.network)).await;
        let pool = match w.subnetpool.as_str() {
            "" => None,
            p => Some(self.cni_subnetpool(p).await?),
        };
        let net = match self.cni_network(&w.network).await {
            Ok(n) => n,
            Err(DriverError::NotFound(_)) if !is_uuid(&w.network) => {
                tracing::info!(network = %w.network, "CNI: making the Neutron network the config names");
                let net: Network = self
                    .neutron
                    .create(json!({"name": w.network, "admin_state_up": true}))
                    .await?;
                let tags = vec![names::TAG_CNI_MADE.to_string()];
                self.neutron.replace_tags::<Network>(&net.id, &tags).await?;
                Network { tags, ..net }
            }
            Err(e) => return Err(e),
        };
        let all: Vec<Subnet> = self
            .neutron
            .list(&Filters::new().add("network_id", net.id.as_str()))
            .await?;
        let found = all.iter().find(|s| match (&w.cidr, &pool) {
            (Some(c), _) => s.cidr == *c,
            (None, Some(p)) => s.subnetpool_id.as_deref() == Some(p.id.as_str()),
            (None, None) => false,
        });
        let subnet = match found {
            Some(s) => s.clone(),
            None => {
                let mut body =
                    json!({"network_id": net.id, "name": format!("kuryr-cni-{}", w.network)});
                match (&w.cidr, &pool) {
                    (Some(c), p) => {
                        body["cidr"] = json!(c.to_string());
                        body["ip_version"] = json!(if c.addr().is_ipv4() { 4 } else { 6 });
                        if let Some(p) = p {
                            body["subnetpool_id"] = json!(p.id);
                        }
                    }
                    (None, Some(p)) => {
                        body["subnetpool_id"] = json!(p.id);
                        body["ip_version"] = json!(if p.ip_version == 6 { 6 } else { 4 });
                    }
                    (None, None) => {}
                }
                self.neutron.create(body).await?
            }
        };
        Ok((net, vec![subnet]))
    }

    async fn cni_subnetpool(&self, want: &str) -> Result<crate::neutron::SubnetPool> {
        if is_uuid(want) {
            return Ok(self.neutron.get(want).await?);
        }
        let mut found: Vec<crate::neutron::SubnetPool> =
            self.neutron.list(&Filters::new().add("name", want)).await?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(DriverError::NotFound(format!(
                "no subnetpool is named {want:?}"
            ))),
            n => Err(DriverError::BadRequest(format!(
                "{n} subnetpools are named {want:?}: give its id instead"
            ))),
        }
    }

    /// The subnets addresses come from: the one named, else the first of each family.
    async fn cni_subnets(&self, net: &Network, want: &str) -> Result<Vec<Subnet>> {
        let all: Vec<Subnet> = self
            .neutron
            .list(&Filters::new().add("network_id", net.id.as_str()))
            .await?;
        if !want.is_empty() {
            return match all.into_iter().find(|s| s.id == want || s.name == want) {
                Some(s) => Ok(vec![s]),
                None => Err(DriverError::NotFound(format!(
                    "network {} has no subnet {want:?}",
                    net.id
                ))),
            };
        }
        let mut picked: Vec<Subnet> = Vec::new();
        for s in all {
            if !picked.iter().any(|p| p.ip_version == s.ip_version) {
                picked.push(s);
            }
        }
        if picked.is_empty() {
            return Err(DriverError::BadRequest(format!(
                "Neutron network {} has no subnet to take addresses from",
                net.id
            )));
        }
        Ok(picked)
    }

    /// The ports of an attachment (one, unless a crash left a second).
    async fn cni_ports(&self, a: &Attach) -> Result<Vec<Port>> {
        let tags = [
            names::TAG_CNI.to_string(),
            format!("{}{}", names::TAG_CNI_IF, a.ifname),
        ];
        Ok(self
            .neutron
            .list(
                &Filters::new()
                    .add("device_id", a.container_id.as_str())
                    .tags(&tags),
            )
            .await?)
    }

    /// Unplugs and deletes a port of an attachment; gone already is fine.
    async fn cni_remove(&self, port: &Port, a: &Attach) -> Result<()> {
        if let Some(ns) = &a.netns {
            // The host end goes below and takes its peer with it; the container end is
            // deleted first only so that a namespace kept by the runtime is clean at once.
            if let Err(e) = self.plumber.delete_in_netns(ns, &a.ifname).await {
                tracing::debug!(netns = %ns.display(), error = %e, "container interface not deleted");
            }
        }
        // Neutron only disassociates a floating IP whose port goes: kuryr's is released.
        if port.tags.iter().any(|t| t == names::TAG_PORT_OWN) && self.ext.has("router") {
            self.detach_floating_ips(&port.id, &cni_alias(a)).await?;
        }
        let bind = bind_context(port, &cni_alias(a), &port.project_id);
        self.plumber.unplug(&bind).await?;
        self.neutron.delete_if_exists::<Port>(&port.id).await?;
        Ok(())
    }

    /// CNI ADD: a port on the network for this container and interface, bound to this
    /// host, its veth's container end in the namespace as `ifname`. A port an earlier,
    /// interrupted ADD left is replaced. On failure nothing stays.
    pub async fn cni_add(&self, a: &Attach, w: &Wiring) -> Result<Attached> {
        let netns = a
            .netns
            .clone()
            .ok_or_else(|| DriverError::BadRequest("CNI_NETNS is not set".into()))?;
        if self.nested().is_some() {
            return Err(DriverError::BadRequest(
                "kuryr-cni does not support the nested port drivers yet: use the veth driver"
                    .into(),
            ));
        }
        let _g = self
            .locks
            .lock(&format!("cni:{}:{}", a.container_id, a.ifname))
            .await;
        let (net, subnets) = self.cni_network_and_subnets(w).await?;
        // The config's groups, else those a Docker network asked for on this network.
        let groups = match w.security_groups.is_empty() {
            false => self.security_group_ids(&w.security_groups).await?,
            true => names::sgs_from_tags(&net.tags),
        };
        let qos = match &w.qos_policy {
            Some(q) => Some(self.qos_policy_id(q).await?),
            None => None,
        };
        // The config's external network, else the one a Docker network asked for here.
        let floating = match &w.floating_network {
            Some(f) => Some(self.external_network_id(f).await?),
            None => names::fip_net_from_tags(&net.tags),
        };
        let fixed_ips = fixed_ips(&subnets, &w.ips)?;
        for old in self.cni_ports(a).await? {
            tracing::info!(port = %old.id, container = %a.container_id, "replacing the port of an interrupted ADD");
            self.cni_remove(
                &old,
                &Attach {
                    netns: None,
                    ..a.clone()
                },
            )
            .await?;
        }
        let mut body = json!({
            "network_id": net.id,
            "name": names::cni_port_name(&a.container_id, &a.ifname),
            "admin_state_up": true,
            "device_owner": names::DEVICE_OWNER,
            "device_id": a.container_id,
            "binding:host_id": self.cfg.host,
            "fixed_ips": fixed_ips,
        });
        if let Some(m) = &w.mac {
            body["mac_address"] = json!(m);
        }
        if !groups.is_empty() {
            body["security_groups"] = json!(groups);
        }
        if let Some(q) = &qos {
            body["qos_policy_id"] = json!(q);
        }
        let mut tags = names::cni_tags(&a.ifname, &a.conf_name);
        if floating.is_some() {
            // DEL, and a replacing ADD, look for the floating IP only on such a port.
            tags.push(names::TAG_PORT_OWN.to_string());
        }
        // Tagged in the create itself where Neutron can: a kuryr killed right after still
        // leaves a port that DEL and GC find.
        let tagged_at_create = self.tags_at_create;
        if tagged_at_create {
            body["tags"] = json!(tags);
        }
        let mut port: Port = self.neutron.create(body).await?;
        crate::kill_point!("CNI.ADD.after_port");
        let wired = async {
            if !tagged_at_create {
                self.neutron.replace_tags::<Port>(&port.id, &tags).await?;
            }
            port.tags = tags.clone();
            if super::sriov::is_sriov(&port.vnic_type) {
                return Err(DriverError::BadRequest(
                    "kuryr-cni does not support SR-IOV ports yet".into(),
                ));
            }
            let mtu = w.mtu.or(net.mtu);
            let bind = bind_context(&port, &cni_alias(a), &net.project_id);
            let plugged = self
                .plumber
                .plug(&PlugRequest {
                    bind: bind.clone(),
                    mtu,
                })
                .await?;
            let att = attached(&port, &subnets, mtu, plugged.host_ifname);
            let want = NsInterface {
                ifname: a.ifname.clone(),
                mac: port.mac_address.to_ascii_lowercase(),
                mtu,
                addrs: att.ips.iter().map(|(a, _)| *a).collect(),
                routes: att.routes.clone(),
            };
            self.plumber
                .move_into_netns(&plugged.container_ifname, &netns, &want)
                .await?;
            if self.cfg.neutron.vif_plugging_is_fatal {
                self.wait_active(&port.id).await?;
            }
            if let Some(ext) = floating {
                // As a Docker endpoint's; a replacing ADD made a new port, so no retry check.
                let f = super::floating::Floating::Allocate(ext);
                self.attach_floating_ip(&f, &port, &cni_alias(a), false)
                    .await?;
            }
            Ok(att)
        }
        .await;
        match wired {
            Ok(att) => Ok(att),
            Err(e) => {
                let undo = crate::deadline::undo(self.cni_remove(&port, a)).await;
                Err(match undo {
                    Ok(()) => e,
                    Err(u) => e.rolled_back_with(vec![u]),
                })
            }
        }
    }

    /// CNI DEL: everything of the attachment goes; nothing there is success.
    pub async fn cni_del(&self, a: &Attach) -> Result<()> {
        let _g = self
            .locks
            .lock(&format!("cni:{}:{}", a.container_id, a.ifname))
            .await;
        for p in self.cni_ports(a).await? {
            self.cni_remove(&p, a).await?;
        }
        Ok(())
    }

    /// CNI CHECK: the port exists, is bound here, and the namespace's interface has its
    /// MAC and addresses (and those of `prev`, when given). The error says what is off.
    pub async fn cni_check(&self, a: &Attach, prev: &[IpNet]) -> Result<()> {
        let netns = a
            .netns
            .clone()
            .ok_or_else(|| DriverError::BadRequest("CNI_NETNS is not set".into()))?;
        let ports = self.cni_ports(a).await?;
        let [port] = ports.as_slice() else {
            return Err(DriverError::NotFound(format!(
                "{} ports for container {} interface {} (want one)",
                ports.len(),
                a.container_id,
                a.ifname
            )));
        };
        if port.host_id != self.cfg.host || !port.vif_type.is_bound() {
            return Err(DriverError::Conflict(format!(
                "port {} is not bound to this host (host {:?}, vif_type {})",
                port.id, port.host_id, port.vif_type
            )));
        }
        let link = self
            .plumber
            .netns_link(&netns, &a.ifname)
            .await?
            .ok_or_else(|| {
                DriverError::NotFound(format!("no interface {} in {}", a.ifname, netns.display()))
            })?;
        if !link
            .mac
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(&port.mac_address))
        {
            return Err(DriverError::Conflict(format!(
                "interface {} has MAC {:?}, the port {}",
                a.ifname, link.mac, port.mac_address
            )));
        }
        let have: HashSet<IpAddr> = link.addrs.iter().map(IpNet::addr).collect();
        let port_ips = port.fixed_ips.iter().map(|f| f.ip_address);
        for ip in port_ips.chain(prev.iter().map(IpNet::addr)) {
            if !have.contains(&ip) {
                return Err(DriverError::Conflict(format!(
                    "interface {} lacks address {ip}",
                    a.ifname
                )));
            }
        }
        if self
            .plumber
            .link_mac(&names::host_veth(&port.id))
            .await?
            .is_none()
        {
            return Err(DriverError::NotFound(format!(
                "host interface {} of port {} is gone",
                names::host_veth(&port.id),
                port.id
            )));
        }
        Ok(())
    }

    /// The CNI attachments of a network config on this host.
    pub async fn cni_held(&self, conf_name: &str) -> Result<Vec<Held>> {
        let tags = [names::TAG_CNI.to_string(), names::cni_net_tag(conf_name)];
        let ports: Vec<Port> = self
            .neutron
            .list(
                &Filters::new()
                    .add("binding:host_id", self.cfg.host.as_str())
                    .tags(&tags),
            )
            .await?;
        Ok(ports
            .into_iter()
            .filter_map(|p| {
                let ifname = p
                    .tags
                    .iter()
                    .find_map(|t| t.strip_prefix(names::TAG_CNI_IF))?
                    .to_string();
                Some(Held {
                    port_id: p.id,
                    container_id: p.device_id,
                    ifname,
                })
            })
            .collect())
    }

    /// CNI GC: removes this host's attachments of the config that are not in `valid`;
    /// returns what it removed.
    pub async fn cni_gc(&self, conf_name: &str, valid: &[(String, String)]) -> Result<Vec<Held>> {
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for h in self.cni_held(conf_name).await? {
            if valid
                .iter()
                .any(|(c, i)| *c == h.container_id && *i == h.ifname)
            {
                continue;
            }
            let a = Attach {
                container_id: h.container_id.clone(),
                ifname: h.ifname.clone(),
                netns: None,
                conf_name: conf_name.to_string(),
            };
            match self.cni_del(&a).await {
                Ok(()) => removed.push(h),
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Ok(removed),
            _ => Err(errors.remove(0).rolled_back_with(errors)),
        }
    }

    /// CNI STATUS: whether Neutron answers now (one cheap request).
    pub async fn cni_status(&self) -> Result<()> {
        let _: Vec<Value> = self
            .neutron
            .list_raw(
                "networks",
                &Filters::new().add("fields", "id").add("limit", "1"),
            )
            .await?;
        Ok(())
    }
}

/// What the host veth's alias and a binding program call the attachment.
fn cni_alias(a: &Attach) -> String {
    format!("cni:{}:{}", a.container_id, a.ifname)
}

/// The port's `fixed_ips`: each wanted address on the subnet that holds it, and one
/// address from every subnet no wanted address falls in.
fn fixed_ips(subnets: &[Subnet], wanted: &[IpAddr]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut served = HashSet::new();
    for ip in wanted {
        let s = subnets
            .iter()
            .find(|s| s.cidr.contains(ip))
            .ok_or_else(|| {
                let cidrs: Vec<String> = subnets.iter().map(|s| s.cidr.to_string()).collect();
                DriverError::BadRequest(format!(
                    "address {ip} is on none of the subnets ({})",
                    cidrs.join(", ")
                ))
            })?;
        served.insert(s.id.clone());
        out.push(json!({"subnet_id": s.id, "ip_address": ip.to_string()}));
    }
    for s in subnets.iter().filter(|s| !served.contains(&s.id)) {
        // With specific addresses asked for, only their families get addresses.
        if wanted.is_empty() {
            out.push(json!({"subnet_id": s.id}));
        }
    }
    Ok(out)
}

/// The container's addresses, routes and DNS from the port and its subnets.
fn attached(port: &Port, subnets: &[Subnet], mtu: Option<u32>, host_ifname: String) -> Attached {
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    let mut nameservers = Vec::new();
    for f in &port.fixed_ips {
        let ip = f.ip_address;
        let Some(s) = subnets.iter().find(|s| s.id == f.subnet_id) else {
            continue;
        };
        let Ok(addr) = IpNet::new(ip, s.cidr.prefix_len()) else {
            continue;
        };
        ips.push((addr, s.gateway_ip));
        if let Some(gw) = s.gateway_ip {
            let default: IpNet = if ip.is_ipv4() {
                IpNet::V4(Default::default())
            } else {
                IpNet::V6(Default::default())
            };
            routes.push((default, Some(gw)));
        }
        for r in &s.host_routes {
            if let (Ok(dst), Ok(gw)) = (r.destination.parse(), r.nexthop.parse()) {
                routes.push((dst, Some(gw)));
            }
        }
        for n in &s.dns_nameservers {
            if !nameservers.contains(n) {
                nameservers.push(n.clone());
            }
        }
    }
    Attached {
        host_ifname,
        mac: port.mac_address.to_ascii_lowercase(),
        mtu,
        ips,
        routes,
        nameservers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(id: &str, cidr: &str, gw: &str) -> Subnet {
        Subnet {
            id: id.into(),
            cidr: cidr.parse().unwrap(),
            gateway_ip: gw.parse().ok(),
            ip_version: if cidr.contains(':') { 6 } else { 4 },
            ..Default::default()
        }
    }

    #[test]
    fn wanted_addresses_land_on_their_subnet_and_others_are_refused() {
        let s = vec![
            subnet("a", "10.0.0.0/24", "10.0.0.1"),
            subnet("b", "fd00::/64", "fd00::1"),
        ];
        assert_eq!(
            fixed_ips(&s, &[]).unwrap(),
            vec![json!({"subnet_id": "a"}), json!({"subnet_id": "b"})]
        );
        assert_eq!(
            fixed_ips(&s, &["10.0.0.7".parse().unwrap()]).unwrap(),
            vec![json!({"subnet_id": "a", "ip_address": "10.0.0.7"})]
        );
        let e = fixed_ips(&s, &["10.9.0.7".parse().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/24"), "{e}");
    }

    #[test]
    fn result_has_prefix_gateway_default_route_host_routes_and_dns() {
        let mut s = subnet("a", "10.0.0.0/24", "10.0.0.1");
        s.host_routes = vec![crate::neutron::HostRoute {
            destination: "192.168.5.0/24".into(),
            nexthop: "10.0.0.254".into(),
        }];
        s.dns_nameservers = vec!["10.0.0.53".into()];
        let port: Port = serde_json::from_value(json!({
            "id": "p1", "mac_address": "FA:16:3E:00:00:01",
            "fixed_ips": [{"subnet_id": "a", "ip_address": "10.0.0.5"}]
        }))
        .unwrap();
        let a = attached(&port, &[s], Some(1400), "tapp1".into());
        assert_eq!(a.mac, "fa:16:3e:00:00:01");
        assert_eq!(
            a.ips,
            vec![("10.0.0.5/24".parse().unwrap(), "10.0.0.1".parse().ok())]
        );
        assert_eq!(
            a.routes,
            vec![
                ("0.0.0.0/0".parse().unwrap(), "10.0.0.1".parse().ok()),
                ("192.168.5.0/24".parse().unwrap(), "10.0.0.254".parse().ok())
            ]
        );
        assert_eq!(a.nameservers, vec!["10.0.0.53".to_string()]);
    }
}
