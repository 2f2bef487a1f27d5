//! An in-memory Neutron, a transport of the product's client (`MemoryNeutron::client`): the REST subset kuryr uses
//! (networks, subnets, subnetpools, ports, trunks, security groups and rules, tags,
//! filters, agents), answered in-process, with no socket, so the driver's mapping can be
//! tested without a network, and faults (an answer of any status, a refused connection)
//! can be scripted per request. It models Neutron's behaviour where kuryr depends on it
//! (all-or-nothing bulk creates, a bound port keeps its MAC, in-use conflicts); what it
//! does not model is tested against the real Neutron by the integration tests.
//!
//! Ids are counters formatted as UUIDs, so a seed corpus can name the pool or port a
//! previous call made. Errors use Neutron's `{"NeutronError": ...}` shape.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use serde_json::{json, Map, Value};

type Obj = Map<String, Value>;

/// An answer: HTTP status and JSON body (`Null` for an empty one).
type Reply = (u16, Value);

/// Collections served, with the key of one object in request and answer bodies.
const COLLECTIONS: &[(&str, &str)] = &[
    ("networks", "network"),
    ("subnets", "subnet"),
    ("subnetpools", "subnetpool"),
    ("ports", "port"),
    ("trunks", "trunk"),
    ("security-groups", "security_group"),
    ("security-group-rules", "security_group_rule"),
    ("agents", "agent"),
    // `qos/policies` (the path is folded to its last segment).
    ("policies", "policy"),
    ("floatingips", "floatingip"),
];

const EXTENSIONS: &[&str] = &[
    "subnet_allocation",
    "standard-attr-tag",
    "binding",
    "security-group",
    "allowed-address-pairs",
    "trunk",
    "tag-ports-during-bulk-creation",
    "qos",
    "router",
];

/// A scripted fault: of the requests whose method is `method` and whose path contains
/// `path`, the first `skip` go through, the next `times` get `status` (0: the connection
/// is refused instead of answered; 1: no answer ever comes).
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub times: u32,
    pub skip: u32,
}

impl Fault {
    /// Fails the next matching request once with `status`.
    pub fn once(method: &str, path: &str, status: u16) -> Self {
        Fault {
            method: method.into(),
            path: path.into(),
            status,
            times: 1,
            skip: 0,
        }
    }
}

#[derive(Default, Debug)]
pub struct FakeState {
    next_id: u64,
    /// Ids `00000000-0000-4000-8000-<n>` (the fuzz corpus names them) instead of ids
    /// that differ in their first characters too, as Neutron's do (interface names are
    /// made of an id's first 11).
    short_ids: bool,
    /// collection -> id -> object; BTreeMap so listings and snapshots are ordered.
    res: BTreeMap<String, BTreeMap<String, Obj>>,
    faults: Vec<Fault>,
    /// Ports bound to a host come back `binding_failed` (no live L2 agent there).
    bindings_fail: bool,
    /// Every request, as `METHOD /path?k=v&...`, in order.
    log: Vec<String>,
    /// Every request through the client's transport, as `METHOD /path`, with the
    /// timeout the client gave it.
    timeouts: Vec<(String, std::time::Duration)>,
}

#[derive(Clone, Default)]
pub struct MemoryNeutron {
    state: Arc<Mutex<FakeState>>,
}

fn err(status: u16, kind: &str, message: impl Into<String>) -> Reply {
    (
        status,
        json!({"NeutronError": {"type": kind, "message": message.into(), "detail": ""}}),
    )
}

fn fail(status: u16, kind: &str, message: impl Into<String>) -> Reply {
    err(status, kind, message)
}

fn missing(c: &str, id: &str) -> Reply {
    not_found(c, id)
}

fn ok(status: u16, body: Value) -> Reply {
    (status, body)
}

fn singular(coll: &str) -> Option<&'static str> {
    COLLECTIONS
        .iter()
        .find(|(c, _)| *c == coll)
        .map(|(_, s)| *s)
}

fn s<'a>(o: &'a Obj, k: &str) -> &'a str {
    o.get(k).and_then(Value::as_str).unwrap_or("")
}

/// No answer to a request: a refused connection (a scripted fault of status 0), or a
/// server that takes the request and never answers (status 1: the client's timeout, or
/// the call's deadline, ends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoReply {
    Refused,
    Silent,
}

