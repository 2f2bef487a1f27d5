//! IpamDriver, address half: RequestAddress (a port bound ahead from the pool or made,
//! an address asked for by `--ip`, the gateway's) and ReleaseAddress (the port deleted,
//! given back to the pool, or an adopted one given back as it was found).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::cache::SubnetPoolInfo;
use super::ipam::{first_host, IPAM_NET_PREFIX, IPAM_SUBNET_PREFIX};
use super::{bad, kuryr_made, Driver, DriverError, Result};
use crate::names;
use crate::neutron::{
    Filters, FixedIpAsk, Network, NetworkBody, NewPort, NewSubnet, Port, PortBody, PortId, Subnet,
    SubnetPool,
};
use crate::protocol::{validate, *};

impl Driver {
    pub async fn request_address(
        &self,
        req: RequestAddressRequest,
    ) -> Result<RequestAddressResponse> {
        let requested = if req.address.is_empty() {
            None
        } else {
            Some(validate::ip_maybe_cidr("Address", &req.address)?.0)
        };
        let mac = match req.options.get(MAC_ADDRESS_OPTION) {
            Some(m) if !m.is_empty() => Some(validate::mac(MAC_ADDRESS_OPTION, m)?),
            _ => None,
        };
        let gateway =
            req.options.get(REQUEST_ADDRESS_TYPE).map(String::as_str) == Some(GATEWAY_ADDRESS_TYPE);
        let subnet = self.pool_subnet(&req.pool_id).await?;

        if gateway {
            return self.gateway_address(&req.pool_id, subnet, requested).await;
        }
        let subnet = match subnet {
            Some(s) => s,
            None => {
                // Check the address against the pool before the holding subnet is made:
                // a refused request changes nothing in Neutron.
                if let Some(ip) = requested {
                    self.check_in_pool(&req.pool_id, ip).await?;
                }
                self.ipam_subnet(&req.pool_id).await?
            }
        };
        let net: IpNet = subnet.cidr;
        if let Some(ip) = requested {
            if !net.contains(&ip) {
                return Err(bad(format!("Address {ip} is not in pool {}", subnet.cidr)));
            }
        }
        // A MAC in the request (a client that sends one; Docker does not, as kuryr asks
        // for none) is honoured the old way: an unbound port with that MAC, which a retry
        // finds again by it.
        let port = match (requested, &mac) {
            (Some(ip), _) => self.reserve(&subnet, Some(ip), mac.as_deref()).await?,
            (None, Some(m)) => self.reserve(&subnet, None, Some(m)).await?,
            (None, None) => match self.take_companion(&subnet) {
                Some(p) => p,
                None if self.binds_ahead(&subnet) => self.bound_port(&subnet).await?,
                None => self.reserve(&subnet, None, None).await?,
            },
        };
        self.set_companion(&subnet, &port);
        self.grant(&port.id);
        let ip = port
            .fixed_ips
            .iter()
            .find(|f| f.subnet_id == subnet.id)
            .map(|f| f.ip_address)
            .ok_or_else(|| {
                DriverError::Internal(format!(
                    "port {} has no IP on subnet {}",
                    port.id, subnet.id
                ))
            })?;
        self.cache
            .addresses
            .put((subnet.id.clone(), ip.to_string()), port);
        Ok(RequestAddressResponse {
            address: format!("{ip}/{}", net.prefix_len()),
            data: BTreeMap::new(),
        })
    }

    /// Whether a container address of this subnet is a port bound to this host ahead of
    /// CreateEndpoint: on kuryr's own networks, for veth endpoints (nested ports are never
    /// bound; an SR-IOV port is made by its user and adopted with `--ip`).
    fn binds_ahead(&self, subnet: &Subnet) -> bool {
        super::port_pool::eligible(subnet) && self.nested().is_none()
    }

    /// A port bound to this host with an address on each kuryr subnet of the network:
    /// from the pool (no request), else created bound (one request).
    async fn bound_port(&self, subnet: &Subnet) -> Result<Port> {
        let (subnets, groups) = self.kuryr_subnets(subnet).await?;
        let ask = super::port_pool::PoolAsk {
            subnets: &subnets,
            groups: &groups,
        };
        if self.port_pool.enabled() {
            let pooled = self.port_pool.take(&self.neutron, ask).await;
            // Keep the pool topped up, off this call's path.
            self.port_pool.refill(&self.neutron, ask);
            if let Some(p) = pooled {
                return Ok(p);
            }
        }
        let body = self
            .port_pool
            .bound_body(names::UNBOUND_PORT_NAME, &subnet.network_id, ask);
        Ok(self.neutron.create(body).await?)
    }

