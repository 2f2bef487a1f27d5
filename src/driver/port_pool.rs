//! Port pool (`port_pool_size`): ports made ahead of time on each kuryr network, already
//! bound to this host, so that a container start makes no Neutron request: RequestAddress
//! answers from the pool, CreateEndpoint plugs with the `binding:vif_type` Neutron gave
//! at creation, and the port's endpoint bookkeeping (device_id, name, tags) is written
//! after the answer. ReleaseAddress gives a port back (scrubbed) instead of deleting it;
//! the pool trims itself back to its size in the background and is drained when Docker
//! removes the network.
//!
//! A network's pool is sized by what its starts use: it keeps `port_pool_size` ports (the
//! floor) and doubles, up to `port_pool_max` (the ceiling), each time a start finds it
//! empty; after a quiet while it goes back to the floor. A start that finds it empty
//! waits for the bulk refill under way rather than make a port of its own: it holds
//! Docker's lock of the network, so every start behind it would wait for that create too.
//!
//! A pool port holds one address on each kuryr subnet of its network (dual stack: a v4
//! and a v6 one), so the two RequestAddress calls of a dual-stack endpoint get one port,
//! and the network's security groups, so a start keeps it as it is.
//!
//! The pool also plugs its ports ahead of use (veth endpoints): each has its veth on the
//! host, bound, so Neutron's agent (or ovn-controller) has filtered it and reported it
//! ACTIVE before a start takes it; a start with `vif_plugging_is_fatal` waits for ACTIVE
//! with one read. The veth's alias says `pool` until CreateEndpoint hands it over.
//!
//! Which pool port is free is known without Neutron: a port is taken from the moment its
//! host veth `tap<port>` serves an endpoint (its alias names it; CreateEndpoint writes it
//! before answering), so after a crash or restart the ports read back by name
//! (`kuryr-pool-port`, bound to this host, no device_id) are free only if this host has
//! no veth of theirs, or one plugged ahead.

use std::collections::{HashMap, HashSet, VecDeque};

use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::host::Plumbing;
use crate::names;
use crate::neutron::{
    Filters, FixedIpAsk, NetworkId, Neutron, NeutronError, NewPort, Port, PortBody, PortId, Subnet,
};

pub const POOL_PORT_NAME: &str = "kuryr-pool-port";

/// How long a start that found the pool empty waits for the refill under way before it
/// makes a port of its own (a refill that fails ends the wait at once).
const REFILL_WAIT: Duration = Duration::from_secs(10);
/// A grown pool goes back to its floor once no start has found it empty for this long.
const SHRINK_AFTER: Duration = Duration::from_secs(600);
/// Ports per bulk request: a large refill lands in parts, so waiting starts get the
/// first ones sooner.
const FILL_CHUNK: usize = 10;
/// How long a refill waits for one bulk create. Neutron completes a bulk create it has
/// begun even if the client gives up: under a burst on 2 cores one took up to 50 s here,
/// and a refill given up on at `[neutron] timeout` (30 s) left its 10 ports bound to the
/// host and unused (until the network goes, a restart or `kuryr gc`), while the starts
/// behind it made ports of their own.
pub const BULK_TIMEOUT: Duration = Duration::from_secs(120);
/// Deletes in flight when a network's pool is drained: DeleteNetwork waits for them, and
/// a pool grown by bursts holds up to `port_pool_max` ports.
const DRAIN_CONCURRENCY: usize = 8;

/// What a pool needs of its host: the name Neutron binds to, and its veths.
pub struct PoolHost {
    pub host: String,
    /// Neutron keeps tags given at create (ML2 `tag_ports_during_bulk_creation`).
    pub tags_at_create: bool,
    /// Pool ports are plugged ahead of use (veth endpoints).
    pub plug_ahead: bool,
    pub plumbing: Arc<dyn Plumbing>,
}

