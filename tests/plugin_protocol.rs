//! The plugin protocol over the real unix socket, against the real Neutron, without
//! Docker: every method, bad input of every kind, and the Neutron requests each IPAM call
//! costs.

mod common;

use common::cnm::hexid;
use common::Kuryr;
use kuryr::neutron::{Filters, Port, Subnet, SubnetPool};
use serde_json::{json, Value};

fn kuryr() -> Kuryr {
    Kuryr::private().start()
}

#[test]
fn constant_methods() {
    let k = kuryr();
    let (s, v) = k.call("Plugin.Activate", &Value::Null);
    assert_eq!(s, 200);
    assert_eq!(v, json!({"Implements": ["NetworkDriver", "IpamDriver"]}));
    assert_eq!(
        k.call("NetworkDriver.GetCapabilities", &json!({})).1,
        json!({"Scope": "local", "GwAllocChecker": true})
    );
    // Docker 28+'s GwAllocCheck, when the options name no Neutron subnet: nothing skipped.
    assert_eq!(
        k.call(
            "NetworkDriver.GwAllocCheck",
            &json!({"Options": {"com.docker.network.enable_ipv4": false}})
        )
        .1,
        json!({"SkipIPv4": false, "SkipIPv6": false})
    );
    assert_eq!(
        k.call("IpamDriver.GetCapabilities", &json!({})).1,
        // Docker makes no MAC: the container takes its (pre-bound) port's.
        json!({"RequiresMACAddress": false})
    );
    assert_eq!(
        k.call("IpamDriver.GetDefaultAddressSpaces", &json!({})).1,
        json!({"LocalDefaultAddressSpace": "no_address_space", "GlobalDefaultAddressSpace": "no_address_space"})
    );
    for m in [
        "NetworkDriver.DiscoverNew",
        "NetworkDriver.DiscoverDelete",
        "NetworkDriver.FreeNetwork",
    ] {
        assert_eq!(
            k.call(m, &json!({"DiscoveryType": 1})),
            (200, json!({})),
            "{m}"
        );
    }
    assert_eq!(
        k.call(
            "NetworkDriver.AllocateNetwork",
            &json!({"NetworkID": "x", "Options": {"a": "b"}})
        )
        .1,
        json!({"Options": {"a": "b"}})
    );
    let id = hexid();
    assert_eq!(
        k.call(
            "NetworkDriver.Leave",
            &json!({"NetworkID": id, "EndpointID": id})
        ),
        (200, json!({}))
    );
    // Constant methods cost no Neutron request beyond start-up's two (the extensions, and
    // networks a killed kuryr left half-deleted).
    assert_eq!(k.neutron_requests(), 2);
}

