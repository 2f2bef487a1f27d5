//! NetworkDriver, endpoint half: a Docker endpoint is a Neutron port bound to this host
//! plus a veth pair on it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::binder::Binder;
use super::bookkeeping::Bookkeeping;
use super::cache::{EndpointInfo, NetInfo};
use super::endpoint_plan::PortPlan;
use super::floating::Floating;
use super::{bad, kuryr_made, subnet_for_ip, Driver, DriverError, Result};
use crate::host::binding::BindContext;
use crate::names;
use crate::neutron::{Filters, Port, PortBody, PortStatus, Subnet};
use crate::protocol::{validate, *};

/// How long after CreateEndpoint's answer the endpoint's bookkeeping is written, unless
/// Join comes first (it writes it before answering).
const BOOKKEEPING_DELAY: Duration = Duration::from_secs(1);

/// A validated CreateEndpoint: its addresses, their subnets and the MAC Docker asks for.
pub(super) struct EndpointAsk<'a> {
    pub(super) ep: &'a str,
    pub(super) addrs: Vec<IpAddr>,
    pub(super) subnets: Vec<Subnet>,
    pub(super) mac: Option<String>,
    /// The port's security groups, when the container or its network names some.
    pub(super) groups: Option<Vec<String>>,
    /// The container's own QoS policy (its network's applies without one).
    pub(super) qos: Option<String>,
    /// The floating IP the container gets.
    pub(super) floating: Option<Floating>,
}

impl Driver {
    pub(super) async fn require_net(&self, docker_net_id: &str) -> Result<NetInfo> {
        self.net_info(docker_net_id).await?.ok_or_else(|| {
            DriverError::NotFound(format!(
                "Neutron net associated with identifier {docker_net_id} doesn't exist."
            ))
        })
    }

    pub async fn create_endpoint(
        &self,
        req: CreateEndpointRequest,
    ) -> Result<CreateEndpointResponse> {
        let (addrs, mac) = endpoint_addresses(&req.interface)?;
        let ep = req.endpoint_id.as_str();
        let _g = self.locks.lock(&format!("ep:{ep}")).await;
        let net = self.require_net(&req.network_id).await?;
        let mut ask = self.endpoint_ask(&req, &net, addrs, mac).await?;
        let ports = self.reserved_ports(&ask).await?;
        // A user's floating IP is free, or already on this endpoint's port (a retry).
        if let Some(Floating::Existing(f)) = &ask.floating {
            if let Some(p) = f.port_id.as_deref() {
                if !ports.iter().any(|x| x.id == p) {
                    return Err(DriverError::Conflict(format!(
                        "floating IP {} is on port {p}, not this container's",
                        f.floating_ip_address
                    )));
                }
                ask.floating = None;
            }
        }
        // Plan: checks and reads only. Picking a free VF (an SR-IOV port without a
        // pci_slot) and claiming it with the binding are serialised.
        let _vf_lock = match ports.as_slice() {
            [p] if super::sriov::is_sriov(&p.vnic_type) && super::sriov::pci_slot(p).is_none() => {
                Some(self.locks.lock("sriov-vf").await)
            }
            _ => None,
        };
        let binder = self.binder_for(&ports, &net).await?;
        let plan = self.port_plan(&ask, &net, binder.as_ref(), ports)?;
        let retried = matches!(plan, PortPlan::Keep(_));
        let bookkeeping = match &plan {
            PortPlan::Finish { port, body, tags } => {
                Some(((**port).clone(), body.clone(), tags.clone()))
            }
            _ => None,
        };
        // Apply: Neutron, then the host; a failed host step gives the port back.
        let (port, undo) = self.apply_port(plan).await?;
        crate::kill_point!("CreateEndpoint.after_port");
        if let Err(e) = binder.plug(self, &port, ep, &(&net).into()).await {
            return Err(self.undo_port(undo, ep, e).await);
        }
        if let Some(f) = &ask.floating {
            if let Err(e) = self.attach_floating_ip(f, &port, ep, retried).await {
                if let Err(u) = binder.unplug(self, &port, ep).await {
                    tracing::warn!(port = %port.id, error = %u, "unplug after a failed floating IP");
                }
                return Err(self.undo_port(undo, ep, e).await);
            }
        }
        self.remember_endpoint(&ask, &req.network_id, &port);
        if let Some((before, body, tags)) = bookkeeping {
            self.write_bookkeeping(before, body, tags);
        }
        Ok(CreateEndpointResponse {
            interface: EndpointInterfaceResponse {
                mac_address: response_mac(&req.interface, &port),
                ..Default::default()
            },
        })
    }

