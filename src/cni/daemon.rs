//! The daemon's CNI API: `POST /v1/cni` on its own unix socket (never the libnetwork
//! one), a [`Call`] in, the CNI result or error out, written in the config's version.
//! Versioned by path so the binary and the daemon can change apart.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::spec::{self, Call, CniError, CniResult, Code, Command, NetConf};
use crate::driver::cni::{Attach, Attached, Wiring};
use crate::driver::{Driver, DriverError};
use crate::service::App;

pub fn router(service: App) -> Router {
    Router::new()
        .route("/v1/cni", post(handle))
        .fallback(|| async {
            reply(
                StatusCode::NOT_FOUND,
                CniError::new(Code::InvalidEnv, "kuryr's CNI API is POST /v1/cni")
                    .to_json(spec::DEFAULT_VERSION),
            )
        })
        .with_state(service)
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        if body.is_null() {
            String::new()
        } else {
            body.to_string()
        },
    )
        .into_response()
}

fn error_reply(e: &CniError, version: &str) -> Response {
    let status = match e.code {
        c if c == Code::NotAvailable as u32
            || c == Code::NotAvailableLimited as u32
            || c == Code::TryAgain as u32 =>
        {
            StatusCode::SERVICE_UNAVAILABLE
        }
        c if c < 10 => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    reply(status, e.to_json(version))
}

async fn handle(State(svc): State<App>, body: Bytes) -> Response {
    let call: Call = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            let err =
                CniError::new(Code::Decode, "not a kuryr-cni call").with_details(e.to_string());
            return error_reply(&err, spec::DEFAULT_VERSION);
        }
    };
    let conf = match NetConf::parse(&serde_json::to_vec(&call.config).unwrap_or_default()) {
        Ok(c) => c,
        Err(e) => return error_reply(&e, spec::DEFAULT_VERSION),
    };
    let version = conf.version().to_string();
    let started = std::time::Instant::now();
    // Neutron's requests are counted per command, as per libnetwork call.
    let label = Command::parse(&call.command).map_or("CNI", Command::label);
    let (command, container, ifname) = (
        call.command.clone(),
        call.container_id.clone(),
        call.ifname.clone(),
    );
    let work = crate::neutron::CALL.scope(label, async move {
        match svc.driver_within(crate::service::CONNECT_WAIT).await {
            Some(d) => dispatch(d, &call, &conf).await,
            None => Err(CniError::new(Code::NotAvailable, svc.not_ready())),
        }
    });
    use crate::deadline::{answered, within, Unfinished, PLUGIN_ANSWER, PLUGIN_STEPS};
    let result = match answered(PLUGIN_ANSWER, tokio::spawn(within(PLUGIN_STEPS, work))).await {
        Ok(r) => r,
        Err(Unfinished::Failed(e)) => Err(cni_error(DriverError::Internal(format!(
            "{command} failed: {e}"
        )))),
        Err(Unfinished::Late) => {
            tracing::warn!(%command, %container, %ifname, "CNI call past its deadline; it finishes (or undoes itself) after this answer");
            Err(cni_error(DriverError::Timeout(format!(
                "{command} did not finish within {} s (Neutron too slow or unreachable?)",
                PLUGIN_ANSWER.as_secs()
            ))))
        }
    };
    let took_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(v) => {
            tracing::info!(%command, %container, %ifname, took_ms, "CNI");
            let v = match v {
                Value::Null => Value::Null,
                v => {
                    let mut v = v;
                    v["cniVersion"] = json!(version);
                    v
                }
            };
            reply(StatusCode::OK, v)
        }
        Err(e) => {
            tracing::warn!(%command, %container, %ifname, took_ms, code = e.code, error = %e.msg, details = %e.details, "CNI failed");
            error_reply(&e, &version)
        }
    }
}

/// Checks what the command needs, runs it: a result (Null for none) or a CNI error.
async fn dispatch(d: &Arc<Driver>, call: &Call, conf: &NetConf) -> Result<Value, CniError> {
    match Command::parse(&call.command)? {
        Command::Add => add(d, call, conf).await,
        Command::Del => {
            d.cni_del(&attach_of(call, conf)?)
                .await
                .map_err(cni_error)?;
            Ok(Value::Null)
        }
        Command::Check => check(d, call, conf).await,
        Command::Status => {
            d.cni_status().await.map_err(|e| {
                CniError::new(Code::NotAvailable, "Neutron is not reachable from kuryr")
                    .with_details(e.to_string())
            })?;
            Ok(Value::Null)
        }
        Command::Gc => gc(d, conf).await,
        Command::Version => Err(CniError::new(
            Code::InvalidEnv,
            "VERSION is answered by kuryr-cni itself, not the daemon",
        )),
    }
}

