//! CreateNetwork's subnets: taken from kuryr's IPAM where Docker's pools are kuryr's,
//! found or made on the Neutron network otherwise, and given back on undo.

use std::collections::BTreeMap;

use super::ipam::same_cidr;
use super::{Driver, DriverError, Result};
use crate::names;
use crate::neutron::{
    Filters, Network, NetworkBody, NetworkId, NewSubnet, Rename, Subnet, SubnetId, SubnetPool,
    SubnetPoolId,
};

use super::network::{Family, NetUndo, Origin};

impl Driver {
    /// The subnet kuryr's IPAM made to hold addresses of one of these pools, if any. Only
    /// a swarm network can have one (its manager asks for addresses before any node
    /// creates the network), so only then does this cost a request.
    pub(super) async fn ipam_held(
        &self,
        id: &str,
        pools: &[Option<String>],
    ) -> Result<Option<Subnet>> {
        if !crate::protocol::is_swarm_id(id) {
            return Ok(None);
        }
        for pid in pools.iter().flatten() {
            if let Some(s) = self.pool_subnet(pid).await? {
                if s.name.starts_with(super::ipam::IPAM_SUBNET_PREFIX) {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    /// Makes IPAM's holding network and subnet this Docker network's own, as if this call
    /// had made them: named and tagged as kuryr's (so removal deletes them with their
    /// ports), with the network's options. The reserved addresses stay where they are.
    pub(super) async fn take_from_ipam(
        &self,
        id: &str,
        subnet: Subnet,
        id_tags: &[String],
        qos: Option<&str>,
        shared: bool,
    ) -> Result<(Network, NetUndo)> {
        let old: Network = self.neutron.get(&subnet.network_id).await?;
        let body = NetworkBody {
            name: Some(names::network_name(id)),
            shared: Some(shared),
            qos_policy_id: qos.map(str::to_string),
            ..NetworkBody::default()
        };
        let net: Network = self.neutron.update(&old.id, body).await?;
        let undo = NetUndo::ReturnToIpam {
            net: (old.id.clone(), old.name.clone(), old.tags.clone()),
            subnet: (subnet.id.clone(), subnet.name.clone(), subnet.tags.clone()),
        };
        let renamed = async {
            self.neutron
                .replace_tags::<Network>(&net.id, id_tags)
                .await?;
            let pool_text = subnet.cidr.to_string();
            self.neutron
                .update::<Subnet>(
                    &subnet.id,
                    Rename {
                        name: names::subnet_name(&pool_text),
                    },
                )
                .await
        }
        .await;
        if let Err(e) = renamed {
            return Err(self.undo_network(vec![undo], e.into()).await);
        }
        tracing::info!(network = %net.id, subnet = %subnet.id, "took over IPAM's network for a swarm network");
        Ok((net, undo))
    }

    /// A subnet per family: an adopted network's own (named by option, or of the same
    /// CIDR), tagged with the pool; else a new one from the pool. On failure what this
    /// step made is undone.
    pub(super) async fn subnets_for(
        &self,
        net: &Network,
        origin: Origin,
        fams: &[Family],
        pools: &[Option<String>],
        opts: &BTreeMap<String, String>,
    ) -> Result<Vec<Subnet>> {
        let current: Vec<Subnet> = if origin != Origin::New {
            self.neutron
                .list(&Filters::new().add("network_id", &net.id))
                .await?
        } else {
            Vec::new()
        };
        let mut subnets = current.clone();
        let mut undo = Vec::new();
        for (f, pool_id) in fams.iter().zip(pools) {
            match self
                .subnet_for(net, &current, f, pool_id.as_deref(), opts)
                .await
            {
                Ok((None, step)) => undo.extend(step),
                Ok((Some(s), step)) => {
                    undo.extend(step);
                    subnets.push(s);
                }
                Err(e) => return Err(self.undo_network(undo, e).await),
            }
        }
        Ok(subnets)
    }

    /// `-o neutron.subnet.v6.address_mode` / `.ra_mode` of a v6 subnet kuryr makes
    /// (checked by `checked_options`).
    fn v6_mode(opts: &BTreeMap<String, String>, f: &Family, mode: &str) -> Option<String> {
        f.v6.then(|| Self::net_option(opts, &format!("neutron.subnet.v6.{mode}")))
            .flatten()
            .map(str::to_string)
    }

    /// One family's subnet: None when an adopted one serves it.
    pub(super) async fn subnet_for(
        &self,
        net: &Network,
        current: &[Subnet],
        f: &Family,
        pool_id: Option<&str>,
        opts: &BTreeMap<String, String>,
    ) -> Result<(Option<Subnet>, Option<NetUndo>)> {
        let v6 = if f.v6 { ".v6" } else { "" };
        let named_uuid = Self::net_option(opts, &format!("neutron.subnet{v6}.uuid"));
        let named_name = Self::net_option(opts, &format!("neutron.subnet{v6}.name"));
        let found = current.iter().find(|s| {
            named_uuid.is_some_and(|u| s.id == u)
                || named_name.is_some_and(|n| s.name == n)
                || s.cidr.trunc() == f.pool
        });
        if let Some(s) = found {
            let mut undo = None;
            if let Some(pid) = pool_id {
                if !s.tags.iter().any(|t| t == pid) {
                    self.neutron.add_tag::<Subnet>(&s.id, pid).await?;
                    undo = Some(NetUndo::UntagSubnet(s.id.clone(), pid.to_string()));
                }
                self.cache_pool_subnet(pid, s);
            }
            return Ok((None, undo));
        }
        let body = NewSubnet {
            name: names::subnet_name(&f.pool_text),
            network_id: net.id.clone(),
            ip_version: if f.v6 { 6 } else { 4 },
            cidr: Some(f.pool.to_string()),
            enable_dhcp: Some(self.cfg.neutron.enable_dhcp),
            subnetpool_id: pool_id.map(SubnetPoolId::from),
            gateway_ip: f.gateway.map(|gw| gw.to_string()),
            ipv6_address_mode: Self::v6_mode(opts, f, "address_mode"),
            ipv6_ra_mode: Self::v6_mode(opts, f, "ra_mode"),
        };
        let s: Subnet = self.neutron.create(body).await?;
        let undo = NetUndo::DeleteSubnet(s.id.clone());
        if let Some(pid) = pool_id {
            let tagged = self
                .neutron
                .replace_tags::<Subnet>(&s.id, &[pid.to_string()])
                .await;
            if let Err(e) = tagged {
                return Err(self.undo_network(vec![undo], e.into()).await);
            }
            self.cache_pool_subnet(pid, &s);
        }
        Ok((Some(s), Some(undo)))
    }

    pub(super) async fn return_to_ipam(
        &self,
        (net_id, net_name, net_tags): &(NetworkId, String, Vec<String>),
        (subnet_id, subnet_name, subnet_tags): &(SubnetId, String, Vec<String>),
    ) -> std::result::Result<(), crate::neutron::NeutronError> {
        self.neutron
            .update::<Subnet>(
                subnet_id,
                Rename {
                    name: subnet_name.clone(),
                },
            )
            .await?;
        self.neutron
            .replace_tags::<Subnet>(subnet_id, subnet_tags)
            .await?;
        self.neutron
            .update::<Network>(
                net_id,
                Rename {
                    name: net_name.clone(),
                },
            )
            .await?;
        self.neutron.replace_tags::<Network>(net_id, net_tags).await
    }

    /// The subnetpool of one family: named by option, else the kuryr pool of the CIDR,
    /// else a default pool holding it; None when Docker's own IPAM manages addresses.
    pub(super) async fn pool_for(
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
                Ok(p) => Ok(Some(p.id.into())),
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
        if let Some(id) = self.cache.subnetpool_names.get(&name) {
            return Ok(Some(id));
        }
        let pools: Vec<SubnetPool> = self
            .neutron
            .list(&Filters::new().add("name", &name))
            .await?;
        if let Some(p) = pools.into_iter().min_by(|a, b| a.id.cmp(&b.id)) {
            return Ok(Some(p.id.into()));
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
            return Ok(Some(p.id.into()));
        }
        tracing::info!(%cidr, "no kuryr subnetpool for this CIDR: subnet made without a pool");
        Ok(None)
    }
}
