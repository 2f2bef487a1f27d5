//! What this host's Open vSwitch says about itself: whether it is an OVN chassis (and
//! under which host name ovn-controller registered it), which bridge OVN plugs into, and
//! a bridge's datapath type. Read through `ovs-vsctl` (found through `OVS_RUNDIR` like
//! every OVS tool), with a short timeout: no Open vSwitch, or one that does not answer,
//! is "nothing to say", never an error.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// How long one look-up may wait for ovsdb-server (ovs-vsctl's own `--timeout`).
const TIMEOUT_SECS: u32 = 3;

/// This host as an OVN chassis: `external_ids` of the local `Open_vSwitch` row, as
/// ovn-controller reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chassis {
    /// `system-id`: the chassis name (Neutron's agent id).
    pub name: String,
    /// `hostname`: the host name ovn-controller registers, which Neutron's OVN driver
    /// requires as `binding:host_id`; None when unset (then the kernel's).
    pub hostname: Option<String>,
    /// `ovn-bridge`: the integration bridge (default `br-int`).
    pub bridge: String,
}

impl Chassis {
    /// The chassis these `external_ids` describe, if they make one (`ovn-remote` set).
    pub fn from_external_ids(ids: &BTreeMap<String, String>) -> Option<Chassis> {
        ids.get("ovn-remote").filter(|r| !r.is_empty())?;
        Some(Chassis {
            name: ids.get("system-id").cloned().unwrap_or_default(),
            hostname: ids.get("hostname").filter(|h| !h.is_empty()).cloned(),
            bridge: ids
                .get("ovn-bridge")
                .filter(|b| !b.is_empty())
                .cloned()
                .unwrap_or_else(|| "br-int".into()),
        })
    }
}

/// Runs `ovs-vsctl ARGS`; its output, or None when it is missing or fails.
fn vsctl(args: &[&str]) -> Option<String> {
    let out = Command::new("ovs-vsctl")
        .arg(format!("--timeout={TIMEOUT_SECS}"))
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        tracing::debug!(?args, stderr = %String::from_utf8_lossy(&out.stderr).trim(), "ovs-vsctl failed");
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ovs-vsctl list Open_vSwitch`'s `external_ids`, as JSON; None when it does not answer.
fn local_external_ids() -> Option<String> {
    vsctl(&[
        "--format=json",
        "--columns=external_ids",
        "list",
        "Open_vSwitch",
    ])
}

/// This host's chassis, if its Open vSwitch answers and is one.
pub fn local_chassis() -> Option<Chassis> {
    Chassis::from_external_ids(&external_ids_of_list(&local_external_ids()?)?)
}

/// Whether this host's Open vSwitch is an OVN chassis; None when it does not answer.
pub fn is_ovn_chassis() -> Option<bool> {
    let out = local_external_ids()?;
    Some(external_ids_of_list(&out).is_some_and(|ids| Chassis::from_external_ids(&ids).is_some()))
}

/// A bridge's `datapath_type` (`netdev` for the userspace datapath, `system` or empty
/// for the kernel's), if the bridge is there.
pub fn bridge_datapath_type(bridge: &str) -> Option<String> {
    let out = vsctl(&["get", "Bridge", bridge, "datapath_type"])?;
    Some(out.trim().trim_matches('"').to_string())
}

/// An OVS interface kuryr plugged (`external_ids:owner=kuryr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KuryrInterface {
    pub name: String,
    /// `external_ids:iface-id`: the Neutron port it carries.
    pub port_id: String,
}

/// Every interface kuryr plugged into this host's Open vSwitch (none when there is no
/// Open vSwitch here).
pub fn kuryr_interfaces() -> Vec<KuryrInterface> {
    vsctl(&[
        "--format=json",
        "--columns=name,external_ids",
        "find",
        "Interface",
        "external_ids:owner=kuryr",
    ])
    .map(|out| interfaces_of_find(&out))
    .unwrap_or_default()
}

/// Removes the OVS port named `name` from whichever bridge holds it, if kuryr plugged it;
/// true if there was one. The device may be gone already: the port outlives it.
pub fn delete_kuryr_port(name: &str) -> Result<bool, super::HostError> {
    let ours = vsctl(&[
        "--format=json",
        "--columns=name,external_ids",
        "find",
        "Interface",
        &format!("name={name}"),
        "external_ids:owner=kuryr",
    ])
    .map(|out| interfaces_of_find(&out));
    if ours.unwrap_or_default().is_empty() {
        return Ok(false);
    }
    vsctl(&["--if-exists", "del-port", name])
        .map(|_| true)
        .ok_or_else(|| super::HostError::Binding(format!("ovs-vsctl del-port {name} failed")))
}

fn interfaces_of_find(json: &str) -> Vec<KuryrInterface> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let rows = v
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    rows.iter()
        .filter_map(|row| {
            let name = row.get(0)?.as_str()?.to_string();
            let ids = row.get(1)?.get(1)?.as_array()?;
            let port_id = ids
                .iter()
                .find(|p| p.get(0).and_then(Value::as_str) == Some("iface-id"))
                .and_then(|p| p.get(1)?.as_str())
                .unwrap_or_default()
                .to_string();
            Some(KuryrInterface { name, port_id })
        })
        .collect()
}

