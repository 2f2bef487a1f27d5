//! The unit tier of the CNM-to-Neutron mapping: every libnetwork method of both drivers
//! through the real router, against the in-memory Neutron and the recording fake host
//! (`crate::testkit`). Each test asserts the Neutron requests a call makes (kind and
//! order) and what it does on the host; no root, no service, no network needed. The same
//! behaviour against the real Neutron, kernel and dockerd is the integration tier's
//! (tests/, `cargo test --features integration`).

use serde_json::{json, Value};

use crate::names;
use crate::testkit::{FakeHost, Fault, MemoryNeutron, TestDriver};

const NET: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const EP: &str = "e1e2e3e4e5e6e7e8e9f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405ab";
const EP2: &str = "a1a2a3a4a5a6a7a8a9b0b1b2b3b4b5b6b7b8b9babbbcbdbebf000102030405ab";
const MAC: &str = "02:42:0a:0a:00:05";

fn pool_req(cidr: &str) -> Value {
    json!({"AddressSpace": "", "Pool": cidr, "SubPool": "", "Options": {}, "V6": false})
}

fn net_req(id: &str, cidr: &str, gw: &str, opts: Value) -> Value {
    json!({"NetworkID": id, "Options": {"com.docker.network.generic": opts},
        "IPv4Data": [{"AddressSpace": "", "Pool": cidr, "Gateway": gw}], "IPv6Data": []})
}

fn ep_req(ep: &str, ip: &str, mac: &str) -> Value {
    json!({"NetworkID": NET, "EndpointID": ep, "Options": {},
        "Interface": {"Address": ip, "AddressIPv6": "", "MacAddress": mac}})
}

fn ep_ref(ep: &str) -> Value {
    json!({"NetworkID": NET, "EndpointID": ep, "Options": {}})
}

/// What Docker does before a container: RequestPool, the gateway, CreateNetwork.
/// Returns the pool id.
async fn network(t: &TestDriver, cidr: &str, gw: &str) -> String {
    network_with(t, cidr, gw, json!({})).await
}

/// As `network`, with these CreateNetwork options (`-o`).
async fn network_with(t: &TestDriver, cidr: &str, gw: &str, opts: Value) -> String {
    let pool = t.ok("IpamDriver.RequestPool", &pool_req(cidr)).await;
    let pool_id = pool["PoolID"].as_str().unwrap_or_default().to_string();
    t.ok(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": "",
            "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
    )
    .await;
    t.ok(
        "NetworkDriver.CreateNetwork",
        &net_req(NET, cidr, &format!("{gw}/24"), opts),
    )
    .await;
    pool_id
}

/// RequestAddress + CreateEndpoint, as for `docker run`; the container's address.
async fn endpoint(t: &TestDriver, pool_id: &str, ep: &str, mac: &str) -> String {
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "",
                "Options": {"com.docker.network.endpoint.macaddress": mac}}),
        )
        .await;
    let addr = a["Address"].as_str().unwrap_or_default().to_string();
    t.ok("NetworkDriver.CreateEndpoint", &ep_req(ep, &addr, mac))
        .await;
    addr
}

/// RequestAddress of any address of the pool, as for a container; the address.
async fn any_address(t: &TestDriver, pool_id: &str) -> String {
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
        )
        .await;
    a["Address"].as_str().unwrap_or_default().to_string()
}

/// ReleaseAddress, as Docker sends it when a container goes.
async fn release(t: &TestDriver, pool_id: &str, addr: &str) {
    t.ok(
        "IpamDriver.ReleaseAddress",
        &json!({"PoolID": pool_id, "Address": addr}),
    )
    .await;
}

fn ports(t: &TestDriver) -> Vec<Value> {
    t.neutron.all("ports")
}

fn port_of(t: &TestDriver, ip: &str) -> Value {
    let ip = ip.split('/').next().unwrap_or_default();
    ports(t)
        .into_iter()
        .find(|p| p["fixed_ips"][0]["ip_address"] == ip)
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn capabilities_and_activate_make_no_request() {
    let t = TestDriver::new("").await;
    let a = t.ok("Plugin.Activate", &json!({})).await;
    assert_eq!(a["Implements"], json!(["NetworkDriver", "IpamDriver"]));
    let c = t.ok("NetworkDriver.GetCapabilities", &json!({})).await;
    assert_eq!(c["Scope"], "local");
    // Docker 28+ asks GwAllocCheck before a network; older engines ignore the field.
    assert_eq!(c["GwAllocChecker"], true);
    let i = t.ok("IpamDriver.GetCapabilities", &json!({})).await;
    // Docker makes no MAC: the container takes its port's.
    assert_eq!(i["RequiresMACAddress"], false);
    let s = t.ok("IpamDriver.GetDefaultAddressSpaces", &json!({})).await;
    assert_eq!(s["LocalDefaultAddressSpace"], "no_address_space");
    for m in [
        "NetworkDriver.DiscoverNew",
        "NetworkDriver.DiscoverDelete",
        "NetworkDriver.FreeNetwork",
    ] {
        assert_eq!(t.ok(m, &json!({})).await, json!({}));
    }
    let alloc = t
        .ok(
            "NetworkDriver.AllocateNetwork",
            &json!({"Options": {"a": "b"}}),
        )
        .await;
    assert_eq!(alloc["Options"], json!({"a": "b"}));
    assert!(t.take_requests().is_empty());
}

/// GwAllocCheck (Docker 28+): a family whose adopted Neutron subnet has no gateway is
/// skipped, so Docker records none; kuryr's own subnets and those with a gateway keep
/// Docker's reservation. Options naming no subnet make no request.
#[tokio::test]
async fn gw_alloc_check_skips_the_families_whose_adopted_subnet_has_no_gateway() {
    let t = TestDriver::new("").await;
    let net = t.neutron.seed("networks", json!({"name": "users"}));
    let net_id = net["id"].as_str().unwrap_or_default();
    let no_gw = t.neutron.seed(
        "subnets",
        json!({"network_id": net_id, "name": "l2-only", "ip_version": 4,
            "cidr": "10.40.0.0/24", "gateway_ip": null}),
    );
    let with_gw = t.neutron.seed(
        "subnets",
        json!({"network_id": net_id, "name": "routed", "ip_version": 4,
            "cidr": "10.41.0.0/24", "gateway_ip": "10.41.0.1"}),
    );
    t.neutron.seed(
        "subnets",
        json!({"network_id": net_id, "name": "l2-only-v6", "ip_version": 6,
            "cidr": "fd00:40::/64", "gateway_ip": null}),
    );
    let check = |generic: Value| {
        json!({"Options": {"com.docker.network.enable_ipv4": true,
            "com.docker.network.enable_ipv6": true, "com.docker.network.generic": generic}})
    };
    let a = t
        .ok(
            "NetworkDriver.GwAllocCheck",
            &check(json!({"neutron.net.uuid": net_id})),
        )
        .await;
    assert_eq!(a, json!({"SkipIPv4": false, "SkipIPv6": false}));
    assert!(
        t.take_requests().is_empty(),
        "no subnet named, nothing asked"
    );
    let id = |s: &Value| s["id"].as_str().unwrap_or_default().to_string();
    let a = t
        .ok(
            "NetworkDriver.GwAllocCheck",
            &check(
                json!({"neutron.subnet.uuid": id(&no_gw), "neutron.subnet.v6.name": "l2-only-v6"}),
            ),
        )
        .await;
    assert_eq!(a, json!({"SkipIPv4": true, "SkipIPv6": true}));
    let a = t
        .ok(
            "NetworkDriver.GwAllocCheck",
            &check(json!({"neutron.subnet.name": "routed", "neutron.subnet.v6.name": "l2-only"})),
        )
        .await;
    // A v4 subnet named as the v6 one is not the v6 family's.
    assert_eq!(a, json!({"SkipIPv4": false, "SkipIPv6": false}));
    let a = t
        .ok(
            "NetworkDriver.GwAllocCheck",
            &check(json!({"neutron.subnet.uuid": id(&with_gw)})),
        )
        .await;
    assert_eq!(a["SkipIPv4"], false);
    // A subnet that does not exist is CreateNetwork's error to report, not this call's.
    let a = t
        .ok(
            "NetworkDriver.GwAllocCheck",
            &check(json!({"neutron.subnet.uuid": "0b5f53a6-3a2c-4d56-9b0e-5d0f4c1a2b3c"})),
        )
        .await;
    assert_eq!(a["SkipIPv4"], false);
    let (status, v) = t
        .call(
            "NetworkDriver.GwAllocCheck",
            &check(json!({"neutron.subnet.uuid": "not-a-uuid"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["Err"]
            .as_str()
            .unwrap_or_default()
            .contains("neutron.subnet.uuid"),
        "{v}"
    );
}

/// An IPv6-only network (Docker 28's `--ipv4=false --ipv6`: IPv4Data empty) gets one v6
/// subnet, with the address and RA modes its options ask for; a mode Neutron does not
/// know is refused before anything is made.
#[tokio::test]
async fn an_ipv6_only_network_gets_one_v6_subnet_with_the_asked_modes() {
    let t = TestDriver::new("").await;
    let pool = t
        .ok(
            "IpamDriver.RequestPool",
            &json!({"AddressSpace": "", "Pool": "fd00:28:1::/64", "SubPool": "", "Options": {}, "V6": true}),
        )
        .await;
    assert_eq!(pool["Pool"], "fd00:28:1::/64");
    let v6_net = |generic: Value| {
        json!({"NetworkID": NET, "IPv4Data": [],
            "IPv6Data": [{"AddressSpace": "", "Pool": "fd00:28:1::/64", "Gateway": "fd00:28:1::1/64"}],
            "Options": {"com.docker.network.enable_ipv4": false, "com.docker.network.enable_ipv6": true,
                "com.docker.network.generic": generic}})
    };
    t.take_requests();
    let (status, v) = t
        .call(
            "NetworkDriver.CreateNetwork",
            &v6_net(json!({"neutron.subnet.v6.address_mode": "eui64"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["Err"].as_str().unwrap_or_default().contains("slaac"),
        "{v}"
    );
    assert!(t.take_requests().is_empty(), "refused before any request");
    t.ok(
        "NetworkDriver.CreateNetwork",
        &v6_net(json!({"neutron.subnet.v6.address_mode": "dhcpv6-stateful",
            "neutron.subnet.v6.ra_mode": "dhcpv6-stateful"})),
    )
    .await;
    let subnets = t.neutron.all("subnets");
    assert_eq!(subnets.len(), 1, "{subnets:?}");
    assert_eq!(subnets[0]["ip_version"], 6);
    assert_eq!(subnets[0]["cidr"], "fd00:28:1::/64");
    assert_eq!(subnets[0]["gateway_ip"], "fd00:28:1::1");
    assert_eq!(subnets[0]["ipv6_address_mode"], "dhcpv6-stateful");
    assert_eq!(subnets[0]["ipv6_ra_mode"], "dhcpv6-stateful");
}

#[tokio::test]
async fn request_pool_makes_a_kuryr_subnetpool_once() {
    let t = TestDriver::new("").await;
    let a = t
        .ok("IpamDriver.RequestPool", &pool_req("10.10.0.0/24"))
        .await;
    assert_eq!(a["Pool"], "10.10.0.0/24");
    assert_eq!(
        t.take_requests(),
        ["GET subnetpools", "POST subnetpools"],
        "look the pool up by name, then make it"
    );
    let pools = t.neutron.all("subnetpools");
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0]["name"], "kuryrPool-10.10.0.0/24");
    assert_eq!(pools[0]["id"], a["PoolID"]);
    // A retry (libnetwork retries) is answered from memory, with the same pool.
    let b = t
        .ok("IpamDriver.RequestPool", &pool_req("10.10.0.0/24"))
        .await;
    assert_eq!(a, b);
    assert!(t.take_requests().is_empty());
}

#[tokio::test]
async fn request_pool_bad_input_is_400_and_touches_nothing() {
    let t = TestDriver::new("").await;
    for (body, needle) in [
        (json!({"Pool": "300.1.1.0/24"}), "Pool"),
        (json!({"Pool": "", "SubPool": "10.0.0.0/24"}), "SubPool"),
        (
            json!({"Pool": "10.0.0.0/24", "SubPool": "10.1.0.0/24"}),
            "not inside",
        ),
        (json!({"Pool": "10.0.0.0/24", "V6": true}), "IPv6"),
    ] {
        let (s, v) = t.call("IpamDriver.RequestPool", &body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(
            v["Err"].as_str().unwrap_or_default().contains(needle),
            "{v}"
        );
    }
    assert!(t.take_requests().is_empty());
}

#[tokio::test]
async fn create_network_makes_a_tagged_network_and_subnet() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let nets = t.neutron.all("networks");
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0]["name"], names::network_name(NET));
    let tags: Vec<String> = serde_json::from_value(nets[0]["tags"].clone()).unwrap_or_default();
    // The reference's two id tags, and the host that made it (for `kuryr gc`).
    let mut want = names::id_tags(NET);
    want.push(names::host_tag(crate::testkit::HOST));
    assert_eq!(tags, want);
    let subnets = t.neutron.all("subnets");
    assert_eq!(subnets.len(), 1);
    assert_eq!(subnets[0]["subnetpool_id"], pool_id.as_str());
    assert_eq!(subnets[0]["gateway_ip"], "10.10.0.1");
    assert_eq!(subnets[0]["name"], "kuryr-subnet-10.10.0.0/24");
    // A retried CreateNetwork finds the network (cache) and makes nothing.
    t.take_requests();
    t.ok(
        "NetworkDriver.CreateNetwork",
        &net_req(NET, "10.10.0.0/24", "10.10.0.1/24", json!({})),
    )
    .await;
    assert!(t.take_requests().is_empty());
    assert_eq!(t.neutron.count("networks"), 1);
}

#[tokio::test]
async fn create_network_failing_half_way_undoes_what_it_made() {
    let t = TestDriver::new("").await;
    t.ok("IpamDriver.RequestPool", &pool_req("10.10.0.0/24"))
        .await;
    // The subnet create fails after the network and its tags were made.
    t.neutron.inject(Fault::once("POST", "/v2.0/subnets", 500));
    let (s, v) = t
        .call(
            "NetworkDriver.CreateNetwork",
            &net_req(NET, "10.10.0.0/24", "10.10.0.1/24", json!({})),
        )
        .await;
    assert_eq!(s, 500, "{v}");
    assert_eq!(t.neutron.count("networks"), 0, "the network was not undone");
    assert_eq!(t.neutron.count("subnets"), 0);
    // Docker retries: this time it works.
    t.ok(
        "NetworkDriver.CreateNetwork",
        &net_req(NET, "10.10.0.0/24", "10.10.0.1/24", json!({})),
    )
    .await;
    assert_eq!(t.neutron.count("networks"), 1);
}

#[tokio::test]
async fn adopted_network_gets_tags_and_keeps_its_own() {
    let t = TestDriver::new("").await;
    let own = t
        .neutron
        .seed("networks", json!({"name": "user-net", "tags": ["mine"]}));
    t.ok("IpamDriver.RequestPool", &pool_req("10.20.0.0/24"))
        .await;
    t.ok(
        "NetworkDriver.CreateNetwork",
        &net_req(
            NET,
            "10.20.0.0/24",
            "10.20.0.1/24",
            json!({"neutron.net.name": "user-net"}),
        ),
    )
    .await;
    let n = &t.neutron.all("networks")[0];
    let tags: Vec<String> = serde_json::from_value(n["tags"].clone()).unwrap_or_default();
    assert!(tags.contains(&"mine".to_string()));
    assert!(tags.contains(&names::existing_net_tag(NET)));
    assert!(names::has_id_tags(&tags, NET));
    // DeleteNetwork gives it back: our tags and our subnet go, the network stays.
    t.ok("NetworkDriver.DeleteNetwork", &json!({"NetworkID": NET}))
        .await;
    let n = &t.neutron.all("networks")[0];
    assert_eq!(n["id"], own["id"]);
    assert_eq!(n["tags"], json!(["mine"]));
    assert_eq!(t.neutron.count("subnets"), 0);
}

#[tokio::test]
async fn unknown_network_option_names_are_a_clear_err_before_anything_is_made() {
    let t = TestDriver::new("").await;
    t.ok("IpamDriver.RequestPool", &pool_req("10.20.0.0/24"))
        .await;
    t.take_requests();
    let (s, v) = t
        .call(
            "NetworkDriver.CreateNetwork",
            &net_req(
                NET,
                "10.20.0.0/24",
                "10.20.0.1/24",
                json!({"neutron.net.name": "nope"}),
            ),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    assert!(v["Err"].as_str().unwrap_or_default().contains("nope"));
    assert!(
        t.take_requests().iter().all(|r| r.starts_with("GET")),
        "only lookups before the answer"
    );
    assert_eq!(t.neutron.count("networks"), 0);
}

#[tokio::test]
async fn a_container_lifecycle_plugs_binds_and_cleans_up() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    t.take_requests();

    // RequestAddress: one request, a port created bound to this host. Docker asks no
    // MAC (RequiresMACAddress is false).
    let addr = any_address(&t, &pool_id).await;
    assert!(
        addr.starts_with("10.10.0.") && addr.ends_with("/24"),
        "{addr}"
    );
    assert_eq!(t.take_requests(), ["POST ports"]);
    let p = port_of(&t, &addr);
    assert_eq!(p["name"], names::UNBOUND_PORT_NAME);
    assert_eq!(p["binding:host_id"], crate::testkit::HOST);
    let mac = p["mac_address"].as_str().unwrap_or_default().to_string();

    // CreateEndpoint: nothing on the start path; the container takes the port's MAC;
    // the endpoint's bookkeeping follows the answer.
    let ce = t
        .ok("NetworkDriver.CreateEndpoint", &ep_req(EP, &addr, ""))
        .await;
    assert_eq!(ce, json!({"Interface": {"MacAddress": mac}}));
    let id = p["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        t.host.calls(),
        [format!("plug {} bridge", names::host_veth(&id))]
    );
    assert!(t.host.links().contains(&names::container_veth(&id)));
    t.driver.background.settle(&id).await;
    let mut reqs = t.take_requests();
    reqs.sort();
    assert_eq!(
        reqs,
        ["PUT ports", "PUT ports/tags"],
        "the bookkeeping, after the answer"
    );
    let p = port_of(&t, &addr);
    assert_eq!(p["binding:host_id"], crate::testkit::HOST);
    assert_eq!(p["device_owner"], names::DEVICE_OWNER);
    assert_eq!(p["device_id"], EP);
    assert_eq!(
        p["name"],
        names::endpoint_port_name(EP),
        "named as the reference names it"
    );
    let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap_or_default();
    assert!(names::has_id_tags(&tags, EP));

    // Join and EndpointOperInfo answer from what CreateEndpoint learnt.
    let j = t
        .ok(
            "NetworkDriver.Join",
            &json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/var/run/docker/netns/x"}),
        )
        .await;
    assert_eq!(j["InterfaceName"]["SrcName"], names::container_veth(&id));
    assert_eq!(j["InterfaceName"]["DstPrefix"], "eth");
    assert_eq!(j["Gateway"], "10.10.0.1");
    assert_eq!(j["DisableGatewayService"], true);
    let info = t.ok("NetworkDriver.EndpointOperInfo", &ep_ref(EP)).await;
    assert_eq!(info["Value"]["status"], "ACTIVE");
    assert!(
        t.take_requests().is_empty(),
        "Join and EndpointOperInfo asked Neutron"
    );

    // Leave, DeleteEndpoint (veth goes), ReleaseAddress (port goes).
    t.ok("NetworkDriver.Leave", &ep_ref(EP)).await;
    t.host.clear_calls();
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    assert_eq!(
        t.host.calls(),
        [format!("unplug {}", names::host_veth(&id))]
    );
    assert!(t.host.links().is_empty());
    assert!(
        t.take_requests().is_empty(),
        "DeleteEndpoint of a kuryr port asks nothing"
    );
    release(&t, &pool_id, &addr).await;
    assert_eq!(t.take_requests(), ["DELETE ports"]);
    assert_eq!(t.neutron.count("ports"), 0);

    // The network and the pool go with Docker's DeleteNetwork and ReleasePool.
    t.ok("NetworkDriver.DeleteNetwork", &json!({"NetworkID": NET}))
        .await;
    t.ok("IpamDriver.ReleasePool", &json!({"PoolID": pool_id}))
        .await;
    for c in ["networks", "subnets", "subnetpools", "ports"] {
        assert_eq!(t.neutron.count(c), 0, "{c} left");
    }
}

#[tokio::test]
async fn create_endpoint_is_idempotent() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let addr = endpoint(&t, &pool_id, EP, MAC).await;
    t.take_requests();
    t.host.clear_calls();
    // libnetwork retries: the second call finds the bound, tagged port and changes nothing
    // in Neutron; the veth is made again so the endpoint converges.
    t.ok("NetworkDriver.CreateEndpoint", &ep_req(EP, &addr, MAC))
        .await;
    assert!(t.take_requests().is_empty());
    assert_eq!(t.neutron.count("ports"), 1);
    assert_eq!(t.host.links().len(), 2);
}

/// dockerd restarted: a container started with `--ip` can ask for its address, and get
/// its endpoint made, before the endpoint of before the restart is deleted and its
/// address released. That late delete and release belong to the old endpoint: the port
/// and veth now serve the new one and stay.
#[tokio::test]
async fn an_address_taken_again_survives_the_old_endpoints_late_release() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let req = json!({"PoolID": pool_id, "Address": "10.10.0.10", "Options": {}});
    let a = t.ok("IpamDriver.RequestAddress", &req).await;
    let addr = a["Address"].as_str().unwrap_or_default().to_string();
    t.ok("NetworkDriver.CreateEndpoint", &ep_req(EP, &addr, ""))
        .await;
    let id = port_of(&t, &addr)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    t.driver.background.settle(&id).await;

    let again = t.ok("IpamDriver.RequestAddress", &req).await;
    assert_eq!(again["Address"], addr.as_str());
    t.ok("NetworkDriver.CreateEndpoint", &ep_req(EP2, &addr, ""))
        .await;
    t.driver.background.settle(&id).await;
    t.host.clear_calls();
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    release(&t, &pool_id, &addr).await;
    assert!(t.host.calls().is_empty(), "{:?}", t.host.calls());
    assert!(t.host.links().contains(&names::container_veth(&id)));
    assert_eq!(t.neutron.count("ports"), 1);

    // The new endpoint's own delete and release still clean up.
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP2)).await;
    release(&t, &pool_id, &addr).await;
    assert!(t.host.links().is_empty(), "{:?}", t.host.links());
    assert_eq!(t.neutron.count("ports"), 0);
}