impl MemoryNeutron {
    /// A client of this Neutron (no Keystone): the product's client, with the same
    /// requests, counting, error mapping and retries as over HTTP.
    pub fn client(&self) -> crate::neutron::Neutron {
        crate::tls::install_crypto_provider();
        let cfg = crate::config::NeutronConfig {
            endpoint: Some("memory://neutron".into()),
            ..crate::config::Config::default().neutron
        };
        crate::neutron::Neutron::with_transport(
            &cfg,
            reqwest::Client::new(),
            Arc::new(self.clone()),
        )
    }

    /// One request, as the client sends it: the answer's status and body
    /// text, or why there is none (a scripted fault).
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<(u16, String), NoReply> {
        let Ok(mut st) = self.state.lock() else {
            return Ok((500, "poisoned".into()));
        };
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        st.log.push(if q.is_empty() {
            format!("{method} {path}")
        } else {
            format!("{method} {path}?{}", q.join("&"))
        });
        if let Some(status) = st.take_fault(method, path) {
            match status {
                0 => return Err(NoReply::Refused),
                1 => return Err(NoReply::Silent),
                _ => {}
            }
            let (status, v) = err(status, "Injected", format!("injected fault {status}"));
            return Ok((status, v.to_string()));
        }
        let parts: Vec<&str> = path
            .trim_start_matches('/')
            .trim_start_matches("v2.0/")
            .trim_start_matches("qos/")
            .split('/')
            .collect();
        let (status, v) = st.route(method, &parts, query, body.cloned().unwrap_or(Value::Null));
        Ok((
            status,
            if v.is_null() {
                String::new()
            } else {
                v.to_string()
            },
        ))
    }

    /// From now on, ports bound to a host come back `binding_failed` (`false`: bound).
    pub fn fail_bindings(&self, fail: bool) {
        if let Ok(mut st) = self.state.lock() {
            st.bindings_fail = fail;
        }
    }

    /// Scripts a fault for the requests to come.
    pub fn inject(&self, fault: Fault) {
        if let Ok(mut st) = self.state.lock() {
            st.faults.push(fault);
        }
    }

