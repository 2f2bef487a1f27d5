//! The Docker managed (v2) plugin, built by contrib/docker-plugin/build from our binary,
//! enabled in the real dockerd and used for a network and a container.

mod common;

use common::{docker, docker_try};
use kuryr::neutron::{Filters, Port};

struct Remove(String, Vec<String>, Vec<String>);

impl Drop for Remove {
    fn drop(&mut self) {
        for c in &self.2 {
            let _ = docker_try(&["rm", "-f", c]);
        }
        for n in &self.1 {
            let _ = docker_try(&["network", "rm", n]);
        }
        let _ = docker_try(&["plugin", "disable", "-f", &self.0]);
        let _ = docker_try(&["plugin", "rm", "-f", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_plugin_serves_a_network() {
    common::require_docker();
    let n = common::neutron().await;
    let name = format!("{}:latest", common::unique("kuryrv2-"));
    let (net, ct) = (common::unique("kv2-"), common::unique("kv2c-"));
    let _cleanup = Remove(name.clone(), vec![net.clone()], vec![ct.clone()]);
    let _etc = common::managed_plugin(&name, "");
    let listed = docker(&["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]);
    assert!(listed.contains(&format!("{name} true")), "{listed}");

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
        "10.36.0.0/24",
        "--gateway",
        "10.36.0.1",
        &net,
    ]);
    common::run_container(&ct, &net, &[]);
    let ip = common::container_ip(&ct, &net);
    let ports: Vec<Port> = n
        .list(&Filters::new().add("fixed_ips", format!("ip_address={ip}")))
        .await
        .unwrap();
    assert_eq!(ports.len(), 1, "a Neutron port holds {ip}");
    assert_eq!(ports[0].host_id, common::binding_host());
    assert_eq!(ports[0].vif_type, common::bound_vif_type());
    // Data, not just an address: over OVN's userspace datapath only with the tx checksum
    // offload kuryr turned off inside the plugin.
    let peer = common::unique("kv2p-");
    common::run_container(&peer, &net, &[]);
    let got = common::tcp_bytes(&ct, &ip, &peer, 2_000_000);
    docker(&["rm", "-f", &peer]);
    assert_eq!(
        got, 2_000_000,
        "TCP between two containers of the plugin's network"
    );
    docker(&["rm", "-f", &ct]);
    docker(&["network", "rm", &net]);
    let left: Vec<Port> = n
        .list(&Filters::new().add("fixed_ips", format!("ip_address={ip}")))
        .await
        .unwrap();
    assert!(left.is_empty());
}
