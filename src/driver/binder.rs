//! Port binders: how a Neutron port reaches a container on this host, one type per way
//! (a veth bound into Neutron's L2 by the port's `binding:vif_type`, a sub-interface of
//! the VM's NIC for the nested drivers, an SR-IOV VF), behind one trait, chosen once per
//! port: [`Driver::binder_for`] when an endpoint is made, [`Driver::binder_of`] when it
//! goes. The planning asks the binder what the port's binding must say; plug and unplug
//! are the binder's own.

use super::cache::NetInfo;
use super::endpoint::bind_context;
use super::nested::NestedKind;
use super::sriov::{is_sriov, SriovPlan};
use super::{Driver, Result};
use crate::host::{PlugRequest, Plugged};
use crate::neutron::{Port, PortBody};
use async_trait::async_trait;

#[async_trait]
pub(super) trait Binder: Send + Sync {
    /// What the binder changes in the port's binding update (made for this host and
    /// endpoint): a nested port stays unbound, a VLAN subport has no owner, a VF kuryr
    /// picked goes into the profile.
    fn binding(&self, _body: &mut PortBody) {}
    /// Neutron binds the port to this host (a nested port is carried by the VM's).
    fn bound_here(&self) -> bool {
        true
    }
    /// The port is a trunk's subport (the trunk plugin owns it).
    fn subport(&self) -> bool {
        false
    }
    /// kuryr picked the port's VF (given back at removal).
    fn picked_vf(&self) -> bool {
        false
    }
    /// A port bound here ahead (the pool's, IPAM's) serves as it is: its endpoint's
    /// bookkeeping can follow the answer.
    fn takes_ready_ports(&self) -> bool {
        false
    }
    /// Wires the port for endpoint `ep` (`net`: its MTU and project); with
    /// `vif_plugging_is_fatal`, until Neutron reports it ACTIVE. On failure nothing of it
    /// stays. The answer names the interface that goes into the container.
    async fn plug(&self, d: &Driver, port: &Port, ep: &str, net: &PlugNet<'_>) -> Result<Plugged>;
    /// Takes the wiring away; what is gone already is fine.
    async fn unplug(&self, d: &Driver, port: &Port, ep: &str) -> Result<()>;
}

/// What a binder needs of the port's network.
pub(super) struct PlugNet<'a> {
    pub mtu: Option<u32>,
    /// The project of the network, for a port that does not say its own.
    pub project_id: &'a str,
    /// CNI: the container's namespace, where the container end is made.
    pub netns: Option<&'a std::path::Path>,
}

impl<'a> From<&'a NetInfo> for PlugNet<'a> {
    fn from(n: &'a NetInfo) -> Self {
        PlugNet {
            mtu: n.mtu,
            project_id: &n.project_id,
            netns: None,
        }
    }
}

/// A veth pair, the host end bound per the port's vif_type (bridge, OVS, hybrid).
struct Veth;

/// The veth binder, the one the CNI front-end serves.
pub(super) fn veth() -> Box<dyn Binder> {
    Box::new(Veth)
}

/// A macvlan/ipvlan/VLAN sub-interface of the VM's NIC `link`.
struct Nested {
    link: String,
    kind: NestedKind,
}

/// An SR-IOV VF; `plan` (which VF, the profile) when it is being plugged.
struct Sriov {
    plan: Option<SriovPlan>,
}

#[async_trait]
impl Binder for Veth {
    fn takes_ready_ports(&self) -> bool {
        true
    }

    async fn plug(&self, d: &Driver, port: &Port, ep: &str, net: &PlugNet<'_>) -> Result<Plugged> {
        let bind = bind_context(port, ep, net.project_id);
        let plugged = d
            .plumber
            .plug(&PlugRequest {
                bind: bind.clone(),
                mtu: net.mtu,
                netns: net.netns.map(std::path::Path::to_path_buf),
            })
            .await?;
        if d.cfg.neutron.vif_plugging_is_fatal {
            if let Err(e) = d.wait_active(&port.id).await {
                return Err(match crate::deadline::undo(d.plumber.unplug(&bind)).await {
                    Ok(()) => e,
                    Err(u) => e.rolled_back_with(vec![u.into()]),
                });
            }
        }
        Ok(plugged)
    }

