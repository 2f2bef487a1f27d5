//! NetworkDriver, endpoint half: a Docker endpoint is a Neutron port bound to this host
//! plus a veth pair on it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cache::{EndpointInfo, NetInfo};
use super::{bad, kuryr_made, subnet_for_ip, Driver, DriverError, Result};
use crate::host::binding::BindContext;
use crate::host::PlugRequest;
use crate::names;
use crate::neutron::{
    Filters, FloatingIp, Neutron, NeutronError, Port, PortStatus, SecurityGroup, SecurityGroupRule,
    Subnet,
};
use crate::protocol::{validate, *};

/// How long a port status read by EndpointOperInfo is answered again without asking.
const STATUS_TTL: Duration = Duration::from_secs(2);

/// How long after CreateEndpoint's answer the endpoint's bookkeeping is written.
const BOOKKEEPING_DELAY: Duration = Duration::from_secs(1);

/// What CreateEndpoint does to Neutron, decided before anything changes.
enum PortPlan {
    /// The port is bound and tagged for this endpoint already (a retry): nothing to do.
    Keep(Box<Port>),
    /// The port is bound to this host already (made so by RequestAddress or the pool):
    /// nothing on the start path; its endpoint bookkeeping (device_id, name, tags) is
    /// written after the answer.
    Finish {
        port: Box<Port>,
        body: Value,
        tags: Vec<String>,
    },
    /// One update of the port (binding, device, maybe MAC, name or VF profile) and of its
    /// tags; a bound port whose MAC changes is unbound first (Neutron refuses a new MAC
    /// on a bound port).
    Update {
        port: Box<Port>,
        body: Value,
        tags: Vec<String>,
        unbind_first: bool,
    },
    /// Dual stack from IPAM (one port per family): kuryr's ports are replaced by one port
    /// holding every address, as Neutron models an endpoint.
    Replace {
        delete: Vec<Port>,
        body: Value,
        tags: Vec<String>,
    },
}

/// How the host side of the endpoint is made.
enum HostPlan {
    Veth,
    Nested(String, super::nested::NestedKind),
    Sriov(super::sriov::SriovPlan),
}

/// The rollback record of the Neutron step: what to give back if a later step fails.
enum PortUndo {
    Nothing,
    Delete(String),
    /// The port as it was; `qos`: its QoS policy was written too.
    Restore(Box<Port>, bool),
}

/// A validated CreateEndpoint: its addresses, their subnets and the MAC Docker asks for.
struct EndpointAsk<'a> {
    ep: &'a str,
    addrs: Vec<IpAddr>,
    subnets: Vec<Subnet>,
    mac: Option<String>,
    /// The port's security groups, when the container or its network names some.
    groups: Option<Vec<String>>,
    /// The container's own QoS policy (its network's applies without one).
    qos: Option<String>,
    /// The floating IP the container gets.
    floating: Option<Floating>,
}

/// A container's floating IP: one kuryr allocates on an external network, or the user's.
#[derive(Debug, Clone)]
pub(super) enum Floating {
    Allocate(String),
    Existing(FloatingIp),
}

