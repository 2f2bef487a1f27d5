//! `--expose`/`-p`: ProgramExternalConnectivity gives an endpoint's port a security
//! group opening its exposed ports; RevokeExternalConnectivity and DeleteEndpoint take
//! it off again.

use std::collections::BTreeMap;

use super::{bad, Driver, Result};
use crate::names;
use crate::neutron::{
    Filters, NewSecurityGroup, NewSecurityGroupRule, Port, PortBody, SecurityGroup,
    SecurityGroupRule,
};
use crate::protocol::{exposed_ports, EndpointRequest, ExposedPort};

impl Driver {
    pub async fn program_external_connectivity(&self, req: EndpointRequest) -> Result<()> {
        if !self.cfg.process_external_connectivity {
            return Ok(());
        }
        let exposed = exposed_ports(&req.options);
        if exposed.is_empty() {
            return Ok(());
        }
        let ranges = port_ranges(&exposed)?;
        let _g = self.locks.lock(&format!("ep:{}", req.endpoint_id)).await;
        let Some(mut info) = self
            .endpoint_info(&req.network_id, &req.endpoint_id)
            .await?
        else {
            return Ok(());
        };
        let port_id = info.port.id.clone();
        self.background.settle(&port_id).await;
        info.no_exposed_group = false;
        self.cache.endpoints.put(req.endpoint_id.to_string(), info);
        let name = names::exposed_sg_name(&port_id);
        let existing: Vec<SecurityGroup> = self
            .neutron
            .list(&Filters::new().add("name", &name))
            .await?;
        // A group already there is finished rather than trusted: a call killed half-way
        // (kuryr restarted, Docker resends) left it without all its rules or off the port.
        let (sg, made) = match existing.into_iter().next() {
            Some(sg) => (sg, false),
            None => {
                let sg: SecurityGroup = self
                    .neutron
                    .create(NewSecurityGroup {
                        name,
                        description: names::SG_DESCRIPTION.to_string(),
                    })
                    .await?;
                (sg, true)
            }
        };
        crate::kill_point!("ProgramExternalConnectivity.after_group");
        let result = self.complete_exposed_group(&sg, &ranges, &port_id).await;
        if let Err(e) = result {
            if !made {
                return Err(e);
            }
            let undone =
                crate::deadline::undo(self.neutron.delete_if_exists::<SecurityGroup>(&sg.id)).await;
            return Err(match undone {
                Ok(()) => e,
                Err(u) => e.rolled_back_with(vec![u.into()]),
            });
        }
        Ok(())
    }

