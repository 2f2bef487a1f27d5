//! `binding:vif_type`, Neutron's word on how a port's host side is plugged: read by the
//! Neutron client and acted on by the host plumbing, so it sits below both.

/// `binding:vif_type`: how the port's host interface must be plugged, as Neutron's
/// mechanism driver decided it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VifType {
    /// Not bound (also `""`: an older Neutron, or no binding extension).
    #[default]
    Unbound,
    /// Bound, but no mechanism driver took it (no live agent with that host name).
    BindingFailed,
    /// neutron-linuxbridge-agent: the tap joins `brq<network>`.
    Bridge,
    /// Open vSwitch: the tap joins the integration bridge.
    Ovs,
    /// Nothing to plug (e.g. Calico).
    Tap,
    /// SR-IOV: a VF (`hw_veb`), macvtap on a VF, a whole PCI device.
    HwVeb,
    Macvtap,
    HostdevPhysical,
    /// Anything else: bound by `<bindir>/<name>`, if the name is a valid program name.
    Other(String),
}

impl VifType {
    pub fn as_str(&self) -> &str {
        match self {
            VifType::Unbound => "unbound",
            VifType::BindingFailed => "binding_failed",
            VifType::Bridge => "bridge",
            VifType::Ovs => "ovs",
            VifType::Tap => "tap",
            VifType::HwVeb => "hw_veb",
            VifType::Macvtap => "macvtap",
            VifType::HostdevPhysical => "hostdev_physical",
            VifType::Other(s) => s,
        }
    }

    /// A mechanism driver bound the port.
    pub fn is_bound(&self) -> bool {
        !matches!(self, VifType::Unbound | VifType::BindingFailed)
    }
}

impl From<&str> for VifType {
    fn from(s: &str) -> Self {
        match s {
            "" | "unbound" => VifType::Unbound,
            "binding_failed" => VifType::BindingFailed,
            "bridge" => VifType::Bridge,
            "ovs" => VifType::Ovs,
            "tap" => VifType::Tap,
            "hw_veb" => VifType::HwVeb,
            "macvtap" => VifType::Macvtap,
            "hostdev_physical" => VifType::HostdevPhysical,
            other => VifType::Other(other.to_string()),
        }
    }
}

crate::wire::wire_string!(VifType);
