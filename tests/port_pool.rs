//! The port pool (`port_pool_size`): ports made ahead on a kuryr network serve container
//! starts without a port create, are refilled, survive a restart and are removed with
//! the network.

mod common;

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Filters, Network, Neutron, Port};

async fn pool_ports(n: &Neutron, net: &str) -> Vec<Port> {
    n.list(
        &Filters::new()
            .add("name", "kuryr-pool-port")
            .add("network_id", net),
    )
    .await
    .unwrap()
}

async fn wait_pool(n: &Neutron, net: &str, want: usize) -> Vec<Port> {
    for _ in 0..100 {
        let p = pool_ports(n, net).await;
        if p.len() == want {
            return p;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("pool of {net} never reached {want} ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_serves_starts_without_a_port_create() {
    common::require_docker();
    let n = common::neutron().await;
    let p = common::unique("kt");
    let mut k = Kuryr::plugin(&p).extra("port_pool_size = 2\n").start();
    let (net, c1, c2) = (
        common::unique("kp-"),
        common::unique("kpa-"),
        common::unique("kpb-"),
    );
    common::kuryr_network(&p, "10.37.0.0/24", "10.37.0.1", &net);
    let docker_id = common::network_id(&net);
    let nets: Vec<Network> = n
        .list(&Filters::new().tags(&kuryr::names::id_tags(&docker_id)))
        .await
        .unwrap();
    let neutron_net = nets[0].id.clone();
    let ready = wait_pool(&n, &neutron_net, 2).await;
    let ready_ids: Vec<String> = ready.iter().map(|p| p.id.clone()).collect();

    common::run_container(&c1, &net, &[]);
    let ip = common::container_ip(&c1, &net);
    let port: Port = n
        .list::<Port>(&Filters::new().add("fixed_ips", format!("ip_address={ip}")))
        .await
        .unwrap()
        .remove(0);
    assert!(
        ready_ids.contains(&port.id),
        "the container got a pool port, made before `docker run`"
    );
    assert_eq!(
        port.name, "kuryr-unbound-port",
        "claimed ports lose the pool name"
    );
    assert_eq!(port.host_id, kuryr::config::hostname());
    let mac = docker(&["exec", &c1, "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(port.mac_address, mac, "the port took Docker's MAC");
    // Refilled in the background.
    wait_pool(&n, &neutron_net, 2).await;

    // A restarted kuryr finds the pool again and uses it.
    k.stop();
    let _k = Kuryr::plugin(&p).extra("port_pool_size = 2\n").start();
    let before: Vec<String> = pool_ports(&n, &neutron_net)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    common::run_container(&c2, &net, &[]);
    let ip2 = common::container_ip(&c2, &net);
    let port2: Port = n
        .list::<Port>(&Filters::new().add("fixed_ips", format!("ip_address={ip2}")))
        .await
        .unwrap()
        .remove(0);
    assert!(
        before.contains(&port2.id),
        "after a restart the pool is read back and used"
    );
    wait_pool(&n, &neutron_net, 2).await;
    assert!(common::wait_until(10, || {
        docker_try(&["exec", &c1, "ping", "-c", "1", "-W", "1", &ip2])
            .status
            .success()
            .then_some(())
    })
    .is_some());

    docker(&["rm", "-f", &c1, &c2]);
    docker(&["network", "rm", &net]);
    assert!(
        n.get::<Network>(&neutron_net)
            .await
            .unwrap_err()
            .is_not_found(),
        "network removed with its pool"
    );
}
