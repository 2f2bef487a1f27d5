//! The unit tier of the netavark front-end: `create`, `setup` and `teardown` through the
//! daemon's real router, against the in-memory Neutron and the recording fake host.

use serde_json::{json, Value};

use crate::names;
use crate::testkit::TestDriver;

const CTR: &str = "8addd8afa2f2c0ffee0ddba11c0de5eed0fba5eba11ad5eedc0ffee0ddba11c0";
const NET_ID: &str = "5d479fe4e1503f1c764930cd1f7657c6f97abf0267d713a3182cafb00be491be";

/// Each container its own namespace.
fn netns(ctr: &str) -> String {
    format!("/run/netns/netns-{}", ctr.get(..8).unwrap_or(ctr))
}

/// What Podman sends to `create` for `podman network create -d kuryr <opts> probenet`.
fn network(subnets: Value, options: Value) -> Value {
    json!({"name": "probenet", "id": NET_ID, "driver": "kuryr",
        "created": "0001-01-01T00:00:00Z", "subnets": subnets, "ipv6_enabled": false,
        "internal": false, "dns_enabled": true, "options": options})
}

async fn create(t: &TestDriver, net: Value) -> (u16, Value) {
    t.netavark(&json!({"command": "create", "request": net}))
        .await
}

/// What netavark sends to `setup` and `teardown` for a container on `net` (the stored
/// network, re-serialized with its nulls).
fn request(ctr: &str, net: &Value, static_ips: Value, ports: Value) -> Value {
    let mut stored = net.clone();
    stored["network_interface"] = Value::Null;
    stored["ipam_options"] = Value::Null;
    json!({"container_id": ctr, "container_name": "c1", "port_mappings": ports,
        "network": stored,
        "network_options": {"aliases": ["c1"], "interface_name": "eth0",
            "static_ips": static_ips, "static_mac": null, "options": null}})
}

async fn call(t: &TestDriver, command: &str, req: Value) -> (u16, Value) {
    let ns = netns(req["container_id"].as_str().unwrap_or_default());
    t.netavark(&json!({"command": command, "netns": ns, "request": req}))
        .await
}

fn ports(t: &TestDriver) -> Vec<Value> {
    t.neutron.all("ports")
}

#[tokio::test]
async fn create_makes_the_neutron_network_of_its_subnet_and_leaves_the_addresses_to_neutron() {
    let t = TestDriver::new("").await;
    let (status, made) = create(
        &t,
        network(json!([{"subnet": "10.250.0.0/24"}]), json!({"foo": "x"})),
    )
    .await;
    // An option kuryr does not know is refused, naming the ones it knows.
    assert_eq!(status, 400, "{made}");
    assert!(
        made["error"].as_str().unwrap().contains("neutron.net.name"),
        "{made}"
    );
    assert!(t.neutron.all("networks").is_empty());

    let (status, made) = create(&t, network(json!([{"subnet": "10.250.0.0/24"}]), json!({}))).await;
    assert_eq!(status, 200, "{made}");
    let nets = t.neutron.all("networks");
    let subnets = t.neutron.all("subnets");
    assert_eq!((nets.len(), subnets.len()), (1, 1));
    assert_eq!(nets[0]["name"], names::network_name(NET_ID));
    assert_eq!(subnets[0]["cidr"], "10.250.0.0/24");
    // The answer Podman stores: the Neutron ids as options, no subnets (Podman then does
    // no IPAM of its own), no DNS (no aardvark for a plugin's network), the rest as sent.
    assert_eq!(made["options"]["neutron.net.uuid"], nets[0]["id"]);
    assert_eq!(made["options"]["neutron.subnet.uuid"], subnets[0]["id"]);
    assert!(made.get("subnets").is_none(), "{made}");
    assert_eq!(made["dns_enabled"], false);
    assert_eq!(
        (
            &made["name"],
            &made["id"],
            &made["driver"],
            &made["created"]
        ),
        (
            &json!("probenet"),
            &json!(NET_ID),
            &json!("kuryr"),
            &json!("0001-01-01T00:00:00Z")
        )
    );
    // An MTU the kernel would refuse is refused before Neutron is asked anything.
    for mtu in ["40", "70000", "x"] {
        let before = t.neutron.all("networks").len();
        let (status, v) = create(
            &t,
            network(json!([{"subnet": "10.251.0.0/24"}]), json!({"mtu": mtu})),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"].as_str().unwrap().contains("68 to 65535"), "{v}");
        assert_eq!(t.neutron.all("networks").len(), before);
    }
    // A network with neither a Neutron network, a subnet nor a pool is refused.
    let (status, v) = create(&t, network(json!(null), json!({}))).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("--subnet"), "{v}");
}

