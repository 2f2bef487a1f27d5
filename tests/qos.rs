//! QoS through Docker, against the real Neutron and its linuxbridge agent (qos service
//! plugin, the agent's qos extension): a network's policy (`-o neutron.qos_policy=`) is the
//! Neutron network's, the agent puts its (ingress) bandwidth limit on each container's tap
//! as a tbf and a transfer into such a container stays at the limit; a container's own
//! policy (`docker network connect --driver-opt neutron.qos_policy=`) replaces it on its
//! port; an unknown policy is refused before anything is made; removal leaves the
//! policies and nothing else.

mod common;

use std::process::Command;
use std::time::Instant;

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Filters, Network, Neutron, Port, QosPolicy};
use serde_json::{json, Value};

/// The limit of the network's policy, and its burst (kbit/s, kbit).
const LIMIT_KBPS: u64 = 2000;
const BURST_KBIT: u64 = 200;
/// What the server containers send: 1 MiB (about 4 s at the limit).
const FILE_KIB: u64 = 1024;

async fn policy(n: &Neutron, name: &str, limit: Option<(u64, u64)>) -> QosPolicy {
    let p: QosPolicy = n.create(json!({"name": name})).await.unwrap();
    if let Some((kbps, burst)) = limit {
        // Rules are a sub-resource kuryr's client has no call for.
        let url = format!(
            "{}/v2.0/qos/policies/{}/bandwidth_limit_rules",
            common::neutron_url(),
            p.id
        );
        let r = reqwest::Client::new()
            .post(url)
            .json(
                &json!({"bandwidth_limit_rule": {"max_kbps": kbps, "max_burst_kbps": burst,
                "direction": "ingress"}}),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "rule: {}", r.text().await.unwrap());
    }
    p
}