#[test]
fn bad_input_is_400_and_changes_nothing() {
    let k = kuryr();
    let before = k.neutron_requests();
    let id = hexid();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "NetworkDriver.CreateNetwork",
            json!({"NetworkID": "short", "IPv4Data": [], "IPv6Data": []}),
            "NetworkID",
        ),
        (
            "NetworkDriver.CreateNetwork",
            json!({"NetworkID": id, "IPv4Data": [{"Pool": "10.0.0.0/40"}]}),
            "IPv4Data.Pool",
        ),
        (
            "NetworkDriver.CreateNetwork",
            json!({"NetworkID": id, "IPv4Data": [{"Pool": "10.0.0.0/24", "Gateway": "10.9.9.9/24"}]}),
            "Gateway",
        ),
        (
            "NetworkDriver.CreateNetwork",
            json!({"IPv4Data": []}),
            "NetworkID",
        ),
        (
            "NetworkDriver.DeleteNetwork",
            json!({"NetworkID": 5}),
            "invalid request body",
        ),
        (
            "NetworkDriver.CreateEndpoint",
            json!({"NetworkID": id, "EndpointID": id, "Interface": {"Address": "nope"}}),
            "Interface.Address",
        ),
        (
            "NetworkDriver.CreateEndpoint",
            json!({"NetworkID": id, "EndpointID": id, "Interface": {"Address": "10.0.0.2/24", "MacAddress": "zz"}}),
            "MacAddress",
        ),
        (
            "NetworkDriver.CreateEndpoint",
            json!({"NetworkID": id, "EndpointID": id, "Interface": {}}),
            "not provided",
        ),
        (
            "NetworkDriver.Join",
            json!({"NetworkID": id, "EndpointID": id, "SandboxKey": "../x"}),
            "SandboxKey",
        ),
        (
            "NetworkDriver.DeleteEndpoint",
            json!({"NetworkID": id, "EndpointID": "../../x"}),
            "EndpointID",
        ),
        (
            "IpamDriver.RequestPool",
            json!({"Pool": "300.1.1.0/24"}),
            "Pool",
        ),
        (
            "IpamDriver.RequestPool",
            json!({"Pool": "", "SubPool": "10.0.0.0/24"}),
            "SubPool",
        ),
        (
            "IpamDriver.RequestPool",
            json!({"Pool": "10.0.0.0/24", "SubPool": "10.1.0.0/24"}),
            "not inside",
        ),
        (
            "IpamDriver.RequestPool",
            json!({"Pool": "10.0.0.0/24", "V6": true}),
            "IPv6",
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID": "not-a-uuid"}),
            "PoolID",
        ),
        (
            "IpamDriver.RequestAddress",
            json!({"PoolID": uuid::Uuid::new_v4().to_string(), "Address": "1.2.3"}),
            "Address",
        ),
        (
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": uuid::Uuid::new_v4().to_string(), "Address": "x"}),
            "Address",
        ),
        ("IpamDriver.ReleasePool", json!({}), "PoolID"),
    ];
    for (method, body, needle) in cases {
        let (s, v) = k.call(method, &body);
        assert_eq!(s, 400, "{method} {body}: {v}");
        let err = v["Err"].as_str().unwrap_or_default();
        assert!(
            err.contains(needle),
            "{method}: {err:?} should mention {needle}"
        );
    }
    // Malformed JSON.
    let (s, v) = common::raw_call(&k.socket, "POST", "/IpamDriver.RequestPool", "{\"Pool\": ");
    assert_eq!(s, 400, "{v}");
    assert!(v["Err"].is_string());
    assert_eq!(
        k.neutron_requests(),
        before,
        "bad input made Neutron requests"
    );
}

#[test]
fn unknown_method_wrong_verb_and_huge_body() {
    let k = kuryr();
    let (s, v) = k.call("NetworkDriver.Frobnicate", &json!({}));
    assert_eq!(s, 404);
    assert!(v["Err"].as_str().unwrap().contains("unknown method"));
    let (s, v) = common::raw_call(&k.socket, "GET", "/Plugin.Activate", "");
    assert_eq!(s, 405, "{v}");
    assert!(v["Err"].is_string());
    let big = format!("{{\"Pool\": \"{}\"}}", "x".repeat(2 << 20));
    let (s, v) = common::raw_call(&k.socket, "POST", "/IpamDriver.RequestPool", &big);
    assert_eq!(s, 413, "{v}");
    // The server is still there after all that.
    assert_eq!(k.call("Plugin.Activate", &json!({})).0, 200);
}

