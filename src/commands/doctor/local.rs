//! The checks of this host's side: kuryr's listener, the CNI plugin, the Docker engine
//! and kuryr's plugin in it, and whether bridged traffic meets the agent's firewall.

use std::path::{Path, PathBuf};

use super::Check;
use crate::config::Config;
use crate::docker::Docker;
use crate::names;
use crate::neutron::{Filters, Neutron, Port};

pub(super) fn listener(cfg: &Config, plugin: &str) -> Check {
    if let Some(sock) = &cfg.unix_socket {
        let expected = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
        return match std::os::unix::net::UnixStream::connect(sock) {
            Ok(_) if *sock == expected => {
                Check::ok("plugin socket", format!("{} answers", sock.display()))
            }
            Ok(_) => Check::warn(
                "plugin socket",
                format!(
                    "{} answers, but Docker looks for plugin {plugin:?} at {}",
                    sock.display(),
                    expected.display()
                ),
                format!("set [DEFAULT] unix_socket = {}", expected.display()),
            ),
            Err(e) => Check::fail(
                "plugin socket",
                format!("{}: {e}", sock.display()),
                "start kuryr (systemctl start kuryr, or kuryr serve)",
            ),
        };
    }
    let spec = ["/etc/docker/plugins", "/usr/lib/docker/plugins"]
        .iter()
        .flat_map(|d| [format!("{d}/{plugin}.spec"), format!("{d}/{plugin}.json")])
        .find(|p| Path::new(p).exists());
    match spec {
        Some(p) => Check::ok("plugin discovery file", p),
        None => Check::fail(
            "plugin discovery file",
            format!("no unix socket configured and no {plugin}.spec/.json"),
            "run kuryr serve --discovery-dir /etc/docker/plugins",
        ),
    }
}

/// Where runtimes look for CNI plugins by default (Podman, containerd, CRI-O, Nomad).
const CNI_PLUGIN_DIRS: &[&str] = &["/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni"];

/// netavark's default plugin directories (Podman 5 and 6 find `-d kuryr` there).
const NETAVARK_PLUGIN_DIRS: &[&str] = &[
    "/usr/local/libexec/netavark",
    "/usr/libexec/netavark",
    "/usr/local/lib/netavark",
    "/usr/lib/netavark",
];

/// The plugin socket (CNI and netavark): it answers, `kuryr-cni` or `kuryr-netavark` is
/// where runtimes look, and how many attachments this host holds.
pub(super) async fn cni(n: &Neutron, cfg: &Config) -> Check {
    let Some(sock) = &cfg.cni_socket else {
        return Check::ok("CNI", "off (cni_socket is empty)");
    };
    if let Err(e) = std::os::unix::net::UnixStream::connect(sock) {
        return Check::warn(
            "CNI",
            format!("{}: {e}", sock.display()),
            "start kuryr serve (needed only by Podman and other CNI runtimes)",
        );
    }
    let tags = [names::TAG_CNI];
    let ports: Vec<Port> = match n
        .list(
            &Filters::new()
                .add("binding:host_id", cfg.host.as_str())
                .tags(&tags),
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return Check::fail("CNI", format!("listing CNI ports: {e}"), "check Neutron"),
    };
    let found = |dirs: &[&str], name: &str| {
        dirs.iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.exists())
    };
    let cni = found(CNI_PLUGIN_DIRS, "kuryr-cni");
    let netavark = found(NETAVARK_PLUGIN_DIRS, "kuryr");
    let mut detail = format!(
        "{} answers; {} attachment(s) on this host",
        sock.display(),
        ports.len()
    );
    for (what, p) in [("CNI plugin", &cni), ("netavark plugin", &netavark)] {
        if let Some(p) = p {
            detail.push_str(&format!("; {what} {}", p.display()));
        }
    }
    if cni.is_some() || netavark.is_some() {
        return Check::ok("CNI", detail);
    }
    Check::warn(
        "CNI",
        format!(
            "{detail}; kuryr-cni is in none of {}, kuryr-netavark (as kuryr) in none of {}",
            CNI_PLUGIN_DIRS.join(", "),
            NETAVARK_PLUGIN_DIRS.join(", ")
        ),
        "install -m 755 kuryr-cni /opt/cni/bin/ (Podman 4, containerd), or kuryr-netavark as /usr/libexec/netavark/kuryr (Podman 5 and 6)",
    )
}

/// The engine's version, and a warning for the versions known to misbehave with a
/// remote network driver.
pub(super) async fn docker_engine(socket: &Path) -> Check {
    match Docker::new(socket).get("/version").await {
        Ok(v) => engine_check(
            v["Version"].as_str().unwrap_or_default(),
            v["ApiVersion"].as_str().unwrap_or_default(),
        ),
        Err(e) => Check::fail("Docker engine", e, "start dockerd; check --docker-socket"),
    }
}

const ENGINE: &str = "Docker engine";

pub(super) fn engine_check(version: &str, api: &str) -> Check {
    let numbers: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    let detail = format!("{version} (API {api})");
    match numbers[..] {
        [25, 0, p] if p < 3 => Check::warn(
            ENGINE,
            format!("{detail}: re-applies the MAC a driver chose as if the user had set it when a container restarts (fixed in 25.0.3, DesiredMacAddress)"),
            "upgrade to 25.0.3 or later",
        ),
        [29, 0, p] if p < 3 => Check::warn(
            ENGINE,
            format!("{detail}: crashes on calls to remote network drivers such as kuryr (fixed in 29.0.3)"),
            "upgrade to 29.0.3 or later",
        ),
        [major, minor, _] if (major, minor) < (20, 10) => Check::warn(
            ENGINE,
            format!("{detail}: older than any engine kuryr is tested with (20.10)"),
            "upgrade Docker",
        ),
        [_, _, _] => Check::ok(ENGINE, detail),
        _ => Check::warn(
            ENGINE,
            format!("{detail}: version not understood"),
            "check `docker version`",
        ),
    }
}

