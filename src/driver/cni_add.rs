//! CNI ADD: the config's target (kept, see `cni_target`), a port for the attachment
//! (a pool port when one serves, else one made for it), the host side wired into the
//! container's namespace, and the result. Undone on failure.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::binder::{self, PlugNet};
use super::cni::{cni_alias, Attach, Attached, Wiring};
use super::cni_target::Target;
use super::{Driver, DriverError, Result};
use crate::host::netns::NsInterface;
use crate::names;
use crate::neutron::{FixedIpAsk, NewPort, Port, PortBody, Subnet};

impl Driver {
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
        let target = self.cni_target(w).await?;
        let added = self.cni_add_to(a, w, &target, &netns).await;
        if added.is_err() {
            // The network or a subnet may be gone: the next ADD reads them again.
            self.forget_target(w);
        }
        added
    }

    async fn cni_add_to(
        &self,
        a: &Attach,
        w: &Wiring,
        t: &Target,
        netns: &std::path::Path,
    ) -> Result<Attached> {
        let pooled = match self.cni_poolable(w, t) {
            true => {
                let ask = super::port_pool::PoolAsk {
                    subnets: &t.subnets,
                    groups: &t.groups,
                };
                let p = self.port_pool.take(&self.neutron, ask).await;
                // Kept topped up, off this call's path.
                self.port_pool.refill(&self.neutron, ask);
                p
            }
            false => None,
        };
        // A pool port's veth alias says which attachment took it only here: one an earlier
        // ADD plugged means that ADD's port may still be there, and the slow path finds it.
        let pooled = match pooled {
            Some(p) => match self.plumber.veth_of_endpoint(&cni_alias(a)).await {
                Ok(None) => Some(p),
                Ok(Some(_)) => {
                    self.port_pool.give_back(&self.neutron, p).await;
                    self.refuse_a_taken_ifname(a).await?;
                    None
                }
                Err(e) => {
                    self.port_pool.give_back(&self.neutron, p).await;
                    return Err(e.into());
                }
            },
            None => None,
        };
        let port = match pooled {
            Some(p) => {
                tracing::debug!(port = %p.id, container = %a.container_id, "CNI ADD: a pool port");
                p
            }
            None => self.cni_create_port(a, w, t).await?,
        };
        let wired = self.cni_wire(a, w, t, &port, netns).await;
        match wired {
            Ok(att) => {
                if port.name == super::port_pool::POOL_PORT_NAME {
                    self.cni_bookkeeping(a, w, port);
                }
                Ok(att)
            }
            Err(e) => {
                let undo = crate::deadline::undo(self.cni_remove(&port, a)).await;
                Err(match undo {
                    Ok(()) => e,
                    Err(u) => e.rolled_back_with(vec![u]),
                })
            }
        }
    }

    /// The spec's ADD rule where an earlier ADD of the attachment left something: its
    /// interface in the namespace means that ADD finished (a repeat without a DEL), and
    /// what it made stays as it is. Elsewhere the move into the namespace checks it.
    async fn refuse_a_taken_ifname(&self, a: &Attach) -> Result<()> {
        let Some(netns) = &a.netns else {
            return Ok(());
        };
        if self.plumber.netns_link(netns, &a.ifname).await?.is_some() {
            return Err(crate::host::HostError::Invalid(format!(
                "interface {} already exists in {}",
                a.ifname,
                netns.display()
            ))
            .into());
        }
        Ok(())
    }

    /// A pool port serves an attachment that asks nothing of its port beyond what a
    /// pool port has: no address, MAC, group, QoS policy or floating IP of its own.
    fn cni_poolable(&self, w: &Wiring, t: &Target) -> bool {
        self.port_pool.enabled() && !own_port(w, t)
    }

    /// The attachment's name, device and tags on its pool port, a moment after the
    /// answer (as a Docker endpoint's); until then DEL and CHECK find the port by the
    /// alias of its host veth.
    fn cni_bookkeeping(&self, a: &Attach, w: &Wiring, port: Port) {
        let body = PortBody {
            name: Some(names::cni_port_name(&a.container_id, &a.ifname)),
            device_id: Some(a.container_id.clone()),
            description: w.description.clone(),
            ..PortBody::default()
        };
        self.write_bookkeeping(port, body, names::cni_tags(&a.ifname, &a.conf_name));
    }

    /// A new port of the attachment, bound to this host and tagged; one an earlier,
    /// interrupted ADD left goes first.
    async fn cni_create_port(&self, a: &Attach, w: &Wiring, t: &Target) -> Result<Port> {
        let fixed_ips = fixed_ips(&t.subnets, &w.ips)?;
        let old_ports = self.cni_ports(a).await?;
        if !old_ports.is_empty() {
            self.refuse_a_taken_ifname(a).await?;
        }
        for old in old_ports {
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
        let mut body = NewPort {
            network_id: t.net.id.clone(),
            port: PortBody {
                name: Some(names::cni_port_name(&a.container_id, &a.ifname)),
                admin_state_up: Some(true),
                device_owner: Some(names::DEVICE_OWNER.to_string()),
                device_id: Some(a.container_id.clone()),
                description: w.description.clone(),
                host_id: Some(self.cfg.host.clone()),
                fixed_ips: Some(fixed_ips),
                mac_address: w.mac.clone(),
                security_groups: (!t.groups.is_empty()).then(|| t.groups.clone()),
                qos_policy_id: t.qos.clone().map(Some),
                ..PortBody::default()
            },
        };
        let mut tags = names::cni_tags(&a.ifname, &a.conf_name);
        if own_port(w, t) {
            // Never handed to another container by the pool at DEL; DEL, and a replacing
            // ADD, look for a floating IP only on such a port.
            tags.push(names::TAG_PORT_OWN.to_string());
        }
        // Tagged in the create itself where Neutron can: a kuryr killed right after still
        // leaves a port that DEL and GC find.
        if self.tags_at_create {
            body.port.tags = Some(tags.clone());
        }
        let mut port: Port = self.neutron.create(&body).await?;
        crate::kill_point!("CNI.ADD.after_port");
        if !self.tags_at_create {
            if let Err(e) = self.neutron.replace_tags::<Port>(&port.id, &tags).await {
                let undo = crate::deadline::undo(self.cni_remove(&port, a)).await;
                return Err(match undo {
                    Ok(()) => e.into(),
                    Err(u) => DriverError::from(e).rolled_back_with(vec![u]),
                });
            }
        }
        port.tags = tags;
        Ok(port)
    }

    /// The host side of the attachment: the veth plugged per the port's vif_type, its
    /// container end in the namespace with the port's MAC and addresses, the wait for
    /// ACTIVE when asked, the floating IP. The caller undoes it on failure.
    async fn cni_wire(
        &self,
        a: &Attach,
        w: &Wiring,
        t: &Target,
        port: &Port,
        netns: &std::path::Path,
    ) -> Result<Attached> {
        if super::sriov::is_sriov(&port.vnic_type) {
            return Err(DriverError::BadRequest(
                "kuryr-cni does not support SR-IOV ports yet".into(),
            ));
        }
        let mtu = w.mtu.or(t.net.mtu);
        let net = PlugNet {
            mtu,
            project_id: &t.net.project_id,
            netns: Some(netns),
        };
        // The veth binder, as a Docker endpoint's (with the wait for ACTIVE when asked).
        let plugged = binder::veth().plug(self, port, &cni_alias(a), &net).await?;
        let mut att = attached(port, &t.subnets, mtu, plugged.host_ifname);
        if w.internal {
            // No way out of the network: no default route (the subnet's own routes stay).
            att.routes.retain(|(dst, _)| dst.prefix_len() != 0);
        }
        let want = NsInterface {
            ifname: a.ifname.clone(),
            mac: port.mac_address.to_ascii_lowercase(),
            mtu,
            addrs: att.ips.iter().map(|(a, _)| *a).collect(),
            routes: att.routes.clone(),
        };
        self.plumber
            .move_into_netns(&plugged.container_ifname, netns, &want)
            .await?;
        if let Some(ext) = &t.floating {
            // As a Docker endpoint's; a replacing ADD made a new port, so no retry check.
            let f = super::floating::Floating::Allocate(ext.clone());
            self.attach_floating_ip(&f, port, &cni_alias(a), false)
                .await?;
        }
        Ok(att)
    }
}