#[tokio::test]
async fn ipam_lifecycle_and_request_counts() {
    let n = common::neutron().await;
    let k = kuryr();
    let cidr = "10.253.7.0/24";

    let r0 = k.neutron_requests();
    let (s, pool) = k.call(
        "IpamDriver.RequestPool",
        &json!({"AddressSpace": "", "Pool": cidr, "SubPool": "", "Options": {}, "V6": false}),
    );
    assert_eq!(s, 200, "{pool}");
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    assert_eq!(pool["Pool"], cidr);
    let pool_reqs = k.neutron_requests() - r0;
    // Reference: 3 (a warning-only subnet lookup, the pool lookup, the create).
    assert!(pool_reqs <= 2, "RequestPool took {pool_reqs} requests");
    let p: SubnetPool = n.get(&pool_id).await.unwrap();
    assert_eq!(p.name, format!("kuryrPool-{cidr}"));

    // Asking again returns the same pool and costs nothing.
    let r1 = k.neutron_requests();
    let (_, again) = k.call("IpamDriver.RequestPool", &json!({"Pool": cidr}));
    assert_eq!(again["PoolID"], pool_id.as_str());
    assert_eq!(k.neutron_requests(), r1);

    // Gateway before any subnet: answered from the pool, nothing reserved.
    let (s, gw) = k.call("IpamDriver.RequestAddress", &json!({"PoolID": pool_id, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}));
    assert_eq!(s, 200, "{gw}");
    assert_eq!(gw["Address"], "10.253.7.1/24");

    // A container address (no kuryr network driver here): IPAM makes its own subnet.
    let r2 = k.neutron_requests();
    let mac = "02:42:0a:fd:07:99";
    let (s, a) = k.call("IpamDriver.RequestAddress", &json!({"PoolID": pool_id, "Address": "", "Options": {"com.docker.network.endpoint.macaddress": mac}}));
    assert_eq!(s, 200, "{a}");
    let addr = a["Address"].as_str().unwrap().to_string();
    assert!(
        addr.starts_with("10.253.7.") && addr.ends_with("/24"),
        "{addr}"
    );
    let ip = addr.split('/').next().unwrap().to_string();
    assert_ne!(ip, "10.253.7.1", "gateway must not be handed out");
    let first_addr_reqs = k.neutron_requests() - r2;
    let ports: Vec<Port> = n
        .list(&Filters::new().add("fixed_ips", format!("ip_address={ip}")))
        .await
        .unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name, "kuryr-unbound-port");
    assert_eq!(ports[0].mac_address, mac);

    // A second address once the subnet exists: one request (reference: 4).
    let r3 = k.neutron_requests();
    let (s, b) = k.call(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": "10.253.7.50", "Options": {}}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["Address"], "10.253.7.50/24");
    let second_addr_reqs = k.neutron_requests() - r3;
    assert!(
        second_addr_reqs <= 2,
        "RequestAddress took {second_addr_reqs} (first: {first_addr_reqs})"
    );

    // The same specific address again: the held port is kuryr's own, it is reused.
    let (s, _) = k.call(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": "10.253.7.50", "Options": {}}),
    );
    assert_eq!(s, 200);
    let held: Vec<Port> = n
        .list(&Filters::new().add("fixed_ips", "ip_address=10.253.7.50"))
        .await
        .unwrap();
    assert_eq!(held.len(), 1, "no duplicate port");

    // Gateway requests now check against the subnet.
    let (s, v) = k.call("IpamDriver.RequestAddress", &json!({"PoolID": pool_id, "Address": "10.253.7.9", "Options": {"RequestAddressType": "com.docker.network.gateway"}}));
    assert_eq!(s, 409, "{v}");

    // Release: one DELETE each; a second release is harmless.
    for a in [ip.as_str(), "10.253.7.50"] {
        let r = k.neutron_requests();
        assert_eq!(
            k.call(
                "IpamDriver.ReleaseAddress",
                &json!({"PoolID": pool_id, "Address": a})
            ),
            (200, json!({}))
        );
        assert!(
            k.neutron_requests() - r <= 1,
            "ReleaseAddress of a cached address costs one request"
        );
        assert_eq!(
            k.call(
                "IpamDriver.ReleaseAddress",
                &json!({"PoolID": pool_id, "Address": a})
            )
            .0,
            200
        );
    }
    let left: Vec<Port> = n
        .list(&Filters::new().add("fixed_ips", format!("ip_address={ip}")))
        .await
        .unwrap();
    assert!(left.is_empty());

    assert_eq!(
        k.call("IpamDriver.ReleasePool", &json!({"PoolID": pool_id})),
        (200, json!({}))
    );
    assert!(n
        .get::<SubnetPool>(&pool_id)
        .await
        .unwrap_err()
        .is_not_found());
    let subnets: Vec<Subnet> = n.list(&Filters::new().add("cidr", cidr)).await.unwrap();
    assert!(
        subnets.is_empty(),
        "IPAM's own subnet and network go with the pool"
    );
    // Idempotent.
    assert_eq!(
        k.call("IpamDriver.ReleasePool", &json!({"PoolID": pool_id})),
        (200, json!({}))
    );
}

