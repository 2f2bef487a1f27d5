//! `kuryr doctor`: the checks an operator would do by hand, each with its fix.

mod local;
mod ovn;

use std::path::PathBuf;

use crate::config::Config;
use crate::host::binding;
use crate::neutron::{Agent, Filters, Neutron, Port, SubnetPool, VifType};

use local::{cni, docker_engine, docker_plugin, forward_policy, groups_at_start, listener};
#[cfg(test)]
use local::{engine_check, forward_verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub status: Status,
    pub what: String,
    pub detail: String,
    pub fix: String,
}

impl Check {
    fn ok(what: &str, detail: impl Into<String>) -> Self {
        Check {
            status: Status::Ok,
            what: what.into(),
            detail: detail.into(),
            fix: String::new(),
        }
    }
    fn warn(what: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            status: Status::Warn,
            what: what.into(),
            detail: detail.into(),
            fix: fix.into(),
        }
    }
    fn fail(what: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            status: Status::Fail,
            what: what.into(),
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

pub struct Options {
    pub config_file: PathBuf,
    pub plugin: String,
    pub docker_socket: PathBuf,
}

/// Runs every check; never stops at the first failure.
pub async fn checks(opts: &Options) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(cfg) = config(opts, &mut out) else {
        return out;
    };
    let neutron = match Neutron::new(&cfg.neutron) {
        Ok(n) => n,
        Err(e) => {
            out.push(Check::fail(
                "Neutron client",
                e.to_string(),
                "check cafile/certfile/keyfile in [neutron]",
            ));
            return out;
        }
    };
    if !extensions(&neutron, &mut out).await {
        return out;
    }
    out.push(default_pools(&neutron, &cfg).await);
    // Nested hosts (VMs) have no L2 agent: their VM port carries the traffic.
    match nested_port(&neutron, &cfg).await {
        Some(c) => out.push(c),
        None => out.push(l2_agent(&neutron, &cfg.host).await),
    }
    if cfg
        .enabled_port_drivers
        .contains(&crate::config::PortDriverName::Sriov)
    {
        out.push(sriov_agent(&neutron, &cfg.host).await);
        if !cfg.binding.sriov_device_mappings.is_empty() {
            out.push(sriov_pfs(&cfg, &crate::host::sriov::Sysfs::default()));
        }
    }
    out.extend(ovn::checks(&neutron, &cfg).await);
    out.push(binding_programs(&neutron, &cfg).await);
    out.push(listener(&cfg, &opts.plugin));
    out.push(cni(&neutron, &cfg).await);
    out.push(docker_engine(&opts.docker_socket).await);
    out.push(docker_plugin(&opts.docker_socket, &opts.plugin).await);
    let (check, forward) = forward_policy();
    out.push(check);
    if let Some(c) = groups_at_start(&forward, cfg.neutron.vif_plugging_is_fatal) {
        out.push(c);
    }
    out
}

/// The configuration, or None (with the failed check) when it does not parse.
fn config(opts: &Options, out: &mut Vec<Check>) -> Option<Config> {
    match Config::load_with_env(&opts.config_file) {
        Ok(l) => {
            let detail = if l.warnings.is_empty() {
                opts.config_file.display().to_string()
            } else {
                format!(
                    "{} ({} warnings: {})",
                    opts.config_file.display(),
                    l.warnings.len(),
                    l.warnings.join("; ")
                )
            };
            out.push(Check::ok("configuration parses", detail));
            let mut cfg = l.config;
            let source = super::resolve_host(&mut cfg);
            out.push(Check::ok(
                "binding host",
                match source {
                    super::HostSource::Config => format!("{} (kuryr.conf)", cfg.host),
                    super::HostSource::OvnChassis => format!(
                        "{} (this host's OVN chassis; kuryr.conf sets no host)",
                        cfg.host
                    ),
                    super::HostSource::Kernel => format!("{} (the kernel's host name)", cfg.host),
                },
            ));
            Some(cfg)
        }
        Err(e) => {
            out.push(Check::fail(
                "configuration parses",
                e.to_string(),
                "fix the option named above",
            ));
            None
        }
    }
}

