//! What a CNI network config names in Neutron: its network, the subnets addresses come
//! from, its groups, QoS policy and external network. Resolved by the first ADD of a
//! config and kept, so later ADDs ask Neutron nothing for it (with the port pool, an ADD
//! asks Neutron nothing at all before it answers). A kept target older than
//! [`TARGET_FRESH`] is read again in the background after the ADD that used it; one an
//! ADD failed with is dropped, so the next ADD resolves it afresh.

use std::time::{Duration, Instant};

use super::cni::Wiring;
use super::{Driver, DriverError, Result};
use crate::names;
use crate::neutron::{
    Filters, Network, NetworkBody, NetworkId, Neutron, NeutronError, NewSubnet, Subnet, SubnetPool,
    SubnetPoolId,
};

/// How long a kept target is used without reading its network and subnets again.
const TARGET_FRESH: Duration = Duration::from_secs(30);

/// A config's Neutron objects, as ids.
#[derive(Debug, Clone)]
pub struct Target {
    pub net: Network,
    pub subnets: Vec<Subnet>,
    /// The subnetpool the config names (its subnet is picked by it).
    pub subnetpool_id: Option<SubnetPoolId>,
    /// The config's groups, else those a Docker network asked for on this network.
    pub groups: Vec<String>,
    pub qos: Option<String>,
    /// The config's external network, else the one a Docker network asked for here.
    pub floating: Option<String>,
}

/// A target and when it was last read from Neutron.
#[derive(Debug, Clone)]
pub struct KeptTarget {
    pub target: Target,
    pub read_at: Instant,
}

