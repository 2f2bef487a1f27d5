//! IpamDriver, pool half: Docker pools are Neutron subnetpools (kuryr's, named, default),
//! each with its subnet; ReleasePool takes back what kuryr made. Addresses: addresses.rs.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::cache::SubnetPoolInfo;
use super::{bad, Driver, DriverError, Result};
use crate::names;
use crate::neutron::{Filters, Network, NewSubnetPool, Subnet, SubnetPool};
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
            (None, Some(name)) => Some(self.subnet_by_name(name).await?.id.into()),
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
        Ok(Some(pool_response(pool.id.into(), cidr.to_string())))
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
                    .create(NewSubnetPool {
                        name: name.clone(),
                        prefixes: vec![cidr.to_string()],
                        default_prefixlen: cidr_net.prefix_len(),
                        shared,
                    })
                    .await?;
                if let Some(s) = &subnet_id {
                    // Untagged, a retry would not find it and make a second of the name.
                    if let Err(e) = self.neutron.add_tag::<SubnetPool>(&p.id, s).await {
                        let undo = crate::deadline::undo(
                            self.neutron.delete_if_exists::<SubnetPool>(&p.id),
                        )
                        .await;
                        return Err(DriverError::from(e).after_undo(undo));
                    }
                }
                p
            }
        };
        self.cache.subnetpool_names.put(name, pool.id.to_string());
        self.remember_pool(&pool.id, &cidr);
        Ok(pool_response(pool.id.into(), cidr))
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
        Ok(pool_response(pool.id.into(), cidr))
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
    pub(super) async fn pool_cidr(&self, pool_id: &str) -> Result<Option<String>> {
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

    pub async fn release_pool(&self, req: ReleasePoolRequest) -> Result<()> {
        let pool_id = String::from(req.pool_id);
        let pool = match self.neutron.get::<SubnetPool>(&pool_id).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => {
                self.cache.subnetpools.remove(&pool_id);
                return Ok(());
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
            return Ok(());
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
        Ok(())
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
            // A user's subnet: it keeps the pool's tag while another host uses it with
            // this pool. On a swarm network, kuryr's reservations still on it (the
            // manager's, whose releases may come after this pool's) go with the pool, as
            // they would with a subnet of kuryr's.
            let (elsewhere, swarm) = self.subnet_users(s).await?;
            if elsewhere {
                tracing::info!(subnet = %s.id, "still used by another Docker network (another host?): kept");
                return Ok(false);
            }
            if swarm {
                self.sweep_ports(Filters::new().add("fixed_ips", format!("subnet_id={}", s.id)))
                    .await;
            }
            self.neutron.remove_tag::<Subnet>(&s.id, pool_id).await?;
        }
        Ok(true)
    }

    /// Whether a Docker network this host does not know of (another host's) names the
    /// subnet's Neutron network.
    async fn subnet_used_elsewhere(&self, s: &Subnet) -> Result<bool> {
        Ok(self.subnet_users(s).await?.0)
    }

    /// Whether another host uses the subnet's Neutron network (as in
    /// `subnet_used_elsewhere`), and whether that network is a swarm network's.
    async fn subnet_users(&self, s: &Subnet) -> Result<(bool, bool)> {
        let net: Network = match self.neutron.get(&s.network_id).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => return Ok((false, false)),
            Err(e) => return Err(e.into()),
        };
        // This host's Docker networks on it, as far as this process knows them.
        let ours = self
            .cache
            .networks
            .keys_where(|ni| ni.neutron_id == s.network_id);
        // A swarm network has one id on every node: another node's tasks are the sign.
        let swarm = net.tags.iter().any(|t| {
            t.strip_prefix(names::TAG_LOW)
                .is_some_and(crate::protocol::is_swarm_id)
        });
        if names::used_by_other_docker_networks(&net.name, &net.tags, &ours) {
            return Ok((true, swarm));
        }
        Ok((swarm && self.other_nodes_on(&net.id).await?, swarm))
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
        self.cache.subnetpools.remove(&pool.id.to_string());
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