#[tokio::test]
async fn create_endpoint_whose_plug_fails_gives_the_port_back() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "",
                "Options": {"com.docker.network.endpoint.macaddress": MAC}}),
        )
        .await;
    let addr = a["Address"].as_str().unwrap_or_default().to_string();
    let before = port_of(&t, &addr);
    t.host.fail("plug", 1);
    let (s, v) = t
        .call("NetworkDriver.CreateEndpoint", &ep_req(EP, &addr, MAC))
        .await;
    assert_eq!(s, 500, "{v}");
    let after = port_of(&t, &addr);
    for k in ["binding:host_id", "device_owner", "device_id", "tags"] {
        assert_eq!(after[k], before[k], "{k} not restored");
    }
    assert!(t.host.links().is_empty());
}

#[tokio::test]
async fn create_endpoint_whose_binding_update_fails_leaves_the_host_untouched() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let addr = user_port_address(&t, &pool_id, "10.10.0.50").await;
    // The user's port is bound on the start path (one update): it fails.
    t.neutron.inject(Fault::once("PUT", "/v2.0/ports/", 500));
    let (s, v) = t
        .call("NetworkDriver.CreateEndpoint", &ep_req(EP, &addr, ""))
        .await;
    assert_eq!(s, 500, "{v}");
    assert!(t.host.calls().is_empty(), "plugged after a failed binding");
    let p = port_of(&t, &addr);
    assert_eq!(p["binding:host_id"], "");
    let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap_or_default();
    assert!(
        !names::has_id_tags(&tags, EP),
        "endpoint tags left: {tags:?}"
    );
}

/// A user's port holding `ip` (made beforehand, `docker run --ip`), reserved by IPAM.
async fn user_port_address(t: &TestDriver, pool_id: &str, ip: &str) -> String {
    let subnet = t.neutron.all("subnets")[0]["id"].clone();
    let net = t.neutron.all("networks")[0]["id"].clone();
    t.neutron.seed(
        "ports",
        json!({"name": "web", "network_id": net,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}]}),
    );
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": ip, "Options": {}}),
        )
        .await;
    a["Address"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn endpoint_calls_validate_before_anything() {
    let t = TestDriver::new("").await;
    let cases = [
        (
            "NetworkDriver.CreateEndpoint",
            ep_req(EP, "nope", MAC),
            "Interface.Address",
        ),
        (
            "NetworkDriver.CreateEndpoint",
            ep_req(EP, "10.0.0.2/24", "zz"),
            "MacAddress",
        ),
        (
            "NetworkDriver.CreateEndpoint",
            ep_req(EP, "", ""),
            "not provided",
        ),
        (
            "NetworkDriver.Join",
            json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "../x"}),
            "SandboxKey",
        ),
        (
            "NetworkDriver.DeleteEndpoint",
            json!({"NetworkID": NET, "EndpointID": "../x"}),
            "EndpointID",
        ),
        (
            "NetworkDriver.EndpointOperInfo",
            json!({"NetworkID": "x", "EndpointID": EP}),
            "NetworkID",
        ),
        (
            "NetworkDriver.Leave",
            json!({"NetworkID": NET, "EndpointID": "1"}),
            "EndpointID",
        ),
        (
            "NetworkDriver.ProgramExternalConnectivity",
            json!({"NetworkID": "n", "EndpointID": EP}),
            "NetworkID",
        ),
        (
            "NetworkDriver.RevokeExternalConnectivity",
            json!({"NetworkID": NET, "EndpointID": "e"}),
            "EndpointID",
        ),
        (
            "NetworkDriver.DeleteNetwork",
            json!({"NetworkID": "zz"}),
            "NetworkID",
        ),
        (
            "NetworkDriver.CreateNetwork",
            json!({"NetworkID": 5}),
            "invalid request body",
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID": "not-a-uuid"}),
            "PoolID",
        ),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": uuid::Uuid::new_v4().to_string(), "Address": "x"}),
            "Address",
        ),
        ("IpamDriver.ReleasePool", json!({}), "PoolID"),
    ];
    for (m, body, needle) in cases {
        let (s, v) = t.call(m, &body).await;
        assert_eq!(s, 400, "{m} {body}: {v}");
        assert!(
            v["Err"].as_str().unwrap_or_default().contains(needle),
            "{m}: {v}"
        );
    }
    assert!(t.take_requests().is_empty(), "bad input reached Neutron");
    assert!(t.host.calls().is_empty(), "bad input reached the host");
}

