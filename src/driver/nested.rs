//! Nested containers (kuryr inside a Nova VM): `default_port_driver = nested` with
//! `[binding] driver = macvlan`. The container's interface is a macvlan sub-interface of
//! the VM's NIC (`[binding] link_iface`); its Neutron port stays unbound, and the VM's own
//! port (the one with `link_iface`'s MAC) gets the container's IP and MAC in
//! `allowed_address_pairs`, so Neutron's anti-spoofing lets that traffic through the VM
//! port. The pairs go again when the endpoint is deleted.

use serde_json::json;

use super::{Driver, DriverError, Result};
use crate::config::Config;
use crate::neutron::{AddressPair, Filters, Port};

/// The port driver an endpoint of this configuration uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortDriver {
    /// veth pair, host end bound by `binding:vif_type` (bare metal / hypervisor host).
    Veth,
    /// macvlan sub-interface of the VM's NIC; the VM port carries the traffic.
    NestedMacvlan { link_iface: String },
}

/// Chooses the port driver from kuryr.conf; what is not implemented is refused at start
/// with what to use instead.
pub fn port_driver(cfg: &Config) -> std::result::Result<PortDriver, String> {
    match cfg.default_port_driver.as_str() {
        "veth" => Ok(PortDriver::Veth),
        "nested" => {
            let Some(link) = cfg.binding.link_iface.clone().filter(|l| !l.is_empty()) else {
                return Err(
                    "[DEFAULT] default_port_driver = nested needs [binding] link_iface (the VM's NIC, e.g. eth0)".into(),
                );
            };
            crate::protocol::validate::ifname("[binding] link_iface", &link)?;
            match cfg.binding.default_driver.as_str() {
                "macvlan" => Ok(PortDriver::NestedMacvlan { link_iface: link }),
                other => Err(format!(
                    "[binding] driver = {other} with the nested port driver is not implemented in this version (use macvlan)"
                )),
            }
        }
        other => Err(format!(
            "[DEFAULT] default_port_driver = {other} is not implemented in this version (use veth, or nested with [binding] driver = macvlan)"
        )),
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

impl Driver {
    /// `link_iface` when endpoints are nested macvlan sub-interfaces.
    pub(crate) fn nested_link(&self) -> Option<&str> {
        match &self.port_driver {
            PortDriver::NestedMacvlan { link_iface } => Some(link_iface),
            PortDriver::Veth => None,
        }
    }

    /// The VM's own Neutron port: the one with `link_iface`'s MAC.
    async fn vm_port(&self, link_iface: &str) -> Result<Port> {
        let link = self
            .plumber
            .netlink()
            .link(link_iface)
            .await?
            .ok_or_else(|| {
                DriverError::Internal(format!("link_iface {link_iface} does not exist"))
            })?;
        let mac = link.mac.ok_or_else(|| {
            DriverError::Internal(format!("link_iface {link_iface} has no MAC address"))
        })?;
        let mut ports: Vec<Port> = self
            .neutron
            .list(&Filters::new().add("mac_address", &mac))
            .await?;
        match ports.len() {
            1 => Ok(ports.remove(0)),
            0 => Err(DriverError::Internal(format!(
                "no Neutron port has {link_iface}'s MAC {mac}: the nested driver runs in a VM whose NIC is a Neutron port"
            ))),
            n => Err(DriverError::Conflict(format!(
                "{n} Neutron ports have {link_iface}'s MAC {mac}"
            ))),
        }
    }

    /// Adds (`add`) or removes the container port's addresses to/from the VM port's
    /// `allowed_address_pairs`. Neutron has no atomic "add a pair": updates of the VM port
    /// are serialised (that one resource only) and read fresh each time.
    pub(crate) async fn update_vm_pairs(
        &self,
        link_iface: &str,
        port: &Port,
        add: bool,
    ) -> Result<()> {
        let _g = self.locks.lock("vm-port").await;
        let vm = self.vm_port(link_iface).await?;
        let ips: Vec<String> = port
            .fixed_ips
            .iter()
            .map(|f| f.ip_address.clone())
            .collect();
        let pairs = if add {
            pairs_with(&vm.allowed_address_pairs, &ips, &port.mac_address)
        } else {
            pairs_without(&vm.allowed_address_pairs, &ips, &port.mac_address)
        };
        if pairs == vm.allowed_address_pairs {
            return Ok(());
        }
        self.neutron
            .update::<Port>(&vm.id, json!({"allowed_address_pairs": pairs}))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            PortDriver::NestedMacvlan {
                link_iface: "eth0".into()
            }
        );
        let no_link = cfg("[DEFAULT]\ndefault_port_driver = nested\nenabled_port_drivers = nested\n[binding]\ndriver = macvlan\n");
        assert!(port_driver(&no_link).unwrap_err().contains("link_iface"));
        let bad_link = cfg("[DEFAULT]\ndefault_port_driver = nested\nenabled_port_drivers = nested\n[binding]\ndriver = macvlan\nlink_iface = ../eth0\n");
        assert!(port_driver(&bad_link).is_err());
        let vlan = cfg("[DEFAULT]\ndefault_port_driver = vlan\nenabled_port_drivers = vlan\n");
        assert!(port_driver(&vlan).unwrap_err().contains("not implemented"));
    }
}
