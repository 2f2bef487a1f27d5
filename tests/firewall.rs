//! Security groups enforced, against the real Neutron and its linuxbridge agent running
//! the iptables firewall driver (the firewall profile of scripts/devenv): a container on a
//! network whose group (`-o neutron.security_groups=`) allows only TCP 8080 answers there
//! and neither on 8081 nor to ping; a container's own group (`--driver-opt`) replaces the
//! network's; and the project's default group, which a container gets when neither names
//! any, lets in only members of that group, as Neutron documents. With the port pool, the
//! pool plugs its ports ahead, so a pooled container is filtered before it exists, with
//! `vif_plugging_is_fatal` or without.

mod common;

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Neutron, Port, PortStatus, SecurityGroup, SecurityGroupRule};
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

/// Whether port `id`'s filter is in place on this host now: on ML2/OVN, ovn-controller
/// has installed its flows (ACLs included) and says so on its OVS interface
/// (`ovn-installed`); on linuxbridge, the agent's iptables chains of the port
/// (`neutron-linuxbri-i<id[0:10]>` and the `o` one) exist.
fn filtered(id: &str) -> bool {
    if common::backend() == "ovn" {
        let rundir = std::env::var("KURYR_TEST_OVS_RUNDIR").unwrap_or_default();
        let tap = kuryr::names::host_veth(id);
        return common::ovs::external_id(&rundir, &tap, "ovn-installed") == "true";
    }
    chains_of(id) == 2
}

/// The agent's iptables chains of port `id`, as `iptables-save` lists them now.
fn chains_of(id: &str) -> usize {
    let out = std::process::Command::new("iptables-save")
        .output()
        .expect("iptables-save");
    let short: String = id.chars().take(10).collect();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.starts_with(':')
                && (l.contains(&format!("-i{short} ")) || l.contains(&format!("-o{short} ")))
        })
        .count()
}

/// The port pool plugs its ports ahead, so the port a container gets was ACTIVE, and its
/// filter in place (the agent's iptables chains, or ovn-controller's flows), before
/// `docker run` was asked: the container is filtered from its first moment, with
/// `vif_plugging_is_fatal` (whose wait is then paid ahead) and without it. Its network's
/// group (ping only) keeps 8080 closed while the server listens there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_start_is_filtered_before_the_container_exists() {
    common::require_docker();
    for fatal in [false, true] {
        pooled_start_filtered(fatal).await;
    }
}

async fn pooled_start_filtered(fatal: bool) {
    let n = common::neutron().await;
    let p = common::unique("kfp");
    let _k = Kuryr::plugin(&p)
        .extra(&format!("port_pool_size = 2\n[neutron]\nvif_plugging_is_fatal = {fatal}\nvif_plugging_timeout = 15\n"))
        .start();
    let icmp_name = common::unique("kt-icmp-");
    let icmp = group(&n, &icmp_name, "icmp", None).await;
    let net = common::unique("kfp-");
    common::kuryr_network_with(
        &p,
        &net,
        &[
            "--subnet",
            "10.253.82.0/24",
            "--gateway",
            "10.253.82.1",
            "-o",
            &format!("neutron.security_groups={icmp_name}"),
        ],
    );
    let neutron_net = common::neutron_network_of(&n, &common::network_id(&net)).await;
    // Both pool ports filtered and ACTIVE before any container exists.
    let ready = common::wait_until(60, || {
        let rt = tokio::runtime::Handle::current();
        let ports =
            tokio::task::block_in_place(|| rt.block_on(common::pool_ports(&n, &neutron_net)));
        let done = ports.len() == 2
            && ports.iter().all(|p| {
                p.status == PortStatus::Active
                    && p.security_groups == vec![icmp.id.to_string()]
                    && filtered(&p.id)
            });
        done.then_some(ports)
    })
    .expect("the pool's ports never became ACTIVE and filtered");
    let ready: Vec<String> = ready.iter().map(|p| p.id.to_string()).collect();

    let (s, c) = (common::unique("kfps-"), common::unique("kfpc-"));
    server(&s, &net);
    let s_ip = common::container_ip(&s, &net);
    let port: Port = common::ports_with_ip(&n, &s_ip).await.remove(0);
    assert!(
        ready.contains(&port.id.to_string()),
        "{s} did not get a port filtered before it existed"
    );
    assert_eq!(port.security_groups, vec![icmp.id.to_string()]);
    common::run_container(&c, &net, &[]);
    // The server listens on 8080 (asked inside its own namespace) and answers ping ...
    until(&format!("{s} serves 8080"), || {
        docker_try(&[
            "exec",
            &s,
            "busybox",
            "timeout",
            "3",
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8080/id",
        ])
        .status
        .success()
        .then_some(())
    });
    until(&format!("{c} pings {s}"), || pings(&c, &s_ip).then_some(()));
    // ... and its group keeps 8080 closed.
    assert_eq!(http(&c, &s_ip, 8080), None, "8080 of {s} is open");

    for ct in [&s, &c] {
        docker(&["rm", "-f", ct]);
    }
    docker(&["network", "rm", &net]);
    // The pool's veths go with the network.
    for id in &ready {
        let left = common::host_links(&kuryr::names::host_veth(id));
        assert!(
            left.is_empty(),
            "{left:?} of a pool port outlived its network"
        );
    }
    n.delete::<SecurityGroup>(&icmp.id).await.unwrap();
}
