//! The plugin's HTTP side: `POST /<Interface>.<Method>` on a unix socket (and TCP when
//! configured), JSON bodies parsed whatever the Content-Type (Docker sends none), every
//! error as `{"Err": ...}` with a non-200 status.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{self, header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::config::Config;
use crate::driver::{Driver, DriverError};
use crate::neutron::{CALL, REQUEST_ID};
use crate::protocol::{Method, CONTENT_TYPE};
pub use crate::service::{App, Service, CONNECT_WAIT};

/// Largest request body accepted; libnetwork's bodies are a few KiB.
pub const MAX_BODY: usize = 1 << 20;

/// Every libnetwork call answers within this, below Docker's 30 s plugin timeout. Its
/// steps stop earlier (`deadline::STEPS`) so that a call that would take longer (Neutron
/// too slow, retries running out) undoes what it made and answers an `Err` saying so;
/// this is the backstop when the undo itself is slow.
pub const CALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(25);

/// The router of a driver that is ready.
pub fn router(driver: Arc<Driver>) -> Router {
    router_for(Arc::new(Service::ready(driver)))
}

pub fn router_for(service: App) -> Router {
    Router::new().fallback(handle).with_state(service)
}

fn reply(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn error_reply(status: u16, msg: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // `Error` too: Docker's IPAM client reads that field when it sees a 200.
    reply(status, &json!({"Err": msg, "Error": msg}))
}

/// Operator endpoints, served on GET: `/metrics`, `/healthz`, `/readyz`, `/kuryr/stats`.
async fn ops(svc: &Service, path: &str) -> Option<Response> {
    let Some(driver) = svc.driver() else {
        return match path {
            "kuryr/stats" => Some(reply(StatusCode::OK, &json!({"connected": false}))),
            "readyz" => Some(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{}\n", svc.not_ready()),
                )
                    .into_response(),
            ),
            "metrics" | "healthz" => ops_common(path),
            _ => None,
        };
    };
    match path {
        "kuryr/stats" => {
            let n = driver.neutron().stats();
            Some(reply(
                StatusCode::OK,
                &json!({"neutron_requests": n.total(), "by_kind": n.snapshot(), "by_call": n.by_call(),
                    "background_pending": driver.background_pending(),
                    "keystone_tokens": driver.neutron().tokens_issued()}),
            ))
        }
        "metrics" | "healthz" => ops_common(path),
        // Ready: Neutron answers with these credentials.
        "readyz" => Some(match driver.neutron().extensions().await {
            Ok(_) => (StatusCode::OK, "ok\n").into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("Neutron: {e}\n")).into_response(),
        }),
        _ => None,
    }
}

/// What needs no driver: metrics, and liveness (the process answers).
fn ops_common(path: &str) -> Option<Response> {
    match path {
        "metrics" => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                crate::metrics::global().render(),
            )
                .into_response(),
        ),
        "healthz" => Some((StatusCode::OK, "ok\n").into_response()),
        _ => None,
    }
}

/// The operator endpoints alone, for a separate metrics listener.
pub fn ops_router(service: App) -> Router {
    async fn only_ops(State(svc): State<App>, method: http::Method, uri: Uri) -> Response {
        let path = uri.path().trim_start_matches('/');
        match (method == http::Method::GET).then_some(()) {
            Some(()) => match ops(&svc, path).await {
                Some(r) => r,
                None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
            },
            None => (StatusCode::METHOD_NOT_ALLOWED, "GET only\n").into_response(),
        }
    }
    Router::new().fallback(only_ops).with_state(service)
}

