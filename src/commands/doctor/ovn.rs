//! `kuryr doctor` on ML2/OVN: is this host the chassis Neutron binds to, under the name
//! kuryr binds as; is the integration bridge there; is every container port of this
//! host plugged with its iface-id, and why is one DOWN.

use super::Check;
use crate::config::{Config, PortDriverName};
use crate::host::ovs::{self, Chassis, KuryrInterface};
use crate::names;
use crate::neutron::{Agent, Filters, Neutron, Port, PortStatus};

/// Neutron's agent types of a chassis: "OVN Controller agent", or "OVN Controller
/// Gateway agent" for one that hosts routers' gateways.
const OVN_AGENT: &str = "OVN Controller";

/// What this host's Open vSwitch says, read once.
pub struct Local {
    pub chassis: Option<Chassis>,
    /// The chassis bridge's datapath type; None when the bridge is missing.
    pub bridge_datapath: Option<String>,
    /// kuryr's interfaces and whether each one's device exists.
    pub interfaces: Vec<(KuryrInterface, bool)>,
}

impl Local {
    async fn read() -> Local {
        let chassis = ovs::local_chassis();
        let bridge_datapath = chassis
            .as_ref()
            .and_then(|c| ovs::bridge_datapath_type(&c.bridge));
        let interfaces = match crate::host::netlink::Netlink::connect() {
            Ok(nl) => crate::host::kuryr_ovs_interfaces(&nl)
                .await
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        Local {
            chassis,
            bridge_datapath,
            interfaces,
        }
    }
}

/// The OVN checks, none when Neutron has no OVN chassis at all (another backend).
pub async fn checks(n: &Neutron, cfg: &Config) -> Vec<Check> {
    let agents: Vec<Agent> = match n.list::<Agent>(&Filters::new()).await {
        Ok(a) => a
            .into_iter()
            .filter(|a| a.agent_type.starts_with(OVN_AGENT))
            .collect(),
        // The L2 agent check already says that agents cannot be listed.
        Err(_) => return Vec::new(),
    };
    if agents.is_empty() {
        return Vec::new();
    }
    // kuryr inside a VM is no chassis: the VM's port is plugged on the hypervisor.
    if let Some(c) = nested(cfg) {
        return vec![c];
    }
    let local = Local::read().await;
    let ports: Vec<Port> = n
        .list(
            &Filters::new()
                .add("device_owner", names::DEVICE_OWNER)
                .add("binding:host_id", cfg.host.as_str()),
        )
        .await
        .unwrap_or_default();
    judge(cfg, &agents, &local, &ports)
}

/// kuryr inside a VM on ML2/OVN: whether its nested driver can carry traffic there. OVN
/// makes each container's (unbound) port a `virtual` port of the VM port and delivers
/// traffic for it only to the VM port's own MAC: ipvlan sub-interfaces and VLAN
/// subports (OVN's parent_name/tag ports) receive it, a macvlan with the container
/// port's MAC never does (OVN installs no output for a virtual port's own MAC).
pub fn nested(cfg: &Config) -> Option<Check> {
    const WHAT: &str = "nested driver on ML2/OVN";
    match cfg.default_port_driver {
        PortDriverName::Vlan => Some(Check::ok(
            WHAT,
            "vlan: each container's port is a subport of the VM's trunk, which OVN reaches by its VLAN tag",
        )),
        PortDriverName::Nested if cfg.binding.default_driver == "macvlan" => Some(Check::fail(
            WHAT,
            "macvlan: OVN makes each container's port a virtual port of the VM port and delivers its traffic only to the VM port's MAC, never to the container's own: containers get addresses but no traffic",
            "use `[binding] driver = ipvlan` (containers share the VM's MAC) or `default_port_driver = vlan` with the VM port as a trunk parent",
        )),
        PortDriverName::Nested => Some(Check::ok(
            WHAT,
            format!(
                "{}: containers use the VM port's MAC, where OVN delivers their addresses",
                cfg.binding.default_driver
            ),
        )),
        PortDriverName::Veth | PortDriverName::Sriov => None,
    }
}

/// The checks for what was read: a pure function, tested without OVN.
pub fn judge(cfg: &Config, agents: &[Agent], local: &Local, ports: &[Port]) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(chassis) = &local.chassis else {
        out.push(Check::fail(
            "OVN chassis",
            format!(
                "Neutron runs ML2/OVN ({} chassis), but this host's Open vSwitch is no chassis or does not answer",
                agents.len()
            ),
            "run ovn-controller here (external_ids:ovn-remote set), and let kuryr reach Open vSwitch (OVS_RUNDIR, default /run/openvswitch)",
        ));
        return out;
    };
    let registered = chassis
        .hostname
        .clone()
        .unwrap_or_else(crate::config::hostname);
    if registered != cfg.host {
        out.push(Check::fail(
            "OVN chassis",
            format!(
                "kuryr binds ports to host {:?}, but this host's chassis {} registered as {registered:?}: ML2/OVN refuses to bind them (\"no OVN chassis for host\")",
                cfg.host, chassis.name
            ),
            format!("remove `host` from kuryr.conf (kuryr then takes the chassis' name) or set it to {registered}"),
        ));
    } else {
        match agents.iter().find(|a| a.host == cfg.host) {
            Some(a) if a.alive => out.push(Check::ok(
                "OVN chassis",
                format!("{} (host {}) alive in Neutron", chassis.name, cfg.host),
            )),
            Some(_) => out.push(Check::fail(
                "OVN chassis",
                format!("chassis {} of host {} is not alive", chassis.name, cfg.host),
                "check ovn-controller here and its connection to the southbound database (external_ids:ovn-remote)",
            )),
            None => out.push(Check::fail(
                "OVN chassis",
                format!(
                    "Neutron lists no OVN chassis of host {} (this host is chassis {})",
                    cfg.host, chassis.name
                ),
                "check that ovn-controller here reaches the southbound database Neutron uses",
            )),
        }
    }
    out.push(match local.bridge_datapath.as_deref() {
        None => Check::fail(
            "OVN integration bridge",
            format!("{} is missing", chassis.bridge),
            "ovn-controller creates it: check that it runs",
        ),
        Some("netdev") => Check::ok(
            "OVN integration bridge",
            format!(
                "{}, userspace datapath (kuryr turns tx checksum offload off on container ends, or their TCP would be dropped)",
                chassis.bridge
            ),
        ),
        Some(_) => Check::ok("OVN integration bridge", chassis.bridge.clone()),
    });
    out.push(interfaces(local, ports));
    out
}