#[tokio::test]
async fn calls_on_unknown_objects_answer_without_changing_anything() {
    let t = TestDriver::new("").await;
    // Deletes of what is already gone succeed (Docker retries, or another host deleted it).
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    t.ok("NetworkDriver.DeleteNetwork", &json!({"NetworkID": NET}))
        .await;
    let pool = uuid::Uuid::new_v4().to_string();
    t.ok("IpamDriver.ReleasePool", &json!({"PoolID": pool}))
        .await;
    t.ok(
        "IpamDriver.ReleaseAddress",
        &json!({"PoolID": pool, "Address": "10.0.0.9"}),
    )
    .await;
    assert_eq!(
        t.ok("NetworkDriver.EndpointOperInfo", &ep_ref(EP)).await,
        json!({"Value": {}})
    );
    // Join of an endpoint that does not exist is a 404 with a reason.
    let (s, v) = t
        .call(
            "NetworkDriver.Join",
            &json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/x"}),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    assert!(t.take_requests().iter().all(|r| r.starts_with("GET")));
    assert!(t.host.calls().is_empty());
}

/// ProgramExternalConnectivity of endpoint EP with these exposed ports.
async fn expose(t: &TestDriver, ports: Value) {
    let opts = json!({ "com.docker.network.endpoint.exposedports": ports });
    t.ok(
        "NetworkDriver.ProgramExternalConnectivity",
        &json!({"NetworkID": NET, "EndpointID": EP, "Options": opts}),
    )
    .await;
}

#[tokio::test]
async fn exposed_ports_get_a_security_group_that_goes_with_the_endpoint() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let addr = endpoint(&t, &pool_id, EP, MAC).await;
    expose(
        &t,
        json!([{"Proto": 6, "Port": 80}, {"Proto": 6, "Port": 81}, {"Proto": 17, "Port": 53}]),
    )
    .await;
    let groups = t.neutron.all("security-groups");
    assert_eq!(groups.len(), 1);
    let port = port_of(&t, &addr);
    let port_id = port["id"].as_str().unwrap_or_default();
    assert_eq!(groups[0]["name"], names::exposed_sg_name(port_id));
    assert_eq!(port["security_groups"][0], groups[0]["id"]);
    // tcp 80-81 and udp 53, each for IPv4 and IPv6.
    assert_eq!(t.neutron.count("security-group-rules"), 4);
    t.ok("NetworkDriver.RevokeExternalConnectivity", &ep_ref(EP))
        .await;
    assert_eq!(t.neutron.count("security-groups"), 0);
    assert_eq!(port_of(&t, &addr)["security_groups"], json!([]));
}

/// Docker's rollback of a failed start sends no RevokeExternalConnectivity: DeleteEndpoint
/// takes the group off all the same.
#[tokio::test]
async fn an_exposed_group_goes_with_its_endpoint_without_a_revoke() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let addr = endpoint(&t, &pool_id, EP, MAC).await;
    expose(&t, json!([{"Proto": 6, "Port": 80}])).await;
    assert_eq!(t.neutron.count("security-groups"), 1);
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    assert_eq!(t.neutron.count("security-groups"), 0);
    assert_eq!(t.neutron.count("security-group-rules"), 0);
    assert_eq!(port_of(&t, &addr)["security_groups"], json!([]));
}

/// DeleteEndpoint runs every step of its teardown: an unplug that fails does not keep the
/// exposed group on the port; the call reports the failure, Docker's retry finishes, and
/// the address's release that follows a forced delete still gives the port back.
#[tokio::test]
async fn delete_endpoint_runs_every_step_and_a_retry_finishes() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let addr = endpoint(&t, &pool_id, EP, MAC).await;
    expose(&t, json!([{"Proto": 6, "Port": 80}])).await;
    t.host.fail("unplug", 1);
    let (status, v) = t.call("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(
        t.neutron.count("security-groups"),
        0,
        "the group's step ran after the failed unplug"
    );
    assert_eq!(port_of(&t, &addr)["security_groups"], json!([]));
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    assert!(t.host.links().is_empty(), "{:?}", t.host.links());
    release(&t, &pool_id, &addr).await;
    assert_eq!(t.neutron.count("ports"), 0);
}

/// `docker rm -f`: Docker releases the address even when DeleteEndpoint failed; the port
/// goes all the same (the failed endpoint does not hold it as a live one).
#[tokio::test]
async fn a_forced_release_after_a_failed_delete_gives_the_port_back() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let addr = endpoint(&t, &pool_id, EP, MAC).await;
    t.host.fail("unplug", 1);
    let (status, v) = t.call("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    assert_eq!(status, 500, "{v}");
    release(&t, &pool_id, &addr).await;
    assert_eq!(t.neutron.count("ports"), 0);
}

/// Docker calls no DeleteEndpoint for an endpoint whose CreateEndpoint it counts as failed
/// (the answer lost in a crash and a restart): the address release is the last word, and
/// the veth and the port go with it, though this process made the endpoint.
#[tokio::test]
async fn a_release_without_a_delete_takes_the_veth_and_the_port() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let addr = endpoint(&t, &pool_id, EP, MAC).await;
    assert!(!t.host.links().is_empty());
    release(&t, &pool_id, &addr).await;
    assert!(t.host.links().is_empty(), "{:?}", t.host.links());
    assert_eq!(t.neutron.count("ports"), 0);
}

/// Two failures of one teardown are both reported.
#[test]
fn a_teardown_reports_every_failure() {
    let mut f = super::Failures::default();
    assert_eq!(f.step(Ok::<u8, _>(1)), Some(1));
    f.step::<()>(Err(super::DriverError::Internal(
        "unplug: gone wrong".into(),
    )));
    f.step::<()>(Err(super::DriverError::Conflict("group in use".into())));
    let e = f.into_result().unwrap_err();
    assert_eq!(e.to_string(), "unplug: gone wrong; group in use");
    assert_eq!(e.status(), 500, "the first failure's status");
    assert!(super::Failures::default().into_result().is_ok());
}

/// A ProgramExternalConnectivity cut short (the group made, no rule, not on the port) and
/// resent finishes the group instead of trusting it.
#[tokio::test]
async fn a_half_made_exposed_group_is_finished_when_the_call_comes_again() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let addr = endpoint(&t, &pool_id, EP, MAC).await;
    let port_id = port_of(&t, &addr)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sg = t.neutron.seed(
        "security-groups",
        json!({"name": names::exposed_sg_name(&port_id), "description": names::SG_DESCRIPTION}),
    );
    expose(&t, json!([{"Proto": 6, "Port": 80}])).await;
    assert_eq!(t.neutron.count("security-groups"), 1, "no second group");
    assert_eq!(t.neutron.count("security-group-rules"), 2);
    assert_eq!(port_of(&t, &addr)["security_groups"], json!([sg["id"]]));
    // Once more: nothing new, no duplicate rule.
    expose(&t, json!([{"Proto": 6, "Port": 80}])).await;
    assert_eq!(t.neutron.count("security-group-rules"), 2);
    assert_eq!(port_of(&t, &addr)["security_groups"], json!([sg["id"]]));
}

/// A DeleteNetwork cut short (here its network DELETE fails; a kill does the same) leaves
/// the network marked, and Docker forgets the network whatever the answer: the next
/// start of kuryr finishes the delete, pools included.
#[tokio::test]
async fn a_network_delete_cut_short_is_finished_at_the_next_start() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    // An address Docker never released (a container whose removal was cut short too).
    t.ok(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
    )
    .await;
    t.ok("IpamDriver.ReleasePool", &json!({"PoolID": pool_id}))
        .await;
    t.neutron
        .inject(Fault::once("DELETE", "/v2.0/networks/", 500));
    let (s, v) = t
        .call("NetworkDriver.DeleteNetwork", &json!({"NetworkID": NET}))
        .await;
    assert_eq!(s, 500, "{v}");
    assert_eq!(t.neutron.count("networks"), 1);
    let restarted = TestDriver::with("", t.neutron.clone(), t.host.clone()).await;
    let pending = restarted.driver.interrupted_deletes().await;
    assert_eq!(pending.len(), 1);
    restarted.driver.finish_deletes(pending).await;
    assert_eq!(t.neutron.count("networks"), 0);
    assert_eq!(t.neutron.count("ports"), 0);
    assert_eq!(t.neutron.count("subnetpools"), 0);
    // A network not being deleted is left alone.
    let t = TestDriver::new("").await;
    network(&t, "10.10.0.0/24", "10.10.0.1").await;
    assert!(t.driver.interrupted_deletes().await.is_empty());
    assert_eq!(t.neutron.count("networks"), 1);
}

/// A pool deleted behind kuryr's back (another host's ReleasePool, an admin): the call
/// that meets the 404 fails, and kuryr forgets what it remembered, so the user's next
/// `docker network create` gets a pool that exists instead of the same dead one forever.
#[tokio::test]
async fn a_404_from_neutron_forgets_what_kuryr_remembered() {
    let t = TestDriver::new("").await;
    let p1 = t
        .ok("IpamDriver.RequestPool", &pool_req("10.10.0.0/24"))
        .await["PoolID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    t.driver
        .neutron()
        .delete::<crate::neutron::SubnetPool>(&p1)
        .await
        .expect("delete the pool behind kuryr's back");
    // Remembered: the same (dead) pool, without asking Neutron.
    let again = t
        .ok("IpamDriver.RequestPool", &pool_req("10.10.0.0/24"))
        .await;
    assert_eq!(again["PoolID"], p1);
    let (s, v) = t
        .call(
            "NetworkDriver.CreateNetwork",
            &net_req(NET, "10.10.0.0/24", "10.10.0.1/24", json!({})),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    // Forgotten: the retry finds Neutron as it is.
    let p2 = t
        .ok("IpamDriver.RequestPool", &pool_req("10.10.0.0/24"))
        .await["PoolID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(p2, p1);
    t.ok(
        "NetworkDriver.CreateNetwork",
        &net_req(NET, "10.10.0.0/24", "10.10.0.1/24", json!({})),
    )
    .await;
}

#[tokio::test]
async fn revoke_without_exposed_ports_asks_nothing() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    endpoint(&t, &pool_id, EP, MAC).await;
    t.take_requests();
    t.ok("NetworkDriver.ProgramExternalConnectivity", &ep_ref(EP))
        .await;
    t.ok("NetworkDriver.RevokeExternalConnectivity", &ep_ref(EP))
        .await;
    assert!(t.take_requests().is_empty());
}

#[tokio::test]
async fn a_requested_address_is_reserved_and_an_adopted_port_given_back() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let subnet = t.neutron.all("subnets")[0]["id"].clone();
    let net = t.neutron.all("networks")[0]["id"].clone();
    // A user's port holding 10.10.0.50 (docker run --ip 10.10.0.50).
    let user = t.neutron.seed(
        "ports",
        json!({"name": "web", "network_id": net,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": "10.10.0.50"}]}),
    );
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "10.10.0.50", "Options": {}}),
        )
        .await;
    assert_eq!(a["Address"], "10.10.0.50/24");
    let p = port_of(&t, "10.10.0.50");
    assert_eq!(
        p["id"], user["id"],
        "the user's port is adopted, not duplicated"
    );
    let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap_or_default();
    assert!(tags.contains(&names::TAG_PORT_EXISTING.to_string()));
    t.ok(
        "NetworkDriver.CreateEndpoint",
        &ep_req(EP, "10.10.0.50/24", ""),
    )
    .await;
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    t.ok(
        "IpamDriver.ReleaseAddress",
        &json!({"PoolID": pool_id, "Address": "10.10.0.50"}),
    )
    .await;
    let p = port_of(&t, "10.10.0.50");
    assert_eq!(p["id"], user["id"], "an adopted port is never deleted");
    assert_eq!(p["name"], "web");
    assert_eq!(p["binding:host_id"], "");
    assert_eq!(p["tags"], json!([]));
}

#[tokio::test]
async fn a_port_of_something_else_is_never_taken_over() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let subnet = t.neutron.all("subnets")[0]["id"].clone();
    let net = t.neutron.all("networks")[0]["id"].clone();
    t.neutron.seed(
        "ports",
        json!({"name": "vm", "network_id": net, "device_owner": "compute:nova",
            "device_id": "vm-1", "fixed_ips": [{"subnet_id": subnet, "ip_address": "10.10.0.60"}]}),
    );
    let (s, v) = t
        .call(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "10.10.0.60", "Options": {}}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let p = port_of(&t, "10.10.0.60");
    assert_eq!(p["tags"], json!([]));
}

#[tokio::test]
async fn ipam_under_another_network_driver_makes_a_holding_network() {
    let t = TestDriver::new("").await;
    let pool = t
        .ok("IpamDriver.RequestPool", &pool_req("10.30.0.0/24"))
        .await;
    let pool_id = pool["PoolID"].as_str().unwrap_or_default();
    // Docker's bridge driver asks for addresses without a kuryr CreateNetwork.
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
        )
        .await;
    assert!(a["Address"]
        .as_str()
        .unwrap_or_default()
        .starts_with("10.30.0."));
    assert_eq!(t.neutron.count("networks"), 1);
    assert_eq!(t.neutron.count("ports"), 1);
    t.ok(
        "IpamDriver.ReleaseAddress",
        &json!({"PoolID": pool_id, "Address": a["Address"]}),
    )
    .await;
    t.ok("IpamDriver.ReleasePool", &json!({"PoolID": pool_id}))
        .await;
    for c in ["networks", "subnets", "subnetpools", "ports"] {
        assert_eq!(t.neutron.count(c), 0, "{c} left");
    }
}

/// A swarm network's id (25 `[0-9a-z]`, as Docker makes them).
const SWARM_NET: &str = "ty1z5a9u6wcw0jd21ay0ov4tw";

