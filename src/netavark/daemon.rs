//! The daemon's netavark API: `POST /v1/netavark` on the plugin socket (beside
//! `/v1/cni`), a [`Call`] of `kuryr-netavark` in, its stdout answer (or
//! `{"error": ...}`) out. A Podman network of driver `kuryr` maps onto a Neutron network
//! the way a CNI config does, on the same attachment core:
//!
//! - `create` resolves the network's Neutron objects (made from `--subnet` or a pool
//!   when missing) and answers the network with their ids among its options and no
//!   `subnets`, so that Podman leaves the addresses to Neutron (an `--ip` still arrives,
//!   and is the port's);
//! - `setup` is a CNI ADD of (container, interface) on that network; its answer is the
//!   status block Podman shows and writes into `/etc/hosts` and `resolv.conf`;
//! - `teardown` is a CNI DEL.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use super::spec::{
    options as opt, Call, Command, NetAddress, NetInterface, Network, PluginError, Request,
    StatusBlock,
};
use super::watch::StoreWatch;
use crate::driver::cni::{Attach, Attached, Wiring};
use crate::driver::{Driver, DriverError};
use crate::service::App;

/// The path of this API on the plugin socket.
pub const PATH: &str = "/v1/netavark";

/// What the handlers share: the daemon's service, and the watch on Podman's store that
/// learns each network `create` made (one may be gone before the next read of the store).
#[derive(Clone)]
struct Ctx {
    svc: App,
    watch: Option<Arc<StoreWatch>>,
}

pub fn router(service: App, watch: Option<Arc<StoreWatch>>) -> Router {
    Router::new().route(PATH, post(handle)).with_state(Ctx {
        svc: service,
        watch,
    })
}

/// A failure and the status it is answered with.
struct Failed(StatusCode, String);

