//! SR-IOV ports: a port made beforehand with `binding:vnic_type` direct, macvtap or
//! direct-physical and a `binding:profile.pci_slot`, adopted with `docker run --ip`. The
//! sriov port driver (in `enabled_port_drivers`) serves them whatever the default driver
//! is: Neutron binds the port to this host (the sriovnicswitch mechanism driver answers
//! `hw_veb` / `macvtap` / `hostdev_physical` and the VLAN), the VF gets the port's MAC
//! and that VLAN through its PF, and Join hands Docker the VF's netdev to move into the
//! container. Everything that can be checked is checked before Neutron is touched. With
//! `[sriov] physical_device_mappings` a port made without a `pci_slot` gets a free VF of
//! a PF of its network's physical network, written into its profile and given back at
//! DeleteEndpoint.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{Driver, DriverError, Result};
use crate::config::PortDriverName;
use crate::host::sriov::PciNetDevice;
use crate::host::HostError;
use crate::neutron::{Filters, Port, PortBody};

/// vnic_types served by an SR-IOV virtual function, not by a veth or sub-interface.
pub const SRIOV_VNIC_TYPES: &[&str] = &["direct", "macvtap", "direct-physical"];

/// Whether a port of this vnic_type is served by a VF.
pub fn is_sriov(vnic_type: &str) -> bool {
    SRIOV_VNIC_TYPES.contains(&vnic_type)
}

/// How CreateEndpoint serves an SR-IOV port.
pub(crate) struct SriovPlan {
    pub dev: PciNetDevice,
    /// The port's `binding:profile` with the VF kuryr picked, sent with the binding; None
    /// when the port named its own VF.
    pub profile: Option<Map<String, Value>>,
}