    /// Every request so far, as `METHOD /v2.0/path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|st| st.log.clone())
            .unwrap_or_default()
    }

    /// The requests made since the last `take_requests`, as `METHOD /collection` (ids,
    /// tags and queries left out: what a test asserts is the kind and order).
    pub fn take_requests(&self) -> Vec<String> {
        let out = self
            .requests()
            .iter()
            .map(|r| super::request_kind(r))
            .collect();
        self.clear_requests();
        out
    }

    /// Every request through the client so far, as `METHOD /path`, with the time the
    /// client would wait for its answer.
    pub fn timeouts(&self) -> Vec<(String, std::time::Duration)> {
        self.state
            .lock()
            .map(|st| st.timeouts.clone())
            .unwrap_or_default()
    }

    /// Forgets the request log (e.g. after setting a test up).
    pub fn clear_requests(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.log.clear();
        }
    }

    /// One whose ids are `00000000-0000-4000-8000-<counter>`, as the kept fuzz corpus
    /// expects.
    pub fn with_short_ids() -> Self {
        let m = MemoryNeutron::default();
        if let Ok(mut st) = m.state.lock() {
            st.short_ids = true;
        }
        m
    }

    /// Forgets every resource (ids restart too, so a replayed input sees the same ids).
    pub fn reset(&self) {
        if let Ok(mut st) = self.state.lock() {
            let short_ids = st.short_ids;
            *st = FakeState {
                short_ids,
                ..FakeState::default()
            };
        }
    }

    /// Every resource as JSON, without the id counter: equal snapshots mean nothing changed.
    pub fn snapshot(&self) -> Value {
        match self.state.lock() {
            Ok(st) => json!(st.res),
            Err(_) => Value::Null,
        }
    }

    /// Number of objects in one collection.
    pub fn count(&self, coll: &str) -> usize {
        self.state
            .lock()
            .map(|st| st.res.get(coll).map_or(0, BTreeMap::len))
            .unwrap_or(0)
    }

    /// The objects of a collection, as Neutron would list them.
    pub fn all(&self, coll: &str) -> Vec<Value> {
        self.state
            .lock()
            .map(|st| st.all(coll).map(|o| Value::Object(o.clone())).collect())
            .unwrap_or_default()
    }

    /// Creates an object directly (set-up of a test: a user's port, a VM's port, an agent),
    /// filled in as a create request would be; not logged as a request.
    pub fn seed(&self, coll: &str, obj: Value) -> Value {
        let Ok(mut st) = self.state.lock() else {
            return Value::Null;
        };
        match st.create_one(coll, &obj) {
            Ok(o) => Value::Object(o),
            Err((status, v)) => json!({"seed_failed": status, "answer": v}),
        }
    }

    /// Changes fields of an object directly, as Neutron's agents would (a port's status,
    /// a binding that failed); not logged as a request.
    pub fn set(&self, coll: &str, id: &str, fields: Value) {
        if let (Ok(mut st), Some(f)) = (self.state.lock(), fields.as_object()) {
            if let Some(o) = st.coll(coll).get_mut(id) {
                for (k, v) in f {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

impl FakeState {
    fn take_fault(&mut self, method: &str, path: &str) -> Option<u16> {
        let i = self
            .faults
            .iter()
            .position(|f| f.method == method && path.contains(&f.path))?;
        if self.faults[i].skip > 0 {
            self.faults[i].skip -= 1;
            return None;
        }
        let status = self.faults[i].status;
        self.faults[i].times -= 1;
        if self.faults[i].times == 0 {
            self.faults.remove(i);
        }
        Some(status)
    }
}

fn tags_of(o: &Obj) -> Vec<String> {
    o.get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Neutron's filter semantics: repeated keys are alternatives; `tags` all, `tags-any` any;
/// `fixed_ips=ip_address=..`/`subnet_id=..` match one of the port's addresses.
fn matches(o: &Obj, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(k, vals)| match k.as_str() {
        "fields" | "limit" | "marker" | "sort_key" | "sort_dir" => true,
        "tags" => {
            let have = tags_of(o);
            vals.iter()
                .flat_map(|v| v.split(','))
                .all(|t| have.iter().any(|h| h == t))
        }
        "tags-any" => {
            let have = tags_of(o);
            vals.iter()
                .flat_map(|v| v.split(','))
                .any(|t| have.iter().any(|h| h == t))
        }
        "not-tags" => {
            let have = tags_of(o);
            !vals
                .iter()
                .flat_map(|v| v.split(','))
                .all(|t| have.iter().any(|h| h == t))
        }
        "fixed_ips" => {
            let ips = o.get("fixed_ips").and_then(Value::as_array);
            vals.iter().all(|v| {
                let Some((fk, fv)) = v.split_once('=') else {
                    return false;
                };
                ips.is_some_and(|ips| {
                    ips.iter()
                        .any(|ip| ip.get(fk).and_then(Value::as_str) == Some(fv))
                })
            })
        }
        _ => {
            let have = match o.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Null) | None => String::new(),
                Some(Value::Array(a)) => {
                    // e.g. `prefixes`: matches when one element equals the value.
                    return vals
                        .iter()
                        .any(|v| a.iter().any(|e| e.as_str() == Some(v.as_str())));
                }
                Some(_) => return false,
            };
            vals.contains(&have)
        }
    })
}

impl FakeState {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        let n = self.next_id;
        if self.short_ids {
            format!("00000000-0000-4000-8000-{n:012x}")
        } else {
            format!(
                "{:08x}-{:04x}-4000-8000-{n:012x}",
                n.wrapping_mul(0x9e37_79b9) as u32,
                n & 0xffff
            )
        }
    }

    fn coll(&mut self, c: &str) -> &mut BTreeMap<String, Obj> {
        self.res.entry(c.to_string()).or_default()
    }

    fn get(&self, c: &str, id: &str) -> Option<&Obj> {
        self.res.get(c).and_then(|m| m.get(id))
    }

    fn all(&self, c: &str) -> impl Iterator<Item = &Obj> {
        self.res.get(c).into_iter().flat_map(|m| m.values())
    }

    /// An object as Neutron shows it: a security group carries its rules.
    fn view(&self, c: &str, o: &Obj) -> Value {
        let mut o = o.clone();
        if c == "security-groups" {
            let id = s(&o, "id").to_string();
            let rules: Vec<Value> = self
                .all("security-group-rules")
                .filter(|r| s(r, "security_group_id") == id)
                .map(|r| Value::Object(r.clone()))
                .collect();
            o.insert("security_group_rules".into(), Value::Array(rules));
        }
        Value::Object(o)
    }

    fn route(
        &mut self,
        method: &str,
        parts: &[&str],
        query: &[(String, String)],
        body: Value,
    ) -> Reply {
        match (method, parts) {
            ("GET", ["extensions"]) => ok(
                200,
                json!({"extensions": EXTENSIONS.iter().map(|a| json!({"alias": a, "name": a})).collect::<Vec<_>>()}),
            ),
            ("GET", [c]) => {
                let Some(_) = singular(c) else {
                    return err(404, "NotFound", format!("no resource {c}"));
                };
                let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (k, v) in query {
                    filters.entry(k.clone()).or_default().push(v.clone());
                }
                let found: Vec<Value> = self
                    .all(c)
                    .filter(|o| matches(o, &filters))
                    .map(|o| self.view(c, o))
                    .collect();
                ok(200, json!({ c.replace('-', "_"): found }))
            }
            ("POST", [c]) => self.create(c, body),
            ("GET", [c, id]) => match (singular(c), self.get(c, id)) {
                (Some(key), Some(o)) => ok(200, json!({ key: self.view(c, o) })),
                _ => not_found(c, id),
            },
            ("PUT", [c, id]) => self.update(c, id, body),
            ("DELETE", [c, id]) => self.delete(c, id),
            ("PUT", [c, id, "tags"]) => {
                let Some(tags) = body.get("tags").and_then(Value::as_array).cloned() else {
                    return err(400, "BadRequest", "tags must be a list");
                };
                match self.coll(c).get_mut(*id) {
                    Some(o) => {
                        o.insert("tags".into(), Value::Array(tags.clone()));
                        ok(200, json!({ "tags": tags }))
                    }
                    None => not_found(c, id),
                }
            }
            ("PUT", [c, id, "tags", tag]) => match self.coll(c).get_mut(*id) {
                Some(o) => {
                    let mut tags = tags_of(o);
                    if !tags.iter().any(|t| t == tag) {
                        tags.push(tag.to_string());
                    }
                    o.insert("tags".into(), json!(tags));
                    (201, Value::Null)
                }
                None => not_found(c, id),
            },
            ("DELETE", [c, id, "tags", tag]) => match self.coll(c).get_mut(*id) {
                Some(o) => {
                    let mut tags = tags_of(o);
                    let before = tags.len();
                    tags.retain(|t| t != tag);
                    if tags.len() == before {
                        return err(404, "TagNotFound", format!("tag {tag}"));
                    }
                    o.insert("tags".into(), json!(tags));
                    (204, Value::Null)
                }
                None => not_found(c, id),
            },
            _ => err(
                404,
                "NotFound",
                format!("{method} /{} is not served", parts.join("/")),
            ),
        }
    }

    fn create(&mut self, c: &str, body: Value) -> Reply {
        let Some(key) = singular(c) else {
            return err(404, "NotFound", format!("no resource {c}"));
        };
        // As Neutron: only ports take tags in their create (tag-ports-during-bulk-creation).
        let items: Vec<&Value> = match body.get(c).and_then(Value::as_array) {
            Some(list) => list.iter().collect(),
            None => body.get(key).into_iter().collect(),
        };
        if c != "ports" && items.iter().any(|i| i.get("tags").is_some()) {
            return err(400, "BadRequest", "Attribute 'tags' not allowed in POST");
        }
        // Bulk: `{"ports": [...]}`; all or nothing, as Neutron's bulk is.
        if let Some(list) = body.get(c).and_then(Value::as_array) {
            let snapshot = self.res.clone();
            let mut made = Vec::new();
            for item in list {
                match self.create_one(c, item) {
                    Ok(o) => made.push(Value::Object(o)),
                    Err(e) => {
                        self.res = snapshot;
                        return e;
                    }
                }
            }
            return ok(201, json!({ c.replace('-', "_"): made }));
        }
        match body.get(key) {
            Some(item) => match self.create_one(c, item) {
                Ok(o) => ok(201, json!({ key: o })),
                Err(e) => e,
            },
            None => err(400, "BadRequest", format!("body lacks {key}")),
        }
    }

    fn create_one(&mut self, c: &str, item: &Value) -> Result<Obj, Reply> {
        let Some(input) = item.as_object() else {
            return Err(fail(400, "BadRequest", "not an object"));
        };
        let mut o = input.clone();
        let id = self.new_id();
        o.insert("id".into(), json!(id));
        o.insert("created_at".into(), json!(now_iso8601()));
        o.insert("updated_at".into(), json!(now_iso8601()));
        o.entry("tags").or_insert(json!([]));
        o.entry("name").or_insert(json!(""));
        o.entry("project_id").or_insert(json!("fake-project"));
        o.entry("tenant_id").or_insert(json!("fake-project"));
        match c {
            "networks" => {
                o.entry("status").or_insert(json!("ACTIVE"));
                o.entry("admin_state_up").or_insert(json!(true));
                o.entry("shared").or_insert(json!(false));
                o.entry("mtu").or_insert(json!(1450));
                o.insert("subnets".into(), json!([]));
            }
            "subnetpools" => {
                let prefixes: Vec<IpNet> = o
                    .get("prefixes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|p| p.as_str()?.parse().ok()).collect())
                    .unwrap_or_default();
                let Some(first) = prefixes.first() else {
                    return Err(fail(400, "BadRequest", "prefixes required"));
                };
                let version = if first.addr().is_ipv4() { 4 } else { 6 };
                o.insert("ip_version".into(), json!(version));
                o.insert(
                    "prefixes".into(),
                    json!(prefixes
                        .iter()
                        .map(|p| p.trunc().to_string())
                        .collect::<Vec<_>>()),
                );
                o.entry("default_prefixlen")
                    .or_insert(json!(first.prefix_len()));
            }
            "subnets" => self.fill_subnet(&mut o)?,
            "ports" => self.fill_port(&mut o, None)?,
            "security-groups" => {
                o.insert("security_group_rules".into(), json!([]));
            }
            "security-group-rules"
                if self
                    .get("security-groups", s(&o, "security_group_id"))
                    .is_none() =>
            {
                return Err(missing("security-groups", s(&o, "security_group_id")));
            }
            "floatingips" => self.fill_floating_ip(&mut o)?,
            _ => {}
        }
        self.coll(c).insert(id.clone(), o.clone());
        if c == "subnets" {
            let net = s(&o, "network_id").to_string();
            if let Some(n) = self.coll("networks").get_mut(&net) {
                if let Some(Value::Array(a)) = n.get_mut("subnets") {
                    a.push(json!(id));
                }
            }
        }
        Ok(o)
    }

    /// As Neutron: from an external network, an address of its own (from 203.0.113.0/24
    /// here: no subnet is needed), on a port that exists, if one is named.
    fn fill_floating_ip(&mut self, o: &mut Obj) -> Result<(), Reply> {
        let net = s(o, "floating_network_id").to_string();
        match self.get("networks", &net) {
            Some(n) if n.get("router:external") == Some(&json!(true)) => {}
            Some(_) => {
                return Err(fail(
                    400,
                    "BadRequest",
                    format!("network {net} is not external"),
                ))
            }
            None => return Err(missing("networks", &net)),
        }
        if let Some(p) = o.get("port_id").and_then(Value::as_str) {
            if self.get("ports", p).is_none() {
                return Err(missing("ports", p));
            }
        }
        if o.get("floating_ip_address").is_none_or(Value::is_null) {
            let n = self.all("floatingips").count() + 10;
            o.insert(
                "floating_ip_address".into(),
                json!(format!("203.0.113.{n}")),
            );
        }
        o.entry("port_id").or_insert(Value::Null);
        o.entry("description").or_insert(json!(""));
        Ok(())
    }

    fn fill_subnet(&mut self, o: &mut Obj) -> Result<(), Reply> {
        let net = s(o, "network_id").to_string();
        if self.get("networks", &net).is_none() {
            return Err(missing("networks", &net));
        }
        let pool_id = s(o, "subnetpool_id").to_string();
        let cidr: IpNet = match o.get("cidr").and_then(Value::as_str) {
            Some(c) => c
                .parse::<IpNet>()
                .map_err(|_| fail(400, "BadRequest", format!("invalid cidr {c}")))?
                .trunc(),
            None => {
                let Some(pool) = self.get("subnetpools", &pool_id).cloned() else {
                    return Err(fail(400, "BadRequest", "cidr or subnetpool_id required"));
                };
                let len = o
                    .get("prefixlen")
                    .and_then(Value::as_u64)
                    .or_else(|| pool.get("default_prefixlen").and_then(Value::as_u64))
                    .unwrap_or(24) as u8;
                let used: Vec<IpNet> = self
                    .all("subnets")
                    .filter(|sn| s(sn, "subnetpool_id") == pool_id)
                    .filter_map(|sn| s(sn, "cidr").parse().ok())
                    .collect();
                let prefixes: Vec<IpNet> = pool
                    .get("prefixes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|p| p.as_str()?.parse().ok()).collect())
                    .unwrap_or_default();
                let free = prefixes.iter().find_map(|p| {
                    p.subnets(len).ok()?.take(256).find(|c| {
                        !used
                            .iter()
                            .any(|u| u.contains(&c.network()) || c.contains(&u.network()))
                    })
                });
                free.ok_or_else(|| fail(409, "SubnetAllocationError", "pool exhausted"))?
            }
        };
        if !pool_id.is_empty() {
            let Some(pool) = self.get("subnetpools", &pool_id) else {
                return Err(missing("subnetpools", &pool_id));
            };
            let inside = pool
                .get("prefixes")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str()?.parse::<IpNet>().ok())
                        .any(|p| p.contains(&cidr))
                });
            if !inside {
                return Err(fail(
                    400,
                    "BadRequest",
                    format!("{cidr} is not in pool {pool_id}"),
                ));
            }
        }
        let overlaps = self.all("subnets").any(|sn| {
            s(sn, "network_id") == net
                && s(sn, "cidr")
                    .parse::<IpNet>()
                    .is_ok_and(|u| u.contains(&cidr.network()) || cidr.contains(&u.network()))
        });
        if overlaps {
            return Err(fail(
                400,
                "BadRequest",
                format!("{cidr} overlaps another subnet"),
            ));
        }
        o.insert("cidr".into(), json!(cidr.to_string()));
        o.insert(
            "ip_version".into(),
            json!(if cidr.addr().is_ipv4() { 4 } else { 6 }),
        );
        if !o.contains_key("gateway_ip") {
            let gw = cidr.hosts().next().map(|h| h.to_string());
            o.insert("gateway_ip".into(), json!(gw));
        }
        o.entry("enable_dhcp").or_insert(json!(true));
        o.entry("subnetpool_id").or_insert(Value::Null);
        Ok(())
    }

    /// Allocates addresses and a MAC; `id` is the port's own id on update (its addresses and
    /// MAC do not conflict with themselves).
    fn fill_port(&mut self, o: &mut Obj, id: Option<&str>) -> Result<(), Reply> {
        let net = s(o, "network_id").to_string();
        if self.get("networks", &net).is_none() {
            return Err(missing("networks", &net));
        }
        let others: Vec<Obj> = self
            .all("ports")
            .filter(|p| s(p, "network_id") == net && Some(s(p, "id")) != id)
            .cloned()
            .collect();
        let used: Vec<String> = others
            .iter()
            .flat_map(|p| {
                p.get("fixed_ips")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|ip| ip.get("ip_address")?.as_str().map(str::to_string))
            .collect();
        let mac = match o.get("mac_address").and_then(Value::as_str) {
            Some(m) => m.to_ascii_lowercase(),
            None => {
                let n = self.next_id;
                format!(
                    "fa:16:3e:{:02x}:{:02x}:{:02x}",
                    (n >> 16) & 0xff,
                    (n >> 8) & 0xff,
                    n & 0xff
                )
            }
        };
        if others.iter().any(|p| s(p, "mac_address") == mac) {
            return Err(fail(
                409,
                "MacAddressInUse",
                format!("MAC {mac} is in use on network {net}"),
            ));
        }
        let subnets: Vec<Obj> = self
            .all("subnets")
            .filter(|sn| s(sn, "network_id") == net)
            .cloned()
            .collect();
        let wanted: Vec<Value> = match o.get("fixed_ips").and_then(Value::as_array) {
            Some(a) => a.clone(),
            None => subnets
                .iter()
                .take(1)
                .map(|sn| json!({"subnet_id": s(sn, "id")}))
                .collect(),
        };
        let fixed = allocate(&subnets, &wanted, used)?;
        o.insert("fixed_ips".into(), json!(fixed));
        o.insert("mac_address".into(), json!(mac));
        o.entry("status").or_insert(json!("DOWN"));
        o.entry("admin_state_up").or_insert(json!(true));
        o.entry("device_owner").or_insert(json!(""));
        o.entry("device_id").or_insert(json!(""));
        o.entry("security_groups").or_insert(json!([]));
        o.entry("allowed_address_pairs").or_insert(json!([]));
        o.entry("binding:vnic_type").or_insert(json!("normal"));
        // Bound to a host: the L2 agent of a real Neutron would say `bridge` and ACTIVE.
        if s(o, "binding:host_id").is_empty() {
            o.insert("binding:host_id".into(), json!(""));
            o.insert("binding:vif_type".into(), json!("unbound"));
        } else if self.bindings_fail {
            o.insert("binding:vif_type".into(), json!("binding_failed"));
            o.insert("status".into(), json!("DOWN"));
        } else {
            o.insert("binding:vif_type".into(), json!("bridge"));
            o.insert("binding:vif_details".into(), json!({}));
            o.insert("status".into(), json!("ACTIVE"));
        }
        Ok(())
    }

    fn update(&mut self, c: &str, id: &str, body: Value) -> Reply {
        let Some(key) = singular(c) else {
            return err(404, "NotFound", format!("no resource {c}"));
        };
        let Some(mut o) = self.get(c, id).cloned() else {
            return not_found(c, id);
        };
        let Some(changes) = body.get(key).and_then(Value::as_object) else {
            return err(400, "BadRequest", format!("body lacks {key}"));
        };
        if c == "ports" {
            let bound = s(&o, "binding:vif_type") != "unbound";
            if let Some(m) = changes.get("mac_address").and_then(Value::as_str) {
                if bound && !m.eq_ignore_ascii_case(s(&o, "mac_address")) {
                    return err(409, "PortBound", "cannot change the MAC of a bound port");
                }
            }
        }
        for (k, v) in changes {
            if k != "id" {
                o.insert(k.clone(), v.clone());
            }
        }
        o.insert("updated_at".into(), json!(now_iso8601()));
        if c == "ports" {
            if let Err(e) = self.fill_port(&mut o, Some(id)) {
                return e;
            }
        }
        self.coll(c).insert(id.to_string(), o.clone());
        ok(200, json!({ key: o }))
    }

    fn delete(&mut self, c: &str, id: &str) -> Reply {
        if self.get(c, id).is_none() {
            return not_found(c, id);
        }
        let in_use = |msg: String| err(409, "InUse", msg);
        match c {
            "networks" => {
                if self.all("ports").any(|p| {
                    s(p, "network_id") == id && !s(p, "device_owner").starts_with("network:")
                }) {
                    return in_use(format!("network {id} has ports"));
                }
                self.coll("ports").retain(|_, p| s(p, "network_id") != id);
                self.coll("subnets")
                    .retain(|_, sn| s(sn, "network_id") != id);
            }
            "subnets" => {
                let used = self.all("ports").any(|p| {
                    p.get("fixed_ips")
                        .and_then(Value::as_array)
                        .is_some_and(|a| {
                            a.iter()
                                .any(|ip| ip.get("subnet_id").and_then(Value::as_str) == Some(id))
                        })
                });
                if used {
                    return in_use(format!("subnet {id} has allocated addresses"));
                }
                for n in self.coll("networks").values_mut() {
                    if let Some(Value::Array(a)) = n.get_mut("subnets") {
                        a.retain(|x| x.as_str() != Some(id));
                    }
                }
            }
            "subnetpools" if self.all("subnets").any(|sn| s(sn, "subnetpool_id") == id) => {
                return in_use(format!("subnetpool {id} has subnets"));
            }
            // Neutron takes a deleted port's floating IPs off it (they stay allocated).
            "ports" => {
                for f in self.coll("floatingips").values_mut() {
                    if s(f, "port_id") == id {
                        f.insert("port_id".into(), Value::Null);
                    }
                }
            }
            "security-groups" => {
                let used = self.all("ports").any(|p| {
                    p.get("security_groups")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|g| g.as_str() == Some(id)))
                });
                if used {
                    return in_use(format!("security group {id} is in use"));
                }
                self.coll("security-group-rules")
                    .retain(|_, r| s(r, "security_group_id") != id);
            }
            _ => {}
        }
        self.coll(c).remove(id);
        (204, Value::Null)
    }
}

