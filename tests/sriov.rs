//! The SR-IOV port driver against the real Neutron (ML2 sriovnicswitch, with the SR-IOV NIC
//! agent of `scripts/devenv sriov` alive as its own host) and the real kernel. No machine
//! here has a VF: the PCI tree is a sysfs made by the test (PF and VF netdevs are a veth
//! pair standing in), so a CreateEndpoint runs every step up to the kernel, which answers
//! "not supported" to programming a VF of a veth. What is checked: Neutron binds the port
//! `hw_veb` with the network's VLAN and kuryr programs VF 3 of the right PF with that VLAN
//! (the kernel parses the request and only then refuses it: EOPNOTSUPP, not EINVAL), a
//! refused or unbound port is given back as it was, what can be checked before Neutron
//! is touched is, and Join hands Docker the VF's netdev. The netlink request itself is
//! unit-tested in `host::netlink`, the sysfs lookup in `host::sriov`.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::cnm::{call, cnm_address, cnm_network, cnm_teardown, driver_with_sysfs, hexid, CnmNet};
use common::LinkGuard;
use kuryr::driver::Driver;
use kuryr::host::sriov::Sysfs;
use kuryr::names;
use kuryr::neutron::{Filters, Network, Neutron, Port, Subnet};
use serde_json::json;

/// The host the SR-IOV NIC agent reports as (`scripts/devenv env`).
fn sriov_host() -> String {
    std::env::var("KURYR_TEST_SRIOV_HOST")
        .unwrap_or_else(|_| format!("{}-sriov", kuryr::config::hostname()))
}

fn physnet() -> String {
    std::env::var("KURYR_TEST_SRIOV_PHYSNET").unwrap_or_else(|_| "kuryr-sriov".into())
}

/// A PCI tree with PF 0000:81:00.0 (netdev `pf`) and its VFs 0..3 at 0000:81:10.<n>; VF 3's
/// netdev is `vf`. The links are relative, as the kernel's are.
fn fake_sysfs(root: &Path, pf: &str, vf: &str) {
    let devs = root.join("bus/pci/devices");
    let pf_dir = devs.join("0000:81:00.0");
    std::fs::create_dir_all(pf_dir.join("net").join(pf)).unwrap();
    for n in 0..4 {
        let dir = devs.join(format!("0000:81:10.{n}"));
        std::fs::create_dir_all(dir.join("net")).unwrap();
        symlink("../0000:81:00.0", dir.join("physfn")).unwrap();
        symlink(
            format!("../0000:81:10.{n}"),
            pf_dir.join(format!("virtfn{n}")),
        )
        .unwrap();
    }
    std::fs::create_dir_all(devs.join("0000:81:10.3/net").join(vf)).unwrap();
    // class/net/<pf> is the netdev's directory; its `device` is the PCI function.
    symlink("../..", pf_dir.join("net").join(pf).join("device")).unwrap();
    std::fs::create_dir_all(root.join("class/net")).unwrap();
    symlink(
        format!("../../bus/pci/devices/0000:81:00.0/net/{pf}"),
        root.join("class/net").join(pf),
    )
    .unwrap();
}

/// Everything one test needs: a VLAN network on the SR-IOV physical network, the stand-in
/// PF/VF netdevs and their sysfs, a driver serving SR-IOV ports as `host`, and a Docker
/// network on it.
struct Setup {
    n: Neutron,
    net: Network,
    subnet: Subnet,
    d: Driver,
    c: CnmNet,
    pf: String,
    vf: String,
    sysfs: tempfile::TempDir,
    _links: LinkGuard,
}

