//! CreateEndpoint's Neutron step: the plan (keep, update or create the endpoint's port),
//! decided before anything changes, its application, and the record that undoes it.

use super::binder::Binder;
use super::cache::NetInfo;
use super::endpoint::{holds_all, EndpointAsk};
use super::{kuryr_made, Driver, DriverError, Result};
use crate::names;
use crate::neutron::{FixedIpAsk, NewPort, Port, PortBody, PortId};

/// What CreateEndpoint does to Neutron, decided before anything changes.
pub(super) enum PortPlan {
    /// The port is bound and tagged for this endpoint already (a retry): nothing to do.
    Keep(Box<Port>),
    /// The port is bound to this host already (made so by RequestAddress or the pool):
    /// nothing on the start path; its endpoint bookkeeping (device_id, name, tags) is
    /// written after the answer.
    Finish {
        port: Box<Port>,
        body: PortBody,
        tags: Vec<String>,
    },
    /// One update of the port (binding, device, maybe MAC, name or VF profile) and of its
    /// tags; a bound port whose MAC changes is unbound first (Neutron refuses a new MAC
    /// on a bound port).
    Update {
        port: Box<Port>,
        body: PortBody,
        tags: Vec<String>,
        unbind_first: bool,
    },
    /// Dual stack from IPAM (one port per family): kuryr's ports are replaced by one port
    /// holding every address, as Neutron models an endpoint.
    Replace {
        delete: Vec<Port>,
        body: NewPort,
        tags: Vec<String>,
    },
}

/// The rollback record of the Neutron step: what to give back if a later step fails.
pub(super) enum PortUndo {
    Nothing,
    Delete(PortId),
    /// The port as it was; `qos`: its QoS policy was written too.
    Restore(Box<Port>, bool),
}

