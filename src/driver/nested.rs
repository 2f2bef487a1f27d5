//! Nested containers (kuryr inside a Nova VM). The container's interface is a
//! sub-interface of the VM's NIC (`[binding] link_iface`) and its Neutron port is never
//! bound to a host; how the VM's own port (the one with `link_iface`'s MAC) carries the
//! traffic depends on the kind:
//!
//! - `nested` + `[binding] driver = macvlan`: a macvlan with the container port's MAC; the
//!   VM port gets the container's IP and MAC in `allowed_address_pairs`.
//! - `nested` + `[binding] driver = ipvlan`: an ipvlan (it shares the NIC's MAC); the VM port
//!   gets the container's IP with the VM port's MAC.
//! - `vlan`: the VM port is a trunk parent; the container port becomes a subport with a
//!   free segmentation id (1..4094) and the interface is a VLAN sub-interface with that
//!   id. Ids in use are read from the trunk at start and before each attach, so a restart
//!   never hands out a used one.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::{Driver, DriverError, Result};
use crate::config::{Config, PortDriverName};
use crate::host::netlink::SubKind;
use crate::host::Plumbing;
use crate::neutron::{
    AddressPair, Filters, Neutron, Port, PortBody, SubportAsk, Trunk, TrunkDetails,
};

/// The port driver an endpoint of this configuration uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortDriver {
    /// veth pair, host end bound by `binding:vif_type` (bare metal / hypervisor host).
    Veth,
    /// A sub-interface of the VM's NIC; the VM port carries the traffic.
    Nested {
        link_iface: String,
        kind: NestedKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NestedKind {
    Macvlan,
    Ipvlan,
    Vlan,
}

/// Chooses the port driver from kuryr.conf; what is not implemented is refused at start
/// with what to use instead.
pub fn port_driver(cfg: &Config) -> std::result::Result<PortDriver, String> {
    let link = || -> std::result::Result<String, String> {
        let Some(link) = cfg.binding.link_iface.clone().filter(|l| !l.is_empty()) else {
            return Err(format!(
                "[DEFAULT] default_port_driver = {} needs [binding] link_iface (the VM's NIC, e.g. eth0)",
                cfg.default_port_driver
            ));
        };
        crate::protocol::validate::ifname("[binding] link_iface", &link).map_err(|e| e.0)?;
        Ok(link)
    };
    match cfg.default_port_driver {
        PortDriverName::Veth => Ok(PortDriver::Veth),
        PortDriverName::Nested => {
            let kind = match cfg.binding.default_driver.as_str() {
                "macvlan" => NestedKind::Macvlan,
                "ipvlan" => NestedKind::Ipvlan,
                other => {
                    return Err(format!(
                        "[binding] driver = {other} does not go with the nested port driver (use macvlan or ipvlan)"
                    ))
                }
            };
            Ok(PortDriver::Nested {
                link_iface: link()?,
                kind,
            })
        }
        PortDriverName::Vlan => match cfg.binding.default_driver.as_str() {
            "vlan" | "veth" => Ok(PortDriver::Nested {
                link_iface: link()?,
                kind: NestedKind::Vlan,
            }),
            other => Err(format!(
                "[binding] driver = {other} does not go with the vlan port driver (use vlan)"
            )),
        },
        // The reference would serve every normal port with it and fail them all.
        PortDriverName::Sriov => Err("[DEFAULT] default_port_driver = sriov: the sriov driver serves only ports made with an SR-IOV binding:vnic_type; keep veth (or nested, vlan) as the default and add sriov to enabled_port_drivers".into()),
    }
}

/// Segmentation ids of the VM's trunk: those in use and the lowest free one.
#[derive(Debug)]
pub struct TrunkIds {
    pub trunk_id: String,
    used: Mutex<BTreeSet<u16>>,
}

/// VLAN ids a subport may use.
const VLAN_IDS: std::ops::RangeInclusive<u16> = 1..=4094;

impl TrunkIds {
    /// Seeded from the VM port's `trunk_details`: ids held by subports stay taken.
    pub fn seeded(details: &TrunkDetails) -> Self {
        let t = TrunkIds {
            trunk_id: details.trunk_id.clone(),
            used: Mutex::new(BTreeSet::new()),
        };
        for sp in &details.sub_ports {
            t.mark(sp.segmentation_id);
        }
        t
    }

    pub fn mark(&self, id: Option<u32>) {
        if let (Some(id), Ok(mut u)) = (id.and_then(|i| u16::try_from(i).ok()), self.used.lock()) {
            u.insert(id);
        }
    }

    /// Takes the lowest free id (marked used until released).
    pub fn take(&self) -> Option<u16> {
        let mut u = self.used.lock().ok()?;
        let id = VLAN_IDS.into_iter().find(|i| !u.contains(i))?;
        u.insert(id);
        Some(id)
    }

    pub fn release(&self, id: u16) {
        if let Ok(mut u) = self.used.lock() {
            u.remove(&id);
        }
    }
}

/// The VM port's pairs with the container's addresses added (each once).
pub fn pairs_with(existing: &[AddressPair], ips: &[String], mac: &str) -> Vec<AddressPair> {
    let mut out = existing.to_vec();
    for ip in ips {
        let pair = AddressPair {
            ip_address: ip.clone(),
            mac_address: Some(mac.to_ascii_lowercase()),
        };
        if !out.iter().any(|p| same_pair(p, &pair)) {
            out.push(pair);
        }
    }
    out
}

/// The VM port's pairs without the container's addresses.
pub fn pairs_without(existing: &[AddressPair], ips: &[String], mac: &str) -> Vec<AddressPair> {
    existing
        .iter()
        .filter(|p| {
            !ips.iter().any(|ip| {
                same_pair(
                    p,
                    &AddressPair {
                        ip_address: ip.clone(),
                        mac_address: Some(mac.to_string()),
                    },
                )
            })
        })
        .cloned()
        .collect()
}

fn same_pair(a: &AddressPair, b: &AddressPair) -> bool {
    a.ip_address == b.ip_address
        && a.mac_address.as_deref().map(str::to_ascii_lowercase)
            == b.mac_address.as_deref().map(str::to_ascii_lowercase)
}

/// The VM's own Neutron port: the one with `link_iface`'s MAC (the driver, and `kuryr gc`
/// inside a VM).
pub async fn find_vm_port(
    neutron: &Neutron,
    host: &dyn Plumbing,
    link_iface: &str,
) -> Result<Port> {
    let mac = host
        .link_mac(link_iface)
        .await?
        .ok_or_else(|| DriverError::Internal(format!("link_iface {link_iface} does not exist")))?;
    let mac = mac.ok_or_else(|| {
        DriverError::Internal(format!("link_iface {link_iface} has no MAC address"))
    })?;
    let mut ports: Vec<Port> = neutron
        .list(&Filters::new().add("mac_address", &mac))
        .await?;
    match ports.len() {
        1 => Ok(ports.remove(0)),
        0 => Err(DriverError::Internal(format!(
            "no Neutron port has {link_iface}'s MAC {mac}: the nested drivers run in a VM whose NIC is a Neutron port"
        ))),
        n => Err(DriverError::Conflict(format!(
            "{n} Neutron ports have {link_iface}'s MAC {mac}"
        ))),
    }
}

impl Driver {
    /// `link_iface` and the kind when endpoints are nested.
    pub(crate) fn nested(&self) -> Option<(&str, NestedKind)> {
        match &self.port_driver {
            PortDriver::Nested { link_iface, kind } => Some((link_iface, *kind)),
            PortDriver::Veth => None,
        }
    }

    /// The VM's own Neutron port: the one with `link_iface`'s MAC.
    pub(crate) async fn vm_port(&self, link_iface: &str) -> Result<Port> {
        find_vm_port(&self.neutron, self.plumber.as_ref(), link_iface).await
    }

    /// Reads the VM port's trunk at start (vlan driver).
    pub(crate) async fn load_trunk(&self, link_iface: &str) -> Result<TrunkIds> {
        let vm = self.vm_port(link_iface).await?;
        let details = vm.trunk_details.ok_or_else(|| {
            DriverError::Internal(format!(
                "the vlan port driver needs {link_iface}'s Neutron port {} to be a trunk parent (openstack network trunk create --parent-port ...)",
                vm.id
            ))
        })?;
        Ok(TrunkIds::seeded(&details))
    }

    /// Adds (`add`) or removes the container port's addresses to/from the VM port's
    /// `allowed_address_pairs` (with the container's MAC, or the VM port's own for
    /// ipvlan). Neutron has no atomic "add a pair": updates of the VM port are serialised
    /// (that one resource only) and read fresh each time.
    async fn update_vm_pairs(
        &self,
        link_iface: &str,
        port: &Port,
        kind: NestedKind,
        add: bool,
    ) -> Result<()> {
        let _g = self.locks.lock("vm-port").await;
        let vm = self.vm_port(link_iface).await?;
        let ips: Vec<String> = port
            .fixed_ips
            .iter()
            .map(|f| f.ip_address.to_string())
            .collect();
        let mac = if kind == NestedKind::Ipvlan {
            &vm.mac_address
        } else {
            &port.mac_address
        };
        let pairs = if add {
            pairs_with(&vm.allowed_address_pairs, &ips, mac)
        } else {
            pairs_without(&vm.allowed_address_pairs, &ips, mac)
        };
        if pairs == vm.allowed_address_pairs {
            return Ok(());
        }
        self.neutron
            .update::<Port>(
                &vm.id,
                PortBody {
                    allowed_address_pairs: Some(pairs),
                    ..PortBody::default()
                },
            )
            .await?;
        Ok(())
    }

    fn trunk_ids(&self) -> Result<&TrunkIds> {
        self.trunk
            .as_ref()
            .ok_or_else(|| DriverError::Internal("the vlan port driver has no trunk".into()))
    }

    /// Makes `port_id` a subport of the VM's trunk with a free segmentation id and returns
    /// the id; a port that already is one keeps its id (libnetwork retries). Serialised:
    /// Neutron has no "give me a free segmentation id".
    pub async fn attach_subport(&self, port_id: &str) -> Result<u16> {
        let ids = self.trunk_ids()?;
        let _g = self.locks.lock("trunk").await;
        let trunk: Trunk = self.neutron.get(&ids.trunk_id).await?;
        for sp in &trunk.sub_ports {
            ids.mark(sp.segmentation_id);
        }
        if let Some(sp) = trunk.sub_ports.iter().find(|s| s.port_id == port_id) {
            return sp
                .segmentation_id
                .and_then(|i| u16::try_from(i).ok())
                .ok_or_else(|| DriverError::Internal(format!("subport {port_id} has no VLAN id")));
        }
        // A 409 means someone else took the id in between: it stays marked, try the next.
        for _ in 0..5 {
            let id = ids.take().ok_or_else(|| {
                DriverError::Conflict(format!("trunk {} has no free VLAN id", ids.trunk_id))
            })?;
            let body = [SubportAsk::vlan(port_id, id)];
            match self
                .neutron
                .trunk_subports(&ids.trunk_id, true, &body)
                .await
            {
                Ok(_) => return Ok(id),
                Err(e) if e.is_conflict() => {
                    // Taken in between by another subport: next id. Any other conflict
                    // (the port is not eligible, ...) is the answer.
                    let now: Trunk = self.neutron.get(&ids.trunk_id).await?;
                    if now
                        .sub_ports
                        .iter()
                        .any(|s| s.segmentation_id == Some(u32::from(id)) && s.port_id != port_id)
                    {
                        continue;
                    }
                    ids.release(id);
                    return Err(e.into());
                }
                Err(e) => {
                    ids.release(id);
                    return Err(e.into());
                }
            }
        }
        Err(DriverError::Conflict(format!(
            "could not attach {port_id} to trunk {}: segmentation ids kept being taken",
            ids.trunk_id
        )))
    }

    /// Removes `port_id` from the VM's trunk and frees its id; not a subport is fine.
    pub async fn detach_subport(&self, port_id: &str) -> Result<()> {
        let ids = self.trunk_ids()?;
        let _g = self.locks.lock("trunk").await;
        let trunk: Trunk = self.neutron.get(&ids.trunk_id).await?;
        let Some(sp) = trunk.sub_ports.iter().find(|s| s.port_id == port_id) else {
            return Ok(());
        };
        match self
            .neutron
            .trunk_subports(&ids.trunk_id, false, &[SubportAsk::remove(port_id)])
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(id) = sp.segmentation_id.and_then(|i| u16::try_from(i).ok()) {
            ids.release(id);
        }
        Ok(())
    }

    /// Host and Neutron side of a nested endpoint; undone on failure.
    pub(crate) async fn plug_nested(
        &self,
        link: &str,
        kind: NestedKind,
        port: &Port,
        mtu: Option<u32>,
    ) -> Result<crate::host::Plugged> {
        let sub = match kind {
            NestedKind::Macvlan | NestedKind::Ipvlan => {
                self.update_vm_pairs(link, port, kind, true).await?;
                if kind == NestedKind::Macvlan {
                    SubKind::Macvlan
                } else {
                    SubKind::Ipvlan
                }
            }
            NestedKind::Vlan => SubKind::Vlan(self.attach_subport(&port.id).await?),
        };
        // An ipvlan has its parent's MAC and cannot take another.
        let mac = (kind != NestedKind::Ipvlan).then_some(port.mac_address.as_str());
        match self.plumber.plug_sub(&port.id, mac, mtu, link, sub).await {
            Ok(p) => Ok(p),
            Err(e) => {
                let undo = crate::deadline::undo(async {
                    match kind {
                        NestedKind::Vlan => self.detach_subport(&port.id).await,
                        _ => self.update_vm_pairs(link, port, kind, false).await,
                    }
                })
                .await;
                if let Err(u) = &undo {
                    tracing::warn!(port = %port.id, error = %u, "rollback of the VM port / trunk failed");
                }
                Err(DriverError::from(e).after_undo(undo))
            }
        }
    }

    pub(crate) async fn unplug_nested(
        &self,
        link: &str,
        kind: NestedKind,
        port: &Port,
    ) -> Result<()> {
        self.plumber.unplug_sub(&port.id).await?;
        match kind {
            NestedKind::Vlan => self.detach_subport(&port.id).await,
            _ => self.update_vm_pairs(link, port, kind, false).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neutron::SubPort;

    fn pair(ip: &str, mac: &str) -> AddressPair {
        AddressPair {
            ip_address: ip.into(),
            mac_address: Some(mac.into()),
        }
    }

    #[test]
    fn pairs_are_added_once_and_removed_exactly() {
        let vm_own = pair("10.0.0.99", "fa:16:3e:00:00:01");
        let ips = vec!["10.0.0.5".to_string(), "fd00::5".to_string()];
        let added = pairs_with(std::slice::from_ref(&vm_own), &ips, "02:42:0A:00:00:05");
        assert_eq!(
            added,
            vec![
                vm_own.clone(),
                pair("10.0.0.5", "02:42:0a:00:00:05"),
                pair("fd00::5", "02:42:0a:00:00:05")
            ]
        );
        // Twice: no duplicate (libnetwork retries CreateEndpoint).
        assert_eq!(pairs_with(&added, &ips, "02:42:0a:00:00:05"), added);
        // Removal leaves the VM's own pair and another container's.
        let other = pair("10.0.0.6", "02:42:0a:00:00:06");
        let mut all = added.clone();
        all.push(other.clone());
        assert_eq!(
            pairs_without(&all, &ips, "02:42:0a:00:00:05"),
            vec![vm_own, other]
        );
    }

    #[test]
    fn segmentation_ids_skip_those_in_use_and_are_reused_after_release() {
        let details = TrunkDetails {
            trunk_id: "t".into(),
            sub_ports: vec![
                SubPort {
                    port_id: "a".into(),
                    segmentation_id: Some(1),
                    segmentation_type: Some("vlan".into()),
                },
                SubPort {
                    port_id: "b".into(),
                    segmentation_id: Some(3),
                    segmentation_type: Some("vlan".into()),
                },
            ],
        };
        // As after a restart: ids on the trunk are never handed out again.
        let ids = TrunkIds::seeded(&details);
        assert_eq!(ids.take(), Some(2));
        assert_eq!(ids.take(), Some(4));
        ids.release(2);
        assert_eq!(ids.take(), Some(2));
        // Out-of-range ids from Neutron are ignored, not a panic.
        ids.mark(Some(70000));
        // All 4094 taken: None, not a wrap-around.
        let full = TrunkIds::seeded(&TrunkDetails::default());
        for want in 1..=4094u16 {
            assert_eq!(full.take(), Some(want));
        }
        assert_eq!(full.take(), None);
    }

    fn cfg(text: &str) -> Config {
        let text = format!("{text}\n[neutron]\nendpoint = http://127.0.0.1:9696\n");
        Config::parse("t", &text).unwrap().config
    }

    #[test]
    fn port_driver_comes_from_the_config() {
        assert_eq!(port_driver(&cfg("")).unwrap(), PortDriver::Veth);
        let nested = cfg("[DEFAULT]\ndefault_port_driver = kuryr_libnetwork.port_driver.drivers.nested\nenabled_port_drivers = nested\n[binding]\ndriver = kuryr.lib.binding.drivers.macvlan\nlink_iface = eth0\n");
        assert_eq!(
            port_driver(&nested).unwrap(),
            PortDriver::Nested {
                link_iface: "eth0".into(),
                kind: NestedKind::Macvlan
            }
        );
        let ipvlan = cfg("[DEFAULT]\ndefault_port_driver = nested\nenabled_port_drivers = nested\n[binding]\ndriver = ipvlan\nlink_iface = ens3\n");
        assert_eq!(
            port_driver(&ipvlan).unwrap(),
            PortDriver::Nested {
                link_iface: "ens3".into(),
                kind: NestedKind::Ipvlan
            }
        );
        let vlan = cfg("[DEFAULT]\ndefault_port_driver = kuryr_libnetwork.port_driver.drivers.vlan\nenabled_port_drivers = vlan\n[binding]\ndriver = kuryr.lib.binding.drivers.vlan\nlink_iface = eth0\n");
        assert_eq!(
            port_driver(&vlan).unwrap(),
            PortDriver::Nested {
                link_iface: "eth0".into(),
                kind: NestedKind::Vlan
            }
        );
        let no_link = cfg("[DEFAULT]\ndefault_port_driver = nested\nenabled_port_drivers = nested\n[binding]\ndriver = macvlan\n");
        assert!(port_driver(&no_link).unwrap_err().contains("link_iface"));
        let bad_link = cfg("[DEFAULT]\ndefault_port_driver = nested\nenabled_port_drivers = nested\n[binding]\ndriver = macvlan\nlink_iface = ../eth0\n");
        assert!(port_driver(&bad_link).is_err());
        let sriov = cfg("[DEFAULT]\ndefault_port_driver = sriov\nenabled_port_drivers = sriov\n");
        assert!(port_driver(&sriov)
            .unwrap_err()
            .contains("add sriov to enabled_port_drivers"));
        // The usual SR-IOV set-up: veth for normal ports, sriov for SR-IOV ones.
        let veth_and_sriov = cfg("[DEFAULT]\ndefault_port_driver = veth\nenabled_port_drivers = veth,sriov\n[binding]\nenabled_drivers = veth,hw_veb\n");
        assert_eq!(port_driver(&veth_and_sriov).unwrap(), PortDriver::Veth);
    }
}
