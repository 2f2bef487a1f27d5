//! Port pool (`port_pool_size`): ports made ahead of time on each kuryr subnet, so that
//! RequestAddress answers without a Neutron request and a container start does not wait
//! for a port create. Pool ports are found again after a restart by their name.
//!
//! Ports cannot change MAC once bound, so pool ports stay unbound: CreateEndpoint's one
//! update gives them Docker's MAC, the host binding and their usual name.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::names;
use crate::neutron::{Filters, Neutron, Port, Subnet};

pub const POOL_PORT_NAME: &str = "kuryr-pool-port";

pub struct PortPool {
    size: usize,
    free: Mutex<HashMap<String, VecDeque<Port>>>,
    /// Subnets with a refill in flight, and those whose leftovers were read back.
    busy: Mutex<HashSet<String>>,
    loaded: Mutex<HashSet<String>>,
    /// Networks being deleted: a refill that lands late gives its ports back.
    closed: Mutex<HashSet<String>>,
    /// Held by a refill while it runs, so a start can wait for ports already on the way
    /// rather than make one more.
    filling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PortPool {
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(PortPool {
            size,
            free: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
            loaded: Mutex::new(HashSet::new()),
            closed: Mutex::new(HashSet::new()),
            filling: Mutex::new(HashMap::new()),
        })
    }

    /// Subnets kuryr's network driver made get a pool (not adopted ones, not IPAM-only).
    pub fn eligible(subnet: &Subnet) -> bool {
        subnet.name.starts_with(names::SUBNET_NAME_PREFIX)
    }

    /// A ready port of the subnet, if any.
    pub fn take(&self, subnet_id: &str) -> Option<Port> {
        self.free.lock().ok()?.get_mut(subnet_id)?.pop_front()
    }

    fn fill_lock(&self, subnet_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.filling.lock() {
            Ok(mut m) => m.entry(subnet_id.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// A ready port, waiting (a bounded while) for a refill already under way.
    pub async fn take_or_wait(&self, subnet_id: &str) -> Option<Port> {
        if let Some(p) = self.take(subnet_id) {
            return Some(p);
        }
        let refilling = self
            .busy
            .lock()
            .map(|b| b.contains(subnet_id))
            .unwrap_or(false);
        if refilling {
            let lock = self.fill_lock(subnet_id);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), lock.lock()).await;
        }
        self.take(subnet_id)
    }

    pub fn available(&self, subnet_id: &str) -> usize {
        self.free
            .lock()
            .map(|m| m.get(subnet_id).map_or(0, |q| q.len()))
            .unwrap_or(0)
    }

    /// Tops the subnet's pool up in the background once it is half empty, in one bulk
    /// request, so refills stay rare and off Neutron's busy moments.
    pub fn refill(self: &Arc<Self>, neutron: &Neutron, subnet: &Subnet) {
        if self.size == 0 || !Self::eligible(subnet) {
            return;
        }
        if self.loaded(&subnet.id) && self.available(&subnet.id) * 2 > self.size {
            return;
        }
        {
            let Ok(mut busy) = self.busy.lock() else {
                return;
            };
            if !busy.insert(subnet.id.clone()) {
                return;
            }
        }
        let (pool, neutron, subnet) = (self.clone(), neutron.clone(), subnet.clone());
        // Taken before the task starts, so a start that sees the refill also waits for it.
        let filling = self.fill_lock(&subnet.id).try_lock_owned().ok();
        tokio::spawn(async move {
            let _filling = filling;
            if let Err(e) = pool.fill(&neutron, &subnet).await {
                tracing::warn!(subnet = %subnet.id, error = %e, "port pool refill failed");
            }
            if let Ok(mut busy) = pool.busy.lock() {
                busy.remove(&subnet.id);
            }
        });
    }

    /// Reads back the pool ports an earlier process left on the subnet, once.
    pub async fn load(
        &self,
        neutron: &Neutron,
        subnet: &Subnet,
    ) -> Result<(), crate::neutron::NeutronError> {
        let first = self
            .loaded
            .lock()
            .map(|mut l| l.insert(subnet.id.clone()))
            .unwrap_or(false);
        if !first || self.size == 0 {
            return Ok(());
        }
        let left: Vec<Port> = neutron
            .list(
                &Filters::new()
                    .add("name", POOL_PORT_NAME)
                    .add("network_id", &subnet.network_id)
                    .add("fixed_ips", format!("subnet_id={}", subnet.id)),
            )
            .await?;
        if let Ok(mut m) = self.free.lock() {
            let q = m.entry(subnet.id.clone()).or_default();
            for p in left.into_iter().filter(|p| p.device_id.is_empty()) {
                if !q.iter().any(|x| x.id == p.id) {
                    q.push_back(p);
                }
            }
        }
        Ok(())
    }

    pub fn loaded(&self, subnet_id: &str) -> bool {
        self.loaded
            .lock()
            .map(|l| l.contains(subnet_id))
            .unwrap_or(true)
    }

    async fn fill(
        &self,
        neutron: &Neutron,
        subnet: &Subnet,
    ) -> Result<(), crate::neutron::NeutronError> {
        self.load(neutron, subnet).await?;
        let missing = self.size.saturating_sub(self.available(&subnet.id));
        if missing == 0 {
            return Ok(());
        }
        let body: Vec<_> = (0..missing)
            .map(|_| {
                json!({
                    "name": POOL_PORT_NAME,
                    "admin_state_up": true,
                    "network_id": subnet.network_id,
                    "fixed_ips": [{"subnet_id": subnet.id}],
                })
            })
            .collect();
        // One bulk request for all of them.
        let made: Vec<Port> = neutron.create_bulk(body).await?;
        tracing::debug!(subnet = %subnet.id, count = made.len(), "port pool refilled");
        if self.is_closed(&subnet.network_id) {
            for p in made {
                let _ = neutron.delete_if_exists::<Port>(&p.id).await;
            }
            return Ok(());
        }
        if let Ok(mut m) = self.free.lock() {
            m.entry(subnet.id.clone()).or_default().extend(made);
        }
        Ok(())
    }

    fn is_closed(&self, network_id: &str) -> bool {
        self.closed
            .lock()
            .map(|c| c.contains(network_id))
            .unwrap_or(false)
    }

    /// Deletes the pool ports of a network (before its subnets or itself go).
    pub async fn drain(&self, neutron: &Neutron, network_id: &str) {
        if let Ok(mut c) = self.closed.lock() {
            c.insert(network_id.to_string());
        }
        if let Ok(mut m) = self.free.lock() {
            m.retain(|_, q| {
                q.retain(|p| p.network_id != network_id);
                !q.is_empty()
            });
        }
        let ports: Vec<Port> = match neutron
            .list(
                &Filters::new()
                    .add("name", POOL_PORT_NAME)
                    .add("network_id", network_id),
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                return tracing::warn!(network = %network_id, error = %e, "cannot list pool ports")
            }
        };
        for p in ports.into_iter().filter(|p| p.device_id.is_empty()) {
            if let Err(e) = neutron.delete_if_exists::<Port>(&p.id).await {
                tracing::warn!(port = %p.id, error = %e, "cannot delete pool port");
            }
        }
    }
}
