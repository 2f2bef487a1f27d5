//! Host plumbing: veth pairs for containers, bound into Neutron's L2. Knows nothing of
//! Docker or Neutron's API; it gets names, MAC, MTU and a vif_type.

pub mod binding;
pub mod netlink;

use std::path::PathBuf;

use thiserror::Error;

use crate::names;
use binding::BindContext;
use netlink::Netlink;

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
}

/// What the container side of an endpoint needs.
#[derive(Debug, Clone)]
pub struct PlugRequest {
    pub bind: BindContext,
    pub mtu: Option<u32>,
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
}

impl Plumber {
    pub fn new(bindir: PathBuf, host: String) -> Result<Self, HostError> {
        Ok(Plumber {
            nl: Netlink::connect()?,
            bindir,
            host,
        })
    }

    pub fn netlink(&self) -> &Netlink {
        &self.nl
    }

    /// Creates `tap<port>`/`t_c<port>`, sets MAC and MTU, brings both up and binds the host
    /// end. On any failure the pair is deleted again. A pair left by an earlier attempt is
    /// replaced, so a retried call converges.
    pub async fn plug(&self, req: &PlugRequest) -> Result<Plugged, HostError> {
        let port_id = &req.bind.port_id;
        let host_if = names::host_veth(port_id);
        let cont_if = names::container_veth(port_id);
        // Select first: an unsupported vif_type must not leave a veth behind.
        let binder = binding::select(&req.bind.vif_type, &self.bindir, &self.host)?;
        if self.nl.link(&host_if).await?.is_some() || self.nl.link(&cont_if).await?.is_some() {
            tracing::info!(%host_if, "replacing a veth left by an earlier attempt");
            self.nl.delete(&host_if).await?;
            self.nl.delete(&cont_if).await?;
        }
        self.nl.create_veth(&host_if, &cont_if).await?;
        let result = async {
            self.nl
                .configure(&cont_if, Some(&req.bind.mac), req.mtu, true)
                .await?;
            self.nl.configure(&host_if, None, req.mtu, true).await?;
            let mut ctx = req.bind.clone();
            ctx.ifname = host_if.clone();
            binder.bind(&self.nl, &ctx).await
        }
        .await;
        if let Err(e) = result {
            if let Err(e2) = self.nl.delete(&host_if).await {
                tracing::warn!(%host_if, error = %e2, "rollback: could not delete veth");
            }
            return Err(e);
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
    pub async fn plug_sub(
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
    pub async fn unplug_sub(&self, port_id: &str) -> Result<(), HostError> {
        self.nl.delete(&names::container_veth(port_id)).await?;
        Ok(())
    }

    /// Unbinds and deletes the host end (which removes the pair). Missing devices are fine;
    /// errors of the binder are reported after the veth is gone.
    pub async fn unplug(&self, bind: &BindContext) -> Result<(), HostError> {
        let host_if = names::host_veth(&bind.port_id);
        let cont_if = names::container_veth(&bind.port_id);
        let mut first_err = None;
        if let Ok(binder) = binding::select(&bind.vif_type, &self.bindir, &self.host) {
            let mut ctx = bind.clone();
            ctx.ifname = host_if.clone();
            if let Err(e) = binder.unbind(&self.nl, &ctx).await {
                first_err = Some(e);
            }
        }
        self.nl.delete(&host_if).await?;
        // Docker moves the container end back under its own name before DeleteEndpoint.
        self.nl.delete(&cont_if).await?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
