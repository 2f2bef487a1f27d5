//! The only module that speaks netlink. Callers ask for "a veth pair", "this MTU", "this
//! bridge"; they never build messages.

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    BridgeStpState, InfoBridge, InfoData, InfoVeth, IpVlanMode, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage, LinkVfInfo, MacVlanMode, VfInfo, VfInfoMac, VfInfoVlan,
};
use rtnetlink::{
    Handle, LinkBridge, LinkIpVlan, LinkMacVlan, LinkUnspec, LinkVeth, LinkVlan,
    RouteMessageBuilder,
};

use super::HostError;

pub type Result<T> = std::result::Result<T, HostError>;

/// Kinds of sub-interface the nested port drivers make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// Own MAC, bridge mode: sub-interfaces of one parent reach each other.
    Macvlan,
    /// Parent's MAC, L2 mode.
    Ipvlan,
    /// 802.1Q tag on the parent (a trunk subport's segmentation id).
    Vlan(u16),
}

impl SubKind {
    fn op(self) -> &'static str {
        match self {
            SubKind::Macvlan => "create macvlan",
            SubKind::Ipvlan => "create ipvlan",
            SubKind::Vlan(_) => "create vlan",
        }
    }
}

/// The RTM_NEWLINK request for a sub-interface; apart from sending so that it can be
/// checked where the kernel lacks the kind (no 8021q or ipvlan module on some hosts).
pub fn sub_request(name: &str, parent_index: u32, kind: SubKind) -> LinkMessage {
    match kind {
        SubKind::Macvlan => LinkMacVlan::new(name, parent_index, MacVlanMode::Bridge).build(),
        SubKind::Ipvlan => LinkIpVlan::new(name, parent_index, IpVlanMode::L2).build(),
        SubKind::Vlan(id) => LinkVlan::new(name, parent_index, id).build(),
    }
}

/// The RTM_SETLINK request that gives virtual function `vf` of the physical function with
/// index `pf_index` a MAC and a VLAN (0 = untagged), as `ip link set PF vf N mac M vlan V`
/// does. Apart from sending so that it can be checked without SR-IOV hardware.
pub fn vf_request(pf_index: u32, vf: u32, mac: Option<&[u8]>, vlan: u16) -> LinkMessage {
    let mut info = Vec::new();
    if let Some(mac) = mac {
        info.push(VfInfo::Mac(VfInfoMac::new(vf, mac)));
    }
    info.push(VfInfo::Vlan(VfInfoVlan::new(vf, u32::from(vlan), 0)));
    LinkUnspec::new_with_index(pf_index)
        .append_extra_attribute(LinkAttribute::VfInfoList(vec![LinkVfInfo(info)]))
        .build()
}

/// What we need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub controller: Option<u32>,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub up: bool,
    /// IFLA_IFALIAS: kuryr writes the endpoint id on a host veth.
    pub alias: Option<String>,
}

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().raw_os_error(),
        _ => None,
    }
}

fn wrap(op: &str, name: &str, e: rtnetlink::Error) -> HostError {
    HostError::Netlink {
        op: op.to_string(),
        name: name.to_string(),
        message: e.to_string(),
        errno: errno(&e),
    }
}

fn parse_mac(mac: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = mac
        .split(':')
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    (bytes.len() == 6).then_some(bytes)
}

fn format_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn to_link(msg: &LinkMessage) -> Link {
    let mut l = Link {
        index: msg.header.index,
        name: String::new(),
        controller: None,
        mac: None,
        mtu: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        alias: None,
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Controller(c) => l.controller = Some(*c),
            LinkAttribute::Address(m) => l.mac = Some(format_mac(m)),
            LinkAttribute::Mtu(m) => l.mtu = Some(*m),
            LinkAttribute::IfAlias(a) => l.alias = Some(a.clone()),
            _ => {}
        }
    }
    l
}

