//! Drop-in swap, both ways: a network and a container made by the Python
//! kuryr-libnetwork 18.0.0 (installed by `scripts/devenv reference`) keep working when our
//! kuryr takes over with the same kuryr.conf, the same plugin name and the same Neutron;
//! and when the reference takes over again, it removes what ours made. On Debian 12's
//! Docker 20.10 and (`DOCKER_HOST` = the engine3 profile's) Docker 28.5.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Filters, Network, Port, SubnetPool};

struct Reference(Child);

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Undo {
    spec: PathBuf,
    containers: Vec<String>,
    network: String,
}

impl Drop for Undo {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker_try(&["rm", "-f", c]);
        }
        let _ = docker_try(&["network", "rm", &self.network]);
        let _ = std::fs::remove_file(&self.spec);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reference_network_survives_the_swap() {
    common::require_docker();
    let n = common::neutron().await;
    let venv = PathBuf::from(common::devenv_path("KURYR_TEST_REFERENCE"));
    let server = venv.join("bin/kuryr-server");
    assert!(
        server.exists(),
        "{} missing: install the reference with `scripts/devenv reference` (scripts/test does)",
        server.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = common::unique("kswap");
    // Where the engine under test looks (engine3 runs in a root of its own).
    let spec_dir = format!("{}/etc/docker/plugins", common::engine_root());
    let spec = PathBuf::from(format!("{spec_dir}/{name}.spec"));
    std::fs::create_dir_all(&spec_dir).unwrap();
    std::fs::write(&spec, format!("http://127.0.0.1:{port}\n")).unwrap();
    let net = common::unique("swapnet-");
    let (a, b) = (common::unique("swa-"), common::unique("swb-"));
    let _undo = Undo {
        spec: spec.clone(),
        containers: vec![a.clone(), b.clone()],
        network: net.clone(),
    };

    // The reference's usual kuryr.conf.
    let dir = tempfile::tempdir().unwrap();
    let conf_text = format!(
        "[DEFAULT]\nbindir = {}\nkuryr_uri = http://127.0.0.1:{port}\ncapability_scope = local\n\n[neutron]\nauth_type = none\nendpoint = {}\n",
        venv.join("libexec/kuryr").display(),
        common::neutron_url()
    );
    let conf = dir.path().join("kuryr.conf");
    std::fs::write(&conf, &conf_text).unwrap();
    let log = std::fs::File::create(dir.path().join("reference.log")).unwrap();
    let py = Reference(
        Command::new(&server)
            .arg("--config-file")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    assert!(
        common::wait_until(60, || TcpStream::connect(("127.0.0.1", port)).ok()).is_some(),
        "the Python reference did not start: {}",
        std::fs::read_to_string(dir.path().join("reference.log")).unwrap_or_default()
    );

    docker(&[
        "network",
        "create",
        "--label",
        "kuryr-test",
        "-d",
        &name,
        "--ipam-driver",
        &name,
        "--subnet",
        "10.28.0.0/24",
        "--gateway",
        "10.28.0.1",
        &net,
    ]);
    common::run_container(&a, &net, &[]);
    let ip_a = common::container_ip(&a, &net);
    let made_by_python: Vec<Port> = n
        .list(&Filters::new().add("fixed_ips", format!("ip_address={ip_a}")))
        .await
        .unwrap();
    assert_eq!(made_by_python.len(), 1);

    // Swap: the reference stops, ours starts with the same file (plus a private socket
    // path, so this test does not collide with a running demo).
    drop(py);
    let ours = Kuryr::at(dir.path().join("ours.sock"))
        .conf(&format!(
            "{conf_text}\n[DEFAULT]\nunix_socket = {}\n",
            dir.path().join("ours.sock").display()
        ))
        .start();
    assert!(common::wait_until(10, || TcpStream::connect(("127.0.0.1", port)).ok()).is_some());

    // A new container joins the reference's network; both talk.
    common::run_container(&b, &net, &[]);
    let ip_b = common::container_ip(&b, &net);
    let pinged = common::wait_until(20, || {
        docker_try(&["exec", &a, "ping", "-c", "1", "-W", "1", &ip_b])
            .status
            .success()
            .then_some(())
    });
    assert!(
        pinged.is_some(),
        "reference-made container cannot reach ours"
    );

    // What the reference made is removed cleanly by ours.
    let nets: Vec<Network> = n
        .list(&Filters::new().add(
            "name",
            format!("kuryr-net-{}", &common::network_id(&net)[..8]),
        ))
        .await
        .unwrap();
    assert_eq!(nets.len(), 1);
    docker(&["rm", "-f", &a]);
    let port_gone = |ip: String| {
        let n = n.clone();
        async move {
            let left: Vec<Port> = n
                .list(&Filters::new().add("fixed_ips", format!("ip_address={ip}")))
                .await
                .unwrap();
            assert!(left.is_empty(), "port of {ip} left: {left:?}");
        }
    };
    port_gone(ip_a.clone()).await;
    let id = &made_by_python[0].id;
    assert!(
        common::host_links(&kuryr::names::host_veth(id)).is_empty(),
        "reference's veth left"
    );

    // And back: ours stops, the reference serves again and removes what ours made.
    let made_by_ours: Vec<Port> = n
        .list(&Filters::new().add("fixed_ips", format!("ip_address={ip_b}")))
        .await
        .unwrap();
    assert_eq!(made_by_ours.len(), 1);
    drop(ours);
    let log2 = std::fs::File::create(dir.path().join("reference2.log")).unwrap();
    let _py2 = Reference(
        Command::new(&server)
            .arg("--config-file")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log2)
            .spawn()
            .unwrap(),
    );
    assert!(
        common::wait_until(60, || TcpStream::connect(("127.0.0.1", port)).ok()).is_some(),
        "the Python reference did not start again"
    );
    docker(&["rm", "-f", &b]);
    port_gone(ip_b.clone()).await;
    assert!(
        common::host_links(&kuryr::names::host_veth(&made_by_ours[0].id)).is_empty(),
        "our veth left after the reference removed the container"
    );
    docker(&["network", "rm", &net]);
    assert!(n
        .get::<Network>(&nets[0].id)
        .await
        .unwrap_err()
        .is_not_found());
    let pools: Vec<SubnetPool> = n
        .list(&Filters::new().add("name", "kuryrPool-10.28.0.0/24"))
        .await
        .unwrap();
    assert!(pools.is_empty(), "reference's pool left");
}
