//! NetworkDriver, network half: Docker networks are Neutron networks (new or adopted).

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde_json::{json, Value};

use super::cache::NetInfo;
use super::ipam::same_cidr;
use super::{Driver, DriverError, Result};
use crate::names;
use crate::neutron::{Filters, Network, Subnet, SubnetPool};
use crate::protocol::{validate, *};

/// One address family of a CreateNetwork request, validated.
struct Family {
    v6: bool,
    pool: IpNet,
    /// The pool CIDR exactly as Docker sent it (the subnet's name carries it).
    pool_text: String,
    gateway: Option<std::net::IpAddr>,
}

/// What CreateNetwork made, so a failure can undo it.
#[derive(Default)]
struct Undo {
    network: Option<String>,
    subnets: Vec<String>,
    /// An adopted network's tags before we touched them.
    tags: Option<(String, Vec<String>)>,
    /// Adopted subnets we tagged with a pool id.
    subnet_tags: Vec<(String, String)>,
}

impl Driver {
    pub fn network_capabilities(&self) -> Value {
        json!({"Scope": self.cfg.capability_scope.as_str()})
    }

    fn family(data: &[IpamData], v6: bool) -> Result<Option<Family>> {
        let Some(d) = data.first() else {
            return Ok(None);
        };
        if d.pool.is_empty() {
            return Ok(None);
        }
        let field = if v6 { "IPv6Data.Pool" } else { "IPv4Data.Pool" };
        let pool = validate::cidr(field, &d.pool)?;
        if pool.addr().is_ipv6() != v6 {
            return Err(super::bad(format!(
                "{field} {} is of the wrong IP version",
                d.pool
            )));
        }
        let gateway = if d.gateway.is_empty() {
            None
        } else {
            let (ip, _) = validate::ip_maybe_cidr("Gateway", &d.gateway)?;
            if !pool.contains(&ip) {
                return Err(super::bad(format!("Gateway {ip} is not in {}", d.pool)));
            }
            Some(ip)
        };
        Ok(Some(Family {
            v6,
            pool: pool.trunc(),
            pool_text: d.pool.clone(),
            gateway,
        }))
    }

    fn net_option<'a>(opts: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
        opts.get(key).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub async fn create_network(&self, req: CreateNetworkRequest) -> Result<Value> {
        let fams: Vec<Family> = [
            Self::family(&req.ipv4_data, false)?,
            Self::family(&req.ipv6_data, true)?,
        ]
        .into_iter()
        .flatten()
        .collect();
        let opts = generic_options(&req.options);
        let shared = match opts.get("neutron.net.shared") {
            None => false,
            Some(v) => crate::config::parse_bool(v)
                .ok_or_else(|| super::bad(format!("neutron.net.shared {v:?} is not a boolean")))?,
        };
        for k in [
            "neutron.net.uuid",
            "neutron.pool.uuid",
            "neutron.pool.v6.uuid",
            "neutron.subnet.uuid",
            "neutron.subnet.v6.uuid",
        ] {
            if let Some(v) = Self::net_option(&opts, k) {
                validate::uuid(k, v)?;
            }
        }
        let id = req.network_id.as_str();
        let _g = self.locks.lock(&format!("net:{id}")).await;
        // A retried call finds what the first one made.
        if self.net_info(id).await?.is_some() {
            return Ok(json!({}));
        }
        let mut undo = Undo::default();
        match self
            .create_network_steps(id, &fams, &opts, shared, &mut undo)
            .await
        {
            Ok(info) => {
                for s in &info.subnets {
                    self.pool.refill(&self.neutron, s);
                }
                self.cache.networks.put(id.to_string(), info);
                Ok(json!({}))
            }
            Err(e) => {
                self.undo_create_network(undo).await;
                Err(e)
            }
        }
    }