/// The attachment a call names, its container id, interface and namespace checked.
fn attach_of(call: &Call, conf: &NetConf) -> Result<Attach, CniError> {
    if !spec::valid_container_id(&call.container_id) {
        return Err(CniError::new(
            Code::InvalidEnv,
            format!(
                "CNI_CONTAINERID {:?} is not a container id",
                call.container_id
            ),
        ));
    }
    if !spec::valid_ifname(&call.ifname) {
        return Err(CniError::new(
            Code::InvalidEnv,
            format!("CNI_IFNAME {:?} is not an interface name", call.ifname),
        ));
    }
    let netns = match call.netns.as_str() {
        "" => None,
        p if p.starts_with('/') && !p.contains("..") => Some(PathBuf::from(p)),
        p => {
            return Err(CniError::new(
                Code::InvalidEnv,
                format!("CNI_NETNS {p:?} is not an absolute path"),
            ))
        }
    };
    Ok(Attach {
        container_id: call.container_id.clone(),
        ifname: call.ifname.clone(),
        netns,
        conf_name: conf.name.clone(),
    })
}

async fn add(d: &Arc<Driver>, call: &Call, conf: &NetConf) -> Result<Value, CniError> {
    let a = attach_of(call, conf)?;
    conf.require_network()?;
    let wanted = spec::parse_args(&call.args, &conf.runtime_config)?;
    let w = Wiring {
        network: conf.network.clone(),
        subnet: conf.subnet.clone(),
        cidr: conf
            .cidr
            .as_deref()
            .and_then(|c| c.parse::<ipnet::IpNet>().ok())
            .map(|n| n.trunc()),
        subnetpool: conf.subnetpool.clone(),
        security_groups: conf.security_groups.clone(),
        qos_policy: conf.qos_policy.clone(),
        floating_network: conf.floating_network.clone(),
        mtu: conf.mtu,
        ips: wanted.ips,
        mac: wanted.mac,
        made_tags: Vec::new(),
        internal: false,
        description: wanted.pod.map(|p| crate::names::pod_description(&p)),
    };
    let att = d.cni_add(&a, &w).await.map_err(cni_error)?;
    Ok(result(&att, &a).to_json(conf.version()))
}

async fn check(d: &Arc<Driver>, call: &Call, conf: &NetConf) -> Result<Value, CniError> {
    if conf.version().starts_with("0.3") {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            "CHECK needs cniVersion 0.4.0 or later",
        ));
    }
    let prev = match &conf.prev_result {
        Some(p) => CniResult::from_prev(p)?
            .ips
            .into_iter()
            .map(|i| i.address)
            .collect(),
        None => Vec::new(),
    };
    d.cni_check(&attach_of(call, conf)?, &prev)
        .await
        .map_err(cni_error)?;
    Ok(Value::Null)
}

async fn gc(d: &Arc<Driver>, conf: &NetConf) -> Result<Value, CniError> {
    let valid = conf.valid_attachments.as_ref().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "GC needs cni.dev/valid-attachments (without it every attachment would go)",
        )
    })?;
    let valid: Vec<(String, String)> = valid
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let removed = d.cni_gc(&conf.name, &valid).await.map_err(cni_error)?;
    for h in removed {
        tracing::info!(port = %h.port_id, container = %h.container_id, ifname = %h.ifname, "CNI GC removed an attachment");
    }
    Ok(Value::Null)
}

/// The spec's code for a driver error: the config's fault, try again, or kuryr's own.
fn code_of(e: &DriverError) -> Code {
    match e {
        DriverError::BadRequest(_) | DriverError::NotFound(_) => Code::InvalidConfig,
        DriverError::Unavailable(_) => Code::NotAvailable,
        DriverError::Timeout(_) => Code::TryAgain,
        DriverError::Neutron(n) if n.http_status() >= 500 => Code::TryAgain,
        DriverError::Neutron(_) | DriverError::Conflict(_) => Code::Neutron,
        DriverError::Host(_) | DriverError::Internal(_) => Code::Host,
        DriverError::RolledBack { error, .. } => code_of(error),
        DriverError::Teardown(all) => all.first().map_or(Code::Host, code_of),
    }
}

fn cni_error(e: DriverError) -> CniError {
    CniError::new(code_of(&e), e.to_string())
}

/// The CNI result of an attachment: the host veth, then the container interface.
fn result(att: &Attached, a: &Attach) -> CniResult {
    let sandbox = a
        .netns
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    CniResult {
        interfaces: vec![
            spec::Interface {
                name: att.host_ifname.clone(),
                mac: String::new(),
                mtu: att.mtu,
                sandbox: String::new(),
            },
            spec::Interface {
                name: a.ifname.clone(),
                mac: att.mac.clone(),
                mtu: att.mtu,
                sandbox,
            },
        ],
        ips: att
            .ips
            .iter()
            .map(|(addr, gw)| spec::IpConfig {
                address: *addr,
                gateway: *gw,
                interface: Some(1),
            })
            .collect(),
        routes: att
            .routes
            .iter()
            .map(|(dst, gw)| spec::Route { dst: *dst, gw: *gw })
            .collect(),
        dns: spec::Dns {
            nameservers: att.nameservers.clone(),
        },
    }
}
