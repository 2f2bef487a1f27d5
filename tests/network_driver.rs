//! The network driver over the plugin socket, without Docker: every handler called
//! twice gives the same answer and no duplicate, and a restarted kuryr finds what the
//! previous process made (everything lives in Neutron's tags).

mod common;

use common::cnm::hexid;
use common::Kuryr;
use kuryr::neutron::{Filters, Network, Port, Subnet};
use serde_json::{json, Value};

fn ok(k: &Kuryr, method: &str, body: &Value) -> Value {
    let (s, v) = k.call(method, body);
    assert_eq!(s, 200, "{method}: {v}");
    v
}

#[tokio::test]
async fn handlers_are_idempotent_and_survive_a_restart() {
    let n = common::neutron().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("k.sock");
    let mut k = Kuryr::at(sock.clone()).start();
    let (net_id, ep_id) = (hexid(), hexid());
    let cidr = "10.253.20.0/24";

    let pool = ok(&k, "IpamDriver.RequestPool", &json!({"Pool": cidr}));
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    let gw = json!({"PoolID": pool_id, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}});
    assert_eq!(
        ok(&k, "IpamDriver.RequestAddress", &gw)["Address"],
        "10.253.20.1/24"
    );
    let create_net = json!({"NetworkID": net_id, "IPv4Data": [{"AddressSpace": "x", "Pool": cidr, "Gateway": "10.253.20.1/24"}], "IPv6Data": [], "Options": {"com.docker.network.enable_ipv6": false, "com.docker.network.generic": {}}});
    ok(&k, "NetworkDriver.CreateNetwork", &create_net);
    ok(&k, "NetworkDriver.CreateNetwork", &create_net);
    let nets: Vec<Network> = n
        .list(&Filters::new().tags(&kuryr::names::id_tags(&net_id)))
        .await
        .unwrap();
    assert_eq!(nets.len(), 1, "CreateNetwork twice makes one network");
    let subnets: Vec<Subnet> = n
        .list(&Filters::new().add("network_id", &nets[0].id))
        .await
        .unwrap();
    assert_eq!(subnets.len(), 1);
    assert_eq!(
        subnets[0].gateway_ip.map(|g| g.to_string()).as_deref(),
        Some("10.253.20.1")
    );

    let mac = "02:42:0a:fd:14:05";
    let addr = ok(
        &k,
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": "", "Options": {"com.docker.network.endpoint.macaddress": mac}}),
    );
    let address = addr["Address"].as_str().unwrap().to_string();
    let create_ep = json!({"NetworkID": net_id, "EndpointID": ep_id, "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": mac}, "Options": {}});
    let first = ok(&k, "NetworkDriver.CreateEndpoint", &create_ep);
    // Docker gave the MAC: the answer must not repeat it (libnetwork would roll back).
    assert_eq!(first, json!({"Interface": {}}));
    assert_eq!(ok(&k, "NetworkDriver.CreateEndpoint", &create_ep), first);
    let ports: Vec<Port> = n
        .list(&Filters::new().tags(&kuryr::names::id_tags(&ep_id)))
        .await
        .unwrap();
    assert_eq!(ports.len(), 1, "one port for the endpoint");
    let port = &ports[0];
    assert_eq!(port.mac_address, mac);
    assert_eq!(port.device_id, ep_id);
    let tap = kuryr::names::host_veth(&port.id);
    assert_eq!(common::host_links(&tap), vec![tap.clone()], "one host veth");

    let join = json!({"NetworkID": net_id, "EndpointID": ep_id, "SandboxKey": "/var/run/docker/netns/0123456789ab", "Options": {}});
    let j = ok(&k, "NetworkDriver.Join", &join);
    assert_eq!(
        j["InterfaceName"]["SrcName"],
        kuryr::names::container_veth(&port.id)
    );
    assert_eq!(j["InterfaceName"]["DstPrefix"], "eth");
    assert_eq!(j["Gateway"], "10.253.20.1");
    assert_eq!(j["DisableGatewayService"], true);
    assert_eq!(ok(&k, "NetworkDriver.Join", &join), j);

    // Restart: a new process knows nothing but Neutron's tags.
    k.stop();
    let k = Kuryr::at(sock.clone()).start();
    assert_eq!(
        ok(&k, "NetworkDriver.Join", &join),
        j,
        "Join after a restart"
    );
    let info = ok(
        &k,
        "NetworkDriver.EndpointOperInfo",
        &json!({"NetworkID": net_id, "EndpointID": ep_id}),
    );
    assert!(info["Value"]["status"].is_string(), "{info}");
    // A CreateEndpoint replayed after the restart converges too.
    assert_eq!(ok(&k, "NetworkDriver.CreateEndpoint", &create_ep), first);
    assert_eq!(common::host_links(&tap).len(), 1);

    let ep = json!({"NetworkID": net_id, "EndpointID": ep_id});
    ok(&k, "NetworkDriver.Leave", &ep);
    ok(&k, "NetworkDriver.DeleteEndpoint", &ep);
    ok(&k, "NetworkDriver.DeleteEndpoint", &ep);
    assert!(common::host_links(&tap).is_empty(), "veth removed");
    let ip = address.split('/').next().unwrap();
    let rel = json!({"PoolID": pool_id, "Address": ip});
    ok(&k, "IpamDriver.ReleaseAddress", &rel);
    ok(&k, "IpamDriver.ReleaseAddress", &rel);
    assert!(n.get::<Port>(&port.id).await.unwrap_err().is_not_found());
    // Docker 20.10's order: IPAM first, then the driver; each twice.
    ok(
        &k,
        "IpamDriver.ReleaseAddress",
        &json!({"PoolID": pool_id, "Address": "10.253.20.1"}),
    );
    ok(&k, "IpamDriver.ReleasePool", &json!({"PoolID": pool_id}));
    ok(&k, "IpamDriver.ReleasePool", &json!({"PoolID": pool_id}));
    ok(
        &k,
        "NetworkDriver.DeleteNetwork",
        &json!({"NetworkID": net_id}),
    );
    ok(
        &k,
        "NetworkDriver.DeleteNetwork",
        &json!({"NetworkID": net_id}),
    );
    assert!(n
        .get::<Network>(&nets[0].id)
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn failed_create_network_leaves_nothing() {
    let n = common::neutron().await;
    let dir = tempfile::tempdir().unwrap();
    let k = Kuryr::at(dir.path().join("k.sock")).start();
    let net_id = hexid();
    // A named pool that does not exist: refused before anything is made.
    let (s, v) = k.call(
        "NetworkDriver.CreateNetwork",
        &json!({"NetworkID": net_id, "IPv4Data": [{"Pool": "10.253.21.0/24"}], "IPv6Data": [],
                "Options": {"com.docker.network.generic": {"neutron.pool.name": "no-such-pool"}}}),
    );
    assert_eq!(s, 404, "{v}");
    assert!(v["Err"].as_str().unwrap().contains("no-such-pool"));
    // An existing network asked with the wrong `shared`: the tags it got are taken back.
    let pre: Network = n
        .create(json!({"name": common::unique("users-"), "shared": false}))
        .await
        .unwrap();
    let (s, v) = k.call(
        "NetworkDriver.CreateNetwork",
        &json!({"NetworkID": net_id, "IPv4Data": [], "IPv6Data": [],
                "Options": {"com.docker.network.generic": {"neutron.net.uuid": pre.id, "neutron.net.shared": "true"}}}),
    );
    assert_eq!(s, 409, "{v}");
    let after: Network = n.get(&pre.id).await.unwrap();
    assert!(after.tags.is_empty(), "{:?}", after.tags);
    let tagged: Vec<Network> = n
        .list(&Filters::new().tags(&kuryr::names::id_tags(&net_id)))
        .await
        .unwrap();
    assert!(tagged.is_empty());
    n.delete::<Network>(&pre.id).await.unwrap();
}

/// An adopted port made for SR-IOV (`binding:vnic_type = direct`) is refused at
/// CreateEndpoint with a clear error and left as it was while the sriov port driver is
/// not enabled: a veth cannot serve it.
#[tokio::test]
async fn sriov_port_is_refused_and_left_as_it_was() {
    let n = common::neutron().await;
    let dir = tempfile::tempdir().unwrap();
    let k = Kuryr::at(dir.path().join("k.sock")).start();
    let (net_id, ep_id) = (hexid(), hexid());
    let cidr = "10.253.21.0/24";
    let pool = ok(&k, "IpamDriver.RequestPool", &json!({"Pool": cidr}));
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    let gw = json!({"PoolID": pool_id, "Address": "10.253.21.1", "Options": {"RequestAddressType": "com.docker.network.gateway"}});
    ok(&k, "IpamDriver.RequestAddress", &gw);
    ok(
        &k,
        "NetworkDriver.CreateNetwork",
        &json!({"NetworkID": net_id, "IPv4Data": [{"Pool": cidr, "Gateway": "10.253.21.1/24"}]}),
    );
    let sub: Vec<Subnet> = n
        .list(&Filters::new().add("subnetpool_id", &pool_id))
        .await
        .unwrap();
    let vf: Port = n
        .create(
            json!({"network_id": sub[0].network_id, "name": "sriov-port",
            "binding:vnic_type": "direct",
            "fixed_ips": [{"subnet_id": sub[0].id, "ip_address": "10.253.21.50"}]}),
        )
        .await
        .unwrap();
    let addr = json!({"PoolID": pool_id, "Address": "10.253.21.50", "Options": {}});
    ok(&k, "IpamDriver.RequestAddress", &addr);
    let (s, v) = k.call(
        "NetworkDriver.CreateEndpoint",
        &json!({"NetworkID": net_id, "EndpointID": ep_id,
            "Interface": {"Address": "10.253.21.50/24"}}),
    );
    assert_eq!(s, 409, "{v}");
    let err = v["Err"].as_str().unwrap_or("");
    assert!(
        err.contains("VNIC type direct") && err.contains("enabled_port_drivers"),
        "{v}"
    );
    let after: Port = n.get(&vf.id).await.unwrap();
    assert_eq!(
        (
            after.host_id.as_str(),
            after.device_owner.as_str(),
            after.device_id.as_str()
        ),
        ("", "", ""),
        "refused port was changed: {after:?}"
    );
    assert!(common::host_links(&kuryr::names::host_veth(&vf.id)).is_empty());

    let release = json!({"PoolID": pool_id, "Address": "10.253.21.50"});
    ok(&k, "IpamDriver.ReleaseAddress", &release);
    n.delete::<Port>(&vf.id).await.unwrap();
    ok(
        &k,
        "NetworkDriver.DeleteNetwork",
        &json!({"NetworkID": net_id}),
    );
    let gw_release = json!({"PoolID": pool_id, "Address": "10.253.21.1"});
    ok(&k, "IpamDriver.ReleaseAddress", &gw_release);
    ok(&k, "IpamDriver.ReleasePool", &json!({"PoolID": pool_id}));
}
