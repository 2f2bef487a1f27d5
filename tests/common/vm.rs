//! A stand-in for the Nova VM of the nested drivers: its Neutron port on a new network and
//! its NIC, a veth end with the port's MAC.

use kuryr::neutron::{Network, Neutron, Port};
use serde_json::json;

use super::{ip, veth, LinkGuard};

/// The VM's NIC: a veth whose end has the VM port's MAC (all the drivers look at), up.
pub fn vm_nic(prefix: &str, vm: &Port) -> (String, LinkGuard) {
    let nic = format!("{prefix}{}", &vm.id[..8]);
    let guard = veth(&nic);
    ip(&["link", "set", &nic, "address", &vm.mac_address]);
    ip(&["link", "set", &nic, "up"]);
    (nic, guard)
}

/// A new Neutron network and, on it, the "VM's" port.
pub async fn vm_on_new_network(n: &Neutron, name: &str) -> (Network, Port) {
    let net: Network = n.create(json!({"name": name})).await.unwrap();
    let vm: Port = n
        .create(json!({"network_id": net.id, "name": "kuryr-test-vm-port"}))
        .await
        .unwrap();
    (net, vm)
}