    /// What the endpoint asks of its port: its addresses' subnets, and the groups (the
    /// container's replace its network's), QoS policy and floating IP its options or its
    /// network name, resolved before anything changes.
    async fn endpoint_ask<'a>(
        &self,
        req: &'a CreateEndpointRequest,
        net: &NetInfo,
        addrs: Vec<IpAddr>,
        mac: Option<String>,
    ) -> Result<EndpointAsk<'a>> {
        let subnets = subnets_of(net, &addrs)?;
        let option = |name: &str| req.options.get(name).and_then(Value::as_str);
        let groups = match option(super::network::SECURITY_GROUPS_OPTION) {
            Some(v) => Some(
                self.security_group_ids(&super::network::split_list(v))
                    .await?,
            ),
            None if !net.security_groups.is_empty() => Some(net.security_groups.clone()),
            None => None,
        };
        let qos = match option(super::network::QOS_POLICY_OPTION) {
            Some(v) => Some(self.qos_policy_id(v).await?),
            None => None,
        };
        let floating = self.floating_ask(&req.options, net).await?;
        Ok(EndpointAsk {
            ep: req.endpoint_id.as_str(),
            addrs,
            subnets,
            mac,
            groups,
            qos,
            floating,
        })
    }

    /// The ports IPAM reserved (or adopted) for these addresses.
    async fn reserved_ports(&self, ask: &EndpointAsk<'_>) -> Result<Vec<Port>> {
        let mut ports: Vec<Port> = Vec::new();
        for (ip, s) in ask.addrs.iter().zip(&ask.subnets) {
            let key = (s.id.clone(), ip.to_string());
            let found = match self.cache.addresses.get(&key) {
                Some(p) => vec![p],
                None => {
                    self.neutron
                        .list::<Port>(
                            &Filters::new()
                                .add("fixed_ips", format!("subnet_id={}", s.id))
                                .add("fixed_ips", format!("ip_address={ip}")),
                        )
                        .await?
                }
            };
            for p in found {
                if !ports.iter().any(|q| q.id == p.id) {
                    ports.push(p);
                }
            }
        }
        Ok(ports)
    }

    /// The port's binding body for this endpoint, as its binder wants it.
    pub(super) fn binding_body(&self, ep: &str, binder: &dyn Binder) -> PortBody {
        let mut binding = PortBody {
            host_id: Some(self.cfg.host.clone()),
            device_owner: Some(names::DEVICE_OWNER.to_string()),
            device_id: Some(ep.to_string()),
            admin_state_up: Some(true),
            ..PortBody::default()
        };
        binder.binding(&mut binding);
        binding
    }

    /// The endpoint's device_id, name and tags on its port, off CreateEndpoint's path
    /// (which Docker serialises per network): Join writes them before it answers, else
    /// they are written a moment after CreateEndpoint's answer, and not at all if the
    /// endpoint goes first. Until they are written the port is known to be taken by its
    /// host veth, whose alias names the endpoint.
    pub(super) fn write_bookkeeping(&self, before: Port, body: PortBody, tags: Vec<String>) {
        Bookkeeping {
            background: self.background.clone(),
            neutron: self.neutron.clone(),
            unwritten: self.unwritten.clone(),
            before,
            body,
            tags,
            as_made: true,
        }
        .schedule(BOOKKEEPING_DELAY);
    }

    /// What the endpoint's later calls answer from memory.
    fn remember_endpoint(&self, ask: &EndpointAsk<'_>, network_id: &str, port: &Port) {
        for (ip, s) in ask.addrs.iter().zip(&ask.subnets) {
            self.cache
                .addresses
                .put((s.id.clone(), ip.to_string()), port.clone());
        }
        self.cache.endpoints.put(
            ask.ep.to_string(),
            EndpointInfo {
                port: port.clone(),
                network_id: network_id.to_string(),
                no_exposed_group: true,
                // The update's answer is as fresh as a read.
                status_read_at: Some(Instant::now()),
            },
        );
    }

    /// Polls the port until Neutron's agent reports it ACTIVE; only this call waits.
    pub(super) async fn wait_active(&self, port_id: &str) -> Result<()> {
        let timeout = self.cfg.neutron.vif_plugging_timeout;
        let deadline =
            (timeout > 0).then(|| tokio::time::Instant::now() + Duration::from_secs(timeout));
        loop {
            let p: Port = self.neutron.get(port_id).await?;
            if p.status == PortStatus::Active {
                return Ok(());
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return Err(DriverError::Internal(format!(
                    "port {port_id} did not become ACTIVE within {timeout} s (status {})",
                    p.status
                )));
            }
            // With no timeout of its own (the default 0), the wait ends with the call's
            // budget, not never.
            let poll = Duration::from_millis(500);
            if crate::deadline::remaining().is_some_and(|left| left <= poll) {
                return Err(DriverError::Timeout(format!(
                    "port {port_id} did not become ACTIVE before the call's deadline (status {})",
                    p.status
                )));
            }
            tokio::time::sleep(poll).await;
        }
    }

    pub async fn delete_endpoint(&self, req: EndpointRequest) -> Result<()> {
        let ep = req.endpoint_id.as_str();
        let _g = self.locks.lock(&format!("ep:{ep}")).await;
        let Some(info) = self.endpoint_info(&req.network_id, ep).await? else {
            tracing::info!(endpoint = %ep, "DeleteEndpoint: no port is tagged for it; nothing to do");
            return Ok(());
        };
        let port = &info.port;
        if let Some(newer) = self.newer_endpoint_on(&port.id, ep) {
            tracing::info!(endpoint = %ep, port = %port.id, %newer, "DeleteEndpoint: the port serves a newer endpoint now; left to it");
            self.cache.endpoints.remove(&ep.to_string());
            return Ok(());
        }
        // Bookkeeping not started yet is not needed any more: the port is released next.
        self.background.cancel(&port.id);
        self.background.settle(&port.id).await;
        // Every step runs whatever failed before it.
        let mut failed = super::Failures::default();
        failed.step(self.binder_of(port).unplug(self, port, ep).await);
        crate::kill_point!("DeleteEndpoint.after_unplug");
        if port.tags.iter().any(|t| t == names::TAG_PORT_OWN) && self.ext.has("router") {
            failed.step(self.detach_floating_ips(&port.id, ep).await);
        }
        if self.cfg.process_external_connectivity && !info.no_exposed_group {
            failed.step(self.take_off_exposed_group(&port.id).await);
        }
        // Ports kuryr made are deleted by ReleaseAddress next; an adopted port stops
        // pointing at this endpoint now.
        if !kuryr_made(port) {
            failed.step(self.give_back_adopted(port, ep).await);
        }
        // Forgotten whatever failed: a retry finds the endpoint again by its tags or its
        // veth, and the ReleaseAddress Docker sends after a forced delete must not see the
        // port as a live endpoint's.
        self.cache.endpoints.remove(&ep.to_string());
        failed.into_result()?;
        Ok(())
    }

    /// Another endpoint of this process that port `port_id` serves now: a port can be
    /// handed out again for the same address (`--ip`) before endpoint `ep`, which had it,
    /// is deleted, as when dockerd restarts its containers.
    fn newer_endpoint_on(&self, port_id: &str, ep: &str) -> Option<String> {
        self.cache
            .endpoints
            .keys_where(|e| e.port.id == port_id)
            .into_iter()
            .find(|other| other != ep)
    }

    /// An adopted port stops pointing at endpoint `ep`: its VF pick released, the
    /// endpoint's tags taken off.
    async fn give_back_adopted(&self, port: &Port, ep: &str) -> Result<()> {
        if port.tags.iter().any(|t| t == names::TAG_VF_PICKED) {
            self.release_picked_vf(port).await?;
        }
        let keep: Vec<String> = port
            .tags
            .iter()
            .filter(|t| {
                !names::id_tags(ep).contains(t)
                    && t.as_str() != names::TAG_VF_PICKED
                    && t.as_str() != names::TAG_PORT_OWN
            })
            .cloned()
            .collect();
        match self.neutron.replace_tags::<Port>(&port.id, &keep).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        self.cache.addresses.retain(|_, p| p.id != port.id);
        Ok(())
    }
}