/// `map_pf`: kuryr may pick VFs of the stand-in PF (`[sriov] physical_device_mappings`).
async fn setup(vlan: u32, host: &str, second_octet: u8, map_pf: bool) -> Setup {
    let n = common::neutron().await;
    let net: Network = n
        .create(json!({"name": common::unique("kuryr-sriov-"),
            "provider:network_type": "vlan",
            "provider:physical_network": physnet(),
            "provider:segmentation_id": vlan}))
        .await
        .unwrap();
    let pf = format!("ksr{}", &net.id[..8]);
    let links = common::veth(&pf);
    let vf = format!("{pf}p");
    let sysfs = tempfile::tempdir().unwrap();
    fake_sysfs(sysfs.path(), &pf, &vf);

    let mapping = if map_pf {
        format!("[sriov]\nphysical_device_mappings = {}:{pf}\n", physnet())
    } else {
        String::new()
    };
    let d = driver_with_sysfs(
        &format!(
            "[DEFAULT]\nhost = {host}\ndefault_port_driver = veth\nenabled_port_drivers = veth,sriov\n\
             [binding]\nenabled_drivers = veth,hw_veb\n{mapping}"
        ),
        Some(Sysfs::at(sysfs.path())),
    )
    .await;
    let c = cnm_network(&d, second_octet, &net.id).await;
    let subnet = n
        .list::<Subnet>(&Filters::new().add("network_id", &net.id))
        .await
        .unwrap()
        .remove(0);
    Setup {
        n,
        net,
        subnet,
        d,
        c,
        pf,
        vf,
        sysfs,
        _links: links,
    }
}

impl Setup {
    /// The user's SR-IOV port (`openstack port create --vnic-type direct
    /// --binding-profile pci_slot=...`), reserved for the container as `--ip` does.
    async fn vf_port(&mut self, pci_slot: Option<&str>) -> Port {
        let mut body = json!({"network_id": self.net.id, "name": "kuryr-test-vf",
            "binding:vnic_type": "direct",
            "fixed_ips": [{"subnet_id": self.subnet.id}]});
        if let Some(slot) = pci_slot {
            body["binding:profile"] = json!({"pci_slot": slot, "physical_network": physnet()});
        }
        let port: Port = self.n.create(body).await.unwrap();
        let ip = port.fixed_ips[0].ip_address.to_string();
        cnm_address(&self.d, &mut self.c, Some(&ip), None).await;
        self.n.get(&port.id).await.unwrap()
    }

    /// ReleaseAddress of the container's address (kuryr leaves the user's port alone).
    async fn release_address(&mut self) {
        let address = std::mem::take(&mut self.c.address);
        call(
            &self.d,
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": self.c.pool_id, "Address": address}),
        )
        .await
        .unwrap();
    }

    async fn create_endpoint(&self, ep: &str) -> Result<serde_json::Value, String> {
        self.c.create_endpoint(&self.d, ep, None).await
    }

    /// Docker's teardown, with the user deleting their port once Docker let go of it.
    async fn teardown(mut self, port: &Port) {
        if !self.c.address.is_empty() {
            self.release_address().await;
        }
        self.n.delete_if_exists::<Port>(&port.id).await.unwrap();
        cnm_teardown(&self.d, &self.c).await;
        self.n.delete::<Network>(&self.net.id).await.unwrap();
    }
}

