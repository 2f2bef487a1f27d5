//! Crash safety: kuryr is killed (SIGKILL, no clean-up) right after each step of a
//! container lifecycle has done its work, then restarted; Docker finishes or removes the
//! container and the network, and nothing kuryr made remains in Neutron or on the host.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Filters, Network, Neutron, Port};

fn veths() -> Vec<String> {
    let mut v = common::host_links("tap");
    v.extend(common::host_links("t_c"));
    v
}

async fn crash_at(n: &Neutron, step: &str, subnet: &str) {
    crash_with(n, ("KURYR_TEST_CRASH_AFTER", step), "", subnet).await;
}

/// kuryr with `extra` [DEFAULT] options is killed where `point` (an environment variable
/// and its value) says, restarted, and Docker finishes.
async fn crash_with(n: &Neutron, point: (&str, &str), extra: &str, subnet: &str) {
    let step = point.1;
    let before = veths();
    let p = common::unique("kt");
    let sock = PathBuf::from(format!("/run/docker/plugins/{p}.sock"));
    let conf = format!(
        "[DEFAULT]\nunix_socket = {}\n{extra}[neutron]\nauth_type = none\nendpoint = {}\n",
        sock.display(),
        common::neutron_url()
    );
    let mut k = Kuryr::at(sock.clone()).conf(&conf).envs(&[point]).start();
    let (net, ct) = (common::unique("kx-"), common::unique("kxc-"));
    let gw = subnet.replace("0/24", "1");
    common::kuryr_network(&p, subnet, &gw, &net);
    let docker_id = common::network_id(&net);
    let neutron_net = n
        .list::<Network>(&Filters::new().tags(&kuryr::names::id_tags(&docker_id)))
        .await
        .unwrap()
        .remove(0)
        .id;

    // `docker run` in the background: it blocks while kuryr is dead.
    let (ct2, net2) = (ct.clone(), net.clone());
    let run = std::thread::spawn(move || common::run_container_try(&ct2, &net2));
    // Wait for the crash, then restart at once without the crash point.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(_)) = k.child.try_wait() {
            break;
        }
        assert!(Instant::now() < deadline, "kuryr never reached {step}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _k2 = Kuryr::at(sock).conf(&conf).start();
    let out = run.join().unwrap();
    eprintln!(
        "{step}: docker run {} ({})",
        if out.status.success() {
            "succeeded after the restart"
        } else {
            "failed and Docker rolled back"
        },
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // A start after the restart never gets the port of the first container (its
    // bookkeeping may never have been written: its veth says it is taken).
    let ct3 = common::unique("kxd-");
    let second = common::run_container_try(&ct3, &net);
    if out.status.success() && second.status.success() {
        let (ip1, ip3) = (
            common::container_ip(&ct, &net),
            common::container_ip(&ct3, &net),
        );
        assert_ne!(ip1, ip3, "{step}: one address handed out twice");
        let holders: Vec<Port> = n
            .list(&Filters::new().add("fixed_ips", format!("ip_address={ip3}")))
            .await
            .unwrap();
        assert_eq!(holders.len(), 1, "{step}: {holders:?}");
    }
    let _ = docker_try(&["rm", "-f", &ct3]);
    // Docker finishes: the container goes, then the network.
    let _ = docker_try(&["rm", "-f", &ct]);
    docker(&["network", "rm", &net]);

    let ports: Vec<Port> = n
        .list(&Filters::new().add("network_id", &neutron_net))
        .await
        .unwrap();
    let ours: Vec<&Port> = ports
        .iter()
        .filter(|p| !p.device_owner.starts_with("network:"))
        .collect();
    assert!(ours.is_empty(), "{step}: ports left: {ours:?}");
    assert!(
        n.get::<Network>(&neutron_net)
            .await
            .unwrap_err()
            .is_not_found(),
        "{step}: network left"
    );
    let all: Vec<Port> = n.list(&Filters::new()).await.unwrap();
    let stray: Vec<String> = veths()
        .into_iter()
        .filter(|l| !before.contains(l))
        .filter(|l| l.len() == 14 && !all.iter().any(|p| p.id.starts_with(&l[3..])))
        .collect();
    assert!(stray.is_empty(), "{step}: veths left: {stray:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_each_step_of_a_lifecycle() {
    common::require_docker();
    let n = common::neutron().await;
    // RequestAddress #1 is the network's gateway; #2 is the container's.
    let steps = [
        ("IpamDriver.RequestAddress#2", "10.40.1.0/24"),
        ("NetworkDriver.CreateEndpoint", "10.40.2.0/24"),
        ("NetworkDriver.Join", "10.40.3.0/24"),
        ("NetworkDriver.ProgramExternalConnectivity", "10.40.4.0/24"),
    ];
    for (step, subnet) in steps {
        crash_at(&n, step, subnet).await;
    }
}

/// With the pool, CreateEndpoint answers before the endpoint's bookkeeping (device_id,
/// name, tags) is on its port; a kill between the two leaves a port known to be taken
/// only by its veth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_answer_and_the_bookkeeping() {
    common::require_docker();
    let n = common::neutron().await;
    crash_with(
        &n,
        ("KURYR_TEST_KILL_AT", "CreateEndpoint.bookkeeping"),
        "port_pool_size = 2\n",
        "10.40.5.0/24",
    )
    .await;
}
