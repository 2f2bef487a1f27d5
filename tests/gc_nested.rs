//! `kuryr gc` inside a VM (nested drivers) against the real Neutron: what a kuryr that
//! died between CreateEndpoint and DeleteEndpoint leaves hangs off the VM's port — the
//! container's address pair (macvlan) or its subport on the VM's trunk (vlan) — plus the
//! container port and, for macvlan, the sub-interface. gc reports exactly that, leaves
//! the VM's own pairs alone, and `--apply` removes it. Alone in its binary: gc looks at
//! the whole host.

mod common;

use common::cnm::{cnm_address, cnm_network, cnm_teardown, driver, driver_conf, hexid};
use common::vm::{vm_nic, vm_on_new_network};
use kuryr::names;
use kuryr::neutron::{Filters, Network, Port, Trunk};
use serde_json::json;

fn gc(conf: &str, apply: bool) -> String {
    common::kuryr_gc(conf, if apply { &["--apply"] } else { &[] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_takes_what_a_dead_nested_kuryr_left_on_the_vm_port() {
    common::require_docker();
    let n = common::neutron().await;

    // macvlan: a whole CreateEndpoint, then the process is gone (no DeleteEndpoint).
    let (net, vm) = vm_on_new_network(&n, &common::unique("kuryr-gcn-")).await;
    // The VM's own pair (a VIP, say): not kuryr's, never touched.
    let vip = "10.99.99.99";
    n.update::<Port>(
        &vm.id,
        json!({"allowed_address_pairs": [{"ip_address": vip}]}),
    )
    .await
    .unwrap();
    let (nic, _g) = vm_nic("kgn", &vm);
    let sections = format!(
        "[DEFAULT]\ndefault_port_driver = nested\nenabled_port_drivers = nested\n\
         [binding]\ndriver = macvlan\nlink_iface = {nic}\n"
    );
    let d = driver(&sections).await;
    let mut c = cnm_network(&d, 223, &net.id).await;
    cnm_address(&d, &mut c, None, None).await;
    let ep = hexid();
    c.create_endpoint(&d, &ep, None).await.unwrap();
    drop(d);
    let port = n
        .list::<Port>(&Filters::new().tags(&names::id_tags(&ep)))
        .await
        .unwrap()
        .remove(0);
    let ip = port.fixed_ips[0].ip_address.to_string();
    let sub = names::container_veth(&port.id);
    assert_eq!(common::host_links(&sub).len(), 1);

    let conf = driver_conf(&sections);
    let report = gc(&conf, false);
    assert!(
        report.contains(&format!("allowed address pair {ip} of VM port {}", vm.id)),
        "{report}"
    );
    assert!(report.contains(&format!("port {}", port.id)), "{report}");
    assert!(
        report.contains(&format!("host interface {sub}")),
        "{report}"
    );
    assert!(!report.contains(vip), "{report}");
    // A report changes nothing.
    let vm_now: Port = n.get(&vm.id).await.unwrap();
    assert_eq!(vm_now.allowed_address_pairs.len(), 2);

    let applied = gc(&conf, true);
    assert!(applied.contains("removed"), "{applied}");
    let vm_now: Port = n.get(&vm.id).await.unwrap();
    let left: Vec<&str> = vm_now
        .allowed_address_pairs
        .iter()
        .map(|p| p.ip_address.as_str())
        .collect();
    assert_eq!(left, vec![vip], "only the VM's own pair stays");
    assert!(n.get::<Port>(&port.id).await.unwrap_err().is_not_found());
    assert!(common::host_links(&sub).is_empty());
    assert!(
        !gc(&conf, false).contains(vm.id.as_str()),
        "a second pass finds nothing of the VM"
    );

    // vlan: the container port is a subport of the VM's trunk, its endpoint gone.
    let trunk: Trunk = n
        .create(json!({"port_id": vm.id, "name": common::unique("kuryr-gcn-")}))
        .await
        .unwrap();
    let vlan_sections = format!(
        "[DEFAULT]\ndefault_port_driver = vlan\nenabled_port_drivers = vlan\n\
         [binding]\ndriver = vlan\nlink_iface = {nic}\n"
    );
    let d = driver(&vlan_sections).await;
    let ep2 = hexid();
    let mut tags = vec![names::TAG_KURYR_PORT.to_string()];
    tags.extend(names::id_tags(&ep2));
    let cport: Port = n
        .create(json!({"network_id": net.id, "name": names::UNBOUND_PORT_NAME}))
        .await
        .unwrap();
    n.replace_tags::<Port>(&cport.id, &tags).await.unwrap();
    let seg = d.attach_subport(&cport.id).await.unwrap();
    drop(d);
    let vconf = driver_conf(&vlan_sections);
    let report = gc(&vconf, false);
    assert!(
        report.contains(&format!("subport {} of trunk {}", cport.id, trunk.id)),
        "{report}"
    );
    assert!(report.contains(&format!("port {}", cport.id)), "{report}");
    gc(&vconf, true);
    let t: Trunk = n.get(&trunk.id).await.unwrap();
    assert!(t.sub_ports.is_empty(), "subport {seg} left: {t:?}");
    assert!(n.get::<Port>(&cport.id).await.unwrap_err().is_not_found());

    // A kuryr started again, and Docker removing the network: nothing of it is left.
    n.delete::<Trunk>(&trunk.id).await.unwrap();
    let d = driver(&sections).await;
    cnm_teardown(&d, &c).await;
    n.delete::<Port>(&vm.id).await.unwrap();
    n.delete::<Network>(&net.id).await.unwrap();
}