/// What identifies a config's target: every field that is resolved in Neutron.
fn target_key(w: &Wiring) -> String {
    let mut groups = w.security_groups.clone();
    groups.sort();
    format!(
        "{:?}",
        (
            &w.network,
            &w.subnet,
            &w.cidr,
            &w.subnetpool,
            groups,
            &w.qos_policy,
            &w.floating_network
        )
    )
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// The subnets addresses come from, of all the network's: the one the config's CIDR or
/// subnetpool made, else the one named, else the first of each family. `None`: the
/// config's CIDR or pool has no subnet here yet.
fn pick_subnets(
    net: &Network,
    all: Vec<Subnet>,
    w: &Wiring,
    pool: Option<&str>,
) -> Result<Option<Vec<Subnet>>> {
    if w.cidr.is_some() || pool.is_some() {
        let found = all.into_iter().find(|s| match (&w.cidr, pool) {
            (Some(c), _) => s.cidr == *c,
            (None, Some(p)) => s.subnetpool_id.as_deref() == Some(p),
            (None, None) => false,
        });
        return Ok(found.map(|s| vec![s]));
    }
    if !w.subnet.is_empty() {
        return match all
            .into_iter()
            .find(|s| s.id == w.subnet || s.name == w.subnet)
        {
            Some(s) => Ok(Some(vec![s])),
            None => Err(DriverError::NotFound(format!(
                "network {} has no subnet {:?}",
                net.id, w.subnet
            ))),
        };
    }
    let mut picked: Vec<Subnet> = Vec::new();
    for s in all {
        if !picked.iter().any(|p| p.ip_version == s.ip_version) {
            picked.push(s);
        }
    }
    if picked.is_empty() {
        return Err(DriverError::BadRequest(format!(
            "Neutron network {} has no subnet to take addresses from",
            net.id
        )));
    }
    Ok(Some(picked))
}

async fn subnets_of(
    neutron: &Neutron,
    net: &Network,
) -> std::result::Result<Vec<Subnet>, NeutronError> {
    neutron
        .list(&Filters::new().add("network_id", net.id.as_str()))
        .await
}

impl Driver {
    /// The config's target: kept, else resolved (and what its CIDR or pool asks for made).
    pub(super) async fn cni_target(&self, w: &Wiring) -> Result<Target> {
        let key = target_key(w);
        if let Some(kept) = self.cache.cni_targets.get(&key) {
            if kept.read_at.elapsed() >= TARGET_FRESH {
                self.refresh_target(key, w.clone());
            }
            return Ok(kept.target);
        }
        let target = self.resolve_target(w).await?;
        let kept = KeptTarget {
            target: target.clone(),
            read_at: Instant::now(),
        };
        self.cache.cni_targets.put(key, kept);
        Ok(target)
    }

    /// The Neutron network and subnets an attachment with this wiring would use, made
    /// now when its CIDR or pool asks for them (a runtime that declares networks ahead
    /// of their first container, as Podman's `network create` does).
    pub async fn attachment_network(&self, w: &Wiring) -> Result<(Network, Vec<Subnet>)> {
        let t = self.cni_target(w).await?;
        Ok((t.net, t.subnets))
    }

    /// Removes the networks kuryr made with `tag` among their tags (a runtime's network
    /// that is gone: a Podman network after `podman network rm`), this host's pool ports
    /// first. A network a port still uses (a container's, a VM's, another host's pool)
    /// stays: `kuryr gc` judges it later. The ids removed.
    pub async fn remove_made_networks(&self, tag: &str) -> Result<Vec<NetworkId>> {
        let tags = [names::TAG_CNI_MADE, tag];
        let nets: Vec<Network> = self.neutron.list(&Filters::new().tags(&tags)).await?;
        let mut removed = Vec::new();
        for n in nets {
            // Another Podman network, or a Docker network, on it too: only this one's
            // mark goes.
            if names::other_users(&n.tags, tag) {
                tracing::info!(network = %n.id, "a network kuryr made serves another runtime's network too: kept");
                self.neutron.remove_tag::<Network>(&n.id, tag).await?;
                self.cache.cni_targets.clear();
                continue;
            }
            self.port_pool.drain(&self.neutron, &n.id).await;
            let ports: Vec<crate::neutron::Port> = self
                .neutron
                .list(&Filters::new().add("network_id", n.id.as_str()))
                .await?;
            // Neutron's own (DHCP, a router's) go with the network.
            if let Some(p) = ports
                .iter()
                .find(|p| !p.device_owner.starts_with("network:"))
            {
                tracing::info!(network = %n.id, port = %p.id, "a network kuryr made is still in use: kept");
                continue;
            }
            self.neutron.delete_if_exists::<Network>(&n.id).await?;
            removed.push(n.id);
        }
        if !removed.is_empty() {
            // Targets kept for them name what is gone.
            self.cache.cni_targets.clear();
        }
        Ok(removed)
    }

    /// A network kuryr made for another runtime's network that this one (a Podman
    /// network by `tag`) uses too is marked as this one's as well, so that removing the
    /// first leaves it.
    pub async fn share_made_network(&self, net: &Network, tag: &str) -> Result<()> {
        let made = net.tags.iter().any(|t| t == names::TAG_CNI_MADE);
        if made && !net.tags.iter().any(|t| t == tag) {
            self.neutron.add_tag::<Network>(&net.id, tag).await?;
            self.cache.cni_targets.clear();
        }
        Ok(())
    }

    /// Drops the kept target of a config (an ADD failed with it).
    pub(super) fn forget_target(&self, w: &Wiring) {
        self.cache.cni_targets.remove(&target_key(w));
    }

    /// Reads the kept target's network and subnets again, off the ADD's path; a target
    /// that cannot be read any more is dropped.
    fn refresh_target(&self, key: String, w: Wiring) {
        // Marked read now, so the ADDs meanwhile do not start refreshes of their own.
        let mut old = None;
        self.cache.cni_targets.update(&key, |k| {
            k.read_at = Instant::now();
            old = Some(k.target.clone());
        });
        let Some(old) = old else { return };
        let (neutron, cache) = (self.neutron.clone(), self.cache.clone());
        tokio::spawn(async move {
            let fresh = async {
                let net: Network = neutron.get(&old.net.id).await?;
                let all = subnets_of(&neutron, &net).await?;
                let subnets = pick_subnets(&net, all, &w, old.subnetpool_id.as_deref())?;
                Ok::<_, DriverError>((net, subnets))
            }
            .await;
            match fresh {
                Ok((net, Some(subnets))) => cache.cni_targets.update(&key, |k| {
                    if w.security_groups.is_empty() {
                        k.target.groups = names::sgs_from_tags(&net.tags);
                    }
                    if w.floating_network.is_none() {
                        k.target.floating = names::fip_net_from_tags(&net.tags);
                    }
                    k.target.net = net;
                    k.target.subnets = subnets;
                }),
                Ok((_, None)) | Err(_) => {
                    tracing::debug!(network = %old.net.id, "CNI target changed in Neutron: resolved again at the next ADD");
                    cache.cni_targets.remove(&key);
                }
            }
        });
    }

    async fn resolve_target(&self, w: &Wiring) -> Result<Target> {
        // What the config names is found before a network is made for it: a name that
        // is wrong makes nothing.
        let named_groups = match w.security_groups.is_empty() {
            false => Some(self.security_group_ids(&w.security_groups).await?),
            true => None,
        };
        let qos = match &w.qos_policy {
            Some(q) => Some(self.qos_policy_id(q).await?),
            None => None,
        };
        let named_floating = match &w.floating_network {
            Some(f) => Some(self.external_network_id(f).await?),
            None => None,
        };
        let (net, subnets, subnetpool_id) = self.cni_network_and_subnets(w).await?;
        let groups = named_groups.unwrap_or_else(|| names::sgs_from_tags(&net.tags));
        let floating = named_floating.or_else(|| names::fip_net_from_tags(&net.tags));
        Ok(Target {
            net,
            subnets,
            subnetpool_id,
            groups,
            qos,
            floating,
        })
    }

    /// The Neutron network of a config: by id, else by name (exactly one).
    async fn cni_network(&self, want: &str) -> Result<Network> {
        if is_uuid(want) {
            return match self.neutron.get::<Network>(want).await {
                Ok(n) => Ok(n),
                Err(e) if e.is_not_found() => Err(DriverError::NotFound(format!(
                    "Neutron network {want} does not exist"
                ))),
                Err(e) => Err(e.into()),
            };
        }
        let mut found: Vec<Network> = self.neutron.list(&Filters::new().add("name", want)).await?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(DriverError::NotFound(format!(
                "no Neutron network is named {want:?}"
            ))),
            n => Err(DriverError::BadRequest(format!(
                "{n} Neutron networks are named {want:?}: give its id instead"
            ))),
        }
    }

    /// The network and the subnets addresses come from; with `cidr` or `subnetpool`,
    /// what is missing of them is made first (once: concurrent ADDs wait for it).
    async fn cni_network_and_subnets(
        &self,
        w: &Wiring,
    ) -> Result<(Network, Vec<Subnet>, Option<SubnetPoolId>)> {
        if w.cidr.is_none() && w.subnetpool.is_empty() {
            let net = self.cni_network(&w.network).await?;
            let all = subnets_of(&self.neutron, &net).await?;
            let subnets = pick_subnets(&net, all, w, None)?.unwrap_or_default();
            return Ok((net, subnets, None));
        }
        let _g = self.locks.lock(&format!("cni-net:{}", w.network)).await;
        let pool = match w.subnetpool.as_str() {
            "" => None,
            p => Some(self.cni_subnetpool(p).await?),
        };
        let (net, made) = match self.cni_network(&w.network).await {
            Ok(n) => (n, false),
            Err(DriverError::NotFound(_)) if !is_uuid(&w.network) => {
                tracing::info!(network = %w.network, "CNI: making the Neutron network the config names");
                let net: Network = self.neutron.create(NetworkBody::named(&w.network)).await?;
                let mut tags = vec![names::TAG_CNI_MADE.to_string()];
                tags.extend(w.made_tags.iter().cloned());
                if let Err(e) = self.neutron.replace_tags::<Network>(&net.id, &tags).await {
                    return Err(self.undo_made_network(&net.id, e.into()).await);
                }
                (Network { tags, ..net }, true)
            }
            Err(e) => return Err(e),
        };
        match self.cni_subnets_made(w, &net, pool.as_ref()).await {
            Ok(subnets) => Ok((net, subnets, pool.map(|p| p.id))),
            Err(e) if made => Err(self.undo_made_network(&net.id, e).await),
            Err(e) => Err(e),
        }
    }

    /// A network this call made goes again when a later step fails: bad input (a `cidr`
    /// or `--subnet` Neutron refuses) leaves Neutron as it was, and no untagged network
    /// stays that no clean-up would know as kuryr's.
    async fn undo_made_network(&self, id: &str, e: DriverError) -> DriverError {
        e.after_undo(crate::deadline::undo(self.neutron.delete_if_exists::<Network>(id)).await)
    }

    /// The network's subnets the config's addresses come from, made when missing.
    async fn cni_subnets_made(
        &self,
        w: &Wiring,
        net: &Network,
        pool: Option<&SubnetPool>,
    ) -> Result<Vec<Subnet>> {
        let pool_id = pool.map(|p| p.id.clone());
        let all = subnets_of(&self.neutron, net).await?;
        if let Some(found) = pick_subnets(net, all, w, pool_id.as_deref())? {
            return Ok(found);
        }
        let mut body = NewSubnet {
            network_id: net.id.clone(),
            name: format!("kuryr-cni-{}", w.network),
            ip_version: 4,
            ..NewSubnet::default()
        };
        match (&w.cidr, pool) {
            (Some(c), p) => {
                body.cidr = Some(c.to_string());
                body.ip_version = if c.addr().is_ipv4() { 4 } else { 6 };
                body.subnetpool_id = p.as_ref().map(|p| p.id.clone());
            }
            (None, Some(p)) => {
                body.subnetpool_id = Some(p.id.clone());
                body.ip_version = if p.ip_version == 6 { 6 } else { 4 };
            }
            (None, None) => {}
        }
        let subnet: Subnet = self.neutron.create(body).await?;
        Ok(vec![subnet])
    }

    async fn cni_subnetpool(&self, want: &str) -> Result<SubnetPool> {
        if is_uuid(want) {
            return Ok(self.neutron.get(want).await?);
        }
        let mut found: Vec<SubnetPool> =
            self.neutron.list(&Filters::new().add("name", want)).await?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(DriverError::NotFound(format!(
                "no subnetpool is named {want:?}"
            ))),
            n => Err(DriverError::BadRequest(format!(
                "{n} subnetpools are named {want:?}: give its id instead"
            ))),
        }
    }
}
