//! Two Docker hosts, one Neutron network: the multihost profile of `scripts/devenv` gives
//! two network namespaces (kmh-a, kmh-b), each with its own dockerd and linuxbridge agent
//! (hosts mh-a, mh-b, VXLAN over an underlay veth) and, on ML2/OVN, its own Open vSwitch
//! and ovn-controller (chassis of hosts mh-a-ovn, mh-b-ovn, Geneve over a second
//! underlay). One kuryr per host; a container on A pings a container on B across the
//! underlay and fetches data from it over TCP.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::multihost::{self, multihost_dir, rand_octet, Host};
use common::{image, unique, wait_until, Kuryr};
use kuryr::neutron::{Filters, Network, Neutron, Port, Subnet, SubnetPool};
use serde_json::json;

/// Host `h`'s kuryr.conf and (on OVN) its OVS_RUNDIR.
fn host_conf(dir: &str, h: &str) -> (String, Option<String>) {
    let socket = format!("{dir}/{h}/plugins/kuryr.sock");
    let (host_line, ovs) = multihost::host_line(dir, h);
    let conf = format!(
        "[DEFAULT]\nunix_socket = {socket}\n{host_line}debug = true\n\
         [neutron]\nauth_type = none\nendpoint = {}\nenable_dhcp = false\n",
        common::neutron_url()
    );
    (conf, ovs)
}

/// One kuryr per host, in the host's namespace, on the socket its dockerd looks at.
fn start_hosts(dir: &str) -> Vec<Host> {
    ["a", "b"]
        .into_iter()
        .map(|h| {
            let socket = PathBuf::from(format!("{dir}/{h}/plugins/kuryr.sock"));
            let (conf, ovs) = host_conf(dir, h);
            let envs: Vec<(&str, &str)> = ovs.iter().map(|o| ("OVS_RUNDIR", o.as_str())).collect();
            let k = Kuryr::at(socket)
                .conf(&conf)
                .envs(&envs)
                .netns(&format!("kmh-{h}"))
                .start();
            Host {
                kuryr: Some(k),
                ..Host::new(dir, h)
            }
        })
        .collect()
}

/// Both scenarios share the hosts' kuryr sockets, so they run one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_docker_hosts_on_one_neutron() {
    let dir = multihost_dir();
    let n = common::neutron().await;
    let mut hosts = start_hosts(&dir);
    // Dropped before the hosts' kuryr, which Docker needs to remove what is left.
    let _left = LeftOnFailure(&dir);
    operator_network_spans_hosts(&n, &hosts).await;
    network_made_on_one_host_is_used_from_the_other(&n, &hosts, &dir).await;
    for h in &mut hosts {
        if let Some(mut k) = h.kuryr.take() {
            k.stop();
        }
    }
}

/// A failure half-way leaves containers and their interfaces on the hosts, which the
/// next test on them (tests/swarm_hosts.rs) would take for its own: they are removed.
struct LeftOnFailure<'a>(&'a str);

impl Drop for LeftOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for h in ["a", "b"] {
                Host::new(self.0, h).remove_test_objects();
            }
        }
    }
}

fn run(h: &Host, name: &str, net: &str) {
    h.docker(&common::sleeper_args(name, net, &image()));
}