#[tokio::test]
async fn a_swarm_network_takes_over_the_addresses_its_manager_reserved() {
    let t = TestDriver::new("").await;
    let gw = json!({"RequestAddressType": "com.docker.network.gateway"});
    // The manager: pool, gateway, and a task's address before any network exists.
    let pool = t
        .ok("IpamDriver.RequestPool", &pool_req("10.31.0.0/24"))
        .await;
    let pool_id = pool["PoolID"].as_str().unwrap_or_default().to_string();
    let gw_req = json!({"PoolID": pool_id, "Address": "", "Options": gw});
    t.ok("IpamDriver.RequestAddress", &gw_req).await;
    let addr = any_address(&t, &pool_id).await;
    assert_eq!(t.neutron.count("networks"), 1);
    // The node: the same pool again, its gateway, then the network itself.
    let again = t
        .ok("IpamDriver.RequestPool", &pool_req("10.31.0.0/24"))
        .await;
    assert_eq!(again["PoolID"], pool["PoolID"]);
    t.ok("IpamDriver.RequestAddress", &gw_req).await;
    t.ok(
        "NetworkDriver.CreateNetwork",
        &net_req(SWARM_NET, "10.31.0.0/24", "10.31.0.1/24", json!({})),
    )
    .await;
    // One network and subnet, IPAM's, now kuryr's for this Docker network.
    let nets = t.neutron.all("networks");
    assert_eq!(nets.len(), 1, "{nets:?}");
    assert_eq!(nets[0]["name"], names::network_name(SWARM_NET));
    for tag in names::id_tags(SWARM_NET) {
        assert!(nets[0]["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&json!(tag))));
    }
    let subnets = t.neutron.all("subnets");
    assert_eq!(subnets.len(), 1, "{subnets:?}");
    assert_eq!(subnets[0]["name"], names::subnet_name("10.31.0.0/24"));
    // The node asks for the task's address the manager chose: the reserved port.
    t.ok(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": addr, "Options": {}}),
    )
    .await;
    assert_eq!(t.neutron.count("ports"), 1);
    let ep = |body: Value| {
        let mut b = body;
        b["NetworkID"] = json!(SWARM_NET);
        b
    };
    t.ok("NetworkDriver.CreateEndpoint", &ep(ep_req(EP, &addr, "")))
        .await;
    assert_eq!(port_of(&t, &addr)["network_id"], nets[0]["id"]);
    assert_eq!(port_of(&t, &addr)["device_owner"], names::DEVICE_OWNER);
    // Removal, node then manager, each releasing what it asked for: nothing is left.
    swarm_removal(&t, &pool_id, &addr).await;
    for c in ["networks", "subnets", "subnetpools", "ports"] {
        assert_eq!(t.neutron.count(c), 0, "{c} left");
    }
}

/// A single-node swarm's removal of endpoint EP at `addr` on SWARM_NET: the node's
/// DeleteEndpoint, ReleaseAddress, DeleteNetwork and ReleasePool, then the manager's
/// ReleaseAddress and ReleasePool.
async fn swarm_removal(t: &TestDriver, pool_id: &str, addr: &str) {
    let mut gone = ep_ref(EP);
    gone["NetworkID"] = json!(SWARM_NET);
    t.ok("NetworkDriver.DeleteEndpoint", &gone).await;
    let release = json!({"PoolID": pool_id, "Address": addr});
    let pool = json!({"PoolID": pool_id});
    t.ok("IpamDriver.ReleaseAddress", &release).await;
    t.ok(
        "NetworkDriver.DeleteNetwork",
        &json!({"NetworkID": SWARM_NET}),
    )
    .await;
    t.ok("IpamDriver.ReleasePool", &pool).await;
    t.ok("IpamDriver.ReleaseAddress", &release).await;
    t.ok("IpamDriver.ReleasePool", &pool).await;
}

#[tokio::test]
async fn a_swarm_network_adopting_a_users_network_after_reservations_is_a_400() {
    let t = TestDriver::new("").await;
    let theirs = t.neutron.seed("networks", json!({"name": "theirs"}));
    let pool = t
        .ok("IpamDriver.RequestPool", &pool_req("10.32.0.0/24"))
        .await;
    let pool_id = pool["PoolID"].as_str().unwrap_or_default().to_string();
    any_address(&t, &pool_id).await;
    let before = t.neutron.all("networks");
    let (status, body) = t
        .call(
            "NetworkDriver.CreateNetwork",
            &net_req(
                SWARM_NET,
                "10.32.0.0/24",
                "10.32.0.1/24",
                json!({"neutron.net.uuid": theirs["id"]}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["Err"]
            .as_str()
            .unwrap_or_default()
            .contains("neutron.net.uuid"),
        "{body}"
    );
    // Nothing changed: the user's network is not tagged.
    assert_eq!(t.neutron.all("networks"), before);
}

/// RequestPool on a user's subnet tags kuryr's pool with the subnet; a pool whose tag is
/// refused goes again, or the retry would make a second pool of the same name.
#[tokio::test]
async fn a_pool_whose_subnet_tag_is_refused_is_deleted_and_the_retry_makes_one() {
    let t = TestDriver::new("").await;
    let theirs = t.neutron.seed("networks", json!({"name": "theirs"}));
    let subnet = t.neutron.seed(
        "subnets",
        json!({"network_id": theirs["id"], "name": "theirs-v4", "ip_version": 4,
            "cidr": "10.34.0.0/24", "gateway_ip": "10.34.0.1"}),
    );
    let mut req = pool_req("10.34.0.0/24");
    req["Options"] = json!({"neutron.subnet.uuid": subnet["id"]});
    t.neutron
        .inject(Fault::once("PUT", "/v2.0/subnetpools/", 400));
    let (status, v) = t.call("IpamDriver.RequestPool", &req).await;
    assert_ne!(status, 200, "{v}");
    assert_eq!(t.neutron.count("subnetpools"), 0);
    t.ok("IpamDriver.RequestPool", &req).await;
    t.ok("IpamDriver.RequestPool", &req).await;
    assert_eq!(t.neutron.count("subnetpools"), 1);
}

/// A swarm network on a user's network and subnet (`--ipam-opt neutron.subnet.uuid`,
/// `-o neutron.net.uuid`): the manager's reservations are ports of that subnet, and the
/// nodes' CreateNetwork adopts the network with them; removal leaves the user's network
/// and subnet as they were.
#[tokio::test]
async fn a_swarm_network_on_a_users_subnet_reserves_there_and_adopts_it() {
    let t = TestDriver::new("").await;
    let theirs = t.neutron.seed("networks", json!({"name": "theirs"}));
    let subnet = t.neutron.seed(
        "subnets",
        json!({"network_id": theirs["id"], "name": "theirs-v4", "ip_version": 4,
            "cidr": "10.33.0.0/24", "gateway_ip": "10.33.0.1"}),
    );
    let mut req = pool_req("10.33.0.0/24");
    req["Options"] = json!({"neutron.subnet.uuid": subnet["id"]});
    // The manager: pool, gateway, a task's address; no network of kuryr's is made.
    let pool = t.ok("IpamDriver.RequestPool", &req).await;
    let pool_id = pool["PoolID"].as_str().unwrap_or_default().to_string();
    let gw_req = json!({"PoolID": pool_id, "Address": "",
        "Options": {"RequestAddressType": "com.docker.network.gateway"}});
    let gw = t.ok("IpamDriver.RequestAddress", &gw_req).await;
    assert_eq!(gw["Address"], "10.33.0.1/24");
    let addr = any_address(&t, &pool_id).await;
    assert_eq!(t.neutron.count("networks"), 1, "a holding network was made");
    assert_eq!(port_of(&t, &addr)["network_id"], theirs["id"]);
    // Each node: the same pool, then the network on the user's.
    t.ok("IpamDriver.RequestPool", &req).await;
    t.ok(
        "NetworkDriver.CreateNetwork",
        &net_req(
            SWARM_NET,
            "10.33.0.0/24",
            "10.33.0.1/24",
            json!({"neutron.net.uuid": theirs["id"]}),
        ),
    )
    .await;
    assert_eq!(t.neutron.count("subnets"), 1);
    t.ok(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": addr, "Options": {}}),
    )
    .await;
    let mut ep = ep_req(EP, &addr, "");
    ep["NetworkID"] = json!(SWARM_NET);
    t.ok("NetworkDriver.CreateEndpoint", &ep).await;
    assert_eq!(t.neutron.count("ports"), 1);
    assert_eq!(port_of(&t, &addr)["device_owner"], names::DEVICE_OWNER);
    // Removal: the ports and the pool go; the user's network and subnet stay, untagged.
    swarm_removal(&t, &pool_id, &addr).await;
    assert_eq!(t.neutron.count("ports"), 0, "{:?}", t.neutron.all("ports"));
    assert_eq!(t.neutron.count("subnetpools"), 0);
    assert_eq!(t.neutron.all("networks").len(), 1);
    let left = t.neutron.all("subnets");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], subnet["id"]);
    assert_eq!(left[0]["tags"], json!([]), "{left:?}");
}

/// Two nodes of a swarm, one Neutron: node B leaving the swarm network (its tasks gone,
/// drained) keeps what node A's task still uses; A, the last, leaves nothing. On a network
/// kuryr made, and on a user's network and subnet.
#[tokio::test]
async fn a_swarm_node_leaving_keeps_what_other_nodes_tasks_use() {
    two_swarm_nodes(false).await;
    two_swarm_nodes(true).await;
}

async fn two_swarm_nodes(users: bool) {
    let neutron = MemoryNeutron::default();
    let mut pool_ask = pool_req("10.34.0.0/24");
    let mut net_opts = json!({});
    if users {
        let theirs = neutron.seed("networks", json!({"name": "theirs"}));
        let subnet = neutron.seed(
            "subnets",
            json!({"network_id": theirs["id"], "name": "theirs-v4", "ip_version": 4,
                "cidr": "10.34.0.0/24", "gateway_ip": "10.34.0.1"}),
        );
        pool_ask["Options"] = json!({"neutron.subnet.uuid": subnet["id"]});
        net_opts = json!({"neutron.net.uuid": theirs["id"]});
    }
    let node = |conf: &'static str| TestDriver::with(conf, neutron.clone(), FakeHost::default());
    let a = node("[DEFAULT]\nhost = node-a\n").await;
    let b = node("[DEFAULT]\nhost = node-b\n").await;
    let ep_b = "b1e2e3e4e5e6e7e8e9f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405ab";
    // The manager (A): the pool and both tasks' addresses.
    let pool = a.ok("IpamDriver.RequestPool", &pool_ask).await;
    let pool_id = pool["PoolID"].as_str().unwrap_or_default().to_string();
    let (addr_a, addr_b) = (
        any_address(&a, &pool_id).await,
        any_address(&a, &pool_id).await,
    );
    // Each node: the pool, the network, its task's address and endpoint.
    let swarm = |mut body: Value| {
        body["NetworkID"] = json!(SWARM_NET);
        body
    };
    for (t, addr, ep) in [(&a, &addr_a, EP), (&b, &addr_b, ep_b)] {
        t.ok("IpamDriver.RequestPool", &pool_ask).await;
        t.ok(
            "NetworkDriver.CreateNetwork",
            &net_req(SWARM_NET, "10.34.0.0/24", "10.34.0.1/24", net_opts.clone()),
        )
        .await;
        t.ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": addr, "Options": {}}),
        )
        .await;
        t.ok("NetworkDriver.CreateEndpoint", &swarm(ep_req(ep, addr, "")))
            .await;
    }
    let kept = |what: &str| {
        (
            neutron.all("networks"),
            neutron.all("subnets"),
            neutron.all("subnetpools"),
            what.to_string(),
        )
    };
    let before = kept("before B left");
    assert_eq!(port_of(&a, &addr_b)["binding:host_id"], "node-b");
    // B leaves, in a node's order: its endpoint, its address, the pool, the network.
    b.ok("NetworkDriver.DeleteEndpoint", &swarm(ep_ref(ep_b)))
        .await;
    let release_b = json!({"PoolID": pool_id, "Address": addr_b});
    b.ok("IpamDriver.ReleaseAddress", &release_b).await;
    b.ok("IpamDriver.ReleasePool", &json!({"PoolID": pool_id}))
        .await;
    b.ok(
        "NetworkDriver.DeleteNetwork",
        &json!({"NetworkID": SWARM_NET}),
    )
    .await;
    // A's task keeps its port, and the network, subnet and pool are as they were.
    assert_eq!(kept("before B left"), before, "users: {users}");
    assert_eq!(port_of(&a, &addr_a)["binding:host_id"], "node-a");
    // A, the last: nothing is left but the user's network and subnet, untagged.
    a.ok("NetworkDriver.DeleteEndpoint", &swarm(ep_ref(EP)))
        .await;
    for addr in [&addr_a, &addr_b] {
        a.ok(
            "IpamDriver.ReleaseAddress",
            &json!({"PoolID": pool_id, "Address": addr}),
        )
        .await;
    }
    a.ok("IpamDriver.ReleasePool", &json!({"PoolID": pool_id}))
        .await;
    a.ok(
        "NetworkDriver.DeleteNetwork",
        &json!({"NetworkID": SWARM_NET}),
    )
    .await;
    let users_left = usize::from(users);
    for (c, n) in [
        ("networks", users_left),
        ("subnets", users_left),
        ("subnetpools", 0),
        ("ports", 0),
    ] {
        assert_eq!(neutron.count(c), n, "{c} left: {:?}", neutron.all(c));
    }
    for c in ["networks", "subnets"] {
        for o in neutron.all(c) {
            assert_eq!(o["tags"], json!([]), "{o}");
        }
    }
}

#[tokio::test]
async fn an_address_outside_the_pool_is_400_before_any_holding_network() {
    // Found by the handle_sequence fuzz target: the holding network and subnet used to
    // be made before the address was checked, so a refused request changed Neutron.
    let t = TestDriver::new("").await;
    let pool = t
        .ok("IpamDriver.RequestPool", &pool_req("10.31.0.0/24"))
        .await;
    let pool_id = pool["PoolID"].as_str().unwrap_or_default();
    let (s, v) = t
        .call(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "10.99.0.5", "Options": {}}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["Err"]
            .as_str()
            .unwrap_or_default()
            .contains("not in pool"),
        "{v}"
    );
    for c in ["networks", "subnets", "ports"] {
        assert_eq!(t.neutron.count(c), 0, "{c} made by a refused request");
    }
}

#[tokio::test]
async fn default_pool_is_found_by_name_or_named_in_the_error() {
    let t = TestDriver::new("").await;
    let (s, v) = t
        .call("IpamDriver.RequestPool", &json!({"Pool": "", "V6": false}))
        .await;
    assert_eq!(s, 404, "{v}");
    assert!(v["Err"].as_str().unwrap_or_default().contains("kuryr"));
    t.neutron.seed(
        "subnetpools",
        json!({"name": "kuryr", "prefixes": ["10.200.0.0/16"]}),
    );
    let p = t
        .ok("IpamDriver.RequestPool", &json!({"Pool": "", "V6": false}))
        .await;
    assert_eq!(p["Pool"], "10.200.0.0/16");
}

