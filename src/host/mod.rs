//! Host plumbing: veth pairs for containers, bound into Neutron's L2. Knows nothing of
//! Docker or Neutron's API; it gets names, MAC, MTU and a vif_type.

pub mod announce;
pub mod binding;
pub mod ethtool;
pub mod netlink;
pub mod netns;
pub mod ovs;
pub mod sriov;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use thiserror::Error;

use crate::names;
use binding::BindContext;
use netlink::Netlink;
use sriov::{PciNetDevice, Sysfs};

#[derive(Debug, Error, Clone)]
pub enum HostError {
    #[error("netlink: {op} {name}: {message}")]
    Netlink {
        op: String,
        name: String,
        message: String,
        errno: Option<i32>,
    },
    #[error("binding: {0}")]
    Binding(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
    /// Several steps of a teardown failed; each is reported.
    #[error("{}", join_errors(.0))]
    Many(Vec<HostError>),
}

fn join_errors(errors: &[HostError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl HostError {
    /// The kernel's errno of a failed netlink request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            HostError::Netlink { errno, .. } => *errno,
            _ => None,
        }
    }

    /// None, one error, or all of them: what a teardown that went on after a failure
    /// reports.
    pub fn all(mut errors: Vec<HostError>) -> Result<(), HostError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(HostError::Many(errors)),
        }
    }
}

/// What the driver asks of the host, and nothing else: the seam between the CNM mapping
/// and the kernel. [`Plumber`] does it with netlink, sysfs and binding programs; tests use
/// the recording fake of `crate::testkit`.
#[async_trait]
pub trait Plumbing: Send + Sync {
    /// A veth pair `tap<port>`/`t_c<port>` for the endpoint, bound per vif_type.
    async fn plug(&self, req: &PlugRequest) -> Result<Plugged, HostError>;
    /// Undoes `plug`; devices already gone are fine; every failure is reported.
    async fn unplug(&self, bind: &BindContext) -> Result<(), HostError>;
    /// Nested: a sub-interface `t_c<port>` of the VM's NIC.
    async fn plug_sub(
        &self,
        port_id: &str,
        mac: Option<&str>,
        mtu: Option<u32>,
        link_iface: &str,
        kind: netlink::SubKind,
    ) -> Result<Plugged, HostError>;
    async fn unplug_sub(&self, port_id: &str) -> Result<(), HostError>;
    /// SR-IOV: MAC and VLAN of a VF through its PF, and the VF netdev's MTU; the netdev.
    async fn plug_vf(
        &self,
        dev: &PciNetDevice,
        mac: &str,
        vlan: u16,
        mtu: Option<u32>,
    ) -> Result<String, HostError>;
    async fn unplug_vf(&self, dev: &PciNetDevice) -> Result<(), HostError>;
    /// The PCI device (SR-IOV VF or passed-through NIC) at `pci_slot`.
    fn pci_device(&self, pci_slot: &str) -> Result<PciNetDevice, HostError>;
    /// The VFs of PF netdev `pf`: (number, PCI address).
    fn sriov_vfs(&self, pf: &str) -> Result<Vec<(u32, String)>, HostError>;
    /// Whether a link exists, and its MAC.
    async fn link_mac(&self, name: &str) -> Result<Option<Option<String>>, HostError>;
    /// Deletes a link; true if there was one.
    async fn delete_link(&self, name: &str) -> Result<bool, HostError>;
    /// Names of the links whose name starts with `prefix`.
    async fn links_with_prefix(&self, prefix: &str) -> Result<Vec<String>, HostError>;
    /// OVS interfaces kuryr plugged here (none without Open vSwitch), and whether the
    /// device each names still exists.
    async fn ovs_interfaces(&self) -> Result<Vec<(ovs::KuryrInterface, bool)>, HostError> {
        Ok(Vec::new())
    }
    /// Removes the OVS port kuryr plugged under this name, its device there or not;
    /// true if there was one.
    async fn delete_ovs_port(&self, _name: &str) -> Result<bool, HostError> {
        Ok(false)
    }
    /// The host veth whose alias names endpoint `ep` (written by `plug`), if any.
    async fn veth_of_endpoint(&self, ep: &str) -> Result<Option<String>, HostError>;
    /// The endpoint the host veth of port `port_id` serves: None without a veth, `Some(None)`
    /// for a veth whose alias names none.
    async fn veth_endpoint(&self, port_id: &str) -> Result<Option<Option<String>>, HostError>;
    /// CNI: moves `link` (the container end `plug` made) into the namespace at `netns`
    /// and configures it there as `want`; fails if the name is taken there.
    async fn move_into_netns(
        &self,
        link: &str,
        netns: &Path,
        want: &netns::NsInterface,
    ) -> Result<(), HostError>;
    /// CNI: the interface `ifname` in the namespace at `netns`, if any.
    async fn netns_link(
        &self,
        netns: &Path,
        ifname: &str,
    ) -> Result<Option<netns::NsLink>, HostError>;
    /// CNI: deletes `ifname` in the namespace; a namespace or interface gone is fine.
    async fn delete_in_netns(&self, netns: &Path, ifname: &str) -> Result<bool, HostError>;
}