/// Addresses for the `fixed_ips` a port asks for, avoiding those `taken`.
fn allocate(
    subnets: &[Obj],
    wanted: &[Value],
    mut taken: Vec<String>,
) -> Result<Vec<Value>, Reply> {
    let mut fixed = Vec::new();
    for w in wanted {
        let ip_req = w.get("ip_address").and_then(Value::as_str);
        let sub = match w.get("subnet_id").and_then(Value::as_str) {
            Some(id) => subnets.iter().find(|sn| s(sn, "id") == id),
            None => ip_req.and_then(|ip| {
                let ip: IpAddr = ip.parse().ok()?;
                subnets.iter().find(|sn| {
                    s(sn, "cidr")
                        .parse::<IpNet>()
                        .is_ok_and(|c| c.contains(&ip))
                })
            }),
        };
        let Some(sub) = sub else {
            return Err(fail(400, "InvalidInput", format!("no subnet for {w}")));
        };
        let cidr: IpNet = s(sub, "cidr")
            .parse()
            .map_err(|_| fail(500, "Internal", "bad cidr"))?;
        let ip = match ip_req {
            Some(ip) => {
                let addr: IpAddr = ip
                    .parse()
                    .map_err(|_| fail(400, "InvalidInput", format!("invalid IP {ip}")))?;
                if !cidr.contains(&addr) {
                    return Err(fail(
                        400,
                        "InvalidIpForSubnet",
                        format!("{ip} not in {cidr}"),
                    ));
                }
                if taken.iter().any(|t| t == ip) {
                    return Err(fail(
                        409,
                        "IpAddressAlreadyAllocated",
                        format!(
                            "IP address {ip} already allocated in subnet {}",
                            s(sub, "id")
                        ),
                    ));
                }
                addr.to_string()
            }
            None => {
                let gw = s(sub, "gateway_ip").to_string();
                cidr.hosts()
                    .take(4096)
                    .map(|h| h.to_string())
                    .find(|h| *h != gw && !taken.contains(h))
                    .ok_or_else(|| {
                        fail(
                            409,
                            "IpAddressGenerationFailure",
                            format!("no more addresses in {cidr}"),
                        )
                    })?
            }
        };
        taken.push(ip.clone());
        fixed.push(json!({"subnet_id": s(sub, "id"), "ip_address": ip}));
    }
    Ok(fixed)
}