    async fn unplug(&self, d: &Driver, port: &Port, ep: &str) -> Result<()> {
        let bind = bind_context(port, ep, &port.project_id);
        Ok(d.plumber.unplug(&bind).await?)
    }
}

#[async_trait]
impl Binder for Nested {
    fn binding(&self, body: &mut PortBody) {
        // The container port stays unbound: the VM's port carries its traffic.
        body.host_id = None;
        // Neutron takes only ports nobody owns as subports; the trunk plugin then owns
        // it (`trunk:subport`). The endpoint tags still say whose it is.
        if self.kind == NestedKind::Vlan {
            body.device_owner = None;
            body.device_id = None;
        }
    }

    fn bound_here(&self) -> bool {
        false
    }

    fn subport(&self) -> bool {
        self.kind == NestedKind::Vlan
    }

    async fn plug(&self, d: &Driver, port: &Port, _ep: &str, net: &PlugNet<'_>) -> Result<Plugged> {
        d.plug_nested(&self.link, self.kind, port, net.mtu).await
    }

    async fn unplug(&self, d: &Driver, port: &Port, _ep: &str) -> Result<()> {
        d.unplug_nested(&self.link, self.kind, port).await
    }
}

#[async_trait]
impl Binder for Sriov {
    fn binding(&self, body: &mut PortBody) {
        if let Some(SriovPlan {
            profile: Some(profile),
            ..
        }) = &self.plan
        {
            body.profile = Some(profile.clone());
        }
    }

    fn picked_vf(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.profile.is_some())
    }

    async fn plug(&self, d: &Driver, port: &Port, _ep: &str, net: &PlugNet<'_>) -> Result<Plugged> {
        let Some(plan) = &self.plan else {
            return Err(super::DriverError::Internal(format!(
                "SR-IOV port {}: no VF chosen before plugging",
                port.id
            )));
        };
        let vf = d.plug_sriov(&plan.dev, port, net.mtu).await?;
        tracing::info!(port = %port.id, pci_slot = %plan.dev.pci_slot, netdev = %vf, "SR-IOV VF programmed");
        if d.cfg.neutron.vif_plugging_is_fatal {
            if let Err(e) = d.wait_active(&port.id).await {
                crate::deadline::undo(d.unplug_sriov(port)).await;
                return Err(e);
            }
        }
        Ok(Plugged {
            host_ifname: String::new(),
            container_ifname: vf,
        })
    }

    async fn unplug(&self, d: &Driver, port: &Port, _ep: &str) -> Result<()> {
        d.unplug_sriov(port).await;
        Ok(())
    }
}

impl Driver {
    /// The binder of a port being made an endpoint's: its vnic_type picks SR-IOV (a port
    /// made beforehand with `--vnic-type direct` and adopted gets a VF whatever the
    /// default driver is; its VF is chosen now, before Neutron is touched), else the
    /// configured port driver.
    pub(super) async fn binder_for(
        &self,
        ports: &[Port],
        net: &NetInfo,
    ) -> Result<Box<dyn Binder>> {
        if let [p] = ports {
            if is_sriov(&p.vnic_type) {
                let plan = self.sriov_plan(p, &net.physical_network).await?;
                return Ok(Box::new(Sriov { plan: Some(plan) }));
            }
        }
        Ok(self.driver_binder())
    }

    /// The binder that wired an endpoint's port, for its removal.
    pub(super) fn binder_of(&self, port: &Port) -> Box<dyn Binder> {
        if is_sriov(&port.vnic_type) {
            return Box::new(Sriov { plan: None });
        }
        self.driver_binder()
    }

    /// The configured port driver's binder.
    fn driver_binder(&self) -> Box<dyn Binder> {
        match self.nested() {
            Some((link, kind)) => Box::new(Nested {
                link: link.to_string(),
                kind,
            }),
            None => Box::new(Veth),
        }
    }
}
