//! Neutron v2.0 client: typed resources, Keystone or fixed-endpoint auth, bounded retries
//! for idempotent requests, request counting and per-request debug logs (never secrets).

pub mod auth;
pub mod bodies;
pub mod error;
mod http;
pub mod ids;
pub mod transport;
pub mod types;

use http::{collection_of, decode_body, encode_segment, http_client};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

pub use bodies::*;
pub use error::NeutronError;
pub use transport::Transport;
pub use types::*;

use crate::config::NeutronConfig;
use crate::deadline;

tokio::task_local! {
    /// The request id of the libnetwork call being served, sent to Neutron as its
    /// global request id so both logs can be joined.
    pub static REQUEST_ID: String;
    /// The libnetwork method being served: requests are counted per method (work a
    /// call leaves to the background is not part of it).
    pub static CALL: &'static str;
}

/// Attempts for idempotent requests on connection errors and 502/503/504.
const MAX_ATTEMPTS: u32 = 3;

pub type Result<T> = std::result::Result<T, NeutronError>;

/// Query filters, in order; a key may repeat (`fixed_ips=...&fixed_ips=...`).
#[derive(Debug, Clone, Default)]
pub struct Filters(pub Vec<(String, String)>);

impl Filters {
    pub fn new() -> Self {
        Filters(Vec::new())
    }
    pub fn add(mut self, k: &str, v: impl Into<String>) -> Self {
        self.0.push((k.to_string(), v.into()));
        self
    }
    /// Resources carrying ALL of these tags.
    pub fn tags<S: AsRef<str>>(self, tags: &[S]) -> Self {
        let joined = tags
            .iter()
            .map(|t| t.as_ref())
            .collect::<Vec<_>>()
            .join(",");
        self.add("tags", joined)
    }
    /// Resources carrying ANY of these tags.
    pub fn tags_any<S: AsRef<str>>(self, tags: &[S]) -> Self {
        let joined = tags
            .iter()
            .map(|t| t.as_ref())
            .collect::<Vec<_>>()
            .join(",");
        self.add("tags-any", joined)
    }
}

/// Counts of requests sent, by method and collection; readable by tests and metrics.
#[derive(Default)]
pub struct Stats {
    total: AtomicU64,
    by_kind: Mutex<BTreeMap<String, u64>>,
    by_call: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.by_kind.lock().map(|m| m.clone()).unwrap_or_default()
    }
    /// Requests made while serving each libnetwork method, by method.
    pub fn by_call(&self) -> BTreeMap<String, u64> {
        self.by_call.lock().map(|m| m.clone()).unwrap_or_default()
    }
    fn record(&self, method: &Method, path: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.by_kind.lock() {
            *m.entry(format!("{method} {}", collection_of(path)))
                .or_default() += 1;
        }
        if let Ok(call) = CALL.try_with(|c| *c) {
            if let Ok(mut m) = self.by_call.lock() {
                *m.entry(call.to_string()).or_default() += 1;
            }
        }
    }
}

/// Neutron's extensions, detected once at start.
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    aliases: Vec<String>,
}

impl Extensions {
    pub fn has(&self, alias: &str) -> bool {
        self.aliases.iter().any(|a| a == alias)
    }
    /// Tags on all resources (modern Neutron).
    pub fn tags(&self) -> bool {
        self.has("standard-attr-tag") || self.has("tag-ext")
    }
    pub fn aliases(&self) -> &[String] {
        &self.aliases
    }
}

#[derive(Clone)]
pub struct Neutron {
    /// Keystone's requests.
    http: reqwest::Client,
    /// Neutron's requests.
    transport: Arc<dyn Transport>,
    auth: Arc<auth::Authenticator>,
    stats: Arc<Stats>,
    /// `[neutron] timeout`: one request's limit (less when the call has less left).
    timeout: Duration,
}

impl Neutron {
    pub fn new(cfg: &NeutronConfig) -> Result<Self> {
        let http = http_client(cfg)?;
        Ok(Self::with_transport(
            cfg,
            http.clone(),
            Arc::new(transport::Http(http)),
        ))
    }

