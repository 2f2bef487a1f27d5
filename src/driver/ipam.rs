//! IpamDriver: Docker pools are Neutron subnetpools, Docker addresses are Neutron ports.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Value};

use super::cache::SubnetPoolInfo;
use super::{bad, kuryr_made, Driver, DriverError, Result};
use crate::names;
use crate::neutron::{Filters, Network, Port, Subnet, SubnetPool};
use crate::protocol::{validate, NeutronId, *};

/// Name prefix of subnets made on demand when kuryr's IPAM serves another network driver.
pub(crate) const IPAM_SUBNET_PREFIX: &str = "kuryr-ipam-subnet-";
pub(crate) const IPAM_NET_PREFIX: &str = "kuryr-ipam-net-";

impl Driver {
    fn option<'a>(opts: &'a BTreeMap<String, String>, v6: bool, key: &str) -> Option<&'a str> {
        let full = if v6 {
            format!(
                "neutron.{}.v6.{}",
                key.split('.').next().unwrap_or(key),
                key.split('.').nth(1).unwrap_or("")
            )
        } else {
            format!("neutron.{key}")
        };
        opts.get(&full)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub async fn request_pool(&self, req: RequestPoolRequest) -> Result<RequestPoolResponse> {
        if req.pool.is_empty() && !req.sub_pool.is_empty() {
            return Err(bad("SubPool given without Pool"));
        }
        let shared = match req.options.get("neutron.net.shared") {
            None => false,
            Some(v) => crate::config::parse_bool(v)
                .ok_or_else(|| bad(format!("neutron.net.shared {v:?} is not a boolean")))?,
        };
        if req.pool.is_empty() {
            return self.default_pool(req.v6).await;
        }
        let cidr_net = requested_cidr(&req)?;
        let cidr = cidr_net.to_string();
        let opts = &req.options;
        // An existing subnet named by option: the kuryr pool is tagged with its id.
        let subnet_id = match (
            Self::option(opts, req.v6, "subnet.uuid"),
            Self::option(opts, req.v6, "subnet.name"),
        ) {
            (Some(id), _) => Some(NeutronId::parse("neutron.subnet.uuid", id)?.to_string()),
            (None, Some(name)) => Some(self.subnet_by_name(name).await?.id),
            (None, None) => None,
        };
        if let Some(pool) = self.named_pool(opts, req.v6, &cidr, shared).await? {
            return Ok(pool);
        }
        self.kuryr_pool(cidr_net, shared, subnet_id).await
    }

    /// A pool named by option, used when its first prefix is the requested CIDR (it is
    /// tagged `existing` only then, so a refused one is left as it was).
    async fn named_pool(
        &self,
        opts: &BTreeMap<String, String>,
        v6: bool,
        cidr: &str,
        shared: bool,
    ) -> Result<Option<RequestPoolResponse>> {
        let pool = match (
            Self::option(opts, v6, "pool.uuid"),
            Self::option(opts, v6, "pool.name"),
        ) {
            (Some(id), _) => {
                NeutronId::parse("neutron.pool.uuid", id)?;
                self.pool_by(Filters::new().add("id", id), id).await?
            }
            (None, Some(name)) => self.pool_by(Filters::new().add("name", name), name).await?,
            (None, None) => return Ok(None),
        };
        let first = pool.prefixes.first().cloned().unwrap_or_default();
        if !same_cidr(&first, cidr) {
            tracing::info!(pool = %pool.id, %first, %cidr, "named pool's prefix differs; using a kuryr pool");
            return Ok(None);
        }
        if pool.shared != shared {
            return Err(DriverError::Conflict(format!(
                "subnetpool {} has shared={} but neutron.net.shared={shared} was asked",
                pool.id, pool.shared
            )));
        }
        if !pool.tags.iter().any(|t| t == names::TAG_POOL_EXISTING) {
            self.neutron
                .add_tag::<SubnetPool>(&pool.id, names::TAG_POOL_EXISTING)
                .await?;
        }
        self.remember_pool(&pool.id, cidr);
        Ok(Some(pool_response(pool.id, cidr.to_string())))
    }

    /// kuryr's own pool of the CIDR (`kuryrPool-<cidr>`): found, or made.
    async fn kuryr_pool(
        &self,
        cidr_net: IpNet,
        shared: bool,
        subnet_id: Option<String>,
    ) -> Result<RequestPoolResponse> {
        let cidr = cidr_net.to_string();
        let name = names::subnetpool_name(&self.cfg.subnetpool_name_prefix, &cidr);
        let _g = self.locks.lock(&format!("pool:{name}")).await;
        if subnet_id.is_none() {
            if let Some(id) = self.cache.subnetpool_names.get(&name) {
                if self.cache.subnetpools.get(&id).is_some() {
                    return Ok(pool_response(id, cidr));
                }
            }
        }
        let mut filters = Filters::new().add("name", &name);
        if let Some(s) = &subnet_id {
            filters = filters.tags(&[s]);
        }
        let mut found: Vec<SubnetPool> = self.neutron.list(&filters).await?;
        // Another host may have raced us to create it: converge on the oldest (smallest id
        // is as good as any stable choice) instead of failing every later lookup.
        found.sort_by(|a, b| a.id.cmp(&b.id));
        let pool = match found.into_iter().next() {
            Some(p) => p,
            None => {
                let p: SubnetPool = self
                    .neutron
                    .create(json!({
                        "name": name,
                        "prefixes": [cidr],
                        "default_prefixlen": cidr_net.prefix_len(),
                        "shared": shared,
                    }))
                    .await?;
                if let Some(s) = &subnet_id {
                    self.neutron.add_tag::<SubnetPool>(&p.id, s).await?;
                }
                p
            }
        };
        self.cache.subnetpool_names.put(name, pool.id.clone());
        self.remember_pool(&pool.id, &cidr);
        Ok(pool_response(pool.id, cidr))
    }

    /// No Pool in the request: the default subnetpool of the family, whole first prefix.
    async fn default_pool(&self, v6: bool) -> Result<RequestPoolResponse> {
        let name = if v6 {
            &self.cfg.neutron.default_subnetpool_v6
        } else {
            &self.cfg.neutron.default_subnetpool_v4
        };
        let pools: Vec<SubnetPool> = self.neutron.list(&Filters::new().add("name", name)).await?;
        let pool = match pools.len() {
            0 => {
                return Err(DriverError::NotFound(format!(
                    "no subnetpool named {name:?} in Neutron: create it (openstack subnet pool create --pool-prefix <cidr> {name}) or pass --subnet"
                )))
            }
            1 => pools.into_iter().next(),
            n => return Err(DriverError::Conflict(format!("{n} subnetpools are named {name:?}"))),
        };
        let pool = pool.ok_or_else(|| DriverError::Internal("pool list changed".into()))?;
        let cidr = pool.prefixes.first().cloned().ok_or_else(|| {
            DriverError::Internal(format!("subnetpool {} has no prefix", pool.id))
        })?;
        self.remember_pool(&pool.id, &cidr);
        Ok(pool_response(pool.id, cidr))
    }

    fn remember_pool(&self, id: &str, cidr: &str) {
        if self.cache.subnetpools.get(&id.to_string()).is_none() {
            self.cache.subnetpools.put(
                id.to_string(),
                SubnetPoolInfo {
                    cidr: cidr.to_string(),
                    subnet: None,
                    gateway: None,
                },
            );
        }
    }

    async fn subnet_by_name(&self, name: &str) -> Result<Subnet> {
        let mut subnets: Vec<Subnet> = self.neutron.list(&Filters::new().add("name", name)).await?;
        match subnets.len() {
            0 => Err(DriverError::NotFound(format!(
                "subnet {name:?} does not exist"
            ))),
            1 => Ok(subnets.remove(0)),
            n => Err(DriverError::Conflict(format!(
                "{n} subnets are named {name:?}"
            ))),
        }
    }

    async fn pool_by(&self, filters: Filters, what: &str) -> Result<SubnetPool> {
        let mut pools: Vec<SubnetPool> = self.neutron.list(&filters).await?;
        match pools.len() {
            0 => Err(DriverError::NotFound(format!(
                "Specified subnetpool {what} does not exist."
            ))),
            1 => Ok(pools.remove(0)),
            n => Err(DriverError::Conflict(format!(
                "{n} subnetpools match {what}"
            ))),
        }
    }

    /// The pool's CIDR: cache, else Neutron (first prefix).
    async fn pool_cidr(&self, pool_id: &str) -> Result<Option<String>> {
        if let Some(p) = self.cache.subnetpools.get(&pool_id.to_string()) {
            return Ok(Some(p.cidr));
        }
        match self.neutron.get::<SubnetPool>(pool_id).await {
            Ok(p) => {
                let cidr = p.prefixes.first().cloned();
                if let Some(c) = &cidr {
                    self.remember_pool(pool_id, c);
                }
                Ok(cidr)
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The Neutron subnet that holds a pool's addresses, if it exists yet.
    pub(crate) async fn pool_subnet(&self, pool_id: &str) -> Result<Option<Subnet>> {
        if let Some(SubnetPoolInfo {
            subnet: Some(s), ..
        }) = self.cache.subnetpools.get(&pool_id.to_string())
        {
            return Ok(Some(s));
        }
        let subnets: Vec<Subnet> = self
            .neutron
            .list(&Filters::new().add("subnetpool_id", pool_id))
            .await?;
        let subnet = if subnets.len() <= 1 {
            subnets.into_iter().next()
        } else {
            let cidr = self.pool_cidr(pool_id).await?;
            subnets.into_iter().find(|s| {
                cidr.as_deref()
                    .is_some_and(|c| same_cidr(c, &s.cidr.to_string()))
            })
        };
        let subnet = match subnet {
            Some(s) => Some(s),
            None => {
                // A subnet adopted by CreateNetwork keeps its own pool: it carries our tag.
                let tagged: Vec<Subnet> =
                    self.neutron.list(&Filters::new().tags(&[pool_id])).await?;
                tagged.into_iter().next()
            }
        };
        if let Some(s) = &subnet {
            self.cache_pool_subnet(pool_id, s);
        }
        Ok(subnet)
    }

    pub(crate) fn cache_pool_subnet(&self, pool_id: &str, s: &Subnet) {
        let mut info = self
            .cache
            .subnetpools
            .get(&pool_id.to_string())
            .unwrap_or(SubnetPoolInfo {
                cidr: s.cidr.to_string(),
                subnet: None,
                gateway: None,
            });
        info.subnet = Some(s.clone());
        self.cache.subnetpools.put(pool_id.to_string(), info);
    }

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
        let subnets = self.kuryr_subnets(subnet).await?;
        if self.port_pool.enabled() {
            let pooled = self.port_pool.take(&self.neutron, &subnets).await;
            // Keep the pool topped up, off this call's path.
            self.port_pool.refill(&self.neutron, &subnets);
            if let Some(p) = pooled {
                return Ok(p);
            }
        }
        let body =
            self.port_pool
                .bound_body(names::UNBOUND_PORT_NAME, &subnet.network_id, &subnets);
        Ok(self.neutron.create(body).await?)
    }

    /// The kuryr subnets of the subnet's network, one per IP version: what a bound port
    /// gets an address on.
    async fn kuryr_subnets(&self, subnet: &Subnet) -> Result<Vec<Subnet>> {
        let net = &subnet.network_id;
        let known = self
            .cache
            .networks
            .find(|ni| ni.neutron_id == *net)
            .map(|ni| ni.subnets);
        let all = match known {
            Some(s) => s,
            None => match self.cache.network_subnets.get(net) {
                Some(s) => s,
                None => {
                    let s: Vec<Subnet> = self
                        .neutron
                        .list(&Filters::new().add("network_id", net))
                        .await?;
                    self.cache.network_subnets.put(net.clone(), s.clone());
                    s
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
        Ok(out)
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
        let gateway = self
            .cache
            .subnetpools
            .get(&pool_id.to_string())
            .and_then(|p| p.gateway)
            .or_else(|| first_host(&net_cidr).map(|i| i.to_string()));
        let net: Network = self
            .neutron
            .create(json!({"name": format!("{IPAM_NET_PREFIX}{cidr}"), "admin_state_up": true}))
            .await?;
        let subnet = self
            .neutron
            .create::<Subnet>(json!({
                "name": format!("{IPAM_SUBNET_PREFIX}{cidr}"),
                "network_id": net.id,
                "ip_version": if net_cidr.addr().is_ipv6() { 6 } else { 4 },
                "cidr": cidr,
                "subnetpool_id": pool_id,
                "gateway_ip": gateway,
                "enable_dhcp": false,
            }))
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
        let mut fixed = json!({"subnet_id": subnet.id});
        if let Some(ip) = ip {
            fixed["ip_address"] = json!(ip.to_string());
        }
        let mut body = json!({
            "name": names::UNBOUND_PORT_NAME,
            "admin_state_up": true,
            "network_id": subnet.network_id,
            "fixed_ips": [fixed.clone()],
        });
        if let Some(m) = mac {
            body["mac_address"] = json!(m);
        }
        match self.neutron.create::<Port>(body).await {
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
                        let mut fixed_ips: Vec<Value> = p
                            .fixed_ips
                            .iter()
                            .map(|f| json!({"subnet_id": f.subnet_id, "ip_address": f.ip_address}))
                            .collect();
                        fixed_ips.push(fixed);
                        Ok(self
                            .neutron
                            .update::<Port>(&p.id, json!({"fixed_ips": fixed_ips}))
                            .await?)
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

    pub async fn release_address(&self, req: ReleaseAddressRequest) -> Result<Value> {
        let ip = validate::ip_maybe_cidr("Address", &req.address)?
            .0
            .to_string();
        let subnet = match self.pool_subnet(&req.pool_id).await? {
            Some(s) => s,
            None => return Ok(json!({})),
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
            // A late release of an address a newer endpoint was given again (dockerd's
            // restart, `--ip`): the address is still in use.
            if let Some(ep) = self.endpoint_serving(&p.id, None) {
                tracing::info!(port = %p.id, endpoint = %ep, "ReleaseAddress: the address serves an endpoint; kept");
                self.cache.addresses.put(key.clone(), p);
                continue;
            }
            self.release_port(&p, true).await?;
        }
        Ok(json!({}))
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
            let mut body = json!({"device_owner": "", "binding:host_id": ""});
            if p.device_id.is_empty()
                || p.name.starts_with(&p.device_id)
                || p.device_owner == names::DEVICE_OWNER
            {
                body["device_id"] = json!("");
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

    pub async fn release_pool(&self, req: ReleasePoolRequest) -> Result<Value> {
        let pool_id = String::from(req.pool_id);
        let pool = match self.neutron.get::<SubnetPool>(&pool_id).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => {
                self.cache.subnetpools.remove(&pool_id);
                return Ok(json!({}));
            }
            Err(e) => return Err(e.into()),
        };
        // RequestPool of the same CIDR waits: it must not hand out a pool being removed.
        let _g = self.locks.lock(&format!("pool:{}", pool.name)).await;
        let subnets = self.subnets_of_pool(&pool_id).await?;
        self.cache.subnetpools.remove(&pool_id);
        self.cache.subnetpool_names.retain(|_, id| *id != pool_id);
        self.cache
            .addresses
            .retain(|(sid, _), _| !subnets.iter().any(|s| &s.id == sid));
        if pool.tags.iter().any(|t| t == names::TAG_POOL_EXISTING) {
            // A user's pool: only our tags go.
            self.neutron
                .remove_tag::<SubnetPool>(&pool_id, names::TAG_POOL_EXISTING)
                .await?;
            for s in subnets.iter().filter(|s| s.tags.contains(&pool_id)) {
                self.neutron.remove_tag::<Subnet>(&s.id, &pool_id).await?;
            }
            return Ok(json!({}));
        }
        let is_kuryr = self.is_kuryr_pool(&pool);
        let mut shared = false;
        for s in &subnets {
            shared |= !self.release_pool_subnet(s, &pool_id, is_kuryr).await?;
        }
        let is_default = pool.name == self.cfg.neutron.default_subnetpool_v4
            || pool.name == self.cfg.neutron.default_subnetpool_v6;
        if is_kuryr && !is_default && !shared {
            match self.neutron.delete_if_exists::<SubnetPool>(&pool_id).await {
                Ok(()) => {}
                Err(e) if e.is_conflict() => {
                    tracing::info!(pool = %pool_id, "subnetpool still in use; kept")
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(json!({}))
    }

    fn is_kuryr_pool(&self, pool: &SubnetPool) -> bool {
        pool.name
            .starts_with(&format!("{}-", self.cfg.subnetpool_name_prefix))
    }

    /// The subnets of a pool: from it, and adopted ones that keep their own pool (or
    /// none) and only carry its id as a tag.
    async fn subnets_of_pool(&self, pool_id: &str) -> Result<Vec<Subnet>> {
        let mut subnets: Vec<Subnet> = self
            .neutron
            .list(&Filters::new().add("subnetpool_id", pool_id))
            .await?;
        let tagged: Vec<Subnet> = self.neutron.list(&Filters::new().tags(&[pool_id])).await?;
        for s in tagged {
            if !subnets.iter().any(|x| x.id == s.id) {
                subnets.push(s);
            }
        }
        Ok(subnets)
    }

    /// ReleasePool of one subnet: what kuryr made goes, an adopted one loses the pool's
    /// tag. False when another Docker network (another host) still uses it: it stays,
    /// with its pool and its ports.
    async fn release_pool_subnet(&self, s: &Subnet, pool_id: &str, is_kuryr: bool) -> Result<bool> {
        if s.name.starts_with(names::SUBNET_NAME_PREFIX) {
            if self.subnet_used_elsewhere(s).await? {
                tracing::info!(subnet = %s.id, "still used by another Docker network (another host?): kept");
                return Ok(false);
            }
            // Pool ports, and reservations a crash left, would keep the subnet busy.
            self.port_pool.drain(&self.neutron, &s.network_id).await;
            self.sweep_ports(Filters::new().add("fixed_ips", format!("subnet_id={}", s.id)))
                .await;
        }
        if s.name.starts_with(IPAM_SUBNET_PREFIX) {
            // Made on demand for another network driver: its network goes with it.
            if let Err(e) = self
                .neutron
                .delete_if_exists::<Network>(&s.network_id)
                .await
            {
                tracing::warn!(subnet = %s.id, error = %e, "could not delete IPAM network");
            }
        } else if is_kuryr && s.name.starts_with(names::SUBNET_NAME_PREFIX) {
            if let Err(e) = self.neutron.delete_if_exists::<Subnet>(&s.id).await {
                tracing::warn!(subnet = %s.id, error = %e, "could not delete subnet (in use?)");
            }
        } else if s.tags.iter().any(|t| t == pool_id) {
            self.neutron.remove_tag::<Subnet>(&s.id, pool_id).await?;
        }
        Ok(true)
    }

    /// Whether a Docker network this host does not know of (another host's) names the
    /// subnet's Neutron network.
    async fn subnet_used_elsewhere(&self, s: &Subnet) -> Result<bool> {
        let net: Network = match self.neutron.get(&s.network_id).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        // This host's Docker networks on it, as far as this process knows them.
        let ours = self
            .cache
            .networks
            .keys_where(|ni| ni.neutron_id == s.network_id);
        Ok(names::used_by_other_docker_networks(
            &net.name, &net.tags, &ours,
        ))
    }
}

impl Driver {
    /// Deletes a kuryr-made (not default) subnet pool if nothing uses it any more.
    pub(crate) async fn delete_empty_kuryr_pool(&self, pool_id: &str) {
        let pool = match self.neutron.get::<SubnetPool>(pool_id).await {
            Ok(p) => p,
            Err(_) => return,
        };
        let n = &self.cfg.neutron;
        if !pool
            .name
            .starts_with(&format!("{}-", self.cfg.subnetpool_name_prefix))
            || pool.name == n.default_subnetpool_v4
            || pool.name == n.default_subnetpool_v6
            || pool.tags.iter().any(|t| t == names::TAG_POOL_EXISTING)
        {
            return;
        }
        self.cache.subnetpools.remove(&pool.id);
        self.cache.subnetpool_names.retain(|_, id| *id != pool.id);
        match self.neutron.delete_if_exists::<SubnetPool>(pool_id).await {
            Ok(()) => tracing::info!(pool = %pool_id, "empty kuryr subnetpool deleted"),
            Err(e) => tracing::info!(pool = %pool_id, error = %e, "subnetpool kept"),
        }
    }
}

/// The CIDR a RequestPool asks for: SubPool within Pool, or Pool, of the family asked.
fn requested_cidr(req: &RequestPoolRequest) -> Result<IpNet> {
    let pool_net = validate::cidr("Pool", &req.pool)?.trunc();
    let cidr_net = if req.sub_pool.is_empty() {
        pool_net
    } else {
        let sub = validate::cidr("SubPool", &req.sub_pool)?.trunc();
        if !pool_net.contains(&sub) {
            return Err(bad(format!("SubPool {sub} is not inside Pool {pool_net}")));
        }
        sub
    };
    if cidr_net.addr().is_ipv6() != req.v6 {
        return Err(bad(format!(
            "Pool {cidr_net} is not an IPv{} network",
            if req.v6 { 6 } else { 4 }
        )));
    }
    Ok(cidr_net)
}

fn pool_response(pool_id: String, cidr: String) -> RequestPoolResponse {
    RequestPoolResponse {
        pool_id,
        pool: cidr,
        data: BTreeMap::new(),
    }
}

/// Same network, however written (`10.0.0.0/24` vs `10.0.0.1/24`).
pub(crate) fn same_cidr(a: &str, b: &str) -> bool {
    match (a.parse::<IpNet>(), b.parse::<IpNet>()) {
        (Ok(x), Ok(y)) => x.trunc() == y.trunc(),
        _ => a == b,
    }
}

/// The first host address of a network (what Neutron picks as gateway by default).
pub(crate) fn first_host(net: &IpNet) -> Option<IpAddr> {
    match net {
        IpNet::V4(n) if n.prefix_len() >= 31 => Some(IpAddr::V4(n.network())),
        IpNet::V4(n) => Some(IpAddr::V4((u32::from(n.network()) + 1).into())),
        IpNet::V6(n) if n.prefix_len() >= 127 => Some(IpAddr::V6(n.network())),
        IpNet::V6(n) => Some(IpAddr::V6((u128::from(n.network()) + 1).into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_host_and_same_cidr() {
        assert_eq!(
            first_host(&"10.0.0.0/24".parse().unwrap()),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            first_host(&"fd00::/64".parse().unwrap()),
            Some("fd00::1".parse().unwrap())
        );
        assert!(same_cidr("10.0.0.0/24", "10.0.0.7/24"));
        assert!(!same_cidr("10.0.0.0/24", "10.0.0.0/25"));
    }

    #[test]
    fn option_names() {
        let mut o = BTreeMap::new();
        o.insert("neutron.pool.v6.uuid".to_string(), "x".to_string());
        o.insert("neutron.subnet.name".to_string(), "s".to_string());
        assert_eq!(Driver::option(&o, true, "pool.uuid"), Some("x"));
        assert_eq!(Driver::option(&o, false, "pool.uuid"), None);
        assert_eq!(Driver::option(&o, false, "subnet.name"), Some("s"));
        assert_eq!(Driver::option(&o, true, "subnet.name"), None);
    }
}