/// Neutron answers with these credentials, and has the extensions kuryr needs; false
/// when it does not answer (nothing else can be checked then).
async fn extensions(neutron: &Neutron, out: &mut Vec<Check>) -> bool {
    let ext = match neutron.extensions().await {
        Ok(ext) => ext,
        Err(e) => {
            out.push(Check::fail(
                "Neutron reachable, credentials accepted",
                e.to_string(),
                "check [neutron] endpoint / auth_url and credentials; try `openstack network list` with the same values",
            ));
            return false;
        }
    };
    out.push(Check::ok(
        "Neutron reachable, credentials accepted",
        format!("{} extensions", ext.aliases().len()),
    ));
    let missing: Vec<&str> = ["subnet_allocation", "standard-attr-tag", "binding"]
        .into_iter()
        .filter(|a| !ext.has(a))
        .collect();
    if missing.is_empty() {
        out.push(Check::ok(
            "required Neutron extensions",
            "subnet_allocation, standard-attr-tag, binding",
        ));
    } else {
        out.push(Check::fail(
            "required Neutron extensions",
            format!("missing: {}", missing.join(", ")),
            "enable them in neutron-server (ML2 with a mechanism driver that binds ports)",
        ));
    }
    let optional: Vec<&str> = ["security-group", "allowed-address-pairs", "trunk"]
        .into_iter()
        .filter(|a| !ext.has(a))
        .collect();
    if !optional.is_empty() {
        out.push(Check::warn(
            "optional Neutron extensions",
            format!("missing: {}", optional.join(", ")),
            "--expose needs security-group; nested drivers need allowed-address-pairs / trunk",
        ));
    }
    true
}

async fn default_pools(n: &Neutron, cfg: &Config) -> Check {
    let mut missing = Vec::new();
    for name in [
        &cfg.neutron.default_subnetpool_v4,
        &cfg.neutron.default_subnetpool_v6,
    ] {
        match n
            .list::<SubnetPool>(&Filters::new().add("name", name.as_str()))
            .await
        {
            Ok(p) if !p.is_empty() => {}
            Ok(_) => missing.push(name.clone()),
            Err(e) => return Check::fail("default subnetpools", e.to_string(), ""),
        }
    }
    if missing.is_empty() {
        Check::ok(
            "default subnetpools",
            format!(
                "{} and {}",
                cfg.neutron.default_subnetpool_v4, cfg.neutron.default_subnetpool_v6
            ),
        )
    } else {
        Check::warn(
            "default subnetpools",
            format!(
                "missing: {} (only networks created without --subnet need them)",
                missing.join(", ")
            ),
            format!(
                "openstack subnet pool create --pool-prefix <cidr> {}",
                missing[0]
            ),
        )
    }
}

/// For the nested port drivers: `link_iface` exists, its MAC is a Neutron port (the VM's),
/// and for vlan that port is a trunk parent. None for the veth driver.
async fn nested_port(n: &Neutron, cfg: &Config) -> Option<Check> {
    use crate::driver::nested::{port_driver, NestedKind, PortDriver};
    const WHAT: &str = "VM port for the nested driver";
    let (link, kind) = match port_driver(cfg) {
        Ok(PortDriver::Veth) => return None,
        Ok(PortDriver::Nested { link_iface, kind }) => (link_iface, kind),
        Err(e) => {
            return Some(Check::fail(
                WHAT,
                e,
                "see docs/backends.md, Deployment modes",
            ))
        }
    };
    let mac = match crate::host::netlink::Netlink::connect() {
        Ok(nl) => match nl.link(&link).await {
            Ok(Some(l)) => l.mac,
            Ok(None) => {
                return Some(Check::fail(
                    WHAT,
                    format!("link_iface {link} does not exist"),
                    "set [binding] link_iface to the VM's NIC (ip link)",
                ))
            }
            Err(e) => return Some(Check::fail(WHAT, e.to_string(), "run as root")),
        },
        Err(e) => return Some(Check::fail(WHAT, e.to_string(), "run as root")),
    };
    let Some(mac) = mac else {
        return Some(Check::fail(
            WHAT,
            format!("{link} has no MAC address"),
            "set [binding] link_iface to the VM's Ethernet NIC",
        ));
    };
    let ports: Vec<crate::neutron::Port> =
        match n.list(&Filters::new().add("mac_address", &mac)).await {
            Ok(p) => p,
            Err(e) => {
                return Some(Check::fail(
                    WHAT,
                    e.to_string(),
                    "check Neutron credentials",
                ))
            }
        };
    let Some(vm) = ports.first() else {
        return Some(Check::fail(
            WHAT,
            format!("no Neutron port has {link}'s MAC {mac}"),
            "the nested drivers run inside a Nova VM: link_iface must be the NIC of the VM's Neutron port",
        ));
    };
    if kind == NestedKind::Vlan && vm.trunk_details.is_none() {
        return Some(Check::fail(
            WHAT,
            format!("port {} ({link}) is not a trunk parent", vm.id),
            format!(
                "openstack network trunk create --parent-port {} <name>",
                vm.id
            ),
        ));
    }
    Some(Check::ok(
        WHAT,
        format!("{link} is port {} ({kind:?})", vm.id),
    ))
}