/// Per-network state; a network's pool holds ports with one address per kuryr subnet.
#[derive(Default)]
struct NetPool {
    free: VecDeque<Port>,
    /// The kuryr subnets a port of this network gets an address on.
    subnets: Vec<Subnet>,
    /// The network's security groups, sorted (empty: the project's default group).
    groups: Vec<String>,
    loaded: bool,
    refilling: bool,
    /// Ports to keep ready now (0: the floor); grown by bursts.
    target: usize,
    /// When a start last found the pool empty.
    grown_at: Option<Instant>,
    /// A refill has brought the pool to its target: a start that finds it empty now is
    /// one of a burst, not the first on a pool never filled.
    filled: bool,
    /// The pool went back to its floor: the next refill check deletes what it grew.
    shrunk: bool,
    /// Docker is removing the network: ports coming back are deleted instead.
    closed: bool,
    /// Ports Neutron could not bind when they were made (agent down): rebound at the next
    /// refill, never handed out before.
    broken: Vec<Port>,
}

pub struct PortPool {
    /// Ports kept ready per network when idle (`port_pool_size`; 0: no pool).
    floor: usize,
    /// The most a network's pool grows to under bursts (`port_pool_max`).
    ceiling: usize,
    host: PoolHost,
    nets: Mutex<HashMap<String, NetPool>>,
}

/// What a port of a network's pool is made with: an address on each of `subnets`, and
/// `groups` (empty: the project's default group).
#[derive(Clone, Copy)]
pub struct PoolAsk<'a> {
    pub subnets: &'a [Subnet],
    pub groups: &'a [String],
}

fn sorted(groups: &[String]) -> Vec<String> {
    let mut g = groups.to_vec();
    g.sort();
    g.dedup();
    g
}

/// Subnets kuryr's network driver made get a pool (not adopted ones, not IPAM-only).
/// A pool port no endpoint or attachment has taken (as Neutron shows it).
pub fn is_free_pool_port(p: &Port) -> bool {
    p.name == POOL_PORT_NAME && p.device_id.is_empty()
}

pub fn eligible(subnet: &Subnet) -> bool {
    subnet.name.starts_with(names::SUBNET_NAME_PREFIX)
}

/// The body of a port bound to `host` with an address on each of `subnets`.
pub fn bound_port_body(
    name: &str,
    network_id: &NetworkId,
    ask: PoolAsk<'_>,
    host: &PoolHost,
) -> NewPort {
    NewPort {
        network_id: network_id.clone(),
        port: PortBody {
            name: Some(name.to_string()),
            admin_state_up: Some(true),
            fixed_ips: Some(
                ask.subnets
                    .iter()
                    .map(|s| FixedIpAsk {
                        subnet_id: s.id.clone(),
                        ip_address: None,
                    })
                    .collect(),
            ),
            host_id: Some(host.host.clone()),
            device_owner: Some(names::DEVICE_OWNER.to_string()),
            security_groups: (!ask.groups.is_empty()).then(|| ask.groups.to_vec()),
            tags: host
                .tags_at_create
                .then(|| vec![names::TAG_KURYR_PORT.to_string()]),
            ..PortBody::default()
        },
    }
}