/// What CreateEndpoint may change on a port, to compare before and after.
fn binding_of(p: &Port) -> (String, String, String, Vec<String>) {
    let mut tags = p.tags.clone();
    tags.sort();
    (
        p.host_id.clone(),
        p.device_owner.clone(),
        p.device_id.clone(),
        tags,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_port_is_bound_with_its_vlan_and_given_back_when_the_nic_refuses() {
    let mut s = setup(142, &sriov_host(), 219, false).await;
    let port = s.vf_port(Some("0000:81:10.3")).await;
    let before = binding_of(&port);
    let ep = hexid();

    let err = s.create_endpoint(&ep).await.unwrap_err();
    // Neutron bound it hw_veb with VLAN 142 (that is where the VLAN comes from), and kuryr
    // asked for VF 3 of the PF; the kernel understood the request and refused it.
    assert!(
        err.contains(&format!("set vf 3 (vlan 142) of {}", s.pf)),
        "{err}"
    );
    assert!(err.contains("Operation not supported"), "{err}");
    let after: Port = s.n.get(&port.id).await.unwrap();
    assert_eq!(binding_of(&after), before, "port not given back: {after:?}");

    // Docker's retry does the same and changes nothing either.
    let again = s.create_endpoint(&ep).await.unwrap_err();
    assert!(again.contains("set vf 3 (vlan 142)"), "{again}");
    let after: Port = s.n.get(&port.id).await.unwrap();
    assert_eq!(binding_of(&after), before);
    s.teardown(&port).await;
}

/// A host without an SR-IOV agent: Neutron answers binding_failed, which kuryr reports
/// with what to check, and the port is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_neutron_cannot_bind_here_is_given_back() {
    let mut s = setup(143, "kuryr-test-no-sriov-agent", 220, false).await;
    let port = s.vf_port(Some("0000:81:10.3")).await;
    let before = binding_of(&port);
    let err = s.create_endpoint(&hexid()).await.unwrap_err();
    assert!(err.contains("Neutron did not bind SR-IOV port"), "{err}");
    assert!(err.contains("binding_failed"), "{err}");
    assert!(err.contains("neutron-sriov-nic-agent"), "{err}");
    let after: Port = s.n.get(&port.id).await.unwrap();
    assert_eq!(binding_of(&after), before, "port not given back: {after:?}");
    s.teardown(&port).await;
}

/// A port without a PCI slot, or with one that is not on this host, is refused before
/// Neutron is asked to bind anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_that_cannot_be_served_are_refused_untouched() {
    let mut s = setup(144, &sriov_host(), 221, false).await;
    let no_slot = s.vf_port(None).await;
    let err = s.create_endpoint(&hexid()).await.unwrap_err();
    assert!(err.contains("no binding:profile pci_slot"), "{err}");
    let after: Port = s.n.get(&no_slot.id).await.unwrap();
    assert_eq!(binding_of(&after), binding_of(&no_slot));
    assert_eq!(after.vif_type, "unbound", "Neutron was asked to bind it");
    s.release_address().await;
    s.n.delete_if_exists::<Port>(&no_slot.id).await.unwrap();

    let elsewhere = s.vf_port(Some("0000:82:10.1")).await;
    let err = s.create_endpoint(&hexid()).await.unwrap_err();
    assert!(err.contains("PCI device 0000:82:10.1"), "{err}");
    let after: Port = s.n.get(&elsewhere.id).await.unwrap();
    assert_eq!(binding_of(&after), binding_of(&elsewhere));
    assert_eq!(after.vif_type, "unbound");
    s.teardown(&elsewhere).await;
}

/// Join hands Docker the VF's own netdev (Docker moves it into the container and names it
/// eth<n>); once it has left this namespace Join says so. DeleteEndpoint takes the
/// endpoint off the port, which stays the user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_hands_docker_the_vf_netdev() {
    let mut s = setup(145, &sriov_host(), 222, false).await;
    let port = s.vf_port(Some("0000:81:10.3")).await;
    let ep = hexid();
    // As a CreateEndpoint on a real VF leaves it: bound here, tagged for the endpoint.
    s.n.update::<Port>(
        &port.id,
        json!({"binding:host_id": sriov_host(), "device_owner": names::DEVICE_OWNER,
            "device_id": ep}),
    )
    .await
    .unwrap();
    let mut tags = port.tags.clone();
    tags.extend(names::id_tags(&ep));
    s.n.replace_tags::<Port>(&port.id, &tags).await.unwrap();

    let join = json!({"NetworkID": s.c.docker_net, "EndpointID": ep,
        "SandboxKey": "/var/run/docker/netns/kuryr-test", "Options": {}});
    let v = call(&s.d, "NetworkDriver.Join", join.clone())
        .await
        .unwrap();
    assert_eq!(v["InterfaceName"]["SrcName"], s.vf.as_str(), "{v}");
    assert_eq!(v["InterfaceName"]["DstPrefix"], "eth", "{v}");
    assert_eq!(
        v["Gateway"].as_str(),
        s.c.gateway.as_str().and_then(|g| g.split('/').next()),
        "{v}"
    );

    // The VF's netdev moved away (into a container, or its driver was unbound).
    std::fs::remove_dir(
        s.sysfs
            .path()
            .join("bus/pci/devices/0000:81:10.3/net")
            .join(&s.vf),
    )
    .unwrap();
    let err = call(&s.d, "NetworkDriver.Join", join).await.unwrap_err();
    assert!(
        err.contains("no network interface in this namespace"),
        "{err}"
    );

    s.c.delete_endpoint(&s.d, &ep).await.unwrap();
    let after: Port = s.n.get(&port.id).await.unwrap();
    assert!(
        !names::id_tags(&ep).iter().any(|t| after.tags.contains(t)),
        "endpoint tags left: {after:?}"
    );
    s.teardown(&port).await;
}