#[tokio::test]
async fn two_endpoints_get_two_ports_and_veths() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let a = endpoint(&t, &pool_id, EP, MAC).await;
    let b = endpoint(&t, &pool_id, EP2, "02:42:0a:0a:00:06").await;
    assert_ne!(a, b);
    assert_eq!(t.neutron.count("ports"), 2);
    assert_eq!(t.host.links().len(), 4);
}

#[tokio::test]
async fn neutron_unreachable_is_a_clear_err() {
    let t = TestDriver::new("").await;
    // Refused connections, each retried: the call fails with what happened.
    t.neutron.inject(Fault {
        method: "GET".into(),
        path: "/v2.0/subnetpools".into(),
        status: 0,
        times: 3,
        skip: 0,
    });
    let (s, v) = t
        .call("IpamDriver.RequestPool", &pool_req("10.40.0.0/24"))
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(v["Err"]
        .as_str()
        .unwrap_or_default()
        .contains("Neutron did not answer"));
    assert_eq!(t.neutron.count("subnetpools"), 0);
}

#[tokio::test]
async fn a_failed_create_endpoint_restores_the_mac_it_changed() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
        )
        .await;
    let addr = a["Address"].as_str().unwrap_or_default().to_string();
    let before = port_of(&t, &addr);
    // `docker run --mac-address`: CreateEndpoint brings another MAC than IPAM saw.
    t.host.fail("plug", 1);
    let (s, v) = t
        .call(
            "NetworkDriver.CreateEndpoint",
            &ep_req(EP, &addr, "02:42:0a:0a:00:77"),
        )
        .await;
    assert_eq!(s, 500, "{v}");
    let p = port_of(&t, &addr);
    assert_eq!(
        p["mac_address"], before["mac_address"],
        "the MAC was not given back"
    );
    assert_eq!(p["name"], names::UNBOUND_PORT_NAME);
    assert_eq!(
        p["binding:host_id"],
        crate::testkit::HOST,
        "bound again, as it was"
    );
    assert_eq!(p["binding:vif_type"], "bridge");
}

#[tokio::test]
async fn a_rollback_that_fails_is_reported_with_the_error() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let addr = user_port_address(&t, &pool_id, "10.10.0.51").await;
    t.host.fail("plug", 1);
    // The binding and tag PUTs work; the restoring PUTs after the failed plug do not.
    t.neutron.inject(Fault {
        method: "PUT".into(),
        path: "/v2.0/ports/".into(),
        status: 500,
        times: 10,
        skip: 2,
    });
    let (s, v) = t
        .call("NetworkDriver.CreateEndpoint", &ep_req(EP, &addr, ""))
        .await;
    assert_eq!(s, 500, "{v}");
    let err = v["Err"].as_str().unwrap_or_default();
    assert!(err.contains("injected failure"), "the plug error: {err}");
    assert!(
        err.contains("undoing it failed"),
        "the rollback failure: {err}"
    );
}

#[tokio::test]
async fn a_failed_create_network_on_an_adopted_network_gives_everything_back() {
    let t = TestDriver::new("").await;
    let net = t
        .neutron
        .seed("networks", json!({"name": "user-net", "tags": ["mine"]}));
    let v4 = t.neutron.seed(
        "subnets",
        json!({"network_id": net["id"], "cidr": "10.50.0.0/24", "name": "user-v4"}),
    );
    let p4 = t
        .ok("IpamDriver.RequestPool", &pool_req("10.50.0.0/24"))
        .await;
    let p6 = t
        .ok(
            "IpamDriver.RequestPool",
            &json!({"Pool": "fd50::/64", "V6": true, "Options": {}}),
        )
        .await;
    // The v6 subnet create fails after the network and the v4 subnet were tagged.
    t.neutron.inject(Fault::once("POST", "/v2.0/subnets", 500));
    let req = json!({"NetworkID": NET, "Options": {"com.docker.network.generic": {"neutron.net.name": "user-net"}},
        "IPv4Data": [{"Pool": "10.50.0.0/24", "Gateway": "10.50.0.1/24"}],
        "IPv6Data": [{"Pool": "fd50::/64", "Gateway": "fd50::1/64"}]});
    let (s, v) = t.call("NetworkDriver.CreateNetwork", &req).await;
    assert_eq!(s, 500, "{v}");
    let n = &t.neutron.all("networks")[0];
    assert_eq!(n["tags"], json!(["mine"]), "network tags not given back");
    let s4 = t
        .neutron
        .all("subnets")
        .into_iter()
        .find(|s| s["id"] == v4["id"])
        .unwrap_or(Value::Null);
    assert_eq!(
        s4["tags"],
        json!([]),
        "the adopted subnet kept the pool tag {}",
        p4["PoolID"]
    );
    assert_eq!(t.neutron.count("subnets"), 1, "a v6 subnet was left");
    assert!(p6["PoolID"].is_string());
}

/// A request Neutron takes and never answers, once.
fn silent(method: &str, path: &str) -> Fault {
    Fault::once(method, path, 1)
}

/// CreateNetwork's arguments, with the pool RequestPool made.
async fn network_call(t: &TestDriver, cidr: &str, gw: &str) -> Value {
    t.ok("IpamDriver.RequestPool", &pool_req(cidr)).await;
    net_req(NET, cidr, &format!("{gw}/24"), json!({}))
}

#[tokio::test(start_paused = true)]
async fn a_call_neutron_never_answers_undoes_itself_and_answers_in_time() {
    let t = TestDriver::new("").await;
    let req = network_call(&t, "10.60.0.0/24", "10.60.0.1").await;
    // The network is made; its subnet's request is never answered, and the client's
    // own timeout (30 s) is past the call's.
    t.neutron.inject(silent("POST", "/v2.0/subnets"));
    let started = tokio::time::Instant::now();
    let (s, v) = t.call("NetworkDriver.CreateNetwork", &req).await;
    assert_eq!(s, 504, "{v}");
    assert!(
        v["Err"].as_str().unwrap_or_default().contains("in time"),
        "{v}"
    );
    assert!(
        started.elapsed() < crate::server::CALL_DEADLINE,
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(t.neutron.count("networks"), 0, "the network was left");
}

#[tokio::test(start_paused = true)]
async fn a_call_docker_stops_waiting_for_still_undoes_itself() {
    let t = TestDriver::new("").await;
    let req = network_call(&t, "10.61.0.0/24", "10.61.0.1").await;
    t.neutron.inject(silent("POST", "/v2.0/subnets"));
    // The client goes away a second in (a closed connection drops its request).
    let gone = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        t.call("NetworkDriver.CreateNetwork", &req),
    )
    .await;
    assert!(gone.is_err(), "the call answered at once: {gone:?}");
    assert_eq!(t.neutron.count("networks"), 1, "the call had not started");
    tokio::time::sleep(crate::server::CALL_DEADLINE).await;
    assert_eq!(
        t.neutron.count("networks"),
        0,
        "a dropped call left its network"
    );
}

#[tokio::test(start_paused = true)]
async fn a_binding_update_never_answered_gives_the_users_port_back() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.62.0.0/24", "10.62.0.1").await;
    let addr = user_port_address(&t, &pool_id, "10.62.0.50").await;
    let before = port_of(&t, &addr);
    t.neutron.inject(silent("PUT", "/v2.0/ports/"));
    let started = tokio::time::Instant::now();
    let (s, v) = t
        .call("NetworkDriver.CreateEndpoint", &ep_req(EP, &addr, ""))
        .await;
    assert_eq!(s, 504, "{v}");
    assert!(started.elapsed() < crate::server::CALL_DEADLINE);
    assert!(t.host.links().is_empty(), "plugged: {:?}", t.host.links());
    let after = port_of(&t, &addr);
    for k in ["binding:host_id", "device_owner", "device_id", "tags"] {
        assert_eq!(after[k], before[k], "{k} not given back");
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_for_an_active_port_without_a_timeout_ends_with_the_call() {
    // vif_plugging_is_fatal with the default vif_plugging_timeout = 0 used to poll
    // forever, under the endpoint's lock.
    let t = TestDriver::new(
        "[neutron]\nendpoint = http://memory.invalid:9696\nvif_plugging_is_fatal = true\n",
    )
    .await;
    let pool_id = network(&t, "10.63.0.0/24", "10.63.0.1").await;
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
        )
        .await;
    let addr = a["Address"].as_str().unwrap_or_default().to_string();
    let id = port_of(&t, &addr)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The L2 agent never reports it up.
    t.neutron.set("ports", &id, json!({"status": "DOWN"}));
    let started = tokio::time::Instant::now();
    let (s, v) = t
        .call("NetworkDriver.CreateEndpoint", &ep_req(EP, &addr, ""))
        .await;
    assert_eq!(s, 504, "{v}");
    assert!(
        v["Err"].as_str().unwrap_or_default().contains("ACTIVE"),
        "{v}"
    );
    assert!(started.elapsed() < crate::server::CALL_DEADLINE);
    assert!(t.host.links().is_empty(), "veth left: {:?}", t.host.links());
}

/// Requests made while serving `method` so far (background work excluded).
fn call_requests(t: &TestDriver, method: &str) -> u64 {
    t.driver
        .neutron()
        .stats()
        .by_call()
        .get(method)
        .copied()
        .unwrap_or(0)
}

