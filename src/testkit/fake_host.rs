//! A recording fake of the host plumbing: it keeps the links it "made", records every
//! call in order, and fails the calls a test tells it to, so the driver's use of the host
//! (what it plugs, what it undoes after a failure) is tested without root or a kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::host::binding::{self, BindContext};
use crate::host::netlink::SubKind;
use crate::host::netns::{NsInterface, NsLink};
use crate::host::sriov::PciNetDevice;
use crate::host::{HostError, PlugRequest, Plugged, Plumbing};
use crate::names;

/// The host name the fake plumbing reports (kuryr.conf `host` of `testkit` drivers).
pub const HOST: &str = "fake-host";
const NO_BINDIR: &str = "/nonexistent/kuryr-bindir";

type Routes = Vec<(ipnet::IpNet, Option<std::net::IpAddr>)>;

#[derive(Default)]
struct State {
    links: BTreeMap<String, Option<String>>,
    /// Host veth -> the endpoint `plug` wrote on it.
    aliases: BTreeMap<String, String>,
    /// (namespace, interface) -> what a CNI ADD put there, and the host veth it came with.
    in_netns: BTreeMap<(String, String), (NsLink, String)>,
    /// (namespace, interface) -> the routes ADD gave it.
    routes: BTreeMap<(String, String), Routes>,
    calls: Vec<String>,
    /// Operation name -> how many of its next calls fail.
    failing: BTreeMap<String, u32>,
    devices: BTreeMap<String, PciNetDevice>,
    vfs: BTreeMap<String, Vec<(u32, String)>>,
}

#[derive(Clone, Default)]
pub struct FakeHost {
    state: Arc<Mutex<State>>,
}

impl FakeHost {
    /// Every call so far, e.g. `plug tap1234 bridge`, `unplug tap1234`.
    pub fn calls(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }

