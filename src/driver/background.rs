//! Work that follows a libnetwork call instead of delaying its answer: an endpoint's
//! bookkeeping on its port (device_id, name, tags) after CreateEndpoint answered, a
//! released port scrubbed back into the pool, a port status refreshed for
//! EndpointOperInfo. Per port, such work runs in order, and a later call that touches
//! the port (DeleteEndpoint, ReleaseAddress, ...) first waits for it to finish
//! (`settle`), so Neutron never sees the steps of one port out of order.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// How long a call waits for a port's background work before going on anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

#[derive(Default)]
pub(crate) struct Background {
    /// Port id -> a receiver that closes when the port's last queued work has finished.
    inflight: Mutex<HashMap<String, watch::Receiver<()>>>,
}

impl Background {
    /// Runs `work` for `port` once what was queued for it before has finished.
    pub fn spawn<F>(self: &Arc<Self>, port: &str, work: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = watch::channel(());
        let before = match self.inflight.lock() {
            Ok(mut m) => m.insert(port.to_string(), rx.clone()),
            Err(_) => None,
        };
        let (me, port) = (self.clone(), port.to_string());
        tokio::spawn(async move {
            if let Some(mut b) = before {
                // Closed (Err) once the earlier work's sender is dropped.
                let _ = b.changed().await;
            }
            work.await;
            drop(tx);
            if let Ok(mut m) = me.inflight.lock() {
                if m.get(&port).is_some_and(|r| r.same_channel(&rx)) {
                    m.remove(&port);
                }
            }
        })
    }

    /// Waits until no work is queued for `port` (at most a bounded while).
    pub async fn settle(&self, port: &str) {
        let rx = self.inflight.lock().ok().and_then(|m| m.get(port).cloned());
        if let Some(mut rx) = rx {
            if tokio::time::timeout(SETTLE_LIMIT, rx.changed())
                .await
                .is_err()
            {
                tracing::warn!(port, "background work on the port still running; going on");
            }
        }
    }

    /// Ports with work queued or running.
    pub fn pending(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn work_of_one_port_runs_in_order_and_settle_waits_for_it() {
        let bg = Arc::new(Background::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let (o1, o2) = (order.clone(), order.clone());
        bg.spawn("p", async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            o1.lock().unwrap().push(1);
        });
        bg.spawn("p", async move {
            o2.lock().unwrap().push(2);
        });
        assert_eq!(bg.pending(), 1);
        bg.settle("p").await;
        assert_eq!(*order.lock().unwrap(), vec![1, 2]);
        // Other ports are not held up by p.
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        bg.spawn("q", async move {
            m.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        bg.settle("none").await;
        assert_eq!(bg.pending(), 0);
    }
}