/// Every port an endpoint uses (pool ports wait unplugged) has its interface, with its
/// device, and is ACTIVE; each that is not is named with the likely reason.
fn interfaces(local: &Local, ports: &[Port]) -> Check {
    const WHAT: &str = "OVN ports plugged";
    let mut bad = Vec::new();
    let mut used = 0;
    for p in ports.iter().filter(|p| !p.device_id.is_empty()) {
        used += 1;
        let iface = local.interfaces.iter().find(|(i, _)| i.port_id == p.id);
        let problem = match iface {
            None => Some("no OVS interface carries its iface-id (not plugged on this host)".to_string()),
            Some((i, false)) => Some(format!("its interface {} has no device (a veth deleted behind kuryr's back; kuryr gc removes it)", i.name)),
            Some((i, true)) if p.status == PortStatus::Down => Some(format!(
                "DOWN though {} is plugged: ovn-controller did not claim it (bound after it was plugged? its chassis down?)",
                i.name
            )),
            Some(_) => None,
        };
        if let Some(why) = problem {
            bad.push(format!("port {}: {why}", p.id));
        }
    }
    if bad.is_empty() {
        return Check::ok(
            WHAT,
            format!("{used} port(s) in use, each plugged with its iface-id"),
        );
    }
    let n = bad.len();
    bad.truncate(5);
    Check::warn(
        WHAT,
        format!("{n} of {used}: {}", bad.join("; ")),
        "containers on these ports have no network: restart them (kuryr plugs anew), and run kuryr gc --apply for leftovers",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::doctor::Status;

    fn agent(host: &str, alive: bool) -> Agent {
        Agent {
            id: format!("chassis-of-{host}"),
            agent_type: "OVN Controller Gateway agent".into(),
            host: host.into(),
            alive,
        }
    }

    fn port(id: &str, device_id: &str, status: PortStatus) -> Port {
        Port {
            id: id.into(),
            device_id: device_id.into(),
            status,
            ..Port::default()
        }
    }

    fn cfg(host: &str) -> Config {
        Config::parse(
            "t",
            &format!("[DEFAULT]\nhost = {host}\n[neutron]\nendpoint = http://n\n"),
        )
        .unwrap()
        .config
    }

    fn local(hostname: Option<&str>, ifaces: Vec<(&str, &str, bool)>) -> Local {
        Local {
            chassis: Some(Chassis {
                name: "ch1".into(),
                hostname: hostname.map(Into::into),
                bridge: "br-int".into(),
            }),
            bridge_datapath: Some("netdev".into()),
            interfaces: ifaces
                .into_iter()
                .map(|(n, p, e)| {
                    (
                        KuryrInterface {
                            name: n.into(),
                            port_id: p.into(),
                        },
                        e,
                    )
                })
                .collect(),
        }
    }

    fn nested_cfg(port_driver: &str, binding: &str) -> Config {
        Config::parse(
            "t",
            &format!(
                "[DEFAULT]\ndefault_port_driver = {port_driver}\nenabled_port_drivers = {port_driver}\n\
                 [binding]\ndriver = {binding}\nlink_iface = eth0\n[neutron]\nendpoint = http://n\n"
            ),
        )
        .expect("config")
        .config
    }

    #[test]
    fn nested_macvlan_fails_on_ovn_and_says_what_works() {
        let c = nested(&nested_cfg("nested", "macvlan")).expect("a nested check");
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.fix.contains("ipvlan") && c.fix.contains("vlan"), "{c:?}");
        for (port_driver, binding) in [("nested", "ipvlan"), ("vlan", "vlan")] {
            let c = nested(&nested_cfg(port_driver, binding)).expect("a nested check");
            assert_eq!(c.status, Status::Ok, "{port_driver}/{binding}: {c:?}");
        }
        assert!(
            nested(&cfg("n1")).is_none(),
            "veth hosts get the chassis checks"
        );
    }

    #[test]
    fn a_host_name_other_than_the_chassis_is_a_failure_saying_which() {
        let c = judge(
            &cfg("node1"),
            &[agent("n1.example", true)],
            &local(Some("n1.example"), vec![]),
            &[],
        );
        assert_eq!(c[0].status, Status::Fail, "{c:?}");
        assert!(c[0].detail.contains("n1.example"), "{c:?}");
        assert!(c[0].fix.contains("remove `host`"), "{c:?}");
    }

    #[test]
    fn a_healthy_chassis_passes_and_says_the_datapath() {
        let ports = [
            port("p1", "ep", PortStatus::Active),
            port("p2", "", PortStatus::Down),
        ];
        let c = judge(
            &cfg("n1"),
            &[agent("n1", true)],
            &local(Some("n1"), vec![("tapp1", "p1", true)]),
            &ports,
        );
        assert!(c.iter().all(|c| c.status == Status::Ok), "{c:?}");
        assert!(c[1].detail.contains("tx checksum"), "{c:?}");
        assert!(c[2].detail.starts_with("1 port(s)"), "{c:?}");
    }

    #[test]
    fn each_port_in_trouble_is_named_with_its_reason() {
        let ports = [
            port("p1", "ep1", PortStatus::Active),
            port("p2", "ep2", PortStatus::Down),
            port("p3", "ep3", PortStatus::Down),
        ];
        let c = judge(
            &cfg("n1"),
            &[agent("n1", true)],
            &local(
                Some("n1"),
                vec![("tapp2", "p2", false), ("tapp3", "p3", true)],
            ),
            &ports,
        );
        let ifaces = &c[2];
        assert_eq!(ifaces.status, Status::Warn, "{c:?}");
        assert!(ifaces.detail.starts_with("3 of 3"), "{}", ifaces.detail);
        assert!(
            ifaces.detail.contains("port p1: no OVS interface"),
            "{}",
            ifaces.detail
        );
        assert!(
            ifaces
                .detail
                .contains("port p2: its interface tapp2 has no device"),
            "{}",
            ifaces.detail
        );
        assert!(
            ifaces.detail.contains("port p3: DOWN though tapp3"),
            "{}",
            ifaces.detail
        );
    }

    #[test]
    fn no_chassis_here_or_a_dead_one_fails() {
        let none = Local {
            chassis: None,
            bridge_datapath: None,
            interfaces: vec![],
        };
        let c = judge(&cfg("n1"), &[agent("n2", true)], &none, &[]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Fail);
        let c = judge(
            &cfg("n1"),
            &[agent("n1", false)],
            &local(Some("n1"), vec![]),
            &[],
        );
        assert_eq!(c[0].status, Status::Fail);
        assert!(c[0].detail.contains("not alive"), "{c:?}");
        let mut l = local(None, vec![]);
        l.bridge_datapath = None;
        let c = judge(
            &cfg(&crate::config::hostname()),
            &[agent(&crate::config::hostname(), true)],
            &l,
            &[],
        );
        assert_eq!(c[0].status, Status::Ok, "{c:?}");
        assert_eq!(c[1].status, Status::Fail, "{c:?}");
    }
}