async fn l2_agent(n: &Neutron, host: &str) -> Check {
    agent_check(
        n,
        host,
        "L2 agent for this host",
        &["linux bridge", "open vswitch", "ovn", "nic switch"],
        Check::fail,
        "ports kuryr binds here stay unbound",
        "run the Neutron L2 agent here, and make its `host` equal kuryr's [DEFAULT] host",
    )
    .await
}

/// With the sriov port driver enabled: SR-IOV ports are bound only where the NIC agent
/// runs. A warning, not a failure: the host's other ports do not need it.
async fn sriov_agent(n: &Neutron, host: &str) -> Check {
    agent_check(
        n,
        host,
        "SR-IOV NIC agent for this host",
        &["nic switch"],
        Check::warn,
        "Neutron answers binding_failed for SR-IOV ports of this host",
        "run neutron-sriov-nic-agent here with physical_device_mappings for your physical networks, its `host` equal to kuryr's",
    )
    .await
}

/// Every PF of `[sriov] physical_device_mappings` is here and has VFs to pick from.
fn sriov_pfs(cfg: &Config, sysfs: &crate::host::sriov::Sysfs) -> Check {
    const WHAT: &str = "SR-IOV physical functions";
    let mut found = Vec::new();
    for (physnet, pf) in &cfg.binding.sriov_device_mappings {
        match sysfs.vfs_of(pf) {
            Ok(vfs) if !vfs.is_empty() => found.push(format!("{pf} ({physnet}): {} VFs", vfs.len())),
            Ok(_) => {
                return Check::fail(
                    WHAT,
                    format!("{pf} has no VFs"),
                    format!("create them: echo <n> > /sys/class/net/{pf}/device/sriov_numvfs"),
                )
            }
            Err(e) => {
                return Check::fail(
                    WHAT,
                    e.to_string(),
                    "fix [sriov] physical_device_mappings: <physical network>:<PF interface of this host>",
                )
            }
        }
    }
    Check::ok(WHAT, found.join(", "))
}

/// An alive agent of one of `kinds` reporting `host`; `missing` grades its absence.
async fn agent_check(
    n: &Neutron,
    host: &str,
    what: &str,
    kinds: &[&str],
    missing: fn(&str, String, String) -> Check,
    consequence: &str,
    fix: &str,
) -> Check {
    match n.list::<Agent>(&Filters::new().add("host", host)).await {
        Ok(agents) => {
            let found: Vec<&Agent> = agents
                .iter()
                .filter(|a| {
                    let t = a.agent_type.to_ascii_lowercase();
                    kinds.iter().any(|k| t.contains(k))
                })
                .collect();
            match found.iter().find(|a| a.alive) {
                Some(a) => Check::ok(what, format!("{} alive on host {host}", a.agent_type)),
                None if found.is_empty() => missing(
                    what,
                    format!("no such agent reports host {host:?}: {consequence}"),
                    fix.to_string(),
                ),
                None => missing(
                    what,
                    format!("the {} on {host} is not alive", found[0].agent_type),
                    "restart the agent; check its connection to the message bus".to_string(),
                ),
            }
        }
        Err(e) => Check::warn(
            what,
            format!("cannot list agents: {e}"),
            "needs admin credentials",
        ),
    }
}

async fn binding_programs(n: &Neutron, cfg: &Config) -> Check {
    let ports: Vec<Port> = match n
        .list(
            &Filters::new()
                .add("device_owner", "compute:kuryr")
                .add("binding:host_id", cfg.host.as_str()),
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return Check::warn("binding for each vif_type in use", e.to_string(), ""),
    };
    let mut types: Vec<String> = ports.into_iter().map(|p| p.vif_type.to_string()).collect();
    types.sort();
    types.dedup();
    let mut bad = Vec::new();
    for t in &types {
        match binding::select(&VifType::from(t.as_str()), &cfg.bindir, &cfg.host) {
            Ok(_) => {}
            Err(e) => bad.push(format!("{t}: {e}")),
        }
    }
    if bad.is_empty() {
        let list = if types.is_empty() {
            "no port in use".to_string()
        } else {
            types.join(", ")
        };
        Check::ok("binding for each vif_type in use", list)
    } else {
        Check::fail(
            "binding for each vif_type in use",
            bad.join("; "),
            format!(
                "install the binding program in {} or fix the agent's binding",
                cfg.bindir.display()
            ),
        )
    }
}

