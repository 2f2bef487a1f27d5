//! The CNI front-end's mapping onto Neutron and the host: one port per attachment
//! (container id + interface name), made or taken from the pool, bound and wired into the
//! container's namespace by ADD (`cni_add`), found again by its tags (or, before its
//! bookkeeping is written, its host veth) after any restart, removed by DEL and GC.
//!
//! Typed requests in, typed results out: the CNI wire format lives in `crate::cni`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::Value;

use super::{Driver, DriverError, Result};
use crate::names;
use crate::neutron::{Filters, Port, PortId};

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
    /// More tags of a network made for this wiring: whose it is.
    pub made_tags: Vec<String>,
    /// The container gets no default route (Podman's `--internal`).
    pub internal: bool,
    /// Who the attachment serves, for people reading Neutron (the port's description):
    /// e.g. the Kubernetes pod.
    pub description: Option<String>,
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
    pub port_id: PortId,
    pub container_id: String,
    pub ifname: String,
}

impl Driver {
    /// The ports of an attachment (one, unless a crash left a second).
    pub(super) async fn cni_ports(&self, a: &Attach) -> Result<Vec<Port>> {
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
    pub(super) async fn cni_remove(&self, port: &Port, a: &Attach) -> Result<()> {
        self.cni_unplug(port, a).await?;
        self.neutron.delete_if_exists::<Port>(&port.id).await?;
        Ok(())
    }

    /// The attachment's interfaces and kuryr's floating IP go; the port stays.
    async fn cni_unplug(&self, port: &Port, a: &Attach) -> Result<()> {
        if let Some(ns) = &a.netns {
            // The host end goes below and takes its peer with it; the container end is
            // deleted first only so that a namespace kept by the runtime is clean at once,
            // and only if it is the port's (its MAC): an ADD refused because the name
            // was taken leaves what had it.
            let ours = match self.plumber.netns_link(ns, &a.ifname).await {
                Ok(Some(l)) => l
                    .mac
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(&port.mac_address)),
                _ => false,
            };
            if ours {
                if let Err(e) = self.plumber.delete_in_netns(ns, &a.ifname).await {
                    tracing::debug!(netns = %ns.display(), error = %e, "container interface not deleted");
                }
            }
        }
        // Neutron only disassociates a floating IP whose port goes: kuryr's is released.
        if port.tags.iter().any(|t| t == names::TAG_PORT_OWN) && self.ext.has("router") {
            self.detach_floating_ips(&port.id, &cni_alias(a)).await?;
        }
        super::binder::veth()
            .unplug(self, port, &cni_alias(a))
            .await?;
        Ok(())
    }

    /// CNI DEL: everything of the attachment goes; nothing there is success.
    pub async fn cni_del(&self, a: &Attach) -> Result<()> {
        self.cni_detach(a, true).await
    }

    /// An attachment's interfaces go, and its ports: with `recycle` and the pool, back to
    /// the pool (or deleted) after the answer; else deleted before it.
    async fn cni_detach(&self, a: &Attach, recycle: bool) -> Result<()> {
        let _g = self
            .locks
            .lock(&format!("cni:{}:{}", a.container_id, a.ifname))
            .await;
        let mut ports = self.cni_attachment_ports(a).await?;
        let mut waited = false;
        for p in &ports {
            // Bookkeeping not written yet is not needed any more.
            self.background.cancel(&p.id);
            waited |= self.background.settle(&p.id).await;
        }
        if waited {
            // What ran meanwhile (an earlier DEL giving the port back to the pool, the
            // bookkeeping) changed the ports: a port given back is no longer this
            // attachment's, and must not be unplugged or given back twice.
            ports = self.cni_attachment_ports(a).await?;
        }
        if ports.is_empty() {
            // Its port went without kuryr (deleted in Neutron by hand): the veth its alias
            // names goes all the same, and its container end with it.
            if let Some(veth) = self.plumber.veth_of_endpoint(&cni_alias(a)).await? {
                tracing::info!(container = %a.container_id, veth = %veth, "CNI DEL: no port is the attachment's; removing its veth");
                // A host veth's OVS port goes with it.
                self.plumber.delete_link(&veth).await?;
            }
            return Ok(());
        }
        for p in ports {
            let as_made = self.unwritten.lock().ok().and_then(|mut m| m.remove(&p.id));
            self.cni_unplug(&p, a).await?;
            // With the pool, the port goes back to it (or is deleted) after the answer, as
            // a Docker container's does: the runtime does not wait on Neutron.
            // An attachment's port is kuryr's (made by ADD or taken from the pool), though
            // its CNI tags replace the tags `kuryr_made` looks for.
            let ours = p.device_owner == names::DEVICE_OWNER
                && !p.tags.iter().any(|t| t == names::TAG_PORT_EXISTING);
            if recycle && self.port_pool.enabled() && ours && p.host_id == self.cfg.host {
                let (pool, neutron) = (self.port_pool.clone(), self.neutron.clone());
                let port = as_made.unwrap_or(p);
                self.background.spawn(&port.id.clone(), async move {
                    pool.give_back(&neutron, port).await;
                });
            } else {
                self.neutron.delete_if_exists::<Port>(&p.id).await?;
            }
        }
        Ok(())
    }

    /// The ports of an attachment: those its tags name, and a pool port it took whose
    /// bookkeeping is not written yet, found by the alias of its host veth.
    async fn cni_attachment_ports(&self, a: &Attach) -> Result<Vec<Port>> {
        let mut ports = self.cni_ports(a).await?;
        let Some(veth) = self.plumber.veth_of_endpoint(&cni_alias(a)).await? else {
            return Ok(ports);
        };
        let short = veth
            .strip_prefix(names::HOST_VETH_PREFIX)
            .unwrap_or_default();
        if short.is_empty() || ports.iter().any(|p| p.id.starts_with(short)) {
            return Ok(ports);
        }
        let unwritten = self
            .unwritten
            .lock()
            .ok()
            .and_then(|m| m.values().find(|p| p.id.starts_with(short)).cloned());
        let pending = match unwritten {
            Some(p) => Some(p),
            // Taken by a kuryr that stopped before the bookkeeping: still a pool port.
            None => {
                let pool: Vec<Port> = self
                    .neutron
                    .list(
                        &Filters::new()
                            .add("name", super::port_pool::POOL_PORT_NAME)
                            .add("binding:host_id", self.cfg.host.as_str()),
                    )
                    .await?;
                pool.into_iter()
                    .find(|p| p.id.starts_with(short) && p.device_id.is_empty())
            }
        };
        ports.extend(pending);
        Ok(ports)
    }

    /// CNI CHECK: the port exists, is bound here, and the namespace's interface has its
    /// MAC and addresses (and those of `prev`, when given). The error says what is off.
    pub async fn cni_check(&self, a: &Attach, prev: &[IpNet]) -> Result<()> {
        let netns = a
            .netns
            .clone()
            .ok_or_else(|| DriverError::BadRequest("CNI_NETNS is not set".into()))?;
        let ports = self.cni_attachment_ports(a).await?;
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
            // Ports of containers gone go at once: GC is not on a container's path.
            match self.cni_detach(&a, false).await {
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
pub(super) fn cni_alias(a: &Attach) -> String {
    format!("cni:{}:{}", a.container_id, a.ifname)
}