    pub fn clear_calls(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.calls.clear();
        }
    }

    /// Names of the links that exist now.
    pub fn links(&self) -> BTreeSet<String> {
        self.state
            .lock()
            .map(|s| s.links.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The endpoint a link's alias names (what `plug` wrote), if any.
    pub fn alias(&self, name: &str) -> Option<String> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.aliases.get(name).cloned())
    }

    /// A link that exists before the test (the VM's NIC, a left-over veth).
    pub fn add_link(&self, name: &str, mac: Option<&str>) {
        if let Ok(mut s) = self.state.lock() {
            s.links.insert(name.into(), mac.map(str::to_string));
        }
    }

    /// The next `times` calls of `op` (`plug`, `unplug`, `plug_sub`, `plug_vf`, ...) fail.
    pub fn fail(&self, op: &str, times: u32) {
        if let Ok(mut s) = self.state.lock() {
            s.failing.insert(op.into(), times);
        }
    }

    /// The interfaces CNI put into namespaces: (namespace, interface).
    pub fn netns_links(&self) -> BTreeSet<(String, String)> {
        self.state
            .lock()
            .map(|s| s.in_netns.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// An interface another plugin made in namespace `netns`: no host end of kuryr's.
    pub fn put_netns_link(&self, netns: &str, ifname: &str, mac: &str) {
        if let Ok(mut s) = self.state.lock() {
            let l = NsLink {
                mac: Some(mac.to_string()),
                mtu: Some(1500),
                addrs: Vec::new(),
            };
            s.in_netns
                .insert((netns.to_string(), ifname.to_string()), (l, String::new()));
        }
    }

    /// The routes CNI gave the interface `ifname` in namespace `netns`.
    pub fn netns_routes(&self, netns: &str, ifname: &str) -> Routes {
        self.state
            .lock()
            .ok()
            .and_then(|s| {
                s.routes
                    .get(&(netns.to_string(), ifname.to_string()))
                    .cloned()
            })
            .unwrap_or_default()
    }

    /// An SR-IOV device at `pci_slot`, VF `vf` of PF `pf` (or a whole NIC when `pf` is
    /// None), whose netdev is `netdev`.
    pub fn add_vf(&self, pci_slot: &str, pf: Option<(&str, u32)>, netdev: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.devices.insert(
                pci_slot.into(),
                PciNetDevice {
                    pci_slot: pci_slot.into(),
                    netdev: Some(netdev.into()),
                    vf_of: pf.map(|(p, n)| (p.to_string(), n)),
                },
            );
            if let Some((p, n)) = pf {
                s.vfs
                    .entry(p.into())
                    .or_default()
                    .push((n, pci_slot.into()));
            }
            s.links.insert(netdev.into(), None);
        }
    }

    fn call(&self, op: &str, what: String) -> Result<(), HostError> {
        let Ok(mut s) = self.state.lock() else {
            return Err(HostError::Binding("fake host poisoned".into()));
        };
        s.calls.push(format!("{op} {what}").trim_end().to_string());
        drop(s);
        self.fail_only(op, &what)
    }

    /// A read that fails when asked to, without a place in the calls' record.
    fn fail_only(&self, op: &str, what: &str) -> Result<(), HostError> {
        let Ok(mut s) = self.state.lock() else {
            return Err(HostError::Binding("fake host poisoned".into()));
        };
        match s.failing.get_mut(op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(HostError::Netlink {
                    op: op.into(),
                    name: what.into(),
                    message: "injected failure".into(),
                    errno: Some(libc::EIO),
                })
            }
            _ => Ok(()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, HostError> {
        self.state
            .lock()
            .map(|mut s| f(&mut s))
            .map_err(|_| HostError::Binding("fake host poisoned".into()))
    }
}

#[async_trait]
impl Plumbing for FakeHost {
    async fn plug(&self, req: &PlugRequest) -> Result<Plugged, HostError> {
        let port = &req.bind.port_id;
        let (host_if, cont_if) = (names::host_veth(port), names::container_veth(port));
        // As the real plumber with an empty bindir: bridge, ovs and tap plug; an unbound
        // port or any other type is refused before anything is made.
        binding::select(&req.bind.vif_type, std::path::Path::new(NO_BINDIR), HOST)?;
        self.call("plug", format!("{host_if} {}", req.bind.vif_type))?;
        self.with(|s| {
            s.links.insert(host_if.clone(), None);
            s.links.insert(cont_if.clone(), Some(req.bind.mac.clone()));
            s.aliases
                .insert(host_if.clone(), req.bind.endpoint_id.clone());
        })?;
        Ok(Plugged {
            host_ifname: host_if,
            container_ifname: cont_if,
        })
    }

    async fn unplug(&self, bind: &BindContext) -> Result<(), HostError> {
        let port = &bind.port_id;
        let result = self.call("unplug", names::host_veth(port));
        self.with(|s| {
            s.links.remove(&names::host_veth(port));
            s.links.remove(&names::container_veth(port));
            s.aliases.remove(&names::host_veth(port));
            // As the kernel: a veth's end in a namespace goes with its host end.
            let host_if = names::host_veth(port);
            s.in_netns.retain(|_, (_, h)| *h != host_if);
        })?;
        result
    }

    async fn plug_sub(
        &self,
        port_id: &str,
        mac: Option<&str>,
        _mtu: Option<u32>,
        link_iface: &str,
        kind: SubKind,
    ) -> Result<Plugged, HostError> {
        let cont_if = names::container_veth(port_id);
        self.call("plug_sub", format!("{cont_if} {link_iface} {kind:?}"))?;
        if !self.with(|s| s.links.contains_key(link_iface))? {
            return Err(HostError::NotFound(format!("link {link_iface}")));
        }
        self.with(|s| s.links.insert(cont_if.clone(), mac.map(str::to_string)))?;
        Ok(Plugged {
            host_ifname: String::new(),
            container_ifname: cont_if,
        })
    }

    async fn unplug_sub(&self, port_id: &str) -> Result<(), HostError> {
        let cont_if = names::container_veth(port_id);
        self.call("unplug_sub", cont_if.clone())?;
        self.with(|s| s.links.remove(&cont_if))?;
        Ok(())
    }

    async fn plug_vf(
        &self,
        dev: &PciNetDevice,
        mac: &str,
        vlan: u16,
        _mtu: Option<u32>,
    ) -> Result<String, HostError> {
        self.call("plug_vf", format!("{} {mac} vlan {vlan}", dev.pci_slot))?;
        dev.netdev
            .clone()
            .ok_or_else(|| HostError::NotFound(format!("netdev of {}", dev.pci_slot)))
    }

    async fn unplug_vf(&self, dev: &PciNetDevice) -> Result<(), HostError> {
        self.call("unplug_vf", dev.pci_slot.clone())
    }

    fn pci_device(&self, pci_slot: &str) -> Result<PciNetDevice, HostError> {
        crate::host::sriov::validate_pci_slot(pci_slot)?;
        self.with(|s| s.devices.get(pci_slot).cloned())?
            .ok_or_else(|| HostError::NotFound(format!("PCI device {pci_slot}")))
    }

    fn sriov_vfs(&self, pf: &str) -> Result<Vec<(u32, String)>, HostError> {
        self.with(|s| s.vfs.get(pf).cloned())?
            .ok_or_else(|| HostError::NotFound(format!("PF {pf}")))
    }

    async fn link_mac(&self, name: &str) -> Result<Option<Option<String>>, HostError> {
        self.with(|s| s.links.get(name).cloned())
    }

    async fn delete_link(&self, name: &str) -> Result<bool, HostError> {
        self.call("delete_link", name.to_string())?;
        self.with(|s| {
            s.aliases.remove(name);
            // As the kernel: a veth's end in a namespace goes with its host end.
            s.in_netns.retain(|_, (_, h)| h != name);
            s.links.remove(name).is_some()
        })
    }

    async fn move_into_netns(
        &self,
        link: &str,
        netns: &std::path::Path,
        want: &NsInterface,
    ) -> Result<(), HostError> {
        let key = (netns.display().to_string(), want.ifname.clone());
        self.call("move_into_netns", format!("{link} {} {}", key.0, key.1))?;
        self.with(|s| {
            if s.in_netns.contains_key(&key) {
                return Err(HostError::Invalid(format!(
                    "interface {} already exists in {}",
                    key.1, key.0
                )));
            }
            if s.links.remove(link).is_none() {
                return Err(HostError::NotFound(format!("link {link}")));
            }
            // The veth's peer: deleting the host end takes this one with it.
            let host_end = link.replacen(names::CONTAINER_VETH_PREFIX, names::HOST_VETH_PREFIX, 1);
            let l = NsLink {
                mac: Some(want.mac.clone()),
                mtu: want.mtu,
                addrs: want.addrs.clone(),
            };
            s.routes.insert(key.clone(), want.routes.clone());
            s.in_netns.insert(key, (l, host_end));
            Ok(())
        })?
    }

    async fn netns_link(
        &self,
        netns: &std::path::Path,
        ifname: &str,
    ) -> Result<Option<NsLink>, HostError> {
        let key = (netns.display().to_string(), ifname.to_string());
        self.with(|s| s.in_netns.get(&key).map(|(l, _)| l.clone()))
    }

    async fn delete_in_netns(
        &self,
        netns: &std::path::Path,
        ifname: &str,
    ) -> Result<bool, HostError> {
        let key = (netns.display().to_string(), ifname.to_string());
        self.call("delete_in_netns", format!("{} {}", key.0, key.1))?;
        self.with(|s| s.in_netns.remove(&key).is_some())
    }

    async fn veth_endpoint(&self, port_id: &str) -> Result<Option<Option<String>>, HostError> {
        let host_if = names::host_veth(port_id);
        self.with(|s| {
            s.links
                .contains_key(&host_if)
                .then(|| s.aliases.get(&host_if).cloned())
        })
    }

    async fn veth_of_endpoint(&self, ep: &str) -> Result<Option<String>, HostError> {
        self.fail_only("veth_of_endpoint", ep)?;
        self.with(|s| {
            s.aliases
                .iter()
                .find(|(_, e)| e.as_str() == ep)
                .map(|(l, _)| l.clone())
        })
    }

    async fn links_with_prefix(&self, prefix: &str) -> Result<Vec<String>, HostError> {
        self.with(|s| {
            s.links
                .keys()
                .filter(|n| n.starts_with(prefix))
                .cloned()
                .collect()
        })
    }
}
