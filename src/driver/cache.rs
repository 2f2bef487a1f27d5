//! Facts learnt from Neutron that do not change while a Docker object lives: which Neutron
//! network backs a Docker network, a pool's CIDR and subnet, the port behind an address or
//! an endpoint. Lost on restart by design: every entry can be found again through tags.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::neutron::{NetworkId, Port, Subnet, SubnetId};

#[derive(Debug, Clone)]
pub struct NetInfo {
    pub neutron_id: NetworkId,
    pub mtu: Option<u32>,
    pub existing: bool,
    pub project_id: String,
    /// `provider:physical_network` (admin only; "" otherwise): where SR-IOV VFs are picked.
    pub physical_network: String,
    pub subnets: Vec<Subnet>,
    /// The groups its ports get (`kuryr.sg:` tags; empty: Neutron's default).
    pub security_groups: Vec<String>,
    /// The external network its containers get a floating IP from (`kuryr.fipnet:`).
    pub floating_network: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SubnetPoolInfo {
    pub cidr: String,
    pub subnet: Option<Subnet>,
    /// The gateway Docker was given before any subnet existed.
    pub gateway: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EndpointInfo {
    pub port: Port,
    pub network_id: String,
    /// True when this process knows the endpoint has no exposed-ports security group
    /// (it made the endpoint and never programmed one): Revoke then costs nothing.
    pub no_exposed_group: bool,
    /// When the port's status was last read from Neutron (EndpointOperInfo).
    pub status_read_at: Option<std::time::Instant>,
}

/// A small map behind a std mutex: never held across an await.
pub struct Map<K, V>(Mutex<HashMap<K, V>>);

impl<K: Eq + Hash, V: Clone> Default for Map<K, V> {
    fn default() -> Self {
        Map(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash, V: Clone> Map<K, V> {
    pub fn get(&self, k: &K) -> Option<V> {
        self.0.lock().ok()?.get(k).cloned()
    }
    pub fn put(&self, k: K, v: V) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(k, v);
        }
    }
    /// Changes an entry that exists; never adds one.
    pub fn update(&self, k: &K, f: impl FnOnce(&mut V)) {
        if let Ok(mut m) = self.0.lock() {
            if let Some(v) = m.get_mut(k) {
                f(v);
            }
        }
    }
    pub fn remove(&self, k: &K) -> Option<V> {
        self.0.lock().ok()?.remove(k)
    }
    /// A value that matches `f`.
    pub fn find(&self, f: impl Fn(&V) -> bool) -> Option<V> {
        self.0.lock().ok()?.values().find(|v| f(v)).cloned()
    }
    /// Keys of the entries whose value matches `f`.
    pub fn keys_where(&self, f: impl Fn(&V) -> bool) -> Vec<K>
    where
        K: Clone,
    {
        match self.0.lock() {
            Ok(m) => m
                .iter()
                .filter(|(_, v)| f(v))
                .map(|(k, _)| k.clone())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
    /// Drops every entry for which `f` is false.
    pub fn retain(&self, f: impl FnMut(&K, &mut V) -> bool) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(f);
        }
    }
    pub fn clear(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

#[derive(Default)]
pub struct Cache {
    /// Docker network id -> Neutron network facts.
    pub networks: Map<String, NetInfo>,
    /// Subnetpool id (a Docker IPAM pool) -> CIDR and (once made) its subnet.
    pub subnetpools: Map<String, SubnetPoolInfo>,
    /// Subnetpool name -> id (kuryr pools, found or made by RequestPool).
    pub subnetpool_names: Map<String, String>,
    /// (subnet id, IP) -> the port IPAM reserved or adopted for it.
    pub addresses: Map<(SubnetId, String), Port>,
    /// Neutron network id -> its subnets and its groups (networks this process did not create or see
    /// CreateNetwork for, e.g. after a restart).
    pub network_subnets: Map<NetworkId, (Vec<Subnet>, Vec<String>)>,
    /// Docker endpoint id -> its port.
    pub endpoints: Map<String, EndpointInfo>,
    /// A CNI config's Neutron objects, by what the config names.
    pub cni_targets: Map<String, super::cni_target::KeptTarget>,
}

impl Cache {
    /// Forgets everything: the next calls read Neutron again (the cold path).
    pub fn clear(&self) {
        self.networks.clear();
        self.subnetpools.clear();
        self.subnetpool_names.clear();
        self.addresses.clear();
        self.network_subnets.clear();
        self.endpoints.clear();
        self.cni_targets.clear();
    }
}

/// Per-key async locks: serialise find-or-create on one key (a pool CIDR, a Docker id)
/// without serialising unrelated calls.
#[derive(Default)]
pub struct KeyedLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let m = {
            let mut map = match self.0.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = m.clone().lock_owned().await;
        KeyGuard {
            locks: self,
            key: key.to_string(),
            _guard: guard,
        }
    }
}

pub struct KeyGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        // Forget the lock when nobody else holds or waits for it, so the map stays small.
        let mut map = match self.locks.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(m) = map.get(&self.key) {
            // 2 = the map's reference + ours (the guard holds an Arc clone).
            if Arc::strong_count(m) <= 2 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyed_lock_serialises_one_key_only() {
        let locks = Arc::new(KeyedLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (locks, inside, max) = (locks.clone(), inside.clone(), max.clone());
            tasks.push(tokio::spawn(async move {
                let _g = locks.lock("k").await;
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        // Another key is not blocked by "k".
        let _other = locks.lock("other").await;
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
        drop(_other);
        assert!(locks.0.lock().unwrap().is_empty());
    }
}