/// What `plug` writes as the host veth's alias: the endpoint it serves, so the endpoint
/// of a port is known from the host alone (its Neutron bookkeeping may not be written
/// yet when kuryr restarts).
pub fn veth_alias(endpoint_id: &str) -> String {
    format!("{ALIAS_PREFIX}{endpoint_id}")
}

const ALIAS_PREFIX: &str = "kuryr:";

/// The endpoint a port plugged ahead of use (a pool's) serves until one takes it: `plug`
/// for a real endpoint adopts such a veth as it is instead of making it again.
pub const PLUGGED_AHEAD: &str = "pool";

/// The OVS interfaces kuryr plugged here (none without Open vSwitch), and whether the
/// device each names exists in this network namespace.
pub async fn kuryr_ovs_interfaces(
    nl: &Netlink,
) -> Result<Vec<(ovs::KuryrInterface, bool)>, HostError> {
    let found = tokio::task::spawn_blocking(ovs::kuryr_interfaces)
        .await
        .map_err(|e| HostError::Binding(e.to_string()))?;
    let mut out = Vec::new();
    for i in found {
        let exists = nl.link(&i.name).await?.is_some();
        out.push((i, exists));
    }
    Ok(out)
}

/// What the container side of an endpoint needs.
#[derive(Debug, Clone)]
pub struct PlugRequest {
    pub bind: BindContext,
    pub mtu: Option<u32>,
    /// CNI: the container's namespace, where the container end is made (with its MAC
    /// and MTU, down) instead of in the host's. Moving a link between namespaces waits
    /// for an RCU grace period, most of a pooled ADD's time; making it there does not.
    pub netns: Option<std::path::PathBuf>,
}

/// Names of the interfaces made for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugged {
    pub host_ifname: String,
    pub container_ifname: String,
}

#[derive(Clone)]
pub struct Plumber {
    nl: Netlink,
    bindir: PathBuf,
    host: String,
    sysfs: Sysfs,
}

impl Plumber {
    pub fn new(bindir: PathBuf, host: String) -> Result<Self, HostError> {
        Ok(Plumber {
            nl: Netlink::connect()?,
            bindir,
            host,
            sysfs: Sysfs::default(),
        })
    }

    /// Looks SR-IOV devices up under another sysfs mount than /sys.
    pub fn set_sysfs(&mut self, sysfs: Sysfs) {
        self.sysfs = sysfs;
    }

    pub fn netlink(&self) -> &Netlink {
        &self.nl
    }