/// A VXLAN network made by the operator, named on both hosts: containers on A and B
/// ping each other across the underlay.
async fn operator_network_spans_hosts(n: &Neutron, hosts: &[Host]) {
    let net_name = unique("kuryr-mh-");
    let net_type = if common::on_ovn() { "geneve" } else { "vxlan" };
    let net: Network = n
        .create(json!({"name": net_name, "provider:network_type": net_type}))
        .await
        .expect("create an overlay network (ML2 vxlan or geneve type driver)");

    // The same Docker network on both hosts, naming the shared Neutron network.
    let third = rand_octet();
    let cidr = format!("10.213.{third}.0/24");
    let gw = format!("10.213.{third}.1");
    let dnet = unique("mh-net-");
    let uuid_opt = format!("neutron.net.uuid={}", net.id);
    for h in hosts {
        h.network_create(
            &dnet,
            &["--subnet", &cidr, "--gateway", &gw, "-o", &uuid_opt],
        );
    }
    let subnets: Vec<Subnet> = n
        .list(&Filters::new().add("network_id", &net.id))
        .await
        .unwrap();
    assert_eq!(subnets.len(), 1, "both hosts share one subnet: {subnets:?}");

    // One container per host.
    let cname = |h: &Host| format!("{dnet}-{}", h.name);
    for h in hosts {
        run(h, &cname(h), &dnet);
    }
    let ip_of = |h: &Host| {
        h.docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{dnet}\").IPAddress}}}}"),
            &cname(h),
        ])
    };
    let (ip_a, ip_b) = (ip_of(&hosts[0]), ip_of(&hosts[1]));
    assert_ne!(ip_a, ip_b);

    // Ports are bound to their own hosts and ACTIVE (each host's agent wired them).
    let ports: Vec<Port> = n
        .list(&Filters::new().add("network_id", &net.id))
        .await
        .unwrap();
    let mut bound: Vec<String> = ports
        .iter()
        .filter(|p| kuryr::driver::kuryr_made(p))
        .map(|p| p.host_id.clone())
        .collect();
    bound.sort();
    assert_eq!(
        bound,
        vec![hosts[0].binding.clone(), hosts[1].binding.clone()],
        "{ports:#?}"
    );

    // A on mh-a reaches B on mh-b across the VXLAN underlay, and back (l2population may
    // take a moment to program the forwarding entries).
    let ping = |from: &Host, container: &str, to: &str| {
        wait_until(45, || {
            from.docker_try(&["exec", container, "ping", "-c", "1", "-W", "1", to])
                .status
                .success()
                .then_some(())
        })
        .is_some()
    };
    assert!(
        ping(&hosts[0], &cname(&hosts[0]), &ip_b),
        "mh-a cannot reach {ip_b} on mh-b"
    );
    assert!(
        ping(&hosts[1], &cname(&hosts[1]), &ip_a),
        "mh-b cannot reach {ip_a} on mh-a"
    );
    // Data across the hosts, not just ping: 2 MB from B's container to A's.
    hosts[1].docker(&[
        "exec",
        &cname(&hosts[1]),
        "sh",
        "-c",
        "mkdir -p /w && head -c 2000000 /dev/zero > /w/f && httpd -p 8080 -h /w",
    ]);
    let got = hosts[0].docker(&[
        "exec",
        &cname(&hosts[0]),
        "sh",
        "-c",
        &format!("timeout 20 wget -q -O - http://{ip_b}:8080/f | wc -c"),
    ]);
    assert_eq!(got, "2000000", "TCP from mh-b to mh-a");

    // Host A leaves first: the network, subnet and pool stay for host B, whose container
    // keeps working and who can still start another one.
    hosts[0].docker(&["rm", "-f", &cname(&hosts[0])]);
    hosts[0].docker(&["network", "rm", &dnet]);
    let subnets: Vec<Subnet> = n
        .list(&Filters::new().add("network_id", &net.id))
        .await
        .unwrap();
    assert_eq!(subnets.len(), 1, "host A's removal took host B's subnet");
    let late = format!("{dnet}-late");
    run(&hosts[1], &late, &dnet);
    let b_ip = ip_of(&hosts[1]);
    // Neutron may hand the late container the address A's container just gave back. On
    // ML2/OVN the switch answers ARP itself, so B's first container keeps the old MAC for
    // that address until its neighbour entry is refreshed (Docker's unsolicited ARP, or
    // the entry's probe): it is waited for as the pings above.
    assert!(
        ping(&hosts[1], &late, &b_ip),
        "a container started on B after A left cannot reach B's first container"
    );

    // Removal on the last host leaves Neutron clean.
    hosts[1].docker(&["rm", "-f", &cname(&hosts[1]), &late]);
    hosts[1].docker(&["network", "rm", &dnet]);
    let ports: Vec<Port> = n
        .list(&Filters::new().add("network_id", &net.id))
        .await
        .unwrap();
    assert!(
        ports.iter().all(|p| !kuryr::driver::kuryr_made(p)),
        "ports left: {ports:#?}"
    );
    let subnets: Vec<Subnet> = n
        .list(&Filters::new().add("network_id", &net.id))
        .await
        .unwrap();
    assert!(subnets.is_empty(), "subnets left: {subnets:?}");
    let pools: Vec<SubnetPool> = n.list(&Filters::new()).await.unwrap();
    assert!(
        pools.iter().all(|p| !p.prefixes.contains(&cidr)),
        "pool for {cidr} left: {pools:?}\nhost A's kuryr:\n{}\nhost B's kuryr:\n{}",
        hosts[0]
            .kuryr
            .as_ref()
            .map(|k| k.log_text())
            .unwrap_or_default(),
        hosts[1]
            .kuryr
            .as_ref()
            .map(|k| k.log_text())
            .unwrap_or_default()
    );
    // The operator's network was adopted, not made: kuryr leaves it; the test removes it.
    let still: Network = n.get(&net.id).await.expect("adopted network kept");
    assert_eq!(still.id, net.id);
    n.delete::<Network>(&net.id).await.unwrap();
}

