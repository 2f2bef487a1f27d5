//! Test support, compiled only into test builds: `cargo test` of this crate, and the
//! integration tests and fuzz targets, which enable the `testkit` feature. A release
//! binary contains none of it (`scripts/test` checks the binary for its strings).
//!
//! - [`MemoryNeutron`]: an in-memory Neutron, a transport of the product's client, with
//!   scripted faults and a request log;
//! - [`FakeHost`]: recording fake host plumbing;
//! - [`TestDriver`]: a driver built from those two, with the real router in front;
//! - [`harness`]: the request-handling harness of the fuzz target and replay test;
//! - [`kill_point`] / [`crash_after`]: where a test build kills itself on request.

mod fake_host;
pub mod harness;
mod memory_neutron;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub use fake_host::{FakeHost, HOST};
pub use memory_neutron::{Fault, MemoryNeutron, NoReply};

use crate::config::Config;
use crate::driver::Driver;

/// A driver on the in-memory Neutron and the fake host, served by the real router.
pub struct TestDriver {
    pub driver: Arc<Driver>,
    pub neutron: MemoryNeutron,
    pub host: FakeHost,
    app: axum::Router,
    cni_app: axum::Router,
}

impl TestDriver {
    /// With the default configuration plus `conf` (kuryr.conf text; `[DEFAULT] host` is
    /// [`HOST`] unless `conf` sets it; `[neutron]` may be left out).
    pub async fn new(conf: &str) -> TestDriver {
        Self::with(conf, MemoryNeutron::default(), FakeHost::default()).await
    }

    /// On this Neutron and host (seeded by the caller first).
    pub async fn with(conf: &str, neutron: MemoryNeutron, host: FakeHost) -> TestDriver {
        let mut text = if conf.contains("host =") {
            conf.to_string()
        } else {
            format!(
                "[DEFAULT]\nhost = {HOST}\n{}",
                conf.trim_start_matches("[DEFAULT]\n")
            )
        };
        if !text.contains("[neutron]") {
            // The in-memory transport ignores it; the config needs one.
            text.push_str("\n[neutron]\nendpoint = http://memory.invalid:9696\n");
        }
        let cfg = match Config::parse("test", &text) {
            Ok(l) => l.config,
            Err(e) => panic!("test config: {e}\n{text}"),
        };
        let driver =
            match Driver::new(Arc::new(cfg), neutron.client(), Arc::new(host.clone())).await {
                Ok(d) => Arc::new(d),
                Err(e) => panic!("test driver: {e}"),
            };
        neutron.clear_requests();
        let app = crate::server::router(driver.clone());
        let svc = Arc::new(crate::server::Service::ready(driver.clone()));
        let cni_app = crate::cni::daemon::router(svc.clone())
            .merge(crate::netavark::daemon::router(svc, None));
        TestDriver {
            driver,
            neutron,
            host,
            app,
            cni_app,
        }
    }

    /// One call of the CNI API (`POST /v1/cni`), as `kuryr-cni` makes it: status and
    /// answer (Null when empty).
    pub async fn cni(&self, call: &Value) -> (u16, Value) {
        post(&self.cni_app, "/v1/cni", call).await
    }

    /// What `kuryr gc` finds on this driver's Neutron and host, judged against Docker's
    /// view `live`, with no grace period.
    pub async fn gc_leaks(
        &self,
        live: &crate::commands::gc::Live,
    ) -> Vec<crate::commands::gc::Leak> {
        let opts = crate::commands::gc::Options {
            docker_socket: "/nonexistent".into(),
            grace: std::time::Duration::ZERO,
        };
        match crate::commands::gc::find(
            &self.driver.cfg,
            self.driver.neutron(),
            self.driver.plumbing(),
            live,
            &opts,
        )
        .await
        {
            Ok(leaks) => leaks,
            Err(e) => panic!("gc: {e}"),
        }
    }

    /// One call of the netavark API (`POST /v1/netavark`), as `kuryr-netavark` makes it:
    /// status and answer (Null when empty).
    pub async fn netavark(&self, call: &Value) -> (u16, Value) {
        post(&self.cni_app, crate::netavark::daemon::PATH, call).await
    }

    /// One libnetwork call through the router, as Docker makes it: status and answer.
    pub async fn call(&self, method: &str, body: &Value) -> (u16, Value) {
        post(&self.app, &format!("/{method}"), body).await
    }

    /// As `call`, and the answer must be a 200.
    pub async fn ok(&self, method: &str, body: &Value) -> Value {
        let (status, v) = self.call(method, body).await;
        assert_eq!(status, 200, "{method} {body}: {v}");
        v
    }

    /// The Neutron requests made since the last `take_requests`, as `METHOD /collection`
    /// (ids, tags and queries left out: what a test asserts is the kind and order).
    pub fn take_requests(&self) -> Vec<String> {
        self.neutron.take_requests()
    }
}

/// `POST path` with a JSON body through `app`: status and answer (Null when not JSON).
async fn post(app: &axum::Router, path: &str, body: &Value) -> (u16, Value) {
    let req = match Request::post(path).body(Body::from(body.to_string())) {
        Ok(r) => r,
        Err(e) => panic!("request: {e}"),
    };
    let resp = match app.clone().oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status().as_u16();
    let bytes = match resp.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => panic!("answer: {e}"),
    };
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `PUT /v2.0/ports/<id>/tags?x=y` -> `PUT ports/tags`.
fn request_kind(r: &str) -> String {
    let (method, path) = r.split_once(' ').unwrap_or((r, ""));
    let path = path.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path
        .trim_start_matches("/v2.0/")
        .split('/')
        .filter(|p| !looks_like_id(p))
        .collect();
    let parts: Vec<&str> = match parts.as_slice() {
        // A tag itself is data, not part of the kind.
        [c, "tags", _] => vec![c, "tags"],
        _ => parts,
    };
    format!("{method} {}", parts.join("/"))
}

fn looks_like_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// Test builds: `KURYR_TEST_CRASH_AFTER=<Method>[#n]` makes the process kill itself
/// (SIGKILL, no clean-up) after the n-th such call did its work, before it answers.
pub fn crash_after(method: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    static POINT: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let point = POINT.get_or_init(|| parse_point(std::env::var("KURYR_TEST_CRASH_AFTER").ok()?));
    if let Some((m, n)) = point {
        if m == method && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            die(method);
        }
    }
}

/// Test builds: `KURYR_TEST_KILL_AT=<point>[#n]` makes the process kill itself at the
/// n-th pass through the named point inside a handler (between two side effects).
pub fn kill_point(name: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    static POINT: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let point = POINT.get_or_init(|| parse_point(std::env::var("KURYR_TEST_KILL_AT").ok()?));
    if let Some((p, n)) = point {
        if p == name && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            die(name);
        }
    }
}

fn parse_point(v: String) -> Option<(String, usize)> {
    match v.split_once('#') {
        Some((m, n)) => Some((m.to_string(), n.parse().ok()?)),
        None => Some((v, 1)),
    }
}

fn die(at: &str) {
    tracing::warn!(at, "test build: killing myself as asked");
    // SAFETY: kill(2) on our own pid.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}
