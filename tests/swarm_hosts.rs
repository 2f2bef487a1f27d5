//! A swarm of two nodes, against the real Neutron: the multihost profile's hosts (see
//! tests/common/multihost.rs), mh-a the manager and mh-b a worker joined over the
//! underlay, kuryr as the managed v2 plugin with `capability_scope = global` on both. A
//! swarm network on a Neutron overlay network both hosts reach: an operator's (VXLAN, or
//! Geneve on ML2/OVN) with its subnet named to IPAM, and on ML2/OVN also one kuryr makes
//! (OVN's tenant networks are Geneve; this devenv's linuxbridge ones are `local`, which
//! do not span hosts). A service of four replicas spreads over both nodes and its tasks
//! ping each other across the hosts. Scaling down frees the removed tasks' ports;
//! draining mh-b moves its tasks to mh-a and leaves nothing of them on mh-b; removing the
//! service and the network leaves nothing in Neutron or on either host.

mod common;

use std::collections::BTreeSet;

use common::multihost::{self, multihost_dir, rand_octet, Host};
use common::{unique, wait_until};
use kuryr::neutron::{Filters, Network, Neutron, Port, Subnet, SubnetPool};
use serde_json::json;

/// Undoes the swarm (worker first) and the plugins, whatever happened.
struct SwarmUndo<'a> {
    hosts: &'a [Host],
    plugin: String,
}

impl Drop for SwarmUndo<'_> {
    fn drop(&mut self) {
        let (a, b) = (&self.hosts[0], &self.hosts[1]);
        for h in [b, a] {
            let _ = h.docker_try(&["swarm", "leave", "--force"]);
        }
        for h in [a, b] {
            let _ = h.docker_try(&["plugin", "rm", "-f", &self.plugin]);
        }
    }
}

/// Removes a scenario's service and network through the manager, whatever happened.
struct ServiceUndo<'a> {
    manager: &'a Host,
    network: String,
    service: String,
}

impl Drop for ServiceUndo<'_> {
    fn drop(&mut self) {
        let _ = self.manager.docker_try(&["service", "rm", &self.service]);
        let _ = self.manager.docker_try(&["network", "rm", &self.network]);
    }
}

/// The running task containers of `service` on host `h`.
fn tasks_on(h: &Host, service: &str) -> Vec<String> {
    common::running_tasks(|args| h.docker(args), service)
}

/// The running tasks per host once they are `want` (a, b), else None.
fn tasks_are(hosts: &[Host], service: &str, want: (usize, usize)) -> Option<[Vec<String>; 2]> {
    let got = [tasks_on(&hosts[0], service), tasks_on(&hosts[1], service)];
    (got[0].len() == want.0 && got[1].len() == want.1).then_some(got)
}

fn ip_of(h: &Host, container: &str, net: &str) -> String {
    h.docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        container,
    ])
}

/// kuryr's ports on the Neutron network `net`.
async fn kuryr_ports(n: &Neutron, net: &str) -> Vec<Port> {
    let ports: Vec<Port> = n
        .list(&Filters::new().add("network_id", net))
        .await
        .expect("ports");
    ports
        .into_iter()
        .filter(|p| p.device_owner == kuryr::names::DEVICE_OWNER)
        .collect()
}