    /// The kuryr subnets of the subnet's network, one per IP version: what a bound port
    /// gets an address on; and the network's security groups, which it gets too.
    async fn kuryr_subnets(&self, subnet: &Subnet) -> Result<(Vec<Subnet>, Vec<String>)> {
        let net = &subnet.network_id;
        let known = self
            .cache
            .networks
            .find(|ni| ni.neutron_id == *net)
            .map(|ni| (ni.subnets, ni.security_groups));
        let (all, groups) = match known {
            Some(s) => s,
            None => match self.cache.network_subnets.get(net) {
                Some(s) => s,
                None => {
                    let filters = Filters::new().add("network_id", net);
                    let (s, n) = tokio::try_join!(
                        self.neutron.list::<Subnet>(&filters),
                        self.neutron.get::<Network>(net),
                    )?;
                    let found = (s, names::sgs_from_tags(&n.tags));
                    self.cache.network_subnets.put(net.clone(), found.clone());
                    found
                }
            },
        };
        // The asked subnet first, then one more of the other family.
        let mut out = vec![subnet.clone()];
        for s in all {
            if super::port_pool::eligible(&s)
                && !out
                    .iter()
                    .any(|o| o.cidr.addr().is_ipv4() == s.cidr.addr().is_ipv4())
            {
                out.push(s);
            }
        }
        Ok((out, groups))
    }