impl Netlink {
    /// Opens a route netlink socket in the current (host) namespace.
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| HostError::Netlink {
            op: "open socket".into(),
            name: String::new(),
            message: e.to_string(),
            errno: e.raw_os_error(),
        })?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    pub async fn link(&self, name: &str) -> Result<Option<Link>> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await {
            Ok(Some(msg)) => Ok(Some(to_link(&msg))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(wrap("get link", name, e)),
        }
    }

    /// All links whose name starts with `prefix`.
    pub async fn links_with_prefix(&self, prefix: &str) -> Result<Vec<Link>> {
        let mut s = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(msg) = s
            .try_next()
            .await
            .map_err(|e| wrap("list links", prefix, e))?
        {
            let l = to_link(&msg);
            if l.name.starts_with(prefix) {
                out.push(l);
            }
        }
        Ok(out)
    }

    pub async fn create_veth(&self, name: &str, peer: &str) -> Result<()> {
        self.handle
            .link()
            .add(LinkVeth::new(name, peer).build())
            .execute()
            .await
            .map_err(|e| wrap("create veth", name, e))
    }

    /// A veth pair whose peer is made inside the namespace open as `netns_fd`, with
    /// `peer_mac` and `mtu` and down: no move between namespaces afterwards.
    pub async fn create_veth_in(
        &self,
        name: &str,
        peer: &str,
        netns_fd: std::os::fd::RawFd,
        peer_mac: &str,
        mtu: Option<u32>,
    ) -> Result<()> {
        let mac = parse_mac(peer_mac)
            .ok_or_else(|| HostError::Invalid(format!("MAC address {peer_mac:?}")))?;
        let mut p = LinkUnspec::new_with_name(peer)
            .setns_by_fd(netns_fd)
            .address(mac);
        if let Some(mtu) = mtu {
            p = p.mtu(mtu);
        }
        let peer_msg = p.build();
        let mut msg = LinkVeth::new(name, peer).build();
        for attr in msg.attributes.iter_mut() {
            if let LinkAttribute::LinkInfo(infos) = attr {
                for i in infos.iter_mut() {
                    if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = i {
                        *p = peer_msg.clone();
                    }
                }
            }
        }
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| wrap("create veth", name, e))
    }

    pub async fn create_macvlan(&self, name: &str, parent: &str) -> Result<()> {
        self.create_sub(name, parent, SubKind::Macvlan).await
    }

    /// A sub-interface of `parent` (nested drivers): macvlan, ipvlan or 802.1Q VLAN.
    pub async fn create_sub(&self, name: &str, parent: &str, kind: SubKind) -> Result<()> {
        let parent_link = self
            .link(parent)
            .await?
            .ok_or_else(|| HostError::NotFound(format!("link interface {parent}")))?;
        self.handle
            .link()
            .add(sub_request(name, parent_link.index, kind))
            .execute()
            .await
            .map_err(|e| wrap(kind.op(), name, e))
    }

    /// Sets MAC, MTU and state of a link; `None` leaves a property alone.
    pub async fn configure(
        &self,
        name: &str,
        mac: Option<&str>,
        mtu: Option<u32>,
        up: bool,
    ) -> Result<()> {
        let mut b = LinkUnspec::new_with_name(name);
        if let Some(mac) = mac {
            let bytes =
                parse_mac(mac).ok_or_else(|| HostError::Invalid(format!("MAC address {mac:?}")))?;
            b = b.address(bytes);
        }
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        b = if up { b.up() } else { b.down() };
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(|e| wrap("configure link", name, e))
    }

    /// Sets a link's alias (IFLA_IFALIAS).
    pub async fn set_alias(&self, name: &str, alias: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_name(name)
            .append_extra_attribute(LinkAttribute::IfAlias(alias.to_string()))
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| wrap("set alias of", name, e))
    }

    /// A netlink connection on an existing handle (one opened inside another namespace).
    pub fn from_handle(handle: Handle) -> Self {
        Netlink { handle }
    }

    /// Moves a link into the network namespace open as `netns_fd`; the kernel takes it
    /// down on the way.
    pub async fn move_to_netns(&self, name: &str, netns_fd: std::os::fd::RawFd) -> Result<()> {
        let msg = LinkUnspec::new_with_name(name)
            .setns_by_fd(netns_fd)
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| wrap("move into namespace", name, e))
    }

    /// Renames a link (it must be down).
    pub async fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        let l = self
            .link(name)
            .await?
            .ok_or_else(|| HostError::NotFound(format!("link {name}")))?;
        let msg = LinkUnspec::new_with_index(l.index).name(new_name).build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| wrap("rename link", name, e))
    }

    /// Adds an address (with its prefix) to a link.
    pub async fn add_address(&self, name: &str, addr: ipnet::IpNet) -> Result<()> {
        let l = self
            .link(name)
            .await?
            .ok_or_else(|| HostError::NotFound(format!("link {name}")))?;
        self.handle
            .address()
            .add(l.index, addr.addr(), addr.prefix_len())
            .execute()
            .await
            .map_err(|e| wrap("add address to", name, e))
    }

    /// The addresses of a link, with their prefixes.
    pub async fn addresses(&self, name: &str) -> Result<Vec<ipnet::IpNet>> {
        let Some(l) = self.link(name).await? else {
            return Ok(Vec::new());
        };
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(l.index)
            .execute();
        let mut out = Vec::new();
        while let Some(msg) = s
            .try_next()
            .await
            .map_err(|e| wrap("list addresses of", name, e))?
        {
            for a in &msg.attributes {
                if let AddressAttribute::Address(ip) = a {
                    if let Ok(n) = ipnet::IpNet::new(*ip, msg.header.prefix_len) {
                        out.push(n);
                    }
                }
            }
        }
        Ok(out)
    }

    /// A route through a link: to `dst`, via `gw` when given (else on-link).
    pub async fn add_route(
        &self,
        name: &str,
        dst: ipnet::IpNet,
        gw: Option<std::net::IpAddr>,
    ) -> Result<()> {
        let l = self
            .link(name)
            .await?
            .ok_or_else(|| HostError::NotFound(format!("link {name}")))?;
        // The builder's error type is not exported: its Debug form is the message.
        let invalid =
            |e: &dyn std::fmt::Debug| HostError::Invalid(format!("route {dst} via {gw:?}: {e:?}"));
        let mut b = RouteMessageBuilder::<std::net::IpAddr>::new()
            .destination_prefix(dst.addr(), dst.prefix_len())
            .map_err(|e| invalid(&e))?
            .output_interface(l.index);
        if let Some(g) = gw {
            b = b.gateway(g).map_err(|e| invalid(&e))?;
        }
        let msg = b.build();
        match self.handle.route().add(msg).execute().await {
            // A container on a second network has its default route from the first: it
            // keeps it (as netavark's own drivers do).
            Err(e) if errno(&e) == Some(libc::EEXIST) && dst.prefix_len() == 0 => {
                tracing::debug!(%dst, link = name, "a default route is there already: kept");
                Ok(())
            }
            other => other.map_err(|e| wrap(&format!("add route {dst} through"), name, e)),
        }
    }

    /// Deletes a link; one that is already gone is fine.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        let Some(l) = self.link(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(l.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(wrap("delete link", name, e)),
        }
    }

    /// A Linux bridge as the linuxbridge agent makes it: forward delay 0, STP off, up.
    pub async fn ensure_bridge(&self, name: &str) -> Result<Link> {
        if let Some(l) = self.link(name).await? {
            if !l.up {
                self.configure(name, None, None, true).await?;
            }
            return Ok(l);
        }
        let msg = LinkBridge::new(name)
            .append_info_data(InfoBridge::ForwardDelay(0))
            .append_info_data(InfoBridge::StpState(BridgeStpState::Disabled))
            .up()
            .build();
        match self.handle.link().add(msg).execute().await {
            Ok(()) => {}
            // The agent may have made it at the same moment.
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(wrap("create bridge", name, e)),
        }
        self.link(name)
            .await?
            .ok_or_else(|| HostError::NotFound(format!("bridge {name} after creating it")))
    }

    /// Programs virtual function `vf` of physical function `pf` (MAC when given, VLAN).
    /// Kernels answer EOPNOTSUPP for a device without SR-IOV.
    pub async fn set_vf(&self, pf: &str, vf: u32, mac: Option<&str>, vlan: u16) -> Result<()> {
        let pf_link = self
            .link(pf)
            .await?
            .ok_or_else(|| HostError::NotFound(format!("physical function {pf}")))?;
        let mac = match mac {
            Some(m) => {
                Some(parse_mac(m).ok_or_else(|| HostError::Invalid(format!("MAC address {m:?}")))?)
            }
            None => None,
        };
        self.handle
            .link()
            .set(vf_request(pf_link.index, vf, mac.as_deref(), vlan))
            .execute()
            .await
            .map_err(|e| wrap(&format!("set vf {vf} (vlan {vlan}) of"), pf, e))
    }

    /// Makes `name` a port of the bridge with index `bridge`.
    pub async fn set_controller(&self, name: &str, bridge: u32) -> Result<()> {
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_name(name)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| wrap("enslave link", name, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let b = parse_mac("fa:16:3e:00:0A:ff").unwrap();
        assert_eq!(b, vec![0xfa, 0x16, 0x3e, 0, 0x0a, 0xff]);
        assert_eq!(format_mac(&b), "fa:16:3e:00:0a:ff");
        assert!(parse_mac("fa:16:3e").is_none());
        assert!(parse_mac("zz:16:3e:00:0a:ff").is_none());
    }

    use netlink_packet_route::link::{
        InfoData, InfoIpVlan, InfoKind, InfoMacVlan, InfoVlan, LinkInfo,
    };

    fn info(msg: &LinkMessage) -> (Option<String>, Option<u32>, Vec<LinkInfo>) {
        let mut name = None;
        let mut parent = None;
        let mut infos = Vec::new();
        for a in &msg.attributes {
            match a {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Link(i) => parent = Some(*i),
                LinkAttribute::LinkInfo(i) => infos = i.clone(),
                _ => {}
            }
        }
        (name, parent, infos)
    }

    #[test]
    fn vlan_request_tags_the_parent_with_the_segmentation_id() {
        let (name, parent, infos) = info(&sub_request("t_cabc", 7, SubKind::Vlan(101)));
        assert_eq!(name.as_deref(), Some("t_cabc"));
        assert_eq!(parent, Some(7));
        assert!(infos.contains(&LinkInfo::Kind(InfoKind::Vlan)), "{infos:?}");
        assert!(
            infos.contains(&LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(101)]))),
            "{infos:?}"
        );
    }

    #[test]
    fn ipvlan_request_is_l2_on_the_parent() {
        let (name, parent, infos) = info(&sub_request("t_cdef", 3, SubKind::Ipvlan));
        assert_eq!(name.as_deref(), Some("t_cdef"));
        assert_eq!(parent, Some(3));
        assert!(
            infos.contains(&LinkInfo::Kind(InfoKind::IpVlan)),
            "{infos:?}"
        );
        assert!(
            infos
                .iter()
                .any(|i| matches!(i, LinkInfo::Data(InfoData::IpVlan(d))
                if d.contains(&InfoIpVlan::Mode(IpVlanMode::L2)))),
            "{infos:?}"
        );
    }

    fn vf_infos(msg: &LinkMessage) -> Vec<VfInfo> {
        msg.attributes
            .iter()
            .filter_map(|a| match a {
                LinkAttribute::VfInfoList(l) => Some(l.iter().flat_map(|i| i.0.clone())),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn vf_request_sets_mac_and_vlan_of_that_vf_on_the_pf() {
        let mac = parse_mac("fa:16:3e:12:34:56").unwrap();
        let msg = vf_request(4, 7, Some(&mac), 120);
        assert_eq!(msg.header.index, 4);
        let infos = vf_infos(&msg);
        assert_eq!(infos.len(), 2, "{infos:?}");
        assert!(
            infos.contains(&VfInfo::Mac(VfInfoMac::new(7, &mac))),
            "{infos:?}"
        );
        assert!(
            infos.contains(&VfInfo::Vlan(VfInfoVlan::new(7, 120, 0))),
            "{infos:?}"
        );
        // Unbinding clears only the VLAN, as the reference does.
        let infos = vf_infos(&vf_request(4, 7, None, 0));
        assert_eq!(infos, vec![VfInfo::Vlan(VfInfoVlan::new(7, 0, 0))]);
    }

    #[test]
    fn macvlan_request_is_bridge_mode() {
        let (_, parent, infos) = info(&sub_request("t_c1", 9, SubKind::Macvlan));
        assert_eq!(parent, Some(9));
        assert!(
            infos.contains(&LinkInfo::Kind(InfoKind::MacVlan)),
            "{infos:?}"
        );
        assert!(
            infos
                .iter()
                .any(|i| matches!(i, LinkInfo::Data(InfoData::MacVlan(d))
                if d.contains(&InfoMacVlan::Mode(MacVlanMode::Bridge)))),
            "{infos:?}"
        );
    }
}
