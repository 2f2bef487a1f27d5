//! The nested VLAN port driver against the real Neutron (trunk service plugin): the VM
//! port is a trunk parent, container ports become subports with free segmentation ids
//! (ids already on the trunk are never handed out, also after a restart), and detach
//! frees them. The host side needs 802.1Q sub-interfaces; where the kernel has no 8021q
//! (as on the CI machines), CreateEndpoint must fail cleanly and leave no subport;
//! where it has, the VLAN sub-interface must carry the subport's id. The netlink request
//! itself is checked by unit tests in `host::netlink`. On ML2/OVN, the subport becomes a
//! child of the VM's logical port with its VLAN tag. Nested ipvlan's Neutron side (the
//! VM port's pair with the VM's MAC) is tested the same way.

mod common;

use std::process::Command;

use common::cnm::{cnm_address, cnm_network, cnm_teardown, driver, hexid};
use common::vm::{vm_nic, vm_on_new_network};
use kuryr::driver::Driver;
use kuryr::neutron::{Network, Neutron, Port, Trunk};
use serde_json::json;

/// The vlan port driver on `nic`.
async fn vlan_driver(nic: &str) -> Driver {
    driver(&format!(
        "[DEFAULT]\ndefault_port_driver = kuryr_libnetwork.port_driver.drivers.vlan\n\
         enabled_port_drivers = vlan\n[binding]\ndriver = kuryr.lib.binding.drivers.vlan\n\
         link_iface = {nic}\n"
    ))
    .await
}

