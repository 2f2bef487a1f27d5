//! Podman 4.3 (Debian 12, CNI backend) on kuryr: `podman run --network <kuryr conflist>`
//! wires containers into a Neutron network through `kuryr-cni` and the daemon. Two
//! Podman containers and a Docker container on one Neutron network ping each other,
//! `--ip`/`--mac-address` are the ports', `podman rm -f` leaves nothing, and a daemon
//! killed in the middle of an ADD leaves nothing once GC has run.

mod common;

use common::cni::{cni, TestNet};
use common::podman4::Podman;
use common::Kuryr;
use kuryr::neutron::Port;
use serde_json::{json, Value};

async fn cni_ports(net: &TestNet) -> Vec<Port> {
    net.ports()
        .await
        .into_iter()
        .filter(|p| p.tags.iter().any(|t| t == kuryr::names::TAG_CNI))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_and_docker_containers_share_a_neutron_network() {
    common::require_docker();
    let plugin = common::unique("kpod");
    let k = Kuryr::plugin(&plugin).start();
    let net = TestNet::new("10.253.62.0/24", "10.253.62.1").await;
    let mut pm = Podman::new();
    let pnet = common::unique("kuryr-pod-");
    pm.network(&pnet, &net.name, &k.cni_socket);
    assert!(
        pm.run(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"])
            .contains(&format!("{pnet} kuryr-cni")),
        "podman does not list the kuryr network"
    );

    let (a, b) = (common::unique("pa-"), common::unique("pb-"));
    let out = pm.container(&a, &pnet, &[]);
    assert!(
        out.status.success(),
        "podman run: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        k.log_text()
    );
    let out = pm.container(
        &b,
        &pnet,
        &["--ip", "10.253.62.88", "--mac-address", "02:00:0a:fd:3e:58"],
    );
    assert!(
        out.status.success(),
        "podman run --ip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pm.ip_of(&b), "10.253.62.88");
    let link = pm.run(&["exec", &b, "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("02:00:0a:fd:3e:58"), "{link}");
    let ports = cni_ports(&net).await;
    assert_eq!(ports.len(), 2, "{ports:?}");
    let b_port = ports
        .iter()
        .find(|p| p.mac_address == "02:00:0a:fd:3e:58")
        .expect("b's port has its MAC");
    assert_eq!(b_port.fixed_ips[0].ip_address.to_string(), "10.253.62.88");
    assert!(pm.pings(&a, "10.253.62.88"), "podman a cannot reach b");

    // A Docker container on the same Neutron network.
    let dnet = common::unique("kpd-");
    common::kuryr_network_with(
        &plugin,
        &dnet,
        &[
            "--subnet",
            "10.253.62.0/24",
            "--gateway",
            "10.253.62.1",
            "-o",
            &format!("neutron.net.uuid={}", net.id),
        ],
    );
    let d = common::unique("pd-");
    common::run_container(&d, &dnet, &[]);
    let d_ip = common::container_ip(&d, &dnet);
    assert!(pm.pings(&a, &d_ip), "podman cannot reach docker at {d_ip}");
    let a_ip = pm.ip_of(&a);
    let back = common::wait_until(60, || {
        common::docker_try(&["exec", &d, "ping", "-c", "1", "-W", "1", &a_ip])
            .status
            .success()
            .then_some(())
    });
    assert!(back.is_some(), "docker cannot reach podman at {a_ip}");

    // podman rm -f: the CNI DEL takes every port and veth of the two away.
    pm.run(&["rm", "-f", "-t", "0", &a, &b]);
    pm.containers.clear();
    assert!(
        cni_ports(&net).await.is_empty(),
        "ports left after podman rm"
    );
    for p in &ports {
        assert!(
            common::host_links(&kuryr::names::host_veth(&p.id)).is_empty(),
            "veth of {} left",
            p.id
        );
    }
    common::docker(&["rm", "-f", &d]);
    common::docker(&["network", "rm", &dnet]);
    net.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_add_leaves_nothing_after_gc() {
    let net = TestNet::new("10.253.63.0/24", "10.253.63.1").await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("k.sock");
    let mut k = Kuryr::at(sock.clone())
        .envs(&[("KURYR_TEST_KILL_AT", "CNI.ADD.after_port")])
        .start();
    let mut pm = Podman::new();
    let pnet = common::unique("kuryr-kill-");
    pm.network(&pnet, &net.name, &k.cni_socket);
    let c = common::unique("pk-");
    let out = pm.container(&c, &pnet, &[]);
    assert!(
        !out.status.success(),
        "podman run succeeded with its kuryr killed"
    );
    assert!(k.child.wait().is_ok());
    // What the kill left: the port, made and tagged, and nothing else done.
    let left = cni_ports(&net).await;
    assert_eq!(left.len(), 1, "the killed ADD left no port");
    let veth = kuryr::names::host_veth(&left[0].id);

    // kuryr again (same CNI socket), then the runtime's GC with no valid attachment.
    let cni_socket = k.cni_socket.clone();
    let text = format!(
        "[DEFAULT]\nunix_socket = {}\ncni_socket = {}\n[neutron]\nauth_type = none\nendpoint = {}\n",
        sock.display(),
        cni_socket.display(),
        common::neutron_url()
    );
    drop(k);
    let k2 = Kuryr::at(sock).conf(&text).start();
    let gc = json!({"cniVersion": "1.1.0", "name": pnet, "type": "kuryr-cni",
        "socket": cni_socket, "cni.dev/valid-attachments": []});
    let (code, v) = cni(&[("CNI_COMMAND", "GC")], &gc);
    assert_eq!((code, &v), (0, &Value::Null), "GC\n{}", k2.log_text());
    assert!(cni_ports(&net).await.is_empty(), "GC left the port");
    assert!(
        common::host_links(&veth).is_empty(),
        "the killed ADD's veth {veth} is left"
    );
    net.remove().await;
}
