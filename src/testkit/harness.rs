//! Request-handling harness shared by the `handle_sequence` fuzz target and the replay test:
//! a sequence of libnetwork calls goes through the real router and driver against the
//! in-memory Neutron and the fake host plumbing, and every answer is checked:
//!
//! - the server never panics (a panic is the fuzzer's finding);
//! - every non-200 answer is JSON with a non-empty `Err`;
//! - a 400 (bad input) changes nothing in Neutron.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{FakeHost, MemoryNeutron, HOST};
use crate::config::Config;
use crate::driver::Driver;
use crate::neutron::Neutron;
use crate::protocol::Method;

/// Separates calls in an input; never part of UTF-8 text, so JSON bodies cannot contain it.
pub const SEPARATOR: u8 = 0xff;
/// Calls per input beyond this are ignored: long sequences add time, not coverage.
pub const MAX_CALLS: usize = 12;

/// Encodes a call sequence in the input format (for seeds and tests).
pub fn encode(calls: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (method, body)) in calls.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        let idx = Method::ALL
            .iter()
            .position(|m| m.path() == *method)
            .unwrap_or(0);
        out.push(idx as u8);
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// One answer: method, HTTP status, JSON body.
pub type Answer = (String, u16, Value);

pub struct Harness {
    pub fake: MemoryNeutron,
    cfg: Arc<Config>,
    /// Shared across inputs: it keeps no state that changes what a handler does.
    neutron: Neutron,
}

impl Harness {
    pub async fn new() -> std::io::Result<Self> {
        let fake = MemoryNeutron::with_short_ids();
        let conf = format!(
            "[DEFAULT]\nhost = {HOST}\nbindir = /nonexistent/kuryr-fuzz\n[neutron]\nendpoint = http://memory.invalid:9696\n"
        );
        let cfg = Config::parse("fuzz", &conf)
            .map_err(|e| std::io::Error::other(format!("harness config: {e}")))?
            .config;
        let neutron = fake.client();
        Ok(Harness {
            fake,
            cfg: Arc::new(cfg),
            neutron,
        })
    }

    /// Runs one input from an empty Neutron and a fresh driver; `Err` names the broken
    /// invariant.
    pub async fn run(&self, data: &[u8]) -> Result<Vec<Answer>, String> {
        self.fake.reset();
        let host = Arc::new(FakeHost::default());
        let driver = Driver::new(self.cfg.clone(), self.neutron.clone(), host)
            .await
            .map_err(|e| format!("driver start: {e}"))?;
        let driver = Arc::new(driver);
        let app = crate::server::router(driver.clone());
        let mut answers = Vec::new();
        for chunk in data.split(|b| *b == SEPARATOR).take(MAX_CALLS) {
            let Some((sel, body)) = chunk.split_first() else {
                continue;
            };
            let method = Method::ALL[*sel as usize % Method::ALL.len()].path();
            let before = self.fake.snapshot();
            let req = Request::post(format!("/{method}"))
                .body(Body::from(body.to_vec()))
                .map_err(|e| format!("request: {e}"))?;
            let resp = app
                .clone()
                .oneshot(req)
                .await
                .map_err(|e| format!("router: {e}"))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{method}: unreadable answer: {e}"))?
                .to_bytes();
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{method}: answer is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })?;
            if status != 200 {
                let msg = v.get("Err").and_then(Value::as_str).unwrap_or("");
                if msg.is_empty() {
                    return Err(format!("{method}: status {status} without an Err: {v}"));
                }
                if status == 400 && self.fake.snapshot() != before {
                    return Err(format!(
                        "{method}: answered 400 ({msg}) but changed Neutron; body {}",
                        String::from_utf8_lossy(body)
                    ));
                }
            }
            answers.push((method.to_string(), status, v));
        }
        // Delayed work (an endpoint's bookkeeping a second after CreateEndpoint) runs now:
        // left pending it would write into the next input's Neutron, whose short ids are
        // the same, and look like a change made by a call that answered 400.
        driver.background.flush().await;
        Ok(answers)
    }
}