async fn subports(n: &Neutron, trunk: &str) -> Vec<(String, u32)> {
    let t: Trunk = n.get(trunk).await.unwrap();
    t.sub_ports
        .iter()
        .map(|s| (s.port_id.clone(), s.segmentation_id.unwrap_or(0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subports_get_free_segmentation_ids_and_go_again() {
    let n = common::neutron().await;
    let name = common::unique("kuryr-vlan-");
    let (net, vm) = vm_on_new_network(&n, &name).await;
    // An id already in use before kuryr starts.
    let other: Port = n
        .create(json!({"network_id": net.id, "name": "kuryr-test-other-subport"}))
        .await
        .unwrap();
    let trunk: Trunk = n
        .create(json!({"port_id": vm.id, "name": name,
            "sub_ports": [{"port_id": other.id, "segmentation_type": "vlan", "segmentation_id": 1}]}))
        .await
        .unwrap();
    let (nic, _g) = vm_nic("kvl", &vm);

    let c1: Port = n.create(json!({"network_id": net.id})).await.unwrap();
    let c2: Port = n.create(json!({"network_id": net.id})).await.unwrap();

    let d = vlan_driver(&nic).await;
    assert_eq!(d.attach_subport(&c1.id).await.unwrap(), 2, "1 is taken");
    // libnetwork retries: the same port keeps its id.
    assert_eq!(d.attach_subport(&c1.id).await.unwrap(), 2);
    let mut on_trunk = subports(&n, &trunk.id).await;
    on_trunk.sort();
    let mut want = vec![(other.id.to_string(), 1), (c1.id.to_string(), 2)];
    want.sort();
    assert_eq!(on_trunk, want);

    // On ML2/OVN the trunk driver makes the subport a child of the VM's logical port
    // (OVN's container-in-VM ports: parent_name and the VLAN tag), which is what lets
    // the VM's tagged frames reach it.
    if common::on_ovn() {
        let sub: Port = n.get(&c1.id).await.unwrap();
        assert_eq!(
            sub.profile.get("parent_name").and_then(|v| v.as_str()),
            Some(vm.id.as_str()),
            "{:?}",
            sub.profile
        );
        assert_eq!(
            sub.profile.get("tag").and_then(|v| v.as_u64()),
            Some(2),
            "{:?}",
            sub.profile
        );
    }

    // A restart reads the ids back from the trunk: 1 and 2 stay taken.
    drop(d);
    let d = vlan_driver(&nic).await;
    assert_eq!(d.attach_subport(&c2.id).await.unwrap(), 3);
    d.detach_subport(&c1.id).await.unwrap();
    d.detach_subport(&c1.id).await.unwrap();
    assert!(!subports(&n, &trunk.id)
        .await
        .iter()
        .any(|(p, _)| *p == c1.id));
    // The freed id is handed out again.
    assert_eq!(d.attach_subport(&c1.id).await.unwrap(), 2);
    d.detach_subport(&c1.id).await.unwrap();
    d.detach_subport(&c2.id).await.unwrap();

    // A whole CreateEndpoint through the driver: subport, then the VLAN sub-interface.
    let ep = hexid();
    let mut c = cnm_network(&d, 217, &net.id).await;
    cnm_address(&d, &mut c, None, Some("02:42:0a:d9:00:05")).await;
    let created = c.create_endpoint(&d, &ep, Some("02:42:0a:d9:00:05")).await;
    let ports: Vec<Port> = n
        .list(&kuryr::neutron::Filters::new().tags(&kuryr::names::id_tags(&ep)))
        .await
        .unwrap();
    let kernel_has_8021q = created.is_ok();
    if kernel_has_8021q {
        let port = &ports[0];
        let sub = subports(&n, &trunk.id).await;
        let seg = sub.iter().find(|(p, _)| *p == port.id).map(|(_, s)| *s);
        assert!(seg.is_some(), "endpoint port is not a subport: {sub:?}");
        let out = Command::new("ip")
            .args([
                "-d",
                "link",
                "show",
                &kuryr::names::container_veth(&port.id),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("vlan protocol 802.1Q id {}", seg.unwrap_or(0))),
            "{text}"
        );
        c.delete_endpoint(&d, &ep).await.unwrap();
    } else {
        // No 8021q here: a clear host error, and the subport attached first is gone again.
        // The kernel parsed the request and refused the kind (EOPNOTSUPP): a malformed
        // request would be EINVAL, and fail here.
        let err = created.unwrap_err();
        assert!(err.contains("create vlan"), "{err}");
        assert!(err.contains("Operation not supported"), "{err}");
    }
    let sub = subports(&n, &trunk.id).await;
    assert_eq!(
        sub,
        vec![(other.id.to_string(), 1)],
        "subports left: {sub:?}"
    );

    cnm_teardown(&d, &c).await;
    n.delete::<Trunk>(&trunk.id).await.unwrap();
    for p in [&vm.id, &other.id, &c1.id, &c2.id] {
        n.delete::<Port>(p).await.unwrap();
    }
    n.delete::<Network>(&net.id).await.unwrap();
}

/// Nested ipvlan: the VM port's pair carries the container's IP with the VM port's own MAC
/// (an ipvlan shares its parent's MAC). Where the kernel has no ipvlan module, the
/// failed CreateEndpoint takes the pair off again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipvlan_pairs_use_the_vm_mac_and_are_rolled_back() {
    let n = common::neutron().await;
    let (net, vm) = vm_on_new_network(&n, &common::unique("kuryr-ipvlan-")).await;
    let (nic, _g) = vm_nic("kvi", &vm);

    let d = driver(&format!(
        "[DEFAULT]\ndefault_port_driver = nested\nenabled_port_drivers = nested\n\
         [binding]\ndriver = ipvlan\nlink_iface = {nic}\n"
    ))
    .await;
    let ep = hexid();
    let mut c = cnm_network(&d, 218, &net.id).await;
    cnm_address(&d, &mut c, None, None).await;
    let bare = c.address.split('/').next().unwrap_or_default().to_string();
    let created = c.create_endpoint(&d, &ep, None).await;
    let vm_now: Port = n.get(&vm.id).await.unwrap();
    let pair = vm_now
        .allowed_address_pairs
        .iter()
        .find(|p| p.ip_address == bare);
    match &created {
        Ok(_) => {
            let mac = pair.and_then(|p| p.mac_address.clone()).unwrap_or_default();
            assert_eq!(
                mac.to_ascii_lowercase(),
                vm.mac_address.to_ascii_lowercase()
            );
            c.delete_endpoint(&d, &ep).await.unwrap();
            let vm_after: Port = n.get(&vm.id).await.unwrap();
            assert!(vm_after.allowed_address_pairs.is_empty());
        }
        Err(e) => {
            // No ipvlan module: EOPNOTSUPP for a request the kernel parsed (a malformed
            // one would be EINVAL).
            assert!(e.contains("create ipvlan"), "{e}");
            assert!(e.contains("Operation not supported"), "{e}");
            assert!(
                pair.is_none(),
                "pair left after a failed CreateEndpoint: {vm_now:?}"
            );
        }
    }
    cnm_teardown(&d, &c).await;
    n.delete::<Port>(&vm.id).await.unwrap();
    n.delete::<Network>(&net.id).await.unwrap();
}
