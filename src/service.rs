//! The daemon's handle on the core that every front-end serves (the libnetwork server,
//! the CNI daemon): the configuration at once, the driver once Neutron has answered.

use std::sync::{Arc, Mutex, OnceLock};

use crate::config::Config;
use crate::driver::Driver;

/// What the listeners serve: the configuration at once, and the driver once Neutron has
/// answered. kuryr listens before Neutron answers (at boot Neutron may come up after
/// dockerd): calls that need no Neutron are answered, the others get a clear `Err`.
pub struct Service {
    cfg: Arc<Config>,
    driver: OnceLock<Arc<Driver>>,
    /// Why there is no driver yet (Neutron's last answer).
    waiting: Mutex<String>,
    /// Woken when the driver is set or an attempt to connect failed.
    connected: tokio::sync::Notify,
    /// An attempt to connect has failed: calls get their `Err` at once from then on.
    failed_once: std::sync::atomic::AtomicBool,
}

/// How long a call that needs Neutron waits for kuryr's first attempt to connect before
/// its `Err`: a `docker network create` right after kuryr starts (a unit ordering, a
/// script) then waits the few milliseconds the connection takes instead of failing.
/// Once an attempt has failed (Neutron down), calls get their `Err` at once.
pub const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Service {
    /// Connecting: no driver yet.
    pub fn connecting(cfg: Arc<Config>) -> Self {
        Service {
            cfg,
            driver: OnceLock::new(),
            waiting: Mutex::new("connecting to Neutron".into()),
            connected: tokio::sync::Notify::new(),
            failed_once: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// With a driver already.
    pub fn ready(driver: Arc<Driver>) -> Self {
        let s = Service::connecting(driver.cfg.clone());
        let _ = s.driver.set(driver);
        s
    }

    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    pub fn driver(&self) -> Option<&Arc<Driver>> {
        self.driver.get()
    }

    pub fn set_driver(&self, d: Arc<Driver>) {
        let _ = self.driver.set(d);
        self.connected.notify_waiters();
    }

    /// The driver; while the first attempt to connect is still under way, waiting for
    /// its outcome up to `wait`.
    pub async fn driver_within(&self, wait: std::time::Duration) -> Option<&Arc<Driver>> {
        let notified = self.connected.notified();
        tokio::pin!(notified);
        // Registered before the checks: an outcome in between still wakes this call.
        notified.as_mut().enable();
        if let Some(d) = self.driver.get() {
            return Some(d);
        }
        if self.failed_once.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.driver.get()
    }

    /// What Neutron answered the last attempt to connect.
    pub fn set_waiting(&self, why: String) {
        if let Ok(mut w) = self.waiting.lock() {
            *w = why;
        }
        self.failed_once
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.connected.notify_waiters();
    }

    fn waiting(&self) -> String {
        self.waiting.lock().map(|w| w.clone()).unwrap_or_default()
    }

    pub(crate) fn not_ready(&self) -> String {
        format!(
            "kuryr is not connected to Neutron yet ({}); it keeps trying",
            self.waiting()
        )
    }
}

pub type App = Arc<Service>;
