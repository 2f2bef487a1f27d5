//! An endpoint once made: EndpointOperInfo, Join and Leave answer from what
//! CreateEndpoint learnt, asking Neutron only for a status that is not ACTIVE yet.

use std::time::{Duration, Instant};

use super::{bad, Driver, DriverError, Result};
use crate::names;
use crate::neutron::{Port, PortId, PortStatus};
use crate::protocol::{
    EndpointOperInfoResponse, EndpointRequest, InterfaceName, JoinRequest, JoinResponse, OperInfo,
    StaticRoute,
};

/// How long a port status read by EndpointOperInfo is answered again without asking.
const STATUS_TTL: Duration = Duration::from_secs(2);

impl Driver {
    pub async fn endpoint_oper_info(
        &self,
        req: EndpointRequest,
    ) -> Result<EndpointOperInfoResponse> {
        let Some(info) = self
            .endpoint_info(&req.network_id, &req.endpoint_id)
            .await?
        else {
            return Ok(EndpointOperInfoResponse::default());
        };
        // Status changes as the agent works. Docker asks several times per start: the
        // answer comes from memory, and a status that is not ACTIVE yet (where it then
        // stays) is read again in the background, at most every two seconds.
        let status = info.port.status.clone();
        let stale = info
            .status_read_at
            .is_none_or(|t| t.elapsed() >= STATUS_TTL);
        if status != PortStatus::Active && stale {
            self.refresh_status(req.endpoint_id.to_string(), info.port.id.clone());
        }
        Ok(EndpointOperInfoResponse {
            value: OperInfo {
                status: Some(status.as_str().to_string()),
            },
        })
    }

    /// Reads a port's status into the endpoint's cache entry, in the background; an entry
    /// gone meanwhile (DeleteEndpoint) is not brought back.
    fn refresh_status(&self, ep: String, port_id: PortId) {
        let (neutron, cache) = (self.neutron.clone(), self.cache.clone());
        if let Some(mut e) = cache.endpoints.get(&ep) {
            // Marks the read as under way, so concurrent calls start no second one.
            e.status_read_at = Some(Instant::now());
            cache.endpoints.update(&ep, |v| *v = e);
        }
        self.background.spawn(&port_id.clone(), async move {
            match neutron.get::<Port>(&port_id).await {
                Ok(p) => cache.endpoints.update(&ep, |v| {
                    v.port.status = p.status;
                    v.status_read_at = Some(Instant::now());
                }),
                Err(e) => tracing::debug!(port = %port_id, error = %e, "port status not read"),
            }
        });
    }

    pub async fn join(&self, req: JoinRequest) -> Result<JoinResponse> {
        if req.sandbox_key.is_empty()
            || !req.sandbox_key.starts_with('/')
            || req.sandbox_key.contains("..")
        {
            return Err(bad(format!(
                "SandboxKey {:?} is not an absolute path",
                req.sandbox_key
            )));
        }
        let net = self.require_net(&req.network_id).await?;
        let info = self
            .endpoint_info(&req.network_id, &req.endpoint_id)
            .await?
            .ok_or_else(|| {
                DriverError::NotFound(format!(
                    "The port doesn't exist for the identifier {}",
                    req.endpoint_id
                ))
            })?;
        let port = &info.port;
        // The endpoint's bookkeeping (name, device_id, tags) is on its port before Join
        // answers, so once `docker run` or `docker network connect` returns the port is
        // the container's, as the reference's is. Join holds no lock of the network's
        // in libnetwork (CreateEndpoint does): other starts on the network go on.
        self.background.hurry(port.id.as_str()).await;
        let mut gateway = None;
        let mut gateway_v6 = None;
        let mut routes = Vec::new();
        for f in &port.fixed_ips {
            let Some(s) = net.subnets.iter().find(|s| s.id == f.subnet_id) else {
                continue;
            };
            let gw = s.gateway_ip.map(|g| g.to_string());
            if s.ip_version == 6 || s.cidr.addr().is_ipv6() {
                gateway_v6 = gateway_v6.or(gw);
            } else {
                gateway = gateway.or(gw);
            }
            for r in &s.host_routes {
                routes.push(StaticRoute {
                    destination: r.destination.clone(),
                    route_type: 0,
                    next_hop: r.nexthop.clone(),
                });
            }
        }
        let src_name = if super::sriov::is_sriov(&port.vnic_type) {
            self.sriov_ifname(port)?
        } else {
            names::container_veth(&port.id)
        };
        Ok(JoinResponse {
            interface_name: InterfaceName {
                src_name,
                dst_prefix: self.cfg.binding.veth_dst_prefix.clone(),
            },
            gateway,
            gateway_ipv6: gateway_v6,
            static_routes: routes,
            disable_gateway_service: true,
        })
    }

    /// Nothing to undo of Join; the ids were checked when the request was parsed.
    pub async fn leave(&self, _req: EndpointRequest) -> Result<()> {
        Ok(())
    }
}
