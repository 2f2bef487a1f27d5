//! The daemon's watch on Podman's network store: `podman network rm` deletes the
//! network's file and calls no plugin, so the store, read every few seconds, is how the
//! daemon learns that the Neutron network it made for a Podman network can go.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::driver::Driver;
use crate::service::App;

/// How often the store is read.
const EVERY: Duration = Duration::from_secs(5);

/// The Podman networks of driver kuryr known to exist: what the store had at the last
/// read, and what `create` made since.
pub struct StoreWatch {
    dir: PathBuf,
    known: Mutex<HashSet<String>>,
}

impl StoreWatch {
    /// Watching `dir`; what it holds now is the baseline (nothing is judged against an
    /// empty set: a network removed while kuryr was down is `kuryr gc`'s).
    pub fn new(dir: PathBuf) -> Arc<Self> {
        let known = super::store::network_ids(&dir, Some("kuryr")).unwrap_or_default();
        Arc::new(StoreWatch {
            dir,
            known: Mutex::new(known),
        })
    }

    /// `create` answered Podman for this network: Podman stores it next.
    pub fn made(&self, podman_id: &str) {
        if let Ok(mut k) = self.known.lock() {
            k.insert(podman_id.to_string());
        }
    }

    /// The known networks the store no longer has; they stop being known.
    fn gone(&self) -> Vec<String> {
        let Some(now) = super::store::network_ids(&self.dir, Some("kuryr")) else {
            return Vec::new();
        };
        let Ok(mut known) = self.known.lock() else {
            return Vec::new();
        };
        let gone: Vec<String> = known.difference(&now).cloned().collect();
        known.extend(now);
        for g in &gone {
            known.remove(g);
        }
        gone
    }

    /// Removes the Neutron network kuryr made for each known Podman network gone from the
    /// store; a removal that fails is tried again at the next sweep.
    pub async fn sweep(&self, d: &Driver) {
        for gone in self.gone() {
            match d
                .remove_made_networks(&crate::names::netavark_net_tag(&gone))
                .await
            {
                Ok(ids) => {
                    for id in ids {
                        tracing::info!(podman_network = %gone, neutron_network = %id, "a Podman network is gone: the Neutron network kuryr made for it is removed");
                    }
                }
                Err(e) => {
                    tracing::warn!(podman_network = %gone, error = %e, "cannot remove the Neutron network of a Podman network that is gone; trying again");
                    self.made(&gone);
                }
            }
        }
    }

    /// Sweeps every few seconds while the daemon runs.
    pub fn spawn(self: Arc<Self>, service: App) {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(EVERY);
            loop {
                every.tick().await;
                if let Some(d) = service.driver_within(Duration::ZERO).await {
                    self.sweep(d).await;
                }
            }
        });
    }
}
