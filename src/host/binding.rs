//! Binding a host interface into Neutron's L2, chosen by the port's `binding:vif_type`:
//! native `bridge`, `tap` and `unbound`; `ovs` through `ovs-vsctl`; anything else through
//! `<bindir>/<vif_type>` with the reference's arguments. No shell ever runs: arguments
//! are passed as a vector, and the type name is checked before it becomes a path.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokio::process::Command;

use super::netlink::Netlink;
use super::HostError;
use crate::names;
use crate::vif::VifType;

/// Everything a binder may need about the port.
#[derive(Debug, Clone)]
pub struct BindContext {
    pub vif_type: VifType,
    pub vif_details: Map<String, Value>,
    pub port_id: String,
    pub endpoint_id: String,
    pub mac: String,
    pub network_id: String,
    pub project_id: String,
    /// The host-side interface to bind.
    pub ifname: String,
    /// The port's IPv4 addresses, announced once the port is live on an OVN chassis.
    pub ipv4: Vec<std::net::Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binder {
    /// Linux bridge `brq<net id[0:11]>` (neutron-linuxbridge-agent).
    Bridge,
    /// Nothing to plug (e.g. Calico routes the tap itself).
    Tap,
    /// Open vSwitch integration bridge, plain or hybrid plug.
    Ovs,
    /// An executable under bindir.
    Script(PathBuf),
}

/// Neutron did not bind the port: no agent on this host, or a host name mismatch.
pub fn unbound_error(vif_type: &VifType, host: &str) -> HostError {
    HostError::Binding(format!(
        "Neutron did not bind the port (binding:vif_type {vif_type}): is an L2 agent running with host = {host}?"
    ))
}

/// A vif_type becomes a file name at most: letters, digits and `_` only.
pub fn valid_vif_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 32
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Picks the binder for a vif_type.
pub fn select(vif_type: &VifType, bindir: &Path, host: &str) -> Result<Binder, HostError> {
    match vif_type {
        VifType::Bridge => return Ok(Binder::Bridge),
        VifType::Tap => return Ok(Binder::Tap),
        VifType::Ovs => return Ok(Binder::Ovs),
        VifType::Unbound | VifType::BindingFailed => return Err(unbound_error(vif_type, host)),
        _ => {}
    }
    let vif_type = vif_type.as_str();
    if !valid_vif_type(vif_type) {
        return Err(HostError::Binding(format!(
            "binding:vif_type {:?} is not a valid type name",
            vif_type.chars().take(40).collect::<String>()
        )));
    }
    let path = bindir.join(vif_type);
    // The name is checked above; this keeps the promise even if bindir holds a symlink.
    if path.parent() != Some(bindir) {
        return Err(HostError::Binding(format!(
            "vif_type {vif_type} escapes bindir"
        )));
    }
    if !path.is_file() {
        return Err(HostError::Binding(format!(
            "vif_type({vif_type}) is not supported: no binding program {}",
            path.display()
        )));
    }
    Ok(Binder::Script(path))
}

/// `binding:vif_details` as the reference's scripts expect it: a Python dict literal.
pub fn python_dict(details: &Map<String, Value>) -> String {
    if details.is_empty() {
        return "None".into();
    }
    fn lit(v: &Value) -> String {
        match v {
            Value::Null => "None".into(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            Value::Array(a) => format!("[{}]", a.iter().map(lit).collect::<Vec<_>>().join(", ")),
            Value::Object(o) => format!(
                "{{{}}}",
                o.iter()
                    .map(|(k, v)| format!("{}: {}", lit(&Value::String(k.clone())), lit(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    lit(&Value::Object(details.clone()))
}

fn hybrid_plug(details: &Map<String, Value>) -> bool {
    details.get("ovs_hybrid_plug") == Some(&Value::Bool(true))
}

/// The bridge an `ovs` port goes into: the one Neutron names (the OVS agent always does,
/// ML2/OVN since 2024.1), else this host's OVN integration bridge (`ovn-bridge`, which
/// ML2/OVN of older releases leaves unnamed), else `br-int`.
async fn ovs_bridge(details: &Map<String, Value>) -> String {
    if let Some(b) = details
        .get("bridge_name")
        .and_then(|v| v.as_str())
        .filter(|s| valid_ifname(s))
    {
        return b.to_string();
    }
    let chassis_bridge = cached("ovn-bridge", || {
        super::ovs::local_chassis().map(|c| c.bridge)
    })
    .await;
    chassis_bridge
        .filter(|b| valid_ifname(b))
        .unwrap_or_else(|| "br-int".into())
}

/// The datapath of the bridge a port goes into: Neutron's `datapath_type` if it says,
/// else the bridge's own.
async fn ovs_datapath(details: &Map<String, Value>, bridge: &str) -> Option<String> {
    if let Some(d) = details.get("datapath_type").and_then(|v| v.as_str()) {
        return Some(d.to_string());
    }
    let b = bridge.to_string();
    cached(&format!("datapath:{bridge}"), move || {
        super::ovs::bridge_datapath_type(&b)
    })
    .await
}

/// What this host's Open vSwitch answered, kept for the life of the process: a
/// bridge's datapath and the chassis' bridge do not change under a running kuryr, and
/// a start should not pay an `ovs-vsctl` for them each time. Only answers are kept: a
/// look-up that found nothing is tried again next time.
async fn cached<F>(key: &str, look_up: F) -> Option<String>
where
    F: FnOnce() -> Option<String> + Send + 'static,
{
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(key).cloned()) {
        return Some(v);
    }
    let found = tokio::task::spawn_blocking(look_up).await.ok().flatten()?;
    if let Ok(mut c) = cache.lock() {
        c.insert(key.to_string(), found.clone());
    }
    Some(found)
}

fn valid_ifname(s: &str) -> bool {
    crate::protocol::validate::ifname("bridge_name", s).is_ok()
}

/// How long a binding program (`ovs-vsctl`, `<bindir>/<vif_type>`) may run: a hung
/// ovs-vswitchd must not hold a CreateEndpoint (and its lock) past Docker's patience.
pub const PROGRAM_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

async fn run(program: &Path, args: &[String]) -> Result<String, HostError> {
    run_within(program, args, PROGRAM_DEADLINE).await
}

pub(super) async fn run_within(
    program: &Path,
    args: &[String],
    deadline: std::time::Duration,
) -> Result<String, HostError> {
    let child = Command::new(program).args(args).kill_on_drop(true).output();
    let out = tokio::time::timeout(deadline, child)
        .await
        .map_err(|_| {
            HostError::Binding(format!(
                "{} {} did not finish within {:?} (killed)",
                program.display(),
                args.first().map(String::as_str).unwrap_or(""),
                deadline
            ))
        })?
        .map_err(|e| HostError::Binding(format!("cannot run {}: {e}", program.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    tracing::debug!(program = %program.display(), status = ?out.status.code(), %stdout, "binding program ran");
    if !out.status.success() {
        return Err(HostError::Binding(format!(
            "{} {} failed ({}): {}",
            program.display(),
            args.first().map(String::as_str).unwrap_or(""),
            out.status,
            stderr.trim().chars().take(500).collect::<String>()
        )));
    }
    Ok(stdout)
}

impl Binder {
    /// Binds host end `ctx.ifname`; the container end is in the host's namespace, or in
    /// `container_netns` when `plug` made it there.
    pub async fn bind(
        &self,
        nl: &Netlink,
        ctx: &BindContext,
        container_netns: Option<&Path>,
    ) -> Result<(), HostError> {
        match self {
            Binder::Bridge => {
                let br = names::linuxbridge_name(&ctx.network_id);
                let bridge = nl.ensure_bridge(&br).await?;
                nl.set_controller(&ctx.ifname, bridge.index).await
            }
            Binder::Tap => Ok(()),
            Binder::Ovs => {
                let ovs = PathBuf::from("ovs-vsctl");
                let br = ovs_bridge(&ctx.vif_details).await;
                let datapath = ovs_datapath(&ctx.vif_details, &br).await;
                if super::ovs::needs_tx_checksum_off(datapath.as_deref()) {
                    // Before the port is plugged: no packet leaves with a checksum the
                    // userspace datapath would never complete.
                    let peer = names::container_veth(&ctx.port_id);
                    match container_netns {
                        // An ioctl acts on the namespace of its caller.
                        Some(ns) => {
                            super::netns::blocking_inside(ns, move || {
                                super::ethtool::set_tx_checksum(&peer, false)
                            })
                            .await?
                        }
                        None => super::ethtool::set_tx_checksum(&peer, false)?,
                    }
                }
                if hybrid_plug(&ctx.vif_details) {
                    let qbr = format!("qbr{}", &ctx.port_id.get(..11).unwrap_or(&ctx.port_id));
                    let qvb = format!("qvb{}", &ctx.port_id.get(..11).unwrap_or(&ctx.port_id));
                    let qvo = format!("qvo{}", &ctx.port_id.get(..11).unwrap_or(&ctx.port_id));
                    let bridge = nl.ensure_bridge(&qbr).await?;
                    nl.set_controller(&ctx.ifname, bridge.index).await?;
                    if nl.link(&qvb).await?.is_none() {
                        nl.create_veth(&qvb, &qvo).await?;
                    }
                    nl.set_controller(&qvb, bridge.index).await?;
                    nl.configure(&qvo, None, None, true).await?;
                    run(&ovs, &ovs_add_port_args(&br, &qvo, ctx, "vm-id")).await?;
                } else {
                    run(&ovs, &ovs_add_port_args(&br, &ctx.ifname, ctx, "vm-uuid")).await?;
                }
                Ok(())
            }
            Binder::Script(path) => {
                let args = vec![
                    "bind".to_string(),
                    ctx.port_id.clone(),
                    ctx.ifname.clone(),
                    ctx.endpoint_id.clone(),
                    ctx.mac.clone(),
                    ctx.network_id.clone(),
                    ctx.project_id.clone(),
                    python_dict(&ctx.vif_details),
                ];
                run(path, &args).await.map(|_| ())
            }
        }
    }

    /// Whether a port this binder plugged may announce the container's addresses (see
    /// `announce`): a plain OVS plug with IPv4 addresses. Decided without a look at the
    /// host, so a start spawns nothing for other ports.
    pub fn may_announce(&self, ctx: &BindContext) -> bool {
        *self == Binder::Ovs && !hybrid_plug(&ctx.vif_details) && !ctx.ipv4.is_empty()
    }

    /// The bridge to announce a port on that `may_announce`: this host's, when it is an
    /// OVN chassis; None elsewhere.
    pub async fn announce_on(&self, ctx: &BindContext) -> Option<String> {
        let ovn = cached("ovn-chassis", || {
            super::ovs::is_ovn_chassis().map(|yes| yes.to_string())
        })
        .await;
        if ovn.as_deref() != Some("true") {
            return None;
        }
        Some(ovs_bridge(&ctx.vif_details).await)
    }

    /// Undoes `bind`; the caller deletes the veth afterwards (which also detaches it).
    pub async fn unbind(&self, nl: &Netlink, ctx: &BindContext) -> Result<(), HostError> {
        match self {
            Binder::Bridge | Binder::Tap => Ok(()),
            Binder::Ovs => {
                let ovs = PathBuf::from("ovs-vsctl");
                let br = ovs_bridge(&ctx.vif_details).await;
                if hybrid_plug(&ctx.vif_details) {
                    // Every piece is taken down, whatever fails before it.
                    let short = ctx.port_id.get(..11).unwrap_or(&ctx.port_id);
                    let qvo = format!("qvo{short}");
                    let mut errors = Vec::new();
                    let del = [
                        "--no-wait".into(),
                        "--if-exists".into(),
                        "del-port".into(),
                        br,
                        qvo,
                    ];
                    if let Err(e) = run(&ovs, &del).await {
                        errors.push(e);
                    }
                    for link in [format!("qvb{short}"), format!("qbr{short}")] {
                        if let Err(e) = nl.delete(&link).await {
                            errors.push(e);
                        }
                    }
                    return HostError::all(errors);
                } else {
                    run(
                        &ovs,
                        &[
                            // As add-port: the veth goes next, whenever vswitchd acts.
                            "--no-wait".into(),
                            "--if-exists".into(),
                            "del-port".into(),
                            br,
                            ctx.ifname.clone(),
                        ],
                    )
                    .await?;
                }
                Ok(())
            }
            Binder::Script(path) => {
                let args = vec![
                    "unbind".to_string(),
                    ctx.port_id.clone(),
                    ctx.ifname.clone(),
                    ctx.endpoint_id.clone(),
                    ctx.mac.clone(),
                    python_dict(&ctx.vif_details),
                    ctx.network_id.clone(),
                ];
                run(path, &args).await.map(|_| ())
            }
        }
    }
}

/// `--no-wait`: ovsdb-server's commit is the answer, as os-vif's (ovsdbapp) is, not
/// ovs-vswitchd's reconfiguration after it (40-60 ms a port on the userspace datapath,
/// on every start). Nothing kuryr does next needs the datapath port: Docker moves the
/// container end, and "ACTIVE" (`vif_plugging_is_fatal`) comes only once the agent or
/// ovn-controller has seen the port in the datapath.
fn ovs_add_port_args(br: &str, iface: &str, ctx: &BindContext, vm_key: &str) -> Vec<String> {
    vec![
        "--no-wait".into(),
        "--may-exist".into(),
        "add-port".into(),
        br.into(),
        iface.into(),
        "--".into(),
        "set".into(),
        "Interface".into(),
        iface.into(),
        format!("external_ids:attached-mac={}", ctx.mac),
        format!("external_ids:iface-id={}", ctx.port_id),
        format!("external_ids:{vm_key}={}", ctx.endpoint_id),
        "external_ids:iface-status=active".into(),
        "external_ids:owner=kuryr".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_hung_binding_program_is_killed_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("hangs");
        std::fs::write(&prog, "#!/bin/sh\nsleep 30\n").unwrap();
        std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let started = std::time::Instant::now();
        let e = run_within(
            &prog,
            &["bind".into()],
            std::time::Duration::from_millis(200),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("did not finish"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn vif_type_cannot_escape_bindir() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "../../bin/sh",
            "/bin/sh",
            "a/b",
            "Bridge",
            "x y",
            &"a".repeat(40),
        ] {
            let e = select(&VifType::from(bad), dir.path(), "h")
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a valid type name"), "{bad}: {e}");
        }
        assert!(select(&VifType::from("midonet"), dir.path(), "h")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        std::fs::write(dir.path().join("midonet"), "#!/bin/sh\n").unwrap();
        assert_eq!(
            select(&VifType::from("midonet"), dir.path(), "h").unwrap(),
            Binder::Script(dir.path().join("midonet"))
        );
    }

    #[test]
    fn natives_and_unbound() {
        let d = Path::new("/nonexistent");
        assert_eq!(
            select(&VifType::from("bridge"), d, "h").unwrap(),
            Binder::Bridge
        );
        assert_eq!(select(&VifType::from("ovs"), d, "h").unwrap(), Binder::Ovs);
        assert_eq!(select(&VifType::from("tap"), d, "h").unwrap(), Binder::Tap);
        let e = select(&VifType::from("unbound"), d, "myhost")
            .unwrap_err()
            .to_string();
        assert!(e.contains("host = myhost"), "{e}");
        assert!(select(&VifType::from("binding_failed"), d, "h").is_err());
    }

    #[test]
    fn vif_details_render_like_python() {
        let m = json!({"port_filter": true, "ovs_hybrid_plug": true, "n": 1, "s": "it's"});
        let s = python_dict(m.as_object().unwrap());
        assert!(s.contains("'ovs_hybrid_plug': True"), "{s}");
        assert!(s.contains("'s': 'it\\'s'"), "{s}");
        assert_eq!(python_dict(&Map::new()), "None");
    }

    #[test]
    fn ovs_args_carry_external_ids() {
        let ctx = BindContext {
            vif_type: VifType::Ovs,
            vif_details: Map::new(),
            port_id: "p".into(),
            endpoint_id: "e".into(),
            mac: "fa:16:3e:00:00:01".into(),
            network_id: "n".into(),
            project_id: "t".into(),
            ifname: "tapp".into(),
            ipv4: vec![],
        };
        let a = ovs_add_port_args("br-int", "tapp", &ctx, "vm-uuid");
        assert!(a.contains(&"external_ids:iface-id=p".to_string()));
        assert!(a.contains(&"external_ids:vm-uuid=e".to_string()));
        assert!(a.contains(&"external_ids:owner=kuryr".to_string()));
        // A start does not wait for ovs-vswitchd's reconfiguration (see the function).
        assert_eq!(a[0], "--no-wait");
    }
}