pub(super) async fn docker_plugin(socket: &Path, plugin: &str) -> Check {
    let d = Docker::new(socket);
    match d.get("/info").await {
        Ok(info) => {
            let listed = info["Plugins"]["Network"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p.as_str() == Some(plugin)));
            if listed {
                Check::ok(
                    "dockerd lists the plugin",
                    format!("{plugin} among Plugins.Network"),
                )
            } else {
                Check::warn(
                    "dockerd lists the plugin",
                    format!("{plugin} not activated yet (Docker activates plugins when a network first uses them)"),
                    format!("docker network create -d {plugin} --ipam-driver {plugin} --subnet <cidr> <name>"),
                )
            }
        }
        Err(e) => Check::fail("dockerd answers", e, "start dockerd; check --docker-socket"),
    }
}

/// Docker's FORWARD DROP policy with bridge netfilter drops frames between ports of a
/// Linux bridge it does not own (Neutron's brq*), unless a rule accepts them or the L2
/// agent's iptables firewall passes what the ports' groups allow.
/// Also returns `iptables -S FORWARD` (empty when not read), for `groups_at_start`.
pub(super) fn forward_policy() -> (Check, String) {
    let nf = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    if !nf {
        return (forward_verdict(false, "", ""), String::new());
    }
    let iptables = |chain: &str| {
        std::process::Command::new("iptables")
            .args(["-S", chain])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Ok(rules) = iptables("FORWARD") else {
        return (
            Check::warn(FORWARD, "cannot run iptables", ""),
            String::new(),
        );
    };
    let user = iptables("DOCKER-USER").unwrap_or_default();
    (forward_verdict(true, &rules, &user), rules)
}

/// Whether the L2 agent's iptables firewall hooks into FORWARD (its chain is
/// neutron-linuxbri-FORWARD or neutron-openvswi-FORWARD).
fn agent_firewall(forward: &str) -> bool {
    forward
        .lines()
        .any(|l| l.starts_with("-A FORWARD -j neutron-") && l.ends_with("-FORWARD"))
}

/// With the agent enforcing groups, a container kuryr does not hold back until its port
/// is ACTIVE runs for a moment (about the second or two the agent takes) before its
/// filter exists, open to what its peers' groups let out. None when no agent firewall
/// is seen here.
pub(super) fn groups_at_start(forward: &str, waits: bool) -> Option<Check> {
    const WHAT: &str = "security groups at a container's start";
    if !agent_firewall(forward) {
        return None;
    }
    Some(if waits {
        Check::ok(
            WHAT,
            "vif_plugging_is_fatal: a container starts once the agent has its port filtered",
        )
    } else {
        Check::warn(
            WHAT,
            "the agent enforces groups, but a container starts before its port is filtered (about a second or two, open to its peers)",
            "[neutron] vif_plugging_is_fatal = true and vif_plugging_timeout = 15 in kuryr.conf",
        )
    })
}

const FORWARD: &str = "bridged traffic and iptables";

/// The verdict on `iptables -S FORWARD` and `-S DOCKER-USER`, bridge netfilter on or off.
pub(super) fn forward_verdict(nf: bool, forward: &str, docker_user: &str) -> Check {
    if !nf {
        return Check::ok(
            FORWARD,
            "bridge netfilter is off: iptables does not see bridged frames",
        );
    }
    let lines: Vec<&str> = forward.lines().collect();
    let at = |pred: &dyn Fn(&str) -> bool| lines.iter().position(|l| pred(l));
    let bridged_accept = |l: &str| {
        l.contains("-j ACCEPT") && (l.contains("brq+") || l.contains("physdev-is-bridged"))
    };
    // The agent's iptables firewall hooks its own chain into FORWARD
    // (neutron-linuxbri-FORWARD, neutron-openvswi-FORWARD).
    let agent = at(&|l| agent_firewall(l));
    let user_jump = at(&|l| l.starts_with("-A FORWARD -j DOCKER-USER"));
    let in_user = docker_user.lines().any(bridged_accept);
    let in_forward = at(&bridged_accept);
    if let Some(a) = agent {
        // An ACCEPT evaluated before the agent's chain passes every frame unfiltered.
        let bypass =
            (in_user && user_jump.is_some_and(|u| u < a)) || in_forward.is_some_and(|f| f < a);
        return if bypass {
            Check::warn(
                FORWARD,
                "the L2 agent runs the iptables firewall, but a rule accepting bridged frames comes before its chain: security groups are not enforced",
                "iptables -D DOCKER-USER -i brq+ -o brq+ -j ACCEPT",
            )
        } else {
            Check::ok(
                FORWARD,
                "FORWARD policy is DROP; the L2 agent's iptables firewall passes what the ports' security groups allow",
            )
        };
    }
    if !forward.contains("-P FORWARD DROP") {
        return Check::ok(FORWARD, "FORWARD policy accepts");
    }
    if in_user || in_forward.is_some() {
        Check::ok(
            FORWARD,
            "FORWARD policy is DROP, but frames on brq+ bridges are accepted",
        )
    } else {
        Check::fail(
            FORWARD,
            "FORWARD policy is DROP (set by Docker) and bridge netfilter is on: containers on kuryr networks cannot reach each other",
            "iptables -I DOCKER-USER -i brq+ -o brq+ -j ACCEPT   (or let the agent's iptables firewall driver program the ports)",
        )
    }
}
