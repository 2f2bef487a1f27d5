//! Where the client's requests go: one exchange, no retries. The client
//! (`super::Neutron`) retries, renews tokens, counts and maps errors the same whatever
//! carries its requests: Neutron over HTTP here, or a test's in-memory Neutron through
//! [`Neutron::with_transport`](super::Neutron::with_transport).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;

use super::{auth, error, REQUEST_ID};
use crate::deadline;

/// One request as the client sends it.
pub struct Request<'a> {
    pub session: &'a auth::Session,
    pub method: &'a Method,
    /// `/v2.0/...`, after the session's endpoint.
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub body: Option<&'a Value>,
    /// `[neutron] timeout`: the transport caps it by the call's deadline.
    pub timeout: Duration,
}

/// An answered request.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub request_id: String,
}

/// A request that got no answer; `connect` when it never reached Neutron (safe to send
/// again, even a POST).
pub struct NoAnswer {
    pub connect: bool,
    pub message: String,
    pub cause: Option<error::Cause>,
}

impl NoAnswer {
    /// The client's error kept whole; the message names its causes too (a refused
    /// connection, a certificate refused), which its own text leaves out.
    fn from_reqwest(e: reqwest::Error) -> NoAnswer {
        let e = e.without_url();
        NoAnswer {
            connect: e.is_connect(),
            message: error::chain(&e),
            cause: Some(error::Cause(std::sync::Arc::new(e))),
        }
    }
}

#[async_trait]
pub trait Transport: Send + Sync {
    async fn exchange(&self, req: Request<'_>) -> Result<Answer, NoAnswer>;
}

/// Neutron's API over HTTP(S).
pub struct Http(pub reqwest::Client);

#[async_trait]
impl Transport for Http {
    async fn exchange(&self, r: Request<'_>) -> Result<Answer, NoAnswer> {
        let url = format!("{}{}", r.session.endpoint.trim_end_matches('/'), r.path);
        let mut req = self
            .0
            .request(r.method.clone(), &url)
            .query(r.query)
            .timeout(deadline::cap(r.timeout));
        if !r.session.token.is_empty() {
            req = req.header("X-Auth-Token", r.session.token.expose());
        }
        if let Ok(rid) = REQUEST_ID.try_with(|r| r.clone()) {
            req = req.header("X-OpenStack-Request-ID", rid);
        }
        if let Some(b) = r.body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(NoAnswer::from_reqwest)?;
        let status = resp.status().as_u16();
        let request_id = resp
            .headers()
            .get("x-openstack-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        // A body cut off mid-way is no answer either, but the request did reach Neutron.
        let body = resp.text().await.map_err(NoAnswer::from_reqwest)?;
        Ok(Answer {
            status,
            body,
            request_id,
        })
    }
}
