//! SR-IOV ports: a port made beforehand with `binding:vnic_type` direct, macvtap or
//! direct-physical and a `binding:profile.pci_slot`, adopted with `docker run --ip`. The
//! sriov port driver (in `enabled_port_drivers`) serves them whatever the default driver
//! is: Neutron binds the port to this host (the sriovnicswitch mechanism driver answers
//! `hw_veb` / `macvtap` / `hostdev_physical` and the VLAN), the VF gets the port's MAC
//! and that VLAN through its PF, and Join hands Docker the VF's netdev to move into the
//! container. Everything that can be checked is checked before Neutron is touched.

use serde_json::{Map, Value};

use super::{Driver, DriverError, Result};
use crate::host::sriov::PciNetDevice;
use crate::host::HostError;
use crate::neutron::Port;

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
    pub(crate) fn sriov_enabled(&self) -> bool {
        self.cfg.enabled_port_drivers.iter().any(|d| d == "sriov")
    }

    /// Before anything changes: the sriov driver is enabled, the port names a PCI slot and
    /// that device is on this host.
    pub(crate) fn sriov_device(&self, port: &Port) -> Result<PciNetDevice> {
        if !self.sriov_enabled() {
            return Err(DriverError::Conflict(format!(
                "No port driver available for VNIC type {} (port {}): add sriov to [DEFAULT] enabled_port_drivers",
                port.vnic_type, port.id
            )));
        }
        let slot = port
            .profile
            .get("pci_slot")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                DriverError::Conflict(format!(
                    "SR-IOV port {} has no binding:profile pci_slot (create it with --binding-profile pci_slot=<VF address>)",
                    port.id
                ))
            })?;
        self.plumber.pci_device(slot).map_err(|e| match e {
            HostError::Invalid(m) | HostError::NotFound(m) => {
                DriverError::Conflict(format!("SR-IOV port {}: {m} on this host", port.id))
            }
            other => other.into(),
        })
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