/// The tap's queueing disciplines: the agent limits what goes into the container with a
/// tbf on the tap (an egress limit needs the kernel's police action, which this machine's
/// kernel does not have).
fn qdiscs(tap: &str) -> String {
    let out = Command::new("tc")
        .args(["qdisc", "show", "dev", tap])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The command of a container serving FILE_KIB of zeros over HTTP on 8080.
fn server_cmd() -> String {
    format!(
        "mkdir -p /w && dd if=/dev/zero of=/w/f bs=1024 count={FILE_KIB} 2>/dev/null \
         && exec httpd -f -p 8080 -h /w"
    )
}

/// Seconds `client` takes to fetch the file from `ip`.
fn fetch_secs(client: &str, ip: &str) -> f64 {
    let url = format!("http://{ip}:8080/f");
    // Once first: the server is up and ARP resolved before the timed fetch.
    assert!(
        common::wait_until(30, || docker_try(&[
            "exec",
            client,
            "wget",
            "-q",
            "-O",
            "/dev/null",
            &url
        ])
        .status
        .success()
        .then_some(()))
        .is_some(),
        "{client} cannot fetch from {ip}"
    );
    let t = Instant::now();
    docker(&["exec", client, "wget", "-q", "-O", "/dev/null", &url]);
    t.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_networks_policy_limits_its_containers_and_a_containers_own_replaces_it() {
    common::require_docker();
    let n = common::neutron().await;
    let p = common::unique("kqos");
    let _k = Kuryr::plugin(&p).start();
    let (slow_name, fast_name) = (common::unique("kt-slow-"), common::unique("kt-fast-"));
    let slow = policy(&n, &slow_name, Some((LIMIT_KBPS, BURST_KBIT))).await;
    // No rule: a port with it has no limit, whatever its network's policy says.
    let fast = policy(&n, &fast_name, None).await;

    // Unknown: refused, nothing in Neutron.
    let nets_before: Vec<Network> = n.list(&Filters::new()).await.unwrap();
    let out = common::kuryr_network_try(
        &p,
        &common::unique("kqbad-"),
        &[
            "--subnet",
            "10.253.73.0/24",
            "-o",
            "neutron.qos_policy=no-such-policy-kuryr",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no QoS policy is named \"no-such-policy-kuryr\""),
        "{err}"
    );
    let nets_after: Vec<Network> = n.list(&Filters::new()).await.unwrap();
    assert_eq!(nets_before.len(), nets_after.len());

    let net = common::unique("kqos-");
    common::kuryr_network_with(
        &p,
        &net,
        &[
            "--subnet",
            "10.253.72.0/24",
            "--gateway",
            "10.253.72.1",
            "-o",
            &format!("neutron.qos_policy={slow_name}"),
        ],
    );
    let neutron_net: Network = n
        .get(&common::neutron_network_of(&n, &common::network_id(&net)).await)
        .await
        .unwrap();
    assert_eq!(neutron_net.qos_policy_id.as_deref(), Some(slow.id.as_str()));

    // The server and one client have their own policy (no rule: no limit); the other
    // client has the network's.
    let server = common::unique("kqs-");
    let opt = format!("neutron.qos_policy={fast_name}");
    common::connected_with(&server, &net, &opt, &["sh", "-c", &server_cmd()]);
    docker(&["start", &server]);
    let own = common::unique("kqf-");
    common::connected_with(&own, &net, &opt, &["sleep", "600"]);
    docker(&["start", &own]);
    let limited = common::unique("kql-");
    common::run_container(&limited, &net, &[]);

    let server_ip = common::container_ip(&server, &net);
    let limited_port = common::port_at(&n, &common::container_ip(&limited, &net)).await;
    let own_port = common::port_at(&n, &common::container_ip(&own, &net)).await;
    assert_eq!(limited_port.qos_policy_id, None, "the network's applies");
    assert_eq!(own_port.qos_policy_id.as_deref(), Some(fast.id.as_str()));

    // What the user sees: each container's policy by name, and whose it is.
    for (ct, name, from) in [
        (&limited, &slow_name, "network"),
        (&own, &fast_name, "port"),
    ] {
        let v = common::kuryr_inspect(ct);
        let port = &v["ports"][0];
        assert_eq!(port["qos_policy"]["name"], json!(name), "{v}");
        assert_eq!(port["qos_policy_from"], json!(from), "{v}");
    }

    // The linuxbridge agent's rate limit on the limited container's tap (what leaves the
    // tap enters the container), none on the other's. (OVN limits in its own datapath:
    // the transfer below is what shows it there.)
    if !common::on_ovn() {
        let tap = kuryr::names::host_veth(&limited_port.id);
        let shaping = common::wait_until(60, || {
            let q = qdiscs(&tap);
            q.contains("tbf").then_some(q)
        })
        .unwrap_or_else(|| panic!("no rate limit on {tap}: {:?}", qdiscs(&tap)));
        assert!(shaping.contains("rate 2Mbit"), "{shaping}");
        let own_tap = kuryr::names::host_veth(&own_port.id);
        assert!(!qdiscs(&own_tap).contains("tbf"), "{}", qdiscs(&own_tap));
    }

    // What the limit lets in: at most the limit (after the burst), while the same
    // transfer into the container with its own policy goes far faster.
    let slow_secs = fetch_secs(&limited, &server_ip);
    let fast_secs = fetch_secs(&own, &server_ip);
    let kbit = FILE_KIB * 1024 * 8 / 1000;
    let rate = (kbit - BURST_KBIT) as f64 / slow_secs;
    eprintln!(
        "qos: limited {slow_secs:.2} s ({rate:.0} kbit/s, limit {LIMIT_KBPS}), own policy {fast_secs:.2} s"
    );
    assert!(
        rate <= LIMIT_KBPS as f64 * 1.1,
        "{rate:.0} kbit/s into a container limited to {LIMIT_KBPS}"
    );
    assert!(
        fast_secs * 4.0 < slow_secs,
        "own policy {fast_secs:.2} s against the network's {slow_secs:.2} s"
    );

    for ct in [&limited, &own, &server] {
        docker(&["rm", "-f", ct]);
    }
    docker(&["network", "rm", &net]);
    // The policies stay (they are the user's); the ports and the network are gone.
    for port in [&limited_port, &own_port] {
        let gone = n.get::<Port>(&port.id).await;
        assert!(
            gone.as_ref().is_err_and(|e| e.is_not_found()),
            "port {} left: {gone:?}",
            port.id
        );
    }
    let gone = n.get::<Network>(&neutron_net.id).await;
    assert!(gone.is_err_and(|e| e.is_not_found()));
    for q in [&slow, &fast] {
        let still: Value = serde_json::to_value(n.get::<QosPolicy>(&q.id).await.unwrap()).unwrap();
        assert_eq!(still["id"], json!(q.id));
        n.delete::<QosPolicy>(&q.id).await.unwrap();
    }
}