/// Waits until kuryr's ports on `net` are exactly `want` (address, binding host), and
/// fails with what is there instead.
async fn ports_become(n: &Neutron, net: &str, want: &BTreeSet<(String, String)>, when: &str) {
    let mut got = BTreeSet::new();
    for _ in 0..60 {
        got = kuryr_ports(n, net)
            .await
            .iter()
            .flat_map(|p| {
                p.fixed_ips
                    .iter()
                    .map(|f| (f.ip_address.to_string(), p.host_id.clone()))
            })
            .collect();
        if &got == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    panic!("{when}: kuryr's ports (address, host) are {got:?}, not {want:?}");
}

/// The tasks' addresses with the host each runs on, as their ports must be bound.
fn placed(hosts: &[Host], tasks: &[Vec<String>; 2], net: &str) -> BTreeSet<(String, String)> {
    hosts
        .iter()
        .zip(tasks)
        .flat_map(|(h, ids)| ids.iter().map(|c| (ip_of(h, c, net), h.binding.clone())))
        .collect()
}

/// Host `h` keeps no kuryr interface (the host end of a task's veth).
fn no_veths_left(h: &Host) {
    let left = wait_until(30, || {
        h.links(kuryr::names::HOST_VETH_PREFIX)
            .is_empty()
            .then_some(())
    });
    assert!(
        left.is_some(),
        "host {} keeps {:?}",
        h.name,
        h.links(kuryr::names::HOST_VETH_PREFIX)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_spreads_over_two_nodes_pings_across_them_and_leaves_nothing() {
    let dir = multihost_dir();
    let n = common::neutron().await;
    let hosts = [Host::new(&dir, "a"), Host::new(&dir, "b")];
    let (a, b) = (&hosts[0], &hosts[1]);
    // An earlier run that was killed may have left a swarm.
    for h in [b, a] {
        let _ = h.docker_try(&["swarm", "leave", "--force"]);
    }
    // The checks below take every kuryr interface on a host for this test's: one an
    // earlier test left would fail them for the wrong reason.
    for h in &hosts {
        let left = h.links(kuryr::names::HOST_VETH_PREFIX);
        assert!(
            left.is_empty(),
            "host {} has kuryr interfaces before the test (left by an earlier test): {left:?}",
            h.name
        );
    }
    let plugin = format!("{}:latest", unique("kmhsw-"));
    let _swarm = SwarmUndo {
        hosts: &hosts,
        plugin: plugin.clone(),
    };

    // The plugin on both hosts: its own binding host each (on OVN the host's chassis, found
    // through that host's Open vSwitch), one name, global scope.
    let mut etcs = Vec::new();
    for h in &hosts {
        let (host_line, ovs) = multihost::host_line(&dir, h.h);
        // Under the host's directory: its Docker 28 engine sees it at the same path.
        let etc = tempfile::tempdir_in(format!("{dir}/{}", h.h)).expect("tempdir");
        std::fs::write(
            etc.path().join("kuryr.conf"),
            format!(
                "[DEFAULT]\n{host_line}capability_scope = global\ndebug = true\n\
                 [neutron]\nauth_type = none\nendpoint = {}\nenable_dhcp = false\n",
                common::neutron_url()
            ),
        )
        .expect("kuryr.conf");
        common::install_plugin(
            Some(&h.docker_host()),
            &plugin,
            &etc.path().display().to_string(),
            ovs.as_deref(),
        );
        etcs.push(etc);
    }

    // mh-a makes the swarm, mh-b joins it over the underlay.
    a.docker(&["swarm", "init", "--advertise-addr", a.ip()]);
    let token = a.docker(&["swarm", "join-token", "-q", "worker"]);
    let manager = format!("{}:2377", a.ip());
    b.docker(&[
        "swarm",
        "join",
        "--token",
        &token,
        "--advertise-addr",
        b.ip(),
        &manager,
    ]);
    let ready = wait_until(60, || {
        let out = a.docker_try(&["node", "ls", "--format", "{{.Status}}"]);
        (String::from_utf8_lossy(&out.stdout).trim() == "Ready\nReady").then_some(())
    });
    assert!(
        ready.is_some(),
        "the two nodes never were Ready: {}",
        a.docker(&["node", "ls"])
    );

    service_across(&n, &hosts, &plugin, Where::Operators).await;
    if common::on_ovn() {
        service_across(&n, &hosts, &plugin, Where::Kuryrs).await;
    }
}

/// Whose Neutron network the swarm network is on.
#[derive(PartialEq)]
enum Where {
    /// An operator's overlay network and subnet, named to both drivers.
    Operators,
    /// One kuryr makes (the cloud's tenant network type).
    Kuryrs,
}

/// A swarm network on `place`, a service of four replicas over both nodes: pings across
/// them, scaled down, mh-b drained (and made active again), removed; nothing left.
async fn service_across(n: &Neutron, hosts: &[Host], plugin: &str, place: Where) {
    let (a, b) = (&hosts[0], &hosts[1]);
    let (net, svc) = (unique("kmhsw-net-"), unique("kmhsw-svc-"));
    let _undo = ServiceUndo {
        manager: a,
        network: net.clone(),
        service: svc.clone(),
    };
    let third = rand_octet();
    let cidr = format!("10.215.{third}.0/24");
    let gw = format!("10.215.{third}.1");
    let mut create = vec![
        "-d".to_string(),
        plugin.to_string(),
        "--ipam-driver".to_string(),
        plugin.to_string(),
        "--subnet".to_string(),
        cidr.clone(),
        "--gateway".to_string(),
        gw.clone(),
    ];
    // The operator's overlay network and subnet, which both hosts' L2 reaches. The subnet
    // is named to the IPAM driver too: the manager reserves the tasks' addresses on it
    // before any node has the network.
    let operators = if place == Where::Operators {
        let net_type = if common::on_ovn() { "geneve" } else { "vxlan" };
        let neutron_net: Network = n
            .create(json!({"name": unique("kuryr-mhsw-"), "provider:network_type": net_type}))
            .await
            .expect("create an overlay network (ML2 vxlan or geneve type driver)");
        let subnet: Subnet = n
            .create(
                json!({"name": unique("kuryr-mhsw-"), "network_id": neutron_net.id,
                "ip_version": 4, "cidr": cidr, "gateway_ip": gw, "enable_dhcp": false}),
            )
            .await
            .expect("create the operator's subnet");
        create.extend([
            "--ipam-opt".to_string(),
            format!("neutron.subnet.uuid={}", subnet.id),
            "-o".to_string(),
            format!("neutron.net.uuid={}", neutron_net.id),
        ]);
        Some((neutron_net, subnet))
    } else {
        None
    };
    create.push(net.clone());
    let args: Vec<&str> = create.iter().map(String::as_str).collect();
    let net_id = common::swarm_network_create(|args| a.docker_try(args), &args);
    assert_eq!(
        a.docker(&["network", "inspect", "-f", "{{.Scope}}", &net]),
        "swarm"
    );

    // Four replicas: the scheduler spreads them, two on each node.
    a.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        &svc,
        "--replicas",
        "4",
        "--network",
        &net,
        "--no-resolve-image",
        &common::image(),
        "sleep",
        "600",
    ]);
    let tasks = wait_until(120, || tasks_are(hosts, &svc, (2, 2))).unwrap_or_else(|| {
        panic!(
            "the four tasks never ran two per node: {}",
            a.docker(&[
                "service",
                "ps",
                "--no-trunc",
                "--format",
                "{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}",
                &svc
            ])
        )
    });
    let neutron_net = match &operators {
        Some((net, _)) => net.id.to_string(),
        None => common::neutron_network_of(n, &net_id).await,
    };

    // Each task's port is bound to its own host, on the one Neutron network.
    let all = placed(hosts, &tasks, &net);
    assert_eq!(all.len(), 4, "{all:?}");
    ports_become(n, &neutron_net, &all, "four tasks run").await;
    let subnets: Vec<Subnet> = n
        .list(&Filters::new().add("network_id", &neutron_net))
        .await
        .expect("subnets");
    assert_eq!(subnets.len(), 1, "both hosts share one subnet: {subnets:?}");

    // Every task on A reaches every task on B, and back.
    let ping = |h: &Host, from: &str, to: &str| {
        wait_until(45, || {
            h.docker_try(&["exec", from, "ping", "-c", "1", "-W", "1", to])
                .status
                .success()
                .then_some(())
        })
        .is_some()
    };
    for ta in &tasks[0] {
        for tb in &tasks[1] {
            let (ip_a, ip_b) = (ip_of(a, ta, &net), ip_of(b, tb, &net));
            assert!(
                ping(a, ta, &ip_b),
                "task {ta} on mh-a cannot reach {ip_b} on mh-b"
            );
            assert!(
                ping(b, tb, &ip_a),
                "task {tb} on mh-b cannot reach {ip_a} on mh-a"
            );
        }
    }

    // Down to two: the removed tasks' ports go, the others stay where they are.
    a.docker(&["service", "scale", "--detach", &format!("{svc}=2")]);
    let two = wait_until(90, || {
        let t = [tasks_on(a, &svc), tasks_on(b, &svc)];
        (t[0].len() + t[1].len() == 2).then_some(t)
    })
    .expect("the service never ran two tasks after `service scale =2`");
    let kept = placed(hosts, &two, &net);
    ports_become(n, &neutron_net, &kept, "after scaling down to two").await;

    // mh-b drained: its tasks move to mh-a, and nothing of them stays on mh-b.
    let b_node = b.docker(&["info", "--format", "{{.Swarm.NodeID}}"]);
    a.docker(&["node", "update", "--availability", "drain", &b_node]);
    let moved = wait_until(120, || tasks_are(hosts, &svc, (2, 0)))
        .expect("mh-b's tasks never moved to mh-a after the drain");
    let on_a = placed(hosts, &moved, &net);
    ports_become(n, &neutron_net, &on_a, "after draining mh-b").await;
    no_veths_left(b);
    let (ip0, ip1) = (ip_of(a, &moved[0][0], &net), ip_of(a, &moved[0][1], &net));
    assert!(
        ping(a, &moved[0][0], &ip1),
        "moved tasks cannot reach each other"
    );
    assert!(
        ping(a, &moved[0][1], &ip0),
        "moved tasks cannot reach each other"
    );
    a.docker(&["node", "update", "--availability", "active", &b_node]);

    // The service and the network removed: nothing in Neutron, nothing on either host.
    a.docker(&["service", "rm", &svc]);
    let gone = wait_until(60, || {
        a.docker_try(&["network", "rm", &net])
            .status
            .success()
            .then_some(())
    });
    assert!(gone.is_some(), "docker network rm {net} never succeeded");
    ports_become(n, &neutron_net, &BTreeSet::new(), "after removal").await;
    // The operator's subnet stays, without kuryr's tag; kuryr's own network goes with its
    // subnet; the pool kuryr made goes.
    let mut left = (Vec::new(), Vec::new());
    let settled = |l: &(Vec<Subnet>, Vec<SubnetPool>)| {
        l.1.is_empty()
            && match &operators {
                Some((_, s)) => l.0.len() == 1 && l.0[0].id == s.id && l.0[0].tags.is_empty(),
                None => l.0.is_empty(),
            }
    };
    for _ in 0..60 {
        let subnets: Vec<Subnet> = n
            .list(&Filters::new().add("network_id", &neutron_net))
            .await
            .expect("subnets");
        let pools: Vec<SubnetPool> = n.list(&Filters::new()).await.expect("pools");
        left = (
            subnets,
            pools
                .into_iter()
                .filter(|p| p.prefixes.contains(&cidr))
                .collect(),
        );
        if settled(&left) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert!(settled(&left), "left in Neutron (subnets, pools): {left:?}");
    for h in hosts {
        let dropped = wait_until(60, || {
            (!h.docker_try(&["network", "inspect", &net]).status.success()).then_some(())
        });
        assert!(dropped.is_some(), "host {} keeps network {net}", h.name);
        no_veths_left(h);
    }
    // Docker forgets the network before its driver's DeleteNetwork is done: wait for it.
    // Adopted, not made: kuryr leaves it, without its tags (the test removes it); kuryr's
    // own goes.
    let mut last = None;
    for _ in 0..60 {
        let got = n.get::<Network>(&neutron_net).await;
        let done = match (&operators, &got) {
            (Some(_), Ok(still)) => still.tags.iter().all(|t| !t.starts_with("kuryr")),
            (None, Err(e)) => e.is_not_found(),
            _ => false,
        };
        if done {
            last = None;
            break;
        }
        last = Some(got);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert!(
        last.is_none(),
        "the network is not as kuryr should leave it: {last:?}"
    );
    if let Some((theirs, _)) = operators {
        n.delete::<Network>(&theirs.id)
            .await
            .expect("delete the test's network");
    }
}