    /// A client whose Neutron requests go through `transport` (Keystone's through
    /// `http`): the same retries, counting and error mapping whatever carries them.
    pub fn with_transport(
        cfg: &NeutronConfig,
        http: reqwest::Client,
        transport: Arc<dyn Transport>,
    ) -> Self {
        Neutron {
            http,
            transport,
            auth: Arc::new(auth::Authenticator::new(cfg.clone())),
            stats: Arc::new(Stats::default()),
            timeout: cfg.timeout,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// This client, its requests waiting up to `at_least` (or `[neutron] timeout`, if
    /// longer): for background work no call waits on, whose request Neutron completes
    /// even when the client has given up on it.
    pub fn patient(&self, at_least: Duration) -> Neutron {
        Neutron {
            timeout: self.timeout.max(at_least),
            ..self.clone()
        }
    }

    /// Tokens obtained from Keystone so far (0 without Keystone).
    pub fn tokens_issued(&self) -> u64 {
        self.auth.tokens_issued()
    }

    /// One request with retries and a single token renewal on 401.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let idempotent = method != Method::POST;
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            if deadline::expired() {
                return Err(NeutronError::Deadline(format!(
                    "{method} {path}: the call's {} s ran out",
                    deadline::STEPS.as_secs()
                )));
            }
            let session = self.session().await?;
            let started = Instant::now();
            let result = self
                .exchange(transport::Request {
                    session: &session,
                    method: &method,
                    path,
                    query,
                    body,
                    timeout: self.timeout,
                })
                .await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let answer = match result {
                Ok(a) => a,
                Err(e) => {
                    // A refused connection never reached Neutron: safe to retry even a POST.
                    let retry = (idempotent || e.connect) && attempt < MAX_ATTEMPTS;
                    tracing::debug!(%method, path, elapsed_ms, error = %e.message, retry, "neutron request failed");
                    if retry && backoff(attempt).await {
                        continue;
                    }
                    if deadline::expired() {
                        return Err(NeutronError::Deadline(format!(
                            "{method} {path}: {}",
                            e.message
                        )));
                    }
                    return Err(NeutronError::Transport {
                        message: e.message,
                        cause: e.cause,
                    });
                }
            };
            let status = answer.status;
            tracing::debug!(%method, path, status, elapsed_ms, neutron_request_id = %answer.request_id, "neutron request");
            if (200..300).contains(&status) {
                return decode_body(&method, path, &answer.body);
            }
            if status == 401 && self.auth.uses_keystone() && !renewed {
                renewed = true;
                self.auth.invalidate(&session.token).await;
                continue;
            }
            if matches!(status, 502..=504)
                && idempotent
                && attempt < MAX_ATTEMPTS
                && backoff(attempt).await
            {
                continue;
            }
            return Err(NeutronError::from_status(
                status,
                error::message_from_body(&answer.body),
            ));
        }
    }

    /// A token and endpoint, within the call's deadline.
    async fn session(&self) -> Result<auth::Session> {
        match deadline::remaining() {
            Some(left) => tokio::time::timeout(left, self.auth.session(&self.http))
                .await
                .map_err(|_| {
                    NeutronError::Deadline("no Keystone token before the call's deadline".into())
                })?,
            None => self.auth.session(&self.http).await,
        }
    }

    /// One exchange through the transport, counted and timed.
    async fn exchange(
        &self,
        req: transport::Request<'_>,
    ) -> std::result::Result<transport::Answer, transport::NoAnswer> {
        let (method, path) = (req.method.clone(), req.path);
        self.stats.record(&method, path);
        let started = Instant::now();
        let result = self.transport.exchange(req).await;
        let status = result.as_ref().map_or(0, |a| a.status);
        crate::metrics::global().observe_neutron(
            method.as_str(),
            collection_of(path),
            status,
            started.elapsed().as_secs_f64(),
        );
        result
    }

    fn decode<T: serde::de::DeserializeOwned>(v: Option<Value>, key: &str) -> Result<T> {
        let mut v =
            v.ok_or_else(|| NeutronError::Decode(format!("empty answer, expected {key}")))?;
        let inner = v
            .get_mut(key)
            .map(Value::take)
            .ok_or_else(|| NeutronError::Decode(format!("answer has no {key:?}")))?;
        serde_json::from_value(inner).map_err(|e| NeutronError::Decode(format!("{key}: {e}")))
    }