/// The `external_ids` map of the first row of `ovs-vsctl --format=json list`.
fn external_ids_of_list(json: &str) -> Option<BTreeMap<String, String>> {
    let v: Value = serde_json::from_str(json).ok()?;
    let cell = v.get("data")?.get(0)?.get(0)?;
    // OVSDB's JSON for a map: ["map", [[key, value], ...]].
    let pairs = cell.get(1)?.as_array()?;
    Some(
        pairs
            .iter()
            .filter_map(|p| Some((p.get(0)?.as_str()?.into(), p.get(1)?.as_str()?.into())))
            .collect(),
    )
}

/// Whether the container end of a port plugged into this OVS bridge needs its tx
/// checksum offload off. The userspace datapath reads the host end with AF_PACKET and
/// never completes a checksum the sender left to the NIC, so TCP from such a container
/// is dropped (ping and DHCP, checksummed in software, pass). Neutron 26 names the
/// datapath in `vif_details`; older releases do not, and the bridge is asked.
pub fn needs_tx_checksum_off(datapath: Option<&str>) -> bool {
    datapath == Some("netdev")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_chassis_is_an_ovs_with_an_ovn_remote() {
        assert_eq!(Chassis::from_external_ids(&ids(&[("hostname", "h")])), None);
        let c = Chassis::from_external_ids(&ids(&[
            ("ovn-remote", "tcp:10.0.0.1:6642"),
            ("system-id", "c1"),
            ("hostname", "node1.example.org"),
        ]))
        .unwrap();
        assert_eq!(c.name, "c1");
        assert_eq!(c.hostname.as_deref(), Some("node1.example.org"));
        assert_eq!(c.bridge, "br-int");
        let c = Chassis::from_external_ids(&ids(&[
            ("ovn-remote", "unix:/x"),
            ("ovn-bridge", "br-ovn"),
        ]))
        .unwrap();
        assert_eq!(c.hostname, None);
        assert_eq!(c.bridge, "br-ovn");
    }

    #[test]
    fn external_ids_are_read_from_ovs_vsctls_json() {
        let out = r#"{"data":[[["map",[["hostname","h-ovn"],["ovn-remote","unix:/r/sb.sock"],["system-id","kd"]]]]],"headings":["external_ids"]}"#;
        let m = external_ids_of_list(out).unwrap();
        assert_eq!(m["hostname"], "h-ovn");
        assert_eq!(m["ovn-remote"], "unix:/r/sb.sock");
        assert_eq!(external_ids_of_list("not json"), None);
        assert_eq!(external_ids_of_list(r#"{"data":[]}"#), None);
    }

    #[test]
    fn kuryrs_interfaces_are_read_from_ovs_vsctl_find() {
        let out = r#"{"data":[["tapabc",["map",[["attached-mac","fa:16:3e:00:00:01"],["iface-id","abc-1"],["owner","kuryr"]]]],["tapdef",["map",[["owner","kuryr"]]]]],"headings":["name","external_ids"]}"#;
        assert_eq!(
            interfaces_of_find(out),
            vec![
                KuryrInterface {
                    name: "tapabc".into(),
                    port_id: "abc-1".into()
                },
                KuryrInterface {
                    name: "tapdef".into(),
                    port_id: String::new()
                }
            ]
        );
        assert!(interfaces_of_find("").is_empty());
    }

    #[test]
    fn only_the_userspace_datapath_needs_tx_checksum_off() {
        assert!(needs_tx_checksum_off(Some("netdev")));
        assert!(!needs_tx_checksum_off(Some("system")));
        assert!(!needs_tx_checksum_off(Some("")));
        assert!(!needs_tx_checksum_off(None));
    }
}