    /// The port handed out for the other family of the endpoint being set up, if it holds
    /// an address on this subnet.
    fn take_companion(&self, subnet: &Subnet) -> Option<Port> {
        let mut m = self.companion.lock().ok()?;
        let holds = m
            .get(&subnet.network_id)
            .is_some_and(|p| p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id));
        holds.then(|| m.remove(&subnet.network_id)).flatten()
    }

    /// Remembers a port that holds addresses of other subnets too, for the endpoint's
    /// second RequestAddress.
    fn set_companion(&self, subnet: &Subnet, port: &Port) {
        let Ok(mut m) = self.companion.lock() else {
            return;
        };
        if port.fixed_ips.iter().any(|f| f.subnet_id != subnet.id) {
            m.insert(subnet.network_id.clone(), port.clone());
        } else {
            m.remove(&subnet.network_id);
        }
    }

    /// Gateway requests reserve nothing: the gateway belongs to the subnet.
    async fn gateway_address(
        &self,
        pool_id: &str,
        subnet: Option<Subnet>,
        requested: Option<IpAddr>,
    ) -> Result<RequestAddressResponse> {
        let address = match subnet {
            Some(s) => {
                let len = s.cidr.prefix_len();
                match (requested, s.gateway_ip) {
                    (Some(ip), Some(gw)) if gw == ip => format!("{ip}/{len}"),
                    (Some(ip), Some(gw)) => {
                        return Err(DriverError::Conflict(format!(
                            "Requested gateway {ip} does not match with gateway {gw} in existed network."
                        )))
                    }
                    (Some(ip), None) => format!("{ip}/{len}"),
                    (None, Some(gw)) => format!("{gw}/{len}"),
                    (None, None) => {
                        if s.ip_version == 6 { "::/0".into() } else { "0.0.0.0/0".into() }
                    }
                }
            }
            None => {
                let cidr = self.pool_cidr(pool_id).await?.ok_or_else(|| {
                    DriverError::NotFound(format!("subnetpool {pool_id} does not exist"))
                })?;
                let net: IpNet = cidr.parse().map_err(|_| {
                    DriverError::Internal(format!("pool {pool_id} has prefix {cidr:?}"))
                })?;
                let ip = match requested {
                    Some(ip) if net.contains(&ip) => ip,
                    Some(ip) => return Err(bad(format!("gateway {ip} is not in pool {cidr}"))),
                    // Neutron's own default: the first host address.
                    None => first_host(&net)
                        .ok_or_else(|| bad(format!("pool {cidr} has no host address")))?,
                };
                if let Some(mut p) = self.cache.subnetpools.get(&pool_id.to_string()) {
                    p.gateway = Some(ip.to_string());
                    self.cache.subnetpools.put(pool_id.to_string(), p);
                }
                format!("{ip}/{}", net.prefix_len())
            }
        };
        Ok(RequestAddressResponse {
            address,
            data: BTreeMap::new(),
        })
    }

    /// kuryr IPAM under another network driver (e.g. Docker's bridge): the pool has no
    /// subnet because kuryr's CreateNetwork never ran. Make a network and subnet that only
    /// hold the reservations; they go away with the pool.
    async fn check_in_pool(&self, pool_id: &str, ip: IpAddr) -> Result<()> {
        let Some(cidr) = self.pool_cidr(pool_id).await? else {
            return Err(DriverError::NotFound(format!(
                "Subnet with pool {pool_id} does not exist."
            )));
        };
        match cidr.parse::<IpNet>() {
            Ok(net) if !net.contains(&ip) => {
                Err(bad(format!("Address {ip} is not in pool {cidr}")))
            }
            _ => Ok(()),
        }
    }

    async fn ipam_subnet(&self, pool_id: &str) -> Result<Subnet> {
        let _g = self.locks.lock(&format!("ipam-subnet:{pool_id}")).await;
        if let Some(SubnetPoolInfo {
            subnet: Some(s), ..
        }) = self.cache.subnetpools.get(&pool_id.to_string())
        {
            return Ok(s);
        }
        let cidr = self.pool_cidr(pool_id).await?.ok_or_else(|| {
            DriverError::NotFound(format!("Subnet with pool {pool_id} does not exist."))
        })?;
        let net_cidr: IpNet = cidr
            .parse()
            .map_err(|_| DriverError::Internal(format!("pool {pool_id} has prefix {cidr:?}")))?;
        if let Some(s) = self.named_subnet(pool_id, &net_cidr).await? {
            return Ok(s);
        }
        let gateway = self
            .cache
            .subnetpools
            .get(&pool_id.to_string())
            .and_then(|p| p.gateway)
            .or_else(|| first_host(&net_cidr).map(|i| i.to_string()));
        let net: Network = self
            .neutron
            .create(NetworkBody::named(format!("{IPAM_NET_PREFIX}{cidr}")))
            .await?;
        let subnet = self
            .neutron
            .create::<Subnet>(NewSubnet {
                name: format!("{IPAM_SUBNET_PREFIX}{cidr}"),
                network_id: net.id.clone(),
                ip_version: if net_cidr.addr().is_ipv6() { 6 } else { 4 },
                cidr: Some(cidr.to_string()),
                subnetpool_id: Some(pool_id.into()),
                gateway_ip: gateway,
                enable_dhcp: Some(false),
                ..NewSubnet::default()
            })
            .await;
        let subnet = match subnet {
            Ok(s) => s,
            Err(e) => {
                let undone =
                    crate::deadline::undo(self.neutron.delete_if_exists::<Network>(&net.id)).await;
                return Err(match undone {
                    Ok(()) => e.into(),
                    Err(u) => DriverError::from(e).rolled_back_with(vec![u.into()]),
                });
            }
        };
        self.cache_pool_subnet(pool_id, &subnet);
        Ok(subnet)
    }

    /// The user's subnet that RequestPool named (`--ipam-opt neutron.subnet.uuid`; the
    /// pool carries its id), tagged now for the pool as CreateNetwork would: a swarm
    /// manager's reservations go straight onto the user's network, which the nodes'
    /// CreateNetwork then adopts. None when the pool names no subnet.
    async fn named_subnet(&self, pool_id: &str, cidr: &IpNet) -> Result<Option<Subnet>> {
        let pool: SubnetPool = match self.neutron.get(pool_id).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(sid) = pool
            .tags
            .iter()
            .find(|t| NeutronId::parse("tag", t).is_ok())
        else {
            return Ok(None);
        };
        let s: Subnet = match self.neutron.get(sid).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => {
                return Err(DriverError::NotFound(format!(
                    "subnet {sid}, which pool {pool_id} was asked for, no longer exists"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        if s.cidr.trunc() != cidr.trunc() {
            return Err(bad(format!(
                "subnet {sid} is {}, not the pool's {cidr}",
                s.cidr
            )));
        }
        if !s.tags.iter().any(|t| t == pool_id) {
            self.neutron.add_tag::<Subnet>(&s.id, pool_id).await?;
        }
        self.cache_pool_subnet(pool_id, &s);
        Ok(Some(s))
    }

    /// Finds a free port holding the address (adopting it) or creates one.
    async fn reserve(
        &self,
        subnet: &Subnet,
        ip: Option<IpAddr>,
        mac: Option<&str>,
    ) -> Result<Port> {
        if let Some(ip) = ip {
            let ports: Vec<Port> = self
                .neutron
                .list(
                    &Filters::new()
                        .add("fixed_ips", format!("subnet_id={}", subnet.id))
                        .add("fixed_ips", format!("ip_address={ip}")),
                )
                .await?;
            if let Some(p) = ports.into_iter().next() {
                return self.adopt(p).await;
            }
        }
        let body = NewPort {
            network_id: subnet.network_id.clone(),
            port: PortBody {
                name: Some(names::UNBOUND_PORT_NAME.to_string()),
                admin_state_up: Some(true),
                fixed_ips: Some(vec![FixedIpAsk {
                    subnet_id: subnet.id.clone(),
                    ip_address: ip,
                }]),
                mac_address: mac.map(str::to_string),
                ..PortBody::default()
            },
        };
        match self.neutron.create::<Port>(&body).await {
            Ok(p) => Ok(p),
            // A pre-created port carries this MAC (`docker run --mac-address`): adopt it.
            Err(e) if e.is_conflict() && mac.is_some() => {
                let ports: Vec<Port> = self
                    .neutron
                    .list(
                        &Filters::new()
                            .add("network_id", &subnet.network_id)
                            .add("mac_address", mac.unwrap_or_default()),
                    )
                    .await?;
                match ports.into_iter().next() {
                    // Dual stack: Docker asks for the second family with the same MAC.
                    // kuryr's port for the first family takes this address too, so the
                    // endpoint ends up with one port, as Neutron models it.
                    Some(p)
                        if kuryr_made(&p)
                            && !p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id) =>
                    {
                        let mut fixed_ips: Vec<FixedIpAsk> = p
                            .fixed_ips
                            .iter()
                            .map(|f| FixedIpAsk {
                                subnet_id: f.subnet_id.clone(),
                                ip_address: Some(f.ip_address),
                            })
                            .collect();
                        fixed_ips.extend(body.port.fixed_ips.unwrap_or_default());
                        let update = PortBody {
                            fixed_ips: Some(fixed_ips),
                            ..PortBody::default()
                        };
                        Ok(self.neutron.update::<Port>(&p.id, update).await?)
                    }
                    Some(p) => self.adopt(p).await,
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes over a user's pre-created port, refusing one that serves something else.
    async fn adopt(&self, mut p: Port) -> Result<Port> {
        let ours = kuryr_made(&p) || p.device_owner == names::DEVICE_OWNER;
        if !ours && (!p.device_id.is_empty() || !p.device_owner.is_empty()) {
            return Err(DriverError::Conflict(format!(
                "address is held by port {} (device_owner {:?}, device_id {:?}), which kuryr will not take over",
                p.id, p.device_owner, p.device_id
            )));
        }
        if !ours && !p.tags.iter().any(|t| t == names::TAG_PORT_EXISTING) {
            self.neutron
                .add_tag::<Port>(&p.id, names::TAG_PORT_EXISTING)
                .await?;
            p.tags.push(names::TAG_PORT_EXISTING.to_string());
        }
        Ok(p)
    }

    pub async fn release_address(&self, req: ReleaseAddressRequest) -> Result<()> {
        let ip = validate::ip_maybe_cidr("Address", &req.address)?
            .0
            .to_string();
        let subnet = match self.pool_subnet(&req.pool_id).await? {
            Some(s) => s,
            None => return Ok(()),
        };
        let key = (subnet.id.clone(), ip.clone());
        let ports = match self.cache.addresses.remove(&key) {
            Some(p) => vec![p],
            None => {
                self.neutron
                    .list::<Port>(
                        &Filters::new()
                            .add("fixed_ips", format!("subnet_id={}", subnet.id))
                            .add("fixed_ips", format!("ip_address={ip}")),
                    )
                    .await?
            }
        };
        for p in ports {
            // The address was handed out again since (dockerd's restart, `--ip`): this is
            // the release of the grant before, and the port stays with the later one.
            if self.ungrant(&p.id) {
                tracing::info!(port = %p.id, "ReleaseAddress: the address was handed out again since; kept");
                self.cache.addresses.put(key.clone(), p);
                continue;
            }
            self.release_port(&p, true).await?;
        }
        Ok(())
    }

    /// One more RequestAddress handed this port out.
    fn grant(&self, port_id: &str) {
        if let Ok(mut g) = self.grants.lock() {
            *g.entry(PortId::from(port_id)).or_default() += 1;
        }
    }

    /// One grant of the port released: whether another one still holds it. A port this
    /// process never handed out (a restart since) has none: its release is the last word.
    fn ungrant(&self, port_id: &str) -> bool {
        let Ok(mut g) = self.grants.lock() else {
            return false;
        };
        match g.get_mut(port_id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            _ => {
                g.remove(port_id);
                false
            }
        }
    }

    /// When Docker removes a network no endpoint of this host is left on it: ports kuryr
    /// made that are still there (a reservation whose call was lost in a crash, a delete
    /// that failed) are deleted, adopted ones given back. Ports bound to other hosts are
    /// theirs and left alone.
    pub(crate) async fn sweep_ports(&self, filters: Filters) {
        let ports: Vec<Port> = match self.neutron.list(&filters).await {
            Ok(p) => p,
            Err(e) => return tracing::warn!(error = %e, "cannot list ports to sweep"),
        };
        for p in ports {
            let mine = p.host_id.is_empty() || p.host_id == self.cfg.host;
            let ours = kuryr_made(&p) || p.tags.iter().any(|t| t == names::TAG_PORT_EXISTING);
            if mine && ours && !p.device_owner.starts_with("network:") {
                tracing::info!(port = %p.id, "removing a port left on a network Docker removes");
                if let Err(e) = self.release_port(&p, false).await {
                    tracing::warn!(port = %p.id, error = %e, "cannot remove left-over port");
                }
            }
        }
    }

    /// Deletes a port kuryr made (or, `recycle` with the pool on, gives it back to the pool
    /// off the caller's path); gives an adopted one back as it was found.
    pub(crate) async fn release_port(&self, p: &Port, recycle: bool) -> Result<()> {
        if let Ok(mut g) = self.grants.lock() {
            g.remove(&p.id);
        }
        self.background.settle(&p.id).await;
        // Docker does not call DeleteEndpoint for an endpoint whose CreateEndpoint failed
        // (e.g. kuryr crashed after plugging it): the address release is the last word,
        // so a veth of this port still on this host goes now.
        if p.host_id.is_empty() || p.host_id == self.cfg.host {
            for ifname in [names::host_veth(&p.id), names::container_veth(&p.id)] {
                if let Err(e) = self.plumber.delete_link(&ifname).await {
                    tracing::warn!(%ifname, error = %e, "cannot delete a left-over veth");
                }
            }
        }
        if p.tags.iter().any(|t| t == names::TAG_PORT_EXISTING) {
            let mut body = PortBody {
                device_owner: Some(String::new()),
                host_id: Some(String::new()),
                ..PortBody::default()
            };
            if p.device_id.is_empty()
                || p.name.starts_with(&p.device_id)
                || p.device_owner == names::DEVICE_OWNER
            {
                body.device_id = Some(String::new());
            }
            match self.neutron.update::<Port>(&p.id, body).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let keep: Vec<String> = p
                .tags
                .iter()
                .filter(|t| {
                    *t != names::TAG_PORT_EXISTING
                        && !t.starts_with(names::TAG_LOW)
                        && !t.starts_with(names::TAG_HIGH)
                })
                .cloned()
                .collect();
            self.neutron.replace_tags::<Port>(&p.id, &keep).await?;
        } else if kuryr_made(p) {
            let bound_here = p.host_id == self.cfg.host && p.vif_type.is_bound();
            // Its endpoint's bookkeeping never reached Neutron: it is as it was made.
            let as_made = self.unwritten.lock().ok().and_then(|mut m| m.remove(&p.id));
            if recycle && self.port_pool.enabled() && bound_here && self.nested().is_none() {
                let (pool, neutron) = (self.port_pool.clone(), self.neutron.clone());
                let port = as_made.unwrap_or_else(|| p.clone());
                self.background.spawn(&p.id, async move {
                    pool.give_back(&neutron, port).await;
                });
            } else {
                self.neutron.delete_if_exists::<Port>(&p.id).await?;
            }
        } else {
            tracing::debug!(port = %p.id, "address held by a port kuryr does not own; left alone");
        }
        Ok(())
    }
}