    /// Lists a collection, following pagination links.
    pub async fn list<T: Resource>(&self, filters: &Filters) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut query = filters.0.clone();
        let path = format!("/v2.0/{}", T::PATH);
        for _ in 0..MAX_PAGES {
            let v = self.send(Method::GET, &path, &query, None).await?;
            let mut v = v.ok_or_else(|| NeutronError::Decode("empty list answer".into()))?;
            let items = v.get_mut(T::PLURAL).map(Value::take).unwrap_or(Value::Null);
            let page: Vec<T> = serde_json::from_value(items)
                .map_err(|e| NeutronError::Decode(format!("{}: {e}", T::PLURAL)))?;
            let got = page.len();
            out.extend(page);
            let next = v[format!("{}_links", T::PLURAL)]
                .as_array()
                .and_then(|links| links.iter().find(|l| l["rel"] == "next"))
                .and_then(|l| l["href"].as_str())
                .map(|s| s.to_string());
            match next {
                Some(href) if got > 0 => {
                    let next = query_of(&href)?;
                    // A link that asks for the same page again would never end.
                    if next == query {
                        return Err(NeutronError::Decode(format!(
                            "{}: the next page's link repeats this page's",
                            T::PLURAL
                        )));
                    }
                    query = next;
                }
                _ => return Ok(out),
            }
        }
        Err(NeutronError::Decode(format!(
            "{}: more than {MAX_PAGES} pages",
            T::PLURAL
        )))
    }

    /// Lists a collection as raw JSON objects (for fields the typed resources skip).
    pub async fn list_raw(&self, collection: &str, filters: &Filters) -> Result<Vec<Value>> {
        let v = self
            .send(
                Method::GET,
                &format!("/v2.0/{collection}"),
                &filters.0,
                None,
            )
            .await?
            .ok_or_else(|| NeutronError::Decode("empty list answer".into()))?;
        let key = collection.replace('-', "_");
        Ok(v[key].as_array().cloned().unwrap_or_default())
    }

    pub async fn get<T: Resource>(&self, id: &str) -> Result<T> {
        let v = self
            .send(Method::GET, &format!("/v2.0/{}/{}", T::PATH, id), &[], None)
            .await?;
        Self::decode(v, T::SINGULAR)
    }

    pub async fn create<T: Resource>(&self, body: impl serde::Serialize) -> Result<T> {
        let v = self
            .send(
                Method::POST,
                &format!("/v2.0/{}", T::PATH),
                &[],
                Some(&json!({ T::SINGULAR: body })),
            )
            .await?;
        Self::decode(v, T::SINGULAR)
    }

    /// Creates several resources in one request (`{"ports": [...]}`).
    pub async fn create_bulk<T: Resource, B: serde::Serialize>(
        &self,
        bodies: Vec<B>,
    ) -> Result<Vec<T>> {
        let v = self
            .send(
                Method::POST,
                &format!("/v2.0/{}", T::PATH),
                &[],
                Some(&json!({ T::PLURAL: bodies })),
            )
            .await?;
        Self::decode(v, T::PLURAL)
    }

    pub async fn update<T: Resource>(&self, id: &str, body: impl serde::Serialize) -> Result<T> {
        let v = self
            .send(
                Method::PUT,
                &format!("/v2.0/{}/{}", T::PATH, id),
                &[],
                Some(&json!({ T::SINGULAR: body })),
            )
            .await?;
        Self::decode(v, T::SINGULAR)
    }

    pub async fn delete<T: Resource>(&self, id: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            &format!("/v2.0/{}/{}", T::PATH, id),
            &[],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Deletes; "already gone" counts as success.
    pub async fn delete_if_exists<T: Resource>(&self, id: &str) -> Result<()> {
        match self.delete::<T>(id).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Replaces all tags of a resource in one request.
    pub async fn replace_tags<T: Resource>(&self, id: &str, tags: &[String]) -> Result<()> {
        self.send(
            Method::PUT,
            &format!("/v2.0/{}/{}/tags", T::PATH, id),
            &[],
            Some(&json!({ "tags": tags })),
        )
        .await
        .map(|_| ())
    }

    /// Updates a port, then replaces its tags (unless `tags` is `None`): one after the
    /// other, never side by side. A write of the tags moves the port's revision, and
    /// Neutron retries (after about 0.5 s) an update whose transaction it overtook. The
    /// update goes first: on ML2/OVN the port's status comes up moments after its plug and
    /// overtakes an update sent later just the same. A refused update sends no tags.
    /// Returns the updated port, with `tags` if they were written.
    pub async fn update_port_then_tags(
        &self,
        id: &str,
        body: PortBody,
        tags: Option<&[String]>,
    ) -> std::result::Result<Port, PortWriteFailed> {
        let mut port = self
            .update::<Port>(id, body)
            .await
            .map_err(|error| PortWriteFailed {
                error,
                updated: false,
            })?;
        if let Some(tags) = tags {
            self.replace_tags::<Port>(id, tags)
                .await
                .map_err(|error| PortWriteFailed {
                    error,
                    updated: true,
                })?;
            port.tags = tags.to_vec();
        }
        Ok(port)
    }

    pub async fn add_tag<T: Resource>(&self, id: &str, tag: &str) -> Result<()> {
        self.send(
            Method::PUT,
            &format!("/v2.0/{}/{}/tags/{}", T::PATH, id, encode_segment(tag)),
            &[],
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn remove_tag<T: Resource>(&self, id: &str, tag: &str) -> Result<()> {
        match self
            .send(
                Method::DELETE,
                &format!("/v2.0/{}/{}/tags/{}", T::PATH, id, encode_segment(tag)),
                &[],
                None,
            )
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `PUT /v2.0/trunks/<id>/add_subports` or `remove_subports`.
    pub async fn trunk_subports(
        &self,
        trunk_id: &str,
        add: bool,
        sub_ports: &[SubportAsk],
    ) -> Result<Trunk> {
        let action = if add {
            "add_subports"
        } else {
            "remove_subports"
        };
        let v = self
            .send(
                Method::PUT,
                &format!("/v2.0/trunks/{trunk_id}/{action}"),
                &[],
                Some(&json!({ "sub_ports": sub_ports })),
            )
            .await?;
        let v = v.ok_or_else(|| NeutronError::Decode("empty trunk answer".into()))?;
        // Neutron answers the trunk itself here, not wrapped in {"trunk": ...}.
        let inner = if v.get("trunk").is_some() {
            v["trunk"].clone()
        } else {
            v
        };
        serde_json::from_value(inner).map_err(|e| NeutronError::Decode(format!("trunk: {e}")))
    }

    pub async fn extensions(&self) -> Result<Extensions> {
        let list: Vec<Extension> = self.list(&Filters::new()).await?;
        Ok(Extensions {
            aliases: list.into_iter().map(|e| e.alias).collect(),
        })
    }
}

/// The most pages a list follows (Neutron's pages hold `pagination_max_limit` items).
const MAX_PAGES: usize = 10_000;

/// The query pairs of a pagination link, absolute or relative. A link that cannot be read
/// is an error: following it without its query would list the collection unfiltered.
fn query_of(href: &str) -> Result<Vec<(String, String)>> {
    let url = reqwest::Url::parse("http://neutron.invalid/v2.0/")
        .and_then(|base| base.join(href))
        .map_err(|e| NeutronError::Decode(format!("pagination link {href:?}: {e}")))?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.is_empty() {
        return Err(NeutronError::Decode(format!(
            "pagination link {href:?} has no query"
        )));
    }
    Ok(pairs)
}

/// Waits before another attempt; false (and no wait) when the call has not that long
/// left, so the error is reported instead.
async fn backoff(attempt: u32) -> bool {
    let base = 200u64 << attempt.min(5);
    let jitter = rand::rng().random_range(0..base / 2 + 1);
    let wait = Duration::from_millis(base + jitter);
    if deadline::remaining().is_some_and(|left| left <= wait) {
        return false;
    }
    tokio::time::sleep(wait).await;
    true
}

/// A failed [`Neutron::update_port_then_tags`].
#[derive(Debug)]
pub struct PortWriteFailed {
    pub error: NeutronError,
    /// The update reached the port; its tags did not.
    pub updated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_encoding() {
        let f = Filters::new().tags(&["a:1", "b:2"]).tags_any(&["x"]);
        assert_eq!(
            f.0,
            vec![
                ("tags".to_string(), "a:1,b:2".to_string()),
                ("tags-any".to_string(), "x".to_string())
            ]
        );
        assert_eq!(
            encode_segment("kuryr.net.uuid.lh:ab"),
            "kuryr.net.uuid.lh:ab"
        );
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        let want: Vec<(String, String)> = vec![
            ("limit".into(), "2".into()),
            ("marker".into(), "abc".into()),
            ("fixed_ips".into(), "ip_address=1.2.3.4".into()),
        ];
        let q = "?limit=2&marker=abc&fixed_ips=ip_address%3D1.2.3.4";
        for href in [
            format!("http://n:9696/v2.0/ports{q}"),
            format!("/v2.0/ports{q}"),
            format!("ports{q}"),
        ] {
            assert_eq!(query_of(&href).ok(), Some(want.clone()), "{href}");
        }
        // Without its query the next page would be the collection unfiltered.
        assert!(query_of("http://n:9696/v2.0/ports").is_err());
        assert!(query_of("http://[::1").is_err());
    }

    /// A next link that never changes (a misbehaving proxy) ends the list with an error,
    /// not a loop.
    #[tokio::test]
    async fn a_pagination_link_that_repeats_its_page_is_an_error() {
        struct Repeating;
        #[async_trait::async_trait]
        impl transport::Transport for Repeating {
            async fn exchange(
                &self,
                _: transport::Request<'_>,
            ) -> std::result::Result<transport::Answer, transport::NoAnswer> {
                let body = serde_json::json!({
                    "networks": [{"id": "n1", "name": "a"}],
                    "networks_links": [{"rel": "next", "href": "/v2.0/networks?name=a&limit=1"}]
                });
                Ok(transport::Answer {
                    status: 200,
                    body: body.to_string(),
                    request_id: String::new(),
                })
            }
        }
        crate::tls::install_crypto_provider();
        let cfg = crate::config::NeutronConfig {
            endpoint: Some("memory://neutron".into()),
            ..crate::config::Config::default().neutron
        };
        let n = Neutron::with_transport(&cfg, reqwest::Client::new(), Arc::new(Repeating));
        let f = Filters::new().add("name", "a").add("limit", "1");
        let r = n.list::<Network>(&f).await;
        assert!(
            matches!(&r, Err(NeutronError::Decode(m)) if m.contains("repeats")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_port_is_updated_then_tagged_and_a_refused_update_sends_no_tags() {
        use crate::testkit::{Fault, MemoryNeutron};
        let n = MemoryNeutron::default();
        let net = n.seed("networks", json!({"name": "n"}));
        let port = n.seed("ports", json!({"network_id": net["id"], "name": "p"}));
        let id = port["id"].as_str().unwrap_or_default().to_string();
        let client = n.client();
        let body = || PortBody {
            name: Some("q".into()),
            ..PortBody::default()
        };
        let tags = vec!["a".to_string()];

        // (the request refused, whether the update reached the port, what was sent)
        let refused: [(&str, bool, &[&str]); 2] = [
            ("/v2.0/ports/", false, &["PUT ports"]),
            ("/tags", true, &["PUT ports", "PUT ports/tags"]),
        ];
        for (path, updated, sent) in refused {
            n.inject(Fault::once("PUT", path, 409));
            let failed = client
                .update_port_then_tags(&id, body(), Some(&tags))
                .await
                .err();
            assert_eq!(failed.map(|f| f.updated), Some(updated), "{path} refused");
            assert_eq!(n.take_requests(), sent, "{path} refused");
        }

        let done = client.update_port_then_tags(&id, body(), Some(&tags)).await;
        assert_eq!(
            done.ok().map(|p| (p.name, p.tags)),
            Some(("q".into(), tags))
        );
        assert_eq!(n.take_requests(), ["PUT ports", "PUT ports/tags"]);
        let untagged = client.update_port_then_tags(&id, body(), None).await;
        assert!(untagged.is_ok(), "{untagged:?}");
        assert_eq!(n.take_requests(), ["PUT ports"], "no tags asked, none sent");
    }
}
