//! Open vSwitch binding end to end: the `scripts/devenv ovs` profile runs ovsdb-server,
//! ovs-vswitchd (userspace datapath, br-ovs with datapath_type=netdev) and
//! neutron-openvswitch-agent as its own host. A kuryr standing for that host gets ports
//! bound with `binding:vif_type = ovs`, plugs their veths into its bridge with the
//! `iface-id` Neutron's agent looks for, and two containers ping each other through OVS.

mod common;

use std::path::PathBuf;

use common::ovs::{agent_bridge_ports, external_id, ovs_env};
use common::{docker, docker_try, kuryr_network, run_container, unique, wait_until, Kuryr};
use kuryr::neutron::{Filters, Port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_on_ovs_bound_ports_ping_each_other() {
    common::require_docker();
    let (host, rundir) = ovs_env();
    let n = common::neutron().await;
    let plugin = unique("kuryr-ovs-");
    let socket = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    let conf = format!(
        "[DEFAULT]\nunix_socket = {}\nhost = {host}\ndebug = true\n\
         [neutron]\nauth_type = none\nendpoint = {}\nvif_plugging_is_fatal = true\nvif_plugging_timeout = 30\n",
        socket.display(),
        common::neutron_url()
    );
    // ovs-vsctl finds this ovsdb-server through OVS_RUNDIR.
    let k = Kuryr::at(socket)
        .conf(&conf)
        .envs(&[("OVS_RUNDIR", &rundir)])
        .start();

    let third = (uuid::Uuid::new_v4().as_bytes()[0] % 200) + 20;
    let net = unique("ovs-net-");
    kuryr_network(
        &plugin,
        &format!("10.216.{third}.0/24"),
        &format!("10.216.{third}.1"),
        &net,
    );
    let (a, b) = (unique("ovs-a-"), unique("ovs-b-"));
    run_container(&a, &net, &[]);
    run_container(&b, &net, &[]);
    let ip_b = common::container_ip(&b, &net);

    // Bound by Neutron's openvswitch mechanism driver for the OVS agent's host, plugged
    // into the agent bridge under the name and iface-id the agent looks for, and ACTIVE (the wait is
    // fatal in this config, so `docker run` succeeding already says so).
    let ports: Vec<Port> = n
        .list(&Filters::new().add("binding:host_id", &host))
        .await
        .unwrap();
    let ours: Vec<&Port> = ports
        .iter()
        .filter(|p| kuryr::driver::kuryr_made(p))
        .collect();
    assert_eq!(ours.len(), 2, "{ports:#?}\n{}", k.log_text());
    let on_bridge = agent_bridge_ports(&rundir);
    for p in &ours {
        assert_eq!(p.vif_type, "ovs", "{p:#?}");
        assert_eq!(p.status, "ACTIVE", "{p:#?}");
        let tap = kuryr::names::host_veth(&p.id);
        assert!(
            on_bridge.contains(&tap),
            "{tap} not on the agent bridge: {on_bridge:?}"
        );
        assert_eq!(external_id(&rundir, &tap, "iface-id"), p.id);
    }

    let pinged = wait_until(20, || {
        docker_try(&["exec", &a, "ping", "-c", "1", "-W", "1", &ip_b])
            .status
            .success()
            .then_some(())
    });
    assert!(
        pinged.is_some(),
        "{a} cannot reach {ip_b} through the agent bridge"
    );

    // Removal unplugs from the bridge and leaves no port.
    docker(&["rm", "-f", &a, &b]);
    docker(&["network", "rm", &net]);
    let on_bridge = agent_bridge_ports(&rundir);
    for p in &ours {
        let tap = kuryr::names::host_veth(&p.id);
        assert!(!on_bridge.contains(&tap), "{tap} left on the agent bridge");
    }
    let left: Vec<Port> = n
        .list(&Filters::new().add("binding:host_id", &host))
        .await
        .unwrap();
    assert!(
        left.iter().all(|p| !kuryr::driver::kuryr_made(p)),
        "{left:#?}"
    );
}
