//! Nested containers (kuryr inside a VM), end to end with Docker and Neutron: a veth
//! stands in for the VM's NIC (its host end is the VM port's `tap`, bound by the real
//! linuxbridge agent; its other end, with the VM port's MAC, is `link_iface`). A kuryr with
//! `default_port_driver = nested` and `[binding] driver = macvlan` gives a container a
//! macvlan of that NIC and the VM port the container's address pair; a container on an
//! ordinary (veth) kuryr network pings it through the VM's NIC.

mod common;

use std::process::Command;

use common::{
    docker, docker_try, ip, kuryr_network, network_id, run_container, unique, wait_until, Kuryr,
    LinkGuard,
};
use kuryr::neutron::{Filters, Network, Port};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_macvlan_container_talks_through_the_vm_port() {
    common::require_docker();
    let n = common::neutron().await;
    let third = (uuid::Uuid::new_v4().as_bytes()[0] % 200) + 20;
    let cidr = format!("10.215.{third}.0/24");
    let gw = format!("10.215.{third}.1");

    // The "hypervisor" side: an ordinary kuryr network and a container on it.
    let plain = unique("kuryr-np-");
    let _k = Kuryr::plugin(&plain).start();
    let net1 = unique("nested-plain-");
    kuryr_network(&plain, &cidr, &gw, &net1);
    let c1 = unique("nested-c1-");
    run_container(&c1, &net1, &[]);
    let docker_net = network_id(&net1);
    let neutron_net = common::neutron_network_of(&n, &docker_net).await;

    // The "VM": a Neutron port bound to this host, wired by the agent through its tap;
    // the other end of that veth is the VM's NIC, with the port's MAC.
    let host = hostname();
    let vm: Port = n
        .create(
            json!({"network_id": neutron_net, "name": "kuryr-test-vm-port",
            "device_owner": "compute:kuryr-test", "binding:host_id": host}),
        )
        .await
        .unwrap();
    let tap = kuryr::names::host_veth(&vm.id);
    let nic = format!("kvm{}", &vm.id[..8]);
    ip(&["link", "add", &tap, "type", "veth", "peer", "name", &nic]);
    let _nic = LinkGuard(tap.clone());
    ip(&["link", "set", &nic, "address", &vm.mac_address]);
    ip(&["link", "set", &nic, "up"]);
    ip(&["link", "set", &tap, "up"]);
    // As Nova's os-vif does for a linuxbridge port: the tap joins the network's bridge.
    ip(&[
        "link",
        "set",
        &tap,
        "master",
        &format!("brq{}", &neutron_net[..11]),
    ]);
    let active = wait_until(30, || {
        let rt = tokio::runtime::Handle::current();
        let p: Port = tokio::task::block_in_place(|| rt.block_on(n.get(&vm.id))).ok()?;
        (p.status == "ACTIVE").then_some(())
    });
    assert!(active.is_some(), "the agent did not wire the VM port's tap");

    // The kuryr inside the "VM".
    let nplug = unique("kuryr-nn-");
    let k = Kuryr::plugin(&nplug)
        .extra(&format!(
            "default_port_driver = kuryr_libnetwork.port_driver.drivers.nested\n\
             enabled_port_drivers = veth, nested\n[binding]\n\
             driver = kuryr.lib.binding.drivers.macvlan\nlink_iface = {nic}\n"
        ))
        .start();
    let net2 = unique("nested-vm-");
    common::kuryr_network_with(
        &nplug,
        &net2,
        &[
            "--subnet",
            &cidr,
            "--gateway",
            &gw,
            "-o",
            &format!("neutron.net.uuid={neutron_net}"),
        ],
    );
    let c2 = unique("nested-c2-");
    run_container(&c2, &net2, &[]);
    let c2_ip = common::container_ip(&c2, &net2);
    let c2_mac = docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net2}\").MacAddress}}}}"),
        &c2,
    ]);

    // The container's port stays unbound; the VM port carries its address pair.
    let ports: Vec<Port> = n
        .list(&Filters::new().add("fixed_ips", format!("ip_address={c2_ip}")))
        .await
        .unwrap();
    assert_eq!(ports.len(), 1, "{ports:#?}");
    assert_eq!(
        ports[0].host_id, "",
        "nested container port must not be bound"
    );
    assert!(kuryr::driver::kuryr_made(&ports[0]));
    let vm_now: Port = n.get(&vm.id).await.unwrap();
    assert!(
        vm_now
            .allowed_address_pairs
            .iter()
            .any(|p| p.ip_address == c2_ip
                && p.mac_address.as_deref().map(str::to_ascii_lowercase)
                    == Some(c2_mac.to_ascii_lowercase())),
        "VM port lacks the container's pair: {:?}\n{}",
        vm_now.allowed_address_pairs,
        k.log_text()
    );
    assert!(
        common::host_links(&kuryr::names::host_veth(&ports[0].id)).is_empty(),
        "a nested endpoint has no host veth"
    );

    // Through the VM's NIC: c1 (veth, on the bridge) and c2 (macvlan of the NIC).
    let pinged = wait_until(20, || {
        docker_try(&["exec", &c1, "ping", "-c", "1", "-W", "1", &c2_ip])
            .status
            .success()
            .then_some(())
    });
    assert!(
        pinged.is_some(),
        "c1 cannot reach the nested container {c2_ip}\n{}",
        diagnostics(&[&tap, &nic])
    );

    // Removal: the pair leaves the VM port, the container's port goes.
    docker(&["rm", "-f", &c2]);
    let vm_after: Port = n.get(&vm.id).await.unwrap();
    assert!(
        !vm_after
            .allowed_address_pairs
            .iter()
            .any(|p| p.ip_address == c2_ip),
        "pair left on the VM port: {:?}",
        vm_after.allowed_address_pairs
    );
    let left: Vec<Port> = n
        .list(&Filters::new().add("fixed_ips", format!("ip_address={c2_ip}")))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:#?}");
    docker(&["network", "rm", &net2]);

    // The "hypervisor" side goes too.
    n.delete::<Port>(&vm.id).await.unwrap();
    docker(&["rm", "-f", &c1]);
    docker(&["network", "rm", &net1]);
    assert!(n
        .get::<Network>(&neutron_net)
        .await
        .is_err_and(|e| e.is_not_found()));
}

fn hostname() -> String {
    let out = Command::new("hostname").output().expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What the bridge, ebtables and the interfaces look like, for a failure message.
fn diagnostics(links: &[&str]) -> String {
    let mut out = String::new();
    let mut show = |prog: &str, args: &[&str]| {
        if let Ok(o) = Command::new(prog).args(args).output() {
            out.push_str(&format!(
                "$ {prog} {}\n{}{}\n",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    };
    show("bridge", &["link"]);
    show("ebtables", &["-t", "nat", "-L"]);
    for l in links {
        show("ip", &["-d", "link", "show", l]);
    }
    out
}
