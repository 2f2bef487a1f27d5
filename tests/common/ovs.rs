//! The `scripts/devenv ovs` profile as the tests see it: its agent's host, its ovsdb and
//! what is on its integration bridge (`KURYR_TEST_OVS_BRIDGE`; br-int is OVN's).

use std::path::PathBuf;
use std::process::Command;

/// (host of neutron-openvswitch-agent, OVS_RUNDIR of its ovsdb-server).
pub fn ovs_env() -> (String, String) {
    let host = std::env::var("KURYR_TEST_OVS_HOST").unwrap_or_default();
    let rundir = std::env::var("KURYR_TEST_OVS_RUNDIR").unwrap_or_default();
    assert!(
        !host.is_empty() && PathBuf::from(&rundir).join("db.sock").exists(),
        "the OVS profile is not up: run `scripts/devenv ovs` (scripts/test does) and `eval \"$(scripts/devenv env)\"`"
    );
    (host, rundir)
}

pub fn vsctl(rundir: &str, args: &[&str]) -> String {
    let out = Command::new("ovs-vsctl")
        .env("OVS_RUNDIR", rundir)
        .args(args)
        .output()
        .expect("ovs-vsctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ovs profile agent's integration bridge.
pub fn agent_bridge() -> String {
    std::env::var("KURYR_TEST_OVS_BRIDGE").unwrap_or_else(|_| "br-ovs".into())
}

/// Ports on the ovs profile agent's integration bridge.
pub fn agent_bridge_ports(rundir: &str) -> Vec<String> {
    bridge_ports(rundir, &agent_bridge())
}

/// Ports on `bridge`.
pub fn bridge_ports(rundir: &str, bridge: &str) -> Vec<String> {
    vsctl(rundir, &["list-ports", bridge])
        .lines()
        .map(str::to_string)
        .collect()
}

/// An external id of an OVS interface ("" when unset).
pub fn external_id(rundir: &str, iface: &str, key: &str) -> String {
    vsctl(
        rundir,
        &["get", "Interface", iface, &format!("external_ids:{key}")],
    )
    .trim()
    .trim_matches('"')
    .to_string()
}
