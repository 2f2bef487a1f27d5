//! Security groups enforced, against the real Neutron and its linuxbridge agent running
//! the iptables firewall driver (the firewall profile of scripts/devenv): a container on a
//! network whose group (`-o neutron.security_groups=`) allows only TCP 8080 answers there
//! and neither on 8081 nor to ping; a container's own group (`--driver-opt`) replaces the
//! network's; and the project's default group, which a container gets when neither names
//! any, lets in only members of that group, as Neutron documents.

mod common;

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Neutron, SecurityGroup, SecurityGroupRule};
use serde_json::json;

/// A group of the test's own with one ingress rule (IPv4, `protocol`, and `port` if any)
/// beside the egress rules Neutron gives every new group.
async fn group(n: &Neutron, name: &str, protocol: &str, port: Option<u16>) -> SecurityGroup {
    let g: SecurityGroup = n
        .create(json!({"name": name, "description": "kuryr firewall test"}))
        .await
        .unwrap();
    let mut rule = json!({"security_group_id": g.id, "direction": "ingress",
        "ethertype": "IPv4", "protocol": protocol});
    if let Some(p) = port {
        rule["port_range_min"] = json!(p);
        rule["port_range_max"] = json!(p);
    }
    let _: SecurityGroupRule = n.create(rule).await.unwrap();
    g
}

/// What a server container runs: HTTP on 8080 and on 8081, each serving a file holding
/// the container's host name.
const SERVE: &str = "mkdir -p /w && hostname > /w/id && httpd -p 8080 -h /w \
    && httpd -p 8081 -h /w && exec sleep 600";

/// `docker run -d` of a server on `net`.
fn server(name: &str, net: &str) {
    common::run_container_cmd(name, net, &[], &["sh", "-c", SERVE]);
}

/// A server connected to `net` with this endpoint driver option, started.
fn server_with(name: &str, net: &str, driver_opt: &str) {
    common::connected_with(name, net, driver_opt, &["sh", "-c", SERVE]);
    docker(&["start", name]);
}

fn host_name(container: &str) -> String {
    docker(&["inspect", "-f", "{{.Config.Hostname}}", container])
}

/// What `from` gets over HTTP from `ip:port` (3 s timeout): the server's host name, or
/// None when nothing came back.
fn http(from: &str, ip: &str, port: u16) -> Option<String> {
    let url = format!("http://{ip}:{port}/id");
    // busybox's own timeout: its wget's -T crashes (SIGSEGV) in Debian 12's static build.
    let out = docker_try(&[
        "exec", from, "busybox", "timeout", "3", "wget", "-q", "-O", "-", &url,
    ]);
    let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !body.is_empty()).then_some(body)
}

fn pings(from: &str, ip: &str) -> bool {
    docker_try(&["exec", from, "ping", "-c", "1", "-W", "2", ip])
        .status
        .success()
}

/// Waits (up to 60 s: ARP, and a server that is still starting) until `reach` returns
/// something, and returns it; fails the test if never.
fn until<T>(what: &str, reach: impl FnMut() -> Option<T>) -> T {
    common::wait_until(60, reach).unwrap_or_else(|| panic!("never: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_enforced_a_containers_own_replaces_the_networks_and_default_isolates() {
    common::require_docker();
    let n = common::neutron().await;
    let p = common::unique("kfw");
    // A container starts once the agent has programmed its port's filter (the agent
    // reports a port ACTIVE after that): until then Neutron leaves the port unfiltered,
    // open to whatever its peers' groups let out. So what is refused below is refused
    // from the container's first moment, not only once the agent got to it.
    let _k = Kuryr::plugin(&p)
        .extra("[neutron]\nvif_plugging_is_fatal = true\nvif_plugging_timeout = 15\n")
        .start();
    let (web_name, icmp_name) = (common::unique("kt-8080-"), common::unique("kt-icmp-"));
    let web = group(&n, &web_name, "tcp", Some(8080)).await;
    let icmp = group(&n, &icmp_name, "icmp", None).await;

    // A network whose group lets in TCP 8080 only.
    let net = common::unique("kfw-");
    common::kuryr_network_with(
        &p,
        &net,
        &[
            "--subnet",
            "10.253.80.0/24",
            "--gateway",
            "10.253.80.1",
            "-o",
            &format!("neutron.security_groups={web_name}"),
        ],
    );
    let (s, c) = (common::unique("kfws-"), common::unique("kfwc-"));
    server(&s, &net);
    common::run_container(&c, &net, &[]);
    let s_ip = common::container_ip(&s, &net);
    // 8080 answers (and so both ports' chains are in place) ...
    let got = until(&format!("{c} reaches {s} on 8080"), || {
        http(&c, &s_ip, 8080)
    });
    assert_eq!(got, host_name(&s));
    // ... and what the group does not allow is dropped: another port, and ping.
    assert_eq!(http(&c, &s_ip, 8081), None, "8081 of {s} is open");
    assert!(!pings(&c, &s_ip), "{s} answers ping");

    // A container's own group replaces the network's: ping in, 8080 no longer.
    let o = common::unique("kfwo-");
    server_with(&o, &net, &format!("neutron.security_groups={icmp_name}"));
    let o_ip = common::container_ip(&o, &net);
    // Refused from the start: a port the agent had not got to yet would answer.
    assert_eq!(http(&c, &o_ip, 8080), None, "8080 of {o} is open");
    until(&format!("{c} pings {o}"), || pings(&c, &o_ip).then_some(()));
    // The first server's group is untouched by it.
    assert!(!pings(&c, &s_ip), "{s} answers ping");

    // No group named: the project's default group, which lets in its own members only.
    let net2 = common::unique("kfwd-");
    common::kuryr_network(&p, "10.253.81.0/24", "10.253.81.1", &net2);
    let (a, b) = (common::unique("kfwa-"), common::unique("kfwb-"));
    server(&a, &net2);
    common::run_container(&b, &net2, &[]);
    let a_ip = common::container_ip(&a, &net2);
    // A member reaches a member, on any port and by ping.
    let got = until(&format!("{b} reaches {a} on 8081"), || {
        http(&b, &a_ip, 8081)
    });
    assert_eq!(got, host_name(&a));
    assert!(pings(&b, &a_ip), "{b} cannot ping {a}");
    // A container of the same network outside the group does not, though it is reachable
    // itself (its group lets ping in: the network works both ways at that moment).
    let x = common::unique("kfwx-");
    server_with(&x, &net2, &format!("neutron.security_groups={icmp_name}"));
    let x_ip = common::container_ip(&x, &net2);
    until(&format!("{a} pings {x}"), || pings(&a, &x_ip).then_some(()));
    assert!(
        !pings(&x, &a_ip),
        "{x}, outside the default group, pings {a}"
    );
    assert_eq!(http(&x, &a_ip, 8081), None, "{x} reaches {a} on 8081");

    for ct in [&s, &c, &o, &a, &b, &x] {
        docker(&["rm", "-f", ct]);
    }
    docker(&["network", "rm", &net]);
    docker(&["network", "rm", &net2]);
    for g in [&web, &icmp] {
        n.delete::<SecurityGroup>(&g.id).await.unwrap();
    }
}