/// With `[sriov] physical_device_mappings`, a port made without a `pci_slot` gets a free
/// VF of the PF mapped to its network's physical network (as Nova picks one for a VM):
/// the only VF with a netdev here is picked and reaches the kernel with the network's
/// VLAN, a failure gives the `pci_slot` back, a VF another port bound here holds is not
/// picked, and DeleteEndpoint releases the VF kuryr picked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_vf_is_picked_claimed_and_given_back() {
    let mut s = setup(146, &sriov_host(), 224, true).await;
    let port = s.vf_port(None).await;
    let before = binding_of(&port);
    let err = s.create_endpoint(&hexid()).await.unwrap_err();
    assert!(
        err.contains(&format!("set vf 3 (vlan 146) of {}", s.pf)),
        "{err}"
    );
    let after: Port = s.n.get(&port.id).await.unwrap();
    assert_eq!(binding_of(&after), before, "port not given back: {after:?}");
    assert!(after.profile.get("pci_slot").is_none(), "{after:?}");

    // VF 3 held by another port bound to this host: nothing free, nothing changed.
    let holder: Port =
        s.n.create(
            json!({"network_id": s.net.id, "name": "kuryr-test-vf-holder",
            "binding:vnic_type": "direct", "binding:host_id": sriov_host(),
            "binding:profile": {"pci_slot": "0000:81:10.3", "physical_network": physnet()}}),
        )
        .await
        .unwrap();
    let err = s.create_endpoint(&hexid()).await.unwrap_err();
    assert!(err.contains(&format!("no free VF on {}", s.pf)), "{err}");
    let after: Port = s.n.get(&port.id).await.unwrap();
    assert_eq!(binding_of(&after), before);
    assert_eq!(after.vif_type, "unbound", "Neutron was asked to bind it");
    s.n.delete::<Port>(&holder.id).await.unwrap();

    // As a CreateEndpoint that picked VF 3 on a real NIC leaves the port.
    let ep = hexid();
    s.n.update::<Port>(
        &port.id,
        json!({"binding:host_id": sriov_host(), "device_owner": names::DEVICE_OWNER,
            "device_id": ep,
            "binding:profile": {"pci_slot": "0000:81:10.3", "physical_network": physnet()}}),
    )
    .await
    .unwrap();
    let mut tags = port.tags.clone();
    tags.extend(names::id_tags(&ep));
    tags.push(names::TAG_VF_PICKED.to_string());
    s.n.replace_tags::<Port>(&port.id, &tags).await.unwrap();
    s.c.delete_endpoint(&s.d, &ep).await.unwrap();
    let after: Port = s.n.get(&port.id).await.unwrap();
    assert_eq!(after.host_id, "", "{after:?}");
    assert!(after.profile.get("pci_slot").is_none(), "{after:?}");
    let mut left = after.tags.clone();
    left.sort();
    let mut want = port.tags.clone();
    want.sort();
    assert_eq!(left, want, "endpoint and picked-VF tags must go");
    s.teardown(&port).await;
}