/// A Docker network created on A makes its Neutron network; B names it by uuid. A leaving
/// first keeps it for B; B, the last user, removes it.
async fn network_made_on_one_host_is_used_from_the_other(n: &Neutron, hosts: &[Host], dir: &str) {
    let third = rand_octet();
    let cidr = format!("10.214.{third}.0/24");
    let dnet = unique("mh-made-");
    hosts[0].network_create(&dnet, &["--subnet", &cidr]);
    let docker_id = hosts[0].docker(&["network", "inspect", "-f", "{{.Id}}", &dnet]);
    let nets: Vec<Network> = n
        .list(&Filters::new().add("name", kuryr::names::network_name(&docker_id)))
        .await
        .unwrap();
    assert_eq!(nets.len(), 1, "{nets:?}");
    let net_id = nets[0].id.clone();
    // Before B uses it, A's network has no port and is not in B's Docker: B's `kuryr gc`
    // still leaves it, since A made it.
    let report = gc_on(dir, "b");
    assert!(
        !report.contains(net_id.as_str()),
        "host B's gc would take host A's network:\n{report}"
    );
    let uuid_opt = format!("neutron.net.uuid={net_id}");
    hosts[1].network_create(&dnet, &["--subnet", &cidr, "-o", &uuid_opt]);
    let on_b = format!("{dnet}-b");
    run(&hosts[1], &on_b, &dnet);

    // A leaves: the network, its subnet and B's port stay.
    hosts[0].docker(&["network", "rm", &dnet]);
    let still: Network = n.get(&net_id).await.expect("network kept for host B");
    assert!(kuryr::names::used_by_other_docker_networks(
        &still.name,
        &still.tags,
        &[]
    ));
    let ports: Vec<Port> = n
        .list(&Filters::new().add("network_id", &net_id))
        .await
        .unwrap();
    assert!(
        ports.iter().any(|p| p.host_id == hosts[1].binding),
        "{ports:#?}"
    );
    let on_b2 = format!("{dnet}-b2");
    run(&hosts[1], &on_b2, &dnet);

    // B leaves last: everything goes.
    hosts[1].docker(&["rm", "-f", &on_b, &on_b2]);
    hosts[1].docker(&["network", "rm", &dnet]);
    let gone = n.get::<Network>(&net_id).await;
    assert!(
        gone.as_ref().is_err_and(|e| e.is_not_found()),
        "the last user left the network behind: {gone:?}\n{}",
        hosts[1]
            .kuryr
            .as_ref()
            .map(|k| k.log_text())
            .unwrap_or_default()
    );
    let pools: Vec<SubnetPool> = n.list(&Filters::new()).await.unwrap();
    assert!(
        pools.iter().all(|p| !p.prefixes.contains(&cidr)),
        "pool for {cidr} left: {pools:?}"
    );
}

/// `kuryr gc` (without --apply: a report) of host `h`, in its namespace, against its
/// dockerd; fails the test if gc fails.
fn gc_on(dir: &str, h: &str) -> String {
    let (conf, ovs) = host_conf(dir, h);
    let conf_dir = tempfile::tempdir().unwrap();
    let path = conf_dir.path().join("kuryr.conf");
    std::fs::write(&path, conf).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &format!("kmh-{h}")])
        .arg(env!("CARGO_BIN_EXE_kuryr"))
        .args(["gc", "--grace-seconds", "0", "--config-file"])
        .arg(&path)
        .args(["--docker-socket", &multihost::engine_sock(dir, h)]);
    if let Some(ovs) = ovs {
        cmd.env("OVS_RUNDIR", ovs);
    }
    let out = cmd.output().expect("kuryr gc");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kuryr gc on {h}: {text}");
    text
}