#[tokio::test]
async fn existing_port_adopted_and_given_back() {
    let n = common::neutron().await;
    let k = kuryr();
    let cidr = "10.253.8.0/24";
    let (_, pool) = k.call("IpamDriver.RequestPool", &json!({"Pool": cidr}));
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    let (_, _) = k.call("IpamDriver.RequestAddress", &json!({"PoolID": pool_id, "Address": "10.253.8.1", "Options": {"RequestAddressType": "com.docker.network.gateway"}}));
    // First container address creates the subnet; then a user's port is made on it.
    let (_, a) = k.call(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": "10.253.8.10", "Options": {}}),
    );
    let sub: Vec<Subnet> = n
        .list(&Filters::new().add("subnetpool_id", &pool_id))
        .await
        .unwrap();
    let user: Port = n
        .create(
            json!({"network_id": sub[0].network_id, "name": "users-port",
                       "fixed_ips": [{"subnet_id": sub[0].id, "ip_address": "10.253.8.77"}]}),
        )
        .await
        .unwrap();
    let (s, v) = k.call(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": "10.253.8.77", "Options": {}}),
    );
    assert_eq!(s, 200, "{v}");
    let p: Port = n.get(&user.id).await.unwrap();
    assert!(p.tags.contains(&"kuryr.port.existing".to_string()));
    assert_eq!(
        k.call(
            "IpamDriver.ReleaseAddress",
            &json!({"PoolID": pool_id, "Address": "10.253.8.77"})
        )
        .0,
        200
    );
    let p: Port = n.get(&user.id).await.unwrap();
    assert!(
        !p.tags.contains(&"kuryr.port.existing".to_string()),
        "adopted port untagged"
    );
    assert_eq!(p.name, "users-port", "adopted port kept, not deleted");

    // A port that belongs to something else is refused.
    let busy: Port = n
        .create(json!({"network_id": sub[0].network_id, "device_owner": "compute:nova", "device_id": "vm-1",
                       "fixed_ips": [{"subnet_id": sub[0].id, "ip_address": "10.253.8.78"}]}))
        .await
        .unwrap();
    let (s, v) = k.call(
        "IpamDriver.RequestAddress",
        &json!({"PoolID": pool_id, "Address": "10.253.8.78", "Options": {}}),
    );
    assert_eq!(s, 409, "{v}");

    n.delete::<Port>(&user.id).await.unwrap();
    n.delete::<Port>(&busy.id).await.unwrap();
    let ip = a["Address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    k.call(
        "IpamDriver.ReleaseAddress",
        &json!({"PoolID": pool_id, "Address": ip}),
    );
    assert_eq!(
        k.call("IpamDriver.ReleasePool", &json!({"PoolID": pool_id}))
            .0,
        200
    );
    assert!(n
        .get::<SubnetPool>(&pool_id)
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn existing_subnet_named_by_option() {
    let n = common::neutron().await;
    let k = kuryr();
    let net: kuryr::neutron::Network = n
        .create(json!({"name": common::unique("users-net-")}))
        .await
        .unwrap();
    let sname = common::unique("users-subnet-");
    let subnet: Subnet = n
        .create(json!({"network_id": net.id, "name": sname, "ip_version": 4, "cidr": "10.253.30.0/24", "enable_dhcp": false}))
        .await
        .unwrap();
    let (s, pool) = k.call(
        "IpamDriver.RequestPool",
        &json!({"Pool": "10.253.30.0/24", "Options": {"neutron.subnet.name": sname}}),
    );
    assert_eq!(s, 200, "{pool}");
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    let p: SubnetPool = n.get(&pool_id).await.unwrap();
    assert!(
        p.tags.contains(&subnet.id.to_string()),
        "the kuryr pool is tagged with the subnet: {:?}",
        p.tags
    );
    // A subnet name that does not exist is an error, not a new pool.
    let (s, v) = k.call(
        "IpamDriver.RequestPool",
        &json!({"Pool": "10.253.31.0/24", "Options": {"neutron.subnet.name": "no-such-subnet"}}),
    );
    assert_eq!(s, 404, "{v}");
    // neutron.net.shared must be a boolean.
    let (s, _) = k.call(
        "IpamDriver.RequestPool",
        &json!({"Pool": "10.253.32.0/24", "Options": {"neutron.net.shared": "perhaps"}}),
    );
    assert_eq!(s, 400);
    assert_eq!(
        k.call("IpamDriver.ReleasePool", &json!({"PoolID": pool_id}))
            .0,
        200
    );
    assert!(n
        .get::<SubnetPool>(&pool_id)
        .await
        .unwrap_err()
        .is_not_found());
    n.delete::<kuryr::neutron::Network>(&net.id).await.unwrap();
}