/// Prints the checklist; true when nothing failed.
pub fn print(checks: &[Check]) -> bool {
    for c in checks {
        let mark = match c.status {
            Status::Ok => "[ ok ]",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        };
        println!("{mark} {}: {}", c.what, c.detail);
        if c.status != Status::Ok && !c.fix.is_empty() {
            println!("       fix: {}", c.fix);
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed == 0 {
        println!("all checks passed");
    } else {
        println!("{failed} check(s) failed");
    }
    failed == 0
}

pub fn run(opts: Options) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checks = rt.block_on(checks(&opts));
    Ok(print(&checks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn engine_versions_known_to_misbehave_are_warned_about() {
        for (v, status) in [
            ("20.10.24+dfsg1", Status::Ok),
            ("26.1.5+dfsg1", Status::Ok),
            ("25.0.2", Status::Warn),
            ("25.0.3", Status::Ok),
            ("28.5.2+dfsg4", Status::Ok),
            ("29.0.0", Status::Warn),
            ("29.0.2", Status::Warn),
            ("29.0.3", Status::Ok),
            ("29.1.0", Status::Ok),
            ("19.03.15", Status::Warn),
            ("garbage", Status::Warn),
        ] {
            let c = engine_check(v, "1.41");
            assert_eq!(c.status, status, "{v}: {c:?}");
            assert!(c.detail.starts_with(v), "{c:?}");
        }
    }

    #[test]
    fn forward_rules_are_judged_with_the_agents_firewall_in_mind() {
        let drop = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n";
        let accept = "-N DOCKER-USER\n-A DOCKER-USER -i brq+ -o brq+ -j ACCEPT\n";
        let agent_first = "-P FORWARD DROP\n-A FORWARD -j neutron-filter-top\n\
            -A FORWARD -j neutron-linuxbri-FORWARD\n-A FORWARD -j DOCKER-USER\n";
        let user_first = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n\
            -A FORWARD -j neutron-linuxbri-FORWARD\n";
        for (nf, fwd, user, status) in [
            (false, drop, "", Status::Ok),
            (true, "-P FORWARD ACCEPT\n", "", Status::Ok),
            (true, drop, "", Status::Fail),
            (true, drop, accept, Status::Ok),
            // The agent's firewall alone passes the ports' frames.
            (true, agent_first, "", Status::Ok),
            (true, agent_first, accept, Status::Ok),
            // Docker restarted after the agent: its ACCEPT comes first, groups bypassed.
            (true, user_first, accept, Status::Warn),
            (true, user_first, "", Status::Ok),
        ] {
            let c = forward_verdict(nf, fwd, user);
            assert_eq!(c.status, status, "{fwd}{user}: {c:?}");
        }
    }

    #[test]
    fn an_unfiltered_start_is_warned_about_only_where_the_agent_filters() {
        let agent = "-P FORWARD DROP\n-A FORWARD -j neutron-linuxbri-FORWARD\n";
        assert!(groups_at_start("-P FORWARD DROP\n", false).is_none());
        let c = groups_at_start(agent, false).map(|c| c.status);
        assert_eq!(c, Some(Status::Warn));
        let c = groups_at_start(agent, true).map(|c| c.status);
        assert_eq!(c, Some(Status::Ok));
    }

    #[test]
    fn sriov_pfs_are_counted_or_failed_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let dev = t.path().join("class/net/pf0/device");
        std::fs::create_dir_all(&dev).unwrap();
        for n in 0..3 {
            symlink(format!("../0000:81:10.{n}"), dev.join(format!("virtfn{n}"))).unwrap();
        }
        std::fs::create_dir_all(t.path().join("class/net/pf1/device")).unwrap();
        let sysfs = crate::host::sriov::Sysfs::at(t.path());
        let mut cfg = Config::default();
        cfg.binding.sriov_device_mappings = vec![("physnet1".into(), "pf0".into())];
        let c = sriov_pfs(&cfg, &sysfs);
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
        assert_eq!(c.detail, "pf0 (physnet1): 3 VFs");
        cfg.binding
            .sriov_device_mappings
            .push(("physnet2".into(), "pf1".into()));
        let c = sriov_pfs(&cfg, &sysfs);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.contains("sriov_numvfs"), "{}", c.fix);
    }
}