impl Failed {
    fn bad(msg: impl Into<String>) -> Self {
        Failed(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl From<DriverError> for Failed {
    fn from(e: DriverError) -> Self {
        let status = match &e {
            DriverError::BadRequest(_) | DriverError::NotFound(_) => StatusCode::BAD_REQUEST,
            DriverError::Unavailable(_) | DriverError::Timeout(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            DriverError::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failed(status, e.to_string())
    }
}

fn reply(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn handle(State(ctx): State<Ctx>, body: Bytes) -> Response {
    let svc = &ctx.svc;
    let call: Call = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("not a kuryr-netavark call: {e}");
            return reply(StatusCode::BAD_REQUEST, &PluginError::new(msg));
        }
    };
    let started = std::time::Instant::now();
    let label = match call.command.as_str() {
        "create" => "NETAVARK.create",
        "setup" => "NETAVARK.setup",
        "teardown" => "NETAVARK.teardown",
        _ => "NETAVARK",
    };
    let command = call.command.clone();
    let work = {
        let (svc, watch) = (svc.clone(), ctx.watch.clone());
        crate::neutron::CALL.scope(label, async move {
            match svc.driver_within(crate::service::CONNECT_WAIT).await {
                Some(d) => dispatch(d, &call, watch.as_deref()).await,
                None => Err(Failed(StatusCode::SERVICE_UNAVAILABLE, svc.not_ready())),
            }
        })
    };
    use crate::deadline::{answered, within, Unfinished, PLUGIN_ANSWER, PLUGIN_STEPS};
    let result = match answered(PLUGIN_ANSWER, tokio::spawn(within(PLUGIN_STEPS, work))).await {
        Ok(r) => r,
        Err(Unfinished::Failed(e)) => {
            Err(DriverError::Internal(format!("{command} failed: {e}")).into())
        }
        Err(Unfinished::Late) => {
            tracing::warn!(%command, "netavark call past its deadline; it finishes (or undoes itself) after this answer");
            Err(DriverError::Timeout(format!(
                "{command} did not finish within {} s (Neutron too slow or unreachable?)",
                PLUGIN_ANSWER.as_secs()
            ))
            .into())
        }
    };
    let took_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(v) => {
            tracing::info!(%command, took_ms, "netavark");
            reply(StatusCode::OK, &v)
        }
        Err(Failed(status, msg)) => {
            tracing::warn!(%command, took_ms, error = %msg, "netavark failed");
            reply(status, &PluginError::new(msg))
        }
    }
}

async fn dispatch(d: &Driver, call: &Call, watch: Option<&StoreWatch>) -> Result<Value, Failed> {
    let args: Vec<String> = match call.command.as_str() {
        "create" | "info" => vec![call.command.clone()],
        c => vec![c.to_string(), call.netns.clone()],
    };
    match Command::parse(&args).map_err(Failed::bad)? {
        Command::Create => {
            let net: Network = parse(&call.request, "network")?;
            let made = create(d, net).await?;
            if let Some(w) = watch {
                w.made(&made.id);
            }
            Ok(serde_json::to_value(made).unwrap_or_default())
        }
        Command::Setup(netns) => {
            let req: Request = parse(&call.request, "setup request")?;
            let status = setup(d, &req, netns_of(&netns, call.pid)?).await?;
            Ok(serde_json::to_value(status).unwrap_or_default())
        }
        Command::Teardown(netns) => {
            let req: Request = parse(&call.request, "teardown request")?;
            let a = attach_of(&req, Some(netns_of(&netns, call.pid)?))?;
            d.cni_del(&a).await?;
            Ok(Value::Null)
        }
        Command::Info => Err(Failed::bad(
            "info is answered by kuryr-netavark itself, not the daemon",
        )),
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, Failed> {
    serde_json::from_value(v.clone())
        .map_err(|e| Failed::bad(format!("not a netavark {what}: {e}")))
}

/// The container's namespace as the daemon reaches it: through the plugin's root
/// (`/proc/<pid>/root`), where netavark named it, when the plugin runs in a mount
/// namespace of its own; the path itself otherwise.
fn netns_of(netns: &str, pid: Option<u32>) -> Result<PathBuf, Failed> {
    if !netns.starts_with('/') || netns.contains("..") {
        return Err(Failed::bad(format!(
            "network namespace {netns:?} is not an absolute path"
        )));
    }
    if let Some(pid) = pid {
        let via = PathBuf::from(format!("/proc/{pid}/root{netns}"));
        if via.exists() {
            return Ok(via);
        }
    }
    Ok(PathBuf::from(netns))
}

/// The attachment core's name for a Podman network's attachments (its tags, its GC
/// scope): apart from any CNI config's.
fn conf_name(net: &Network) -> String {
    format!("netavark.{}", net.name)
}

fn attach_of(req: &Request, netns: Option<PathBuf>) -> Result<Attach, Failed> {
    if !crate::cni::spec::valid_container_id(&req.container_id) {
        return Err(Failed::bad(format!(
            "container id {:?} is not a container id",
            req.container_id
        )));
    }
    let ifname = &req.network_options.interface_name;
    if !crate::cni::spec::valid_ifname(ifname) {
        return Err(Failed::bad(format!(
            "interface name {ifname:?} is not an interface name"
        )));
    }
    Ok(Attach {
        container_id: req.container_id.clone(),
        ifname: ifname.clone(),
        netns,
        conf_name: conf_name(&req.network),
    })
}

/// The network's options, checked: an unknown one is refused with the known ones named.
fn checked_options<'a>(
    given: &'a BTreeMap<String, String>,
    known: &[&str],
    whose: &str,
) -> Result<&'a BTreeMap<String, String>, Failed> {
    if let Some(k) = given.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Failed::bad(format!(
            "{whose} option {k:?} is not one of kuryr's ({})",
            known.join(", ")
        )));
    }
    Ok(given)
}

/// What a network's options (and a container's, which win) ask of Neutron.
fn wiring_of(net: &Network, container: &BTreeMap<String, String>) -> Result<Wiring, Failed> {
    let o = checked_options(&net.options, opt::NETWORK_OPTIONS, "network")?;
    let c = checked_options(container, opt::CONTAINER_OPTIONS, "container")?;
    let get = |k: &str| c.get(k).or_else(|| o.get(k)).cloned().unwrap_or_default();
    let first = |keys: &[&str]| {
        keys.iter()
            .map(|k| get(k))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    };
    let network = first(&[opt::NET_UUID, opt::NETWORK, opt::NET_NAME]);
    let cidr = match net.subnets.as_slice() {
        [] => None,
        [one] => Some(one.subnet.trunc()),
        _ => {
            return Err(Failed::bad(
                "a kuryr network takes one --subnet (the Neutron network may hold more: name it with -o neutron.net.name=...)",
            ))
        }
    };
    let mtu = match get(opt::MTU).as_str() {
        "" => None,
        m => Some(
            m.parse::<u32>()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| {
                    Failed::bad(format!("mtu {m:?} is not a number from 68 to 65535"))
                })?,
        ),
    };
    Ok(Wiring {
        // A network of its own when none is named: called after Podman's network.
        network: if network.is_empty() {
            crate::names::network_name(&net.id)
        } else {
            network
        },
        subnet: first(&[opt::SUBNET_UUID, opt::SUBNET_NAME]),
        cidr,
        subnetpool: first(&[opt::POOL_UUID, opt::POOL_NAME]),
        security_groups: get(opt::SECURITY_GROUPS)
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        qos_policy: Some(get(opt::QOS_POLICY)).filter(|q| !q.is_empty()),
        floating_network: Some(get(opt::FLOATING_NETWORK)).filter(|f| !f.is_empty()),
        mtu,
        ips: Vec::new(),
        mac: None,
        made_tags: Vec::new(),
        internal: net.internal,
        description: None,
    })
}