    async fn create_network_steps(
        &self,
        id: &str,
        fams: &[Family],
        opts: &BTreeMap<String, String>,
        shared: bool,
        undo: &mut Undo,
    ) -> Result<NetInfo> {
        // Pools first: nothing is created if one is missing.
        let mut pools = Vec::new();
        for f in fams {
            pools.push(self.pool_for(f, opts).await?);
        }
        let existing = match (
            Self::net_option(opts, "neutron.net.uuid"),
            Self::net_option(opts, "neutron.net.name"),
        ) {
            (Some(uuid), _) => Some(
                self.network_by(Filters::new().add("id", uuid), uuid)
                    .await?,
            ),
            (None, Some(name)) => Some(
                self.network_by(Filters::new().add("name", name), name)
                    .await?,
            ),
            (None, None) => None,
        };
        let mut id_tags = names::id_tags(id);
        let net = match existing {
            Some(net) => {
                if opts.contains_key("neutron.net.shared") && net.shared != shared {
                    return Err(DriverError::Conflict(format!(
                        "Neutron network {} has shared={} but neutron.net.shared={shared} was asked",
                        net.id, net.shared
                    )));
                }
                id_tags.push(names::existing_net_tag(id));
                let mut tags = net.tags.clone();
                for t in &id_tags {
                    if !tags.contains(t) {
                        tags.push(t.clone());
                    }
                }
                undo.tags = Some((net.id.clone(), net.tags.clone()));
                self.neutron.replace_tags::<Network>(&net.id, &tags).await?;
                net
            }
            None => {
                let net: Network = self
                    .neutron
                    .create(json!({
                        "name": names::network_name(id),
                        "admin_state_up": true,
                        "shared": shared,
                    }))
                    .await?;
                undo.network = Some(net.id.clone());
                self.neutron
                    .replace_tags::<Network>(&net.id, &id_tags)
                    .await?;
                net
            }
        };
        let adopted = undo.tags.is_some();
        let current: Vec<Subnet> = if adopted {
            self.neutron
                .list(&Filters::new().add("network_id", &net.id))
                .await?
        } else {
            Vec::new()
        };
        let mut subnets = current.clone();
        for (f, pool_id) in fams.iter().zip(&pools) {
            let named_uuid = Self::net_option(
                opts,
                if f.v6 {
                    "neutron.subnet.v6.uuid"
                } else {
                    "neutron.subnet.uuid"
                },
            );
            let named_name = Self::net_option(
                opts,
                if f.v6 {
                    "neutron.subnet.v6.name"
                } else {
                    "neutron.subnet.name"
                },
            );
            let found = current.iter().find(|s| {
                named_uuid.map(|u| s.id == u).unwrap_or(false)
                    || named_name.map(|n| s.name == n).unwrap_or(false)
                    || s.cidr.trunc() == f.pool
            });
            if let Some(s) = found {
                if let Some(pid) = pool_id {
                    if !s.tags.contains(pid) {
                        self.neutron.add_tag::<Subnet>(&s.id, pid).await?;
                        undo.subnet_tags.push((s.id.clone(), pid.clone()));
                    }
                    self.cache_pool_subnet(pid, s);
                }
                continue;
            }
            let mut body = json!({
                "name": names::subnet_name(&f.pool_text),
                "network_id": net.id,
                "ip_version": if f.v6 { 6 } else { 4 },
                "cidr": f.pool.to_string(),
                "enable_dhcp": self.cfg.neutron.enable_dhcp,
            });
            if let Some(pid) = pool_id {
                body["subnetpool_id"] = json!(pid);
            }
            if let Some(gw) = f.gateway {
                body["gateway_ip"] = json!(gw.to_string());
            }
            let s: Subnet = self.neutron.create(body).await?;
            undo.subnets.push(s.id.clone());
            if let Some(pid) = pool_id {
                self.neutron
                    .replace_tags::<Subnet>(&s.id, std::slice::from_ref(pid))
                    .await?;
                self.cache_pool_subnet(pid, &s);
            }
            subnets.push(s);
        }
        Ok(NetInfo {
            neutron_id: net.id,
            mtu: net.mtu,
            existing: adopted,
            project_id: net.project_id,
            physical_network: net.physical_network,
            subnets,
        })
    }

    /// The subnetpool of one family: named by option, else the kuryr pool of the CIDR,
    /// else a default pool holding it; None when Docker's own IPAM manages addresses.
    async fn pool_for(
        &self,
        f: &Family,
        opts: &BTreeMap<String, String>,
    ) -> Result<Option<String>> {
        let (uuid_key, name_key) = if f.v6 {
            ("neutron.pool.v6.uuid", "neutron.pool.v6.name")
        } else {
            ("neutron.pool.uuid", "neutron.pool.name")
        };
        if let Some(uuid) = Self::net_option(opts, uuid_key) {
            return match self.neutron.get::<SubnetPool>(uuid).await {
                Ok(p) => Ok(Some(p.id)),
                Err(e) if e.is_not_found() => Err(DriverError::NotFound(format!(
                    "Specified pool id({uuid}) does not exist."
                ))),
                Err(e) => Err(e.into()),
            };
        }
        let cidr = f.pool.to_string();
        let name = match Self::net_option(opts, name_key) {
            Some(n) => n.to_string(),
            None => names::subnetpool_name(&self.cfg.subnetpool_name_prefix, &f.pool_text),
        };
        if let Some(id) = self.cache.pool_names.get(&name) {
            return Ok(Some(id));
        }
        let pools: Vec<SubnetPool> = self
            .neutron
            .list(&Filters::new().add("name", &name))
            .await?;
        if let Some(p) = pools.into_iter().min_by(|a, b| a.id.cmp(&b.id)) {
            return Ok(Some(p.id));
        }
        if Self::net_option(opts, name_key).is_some() {
            return Err(DriverError::NotFound(format!(
                "Specified pool name({name}) does not exist."
            )));
        }
        // The pool may be a default pool whose first prefix Docker received.
        let default = if f.v6 {
            &self.cfg.neutron.default_subnetpool_v6
        } else {
            &self.cfg.neutron.default_subnetpool_v4
        };
        let defaults: Vec<SubnetPool> = self
            .neutron
            .list(&Filters::new().add("name", default))
            .await?;
        if let Some(p) = defaults
            .into_iter()
            .find(|p| p.prefixes.first().is_some_and(|x| same_cidr(x, &cidr)))
        {
            return Ok(Some(p.id));
        }
        tracing::info!(%cidr, "no kuryr subnetpool for this CIDR: subnet made without a pool");
        Ok(None)
    }