pub(crate) fn pci_slot(port: &Port) -> Option<&str> {
    port.profile
        .get("pci_slot")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A device that is not here (or a bad address) is the port's problem, not the server's.
fn host_conflict(port: &Port, e: HostError) -> DriverError {
    match e {
        HostError::Invalid(m) | HostError::NotFound(m) => {
            DriverError::Conflict(format!("SR-IOV port {}: {m} on this host", port.id))
        }
        other => other.into(),
    }
}

/// vif_types Neutron's SR-IOV mechanism driver binds with.
const SRIOV_VIF_TYPES: &[&str] = &["hw_veb", "macvtap", "hostdev_physical"];

/// The VLAN of `binding:vif_details` (a string in Neutron's answer; 0 = flat).
pub(crate) fn vlan_of(details: &Map<String, Value>) -> std::result::Result<u16, String> {
    let v = match details.get("vlan") {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        Some(_) => None,
    };
    match v {
        Some(v) if v <= 4094 => Ok(v as u16),
        _ => Err(format!(
            "binding:vif_details vlan {:?} is not a VLAN id",
            details.get("vlan")
        )),
    }
}

impl Driver {
    /// Before anything changes: the sriov driver is enabled and the port's VF is on this
    /// host — the one its `pci_slot` names, or a free one of a PF mapped to its network's
    /// physical network `physnet` (`[sriov] physical_device_mappings`), like Nova picks one
    /// for a VM.
    pub(crate) async fn sriov_plan(&self, port: &Port, physnet: &str) -> Result<SriovPlan> {
        if pci_slot(port).is_some() {
            return Ok(SriovPlan {
                dev: self.sriov_device(port)?,
                profile: None,
            });
        }
        self.require_sriov(port)?;
        if self.cfg.binding.sriov_device_mappings.is_empty() {
            return Err(DriverError::Conflict(format!(
                "SR-IOV port {} has no binding:profile pci_slot (create it with --binding-profile pci_slot=<VF address>, or set [sriov] physical_device_mappings so kuryr picks a VF)",
                port.id
            )));
        }
        let dev = self.pick_vf(port, physnet).await?;
        let mut profile = port.profile.clone();
        profile.insert("pci_slot".into(), Value::String(dev.pci_slot.clone()));
        profile.insert(
            "physical_network".into(),
            Value::String(physnet.to_string()),
        );
        Ok(SriovPlan {
            dev,
            profile: Some(profile),
        })
    }

    fn require_sriov(&self, port: &Port) -> Result<()> {
        if self
            .cfg
            .enabled_port_drivers
            .contains(&PortDriverName::Sriov)
        {
            return Ok(());
        }
        Err(DriverError::Conflict(format!(
            "No port driver available for VNIC type {} (port {}): add sriov to [DEFAULT] enabled_port_drivers",
            port.vnic_type, port.id
        )))
    }

    /// The device the port's `pci_slot` names, on this host.
    pub(crate) fn sriov_device(&self, port: &Port) -> Result<PciNetDevice> {
        self.require_sriov(port)?;
        let slot = pci_slot(port).ok_or_else(|| {
            DriverError::Conflict(format!(
                "SR-IOV port {} has no binding:profile pci_slot",
                port.id
            ))
        })?;
        self.plumber
            .pci_device(slot)
            .map_err(|e| host_conflict(port, e))
    }

    /// The first VF (PFs in mapping order, VFs by number) that has its netdev in this
    /// namespace and is not the `pci_slot` of another port bound to this host. Callers
    /// hold the "sriov-vf" lock until the binding that claims it is written.
    async fn pick_vf(&self, port: &Port, physnet: &str) -> Result<PciNetDevice> {
        if physnet.is_empty() {
            return Err(DriverError::Conflict(format!(
                "SR-IOV port {}: network {} has no provider:physical_network (SR-IOV needs a VLAN or flat network, and kuryr admin credentials to see it)",
                port.id, port.network_id
            )));
        }
        let pfs: Vec<&str> = self
            .cfg
            .binding
            .sriov_device_mappings
            .iter()
            .filter(|(p, _)| p == physnet)
            .map(|(_, pf)| pf.as_str())
            .collect();
        if pfs.is_empty() {
            return Err(DriverError::Conflict(format!(
                "SR-IOV port {}: no PF for physical network {} in [sriov] physical_device_mappings",
                port.id, physnet
            )));
        }
        // Neutron cannot filter by vnic_type: the host's ports, filtered here.
        let bound: Vec<Port> = self
            .neutron
            .list(&Filters::new().add("binding:host_id", self.cfg.host.as_str()))
            .await?;
        let taken: HashSet<&str> = bound
            .iter()
            .filter(|p| p.id != port.id && SRIOV_VNIC_TYPES.contains(&p.vnic_type.as_str()))
            .filter_map(pci_slot)
            .collect();
        for pf in &pfs {
            for (_, slot) in self
                .plumber
                .sriov_vfs(pf)
                .map_err(|e| host_conflict(port, e))?
            {
                if taken.contains(slot.as_str()) {
                    continue;
                }
                let dev = self
                    .plumber
                    .pci_device(&slot)
                    .map_err(|e| host_conflict(port, e))?;
                if dev.netdev.is_some() {
                    return Ok(dev);
                }
            }
        }
        Err(DriverError::Conflict(format!(
            "SR-IOV port {}: no free VF on {} (each is given to a port bound here or has no network interface in this namespace)",
            port.id,
            pfs.join(", ")
        )))
    }

    /// DeleteEndpoint of a port whose VF kuryr picked: the port gives the VF back (its
    /// `pci_slot` and binding go), so the next container can have it.
    pub(crate) async fn release_picked_vf(&self, port: &Port) -> Result<()> {
        let mut profile = port.profile.clone();
        profile.remove("pci_slot");
        profile.remove("physical_network");
        let body = PortBody {
            profile: Some(profile),
            ..PortBody::unbind()
        };
        match self.neutron.update::<Port>(&port.id, body).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// After Neutron bound the port: the VF takes the port's MAC and VLAN.
    pub(crate) async fn plug_sriov(
        &self,
        dev: &PciNetDevice,
        port: &Port,
        mtu: Option<u32>,
    ) -> Result<String> {
        if !SRIOV_VIF_TYPES.contains(&port.vif_type.as_str()) {
            return Err(DriverError::Internal(format!(
                "Neutron did not bind SR-IOV port {} to host {} (binding:vif_type {}): is neutron-sriov-nic-agent running there with physical_device_mappings for the network's physical network?",
                port.id, self.cfg.host, port.vif_type
            )));
        }
        let vlan = vlan_of(&port.vif_details).map_err(DriverError::Internal)?;
        Ok(self
            .plumber
            .plug_vf(dev, &port.mac_address, vlan, mtu)
            .await?)
    }

    /// Clears the VF's VLAN. Never fails DeleteEndpoint: the next bind sets MAC and VLAN
    /// anyway, and a VF that is gone cannot be cleared.
    pub(crate) async fn unplug_sriov(&self, port: &Port) {
        let dev = match self.sriov_device(port) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(port = %port.id, error = %e, "SR-IOV: VF not found; nothing to clear");
                return;
            }
        };
        if let Err(e) = self.plumber.unplug_vf(&dev).await {
            tracing::warn!(port = %port.id, pci_slot = %dev.pci_slot, error = %e, "SR-IOV: could not clear the VF's VLAN");
        }
    }

    /// The interface Docker moves into the container: the VF's netdev.
    pub(crate) fn sriov_ifname(&self, port: &Port) -> Result<String> {
        let dev = self.sriov_device(port)?;
        dev.netdev.ok_or_else(|| {
            DriverError::Conflict(format!(
                "SR-IOV port {}: PCI device {} has no network interface in this namespace (already in a container, or bound to vfio-pci?)",
                port.id, dev.pci_slot
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn details(v: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("port_filter".into(), json!(false));
        m.insert("vlan".into(), v);
        m
    }

    #[test]
    fn sriov_vnic_types_are_recognised() {
        for t in ["direct", "macvtap", "direct-physical"] {
            assert!(is_sriov(t));
        }
        for t in ["normal", "", "baremetal", "virtio-forwarder"] {
            assert!(!is_sriov(t));
        }
    }

    #[test]
    fn vlan_comes_from_vif_details_in_either_form() {
        assert_eq!(vlan_of(&details(json!("142"))), Ok(142));
        assert_eq!(vlan_of(&details(json!(7))), Ok(7));
        assert_eq!(vlan_of(&details(json!("0"))), Ok(0));
        assert_eq!(vlan_of(&Map::new()), Ok(0));
        assert!(vlan_of(&details(json!("4095"))).is_err());
        assert!(vlan_of(&details(json!("x"))).is_err());
        assert!(vlan_of(&details(json!(-1))).is_err());
        assert!(vlan_of(&details(json!([1]))).is_err());
    }
}