/// The addresses and the MAC of a CreateEndpoint, checked.
fn endpoint_addresses(iface: &EndpointInterface) -> Result<(Vec<IpAddr>, Option<String>)> {
    let mut addrs: Vec<IpAddr> = Vec::new();
    if !iface.address.is_empty() {
        addrs.push(validate::ip_maybe_cidr("Interface.Address", &iface.address)?.0);
    }
    if !iface.address_ipv6.is_empty() {
        addrs.push(validate::ip_maybe_cidr("Interface.AddressIPv6", &iface.address_ipv6)?.0);
    }
    if addrs.is_empty() {
        return Err(bad("Interface address v4 or v6 not provided."));
    }
    let mac = match iface.mac_address.as_str() {
        "" => None,
        m => Some(validate::mac("Interface.MacAddress", m)?),
    };
    Ok((addrs, mac))
}

/// The subnet of each address.
fn subnets_of(net: &NetInfo, addrs: &[IpAddr]) -> Result<Vec<Subnet>> {
    addrs
        .iter()
        .map(|ip| {
            subnet_for_ip(&net.subnets, *ip).cloned().ok_or_else(|| {
                DriverError::NotFound(format!(
                    "No subnet exist for the address {ip} on network {}",
                    net.neutron_id
                ))
            })
        })
        .collect()
}