/// Now, as Neutron writes times (`2026-12-01T22:28:55Z`).
fn now_iso8601() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date of a day count (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn not_found(c: &str, id: &str) -> Reply {
    let kind = match singular(c) {
        Some("network") => "NetworkNotFound",
        Some("subnet") => "SubnetNotFound",
        Some("port") => "PortNotFound",
        _ => "NotFound",
    };
    err(404, kind, format!("{c} {id} could not be found"))
}

#[async_trait::async_trait]
impl crate::neutron::Transport for MemoryNeutron {
    async fn exchange(
        &self,
        r: crate::neutron::transport::Request<'_>,
    ) -> Result<crate::neutron::transport::Answer, crate::neutron::transport::NoAnswer> {
        use crate::neutron::transport::{Answer, NoAnswer};
        if let Ok(mut st) = self.state.lock() {
            st.timeouts
                .push((format!("{} {}", r.method, r.path), r.timeout));
        }
        match MemoryNeutron::exchange(self, r.method.as_str(), r.path, r.query, r.body) {
            Ok((status, body)) => Ok(Answer {
                status,
                body,
                request_id: String::new(),
            }),
            Err(NoReply::Refused) => Err(NoAnswer {
                connect: true,
                message: "error sending request: connection refused".into(),
                cause: None,
            }),
            Err(NoReply::Silent) => {
                tokio::time::sleep(crate::deadline::cap(r.timeout)).await;
                Err(NoAnswer {
                    connect: false,
                    message: "error sending request: operation timed out".into(),
                    cause: None,
                })
            }
        }
    }
}
