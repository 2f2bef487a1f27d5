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

use tokio::sync::{watch, Notify};

/// How long a call waits for a port's background work before going on anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

#[derive(Default)]
pub(crate) struct Background {
    /// Port id -> a receiver that closes when the port's last queued work has finished.
    inflight: Mutex<HashMap<String, watch::Receiver<()>>>,
    /// Port id -> the wake-up of delayed work that has not started yet.
    delayed: Mutex<HashMap<String, Arc<Notify>>>,
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

    /// Runs `work` for `port` after `delay`, unless `cancel` comes first (the work is then
    /// never done).
    pub fn spawn_after<F>(self: &Arc<Self>, port: &str, delay: Duration, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let wake = Arc::new(Notify::new());
        if let Ok(mut m) = self.delayed.lock() {
            m.insert(port.to_string(), wake.clone());
        }
        let (me, id) = (self.clone(), port.to_string());
        self.spawn(port, async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wake.notified() => {}
            }
            // Taken out by `cancel` when it came first.
            let go = me
                .delayed
                .lock()
                .map(|mut m| match m.get(&id) {
                    Some(w) if Arc::ptr_eq(w, &wake) => m.remove(&id).is_some(),
                    _ => false,
                })
                .unwrap_or(false);
            if go {
                work.await;
            }
        });
    }

    /// Cancels `port`'s delayed work if it has not started; true if it was cancelled.
    pub fn cancel(&self, port: &str) -> bool {
        let wake = self.delayed.lock().ok().and_then(|mut m| m.remove(port));
        match wake {
            Some(w) => {
                w.notify_one();
                true
            }
            None => false,
        }
    }

    /// Starts every delayed work now and waits for all work to finish (a stopping
    /// kuryr leaves no endpoint without its bookkeeping).
    pub async fn flush(&self) {
        let wakes: Vec<Arc<Notify>> = self
            .delayed
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for w in wakes {
            w.notify_one();
        }
        let ports: Vec<String> = self
            .inflight
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for p in ports {
            self.settle(&p).await;
        }
    }

    /// Starts `port`'s delayed work now, if it waits, and waits for the port's work to
    /// finish (at most a bounded while).
    pub async fn hurry(&self, port: &str) {
        let wake = self.delayed.lock().ok().and_then(|m| m.get(port).cloned());
        if let Some(w) = wake {
            w.notify_one();
        }
        self.settle(port).await;
    }

    /// Waits until no work is queued for `port` (at most a bounded while); true if there
    /// was some, so what the caller read of the port before may be out of date.
    pub async fn settle(&self, port: &str) -> bool {
        let rx = self.inflight.lock().ok().and_then(|m| m.get(port).cloned());
        let Some(mut rx) = rx else {
            return false;
        };
        if tokio::time::timeout(SETTLE_LIMIT, rx.changed())
            .await
            .is_err()
        {
            tracing::warn!(port, "background work on the port still running; going on");
        }
        true
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

    #[tokio::test]
    async fn delayed_work_runs_unless_cancelled_first() {
        let bg = Arc::new(Background::default());
        let n = Arc::new(AtomicUsize::new(0));
        let (a, b) = (n.clone(), n.clone());
        bg.spawn_after("p", Duration::from_millis(10), async move {
            a.fetch_add(1, Ordering::SeqCst);
        });
        bg.spawn_after("q", Duration::from_secs(60), async move {
            b.fetch_add(10, Ordering::SeqCst);
        });
        assert!(bg.cancel("q"), "q had not started");
        bg.settle("q").await;
        bg.settle("p").await;
        assert_eq!(n.load(Ordering::SeqCst), 1, "p ran, q did not");
        assert!(!bg.cancel("p"), "p is done: nothing to cancel");
    }

    #[tokio::test]
    async fn flush_runs_delayed_work_now() {
        let bg = Arc::new(Background::default());
        let n = Arc::new(AtomicUsize::new(0));
        let a = n.clone();
        bg.spawn_after("p", Duration::from_secs(60), async move {
            a.fetch_add(1, Ordering::SeqCst);
        });
        tokio::time::timeout(Duration::from_secs(5), bg.flush())
            .await
            .expect("flush waited for the delay");
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}