impl Driver {
    pub(super) fn port_plan(
        &self,
        ask: &EndpointAsk<'_>,
        net: &NetInfo,
        host: &dyn Binder,
        ports: Vec<Port>,
    ) -> Result<PortPlan> {
        let ep = ask.ep;
        let mut body = self.binding_body(ep, host);
        body.security_groups = ask.groups.clone();
        body.qos_policy_id = ask.qos.clone().map(Some);
        let picked = host.picked_vf();
        // One port holding every address: bind it (unless it was plugged ahead and must
        // change what its filter was made from: a new port is filtered from its start).
        if let [old] = ports.as_slice() {
            if holds_all(old, ask) && !self.replug(old, &body, ask, host) {
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
        let fixed = ask
            .addrs
            .iter()
            .zip(&ask.subnets)
            .map(|(ip, s)| FixedIpAsk {
                subnet_id: s.id.clone(),
                ip_address: Some(*ip),
            })
            .collect();
        // The endpoint's port from the start, named after it.
        body.name = Some(names::endpoint_port_name(ep));
        body.fixed_ips = Some(fixed);
        body.mac_address.clone_from(&ask.mac);
        let mut tags = vec![names::TAG_KURYR_PORT.to_string()];
        tags.extend(names::id_tags(ep));
        if ask.groups.is_some() || ask.qos.is_some() || ask.floating.is_some() {
            tags.push(names::TAG_PORT_OWN.to_string());
        }
        Ok(PortPlan::Replace {
            delete: ports,
            body: NewPort {
                network_id: net.neutron_id.as_str().into(),
                port: body,
            },
            tags,
        })
    }

    /// A pool port plugged ahead whose groups or MAC the endpoint changes: its veth was
    /// filtered as it was, and the agent may still let through what the new groups do not
    /// while it catches up (the port stays ACTIVE), so the endpoint gets a new port.
    fn replug(
        &self,
        old: &Port,
        body: &PortBody,
        ask: &EndpointAsk<'_>,
        host: &dyn Binder,
    ) -> bool {
        let groups_change = body.security_groups.as_ref().is_some_and(|g| {
            g.len() != old.security_groups.len()
                || !g.iter().all(|x| old.security_groups.contains(x))
        });
        let mac_change = ask
            .mac
            .as_ref()
            .is_some_and(|m| !old.mac_address.eq_ignore_ascii_case(m));
        self.port_pool.plugs_ahead()
            && host.takes_ready_ports()
            && old.name == super::port_pool::POOL_PORT_NAME
            && (groups_change || mac_change)
    }

    fn update_plan(
        &self,
        old: Port,
        mut body: PortBody,
        ask: &EndpointAsk<'_>,
        host: &dyn Binder,
        picked: bool,
    ) -> PortPlan {
        let ep = ask.ep;
        // kuryr's own ports are named after their endpoint, as the reference names them;
        // a user's port keeps its name.
        if kuryr_made(&old) {
            body.name = Some(names::endpoint_port_name(ep));
        }
        let new_mac = ask
            .mac
            .as_ref()
            .filter(|m| !old.mac_address.eq_ignore_ascii_case(m));
        body.mac_address = new_mac.cloned();
        // A user's port keeps its own groups and policy.
        if !kuryr_made(&old) {
            body.security_groups = None;
            body.qos_policy_id = None;
        }
        let groups_ok = groups_and_policy_as_asked(&old, &body);
        let nested = !host.bound_here();
        let subport = host.subport();
        let already = (nested || old.host_id == self.cfg.host)
            && (subport || old.device_id == ep)
            && names::has_id_tags(&old.tags, ep)
            && groups_ok;
        // binding_failed is retried: the agent may have come up since.
        if already && (nested || old.vif_type.is_bound()) {
            return PortPlan::Keep(Box::new(old));
        }
        let own = body.security_groups.is_some() || body.qos_policy_id.is_some();
        let tags = endpoint_tags(
            &old,
            ep,
            picked,
            (own && !groups_ok) || ask.floating.is_some(),
        );
        let bound_here = old.host_id == self.cfg.host && old.vif_type.is_bound();
        let free = old.device_id.is_empty() || old.device_id == ep;
        // Groups take effect before the container starts: not deferred with the rest.
        if host.takes_ready_ports() && bound_here && free && new_mac.is_none() && groups_ok {
            // Already so: bound here, admin up.
            body.host_id = None;
            body.admin_state_up = None;
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
    pub(super) async fn apply_port(&self, plan: PortPlan) -> Result<(Port, PortUndo)> {
        match plan {
            PortPlan::Keep(port) => Ok((*port, PortUndo::Nothing)),
            PortPlan::Finish { port, body, tags } => {
                // What the port will say once the bookkeeping is written.
                let mut done = (*port).clone();
                done.device_id = body.device_id.clone().unwrap_or_default();
                done.device_owner = names::DEVICE_OWNER.to_string();
                if let Some(n) = &body.name {
                    done.name.clone_from(n);
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
                let qos = body.qos_policy_id.is_some();
                if unbind_first {
                    let unbind = PortBody::unbind();
                    if let Err(e) = self.neutron.update::<Port>(&port.id, unbind).await {
                        let id = port.id.clone();
                        return Err(self
                            .undo_port(PortUndo::Restore(port, qos), &id, e.into())
                            .await);
                    }
                }
                let changed = (tags != port.tags).then_some(tags.as_slice());
                match self
                    .neutron
                    .update_port_then_tags(&port.id, body, changed)
                    .await
                {
                    Ok(mut updated) => {
                        updated.tags = tags;
                        Ok((updated, PortUndo::Restore(port, qos)))
                    }
                    Err(e) => {
                        let id = port.id.clone();
                        Err(self
                            .undo_port(PortUndo::Restore(port, qos), &id, e.error.into())
                            .await)
                    }
                }
            }
            PortPlan::Replace { delete, body, tags } => {
                for p in &delete {
                    self.neutron.delete_if_exists::<Port>(&p.id).await?;
                    if self.port_pool.plugs_ahead() {
                        // A pool port plugged ahead takes its veth with it.
                        for ifname in [names::host_veth(&p.id), names::container_veth(&p.id)] {
                            if let Err(e) = self.plumber.delete_link(&ifname).await {
                                tracing::warn!(%ifname, error = %e, "cannot delete the veth of a replaced port");
                            }
                        }
                    }
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

    /// Gives the port back as it was (a failed CreateEndpoint); every step is tried, and
    /// what could not be undone is added to `error`, which is returned.
    pub(super) async fn undo_port(
        &self,
        undo: PortUndo,
        ep: &str,
        error: DriverError,
    ) -> DriverError {
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
                let body = PortBody {
                    host_id: Some(port.host_id.clone()),
                    device_owner: Some(port.device_owner.clone()),
                    device_id: Some(port.device_id.clone()),
                    name: Some(port.name.clone()),
                    mac_address: Some(port.mac_address.clone()),
                    security_groups: Some(port.security_groups.clone()),
                    qos_policy_id: qos.then(|| port.qos_policy_id.clone()),
                    // A VF kuryr picked is given back with the rest.
                    profile: super::sriov::is_sriov(&port.vnic_type).then(|| port.profile.clone()),
                    ..PortBody::default()
                };
                let unbind = PortBody::unbind();
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
}

/// Whether the port has the groups and QoS policy the update body asks for already.
fn groups_and_policy_as_asked(old: &Port, body: &PortBody) -> bool {
    let groups = body.security_groups.as_ref().is_none_or(|g| {
        g.len() == old.security_groups.len()
            && g.iter().all(|x| old.security_groups.iter().any(|o| o == x))
    });
    groups
        && body
            .qos_policy_id
            .as_ref()
            .is_none_or(|q| q.as_deref() == old.qos_policy_id.as_deref())
}

/// The port's tags for endpoint `ep`: its own kept, another endpoint's (a port given
/// back to the pool) dropped; `picked`: kuryr picked its VF; `own`: the port carries
/// settings of its own (groups, policy, floating IP) and is never pooled again.
fn endpoint_tags(old: &Port, ep: &str, picked: bool, own: bool) -> Vec<String> {
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
    if own {
        add.push(names::TAG_PORT_OWN.to_string());
    }
    if kuryr_made(old) {
        add.push(names::TAG_KURYR_PORT.to_string());
    }
    for t in add {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    tags
}