/// The attachment asks its port for something a pool port does not have: an address, a
/// MAC, groups or a QoS policy of its own, or a floating IP.
fn own_port(w: &Wiring, t: &Target) -> bool {
    !w.ips.is_empty()
        || w.mac.is_some()
        || !t.groups.is_empty()
        || t.qos.is_some()
        || t.floating.is_some()
}

/// The port's `fixed_ips`: each wanted address on the subnet that holds it, and one
/// address from every subnet no wanted address falls in.
fn fixed_ips(subnets: &[Subnet], wanted: &[IpAddr]) -> Result<Vec<FixedIpAsk>> {
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
        out.push(FixedIpAsk {
            subnet_id: s.id.clone(),
            ip_address: Some(*ip),
        });
    }
    for s in subnets.iter().filter(|s| !served.contains(&s.id)) {
        // With specific addresses asked for, only their families get addresses.
        if wanted.is_empty() {
            out.push(FixedIpAsk {
                subnet_id: s.id.clone(),
                ip_address: None,
            });
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
    use serde_json::json;

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
        // As Neutron reads them: an address from the subnet, or this one of it.
        let wire = |ips: &[IpAddr]| serde_json::to_value(fixed_ips(&s, ips).unwrap()).unwrap();
        assert_eq!(wire(&[]), json!([{"subnet_id": "a"}, {"subnet_id": "b"}]));
        assert_eq!(
            wire(&["10.0.0.7".parse().unwrap()]),
            json!([{"subnet_id": "a", "ip_address": "10.0.0.7"}])
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