#[tokio::test]
async fn create_on_an_existing_neutron_network_by_name_stores_its_id() {
    let t = TestDriver::new("").await;
    let net = t.neutron.seed("networks", json!({"name": "tenant-net"}));
    let sub = t.neutron.seed(
        "subnets",
        json!({"network_id": net["id"], "cidr": "10.60.0.0/24", "ip_version": 4,
            "gateway_ip": "10.60.0.1"}),
    );
    let (status, made) = create(
        &t,
        network(json!(null), json!({"neutron.net.name": "tenant-net"})),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["options"]["neutron.net.uuid"], net["id"]);
    assert_eq!(made["options"]["neutron.subnet.uuid"], sub["id"]);
    assert!(made["options"].get("neutron.net.name").is_none());
    assert_eq!(t.neutron.all("networks").len(), 1);
    let (status, v) = create(
        &t,
        network(json!(null), json!({"neutron.net.name": "no-such-net"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no-such-net"), "{v}");
}

#[tokio::test]
async fn setup_wires_a_neutron_port_and_answers_its_address_and_teardown_takes_all_away() {
    let t = TestDriver::new("").await;
    let (_, net) = create(&t, network(json!([{"subnet": "10.250.0.0/24"}]), json!({}))).await;
    let (status, block) = call(&t, "setup", request(CTR, &net, json!(null), json!(null))).await;
    assert_eq!(status, 200, "{block}");
    let p = ports(&t);
    assert_eq!(p.len(), 1);
    let port = &p[0];
    assert_eq!(port["device_id"], CTR);
    assert_eq!(port["binding:host_id"], crate::testkit::HOST);
    let tags: Vec<String> = serde_json::from_value(port["tags"].clone()).unwrap();
    assert_eq!(tags, names::cni_tags("eth0", "netavark.probenet"));
    // The status block is the port's: Neutron chose the address.
    let ip = port["fixed_ips"][0]["ip_address"].as_str().unwrap();
    let eth0 = &block["interfaces"]["eth0"];
    assert_eq!(
        eth0["mac_address"],
        json!(port["mac_address"].as_str().unwrap().to_ascii_lowercase())
    );
    assert_eq!(eth0["subnets"][0]["ipnet"], json!(format!("{ip}/24")));
    assert_eq!(eth0["subnets"][0]["gateway"], "10.250.0.1");
    assert!(t
        .host
        .netns_links()
        .contains(&(netns(CTR), "eth0".to_string())));

    let (status, v) = call(&t, "teardown", request(CTR, &net, json!(null), json!(null))).await;
    assert_eq!((status, &v), (200, &Value::Null));
    assert!(ports(&t).is_empty());
    assert!(t.host.links().is_empty(), "{:?}", t.host.links());
    // A second teardown (a stop, then a removal) finds nothing and succeeds.
    let (status, _) = call(&t, "teardown", request(CTR, &net, json!(null), json!(null))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_ip_asked_for_is_the_ports_and_one_off_the_subnet_is_refused_untouched() {
    let t = TestDriver::new("").await;
    let (_, net) = create(&t, network(json!([{"subnet": "10.250.0.0/24"}]), json!({}))).await;
    let (status, block) = call(
        &t,
        "setup",
        request(CTR, &net, json!(["10.250.0.77"]), json!(null)),
    )
    .await;
    assert_eq!(status, 200, "{block}");
    assert_eq!(ports(&t)[0]["fixed_ips"][0]["ip_address"], "10.250.0.77");
    assert_eq!(
        block["interfaces"]["eth0"]["subnets"][0]["ipnet"],
        "10.250.0.77/24"
    );
    let other = CTR.replace("8add", "9add");
    let (status, v) = call(
        &t,
        "setup",
        request(&other, &net, json!(["192.168.1.5"]), json!(null)),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("192.168.1.5"), "{v}");
    assert_eq!(ports(&t).len(), 1);
}

#[tokio::test]
async fn published_ports_are_refused_with_what_to_do_and_nothing_is_made() {
    let t = TestDriver::new("").await;
    let (_, net) = create(&t, network(json!([{"subnet": "10.250.0.0/24"}]), json!({}))).await;
    t.take_requests();
    let (status, v) = call(
        &t,
        "setup",
        request(
            CTR,
            &net,
            json!(null),
            json!([{"container_port": 80, "host_ip": "", "host_port": 8080, "protocol": "tcp", "range": 1}]),
        ),
    )
    .await;
    assert_eq!(status, 400);
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("8080") && msg.contains("floating"), "{msg}");
    assert!(t.take_requests().is_empty());
    assert!(ports(&t).is_empty() && t.host.links().is_empty());
}

#[tokio::test]
async fn a_pooled_setup_asks_neutron_nothing_before_it_answers() {
    // Four: one taken leaves the pool over half full, so no refill runs beside the call.
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 4\n").await;
    let (_, net) = create(&t, network(json!([{"subnet": "10.250.0.0/24"}]), json!({}))).await;
    // A first container resolves the network and fills the pool.
    let first = CTR.replace("8add", "0add");
    let (status, v) = call(&t, "setup", request(&first, &net, json!(null), json!(null))).await;
    assert_eq!(status, 200, "{v}");
    for _ in 0..300 {
        let pooled = ports(&t)
            .iter()
            .filter(|p| p["name"] == crate::driver::port_pool::POOL_PORT_NAME)
            .count();
        if pooled == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    t.driver.background.flush().await;
    t.take_requests();
    let (status, block) = call(&t, "setup", request(CTR, &net, json!(null), json!(null))).await;
    assert_eq!(status, 200, "{block}");
    assert_eq!(t.take_requests(), Vec::<String>::new());
    // After the answer the pool port becomes the container's.
    t.driver.background.flush().await;
    assert!(ports(&t).iter().any(|p| p["device_id"] == CTR));
}

#[tokio::test]
async fn a_request_that_is_not_netavarks_is_refused_in_its_error_format() {
    let t = TestDriver::new("").await;
    let (status, v) = t.netavark(&json!({"nope": 1})).await;
    assert_eq!(status, 400);
    assert!(v["error"].is_string(), "{v}");
    let (status, v) = call(&t, "setup", json!({"container_id": CTR})).await;
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().unwrap().contains("setup request"),
        "{v}"
    );
    let (status, v) = t
        .netavark(&json!({"command": "setup", "netns": "relative/ns", "request": request(CTR, &network(json!(null), json!({})), json!(null), json!(null))}))
        .await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("absolute"), "{v}");
    assert!(ports(&t).is_empty());
}

#[tokio::test]
async fn groups_and_policy_come_from_the_network_a_container_may_name_its_own_and_dns_from_the_subnet(
) {
    let t = TestDriver::new("").await;
    let web = t.neutron.seed("security-groups", json!({"name": "web"}));
    let db = t.neutron.seed("security-groups", json!({"name": "db"}));
    let slow = t.neutron.seed("policies", json!({"name": "slow"}));
    let net = t.neutron.seed("networks", json!({"name": "tenant-net"}));
    t.neutron.seed(
        "subnets",
        json!({"network_id": net["id"], "cidr": "10.61.0.0/24", "ip_version": 4,
            "gateway_ip": "10.61.0.1", "dns_nameservers": ["10.61.0.53"]}),
    );
    let (status, made) = create(
        &t,
        network(
            json!(null),
            json!({"neutron.net.name": "tenant-net", "neutron.security_groups": "web",
                "neutron.qos_policy": "slow"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let (status, block) = call(&t, "setup", request(CTR, &made, json!(null), json!(null))).await;
    assert_eq!(status, 200, "{block}");
    assert_eq!(block["dns_server_ips"], json!(["10.61.0.53"]));
    let port = ports(&t)[0].clone();
    assert_eq!(port["security_groups"], json!([web["id"]]));
    assert_eq!(port["qos_policy_id"], slow["id"]);
    // `--network net:neutron.security_groups=db`: this container's own.
    let other = CTR.replace("8add", "7add");
    let mut req = request(&other, &made, json!(null), json!(null));
    req["network_options"]["options"] = json!({"neutron.security_groups": "db"});
    let (status, v) = call(&t, "setup", req).await;
    assert_eq!(status, 200, "{v}");
    let theirs = ports(&t)
        .into_iter()
        .find(|p| p["device_id"] == other)
        .unwrap();
    assert_eq!(theirs["security_groups"], json!([db["id"]]));
    // A container may not re-point its network.
    let third = CTR.replace("8add", "6add");
    let mut req = request(&third, &made, json!(null), json!(null));
    req["network_options"]["options"] = json!({"neutron.net.name": "other"});
    let (status, v) = call(&t, "setup", req).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("neutron.net.name"),
        "{v}"
    );
}

#[tokio::test]
async fn an_internal_networks_containers_get_no_default_route() {
    let t = TestDriver::new("").await;
    let mut internal = network(json!([{"subnet": "10.250.0.0/24"}]), json!({}));
    internal["internal"] = json!(true);
    let (_, made) = create(&t, internal).await;
    let (status, v) = call(&t, "setup", request(CTR, &made, json!(null), json!(null))).await;
    assert_eq!(status, 200, "{v}");
    let routes = t.host.netns_routes(&netns(CTR), "eth0");
    assert!(
        routes.iter().all(|(dst, _)| dst.prefix_len() != 0),
        "{routes:?}"
    );
    // The same on a network that is not internal: the default route via the gateway.
    let mut open = network(json!([{"subnet": "10.251.0.0/24"}]), json!({}));
    open["name"] = json!("opennet");
    open["id"] = json!(NET_ID.replace("5d47", "6d47"));
    let (_, open) = create(&t, open).await;
    let other = CTR.replace("8add", "5add");
    let (status, v) = call(
        &t,
        "setup",
        request(&other, &open, json!(null), json!(null)),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let routes = t.host.netns_routes(&netns(&other), "eth0");
    assert!(
        routes
            .iter()
            .any(|(dst, gw)| dst.prefix_len() == 0 && *gw == Some("10.251.0.1".parse().unwrap())),
        "{routes:?}"
    );
}

#[tokio::test]
async fn a_podman_network_gone_from_the_store_takes_the_neutron_network_made_for_it() {
    let t = TestDriver::new("[DEFAULT]\nport_pool_size = 1\n").await;
    let store = tempfile::tempdir().unwrap();
    let (_, made) = create(&t, network(json!([{"subnet": "10.250.0.0/24"}]), json!({}))).await;
    let named = t.neutron.seed("networks", json!({"name": "tenant-net"}));
    t.neutron.seed(
        "subnets",
        json!({"network_id": named["id"], "cidr": "10.60.0.0/24", "ip_version": 4}),
    );
    let mut other = network(json!(null), json!({"neutron.net.name": "tenant-net"}));
    other["id"] = json!(NET_ID.replace("5d47", "4d47"));
    other["name"] = json!("tenant");
    let (_, other) = create(&t, other).await;
    // Podman stores both (and a bridge network of its own).
    for n in [&made, &other] {
        std::fs::write(
            store
                .path()
                .join(format!("{}.json", n["name"].as_str().unwrap())),
            n.to_string(),
        )
        .unwrap();
    }
    std::fs::write(
        store.path().join("podman.json"),
        json!({"name": "podman", "id": "2f25", "driver": "bridge"}).to_string(),
    )
    .unwrap();
    // A container came and went: the pool holds a port of the network.
    let (status, v) = call(&t, "setup", request(CTR, &made, json!(null), json!(null))).await;
    assert_eq!(status, 200, "{v}");
    call(
        &t,
        "teardown",
        request(CTR, &made, json!(null), json!(null)),
    )
    .await;
    t.driver.background.flush().await;

    let watch = super::watch::StoreWatch::new(store.path().to_path_buf());
    watch.sweep(&t.driver).await;
    assert_eq!(t.neutron.all("networks").len(), 2);
    // `podman network rm` of both: the file goes, no plugin is called.
    std::fs::remove_file(store.path().join("probenet.json")).unwrap();
    std::fs::remove_file(store.path().join("tenant.json")).unwrap();
    watch.sweep(&t.driver).await;
    // kuryr's own network goes with its pool port; the user's stays.
    let left: Vec<Value> = t
        .neutron
        .all("networks")
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    assert_eq!(left, vec![named["id"].clone()]);
    assert!(ports(&t).is_empty(), "{:?}", ports(&t));

    // A network made and removed between two reads of the store: known from its create.
    let mut brief = network(json!([{"subnet": "10.252.0.0/24"}]), json!({}));
    brief["id"] = json!(NET_ID.replace("5d47", "3d47"));
    let (_, brief) = create(&t, brief).await;
    watch.made(brief["id"].as_str().unwrap());
    assert_eq!(t.neutron.all("networks").len(), 2);
    watch.sweep(&t.driver).await;
    assert_eq!(
        t.neutron.all("networks").len(),
        1,
        "the brief network stayed"
    );
}

/// Two Podman networks on one Neutron network kuryr made for the first: removing the first
/// leaves it to the second; removing the second takes it.
#[tokio::test]
async fn a_made_network_two_podman_networks_use_goes_with_the_last() {
    let t = TestDriver::new("").await;
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let opts = json!({"neutron.net.name": "shared-x"});
    let (status, a) = create(
        &t,
        network(json!([{"subnet": "10.253.0.0/24"}]), opts.clone()),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    let mut b = network(json!(null), opts);
    b["id"] = json!(NET_ID.replace("5d47", "6d47"));
    b["name"] = json!("second");
    let (status, b) = create(&t, b).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(t.neutron.all("networks").len(), 1, "one Neutron network");
    for n in [&a, &b] {
        let file = store
            .path()
            .join(format!("{}.json", n["name"].as_str().unwrap_or_default()));
        std::fs::write(file, n.to_string()).unwrap_or_else(|e| panic!("{e}"));
    }
    let watch = super::watch::StoreWatch::new(store.path().to_path_buf());
    watch.sweep(&t.driver).await;
    std::fs::remove_file(store.path().join("probenet.json")).unwrap_or_else(|e| panic!("{e}"));
    watch.sweep(&t.driver).await;
    let nets = t.neutron.all("networks");
    assert_eq!(
        nets.len(),
        1,
        "the second Podman network's Neutron network went"
    );
    let tags: Vec<String> = serde_json::from_value(nets[0]["tags"].clone()).unwrap_or_default();
    assert!(!tags.contains(&names::netavark_net_tag(NET_ID)), "{tags:?}");
    // The second still sets up on it.
    let (status, v) = call(&t, "setup", request(CTR, &b, json!(null), json!(null))).await;
    assert_eq!(status, 200, "{v}");
    call(&t, "teardown", request(CTR, &b, json!(null), json!(null))).await;
    std::fs::remove_file(store.path().join("second.json")).unwrap_or_else(|e| panic!("{e}"));
    watch.sweep(&t.driver).await;
    assert!(
        t.neutron.all("networks").is_empty(),
        "the last user gone, it goes"
    );
}

#[tokio::test]
async fn a_floating_network_gives_each_container_a_floating_ip_released_at_teardown() {
    let t = TestDriver::new("").await;
    let public = t.neutron.seed(
        "networks",
        json!({"name": "public", "router:external": true}),
    );
    let (status, made) = create(
        &t,
        network(
            json!([{"subnet": "10.250.0.0/24"}]),
            json!({"neutron.floating_network": "public"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let (status, v) = call(&t, "setup", request(CTR, &made, json!(null), json!(null))).await;
    assert_eq!(status, 200, "{v}");
    let port = ports(&t).remove(0);
    let fips = t.neutron.all("floatingips");
    assert_eq!(fips.len(), 1, "{fips:?}");
    assert_eq!(fips[0]["port_id"], port["id"]);
    assert_eq!(fips[0]["floating_network_id"], public["id"]);
    let (status, _) = call(
        &t,
        "teardown",
        request(CTR, &made, json!(null), json!(null)),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        t.neutron.all("floatingips").is_empty(),
        "released at teardown"
    );
    assert!(ports(&t).is_empty());
}