/// Waits (a bounded while) until Neutron holds `n` ports: background work settles.
async fn wait_port_count(t: &TestDriver, n: usize) {
    for _ in 0..200 {
        if t.neutron.count("ports") == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits until the network's pool holds `n` ready ports.
async fn pool_ready(t: &TestDriver, n: usize) -> String {
    let net = t.neutron.all("networks")[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for _ in 0..200 {
        if t.driver.port_pool.available(&net) == n {
            return net;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "pool of {net} never held {n} ports (holds {})",
        t.driver.port_pool.available(&net)
    );
}

/// The calls of a start before Join: Docker makes CreateEndpoint under its lock of the
/// network. (Join waits for the endpoint's bookkeeping, written by background work.)
const START: [&str; 2] = ["IpamDriver.RequestAddress", "NetworkDriver.CreateEndpoint"];

/// RequestAddress and CreateEndpoint of a container, no Join yet: its address.
async fn create_endpoint(t: &TestDriver, pool_id: &str, ep: &str) -> String {
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
        )
        .await;
    let addr = a["Address"].as_str().unwrap_or_default().to_string();
    t.ok("NetworkDriver.CreateEndpoint", &ep_req(ep, &addr, ""))
        .await;
    addr
}

async fn start_container(t: &TestDriver, pool_id: &str, ep: &str) -> String {
    let addr = create_endpoint(t, pool_id, ep).await;
    t.ok(
        "NetworkDriver.Join",
        &json!({"NetworkID": NET, "EndpointID": ep, "SandboxKey": "/var/run/docker/netns/x"}),
    )
    .await;
    addr
}

#[tokio::test]
async fn a_pooled_start_asks_neutron_nothing_before_join() {
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 3\n").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    pool_ready(&t, 3).await;
    let ready: Vec<Value> = ports(&t);
    let before: Vec<u64> = START.iter().map(|m| call_requests(&t, m)).collect();
    let addr = start_container(&t, &pool_id, EP).await;
    for (m, b) in START.iter().zip(before) {
        assert_eq!(call_requests(&t, m), b, "{m} asked Neutron");
    }
    let p = port_of(&t, &addr);
    assert!(
        ready.iter().any(|r| r["id"] == p["id"]),
        "the container got a pool port made before the start"
    );
    // Join wrote its bookkeeping; the pool refills.
    let id = p["id"].as_str().unwrap_or_default().to_string();
    t.driver.background.settle(&id).await;
    let p = port_of(&t, &addr);
    assert_eq!(p["device_id"], EP);
    assert_eq!(p["name"], names::endpoint_port_name(EP));
    // Refilled only once half used: one bulk request for several.
    pool_ready(&t, 2).await;
}

/// A burst beyond the pool: a start that finds it empty makes no port of its own (it holds
/// Docker's lock of the network, so every start behind it would wait for that create): it
/// waits for the refill, and the pool grows to keep up with the starts, to its ceiling.
#[tokio::test]
async fn a_burst_beyond_the_pool_waits_for_bulk_refills_and_grows_the_pool() {
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 2\nport_pool_max = 6\n").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let net = pool_ready(&t, 2).await;
    assert_eq!(t.driver.port_pool.target_of(&net), 2);
    let before = call_requests(&t, "IpamDriver.RequestAddress");
    // Nine starts at once: more than the pool holds.
    let addrs: Vec<String> =
        futures::future::join_all((0..9).map(|_| any_address(&t, &pool_id))).await;
    assert_eq!(
        call_requests(&t, "IpamDriver.RequestAddress"),
        before,
        "a start of the burst made its own port"
    );
    // Each start that found it empty doubled it: 2, 4, then the ceiling.
    assert_eq!(t.driver.port_pool.target_of(&net), 6);
    let made: std::collections::HashSet<String> = addrs
        .iter()
        .map(|a| port_of(&t, a)["id"].to_string())
        .collect();
    assert_eq!(made.len(), 9, "one port per start");
    // Given back, the ports beyond the grown pool go.
    for a in &addrs {
        release(&t, &pool_id, a).await;
    }
    t.driver.background.flush().await;
    wait_port_count(&t, 6).await;
    assert_eq!(
        t.neutron.count("ports"),
        6,
        "ports beyond the pool's size were kept"
    );
    // Quiet since: the next start finds the pool back at its floor, and what the burst
    // grew goes (one port taken, two kept).
    t.driver.port_pool.forget_burst(&net);
    let a = any_address(&t, &pool_id).await;
    assert_eq!(t.driver.port_pool.target_of(&net), 2);
    wait_port_count(&t, 3).await;
    assert_eq!(
        t.neutron.count("ports"),
        3,
        "the grown pool was not trimmed"
    );
    release(&t, &pool_id, &a).await;
}

/// A refill's bulk create waits longer than a call's requests: nothing waits on it for
/// long, and Neutron makes the ports of one the client gave up on anyway.
#[tokio::test]
async fn a_pool_waits_longer_for_its_bulk_creates_than_a_call_for_its_requests() {
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 2\n").await;
    network(&t, "10.10.0.0/24", "10.10.0.1").await;
    pool_ready(&t, 2).await;
    let sent = t.neutron.timeouts();
    let of = |req: &str| -> Vec<std::time::Duration> {
        sent.iter()
            .filter(|(r, _)| r == req)
            .map(|(_, d)| *d)
            .collect()
    };
    let bulk = of("POST /v2.0/ports");
    assert!(!bulk.is_empty(), "no bulk create: {sent:?}");
    assert!(
        bulk.iter().all(|d| *d >= super::port_pool::BULK_TIMEOUT),
        "a bulk create was given up on sooner: {bulk:?}"
    );
    // A call's own requests keep `[neutron] timeout` (30 s unless set).
    let net = of("POST /v2.0/networks");
    assert_eq!(net, vec![std::time::Duration::from_secs(30)]);
}

#[tokio::test]
async fn without_the_pool_a_start_makes_one_request() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let before: Vec<u64> = START.iter().map(|m| call_requests(&t, m)).collect();
    start_container(&t, &pool_id, EP).await;
    let made: Vec<u64> = START
        .iter()
        .zip(before)
        .map(|(m, b)| call_requests(&t, m) - b)
        .collect();
    assert_eq!(made, [1, 0], "requests of RequestAddress, CreateEndpoint");
}

/// The reference's contract: once Join has answered (so once `docker run` or `docker
/// network connect` has returned) the endpoint's port carries its name, device_id and
/// tags, with the pool and without; CreateEndpoint, which Docker serialises per network,
/// still asks Neutron nothing.
#[tokio::test]
async fn once_join_answers_the_port_is_the_endpoints_pooled_or_not() {
    for conf in ["", "[DEFAULT]\nport_pool_size = 2\n"] {
        let t = TestDriver::new(conf).await;
        let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
        if !conf.is_empty() {
            pool_ready(&t, 2).await;
        }
        let addr = start_container(&t, &pool_id, EP).await;
        assert_eq!(
            call_requests(&t, "NetworkDriver.CreateEndpoint"),
            0,
            "{conf}"
        );
        let p = port_of(&t, &addr);
        assert_eq!(p["name"], names::endpoint_port_name(EP), "{conf}");
        assert_eq!(p["device_id"], EP, "{conf}");
        let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap_or_default();
        assert!(
            tags.iter().any(|t| t == names::TAG_KURYR_PORT),
            "{conf}: {tags:?}"
        );
        assert!(names::has_id_tags(&tags, EP), "{conf}: {tags:?}");
    }
}

/// The bookkeeping's two writes go one after the other, the port's update first: side by
/// side, Neutron retries (after about 0.5 s) a port update that the write of the same
/// port's tags overtook. The update refused: the tags wait for the retry, which writes
/// both.
#[tokio::test(start_paused = true)]
async fn the_bookkeeping_updates_the_port_then_its_tags_never_both_at_once() {
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 2\n").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    pool_ready(&t, 2).await;
    t.take_requests();
    // The first PUT of the port fails: the update, if it goes alone.
    t.neutron.inject(Fault::once("PUT", "/v2.0/ports/", 500));
    let addr = start_container(&t, &pool_id, EP).await;
    let puts = |t: &TestDriver| -> Vec<String> {
        t.take_requests()
            .into_iter()
            .filter(|r| r.starts_with("PUT"))
            .collect()
    };
    assert_eq!(puts(&t), ["PUT ports"], "the tags went with the update");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(puts(&t), ["PUT ports", "PUT ports/tags"]);
    let p = port_of(&t, &addr);
    assert_eq!(p["device_id"], EP, "{p}");
    let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap_or_default();
    assert!(names::has_id_tags(&tags, EP), "{tags:?}");
}

#[tokio::test]
async fn dual_stack_gets_one_port_in_one_request() {
    let t = TestDriver::new("").await;
    let p4 = t
        .ok("IpamDriver.RequestPool", &pool_req("10.60.0.0/24"))
        .await;
    let p6 = t
        .ok(
            "IpamDriver.RequestPool",
            &json!({"Pool": "fd60::/64", "V6": true, "Options": {}}),
        )
        .await;
    t.ok(
        "NetworkDriver.CreateNetwork",
        &json!({"NetworkID": NET, "Options": {},
            "IPv4Data": [{"Pool": "10.60.0.0/24", "Gateway": "10.60.0.1/24"}],
            "IPv6Data": [{"Pool": "fd60::/64", "Gateway": "fd60::1/64"}]}),
    )
    .await;
    t.take_requests();
    let a4 = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": p4["PoolID"], "Address": "", "Options": {}}),
        )
        .await;
    let a6 = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": p6["PoolID"], "Address": "", "Options": {}}),
        )
        .await;
    assert_eq!(
        t.take_requests(),
        ["POST ports"],
        "one port for both families"
    );
    assert_eq!(t.neutron.count("ports"), 1);
    let ce = json!({"NetworkID": NET, "EndpointID": EP, "Options": {},
        "Interface": {"Address": a4["Address"], "AddressIPv6": a6["Address"], "MacAddress": ""}});
    t.ok("NetworkDriver.CreateEndpoint", &ce).await;
    assert_eq!(call_requests(&t, "NetworkDriver.CreateEndpoint"), 0);
    let p = &ports(&t)[0];
    assert_eq!(p["fixed_ips"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn release_gives_a_pool_port_back_scrubbed() {
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 2\n").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let net = pool_ready(&t, 2).await;
    // Neutron refuses new ports from now on: the pool cannot refill.
    t.neutron.inject(Fault {
        method: "POST".into(),
        path: "/v2.0/ports".into(),
        status: 500,
        times: 100,
        skip: 0,
    });
    let addr = start_container(&t, &pool_id, EP).await;
    assert_eq!(t.driver.port_pool.available(&net), 1);
    let id = port_of(&t, &addr)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    t.driver.background.settle(&id).await;
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    let before = t.neutron.count("ports");
    let calls_before = (
        call_requests(&t, "IpamDriver.ReleaseAddress"),
        call_requests(&t, "NetworkDriver.DeleteEndpoint"),
    );
    release(&t, &pool_id, &addr).await;
    assert_eq!(
        (
            call_requests(&t, "IpamDriver.ReleaseAddress"),
            call_requests(&t, "NetworkDriver.DeleteEndpoint"),
        ),
        calls_before,
        "DeleteEndpoint and ReleaseAddress asked Neutron"
    );
    t.driver.background.settle(&id).await;
    let p = ports(&t).into_iter().find(|p| p["id"] == id.as_str());
    let p = p.expect("the released port was deleted, not given back");
    assert_eq!(p["name"], "kuryr-pool-port");
    assert_eq!(p["device_id"], "");
    assert_eq!(p["tags"], json!([names::TAG_KURYR_PORT]));
    assert_eq!(t.neutron.count("ports"), before);
    assert_eq!(t.driver.port_pool.available(&net), 2);
    // The network's removal drains the pool.
    t.ok("NetworkDriver.DeleteNetwork", &json!({"NetworkID": NET}))
        .await;
    assert_eq!(t.neutron.count("ports"), 0);
}

/// The pool plugs its ports ahead, with `vif_plugging_is_fatal` or without: each has its
/// veth, bound, under the pool's alias before any start; a start takes one as it is (with
/// the wait for ACTIVE, that wait is one read), a port given back is plugged again, a
/// container's own groups get a new port rather than the one filtered by the network's,
/// and the veths go with the network.
#[tokio::test]
async fn a_pool_plugs_its_ports_ahead_and_a_start_takes_one_as_it_is() {
    for fatal in [false, true] {
        a_pool_plugs_ahead(fatal).await;
    }
}

async fn a_pool_plugs_ahead(fatal: bool) {
    let conf = &format!("[DEFAULT]\nport_pool_size = 2\n[neutron]\nendpoint = http://memory.invalid:9696\nvif_plugging_is_fatal = {fatal}\n");
    let t = TestDriver::new(conf).await;
    t.neutron.seed("security-groups", json!({"name": "db"}));
    let pool_id = network(&t, "10.66.0.0/24", "10.66.0.1").await;
    let net = pool_ready(&t, 2).await;
    let ahead = |t: &TestDriver| -> Vec<String> {
        ports(t)
            .iter()
            .filter_map(|p| p["id"].as_str())
            .map(names::host_veth)
            .filter(|v| t.host.alias(v).as_deref() == Some(crate::host::PLUGGED_AHEAD))
            .collect()
    };
    assert_eq!(ahead(&t).len(), 2, "links: {:?}", t.host.links());
    // The refill this start sets off fails: the port released next goes back to the pool.
    t.neutron.inject(Fault {
        method: "POST".into(),
        path: "/v2.0/ports".into(),
        status: 500,
        times: 1,
        skip: 0,
    });
    let before: Vec<u64> = START.iter().map(|m| call_requests(&t, m)).collect();
    let addr = start_container(&t, &pool_id, EP).await;
    let id = port_of(&t, &addr)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The port's veth now serves the endpoint; a secure start read the port once (ACTIVE).
    assert_eq!(t.host.alias(&names::host_veth(&id)).as_deref(), Some(EP));
    let asked: u64 = START
        .iter()
        .zip(before)
        .map(|(m, b)| call_requests(&t, m) - b)
        .sum();
    assert_eq!(
        asked,
        u64::from(fatal),
        "a pooled start asks Neutron more than a secure start's ACTIVE read"
    );
    t.driver.background.settle(&id).await;
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    release(&t, &pool_id, &addr).await;
    t.driver.background.settle(&id).await;
    // Given back and plugged ahead again.
    assert!(
        ahead(&t).contains(&names::host_veth(&id)),
        "{:?}",
        t.host.links()
    );
    // A restarted kuryr reads them back as free: a veth plugged ahead serves no endpoint.
    let restarted = TestDriver::with(conf, t.neutron.clone(), t.host.clone()).await;
    let r = &restarted.driver;
    r.port_pool.load(&r.neutron, &net).await.unwrap();
    assert_eq!(r.port_pool.available(&net), 2);
    drop(restarted);

    // A container's own groups: not the filtered pool port but a new one, and the pool
    // port's veth goes with it.
    let taken_before: Vec<String> = ahead(&t);
    let b = endpoint_with(&t, &pool_id, EP2, json!({"neutron.security_groups": "db"})).await;
    let pb = port_of(&t, &b);
    let pb_id = pb["id"].as_str().unwrap_or_default();
    assert!(
        !taken_before.contains(&names::host_veth(pb_id)),
        "a pool port plugged ahead changed its groups in place"
    );
    assert_eq!(pb["name"], names::endpoint_port_name(EP2));
    assert_eq!(t.host.alias(&names::host_veth(pb_id)).as_deref(), Some(EP2));
    for v in &taken_before {
        let still_pool = ports(&t)
            .iter()
            .any(|p| p["id"].as_str().map(names::host_veth).as_deref() == Some(v.as_str()));
        assert_eq!(t.host.links().contains(v), still_pool, "{v}");
    }
    // The network's removal takes the pool's ports and their veths.
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP2)).await;
    release(&t, &pool_id, &b).await;
    t.driver.background.settle(pb_id).await;
    t.ok("NetworkDriver.DeleteNetwork", &json!({"NetworkID": NET}))
        .await;
    assert_eq!(t.neutron.count("ports"), 0);
    assert!(t.host.links().is_empty(), "left: {:?}", t.host.links());
    assert_eq!(t.driver.port_pool.available(&net), 0);
}

#[tokio::test]
async fn pool_ports_neutron_could_not_bind_are_repaired_not_handed_out() {
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 2\n").await;
    // The L2 agent is down while the pool fills.
    t.neutron.fail_bindings(true);
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let net = t.neutron.all("networks")[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    wait_port_count(&t, 2).await;
    let made: Vec<Value> = ports(&t);
    assert_eq!(made.len(), 2);
    assert!(made
        .iter()
        .all(|p| p["binding:vif_type"] == "binding_failed"));
    assert_eq!(
        t.driver.port_pool.available(&net),
        0,
        "broken ports were offered"
    );
    // The agent is back: the next start's refill rebinds them, and they serve starts.
    t.neutron.fail_bindings(false);
    start_container(&t, &pool_id, EP).await;
    pool_ready(&t, 2).await;
    let addr = start_container(&t, &pool_id, EP2).await;
    let p = port_of(&t, &addr);
    assert!(
        made.iter().any(|m| m["id"] == p["id"]),
        "a repaired pool port"
    );
    assert_eq!(p["binding:vif_type"], "bridge");
}

#[tokio::test]
async fn a_chosen_mac_takes_the_slow_path_and_works() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
        )
        .await;
    let addr = a["Address"].as_str().unwrap_or_default().to_string();
    t.take_requests();
    // `docker run --mac-address`: the bound port is unbound, given the MAC, bound again.
    let ce = t
        .ok(
            "NetworkDriver.CreateEndpoint",
            &ep_req(EP, &addr, "02:42:0a:0a:00:99"),
        )
        .await;
    assert_eq!(ce, json!({"Interface": {}}), "Docker's MAC stays");
    let p = port_of(&t, &addr);
    assert_eq!(p["mac_address"], "02:42:0a:0a:00:99");
    assert_eq!(p["binding:host_id"], crate::testkit::HOST);
    assert_eq!(p["device_id"], EP);
    let mut reqs = t.take_requests();
    reqs.sort();
    assert_eq!(reqs, ["PUT ports", "PUT ports", "PUT ports/tags"]);
}