/// `podman network create -d kuryr`: the Neutron network and subnet it maps to (made
/// when its `--subnet` or pool asks), written into the answer as ids.
async fn create(d: &Driver, mut net: Network) -> Result<Network, Failed> {
    let mut w = wiring_of(&net, &BTreeMap::new())?;
    // `kuryr gc` finds it by this once Podman's network is gone.
    let tag = crate::names::netavark_net_tag(&net.id);
    w.made_tags = vec![tag.clone()];
    let named = !net.options.contains_key(opt::NET_UUID)
        && !net.options.contains_key(opt::NET_NAME)
        && !net.options.contains_key(opt::NETWORK);
    if named && w.cidr.is_none() && w.subnetpool.is_empty() {
        return Err(Failed::bad(
            "a kuryr network needs a Neutron network (-o neutron.net.name=... or neutron.net.uuid=...), a --subnet, or a subnet pool (-o neutron.pool.name=...)",
        ));
    }
    let (neutron_net, subnets) = d.attachment_network(&w).await?;
    d.share_made_network(&neutron_net, &tag).await?;
    tracing::info!(network = %net.name, neutron_network = %neutron_net.id, "netavark: a Podman network on Neutron");
    // By id from now on: setups skip the name lookups, and a renamed Neutron network
    // still serves.
    for k in [opt::NET_NAME, opt::NETWORK] {
        net.options.remove(k);
    }
    net.options
        .insert(opt::NET_UUID.into(), neutron_net.id.to_string());
    if let [one] = subnets.as_slice() {
        net.options.remove(opt::SUBNET_NAME);
        net.options
            .insert(opt::SUBNET_UUID.into(), one.id.to_string());
    }
    // Neutron picks the addresses: Podman does its own IPAM only on a network with subnets.
    net.subnets.clear();
    // No aardvark-dns for a plugin's network: without this every run warns about it.
    net.dns_enabled = false;
    Ok(net)
}

/// A container's interface on the network: a port bound here, wired into its namespace.
async fn setup(d: &Driver, req: &Request, netns: PathBuf) -> Result<StatusBlock, Failed> {
    if let Some(p) = req.port_mappings.first() {
        return Err(Failed::bad(format!(
            "kuryr networks do not publish ports (-p {}:{}/{}): reach the container at its Neutron address, or give it a floating IP (-o {}=...)",
            p.host_port,
            p.container_port,
            p.protocol,
            opt::FLOATING_NETWORK
        )));
    }
    let a = attach_of(req, Some(netns))?;
    let mut w = wiring_of(&req.network, &req.network_options.options)?;
    // Made at create already; the ids in the options find them.
    w.cidr = None;
    w.ips.clone_from(&req.network_options.static_ips);
    w.mac.clone_from(&req.network_options.static_mac);
    let att = d.cni_add(&a, &w).await?;
    Ok(status_block(&a.ifname, &att))
}

fn status_block(ifname: &str, att: &Attached) -> StatusBlock {
    let mut interfaces = BTreeMap::new();
    interfaces.insert(
        ifname.to_string(),
        NetInterface {
            mac_address: att.mac.clone(),
            subnets: att
                .ips
                .iter()
                .map(|(ipnet, gateway)| NetAddress {
                    ipnet: *ipnet,
                    gateway: *gateway,
                })
                .collect(),
        },
    );
    StatusBlock {
        dns_search_domains: Vec::new(),
        dns_server_ips: att
            .nameservers
            .iter()
            .filter_map(|n| n.parse::<IpAddr>().ok())
            .collect(),
        interfaces,
    }
}