/// Whether `port` holds every address of the endpoint.
pub(super) fn holds_all(port: &Port, ask: &EndpointAsk<'_>) -> bool {
    ask.addrs.iter().zip(&ask.subnets).all(|(ip, s)| {
        port.fixed_ips
            .iter()
            .any(|f| f.subnet_id == s.id && f.ip_address == *ip)
    })
}

/// The MAC CreateEndpoint answers: the port's, unless Docker chose one, or the port is a
/// VF (its MAC is set through the PF; one set from inside the container would be refused
/// or spoof the port).
fn response_mac(iface: &EndpointInterface, port: &Port) -> String {
    if iface.mac_address.is_empty() && !super::sriov::is_sriov(&port.vnic_type) {
        port.mac_address.clone()
    } else {
        String::new()
    }
}

pub(super) fn bind_context(port: &Port, ep: &str, project_id: &str) -> BindContext {
    BindContext {
        vif_type: port.vif_type.clone(),
        vif_details: port.vif_details.clone(),
        port_id: port.id.to_string(),
        endpoint_id: ep.to_string(),
        mac: port.mac_address.to_ascii_lowercase(),
        network_id: port.network_id.to_string(),
        project_id: if port.project_id.is_empty() {
            project_id.to_string()
        } else {
            port.project_id.clone()
        },
        ifname: String::new(),
        ipv4: port
            .fixed_ips
            .iter()
            .filter_map(|f| match f.ip_address {
                std::net::IpAddr::V4(a) => Some(a),
                std::net::IpAddr::V6(_) => None,
            })
            .collect(),
    }
}