impl PortPool {
    pub fn new(floor: usize, ceiling: usize, host: PoolHost) -> Arc<Self> {
        Arc::new(PortPool {
            floor,
            ceiling: ceiling.max(floor),
            host,
            nets: Mutex::new(HashMap::new()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.floor > 0
    }

    /// Whether pool ports are plugged on the host ahead of use.
    pub fn plugs_ahead(&self) -> bool {
        self.enabled() && self.host.plug_ahead
    }

    /// Plugs a pool port's veth ahead of use; a port that cannot be plugged stays in the
    /// pool unplugged (the start that takes it plugs it, as without plugging ahead).
    async fn plug_ahead(&self, p: &Port) {
        if !self.host.plug_ahead {
            return;
        }
        let req = crate::host::PlugRequest {
            bind: super::endpoint::bind_context(p, crate::host::PLUGGED_AHEAD, &p.project_id),
            mtu: None,
            netns: None,
        };
        if let Err(e) = self.host.plumbing.plug(&req).await {
            tracing::warn!(port = %p.id, error = %e, "cannot plug a pool port ahead; the start that takes it plugs it");
        }
    }

    /// Deletes a pool port nobody will use, and the veth it was plugged ahead with; one
    /// that stays is `kuryr gc`'s, and said so.
    async fn discard(&self, neutron: &Neutron, p: &Port) {
        if self.host.plug_ahead {
            let ahead = Some(Some(crate::host::PLUGGED_AHEAD.to_string()));
            if matches!(self.host.plumbing.veth_endpoint(&p.id).await, Ok(e) if e == ahead) {
                let bind =
                    super::endpoint::bind_context(p, crate::host::PLUGGED_AHEAD, &p.project_id);
                if let Err(e) = self.host.plumbing.unplug(&bind).await {
                    tracing::warn!(port = %p.id, error = %e, "cannot unplug a pool port's veth");
                }
            }
        }
        if let Err(e) = neutron.delete_if_exists::<Port>(&p.id).await {
            tracing::warn!(port = %p.id, error = %e, "cannot delete a pool port nobody uses; kuryr gc will find it");
        }
    }

    /// How many ports the network's pool keeps now: the floor, or more since a burst,
    /// back to the floor after a quiet while.
    fn target(&self, p: &mut NetPool) -> usize {
        if p.grown_at.is_some_and(|t| t.elapsed() >= SHRINK_AFTER) {
            p.target = 0;
            p.grown_at = None;
            p.shrunk = true;
        }
        p.target.clamp(self.floor, self.ceiling)
    }

    /// A start found the pool empty: keep twice as many (up to the ceiling).
    fn grow(&self, p: &mut NetPool) {
        p.target = (self.target(p) * 2).clamp(self.floor, self.ceiling);
        p.grown_at = Some(Instant::now());
    }

    /// As if the network's last burst were long past (tests: the shrink without the wait).
    #[cfg(test)]
    pub fn forget_burst(&self, network_id: &str) {
        self.with(network_id, |p| {
            p.grown_at = p.grown_at.and_then(|t| t.checked_sub(SHRINK_AFTER));
        });
    }

    /// Ports the network's pool keeps now (what a refill tops it up to).
    pub fn target_of(&self, network_id: &str) -> usize {
        self.with(network_id, |p| self.target(p))
            .unwrap_or(self.floor)
    }

    /// The body of a port bound to this host as `ask` says.
    pub fn bound_body(&self, name: &str, network_id: &NetworkId, ask: PoolAsk<'_>) -> NewPort {
        bound_port_body(name, network_id, ask, &self.host)
    }

    fn with<T>(&self, network_id: &str, f: impl FnOnce(&mut NetPool) -> T) -> Option<T> {
        let mut nets = self.nets.lock().ok()?;
        Some(f(nets.entry(network_id.to_string()).or_default()))
    }

    /// The port is free in the network's pool already.
    fn holds(n: &NetPool, port: &Port) -> bool {
        n.free.iter().any(|f| f.id == port.id)
    }

    /// As [`Self::with`], for a network the pool still knows (a drained one is gone).
    fn known<T>(&self, network_id: &str, f: impl FnOnce(&mut NetPool) -> T) -> Option<T> {
        let mut nets = self.nets.lock().ok()?;
        nets.get_mut(network_id).map(f)
    }

    /// A ready port of the network; `ask` says the subnets a port of the caller gets an
    /// address on (a Docker network's kuryr subnets, a CNI config's) and its groups. A
    /// network's pool serves one ask, the first: callers asking otherwise get nothing.
    /// An empty pool grows, and the call waits (a bounded while) for the ports its refill
    /// makes.
    pub async fn take(self: &Arc<Self>, neutron: &Neutron, ask: PoolAsk<'_>) -> Option<Port> {
        let subnets = ask.subnets;
        let network_id = &subnets.first()?.network_id;
        let same = self.with(network_id, |p| Self::serves(p, ask));
        if same != Some(true) {
            return None;
        }
        if !self.with(network_id, |p| p.loaded).unwrap_or(true) {
            // First start on this network since kuryr started: read the pool back (a
            // list, much cheaper than a create).
            if let Err(e) = self.load(neutron, network_id).await {
                tracing::warn!(network = %network_id, error = %e, "cannot read the port pool back");
            }
        }
        if let Some(p) = self.pop(network_id) {
            return Some(p);
        }
        // Starts outran the pool: it grows, and this start waits for the refill. The
        // first start on a pool never filled waits only for a refill already under way
        // (the network's first); with none, it makes its own port: one create is quicker
        // than a whole pool's.
        let (burst, under_way) = self
            .with(network_id, |p| {
                if p.filled {
                    self.grow(p);
                }
                (p.filled, p.refilling)
            })
            .unwrap_or((false, false));
        self.refill(neutron, ask);
        if !burst && !under_way {
            return None;
        }
        // Leaves the caller time to make its own port within its call's deadline.
        let wait = crate::deadline::remaining()
            .map_or(REFILL_WAIT, |left| {
                left.saturating_sub(Duration::from_secs(5))
            })
            .min(REFILL_WAIT);
        let until = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = self.pop(network_id) {
                return Some(p);
            }
            let refilling = self.known(network_id, |p| p.refilling).unwrap_or(false);
            if !refilling || tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the network's pool serves `ask` (the first ask sets what it serves).
    fn serves(p: &mut NetPool, ask: PoolAsk<'_>) -> bool {
        if p.subnets.is_empty() {
            p.subnets = ask.subnets.to_vec();
            p.groups = sorted(ask.groups);
        }
        p.subnets.len() == ask.subnets.len()
            && p.subnets.iter().zip(ask.subnets).all(|(a, b)| a.id == b.id)
            && p.groups == sorted(ask.groups)
    }

    fn pop(&self, network_id: &str) -> Option<Port> {
        self.with(network_id, |p| p.free.pop_front()).flatten()
    }

    pub fn available(&self, network_id: &str) -> usize {
        self.with(network_id, |p| p.free.len()).unwrap_or(0)
    }

    /// Tops the network's pool up in the background once it is half empty, in bulk
    /// requests, so refills stay rare and off Neutron's busy moments. Which subnets get a
    /// pool is the caller's choice (see [`eligible`] for Docker's networks).
    pub fn refill(self: &Arc<Self>, neutron: &Neutron, ask: PoolAsk<'_>) {
        let Some(first) = ask.subnets.first() else {
            return;
        };
        if !self.enabled() {
            return;
        }
        let network_id = first.network_id.clone();
        let (start, surplus) = self
            .with(&network_id, |p| {
                if !Self::serves(p, ask) {
                    return (false, Vec::new());
                }
                let target = self.target(p);
                let low = !p.loaded || p.free.len() * 2 <= target || !p.broken.is_empty();
                let go = low && !p.refilling && !p.closed;
                if go {
                    p.refilling = true;
                }
                // A pool back at its floor after a quiet while gives up what a burst grew
                // (only then: ports given back side by side may overshoot a little).
                let surplus: Vec<Port> = match std::mem::take(&mut p.shrunk) {
                    true => p.free.drain(target.min(p.free.len())..).collect(),
                    false => Vec::new(),
                };
                (go, surplus)
            })
            .unwrap_or_default();
        if !surplus.is_empty() {
            tracing::info!(network = %network_id, count = surplus.len(), "port pool back at its floor: deleting the ports a burst grew");
            let (pool, neutron) = (self.clone(), neutron.clone());
            tokio::spawn(async move {
                for p in surplus {
                    pool.discard(&neutron, &p).await;
                }
            });
        }
        if !start {
            return;
        }
        let (pool, neutron) = (self.clone(), neutron.clone());
        tokio::spawn(async move {
            loop {
                match pool.fill(&neutron, &network_id).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(network = %network_id, error = %e, "port pool refill failed");
                        break;
                    }
                }
                // Starts that came while it ran (or a pool grown meanwhile) may want more.
                let again = pool
                    .known(&network_id, |p| {
                        !p.closed && p.free.len() * 2 <= pool.target(p)
                    })
                    .unwrap_or(false);
                if !again {
                    break;
                }
            }
            pool.known(&network_id, |p| p.refilling = false);
        });
    }

    /// Reads back the pool ports an earlier process left on the network, once: bound to
    /// this host, no device_id, and no veth of theirs on this host but one plugged ahead
    /// (one whose veth serves an endpoint was handed to a container before a crash).
    pub async fn load(&self, neutron: &Neutron, network_id: &str) -> Result<(), NeutronError> {
        let first = self
            .with(network_id, |p| !std::mem::replace(&mut p.loaded, true))
            .unwrap_or(false);
        if !first || !self.enabled() {
            return Ok(());
        }
        let left: Vec<Port> = neutron
            .list(
                &Filters::new()
                    .add("name", POOL_PORT_NAME)
                    .add("network_id", network_id)
                    .add("binding:host_id", self.host.host.as_str()),
            )
            .await?;
        let mut free = Vec::new();
        for p in left.into_iter().filter(|p| p.device_id.is_empty()) {
            match self.host.plumbing.veth_endpoint(&p.id).await {
                Ok(None) => free.push(p),
                Ok(Some(Some(ep))) if ep == crate::host::PLUGGED_AHEAD => free.push(p),
                Ok(Some(_)) => {
                    tracing::info!(port = %p.id, "pool port has a veth here: taken before a restart")
                }
                Err(e) => {
                    tracing::warn!(port = %p.id, error = %e, "cannot tell whether the pool port is taken")
                }
            }
        }
        self.with(network_id, |pool| {
            for p in free {
                if !pool.free.iter().any(|x| x.id == p.id) {
                    if p.vif_type.is_bound() {
                        pool.free.push_back(p);
                    } else {
                        pool.broken.push(p);
                    }
                }
            }
        });
        Ok(())
    }

    /// Tops the pool up to its target; how many ports it added (bound ones).
    async fn fill(&self, neutron: &Neutron, network_id: &str) -> Result<usize, NeutronError> {
        self.load(neutron, network_id).await?;
        self.repair(neutron, network_id).await;
        let mut added = 0;
        loop {
            let Some((missing, subnets, groups, closed)) = self.known(network_id, |p| {
                let missing = self.target(p).saturating_sub(p.free.len());
                (missing, p.subnets.clone(), p.groups.clone(), p.closed)
            }) else {
                return Ok(added);
            };
            if missing == 0 {
                self.known(network_id, |p| p.filled = true);
            }
            if missing == 0 || subnets.is_empty() || closed {
                return Ok(added);
            }
            let net = NetworkId::from(network_id);
            let ask = PoolAsk {
                subnets: &subnets,
                groups: &groups,
            };
            let body: Vec<_> = (0..missing.min(FILL_CHUNK))
                .map(|_| bound_port_body(POOL_PORT_NAME, &net, ask, &self.host))
                .collect();
            // Bound to this host in the same bulk request.
            let made: Vec<Port> = neutron.patient(BULK_TIMEOUT).create_bulk(body).await?;
            tracing::debug!(network = %network_id, count = made.len(), "port pool refilled");
            for p in made.iter().filter(|p| p.vif_type.is_bound()) {
                self.plug_ahead(p).await;
            }
            let closed = self.known(network_id, |p| p.closed).unwrap_or(true);
            if closed {
                for p in made {
                    self.discard(neutron, &p).await;
                }
                return Ok(added);
            }
            // Ports given back while the request ran may have filled the pool: what lands
            // beyond its target goes.
            let (bound, surplus) = self
                .known(network_id, |pool| {
                    let (mut bound, mut surplus) = (0, Vec::new());
                    let target = self.target(pool);
                    for p in made {
                        if !p.vif_type.is_bound() {
                            tracing::warn!(port = %p.id, vif_type = %p.vif_type, "pool port not bound (L2 agent down?): kept back, rebound at the next refill");
                            pool.broken.push(p);
                        } else if pool.free.len() < target {
                            pool.free.push_back(p);
                            bound += 1;
                        } else {
                            surplus.push(p);
                        }
                    }
                    (bound, surplus)
                })
                .unwrap_or_default();
            for p in &surplus {
                self.discard(neutron, p).await;
            }
            added += bound;
            // Ports Neutron cannot bind now wait for the next refill, not this one.
            if bound == 0 {
                return Ok(added);
            }
        }
    }

    /// Binds again the ports Neutron could not bind when they were made; those it binds
    /// now join the pool.
    async fn repair(&self, neutron: &Neutron, network_id: &str) {
        let broken = self
            .with(network_id, |p| std::mem::take(&mut p.broken))
            .unwrap_or_default();
        for p in broken {
            // Unbind, then bind: Neutron retries the mechanism drivers on a new host_id.
            let rebound = async {
                neutron.update::<Port>(&p.id, PortBody::unbind()).await?;
                neutron
                    .update::<Port>(
                        &p.id,
                        PortBody {
                            host_id: Some(self.host.host.clone()),
                            ..PortBody::default()
                        },
                    )
                    .await
            }
            .await;
            match rebound {
                Ok(q) if q.vif_type.is_bound() => {
                    self.plug_ahead(&q).await;
                    self.with(network_id, |pool| pool.free.push_back(q));
                }
                Ok(q) => {
                    self.with(network_id, |pool| pool.broken.push(q));
                }
                Err(e) => {
                    tracing::warn!(port = %p.id, error = %e, "cannot rebind pool port");
                    self.with(network_id, |pool| pool.broken.push(p));
                }
            }
        }
    }

    /// A released port back in the pool, once it is scrubbed of its endpoint (name,
    /// device_id, tags); callers run it off ReleaseAddress's path. Beyond the pool's
    /// size, or on a network being removed, the port is deleted instead.
    pub async fn give_back(&self, neutron: &Neutron, port: Port) {
        let pool = self;
        if pool
            .known(port.network_id.as_str(), |n| Self::holds(n, &port))
            .unwrap_or(false)
        {
            // Given back twice (two DELs of one attachment): it is free and plugged.
            return;
        }
        {
            let network_id = port.network_id.clone();
            let keep = pool
                .with(&network_id, |p| !p.closed && p.free.len() < pool.target(p))
                .unwrap_or(false);
            // A port with a container's own groups or policy is not handed to another container.
            if !keep || port.tags.iter().any(|t| t == names::TAG_PORT_OWN) {
                if let Err(e) = neutron.delete_if_exists::<Port>(&port.id).await {
                    tracing::warn!(port = %port.id, error = %e, "cannot delete released port");
                }
                return;
            }
            let clean = port.name == POOL_PORT_NAME
                && port.device_id.is_empty()
                && names::id_from_tags(&port.tags).is_none();
            if clean && port.vif_type.is_bound() {
                // Never claimed in Neutron (its endpoint went before its bookkeeping).
                pool.keep_or_discard(neutron, port).await;
                return;
            }
            let body = PortBody {
                name: Some(POOL_PORT_NAME.to_string()),
                device_id: Some(String::new()),
                ..PortBody::default()
            };
            let tags = [names::TAG_KURYR_PORT.to_string()];
            let scrubbed = neutron
                .update_port_then_tags(&port.id, body, Some(&tags))
                .await;
            match scrubbed {
                Ok(p) if p.vif_type.is_bound() => pool.keep_or_discard(neutron, p).await,
                Ok(p) => {
                    pool.with(&network_id, |n| n.broken.push(p));
                }
                Err(e) => {
                    tracing::warn!(port = %port.id, error = %e.error, "cannot give port back to the pool; deleting it");
                    pool.discard(neutron, &port).await;
                }
            }
        }
    }

    /// A port coming back, plugged ahead (when the pool does) and kept free, unless the
    /// pool filled meanwhile (other ports given back, a refill landed) or is closing:
    /// then it goes.
    async fn keep_or_discard(&self, neutron: &Neutron, port: Port) {
        if self
            .known(port.network_id.as_str(), |n| Self::holds(n, &port))
            .unwrap_or(false)
        {
            return;
        }
        self.plug_ahead(&port).await;
        let kept = self.with(port.network_id.as_str(), |n| {
            if Self::holds(n, &port) {
                return true;
            }
            let keep = !n.closed && n.free.len() < self.target(n);
            if keep {
                n.free.push_back(port.clone());
            }
            keep
        });
        if !kept.unwrap_or(false) {
            self.discard(neutron, &port).await;
        }
    }

    /// Deletes this host's pool ports of a network (before its subnets or itself go).
    pub async fn drain(&self, neutron: &Neutron, network_id: &str) {
        let queued: Vec<Port> = self
            .with(network_id, |p| {
                p.closed = true;
                p.free.drain(..).chain(p.broken.drain(..)).collect()
            })
            .unwrap_or_default();
        let ports: Vec<Port> = match neutron
            .list(
                &Filters::new()
                    .add("name", POOL_PORT_NAME)
                    .add("network_id", network_id)
                    .add("binding:host_id", self.host.host.as_str()),
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                return tracing::warn!(network = %network_id, error = %e, "cannot list pool ports")
            }
        };
        let mut seen: HashSet<PortId> = HashSet::new();
        let left = ports.into_iter().filter(|p| p.device_id.is_empty());
        let all: Vec<Port> = queued
            .into_iter()
            .chain(left)
            .filter(|p| seen.insert(p.id.clone()))
            .collect();
        futures::stream::iter(all)
            .for_each_concurrent(DRAIN_CONCURRENCY, |p| async move {
                self.discard(neutron, &p).await;
            })
            .await;
        // Nothing of the network is kept (the maps would only grow); a refill that lands
        // late fails in Neutron, whose network is gone.
        if let Ok(mut m) = self.nets.lock() {
            m.remove(network_id);
        }
    }
}