async fn handle(State(svc): State<App>, method: http::Method, uri: Uri, body: Body) -> Response {
    let path = uri.path().trim_start_matches('/').to_string();
    if method == http::Method::GET {
        if let Some(r) = ops(&svc, &path).await {
            return r;
        }
    }
    let Some(call) = Method::from_path(&path) else {
        return error_reply(
            404,
            &format!("404 Not Found: unknown method {:?}", truncate(&path)),
        );
    };
    if method != http::Method::POST {
        return error_reply(405, &format!("405 Method Not Allowed: use POST for {path}"));
    }
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                error_reply(413, &format!("request body over {MAX_BODY} bytes"))
            } else {
                error_reply(400, &format!("cannot read request body: {e}"))
            };
        }
    };
    let rid = format!("req-{}", uuid::Uuid::new_v4());
    let started = Instant::now();
    // The handler runs as a task of its own, within its budget: it is never dropped
    // half-way (the answer's deadline passing, or Docker going away), so what it made is
    // either kept, as answered, or undone by its own error path.
    let work = {
        let svc = svc.clone();
        REQUEST_ID.scope(
            rid.clone(),
            CALL.scope(
                call.path(),
                async move { serve_call(&svc, call, &bytes).await },
            ),
        )
    };
    use crate::deadline::{answered, within, Unfinished, STEPS};
    let result = match answered(CALL_DEADLINE, tokio::spawn(within(STEPS, work))).await {
        Ok(r) => r,
        Err(Unfinished::Failed(e)) => Err(DriverError::Internal(format!("{path} failed: {e}"))),
        Err(Unfinished::Late) => {
            tracing::warn!(request_id = %rid, method = %path, "call past its deadline; it finishes (or undoes itself) after this answer");
            Err(DriverError::Timeout(format!(
                "{path} did not finish within {} s (Neutron too slow or unreachable?)",
                CALL_DEADLINE.as_secs()
            )))
        }
    };
    #[cfg(feature = "testkit")]
    crate::testkit::crash_after(&path);
    let secs = started.elapsed().as_secs_f64();
    let ms = secs * 1000.0;
    crate::metrics::global().observe_call(
        &path,
        result.as_ref().map(|_| 200).unwrap_or_else(|e| e.status()),
        secs,
    );
    match result {
        Ok(v) => {
            tracing::info!(request_id = %rid, method = %path, status = 200, ms = format!("{ms:.1}"), "libnetwork call");
            reply(StatusCode::OK, &v)
        }
        Err(e) => {
            let status = e.status();
            let msg = e.to_string();
            tracing::warn!(request_id = %rid, method = %path, status, ms = format!("{ms:.1}"), error = %msg, "libnetwork call failed");
            error_reply(status, &msg)
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, DriverError> {
    let body = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| DriverError::BadRequest(format!("invalid request body: {e}")))
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value, DriverError> {
    serde_json::to_value(v).map_err(|e| DriverError::Internal(e.to_string()))
}

/// A call: answered from the configuration when it needs no Neutron, else by the driver
/// (or an `Err` while there is none yet).
async fn serve_call(svc: &Service, method: Method, body: &[u8]) -> Result<Value, DriverError> {
    if let Some(answer) = constant(svc.cfg(), method, body) {
        return answer;
    }
    match svc.driver_within(CONNECT_WAIT).await {
        Some(d) => {
            let answer = dispatch(d, method, body).await;
            if answer.as_ref().is_err_and(DriverError::neutron_not_found) {
                // Deleted behind kuryr's back (another host, an admin): what kuryr remembers
                // may name it, so all of it is read from Neutron again, and Docker's
                // retry (or the user's) finds things as they are.
                tracing::info!(%method, "Neutron no longer has an object this call used: forgetting the caches");
                d.cache.clear();
            }
            answer
        }
        None => Err(DriverError::Unavailable(svc.not_ready())),
    }
}

/// The calls that depend on the configuration alone.
fn constant(cfg: &Config, method: Method, body: &[u8]) -> Option<Result<Value, DriverError>> {
    use Method as M;
    Some(match method {
        M::Activate => Ok(json!({"Implements": ["NetworkDriver", "IpamDriver"]})),
        M::NetworkCapabilities => Ok(network_capabilities(cfg)),
        M::IpamCapabilities => Ok(ipam_capabilities()),
        M::DefaultAddressSpaces => Ok(default_address_spaces(cfg)),
        M::DiscoverNew | M::DiscoverDelete | M::FreeNetwork => {
            parse::<Value>(body).map(|_| json!({}))
        }
        M::AllocateNetwork => parse::<Value>(body).map(|b| allocate_network(&b)),
        _ => return None,
    })
}

/// `NetworkDriver.GetCapabilities`.
/// `GwAllocChecker`: Docker 28+ then asks `GwAllocCheck` before it makes a network (older
/// engines ignore the field).
pub fn network_capabilities(cfg: &Config) -> Value {
    json!({"Scope": cfg.capability_scope.as_str(), "GwAllocChecker": true})
}

/// `IpamDriver.GetCapabilities`. Docker then makes no MAC of its own: CreateEndpoint gets
/// an empty MacAddress (unless the user set one) and the container takes the port's MAC,
/// which a port bound ahead of time cannot change.
pub fn ipam_capabilities() -> Value {
    json!({"RequiresMACAddress": false})
}

/// `IpamDriver.GetDefaultAddressSpaces`.
pub fn default_address_spaces(cfg: &Config) -> Value {
    json!({
        "LocalDefaultAddressSpace": cfg.local_default_address_space,
        "GlobalDefaultAddressSpace": cfg.global_default_address_space,
    })
}

/// `NetworkDriver.AllocateNetwork` (swarm): nothing to allocate; the options go back.
pub fn allocate_network(body: &Value) -> Value {
    json!({"Options": body.get("Options").cloned().unwrap_or(Value::Null)})
}

/// Routes one libnetwork call to its handler.
pub async fn dispatch(d: &Driver, method: Method, body: &[u8]) -> Result<Value, DriverError> {
    use Method as M;
    if let Some(answer) = constant(&d.cfg, method, body) {
        return answer;
    }
    match method {
        M::Activate
        | M::NetworkCapabilities
        | M::IpamCapabilities
        | M::DefaultAddressSpaces
        | M::DiscoverNew
        | M::DiscoverDelete
        | M::FreeNetwork
        | M::AllocateNetwork => Err(DriverError::Internal(format!("{method} answered above"))),
        M::CreateNetwork => empty(d.create_network(parse(body)?).await),
        M::GwAllocCheck => to_value(d.gw_alloc_check(parse(body)?).await?),
        M::DeleteNetwork => empty(d.delete_network(parse(body)?).await),
        M::CreateEndpoint => to_value(d.create_endpoint(parse(body)?).await?),
        M::EndpointOperInfo => to_value(d.endpoint_oper_info(parse(body)?).await?),
        M::DeleteEndpoint => empty(d.delete_endpoint(parse(body)?).await),
        M::Join => to_value(d.join(parse(body)?).await?),
        M::Leave => empty(d.leave(parse(body)?).await),
        M::ProgramExternalConnectivity => {
            empty(d.program_external_connectivity(parse(body)?).await)
        }
        M::RevokeExternalConnectivity => empty(d.revoke_external_connectivity(parse(body)?).await),
        M::RequestPool => to_value(d.request_pool(parse(body)?).await?),
        M::ReleasePool => empty(d.release_pool(parse(body)?).await),
        M::RequestAddress => to_value(d.request_address(parse(body)?).await?),
        M::ReleaseAddress => empty(d.release_address(parse(body)?).await),
    }
}

/// The answer of a call that returns nothing but success.
fn empty(done: Result<(), DriverError>) -> Result<Value, DriverError> {
    done.map(|()| json!({}))
}

/// Binds the unix socket: parent created, a stale socket file replaced, mode 0660.
pub fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // Refuse to steal the socket of a running instance.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is served by another process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Removes the socket file when the server stops.
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_empty_and_rejects_garbage() {
        let v: Value = parse(b"").unwrap();
        assert_eq!(v, json!({}));
        let e = parse::<crate::protocol::NetworkRequest>(b"{\"nope\":1}").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("NetworkID"), "{e}");
        assert_eq!(parse::<Value>(b"{not json").unwrap_err().status(), 400);
    }

    #[test]
    fn every_method_known() {
        assert_eq!(
            Method::from_path("IpamDriver.RequestPool"),
            Some(Method::RequestPool)
        );
        assert_eq!(Method::from_path("IpamDriver.Nope"), None);
        assert_eq!(Method::from_path("../etc/passwd"), None);
        for m in Method::ALL {
            assert_eq!(Method::from_path(m.path()), Some(m));
        }
    }

    /// A call that comes while kuryr is still connecting waits for the connection
    /// instead of failing (a `docker network create` right after kuryr starts).
    #[tokio::test]
    async fn a_call_during_the_first_connection_waits_for_it() {
        let t = crate::testkit::TestDriver::new("").await;
        let svc = Arc::new(Service::connecting(t.driver.cfg.clone()));
        let body = br#"{"Pool": "10.71.0.0/24"}"#;
        let call = {
            let svc = svc.clone();
            tokio::spawn(async move { serve_call(&svc, Method::RequestPool, body).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        svc.set_driver(t.driver.clone());
        let answer = call.await.unwrap();
        assert!(answer.is_ok(), "{answer:?}");
        // Without a connection the wait ends; once an attempt failed, there is none.
        let alone = Service::connecting(t.driver.cfg.clone());
        let short = std::time::Duration::from_millis(20);
        assert!(alone.driver_within(short).await.is_none());
        alone.set_waiting("Neutron: refused".into());
        let at_once = std::time::Instant::now();
        let long = std::time::Duration::from_secs(30);
        assert!(alone.driver_within(long).await.is_none());
        assert!(at_once.elapsed() < std::time::Duration::from_secs(5));
    }
}