impl Driver {
    async fn require_net(&self, docker_net_id: &str) -> Result<NetInfo> {
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
        let subnets = subnets_of(&net, &addrs)?;
        // The container's groups replace its network's; resolved before anything changes.
        let groups = match req
            .options
            .get(super::network::SECURITY_GROUPS_OPTION)
            .and_then(Value::as_str)
        {
            Some(v) => Some(
                self.security_group_ids(&super::network::split_list(v))
                    .await?,
            ),
            None if !net.security_groups.is_empty() => Some(net.security_groups.clone()),
            None => None,
        };
        let qos = match req
            .options
            .get(super::network::QOS_POLICY_OPTION)
            .and_then(Value::as_str)
        {
            Some(v) => Some(self.qos_policy_id(v).await?),
            None => None,
        };
        let floating = self.floating_ask(&req.options, &net).await?;
        let mut ask = EndpointAsk {
            ep,
            addrs,
            subnets,
            mac,
            groups,
            qos,
            floating,
        };
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
        let host = self.host_plan(&ports, &net).await?;
        let plan = self.port_plan(&ask, &net, &host, ports)?;
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
        if let Err(e) = self.plug_endpoint(&host, &port, ep, &net).await {
            return Err(self.undo_port(undo, ep, e).await);
        }
        if let Some(f) = &ask.floating {
            if let Err(e) = self.attach_floating_ip(f, &port, ep, retried).await {
                let bind = bind_context(&port, ep, &port.project_id);
                if let Err(u) = self.plumber.unplug(&bind).await {
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

    /// The port's vnic_type picks the driver: an SR-IOV port (made beforehand with
    /// `--vnic-type direct` and adopted) gets a VF whatever the default driver is; checked
    /// before Neutron is touched.
    async fn host_plan(&self, ports: &[Port], net: &NetInfo) -> Result<HostPlan> {
        if let [p] = ports {
            if super::sriov::is_sriov(&p.vnic_type) {
                return Ok(HostPlan::Sriov(
                    self.sriov_plan(p, &net.physical_network).await?,
                ));
            }
        }
        Ok(match self.nested() {
            Some((link, kind)) => HostPlan::Nested(link.to_string(), kind),
            None => HostPlan::Veth,
        })
    }

    /// The port's binding body for this endpoint and host plan.
    fn binding_body(&self, ep: &str, host: &HostPlan) -> Value {
        let mut binding = json!({
            "binding:host_id": self.cfg.host,
            "device_owner": names::DEVICE_OWNER,
            "device_id": ep,
            "admin_state_up": true,
        });
        if let (HostPlan::Nested(_, kind), Some(b)) = (host, binding.as_object_mut()) {
            // The container port stays unbound: the VM's port carries its traffic.
            b.remove("binding:host_id");
            // Neutron takes only ports nobody owns as subports; the trunk plugin then
            // owns it (`trunk:subport`). The endpoint tags still say whose it is.
            if *kind == super::nested::NestedKind::Vlan {
                b.remove("device_owner");
                b.remove("device_id");
            }
        }
        if let HostPlan::Sriov(super::sriov::SriovPlan {
            profile: Some(profile),
            ..
        }) = host
        {
            binding["binding:profile"] = json!(profile);
        }
        binding
    }

    fn port_plan(
        &self,
        ask: &EndpointAsk<'_>,
        net: &NetInfo,
        host: &HostPlan,
        ports: Vec<Port>,
    ) -> Result<PortPlan> {
        let ep = ask.ep;
        let mut body = self.binding_body(ep, host);
        if let Some(g) = &ask.groups {
            body["security_groups"] = json!(g);
        }
        if let Some(q) = &ask.qos {
            body["qos_policy_id"] = json!(q);
        }
        let picked = matches!(host, HostPlan::Sriov(p) if p.profile.is_some());
        // One port holding every address: bind it.
        if let [old] = ports.as_slice() {
            if holds_all(old, ask) {
                return Ok(self.update_plan(old.clone(), body, ask, host, picked));
            }
        }
        for p in &ports {
            if !kuryr_made(p) {
                return Err(DriverError::Conflict(format!(
                    "addresses of endpoint {ep} are held by different ports, one of them not kuryr's ({})",
                    p.id
                )));
            }
        }
        let fixed: Vec<Value> = ask
            .addrs
            .iter()
            .zip(&ask.subnets)
            .map(|(ip, s)| json!({"subnet_id": s.id, "ip_address": ip.to_string()}))
            .collect();
        body["name"] = json!(names::UNBOUND_PORT_NAME);
        body["network_id"] = json!(net.neutron_id);
        body["fixed_ips"] = json!(fixed);
        if let Some(m) = &ask.mac {
            body["mac_address"] = json!(m);
        }
        let mut tags = vec![names::TAG_KURYR_PORT.to_string()];
        tags.extend(names::id_tags(ep));
        if ask.groups.is_some() || ask.qos.is_some() || ask.floating.is_some() {
            tags.push(names::TAG_PORT_OWN.to_string());
        }
        Ok(PortPlan::Replace {
            delete: ports,
            body,
            tags,
        })
    }

    fn update_plan(
        &self,
        old: Port,
        mut body: Value,
        ask: &EndpointAsk<'_>,
        host: &HostPlan,
        picked: bool,
    ) -> PortPlan {
        let ep = ask.ep;
        // kuryr's own ports are named after their endpoint, as the reference names them;
        // a user's port keeps its name.
        if kuryr_made(&old) {
            body["name"] = json!(names::endpoint_port_name(ep));
        }
        let new_mac = ask
            .mac
            .as_ref()
            .filter(|m| !old.mac_address.eq_ignore_ascii_case(m));
        if let Some(m) = new_mac {
            body["mac_address"] = json!(m);
        }
        // A user's port keeps its own groups and policy.
        if !kuryr_made(&old) {
            if let Some(b) = body.as_object_mut() {
                b.remove("security_groups");
                b.remove("qos_policy_id");
            }
        }
        let groups_ok = body
            .get("security_groups")
            .and_then(Value::as_array)
            .is_none_or(|g| {
                g.len() == old.security_groups.len()
                    && g.iter().all(|x| {
                        x.as_str()
                            .is_some_and(|x| old.security_groups.iter().any(|o| o == x))
                    })
            })
            && body
                .get("qos_policy_id")
                .is_none_or(|q| q.as_str() == old.qos_policy_id.as_deref());
        let nested = matches!(host, HostPlan::Nested(..));
        let subport = matches!(host, HostPlan::Nested(_, super::nested::NestedKind::Vlan));
        let already = (nested || old.host_id == self.cfg.host)
            && (subport || old.device_id == ep)
            && names::has_id_tags(&old.tags, ep)
            && groups_ok;
        // binding_failed is retried: the agent may have come up since.
        if already && (nested || old.vif_type.is_bound()) {
            return PortPlan::Keep(Box::new(old));
        }
        // Another endpoint's tags (a port given back to the pool) do not stay.
        let mut tags: Vec<String> = old
            .tags
            .iter()
            .filter(|t| !t.starts_with(names::TAG_LOW) && !t.starts_with(names::TAG_HIGH))
            .cloned()
            .collect();
        let mut add = names::id_tags(ep);
        if picked {
            add.push(names::TAG_VF_PICKED.to_string());
        }
        let own = body.get("security_groups").is_some() || body.get("qos_policy_id").is_some();
        if (own && !groups_ok) || ask.floating.is_some() {
            add.push(names::TAG_PORT_OWN.to_string());
        }
        if kuryr_made(&old) {
            add.push(names::TAG_KURYR_PORT.to_string());
        }
        for t in add {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let bound_here = old.host_id == self.cfg.host && old.vif_type.is_bound();
        let free = old.device_id.is_empty() || old.device_id == ep;
        // Groups take effect before the container starts: not deferred with the rest.
        if matches!(host, HostPlan::Veth) && bound_here && free && new_mac.is_none() && groups_ok {
            if let Some(b) = body.as_object_mut() {
                // Already so: bound here, admin up.
                b.remove("binding:host_id");
                b.remove("admin_state_up");
            }
            return PortPlan::Finish {
                port: Box::new(old),
                body,
                tags,
            };
        }
        let unbind_first = new_mac.is_some() && old.vif_type.is_bound();
        PortPlan::Update {
            port: Box::new(old),
            body,
            tags,
            unbind_first,
        }
    }

    /// Carries the port plan out; on failure what it did is undone before it returns.
    /// On success: the port, and what to give back if a later step fails.
    async fn apply_port(&self, plan: PortPlan) -> Result<(Port, PortUndo)> {
        match plan {
            PortPlan::Keep(port) => Ok((*port, PortUndo::Nothing)),
            PortPlan::Finish { port, body, tags } => {
                // What the port will say once the bookkeeping is written.
                let mut done = (*port).clone();
                done.device_id = body["device_id"].as_str().unwrap_or_default().to_string();
                done.device_owner = names::DEVICE_OWNER.to_string();
                if let Some(n) = body["name"].as_str() {
                    done.name = n.to_string();
                }
                done.tags = tags;
                Ok((done, PortUndo::Nothing))
            }
            PortPlan::Update {
                port,
                body,
                tags,
                unbind_first,
            } => {
                let qos = body.get("qos_policy_id").is_some();
                if unbind_first {
                    let unbind = json!({"binding:host_id": ""});
                    if let Err(e) = self.neutron.update::<Port>(&port.id, unbind).await {
                        let id = port.id.clone();
                        return Err(self
                            .undo_port(PortUndo::Restore(port, qos), &id, e.into())
                            .await);
                    }
                }
                // Independent requests: binding and tags go to Neutron side by side.
                let update = self.neutron.update::<Port>(&port.id, body);
                let result = if tags != port.tags {
                    tokio::try_join!(update, self.neutron.replace_tags::<Port>(&port.id, &tags))
                        .map(|(p, ())| p)
                } else {
                    update.await
                };
                match result {
                    Ok(mut updated) => {
                        updated.tags = tags;
                        Ok((updated, PortUndo::Restore(port, qos)))
                    }
                    Err(e) => {
                        let id = port.id.clone();
                        Err(self
                            .undo_port(PortUndo::Restore(port, qos), &id, e.into())
                            .await)
                    }
                }
            }
            PortPlan::Replace { delete, body, tags } => {
                for p in &delete {
                    self.neutron.delete_if_exists::<Port>(&p.id).await?;
                }
                let mut port: Port = self.neutron.create(body).await?;
                let undo = PortUndo::Delete(port.id.clone());
                if let Err(e) = self.neutron.replace_tags::<Port>(&port.id, &tags).await {
                    let id = port.id.clone();
                    return Err(self.undo_port(undo, &id, e.into()).await);
                }
                port.tags = tags;
                Ok((port, undo))
            }
        }
    }

    /// The host side: a VF, a sub-interface of the VM's NIC, or a veth bound per vif_type;
    /// with `vif_plugging_is_fatal`, until Neutron reports the port ACTIVE. Undone on
    /// failure.
    async fn plug_endpoint(
        &self,
        host: &HostPlan,
        port: &Port,
        ep: &str,
        net: &NetInfo,
    ) -> Result<()> {
        let fatal = self.cfg.neutron.vif_plugging_is_fatal;
        match host {
            HostPlan::Sriov(plan) => {
                let vf = self.plug_sriov(&plan.dev, port, net.mtu).await?;
                tracing::info!(port = %port.id, pci_slot = %plan.dev.pci_slot, netdev = %vf, "SR-IOV VF programmed");
                if fatal {
                    if let Err(e) = self.wait_active(&port.id).await {
                        crate::deadline::undo(self.unplug_sriov(port)).await;
                        return Err(e);
                    }
                }
            }
            HostPlan::Nested(link, kind) => {
                self.plug_nested(link, *kind, port, net.mtu).await?;
            }
            HostPlan::Veth => {
                let bind = bind_context(port, ep, &net.project_id);
                self.plumber
                    .plug(&PlugRequest {
                        bind: bind.clone(),
                        mtu: net.mtu,
                    })
                    .await?;
                if fatal {
                    if let Err(e) = self.wait_active(&port.id).await {
                        return Err(
                            match crate::deadline::undo(self.plumber.unplug(&bind)).await {
                                Ok(()) => e,
                                Err(u) => e.rolled_back_with(vec![u.into()]),
                            },
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The endpoint's device_id, name and tags on its port, off the start path: a moment
    /// after the answer, when Docker is done starting the container (Neutron shares the
    /// host's CPUs), and not at all if the endpoint goes first. Until they are written
    /// the port is known to be taken by its host veth, whose alias names the endpoint.
    fn write_bookkeeping(&self, before: Port, body: Value, tags: Vec<String>) {
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

    /// Gives the port back as it was (a failed CreateEndpoint); every step is tried, and
    /// what could not be undone is added to `error`, which is returned.
    async fn undo_port(&self, undo: PortUndo, ep: &str, error: DriverError) -> DriverError {
        crate::deadline::undo(self.undo_port_now(undo, ep, error)).await
    }

    async fn undo_port_now(&self, undo: PortUndo, ep: &str, error: DriverError) -> DriverError {
        let mut failures: Vec<DriverError> = Vec::new();
        match undo {
            PortUndo::Nothing => {}
            PortUndo::Delete(id) => {
                if let Err(e) = self.neutron.delete_if_exists::<Port>(&id).await {
                    failures.push(e.into());
                }
            }
            PortUndo::Restore(port, qos) => {
                // Unbound first: Neutron refuses a MAC change on a bound port, and the
                // update may have changed the MAC (`--mac-address`).
                let mut body = json!({
                    "binding:host_id": port.host_id,
                    "device_owner": port.device_owner,
                    "device_id": port.device_id,
                    "name": port.name,
                    "mac_address": port.mac_address,
                    "security_groups": port.security_groups,
                });
                if qos {
                    body["qos_policy_id"] = json!(port.qos_policy_id);
                }
                // A VF kuryr picked is given back with the rest.
                if super::sriov::is_sriov(&port.vnic_type) {
                    body["binding:profile"] = json!(port.profile);
                }
                let unbind = json!({"binding:host_id": ""});
                let restored = match self.neutron.update::<Port>(&port.id, unbind).await {
                    Ok(_) => self
                        .neutron
                        .update::<Port>(&port.id, body)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = restored {
                    failures.push(e.into());
                }
                if let Err(e) = self
                    .neutron
                    .replace_tags::<Port>(&port.id, &port.tags)
                    .await
                {
                    failures.push(e.into());
                }
            }
        }
        self.cache.endpoints.remove(&ep.to_string());
        if failures.is_empty() {
            error
        } else {
            tracing::warn!(endpoint = %ep, failures = failures.len(), "rollback incomplete");
            error.rolled_back_with(failures)
        }
    }

    pub async fn delete_endpoint(&self, req: EndpointRequest) -> Result<Value> {
        let ep = req.endpoint_id.as_str();
        let _g = self.locks.lock(&format!("ep:{ep}")).await;
        let Some(info) = self.endpoint_info(&req.network_id, ep).await? else {
            tracing::info!(endpoint = %ep, "DeleteEndpoint: no port is tagged for it; nothing to do");
            return Ok(json!({}));
        };
        let port = &info.port;
        if let Some(newer) = self.endpoint_serving(&port.id, Some(ep)) {
            tracing::info!(endpoint = %ep, port = %port.id, %newer, "DeleteEndpoint: the port serves a newer endpoint now; left to it");
            self.cache.endpoints.remove(&ep.to_string());
            return Ok(json!({}));
        }
        // Bookkeeping not started yet is not needed any more: the port is released next.
        self.background.cancel(&port.id);
        self.background.settle(&port.id).await;
        // Every step runs whatever failed before it; the endpoint is forgotten only when
        // all worked, so Docker's retry redoes what is left.
        let mut failed = super::Failures::default();
        if super::sriov::is_sriov(&port.vnic_type) {
            self.unplug_sriov(port).await;
        } else if let Some((link, kind)) = self.nested() {
            failed.step(self.unplug_nested(link, kind, port).await);
        } else {
            let bind = bind_context(port, ep, &port.project_id);
            failed.step(self.plumber.unplug(&bind).await.map_err(Into::into));
        }
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
        if failed.is_empty() {
            self.cache.endpoints.remove(&ep.to_string());
        }
        failed.into_result()?;
        Ok(json!({}))
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

    pub async fn endpoint_oper_info(&self, req: EndpointRequest) -> Result<Value> {
        let Some(info) = self
            .endpoint_info(&req.network_id, &req.endpoint_id)
            .await?
        else {
            return Ok(json!({"Value": {}}));
        };
        // Status changes as the agent works. Docker asks several times per start: the
        // answer comes from memory, and a status that is not ACTIVE yet (where it then
        // stays) is read again in the background, at most every two seconds.
        let status = info.port.status.clone();
        let stale = info
            .status_read_at
            .is_none_or(|t| t.elapsed() >= STATUS_TTL);
        if status != PortStatus::Active && stale {
            self.refresh_status(req.endpoint_id.to_string(), info.port.id.clone());
        }
        Ok(json!({"Value": {"status": status}}))
    }

    /// Reads a port's status into the endpoint's cache entry, in the background; an entry
    /// gone meanwhile (DeleteEndpoint) is not brought back.
    fn refresh_status(&self, ep: String, port_id: String) {
        let (neutron, cache) = (self.neutron.clone(), self.cache.clone());
        if let Some(mut e) = cache.endpoints.get(&ep) {
            // Marks the read as under way, so concurrent calls start no second one.
            e.status_read_at = Some(Instant::now());
            cache.endpoints.update(&ep, |v| *v = e);
        }
        self.background.spawn(&port_id.clone(), async move {
            match neutron.get::<Port>(&port_id).await {
                Ok(p) => cache.endpoints.update(&ep, |v| {
                    v.port.status = p.status;
                    v.status_read_at = Some(Instant::now());
                }),
                Err(e) => tracing::debug!(port = %port_id, error = %e, "port status not read"),
            }
        });
    }

    pub async fn join(&self, req: JoinRequest) -> Result<JoinResponse> {
        if req.sandbox_key.is_empty()
            || !req.sandbox_key.starts_with('/')
            || req.sandbox_key.contains("..")
        {
            return Err(bad(format!(
                "SandboxKey {:?} is not an absolute path",
                req.sandbox_key
            )));
        }
        let net = self.require_net(&req.network_id).await?;
        let info = self
            .endpoint_info(&req.network_id, &req.endpoint_id)
            .await?
            .ok_or_else(|| {
                DriverError::NotFound(format!(
                    "The port doesn't exist for the identifier {}",
                    req.endpoint_id
                ))
            })?;
        let port = &info.port;
        let mut gateway = None;
        let mut gateway_v6 = None;
        let mut routes = Vec::new();
        for f in &port.fixed_ips {
            let Some(s) = net.subnets.iter().find(|s| s.id == f.subnet_id) else {
                continue;
            };
            let gw = s.gateway_ip.map(|g| g.to_string());
            if s.ip_version == 6 || s.cidr.addr().is_ipv6() {
                gateway_v6 = gateway_v6.or(gw);
            } else {
                gateway = gateway.or(gw);
            }
            for r in &s.host_routes {
                routes.push(StaticRoute {
                    destination: r.destination.clone(),
                    route_type: 0,
                    next_hop: r.nexthop.clone(),
                });
            }
        }
        let src_name = if super::sriov::is_sriov(&port.vnic_type) {
            self.sriov_ifname(port)?
        } else {
            names::container_veth(&port.id)
        };
        Ok(JoinResponse {
            interface_name: InterfaceName {
                src_name,
                dst_prefix: self.cfg.binding.veth_dst_prefix.clone(),
            },
            gateway,
            gateway_ipv6: gateway_v6,
            static_routes: routes,
            disable_gateway_service: true,
        })
    }

    /// Nothing to undo of Join; the ids were checked when the request was parsed.
    pub async fn leave(&self, _req: EndpointRequest) -> Result<Value> {
        Ok(json!({}))
    }

    pub async fn program_external_connectivity(&self, req: EndpointRequest) -> Result<Value> {
        if !self.cfg.process_external_connectivity {
            return Ok(json!({}));
        }
        let exposed = exposed_ports(&req.options);
        if exposed.is_empty() {
            return Ok(json!({}));
        }
        let ranges = port_ranges(&exposed)?;
        let _g = self.locks.lock(&format!("ep:{}", req.endpoint_id)).await;
        let Some(mut info) = self
            .endpoint_info(&req.network_id, &req.endpoint_id)
            .await?
        else {
            return Ok(json!({}));
        };
        let port_id = info.port.id.clone();
        self.background.settle(&port_id).await;
        info.no_exposed_group = false;
        self.cache.endpoints.put(req.endpoint_id.to_string(), info);
        let name = names::exposed_sg_name(&port_id);
        let existing: Vec<SecurityGroup> = self
            .neutron
            .list(&Filters::new().add("name", &name))
            .await?;
        // A group already there is finished rather than trusted: a call killed half-way
        // (kuryr restarted, Docker resends) left it without all its rules or off the port.
        let (sg, made) = match existing.into_iter().next() {
            Some(sg) => (sg, false),
            None => {
                let sg: SecurityGroup = self
                    .neutron
                    .create(json!({"name": name, "description": names::SG_DESCRIPTION}))
                    .await?;
                (sg, true)
            }
        };
        crate::kill_point!("ProgramExternalConnectivity.after_group");
        let result = self.complete_exposed_group(&sg, &ranges, &port_id).await;
        if let Err(e) = result {
            if !made {
                return Err(e);
            }
            let undone =
                crate::deadline::undo(self.neutron.delete_if_exists::<SecurityGroup>(&sg.id)).await;
            return Err(match undone {
                Ok(()) => e,
                Err(u) => e.rolled_back_with(vec![u.into()]),
            });
        }
        Ok(json!({}))
    }

    /// Gives the exposed-ports group the rules it lacks and puts it on the port if it is
    /// not there yet.
    async fn complete_exposed_group(
        &self,
        sg: &SecurityGroup,
        ranges: &[(&'static str, u16, u16)],
        port_id: &str,
    ) -> Result<()> {
        for (proto, lo, hi) in ranges {
            let (lo, hi) = if *proto == "icmp" {
                (None, None)
            } else {
                (Some(*lo), Some(*hi))
            };
            for ethertype in ["IPv4", "IPv6"] {
                let present = sg.security_group_rules.iter().any(|r| {
                    r.direction == "ingress"
                        && r.protocol.as_deref() == Some(*proto)
                        && r.ethertype.as_deref() == Some(ethertype)
                        && r.port_range_min == lo
                        && r.port_range_max == hi
                });
                if present {
                    continue;
                }
                let mut rule = json!({
                    "security_group_id": sg.id,
                    "direction": "ingress",
                    "protocol": proto,
                    "ethertype": ethertype,
                });
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    rule["port_range_min"] = json!(lo);
                    rule["port_range_max"] = json!(hi);
                }
                self.neutron.create::<SecurityGroupRule>(rule).await?;
            }
        }
        let port: Port = self.neutron.get(port_id).await?;
        if port.security_groups.contains(&sg.id) {
            return Ok(());
        }
        let mut groups = vec![sg.id.clone()];
        groups.extend(port.security_groups);
        self.neutron
            .update::<Port>(port_id, json!({"security_groups": groups}))
            .await?;
        Ok(())
    }

    pub async fn revoke_external_connectivity(&self, req: EndpointRequest) -> Result<Value> {
        if !self.cfg.process_external_connectivity {
            return Ok(json!({}));
        }
        let _g = self.locks.lock(&format!("ep:{}", req.endpoint_id)).await;
        let Some(info) = self
            .endpoint_info(&req.network_id, &req.endpoint_id)
            .await?
        else {
            return Ok(json!({}));
        };
        if info.no_exposed_group {
            return Ok(json!({}));
        }
        self.background.settle(&info.port.id).await;
        self.take_off_exposed_group(&info.port.id).await?;
        // DeleteEndpoint, next, need not look again.
        self.cache
            .endpoints
            .update(&req.endpoint_id.to_string(), |v| v.no_exposed_group = true);
        Ok(json!({}))
    }

    /// Takes the port's exposed-ports group (if any) off the port and deletes it. Run by
    /// RevokeExternalConnectivity and again by DeleteEndpoint: a Revoke that was never
    /// sent (Docker's rollback of a failed start) or cut short by a crash leaves no group.
    async fn take_off_exposed_group(&self, port_id: &str) -> Result<()> {
        let groups: Vec<SecurityGroup> = self
            .neutron
            .list(&Filters::new().add("name", names::exposed_sg_name(port_id)))
            .await?;
        if groups.is_empty() {
            return Ok(());
        }
        match self.neutron.get::<Port>(port_id).await {
            Ok(port) => {
                let keep: Vec<String> = port
                    .security_groups
                    .iter()
                    .filter(|g| !groups.iter().any(|s| &s.id == *g))
                    .cloned()
                    .collect();
                if keep.len() != port.security_groups.len() {
                    self.neutron
                        .update::<Port>(port_id, json!({"security_groups": keep}))
                        .await?;
                    crate::kill_point!("RevokeExternalConnectivity.after_port");
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        for g in groups {
            self.neutron
                .delete_if_exists::<SecurityGroup>(&g.id)
                .await?;
        }
        Ok(())
    }
}

/// An endpoint's bookkeeping waiting to be written on its port.
struct Bookkeeping {
    background: Arc<super::background::Background>,
    neutron: Neutron,
    unwritten: Arc<std::sync::Mutex<std::collections::HashMap<String, Port>>>,
    before: Port,
    body: Value,
    tags: Vec<String>,
    /// Nothing of it has reached the port yet.
    as_made: bool,
}

/// A bookkeeping Neutron did not take (down, restarting) is tried again, each wait twice
/// the last, up to this; DeleteEndpoint cancels a retry still waiting.
const BOOKKEEPING_RETRY_MAX: Duration = Duration::from_secs(60);

impl Bookkeeping {
    fn schedule(mut self, delay: Duration) {
        let id = self.before.id.clone();
        // A port given back while marked unwritten is not scrubbed: marked only while
        // nothing of the bookkeeping has reached it.
        if self.as_made {
            if let Ok(mut m) = self.unwritten.lock() {
                m.insert(id.clone(), self.before.clone());
            }
        }
        let background = self.background.clone();
        background.spawn_after(&id.clone(), delay, async move {
            if let Ok(mut m) = self.unwritten.lock() {
                m.remove(&id);
            }
            crate::kill_point!("CreateEndpoint.bookkeeping");
            let (update, tagged) = tokio::join!(
                self.neutron.update::<Port>(&id, self.body.clone()),
                self.neutron.replace_tags::<Port>(&id, &self.tags)
            );
            let failed: Vec<NeutronError> = [update.err(), tagged.err()]
                .into_iter()
                .flatten()
                .collect();
            if failed.is_empty() || failed.iter().any(NeutronError::is_not_found) {
                return;
            }
            let next = (delay * 2).min(BOOKKEEPING_RETRY_MAX);
            tracing::warn!(port = %id, error = %failed[0], retry_in_s = next.as_secs(), "endpoint bookkeeping on the port failed; trying again");
            self.as_made &= failed.len() == 2;
            self.schedule(next);
        });
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
fn holds_all(port: &Port, ask: &EndpointAsk<'_>) -> bool {
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
        port_id: port.id.clone(),
        endpoint_id: ep.to_string(),
        mac: port.mac_address.to_ascii_lowercase(),
        network_id: port.network_id.clone(),
        project_id: if port.project_id.is_empty() {
            project_id.to_string()
        } else {
            port.project_id.clone()
        },
        ifname: String::new(),
    }
}

/// Exposed ports grouped by protocol into contiguous ranges: `(proto, min, max)`.
pub(crate) fn port_ranges(exposed: &[ExposedPort]) -> Result<Vec<(&'static str, u16, u16)>> {
    let mut by_proto: BTreeMap<&'static str, Vec<u16>> = BTreeMap::new();
    for e in exposed {
        let proto = match e.proto {
            6 => "tcp",
            17 => "udp",
            1 => "icmp",
            p => {
                return Err(bad(format!(
                    "exposed port protocol {p} is not supported (tcp, udp, icmp)"
                )))
            }
        };
        by_proto.entry(proto).or_default().push(e.port);
    }
    let mut out = Vec::new();
    for (proto, mut ports) in by_proto {
        ports.sort_unstable();
        ports.dedup();
        if proto == "icmp" {
            out.push((proto, 0, 0));
            continue;
        }
        let mut iter = ports.into_iter();
        let Some(first) = iter.next() else { continue };
        let (mut lo, mut hi) = (first, first);
        for p in iter {
            if hi.checked_add(1) == Some(p) {
                hi = p;
            } else {
                out.push((proto, lo, hi));
                lo = p;
                hi = p;
            }
        }
        out.push((proto, lo, hi));
    }
    Ok(out)
}

impl Driver {
    /// The floating IP an endpoint asks for: the container's own address
    /// (`neutron.floating_ip`), else an external network (the container's, else its
    /// network's); resolved before anything is made.
    async fn floating_ask(
        &self,
        options: &serde_json::Map<String, Value>,
        net: &NetInfo,
    ) -> Result<Option<Floating>> {
        let opt = |k: &str| options.get(k).and_then(Value::as_str).map(str::trim);
        if let Some(addr) = opt(super::network::FLOATING_IP_OPTION) {
            let ip: std::net::IpAddr = addr.parse().map_err(|_| {
                DriverError::BadRequest(format!(
                    "{}={addr:?} is not an IP address",
                    super::network::FLOATING_IP_OPTION
                ))
            })?;
            let found: Vec<FloatingIp> = self
                .neutron
                .list(&Filters::new().add("floating_ip_address", ip.to_string()))
                .await?;
            return match found.into_iter().next() {
                Some(f) => Ok(Some(Floating::Existing(f))),
                None => Err(DriverError::BadRequest(format!(
                    "no floating IP {ip} is allocated: allocate it first (openstack floating ip create --floating-ip-address {ip} NETWORK)"
                ))),
            };
        }
        if let Some(n) = opt(super::network::FLOATING_NETWORK_OPTION) {
            return Ok(Some(Floating::Allocate(self.external_network_id(n).await?)));
        }
        Ok(net.floating_network.clone().map(Floating::Allocate))
    }

    /// Puts the floating IP on the port: one request (a retried call first looks for the
    /// one it allocated). Neutron refuses when no router joins the port's subnet to the
    /// external network; its message is the error.
    pub(super) async fn attach_floating_ip(
        &self,
        f: &Floating,
        port: &Port,
        ep: &str,
        retried: bool,
    ) -> Result<()> {
        match f {
            Floating::Allocate(net) => {
                if retried {
                    let have: Vec<FloatingIp> = self
                        .neutron
                        .list(&Filters::new().add("port_id", &port.id))
                        .await?;
                    if !have.is_empty() {
                        return Ok(());
                    }
                }
                let made: FloatingIp = self
                    .neutron
                    .create(json!({
                        "floating_network_id": net,
                        "port_id": port.id,
                        "description": names::fip_description(ep),
                    }))
                    .await?;
                tracing::info!(endpoint = %ep, floating_ip = %made.floating_ip_address, "floating IP allocated");
            }
            Floating::Existing(fip) => {
                self.neutron
                    .update::<FloatingIp>(&fip.id, json!({"port_id": port.id}))
                    .await?;
                tracing::info!(endpoint = %ep, floating_ip = %fip.floating_ip_address, "floating IP associated");
            }
        }
        Ok(())
    }

    /// At an endpoint's end: the floating IP kuryr allocated for it is released, a user's
    /// only disassociated (it stays theirs).
    pub(super) async fn detach_floating_ips(&self, port_id: &str, ep: &str) -> Result<()> {
        let fips: Vec<FloatingIp> = self
            .neutron
            .list(&Filters::new().add("port_id", port_id))
            .await?;
        for f in fips {
            if f.description == names::fip_description(ep) {
                self.neutron.delete_if_exists::<FloatingIp>(&f.id).await?;
            } else {
                match self
                    .neutron
                    .update::<FloatingIp>(&f.id, json!({"port_id": null}))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_contiguous_ports() {
        let e = |proto, port| ExposedPort { proto, port };
        let r =
            port_ranges(&[e(6, 80), e(6, 81), e(6, 443), e(17, 53), e(6, 82), e(6, 80)]).unwrap();
        assert_eq!(r, vec![("tcp", 80, 82), ("tcp", 443, 443), ("udp", 53, 53)]);
        assert!(port_ranges(&[e(132, 1)]).is_err());
        assert_eq!(
            port_ranges(&[e(6, 65535)]).unwrap(),
            vec![("tcp", 65535, 65535)]
        );
    }
}