    /// On an OVN chassis, the container's addresses are announced from its port once
    /// ovn-controller has installed it (see `announce`). All of it in the background,
    /// the first look at this host's Open vSwitch included: nothing on the start's path.
    fn announce(&self, binder: &binding::Binder, bind: &BindContext, host_if: &str) {
        if !binder.may_announce(bind) {
            return;
        }
        let (binder, bind, host_if) = (binder.clone(), bind.clone(), host_if.to_string());
        tokio::spawn(async move {
            if let Some(bridge) = binder.announce_on(&bind).await {
                announce::announce(bridge, host_if, bind.mac, bind.ipv4).await;
            }
        });
    }
}

#[async_trait]
impl Plumbing for Plumber {
    /// The PCI device (SR-IOV VF or passed-through NIC) at `pci_slot`.
    fn pci_device(&self, pci_slot: &str) -> Result<PciNetDevice, HostError> {
        self.sysfs.device(pci_slot)
    }

    /// The VFs of PF netdev `pf`: (number, PCI address).
    fn sriov_vfs(&self, pf: &str) -> Result<Vec<(u32, String)>, HostError> {
        self.sysfs.vfs_of(pf)
    }

    /// SR-IOV: gives the VF the port's MAC and the network's VLAN through its PF and sets
    /// the MTU of its netdev, which Docker then moves into the container (libnetwork
    /// brings it up there). A passed-through NIC (no PF) takes the MAC itself and cannot
    /// tag. Returns the netdev's name.
    async fn plug_vf(
        &self,
        dev: &PciNetDevice,
        mac: &str,
        vlan: u16,
        mtu: Option<u32>,
    ) -> Result<String, HostError> {
        let netdev = dev.netdev.clone().ok_or_else(|| {
            HostError::NotFound(format!(
                "network interface of PCI device {} in this namespace (bound to vfio-pci, or still in a container?)",
                dev.pci_slot
            ))
        })?;
        match &dev.vf_of {
            Some((pf, n)) => {
                self.nl.set_vf(pf, *n, Some(mac), vlan).await?;
                self.nl.configure(&netdev, None, mtu, false).await?;
            }
            None if vlan != 0 => {
                return Err(HostError::Invalid(format!(
                    "PCI device {} is no virtual function: it cannot tag VLAN {vlan}",
                    dev.pci_slot
                )))
            }
            None => self.nl.configure(&netdev, Some(mac), mtu, false).await?,
        }
        Ok(netdev)
    }

    /// SR-IOV: clears the VF's VLAN (as the reference does; the next bind sets the MAC).
    async fn unplug_vf(&self, dev: &PciNetDevice) -> Result<(), HostError> {
        if let Some((pf, n)) = &dev.vf_of {
            self.nl.set_vf(pf, *n, None, 0).await?;
        }
        Ok(())
    }