    async fn network_by(&self, filters: Filters, what: &str) -> Result<Network> {
        let mut nets: Vec<Network> = self.neutron.list(&filters).await?;
        match nets.len() {
            0 => Err(DriverError::NotFound(format!(
                "Specified network id/name({what}) does not exist."
            ))),
            1 => Ok(nets.remove(0)),
            n => Err(DriverError::Conflict(format!(
                "{n} Neutron networks match {what}"
            ))),
        }
    }

    async fn undo_create_network(&self, undo: Undo) {
        for s in undo.subnets.iter().rev() {
            if let Err(e) = self.neutron.delete_if_exists::<Subnet>(s).await {
                tracing::warn!(subnet = %s, error = %e, "rollback: could not delete subnet");
            }
        }
        if let Some(n) = &undo.network {
            if let Err(e) = self.neutron.delete_if_exists::<Network>(n).await {
                tracing::warn!(network = %n, error = %e, "rollback: could not delete network");
            }
        }
        if let Some((n, tags)) = &undo.tags {
            if let Err(e) = self.neutron.replace_tags::<Network>(n, tags).await {
                tracing::warn!(network = %n, error = %e, "rollback: could not restore tags");
            }
        }
        for (s, t) in &undo.subnet_tags {
            if let Err(e) = self.neutron.remove_tag::<Subnet>(s, t).await {
                tracing::warn!(subnet = %s, error = %e, "rollback: could not untag subnet");
            }
        }
    }

    pub async fn delete_network(&self, req: NetworkRequest) -> Result<Value> {
        let id = req.network_id.as_str();
        let _g = self.locks.lock(&format!("net:{id}")).await;
        let Some(info) = self.net_info(id).await? else {
            tracing::warn!(network = %id, "DeleteNetwork: no Neutron network is tagged for it; nothing to do");
            return Ok(json!({}));
        };
        self.forget_network(id);
        let net: Network = match self.neutron.get(&info.neutron_id).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => return Ok(json!({})),
            Err(e) => return Err(e.into()),
        };
        // Docker networks on other hosts (or other Docker networks here) naming the same
        // Neutron network: it, its kuryr subnets and their ports stay theirs.
        let shared = names::used_by_other_docker_networks(&net.name, &net.tags, &[id.to_string()]);
        if info.existing || shared {
            if shared {
                tracing::info!(network = %info.neutron_id, "still used by another Docker network (another host?): only this network's tags go");
            }
            // Adopted: only our subnets and our tags go.
            let subnets: Vec<Subnet> = if shared {
                Vec::new()
            } else {
                self.neutron
                    .list(&Filters::new().add("network_id", &info.neutron_id))
                    .await?
            };
            for s in subnets
                .iter()
                .filter(|s| s.name.starts_with(names::SUBNET_NAME_PREFIX))
            {
                self.sweep_ports(Filters::new().add("fixed_ips", format!("subnet_id={}", s.id)))
                    .await;
                if let Err(e) = self.neutron.delete_if_exists::<Subnet>(&s.id).await {
                    tracing::warn!(subnet = %s.id, error = %e, "could not delete kuryr subnet of adopted network");
                    continue;
                }
                // Docker released the pool before this call while the subnet was still
                // another host's: its kuryr pool, now empty, goes with the subnet.
                if let Some(pool_id) = s.subnetpool_id.as_deref() {
                    self.delete_empty_kuryr_pool(pool_id).await;
                }
            }
            // Made by a Docker network (another host's) that has left: the last user
            // removes it, as its creator would have.
            if !shared
                && info.existing
                && names::is_kuryr_net_name(&net.name)
                && !names::creator_present(&net.name, &net.tags)
            {
                self.neutron
                    .delete_if_exists::<Network>(&info.neutron_id)
                    .await?;
                return Ok(json!({}));
            }
            let mut drop_tags = names::id_tags(id);
            drop_tags.push(names::existing_net_tag(id));
            let keep: Vec<String> = net
                .tags
                .into_iter()
                .filter(|t| !drop_tags.contains(t))
                .collect();
            self.neutron
                .replace_tags::<Network>(&info.neutron_id, &keep)
                .await?;
            return Ok(json!({}));
        }
        // Neutron deletes the network's subnets (and DHCP ports) with it, not ports.
        self.pool.drain(&self.neutron, &info.neutron_id).await;
        self.sweep_ports(Filters::new().add("network_id", &info.neutron_id))
            .await;
        self.neutron
            .delete_if_exists::<Network>(&info.neutron_id)
            .await?;
        Ok(json!({}))
    }

    pub fn allocate_network(&self, body: &Value) -> Value {
        json!({"Options": body.get("Options").cloned().unwrap_or(Value::Null)})
    }
}