#[tokio::test]
async fn after_a_restart_an_endpoint_without_bookkeeping_is_found_by_its_veth() {
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 1\n").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    pool_ready(&t, 1).await;
    // The pool's refill fails, so the only pool port in Neutron is the one the start
    // takes; and its bookkeeping never reaches Neutron (kuryr stops first).
    t.neutron.inject(Fault::once("POST", "/v2.0/ports", 500));
    // Both of the bookkeeping's requests (the update and the tags).
    t.neutron.inject(Fault {
        times: 2,
        ..Fault::once("PUT", "/v2.0/ports/", 500)
    });
    let addr = create_endpoint(&t, &pool_id, EP).await;
    for _ in 0..200 {
        let posts = t
            .neutron
            .requests()
            .iter()
            .filter(|r| r.starts_with("POST /v2.0/ports"))
            .count();
        if posts == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let id = port_of(&t, &addr)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    t.driver.background.settle(&id).await;
    assert_eq!(
        port_of(&t, &addr)["device_id"],
        "",
        "bookkeeping was written"
    );
    // A new process on the same Neutron and host. The pool it reads back does not offer
    // the port (its veth says it is taken), even to a start that comes first; Join finds
    // the endpoint by its veth and writes the bookkeeping.
    let t2 = TestDriver::with(
        "[DEFAULT]\nport_pool_size = 1\n",
        t.neutron.clone(),
        t.host.clone(),
    )
    .await;
    let other = start_container(&t2, &pool_id, EP2).await;
    assert_ne!(other, addr, "a taken port was handed out again");
    let j = t2
        .ok(
            "NetworkDriver.Join",
            &json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/var/run/docker/netns/x"}),
        )
        .await;
    assert_eq!(j["InterfaceName"]["SrcName"], names::container_veth(&id));
    let p = port_of(&t2, &addr);
    assert_eq!(p["device_id"], EP);
    let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap_or_default();
    assert!(names::has_id_tags(&tags, EP));
}

/// The bookkeeping stopped between its two writes (the port's device_id and name are the
/// endpoint's, its tags not yet) and kuryr restarted: Join finds the endpoint by its veth
/// all the same and writes the tags.
#[tokio::test]
async fn after_a_restart_an_endpoint_half_written_is_found_by_its_veth() {
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 2\n").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    pool_ready(&t, 2).await;
    t.neutron.inject(Fault::once("PUT", "/tags", 500));
    let addr = create_endpoint(&t, &pool_id, EP).await;
    let id = port_of(&t, &addr)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    t.driver.background.hurry(&id).await;
    let p = port_of(&t, &addr);
    assert_eq!(p["device_id"], EP, "{p}");
    let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap_or_default();
    assert!(!names::has_id_tags(&tags, EP), "tags written: {tags:?}");
    // A new process on the same Neutron and host, before the first one's retry.
    let t2 = TestDriver::with(
        "[DEFAULT]\nport_pool_size = 2\n",
        t.neutron.clone(),
        t.host.clone(),
    )
    .await;
    let j = t2
        .ok(
            "NetworkDriver.Join",
            &json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/var/run/docker/netns/x"}),
        )
        .await;
    assert_eq!(j["InterfaceName"]["SrcName"], names::container_veth(&id));
    let p = port_of(&t2, &addr);
    let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap_or_default();
    assert!(names::has_id_tags(&tags, EP), "{tags:?}");
}

#[tokio::test]
async fn a_short_pooled_lifecycle_asks_neutron_only_for_the_bookkeeping_and_its_undoing() {
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 3\n").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let net = pool_ready(&t, 3).await;
    t.take_requests();
    // `docker run`, then at once `docker rm`: Join wrote the endpoint's bookkeeping,
    // the release scrubs it, and the port goes back to the pool as it was made.
    let addr = start_container(&t, &pool_id, EP).await;
    let id = port_of(&t, &addr)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    t.ok("NetworkDriver.Leave", &ep_ref(EP)).await;
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    release(&t, &pool_id, &addr).await;
    t.driver.background.settle(&id).await;
    let reqs = t.take_requests();
    assert!(
        reqs.iter().all(|r| r.starts_with("PUT ports")),
        "a create or a delete in the lifecycle: {reqs:?}"
    );
    assert_eq!(t.driver.port_pool.available(&net), 3);
    assert_eq!(port_of(&t, &addr)["name"], "kuryr-pool-port");
}

#[tokio::test]
async fn a_restarted_kuryr_removes_the_pool_of_a_network_docker_removes() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    // A new process: Docker removes the network the old one made (ReleasePool first, as
    // Docker 20.10 does, then DeleteNetwork).
    let t2 = TestDriver::with("", t.neutron.clone(), t.host.clone()).await;
    t2.ok("IpamDriver.ReleasePool", &json!({"PoolID": pool_id}))
        .await;
    t2.ok("NetworkDriver.DeleteNetwork", &json!({"NetworkID": NET}))
        .await;
    for c in ["networks", "subnets", "subnetpools", "ports"] {
        assert_eq!(t2.neutron.count(c), 0, "{c} left");
    }
}

/// Neutron down when an endpoint's bookkeeping is due (restarting, say): it is tried
/// again, with longer waits, until Neutron takes it; nothing is lost.
#[tokio::test(start_paused = true)]
async fn bookkeeping_neutron_refused_is_written_once_it_answers() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.63.0.0/24", "10.63.0.1").await;
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
        )
        .await;
    let addr = a["Address"].as_str().unwrap_or_default().to_string();
    // Every port update refused for a while: the client's own retries give up, then
    // kuryr's.
    t.neutron.inject(Fault {
        times: 40,
        ..Fault::once("PUT", "/v2.0/ports/", 0)
    });
    t.ok("NetworkDriver.CreateEndpoint", &ep_req(EP, &addr, ""))
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_ne!(port_of(&t, &addr)["device_id"], EP, "not refused?");
    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    let p = port_of(&t, &addr);
    assert_eq!(p["device_id"], EP, "{p}");
    let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap_or_default();
    assert!(
        names::id_tags(EP).iter().all(|t| tags.contains(t)),
        "{tags:?}"
    );
}

/// RequestAddress, then a CreateEndpoint with these options that fails: its answer,
/// once the address's port and the host are checked to be as before.
async fn failed_endpoint(t: &TestDriver, pool_id: &str, opts: Value) -> (u16, Value) {
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
        )
        .await["Address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = port_of(t, &a);
    let mut req = ep_req(EP, &a, "");
    req["Options"] = opts;
    req["Interface"] = json!({"Address": a, "AddressIPv6": ""});
    let (s, v) = t.call("NetworkDriver.CreateEndpoint", &req).await;
    assert_ne!(s, 200, "{v}");
    assert!(v["Err"].is_string(), "{v}");
    assert_eq!(port_of(t, &a), before);
    assert!(t.host.links().is_empty(), "{:?}", t.host.links());
    (s, v)
}

/// RequestAddress (no MAC: the port is bound ahead) and CreateEndpoint with these
/// endpoint options; the address.
async fn endpoint_with(t: &TestDriver, pool_id: &str, ep: &str, opts: Value) -> String {
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
        )
        .await;
    let addr = a["Address"].as_str().unwrap_or_default().to_string();
    let mut req = ep_req(ep, &addr, "");
    req["Options"] = opts;
    req["Interface"] = json!({"Address": addr, "AddressIPv6": ""});
    t.take_requests();
    t.ok("NetworkDriver.CreateEndpoint", &req).await;
    addr
}

#[tokio::test]
async fn a_networks_groups_go_on_its_ports_and_a_containers_own_replace_them() {
    let t = TestDriver::new("").await;
    let web = t.neutron.seed("security-groups", json!({"name": "web"}));
    let db = t.neutron.seed("security-groups", json!({"name": "db"}));
    let pool = network_with(
        &t,
        "10.60.0.0/24",
        "10.60.0.1",
        json!({"neutron.security_groups": "web"}),
    )
    .await;
    let net = &t.neutron.all("networks")[0];
    assert!(
        net["tags"].as_array().unwrap().contains(&json!(format!(
            "{}{}",
            names::TAG_SG,
            web["id"].as_str().unwrap()
        ))),
        "{net}"
    );
    let a = endpoint_with(&t, &pool, EP, json!({})).await;
    assert_eq!(port_of(&t, &a)["security_groups"], json!([web["id"]]));
    // In effect before the container starts: RequestAddress made the port with them, so
    // the start path has no request left.
    let on_path = t.take_requests();
    assert!(on_path.is_empty(), "{on_path:?}");
    let b = endpoint_with(&t, &pool, EP2, json!({"neutron.security_groups": "db"})).await;
    assert_eq!(port_of(&t, &b)["security_groups"], json!([db["id"]]));
    // A released port with a container's own groups is deleted, not pooled.
    let tags = port_of(&t, &b)["tags"].clone();
    assert!(
        tags.as_array()
            .unwrap()
            .contains(&json!(names::TAG_PORT_OWN)),
        "{tags}"
    );
}

