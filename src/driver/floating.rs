//! Floating IPs of endpoints and CNI attachments: one kuryr allocates on an external
//! network, or the user's own, associated once the port exists and given back with it.

use serde_json::Value;

use super::cache::NetInfo;
use super::{Driver, DriverError, Result};
use crate::names;
use crate::neutron::{Filters, FloatingIp, FloatingIpPort, NewFloatingIp, Port};

/// A container's floating IP: one kuryr allocates on an external network, or the user's.
#[derive(Debug, Clone)]
pub(super) enum Floating {
    Allocate(String),
    Existing(FloatingIp),
}

impl Driver {
    /// The floating IP an endpoint asks for: the container's own address
    /// (`neutron.floating_ip`), else an external network (the container's, else its
    /// network's); resolved before anything is made.
    pub(super) async fn floating_ask(
        &self,
        options: &serde_json::Map<String, Value>,
        net: &NetInfo,
    ) -> Result<Option<Floating>> {
        let opt = |k: &str| options.get(k).and_then(Value::as_str).map(str::trim);
        if let Some(addr) = opt(super::network::FLOATING_IP_OPTION) {
            let ip: std::net::IpAddr = addr.parse().map_err(|_| {
                DriverError::BadRequest(format!(
                    "{}={addr:?} is not an IP address",
                    super::network::FLOATING_IP_OPTION
                ))
            })?;
            let found: Vec<FloatingIp> = self
                .neutron
                .list(&Filters::new().add("floating_ip_address", ip.to_string()))
                .await?;
            return match found.into_iter().next() {
                Some(f) => Ok(Some(Floating::Existing(f))),
                None => Err(DriverError::BadRequest(format!(
                    "no floating IP {ip} is allocated: allocate it first (openstack floating ip create --floating-ip-address {ip} NETWORK)"
                ))),
            };
        }
        if let Some(n) = opt(super::network::FLOATING_NETWORK_OPTION) {
            return Ok(Some(Floating::Allocate(self.external_network_id(n).await?)));
        }
        Ok(net.floating_network.clone().map(Floating::Allocate))
    }

    /// Puts the floating IP on the port: one request (a retried call first looks for the
    /// one it allocated). Neutron refuses when no router joins the port's subnet to the
    /// external network; its message is the error.
    pub(super) async fn attach_floating_ip(
        &self,
        f: &Floating,
        port: &Port,
        ep: &str,
        retried: bool,
    ) -> Result<()> {
        match f {
            Floating::Allocate(net) => {
                if retried {
                    let have: Vec<FloatingIp> = self
                        .neutron
                        .list(&Filters::new().add("port_id", &port.id))
                        .await?;
                    if !have.is_empty() {
                        return Ok(());
                    }
                }
                let made: FloatingIp = self
                    .neutron
                    .create(NewFloatingIp {
                        floating_network_id: net.to_string(),
                        port_id: port.id.clone(),
                        description: names::fip_description(ep),
                    })
                    .await?;
                tracing::info!(endpoint = %ep, floating_ip = %made.floating_ip_address, "floating IP allocated");
            }
            Floating::Existing(fip) => {
                self.neutron
                    .update::<FloatingIp>(
                        &fip.id,
                        FloatingIpPort {
                            port_id: Some(port.id.clone()),
                        },
                    )
                    .await?;
                tracing::info!(endpoint = %ep, floating_ip = %fip.floating_ip_address, "floating IP associated");
            }
        }
        Ok(())
    }

    /// At an endpoint's end: the floating IP kuryr allocated for it is released, a user's
    /// only disassociated (it stays theirs).
    pub(super) async fn detach_floating_ips(&self, port_id: &str, ep: &str) -> Result<()> {
        let fips: Vec<FloatingIp> = self
            .neutron
            .list(&Filters::new().add("port_id", port_id))
            .await?;
        for f in fips {
            if f.description == names::fip_description(ep) {
                self.neutron.delete_if_exists::<FloatingIp>(&f.id).await?;
            } else {
                match self
                    .neutron
                    .update::<FloatingIp>(&f.id, FloatingIpPort { port_id: None })
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}
