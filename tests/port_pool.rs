//! The port pool (`port_pool_size`): ports made ahead on a kuryr network serve container
//! starts without a port create, are refilled, survive a restart and are removed with
//! the network.

mod common;

use common::{docker, docker_try, Kuryr};
use kuryr::neutron::{Filters, Network, Neutron, Port};

use common::pool_ports;

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
    let neutron_net = common::neutron_network_of(&n, &docker_id).await;
    let ready = wait_pool(&n, &neutron_net, 2).await;
    let ready_ids: Vec<String> = ready.iter().map(|p| p.id.to_string()).collect();

    common::run_container(&c1, &net, &[]);
    let ip = common::container_ip(&c1, &net);
    let port: Port = n
        .list::<Port>(&Filters::new().add("fixed_ips", format!("ip_address={ip}")))
        .await
        .unwrap()
        .remove(0);
    assert!(
        ready_ids.contains(&port.id.to_string()),
        "the container got a pool port, made before `docker run`"
    );
    // Named after its endpoint, as the reference names it, once the bookkeeping that
    // follows the start is written.
    let ep = docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").EndpointID}}}}"),
        &c1,
    ]);
    let named = common::wait_until(10, || {
        let rt = tokio::runtime::Handle::current();
        let p: Port = tokio::task::block_in_place(|| rt.block_on(n.get(&port.id))).ok()?;
        (p.name == kuryr::names::endpoint_port_name(&ep)).then_some(p)
    });
    let port = named.expect("claimed ports lose the pool name");
    assert_eq!(port.device_id, ep);
    assert_eq!(port.host_id, common::binding_host());
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
        .map(|p| p.id.into())
        .collect();
    common::run_container(&c2, &net, &[]);
    let ip2 = common::container_ip(&c2, &net);
    let port2: Port = n
        .list::<Port>(&Filters::new().add("fixed_ips", format!("ip_address={ip2}")))
        .await
        .unwrap()
        .remove(0);
    assert!(
        before.contains(&port2.id.to_string()),
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

/// A pooled start makes no Neutron request in RequestAddress and CreateEndpoint (counted
/// by kuryr per libnetwork method), the calls Docker serialises per network; Join writes
/// the endpoint's bookkeeping, so the port is the container's once `docker run` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_start_asks_neutron_nothing_under_dockers_lock_and_names_the_port_by_its_end() {
    common::require_docker();
    let n = common::neutron().await;
    let p = common::unique("kt");
    let k = Kuryr::plugin(&p).extra("port_pool_size = 3\n").start();
    let (net, c1) = (common::unique("kp0-"), common::unique("kp0a-"));
    common::kuryr_network(&p, "10.36.0.0/24", "10.36.0.1", &net);
    let docker_id = common::network_id(&net);
    let neutron_net = common::neutron_network_of(&n, &docker_id).await;
    wait_pool(&n, &neutron_net, 3).await;
    let start = ["IpamDriver.RequestAddress", "NetworkDriver.CreateEndpoint"];
    let before: Vec<u64> = start.iter().map(|m| k.call_requests(m)).collect();
    common::run_container(&c1, &net, &[]);
    let after: Vec<u64> = start.iter().map(|m| k.call_requests(m)).collect();
    assert_eq!(
        before, after,
        "Neutron requests on the start path {start:?}"
    );
    let ip = common::container_ip(&c1, &net);
    let ep = docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").EndpointID}}}}"),
        &c1,
    ]);
    // The moment `docker run` returns, the port is found as the reference's is: by the
    // endpoint's port name and the compute:kuryr tag (Join wrote them).
    let found: Vec<Port> = n
        .list(
            &Filters::new()
                .add("name", kuryr::names::endpoint_port_name(&ep))
                .tags(&[kuryr::names::TAG_KURYR_PORT]),
        )
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        1,
        "no port by the endpoint's name and tag: {found:?}"
    );
    assert_eq!(found[0].device_id, ep);
    assert!(kuryr::names::has_id_tags(&found[0].tags, &ep));
    assert!(
        found[0]
            .fixed_ips
            .iter()
            .any(|f| f.ip_address.to_string() == ip),
        "{found:?}"
    );
    docker(&["rm", "-f", &c1]);
    docker(&["network", "rm", &net]);
    assert!(n
        .get::<Network>(&neutron_net)
        .await
        .unwrap_err()
        .is_not_found());
}

/// Idle, kuryr asks Neutron nothing: with a network, a running container and a full
/// pool, no request in a 20 s window (four of the netavark watch's sweeps; kuryr has no
/// other timer), so an idle host costs Neutron nothing however many there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kuryr_asks_neutron_nothing() {
    common::require_docker();
    let n = common::neutron().await;
    let p = common::unique("kt");
    let k = Kuryr::plugin(&p).extra("port_pool_size = 2\n").start();
    let (net, c1) = (common::unique("kpi-"), common::unique("kpia-"));
    common::kuryr_network(&p, "10.35.0.0/24", "10.35.0.1", &net);
    let neutron_net = common::neutron_network_of(&n, &common::network_id(&net)).await;
    common::run_container(&c1, &net, &[]);
    wait_pool(&n, &neutron_net, 2).await;
    // The refill's last requests may still be on their way: settled when two reads 2 s
    // apart agree.
    let settled = common::wait_until(30, || {
        let a = k.neutron_requests();
        std::thread::sleep(std::time::Duration::from_secs(2));
        (k.neutron_requests() == a).then_some(a)
    })
    .expect("kuryr's Neutron requests never settled after the start");
    std::thread::sleep(std::time::Duration::from_secs(20));
    let idle = k.neutron_requests() - settled;
    docker(&["rm", "-f", &c1]);
    docker(&["network", "rm", &net]);
    assert_eq!(idle, 0, "Neutron requests while idle: {}", k.stats());
}