#[tokio::test]
async fn an_unknown_group_is_a_400_before_anything_is_made() {
    let t = TestDriver::new("").await;
    let pool = t
        .ok("IpamDriver.RequestPool", &pool_req("10.61.0.0/24"))
        .await["PoolID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (s, v) = t
        .call(
            "NetworkDriver.CreateNetwork",
            &net_req(
                NET,
                "10.61.0.0/24",
                "10.61.0.1/24",
                json!({"neutron.security_groups": "nope"}),
            ),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["Err"].as_str().unwrap().contains("\"nope\""), "{v}");
    assert_eq!(t.neutron.count("networks"), 0);
    // On a network without groups, a container naming an unknown one changes nothing.
    t.ok(
        "NetworkDriver.CreateNetwork",
        &net_req(NET, "10.61.0.0/24", "10.61.0.1/24", json!({})),
    )
    .await;
    let (s, v) = failed_endpoint(&t, &pool, json!({"neutron.security_groups": "web,nope"})).await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test]
async fn without_groups_a_start_costs_what_it_did() {
    let t = TestDriver::new("").await;
    let pool = network(&t, "10.62.0.0/24", "10.62.0.1").await;
    endpoint_with(&t, &pool, EP, json!({})).await;
    assert!(t.take_requests().is_empty());
}

#[tokio::test]
async fn a_networks_qos_policy_is_the_networks_and_a_containers_own_goes_on_its_port() {
    let t = TestDriver::new("").await;
    let slow = t.neutron.seed("policies", json!({"name": "slow"}));
    let fast = t.neutron.seed("policies", json!({"name": "fast"}));
    let pool = network_with(
        &t,
        "10.63.0.0/24",
        "10.63.0.1",
        json!({"neutron.qos_policy": "slow"}),
    )
    .await;
    let net = &t.neutron.all("networks")[0];
    assert_eq!(net["qos_policy_id"], slow["id"], "{net}");
    // Neutron applies the network's policy: the container's start costs nothing for it.
    let a = endpoint_with(&t, &pool, EP, json!({})).await;
    assert!(t.take_requests().is_empty());
    assert!(port_of(&t, &a)
        .get("qos_policy_id")
        .is_none_or(Value::is_null));
    // A container's own policy is on its port before it starts, and the port is not pooled.
    let b = endpoint_with(&t, &pool, EP2, json!({"neutron.qos_policy": fast["id"]})).await;
    let p = port_of(&t, &b);
    assert_eq!(p["qos_policy_id"], fast["id"], "{p}");
    assert!(
        p["tags"]
            .as_array()
            .unwrap()
            .contains(&json!(names::TAG_PORT_OWN)),
        "{p}"
    );
    assert_eq!(t.take_requests(), vec!["PUT ports", "PUT ports/tags"]);
}

#[tokio::test]
async fn an_unknown_qos_policy_is_a_400_and_an_adopted_networks_own_is_not_changed() {
    let t = TestDriver::new("").await;
    t.ok("IpamDriver.RequestPool", &pool_req("10.64.0.0/24"))
        .await;
    let (s, v) = t
        .call(
            "NetworkDriver.CreateNetwork",
            &net_req(
                NET,
                "10.64.0.0/24",
                "10.64.0.1/24",
                json!({"neutron.qos_policy": "nope"}),
            ),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["Err"].as_str().unwrap().contains("QoS policy"), "{v}");
    assert_eq!(t.neutron.count("networks"), 0);
    // A user's network with another policy: refused, its tags and policy untouched.
    let slow = t.neutron.seed("policies", json!({"name": "slow"}));
    let theirs = t
        .neutron
        .seed("networks", json!({"name": "theirs", "tags": ["mine"]}));
    let (s, v) = t
        .call(
            "NetworkDriver.CreateNetwork",
            &net_req(
                NET,
                "10.64.0.0/24",
                "10.64.0.1/24",
                json!({"neutron.qos_policy": "slow", "neutron.net.name": "theirs"}),
            ),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["Err"]
            .as_str()
            .unwrap()
            .contains(slow["id"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(t.neutron.all("networks"), vec![theirs]);
}

fn floating_ips(t: &TestDriver) -> Vec<Value> {
    t.neutron.all("floatingips")
}

#[tokio::test]
async fn a_networks_floating_network_gives_each_container_a_floating_ip_released_with_it() {
    let t = TestDriver::new("").await;
    let public = t.neutron.seed(
        "networks",
        json!({"name": "public", "router:external": true}),
    );
    let pool = network_with(
        &t,
        "10.65.0.0/24",
        "10.65.0.1",
        json!({"neutron.floating_network": "public"}),
    )
    .await;
    let a = endpoint_with(&t, &pool, EP, json!({})).await;
    // One request on the start path: the floating IP's create, with its port.
    assert_eq!(t.take_requests(), vec!["POST floatingips"]);
    let port = port_of(&t, &a);
    let fips = floating_ips(&t);
    assert_eq!(fips.len(), 1);
    assert_eq!(fips[0]["port_id"], port["id"]);
    assert_eq!(fips[0]["floating_network_id"], public["id"]);
    assert_eq!(fips[0]["description"], json!(names::fip_description(EP)));
    t.driver.flush().await;
    assert!(port_of(&t, &a)["tags"]
        .as_array()
        .unwrap()
        .contains(&json!(names::TAG_PORT_OWN)));
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    assert!(floating_ips(&t).is_empty(), "{:?}", floating_ips(&t));
}

#[tokio::test]
async fn a_users_floating_ip_is_associated_and_only_disassociated_at_removal() {
    let t = TestDriver::new("").await;
    let public = t.neutron.seed(
        "networks",
        json!({"name": "public", "router:external": true}),
    );
    let theirs = t.neutron.seed(
        "floatingips",
        json!({"floating_network_id": public["id"], "floating_ip_address": "203.0.113.77"}),
    );
    let pool = network(&t, "10.66.0.0/24", "10.66.0.1").await;
    let a = endpoint_with(
        &t,
        &pool,
        EP,
        json!({"neutron.floating_ip": "203.0.113.77"}),
    )
    .await;
    let port = port_of(&t, &a);
    assert_eq!(floating_ips(&t)[0]["port_id"], port["id"]);
    t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
    let left = floating_ips(&t);
    assert_eq!(left.len(), 1, "the user's floating IP stays");
    assert_eq!(left[0]["id"], theirs["id"]);
    assert!(left[0]["port_id"].is_null(), "{left:?}");
}

#[tokio::test]
async fn an_unknown_or_internal_floating_network_is_a_400_before_anything_is_made() {
    let t = TestDriver::new("").await;
    t.neutron.seed("networks", json!({"name": "inside"}));
    t.ok("IpamDriver.RequestPool", &pool_req("10.67.0.0/24"))
        .await;
    for (want, says) in [("nope", "no external network"), ("inside", "not external")] {
        let (s, v) = t
            .call(
                "NetworkDriver.CreateNetwork",
                &net_req(
                    NET,
                    "10.67.0.0/24",
                    "10.67.0.1/24",
                    json!({"neutron.floating_network": want}),
                ),
            )
            .await;
        assert_eq!(s, 400, "{v}");
        assert!(v["Err"].as_str().unwrap().contains(says), "{v}");
        assert_eq!(t.neutron.count("networks"), 1);
    }
    // A container naming a floating IP nobody allocated: its port is not changed.
    let pool = network(&t, "10.68.0.0/24", "10.68.0.1").await;
    let (s, v) = failed_endpoint(&t, &pool, json!({"neutron.floating_ip": "203.0.113.99"})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["Err"].as_str().unwrap().contains("203.0.113.99"), "{v}");
}

#[tokio::test]
async fn a_floating_ip_neutron_refuses_gives_the_port_and_veth_back() {
    let t = TestDriver::new("").await;
    let public = t.neutron.seed(
        "networks",
        json!({"name": "public", "router:external": true}),
    );
    let pool = network(&t, "10.69.0.0/24", "10.69.0.1").await;
    t.neutron
        .inject(Fault::once("POST", "/v2.0/floatingips", 404));
    failed_endpoint(&t, &pool, json!({"neutron.floating_network": public["id"]})).await;
    assert!(floating_ips(&t).is_empty());
}

#[tokio::test]
async fn a_floating_ip_neutron_refuses_gives_a_nested_ports_sub_interface_and_pair_back() {
    let host = crate::testkit::FakeHost::default();
    host.add_link("eth9", Some("fa:16:3e:00:00:99"));
    let neutron = crate::testkit::MemoryNeutron::default();
    let vm_net = neutron.seed("networks", json!({"name": "vms"}));
    let vm = neutron.seed(
        "ports",
        json!({"network_id": vm_net["id"], "mac_address": "fa:16:3e:00:00:99"}),
    );
    let public = neutron.seed(
        "networks",
        json!({"name": "public", "router:external": true}),
    );
    let t = TestDriver::with(
        "[DEFAULT]\ndefault_port_driver = kuryr_libnetwork.port_driver.drivers.nested\nenabled_port_drivers = nested\n[binding]\ndriver = kuryr.lib.binding.drivers.macvlan\nlink_iface = eth9\n",
        neutron,
        host,
    )
    .await;
    let pool = network(&t, "10.70.0.0/24", "10.70.0.1").await;
    t.neutron
        .inject(Fault::once("POST", "/v2.0/floatingips", 404));
    // The sub-interface the binder made goes again (not a veth the nested binder never
    // made), and the VM port's address pairs are as they were.
    let a = t
        .ok(
            "IpamDriver.RequestAddress",
            &json!({"PoolID": pool, "Address": "", "Options": {}}),
        )
        .await["Address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut req = ep_req(EP, &a, "");
    req["Options"] = json!({"neutron.floating_network": public["id"]});
    req["Interface"] = json!({"Address": a, "AddressIPv6": ""});
    let (s, v) = t.call("NetworkDriver.CreateEndpoint", &req).await;
    assert_ne!(s, 200, "{v}");
    let links: Vec<String> = t.host.links().into_iter().collect();
    assert_eq!(links, vec!["eth9".to_string()]);
    let vm_now = t
        .neutron
        .all("ports")
        .into_iter()
        .find(|p| p["id"] == vm["id"])
        .unwrap_or_default();
    let pairs = vm_now["allowed_address_pairs"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(pairs, 0, "{vm_now}");
    assert!(floating_ips(&t).is_empty());
}

/// One CNI call through the daemon's router, as `kuryr-cni` sends it.
fn cni_call(command: &str, ctr: &str, config: Value) -> Value {
    json!({"command": command, "container_id": ctr, "netns": format!("/run/netns/{ctr}"),
        "ifname": "eth0", "args": "", "config": config})
}

/// Both front-ends on one core: a Docker network, a Docker container and two CNI
/// attachments on the Neutron network behind it, every CNM and CNI method, with and
/// without the port pool (which serves both: the CNI config's subnets are the Docker
/// network's). Everything goes in the end: no port, subnet, network, pool or link.
#[tokio::test]
async fn both_front_ends_share_one_network_and_its_pool_and_leave_nothing() {
    for size in [0, 2] {
        let t = TestDriver::new(&format!("[DEFAULT]\nport_pool_size = {size}\n")).await;
        let pool_id = network(&t, "10.71.0.0/24", "10.71.0.1").await;
        let net = t.neutron.all("networks")[0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if size > 0 {
            pool_ready(&t, size).await;
        }
        // Docker: every call of a container's life but the teardown.
        let addr = start_container(&t, &pool_id, EP).await;
        t.ok("NetworkDriver.EndpointOperInfo", &ep_ref(EP)).await;
        let mut pec = ep_ref(EP);
        pec["Options"] = json!({});
        t.ok("NetworkDriver.ProgramExternalConnectivity", &pec)
            .await;
        t.ok("NetworkDriver.RevokeExternalConnectivity", &ep_ref(EP))
            .await;
        t.ok("NetworkDriver.Leave", &ep_ref(EP)).await;

        // CNI on the same Neutron network, by id.
        let conf = json!({"cniVersion": "1.1.0", "name": "both", "type": "kuryr-cni",
            "network": net});
        let (c1, c2) = ("c1c1c1c1", "c2c2c2c2");
        if size > 0 {
            pool_ready(&t, size).await;
        }
        let before = call_requests(&t, "CNI.ADD");
        t.take_requests();
        for c in [c1, c2] {
            let (s, v) = t.cni(&cni_call("ADD", c, conf.clone())).await;
            assert_eq!(s, 200, "pool {size}: ADD {c}: {v}");
            assert!(
                v["ips"][0]["address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("10.71.0.")),
                "{v}"
            );
        }
        // Without the pool each ADD makes its port; with it, the pool serves them (the
        // first ADD reads the config's network and subnets; its refills are not the ADD's).
        let asked = call_requests(&t, "CNI.ADD") - before;
        assert_eq!(asked, if size == 0 { 2 + 2 * 2 } else { 2 }, "pool {size}");
        for c in [c1, c2] {
            let (s, v) = t.cni(&cni_call("CHECK", c, conf.clone())).await;
            assert_eq!((s, &v), (200, &Value::Null), "pool {size}: CHECK {c}");
        }
        t.driver.background.flush().await;
        let mut gc = conf.clone();
        gc["cni.dev/valid-attachments"] = json!([{"containerID": c2, "ifname": "eth0"}]);
        let (s, v) = t.cni(&cni_call("GC", "", gc)).await;
        assert_eq!((s, &v), (200, &Value::Null), "GC");
        assert!(ports(&t).iter().all(|p| p["device_id"] != c1), "GC left c1");
        let (s, _) = t.cni(&cni_call("DEL", c2, conf.clone())).await;
        assert_eq!(s, 200);
        let (s, _) = t.cni(&cni_call("STATUS", "", conf.clone())).await;
        assert_eq!(s, 200);

        // Docker's teardown takes the rest, the pool with the network.
        t.ok("NetworkDriver.DeleteEndpoint", &ep_ref(EP)).await;
        release(&t, &pool_id, &addr).await;
        t.ok("NetworkDriver.DeleteNetwork", &json!({"NetworkID": NET}))
            .await;
        t.ok("IpamDriver.ReleasePool", &json!({"PoolID": pool_id}))
            .await;
        t.driver.background.flush().await;
        for c in ["networks", "subnets", "subnetpools", "ports"] {
            assert_eq!(t.neutron.count(c), 0, "pool {size}: {c} left");
        }
        assert!(t.host.links().is_empty(), "{:?}", t.host.links());
        assert!(t.host.netns_links().is_empty());
    }
}

/// `kuryr gc` on a host whose endpoints are all alive, in a cloud full of other hosts'
/// ports: it reads this host's ports and the ports its groups name, never the cloud's
/// whole port list; a veth of a port bound elsewhere (one being moved) is kept, one with
/// no port at all and a group whose port is gone are found.
#[tokio::test]
async fn gc_reads_this_hosts_ports_not_the_clouds() {
    let t = TestDriver::new("").await;
    let pool_id = network(&t, "10.10.0.0/24", "10.10.0.1").await;
    endpoint(&t, &pool_id, EP, MAC).await;
    t.driver.background.flush().await;
    let net_id = ports(&t)[0]["network_id"].clone();
    let others: Vec<String> = (0..30)
        .map(|i| {
            let p = t.neutron.seed(
                "ports",
                json!({"network_id": net_id, "name": format!("other-{i}"),
                    "device_owner": names::DEVICE_OWNER, "binding:host_id": "other-host"}),
            );
            p["id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    // Groups: one of another host's live port, one whose port is gone.
    let group = |port: &str| {
        t.neutron.seed(
            "security-groups",
            json!({"name": format!("{port}-exposed_ports"), "description": names::SG_DESCRIPTION}),
        )["id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    group(&others[3]);
    let orphan = group("0badc0de-0000-4000-8000-000000000001");
    let live = crate::commands::gc::Live {
        networks: [NET.to_string()].into(),
        endpoints: [EP.to_string()].into(),
    };
    let gc = || async {
        t.neutron.clear_requests();
        let leaks = t.gc_leaks(&live).await;
        // A port list filtered by nothing but the fields it returns: the whole cloud.
        let whole: Vec<String> = t
            .neutron
            .requests()
            .into_iter()
            .filter(|r| {
                let Some(q) = r.strip_prefix("GET /v2.0/ports") else {
                    return false;
                };
                let q = q.trim_start_matches('?');
                q.split('&')
                    .all(|kv| kv.is_empty() || kv.starts_with("fields="))
            })
            .collect();
        (leaks, whole)
    };
    let (leaks, whole) = gc().await;
    let groups: Vec<_> = leaks.iter().map(|l| l.to_string()).collect();
    assert_eq!(leaks.len(), 1, "{groups:?}");
    assert!(groups[0].contains(&orphan), "{groups:?}");
    assert!(whole.is_empty(), "gc read the cloud's ports: {whole:?}");

    // A veth of another host's port (being moved here) is kept; a veth of no port goes.
    // Only then is the whole list read: Neutron cannot be asked by id prefix.
    t.host.add_link(&names::host_veth(&others[7]), None);
    t.host.add_link("tap0badc0de-00", None);
    let (leaks, whole) = gc().await;
    let found: Vec<String> = leaks.iter().map(|l| l.to_string()).collect();
    assert_eq!(leaks.len(), 2, "{found:?}");
    assert!(
        found.iter().any(|l| l.contains("tap0badc0de-00")),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|l| l.contains(&names::host_veth(&others[7]))),
        "{found:?}"
    );
    assert_eq!(whole.len(), 1, "{whole:?}");
}

/// `kuryr gc` on one host of several: a network another host's kuryr made (its Docker
/// network is not this host's) is left alone even with no port on it, as is one that
/// names no host (made by the Python reference or an older kuryr); this host's own
/// network, gone from its Docker, is removed.
#[tokio::test]
async fn gc_removes_only_networks_this_host_made() {
    let t = TestDriver::new("").await;
    network(&t, "10.10.0.0/24", "10.10.0.1").await;
    let nets = t.neutron.all("networks");
    assert_eq!(nets.len(), 1);
    let ours = nets[0]["id"].as_str().unwrap_or_default().to_string();
    let here = names::host_tag(crate::testkit::HOST);
    assert!(
        nets[0]["tags"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(here))),
        "{}",
        nets[0]
    );
    let other_id = "0b0b".repeat(16);
    let legacy_id = "1c1c".repeat(16);
    let mut other_tags = names::id_tags(&other_id);
    other_tags.push(names::host_tag("another-host"));
    let other = t.neutron.seed(
        "networks",
        json!({"name": names::network_name(&other_id), "tags": other_tags}),
    );
    let legacy = t.neutron.seed(
        "networks",
        json!({"name": names::network_name(&legacy_id), "tags": names::id_tags(&legacy_id)}),
    );
    // Docker here has none of the three.
    let live = crate::commands::gc::Live::default();
    let leaks = t.gc_leaks(&live).await;
    let nets: Vec<String> = leaks
        .iter()
        .filter_map(|l| match l {
            crate::commands::gc::Leak::Network { id, .. } => Some(id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(nets, vec![ours], "{leaks:?}");
    for kept in [&other, &legacy] {
        let id = kept["id"].as_str().unwrap_or_default();
        assert!(
            !leaks.iter().any(|l| l.to_string().contains(id)),
            "{leaks:?}"
        );
    }
}