    /// Gives the exposed-ports group the rules it lacks and puts it on the port if it is
    /// not there yet.
    async fn complete_exposed_group(
        &self,
        sg: &SecurityGroup,
        ranges: &[(&'static str, u16, u16)],
        port_id: &str,
    ) -> Result<()> {
        for (proto, lo, hi) in ranges {
            let (lo, hi) = if *proto == "icmp" {
                (None, None)
            } else {
                (Some(*lo), Some(*hi))
            };
            for ethertype in ["IPv4", "IPv6"] {
                let present = sg.security_group_rules.iter().any(|r| {
                    r.direction == "ingress"
                        && r.protocol.as_deref() == Some(*proto)
                        && r.ethertype.as_deref() == Some(ethertype)
                        && r.port_range_min == lo
                        && r.port_range_max == hi
                });
                if present {
                    continue;
                }
                let range = lo.zip(hi);
                let rule = NewSecurityGroupRule {
                    security_group_id: sg.id.clone(),
                    direction: "ingress",
                    protocol: proto.to_string(),
                    ethertype,
                    port_range_min: range.map(|(lo, _)| lo),
                    port_range_max: range.map(|(_, hi)| hi),
                };
                self.neutron.create::<SecurityGroupRule>(rule).await?;
            }
        }
        let port: Port = self.neutron.get(port_id).await?;
        if port.security_groups.contains(&sg.id) {
            return Ok(());
        }
        let mut groups = vec![sg.id.clone()];
        groups.extend(port.security_groups);
        self.neutron
            .update::<Port>(port_id, PortBody::groups(groups))
            .await?;
        Ok(())
    }

    pub async fn revoke_external_connectivity(&self, req: EndpointRequest) -> Result<()> {
        if !self.cfg.process_external_connectivity {
            return Ok(());
        }
        let _g = self.locks.lock(&format!("ep:{}", req.endpoint_id)).await;
        let Some(info) = self
            .endpoint_info(&req.network_id, &req.endpoint_id)
            .await?
        else {
            return Ok(());
        };
        if info.no_exposed_group {
            return Ok(());
        }
        self.background.settle(&info.port.id).await;
        self.take_off_exposed_group(&info.port.id).await?;
        // DeleteEndpoint, next, need not look again.
        self.cache
            .endpoints
            .update(&req.endpoint_id.to_string(), |v| v.no_exposed_group = true);
        Ok(())
    }

    /// Takes the port's exposed-ports group (if any) off the port and deletes it. Run by
    /// RevokeExternalConnectivity and again by DeleteEndpoint: a Revoke that was never
    /// sent (Docker's rollback of a failed start) or cut short by a crash leaves no group.
    pub(super) async fn take_off_exposed_group(&self, port_id: &str) -> Result<()> {
        let groups: Vec<SecurityGroup> = self
            .neutron
            .list(&Filters::new().add("name", names::exposed_sg_name(port_id)))
            .await?;
        if groups.is_empty() {
            return Ok(());
        }
        match self.neutron.get::<Port>(port_id).await {
            Ok(port) => {
                let keep: Vec<String> = port
                    .security_groups
                    .iter()
                    .filter(|g| !groups.iter().any(|s| &s.id == *g))
                    .cloned()
                    .collect();
                if keep.len() != port.security_groups.len() {
                    self.neutron
                        .update::<Port>(port_id, PortBody::groups(keep))
                        .await?;
                    crate::kill_point!("RevokeExternalConnectivity.after_port");
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        for g in groups {
            self.neutron
                .delete_if_exists::<SecurityGroup>(&g.id)
                .await?;
        }
        Ok(())
    }
}

/// Exposed ports grouped by protocol into contiguous ranges: `(proto, min, max)`.
pub(crate) fn port_ranges(exposed: &[ExposedPort]) -> Result<Vec<(&'static str, u16, u16)>> {
    let mut by_proto: BTreeMap<&'static str, Vec<u16>> = BTreeMap::new();
    for e in exposed {
        let proto = match e.proto {
            6 => "tcp",
            17 => "udp",
            1 => "icmp",
            p => {
                return Err(bad(format!(
                    "exposed port protocol {p} is not supported (tcp, udp, icmp)"
                )))
            }
        };
        by_proto.entry(proto).or_default().push(e.port);
    }
    let mut out = Vec::new();
    for (proto, mut ports) in by_proto {
        ports.sort_unstable();
        ports.dedup();
        if proto == "icmp" {
            out.push((proto, 0, 0));
            continue;
        }
        let mut iter = ports.into_iter();
        let Some(first) = iter.next() else { continue };
        let (mut lo, mut hi) = (first, first);
        for p in iter {
            if hi.checked_add(1) == Some(p) {
                hi = p;
            } else {
                out.push((proto, lo, hi));
                lo = p;
                hi = p;
            }
        }
        out.push((proto, lo, hi));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_contiguous_ports() {
        let e = |proto, port| ExposedPort { proto, port };
        let r =
            port_ranges(&[e(6, 80), e(6, 81), e(6, 443), e(17, 53), e(6, 82), e(6, 80)]).unwrap();
        assert_eq!(r, vec![("tcp", 80, 82), ("tcp", 443, 443), ("udp", 53, 53)]);
        assert!(port_ranges(&[e(132, 1)]).is_err());
        assert_eq!(
            port_ranges(&[e(6, 65535)]).unwrap(),
            vec![("tcp", 65535, 65535)]
        );
    }
}