    /// Creates `tap<port>`/`t_c<port>`, sets MAC and MTU, brings both up and binds the host
    /// end. On any failure the pair is deleted again. A pair left by an earlier attempt is
    /// replaced, so a retried call converges.
    async fn plug(&self, req: &PlugRequest) -> Result<Plugged, HostError> {
        let port_id = &req.bind.port_id;
        let host_if = names::host_veth(port_id);
        let cont_if = names::container_veth(port_id);
        // Select first: an unsupported vif_type must not leave a veth behind.
        let binder = binding::select(&req.bind.vif_type, &self.bindir, &self.host)?;
        let host_link = self.nl.link(&host_if).await?;
        let cont_link = self.nl.link(&cont_if).await?;
        let ahead = Some(veth_alias(PLUGGED_AHEAD));
        // Plugged ahead (the pool's): bound and filtered already, so it is only handed
        // over, with the network's MTU. For CNI its container end is moved into the
        // namespace next, as it was made: the datapath port stays as the agent or
        // ovn-controller set it up.
        if let (Some(h), Some(c)) = (&host_link, &cont_link) {
            let same_mac = c
                .mac
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(&req.bind.mac));
            if h.alias == ahead && req.bind.endpoint_id != PLUGGED_AHEAD && same_mac {
                for l in [c, h] {
                    if req.mtu.is_some() && l.mtu != req.mtu {
                        self.nl.configure(&l.name, None, req.mtu, true).await?;
                    }
                }
                self.nl
                    .set_alias(&host_if, &veth_alias(&req.bind.endpoint_id))
                    .await?;
                tracing::debug!(%host_if, endpoint = %req.bind.endpoint_id, "veth plugged ahead handed over");
                self.announce(&binder, &req.bind, &host_if);
                return Ok(Plugged {
                    host_ifname: host_if,
                    container_ifname: cont_if,
                });
            }
        }
        if host_link.is_some() || cont_link.is_some() {
            tracing::info!(%host_if, "replacing a veth left by an earlier attempt or plugged ahead");
            self.nl.delete(&host_if).await?;
            self.nl.delete(&cont_if).await?;
        }
        match &req.netns {
            Some(ns) => {
                let file = netns::open(ns)?;
                self.nl
                    .create_veth_in(
                        &host_if,
                        &cont_if,
                        std::os::fd::AsRawFd::as_raw_fd(&file),
                        &req.bind.mac,
                        req.mtu,
                    )
                    .await?
            }
            None => self.nl.create_veth(&host_if, &cont_if).await?,
        }
        let result = async {
            if req.netns.is_none() {
                self.nl
                    .configure(&cont_if, Some(&req.bind.mac), req.mtu, true)
                    .await?;
            }
            self.nl.configure(&host_if, None, req.mtu, true).await?;
            self.nl
                .set_alias(&host_if, &veth_alias(&req.bind.endpoint_id))
                .await?;
            let mut ctx = req.bind.clone();
            ctx.ifname = host_if.clone();
            binder.bind(&self.nl, &ctx, req.netns.as_deref()).await
        }
        .await;
        if let Err(e) = result {
            // What the binder made (hybrid plug: qbr/qvb/qvo) goes too, then the pair.
            let mut ctx = req.bind.clone();
            ctx.ifname = host_if.clone();
            if let Err(e2) = binder.unbind(&self.nl, &ctx).await {
                tracing::warn!(%host_if, error = %e2, "rollback: could not unbind");
            }
            if let Err(e2) = self.nl.delete(&host_if).await {
                tracing::warn!(%host_if, error = %e2, "rollback: could not delete veth");
            }
            return Err(e);
        }
        if req.bind.endpoint_id != PLUGGED_AHEAD {
            self.announce(&binder, &req.bind, &host_if);
        }
        Ok(Plugged {
            host_ifname: host_if,
            container_ifname: cont_if,
        })
    }

    /// Nested (in a VM): a sub-interface `t_c<port>` of `link_iface` (macvlan, ipvlan or
    /// VLAN), with the port's MAC where the kind allows one, MTU, up. Nothing is bound on
    /// the host side: the VM's own Neutron port carries the traffic. One left by an
    /// earlier attempt is replaced.
    async fn plug_sub(
        &self,
        port_id: &str,
        mac: Option<&str>,
        mtu: Option<u32>,
        link_iface: &str,
        kind: netlink::SubKind,
    ) -> Result<Plugged, HostError> {
        let cont_if = names::container_veth(port_id);
        if self.nl.link(&cont_if).await?.is_some() {
            tracing::info!(%cont_if, "replacing a sub-interface left by an earlier attempt");
            self.nl.delete(&cont_if).await?;
        }
        self.nl.create_sub(&cont_if, link_iface, kind).await?;
        if let Err(e) = self.nl.configure(&cont_if, mac, mtu, true).await {
            if let Err(e2) = self.nl.delete(&cont_if).await {
                tracing::warn!(%cont_if, error = %e2, "rollback: could not delete sub-interface");
            }
            return Err(e);
        }
        Ok(Plugged {
            host_ifname: String::new(),
            container_ifname: cont_if,
        })
    }

    /// Deletes the sub-interface of a nested endpoint; one already gone is fine.
    async fn unplug_sub(&self, port_id: &str) -> Result<(), HostError> {
        self.nl.delete(&names::container_veth(port_id)).await?;
        Ok(())
    }

    /// Unbinds and deletes both ends. Missing devices are fine; every step runs, and every
    /// failure is reported.
    async fn unplug(&self, bind: &BindContext) -> Result<(), HostError> {
        let host_if = names::host_veth(&bind.port_id);
        let cont_if = names::container_veth(&bind.port_id);
        let mut errors = Vec::new();
        if let Ok(binder) = binding::select(&bind.vif_type, &self.bindir, &self.host) {
            let mut ctx = bind.clone();
            ctx.ifname = host_if.clone();
            if let Err(e) = binder.unbind(&self.nl, &ctx).await {
                errors.push(e);
            }
        }
        // Docker moves the container end back under its own name before DeleteEndpoint.
        for ifname in [&host_if, &cont_if] {
            if let Err(e) = self.nl.delete(ifname).await {
                errors.push(e);
            }
        }
        HostError::all(errors)
    }

    async fn link_mac(&self, name: &str) -> Result<Option<Option<String>>, HostError> {
        Ok(self.nl.link(name).await?.map(|l| l.mac))
    }

    /// Deletes the link and, for a host veth that was still there (a left-over plug), the
    /// OVS port kuryr made of it, which would outlive the device. A veth already gone
    /// costs no `ovs-vsctl`: the usual release after an unplug stays netlink only, and an
    /// OVS port whose device went otherwise is `kuryr gc`'s.
    async fn delete_link(&self, name: &str) -> Result<bool, HostError> {
        let deleted = self.nl.delete(name).await?;
        if deleted && name.starts_with(names::HOST_VETH_PREFIX) {
            self.delete_ovs_port(name).await?;
        }
        Ok(deleted)
    }

    async fn delete_ovs_port(&self, name: &str) -> Result<bool, HostError> {
        let n = name.to_string();
        tokio::task::spawn_blocking(move || ovs::delete_kuryr_port(&n))
            .await
            .map_err(|e| HostError::Binding(e.to_string()))?
    }

    async fn ovs_interfaces(&self) -> Result<Vec<(ovs::KuryrInterface, bool)>, HostError> {
        kuryr_ovs_interfaces(&self.nl).await
    }

    async fn links_with_prefix(&self, prefix: &str) -> Result<Vec<String>, HostError> {
        Ok(self
            .nl
            .links_with_prefix(prefix)
            .await?
            .into_iter()
            .map(|l| l.name)
            .collect())
    }

    async fn move_into_netns(
        &self,
        link: &str,
        netns: &Path,
        want: &netns::NsInterface,
    ) -> Result<(), HostError> {
        netns::move_in(&self.nl, link, netns, want).await
    }

    async fn netns_link(
        &self,
        netns: &Path,
        ifname: &str,
    ) -> Result<Option<netns::NsLink>, HostError> {
        netns::inspect(netns, ifname).await
    }

    async fn delete_in_netns(&self, netns: &Path, ifname: &str) -> Result<bool, HostError> {
        netns::delete(netns, ifname).await
    }

    async fn veth_endpoint(&self, port_id: &str) -> Result<Option<Option<String>>, HostError> {
        Ok(self.nl.link(&names::host_veth(port_id)).await?.map(|l| {
            l.alias
                .and_then(|a| a.strip_prefix(ALIAS_PREFIX).map(str::to_string))
        }))
    }

    async fn veth_of_endpoint(&self, ep: &str) -> Result<Option<String>, HostError> {
        let want = veth_alias(ep);
        Ok(self
            .nl
            .links_with_prefix(names::HOST_VETH_PREFIX)
            .await?
            .into_iter()
            .find(|l| l.alias.as_deref() == Some(want.as_str()))
            .map(|l| l.name))
    }
}
